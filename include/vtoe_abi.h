/*
 * vtoe_abi.h - the VTOE NIC ABI, shared by libvtoe.so (preload/) and the agent addon (native/).
 *
 * Two channels join a process to the agent:
 *
 *  1. The control channel: an AF_UNIX SOCK_SEQPACKET socket.  The process writes fixed-size
 *     requests (struct vtoe_ctl_req, the "control registers" of the dissertation's VTOE NIC).
 *     RPC requests get exactly one struct vtoe_ctl_rep (the event queue entry for that command),
 *     optionally carrying file descriptors with SCM_RIGHTS.  Notes (ESTABLISH, SHUTDOWN, CLOSE,
 *     FALLBACK) get no reply.  Anything malformed closes the channel.
 *
 *  2. One shared-memory region per connection (struct vtoe_conn_region, a memfd).  It holds the
 *     two byte rings of the connection.  Seen from one side, the ring it produces into is its
 *     send work queue (SWQ) and the ring it consumes is its receive work queue (RWQ).  On the
 *     shm fabric the two processes share the region directly; on the tcp and verbs fabrics the
 *     agent's data path is the other side.  A region is shared only by the parties of its one
 *     connection, so no process can reach another connection's memory.
 *
 * Wake-ups (the VTOE NIC's interrupts) travel over kernel socketpairs; see "Doorbells" below.
 *
 * Every index read from shared memory was written by another process and is validated before
 * use (vtoe_ring_used() below): a hostile or corrupted peer can make its own connection fail,
 * never make the reader touch memory outside the region.
 */
#ifndef VTOE_ABI_H
#define VTOE_ABI_H

#include <stdint.h>

#ifdef __cplusplus
#include <atomic>
#define VTOE_ATOMIC(t) std::atomic<t>
extern "C" {
#else
#include <stdatomic.h>
#define VTOE_ATOMIC(t) _Atomic t
#endif

/* Bumped on any incompatible change to anything in this file. */
#define VTOE_ABI_VERSION 10u

#define VTOE_CTL_MAGIC 0x56544f45u    /* "VTOE" */
#define VTOE_REGION_MAGIC 0x56524730u /* "VRG0" */
#define VTOE_CACHELINE 64

/* Ring sizes are powers of two within these bounds. */
#define VTOE_RING_MIN (4u * 1024u)
#define VTOE_RING_MAX (64u * 1024u * 1024u)

/* ------------------------------------------------------------------------------------------ */
/* Event codes: the rdma_cm events of docs/design.md section 4, plus vtoe's own outcomes.     */
/* ------------------------------------------------------------------------------------------ */
enum vtoe_event {
	VTOE_EV_ACK = 0, /* plain acknowledgement of a command */
	VTOE_EV_ADDRESS_RESOLVED = 1,
	VTOE_EV_ADDRESS_ERROR = 2,
	VTOE_EV_ROUTE_RESOLVED = 3,
	VTOE_EV_ROUTE_ERROR = 4,
	VTOE_EV_CONNECT_REQUEST = 5,
	VTOE_EV_CONNECT_RESPONSE = 6,
	VTOE_EV_CONNECT_ERROR = 7,
	VTOE_EV_UNREACHABLE = 8,
	VTOE_EV_CONNECT_REJECTED = 9,
	VTOE_EV_CONNECT_ESTABLISHED = 10,
	VTOE_EV_DISCONNECTED = 11,
	VTOE_EV_DEVICE_REMOVAL = 12,
	VTOE_EV_FALLBACK = 13, /* carry this socket on kernel TCP; rep.reason says why */
	VTOE_EV_ERROR = 14,    /* the command failed; rep.err is the errno */
	VTOE_EV__COUNT
};

/* Why a socket is carried by kernel TCP instead of being offloaded. */
enum vtoe_fallback_reason {
	VTOE_FB_NONE = 0,
	VTOE_FB_POLICY = 1,            /* a policy rule says tcp */
	VTOE_FB_PEER_NOT_OFFLOADED = 2,/* nothing offload-capable listens at the destination */
	VTOE_FB_NO_FABRIC = 3,         /* no fabric reaches the destination */
	VTOE_FB_RESOURCES = 4,         /* the agent ran out of memory, fds or queue pairs */
	VTOE_FB_RENDEZVOUS = 5,        /* the kernel rendezvous connection failed */
	VTOE_FB_ADDRESS_FAMILY = 6,    /* an address vtoe does not offload (e.g. a bound device) */
	VTOE_FB_SHORT_LIVED = 7,       /* the listener's recent connections were too short to gain */
	VTOE_FB_UNVERIFIED = 8,        /* the socket passed did not prove what the request claimed */
	VTOE_FB_PROCESS_LIMIT = 9,     /* the process holds VTOE_MAX_PROCESS_SOCKETS in the agent */
	VTOE_FB__COUNT
};

enum vtoe_fabric {
	VTOE_FABRIC_NONE = 0,
	VTOE_FABRIC_SHM = 1,
	VTOE_FABRIC_TCP = 2,
	VTOE_FABRIC_VERBS = 3,
};

/* ------------------------------------------------------------------------------------------ */
/* Control channel                                                                              */
/* ------------------------------------------------------------------------------------------ */
enum vtoe_ctl_op {
	VTOE_OP_HELLO = 1,     /* RPC: first message; name = program name, arg = pid */
	VTOE_OP_OPEN = 2,      /* RPC: allocate a socket ID (SID) */
	VTOE_OP_LISTEN = 3,    /* RPC: sid listens at local (the bind address); arg = backlog;
				* carries the listening socket (SCM_RIGHTS); the ACK may carry
				* the listener page (struct vtoe_listener_page) */
	VTOE_OP_CONNECT = 4,   /* RPC: REQ from sid, bound at local, to remote; reply carries fds;
				* carries the bound socket, which the agent keeps (the kernel
				* rendezvous, for the server's proof and a late fallback) */
	VTOE_OP_ESTABLISH = 5, /* note: RTU for cid, the kernel rendezvous succeeded (its socket
				* went with the CONNECT) */
	VTOE_OP_ACCEPT = 6,    /* RPC: claim the connection whose kernel rendezvous this process
				* accepted; carries that accepted socket, which alone says which
				* connection (local and remote are not trusted) */
	VTOE_OP_SHUTDOWN = 7,  /* note: arg = SHUT_RD/SHUT_WR/SHUT_RDWR, after the in-band FIN */
	VTOE_OP_CLOSE = 8,     /* note: the last fd of sid closed; arg = VTOE_CLOSE_* flags */
	VTOE_OP_FALLBACK = 9,  /* note: the shim carried sockets on kernel TCP; arg = reason,
				* cid = how many (0 counts as 1); with sid = a listener's SID and
				* VTOE_FB_PEER_NOT_OFFLOADED: kernel clients it accepted unasked */
	VTOE_OP_PEER_RESET = 10, /* note: sid wrote after its peer's socket was gone; the agent
				  * hangs up sid's fd, as TCP's answering reset would */
	VTOE_OP_ATTACH = 11,   /* RPC: the request carries a socket of connection cid (SCM_RIGHTS)
				* whose region this process lacks (inherited over exec, received
				* with SCM_RIGHTS); the ACK carries the region memfd and its side;
				* with VTOE_ATTACH_BELL in arg, the peer's doorbell after it */
	VTOE_OP_BELL = 12,     /* note: ring, drain or shut the peer's doorbell for a process that
				* holds none (arg = VTOE_BELL_*); carries the sender's socket of
				* connection cid, which says its side.  An RPC (ACK once done)
				* with VTOE_BELL_REPLY in arg */
	VTOE_OP__COUNT
};

/* What a BELL note asks the agent to do to the sender's peer's doorbell: what a process that
 * holds it does itself (see "Doorbells"). */
enum vtoe_bell_op {
	VTOE_BELL_RING = 1,      /* one byte: the peer's fd becomes readable */
	VTOE_BELL_DRAIN = 2,     /* take the peer's filler and fuse: its fd becomes writable */
	VTOE_BELL_SHUT_WR = 3,   /* the peer's fd reads POLLIN|POLLRDHUP, as after a FIN */
	VTOE_BELL_SHUT_RDWR = 4, /* ... and POLLHUP: both directions are done */
};
#define VTOE_BELL_REPLY 0x100u /* BELL flag: answer once done (the order matters, e.g. a FIN) */
/* ATTACH flag: also the peer's doorbell, for a process that holds none and is about to lose
 * the agent (it confines itself with a seccomp filter that forbids the channel's calls) */
#define VTOE_ATTACH_BELL 1u

#define VTOE_CLOSE_RESET 1u   /* linger-0 close or abort: the peer sees ECONNRESET */
#define VTOE_CLOSE_ABORTED 2u /* the connect did not complete (rendezvous failed) */

/* A socket address in a fixed layout: port in host order, address in network order. */
struct vtoe_sockaddr {
	uint16_t family; /* AF_INET or AF_INET6; 0 = none */
	uint16_t port;
	uint32_t scope_id;
	uint8_t addr[16]; /* IPv4 in the first 4 bytes */
};

struct vtoe_ctl_req {
	uint32_t magic; /* VTOE_CTL_MAGIC */
	uint16_t abi;   /* VTOE_ABI_VERSION */
	uint16_t op;    /* enum vtoe_ctl_op */
	uint32_t seq;   /* echoed in the reply */
	uint32_t sid;
	uint64_t cid;
	uint32_t arg;
	uint32_t reserved; /* must be 0 */
	struct vtoe_sockaddr local;
	struct vtoe_sockaddr remote;
	char name[16]; /* HELLO: NUL-padded program name; otherwise all 0 */
};

/* File descriptors a CONNECT or ACCEPT reply carries, in this order (an ATTACH reply carries
 * the region alone).  On the shm fabric a process maps the region and closes the memfd: an
 * offloaded socket costs it two descriptors, its socket and the peer's doorbell. */
enum vtoe_rep_fd {
	VTOE_FD_REGION = 0, /* the connection's memfd */
	VTOE_FD_APP = 1,    /* becomes the application's socket fd */
	VTOE_FD_PEER_BELL = 2, /* the peer's doorbell */
	VTOE_FD__COUNT = 3
};

struct vtoe_ctl_rep {
	uint32_t magic; /* VTOE_CTL_MAGIC */
	uint16_t abi;
	uint16_t event; /* enum vtoe_event */
	uint32_t seq;
	int32_t err;     /* positive errno with VTOE_EV_ERROR / _REJECTED / _UNREACHABLE, else 0 */
	uint32_t sid;
	uint32_t fabric; /* enum vtoe_fabric */
	uint64_t cid;
	uint32_t side;      /* 0 = active (connecting) side, 1 = passive (accepted) side */
	uint32_t ring_size; /* bytes per direction of the region's rings */
	uint32_t nfds;      /* VTOE_FD__COUNT with fds, else 0 */
	uint32_t reason;    /* enum vtoe_fallback_reason with VTOE_EV_FALLBACK */
	uint32_t spin_us;   /* how long a waiter may poll its ring before it sleeps */
	/* With a FALLBACK: until this time, the low 32 bits of CLOCK_MONOTONIC in milliseconds,
	 * the agent offloads no connection to this destination (CONNECT: for `reason`, which the
	 * shim counts such connections under) or to this listener (ACCEPT), so the shim need not
	 * ask.  0: ask every time. */
	uint32_t skip_until_ms;
};

/* ------------------------------------------------------------------------------------------ */
/* Connection region: two byte rings, one per direction.                                       */
/*                                                                                              */
/* Ring d is produced by side d and consumed by side 1-d (side 0 = active, 1 = passive).       */
/* head and tail count bytes since the connection began; (head - tail) is the fill.            */
/*                                                                                              */
/* Elastic rings.  Each ring has a small area (ring_size bytes, kept hot in cache) and, when   */
/* the region has one, a large area (ring_large bytes) and a bulk area (vtoe_ring_bulk()       */
/* bytes), both sparse: their pages exist once touched.  The producer moves to the large area  */
/* when the small or bulk one is full and its reader has stalled (the kernel's buffers take    */
/* more from a writer whose reader is not reading); to the bulk area when one write holds at   */
/* least a small area's worth (a bulk sender: the bulk area is smaller than the large one, so  */
/* a stream whose reader keeps up touches fewer fresh pages); and back to the small one when   */
/* the ring is empty.  geo says where: bytes from position vtoe_geo_at(geo) on live in area    */
/* geo & 3 (0 small, 1 large, 2 bulk), bytes before it in area (geo >> 2) & 3.                 */
/* The producer moves only when the consumer has read every byte before the previous move,     */
/* so the unread bytes span at most the two areas, in that order.                              */
/* A stay in the large area uses only its first `span` bytes (vtoe_geo_span(), a power of two */
/* the producer picks as it moves there: what the two ends' buffers let it fill then), so a    */
/* ring walks no more pages than it may hold, however large the region made the area.         */
/* Byte i of the large area lives at area[i & (span - 1)], of the bulk area of size S at       */
/* area[i & (S - 1)], and of the small one at area[(i - base) & (S - 1)] (vtoe_area_index()).  */
/* The producer sets base to head when it moves back to the small area, and may do so        */
/* whenever the ring is empty: a stream of small messages that the reader keeps up with then   */
/* cycles through the area's first page or two, hot in both caches, instead of touching every  */
/* page of it.  It publishes base before the head that covers a byte written after it.  On the */
/* verbs fabric base stays 0: the two agents address both hosts' rings by i & (S - 1).         */
/*                                                                                              */
/* Doorbells.  Each side's application fd is one end of an AF_UNIX stream socketpair whose     */
/* other end (its "bell") is held by the peer, which rings it, and by the agent.  So:          */
/*  - readable: the peer writes one byte into the bell when it publishes data, a FIN or a      */
/*    reset, and the consumer had armed rx_armed, which it does only before it sleeps (event   */
/*    suppression: no byte otherwise);                                                          */
/*  - writable: before it sleeps on a full ring the producer fills its own fd's tiny send      */
/*    buffer, which makes the fd unwritable, and sets tx_waiting; the consumer drains the bell */
/*    after it frees space, which makes the producer writable again;                            */
/*  - the peer's FIN shuts the bell for writing: the fd reads POLLIN|POLLRDHUP, as after TCP's; */
/*  - when a side's app fd is closed in every process, or they died, the agent's copy of its  */
/*    bell reads RDHUP and the agent ends that side as TCP would: a FIN into the ring and a    */
/*    shut bell, or a reset and the bell's last copy closed (POLLHUP|POLLERR, the fuse);       */
/*  - a process short of descriptors may hold no bell: it asks the agent, which keeps a copy  */
/*    of each, to ring, drain or shut it (VTOE_OP_BELL), one agent hop per wake-up.            */
/* ------------------------------------------------------------------------------------------ */
/*                                                                                              */
/* Layout: the two lines written on every transfer (head's, by the producer; tail's, by the   */
/* consumer) sit in different 128-byte pairs (adjacent-line prefetch).  A producer reads tail  */
/* only when its cached copy says the ring is too full (and at most once a page to see if it   */
/* may rebase), and rx_armed, rd_shut and wakes, written only around a sleep or a close, sit   */
/* on a line of their own: a small message costs two cache-line transfers each way, not four. */
struct vtoe_ring_ctl {
	/* written by the producer, on every transfer */
	VTOE_ATOMIC(uint64_t) head;
	VTOE_ATOMIC(uint64_t) base;    /* the small area's origin: see "Elastic rings" */
	VTOE_ATOMIC(uint64_t) fin_at;  /* head when the producer shut down writing */
	VTOE_ATOMIC(uint64_t) geo;     /* the last move: vtoe_geo(), see "Elastic rings" */
	VTOE_ATOMIC(uint32_t) fin;     /* 1 once fin_at is valid */
	VTOE_ATOMIC(uint32_t) reset;   /* producer aborted: VTOE_RESET_* says what the consumer sees */
	VTOE_ATOMIC(uint32_t) tx_waiting; /* producer found the ring full and filled its fd */
	VTOE_ATOMIC(uint32_t) grows;   /* moves to the large area (statistics) */
	/* The producing process's socket settings for a peer that falls silent, which the verbs
	 * agent enforces (a remote host can die unseen; on the shm fabric they are unused):
	 * TCP_USER_TIMEOUT (0: the agent's default), and SO_KEEPALIVE's TCP_KEEPIDLE (0: keepalive
	 * off), TCP_KEEPINTVL and TCP_KEEPCNT.  Written when the process sets them. */
	VTOE_ATOMIC(uint32_t) user_timeout_ms;
	VTOE_ATOMIC(uint32_t) keep_idle_s;
	VTOE_ATOMIC(uint32_t) keep_intvl_s;
	VTOE_ATOMIC(uint32_t) keep_cnt;
	/* written rarely: by the consumer before it sleeps and when it closes, by the producer
	 * when it rings the doorbell the consumer asked for */
	VTOE_ATOMIC(uint32_t) rx_armed; /* consumer found the ring empty and wants a doorbell */
	VTOE_ATOMIC(uint32_t) rd_shut;  /* consumer closed: it reads no more (writers get EPIPE) */
	VTOE_ATOMIC(uint64_t) wakes;   /* doorbells rung (statistics; consumers count their own arms) */
	/* The producing process's SO_SNDBUF and the consuming one's SO_RCVBUF as each set it (0:
	 * never set), written when it sets them (the agent writes what was set before the
	 * connection existed): the large area fills to what the two kernel buffers would hold
	 * (vtoe_large_fill()); the verbs agent's send buffer holds at most what the sender's would. */
	VTOE_ATOMIC(uint32_t) sndbuf;
	VTOE_ATOMIC(uint32_t) rcvbuf;
	uint32_t pad1[(VTOE_CACHELINE - 24) / 4];
	/* written by the consumer, on every transfer */
	VTOE_ATOMIC(uint64_t) tail;
	uint32_t pad2[(2 * VTOE_CACHELINE - 8) / 4];
};

/* vtoe_ring_ctl.reset: why the producer ended the stream. */
#define VTOE_RESET_ABORT 1u    /* the peer reset it: ECONNRESET */
#define VTOE_RESET_TIMEDOUT 2u /* the verbs agent gave up on a silent peer: ETIMEDOUT */

struct vtoe_conn_region {
	uint32_t magic;     /* VTOE_REGION_MAGIC */
	uint32_t abi;       /* VTOE_ABI_VERSION */
	uint32_t ring_size; /* power of two, VTOE_RING_MIN..VTOE_RING_MAX */
	uint32_t data_offset; /* offset of ring 0's data; ring 1 follows at + ring_size */
	uint64_t cid;
	/* Written by the agent: CM state for ss, informational only. */
	VTOE_ATOMIC(uint32_t) cm_state[2];
	uint32_t ring_large; /* 0 (rings never grow), or a power of two above ring_size */
	uint32_t ring_auto;  /* what a large area fills to for ends that set no buffers, <= ring_large */
	uint32_t pad[(VTOE_CACHELINE - 40) / 4];
	struct vtoe_ring_ctl ring[2];
};

#define VTOE_REGION_DATA_OFFSET 4096u

/* The agent seals every region memfd with these before handing it out, and a process refuses
 * a region without them: otherwise a peer could shrink it and kill the other side with SIGBUS. */
#define VTOE_REGION_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

/*
 * Doorbell socketpairs.  Each app fd (the application's socket) is one end; its other end, the
 * bell, is held by whoever rings it (and, on the shm fabric, by the agent).  The agent writes
 * one "reset fuse" byte into every app fd at creation, so the bell's receive queue is never
 * empty: closing a bell with the fuse still queued makes the kernel set ECONNRESET on the app
 * fd (POLLERR, as after a TCP RST).  A clean close reads the fuse first.  Whoever drains
 * filler drains the fuse with it (the queue is FIFO); the app fd's owner then puts it back
 * before its next write to the ring.
 *
 * The app fd's send buffer is small, so that filler makes it unwritable quickly, yet large
 * enough that the fuse alone never does (the kernel doubles the value set).
 */
#define VTOE_BELL_SNDBUF 8192
#define VTOE_BELL_FUSE 1

/* The bulk area's size: a few small areas' worth, at most the large area; 0 without one. */
static inline uint32_t vtoe_ring_bulk(uint32_t ring_size, uint32_t ring_large)
{
	uint32_t four = ring_size <= VTOE_RING_MAX / 4 ? 4u * ring_size : VTOE_RING_MAX;
	return ring_large < four ? ring_large : four;
}

/* An area's size: 0 small, 1 large, 2 bulk; 0 for one the region does not have. */
static inline uint32_t vtoe_area_size(uint32_t ring_size, uint32_t ring_large, int area)
{
	return area == 0 ? ring_size : area == 1 ? ring_large
	       : area == 2 ? vtoe_ring_bulk(ring_size, ring_large) : 0;
}

/* Layout: both small areas (ring 0's, ring 1's), then both large areas, then both bulk ones. */
static inline uint64_t vtoe_region_bytes(uint32_t ring_size, uint32_t ring_large)
{
	return (uint64_t)VTOE_REGION_DATA_OFFSET +
	       2u * ((uint64_t)ring_size + ring_large + vtoe_ring_bulk(ring_size, ring_large));
}

static inline uint64_t vtoe_area_offset(uint32_t ring_size, uint32_t ring_large, int ring, int area)
{
	uint64_t off = VTOE_REGION_DATA_OFFSET;

	for (int a = 0; a < area; a++)
		off += 2u * (uint64_t)vtoe_area_size(ring_size, ring_large, a);
	return off + (uint64_t)ring * vtoe_area_size(ring_size, ring_large, area);
}

static inline int vtoe_ring_size_valid(uint32_t size)
{
	return size >= VTOE_RING_MIN && size <= VTOE_RING_MAX && (size & (size - 1)) == 0;
}

static inline int vtoe_ring_large_valid(uint32_t large, uint32_t ring_size)
{
	return large == 0 || (vtoe_ring_size_valid(large) && large > ring_size);
}

/* The most a ring can hold: every area (a bound: unread bytes span at most two). */
static inline uint64_t vtoe_ring_capacity(uint32_t ring_size, uint32_t ring_large)
{
	return (uint64_t)ring_size + ring_large + vtoe_ring_bulk(ring_size, ring_large);
}

/*
 * How far a producer may fill its large area: what the writer's send buffer and the reader's
 * receive buffer would hold together on kernel TCP, less the small area, within the stay's span
 * (vtoe_large_span(), picked from it when the producer moves there) and the area.  A
 * buffer a program set is kept twice over, as Linux does; one it left alone is autotuned, which
 * ring_auto stands for (the pair's share).  So a program that sets its buffers after the
 * connection exists gets them too: the region's large area is sized for what the host's limits
 * let it ask (net.core.wmem_max, rmem_max), and only what is written uses pages.
 */
static inline uint64_t vtoe_large_fill(uint32_t ring_size, uint32_t ring_large, uint32_t ring_auto,
				       uint32_t sndbuf, uint32_t rcvbuf)
{
	uint64_t need = (sndbuf ? 2ull * sndbuf : ring_auto) + 2ull * rcvbuf;
	uint64_t fill = need > ring_size ? need - ring_size : 0;

	if (fill < ring_auto)
		fill = ring_auto;
	return fill < ring_large ? fill : ring_large;
}

/*
 * geo: the position of the producer's last move, the area it moved from and the one it is in,
 * and the span of the large area's stay among the two (0 if neither is the large area): bits
 * 0-1 the area, 2-3 the one before, 4-7 log2(span) - 11 (0: none), from 8 the position.
 */
static inline uint64_t vtoe_geo(uint64_t at, int from, int area, uint32_t span)
{
	uint64_t code = span ? (uint64_t)(__builtin_ctz(span) - 11) : 0;

	return (at << 8) | ((code & 15) << 4) | ((uint64_t)from << 2) | (uint64_t)area;
}

static inline uint64_t vtoe_geo_at(uint64_t geo)
{
	return geo >> 8;
}

static inline uint32_t vtoe_geo_span(uint64_t geo)
{
	uint32_t code = (uint32_t)(geo >> 4) & 15;

	return code ? 1u << (code + 11) : 0;
}

/* The size of `area` as geo uses it: the large area's span, the others' sizes; 0 for an area
 * the region does not have, or a span outside (ring_size, ring_large]. */
static inline uint32_t vtoe_geo_area_size(uint64_t geo, uint32_t ring_size, uint32_t ring_large,
					  int area)
{
	uint32_t span;

	if (area != 1)
		return vtoe_area_size(ring_size, ring_large, area);
	span = vtoe_geo_span(geo);
	return span > ring_size && span <= ring_large ? span : 0;
}

/* Every area geo names exists in the region. */
static inline int vtoe_geo_valid(uint64_t geo, uint32_t ring_size, uint32_t ring_large)
{
	return vtoe_geo_area_size(geo, ring_size, ring_large, (int)(geo & 3)) != 0 &&
	       vtoe_geo_area_size(geo, ring_size, ring_large, (int)((geo >> 2) & 3)) != 0;
}

/* The span of a stay in the large area that may fill `fill` bytes: the power of two that holds
 * it, above the small area, within the large one. */
static inline uint32_t vtoe_large_span(uint32_t ring_size, uint32_t ring_large, uint64_t fill)
{
	uint64_t span = 2ull * ring_size;

	while (span < fill && span < ring_large)
		span *= 2;
	return span < ring_large ? (uint32_t)span : ring_large;
}

/* Fill of a ring from indices that another process wrote; -1 if they are impossible.
 * capacity: vtoe_ring_capacity(). */
static inline int64_t vtoe_ring_used(uint64_t head, uint64_t tail, uint64_t capacity)
{
	uint64_t used = head - tail;
	return used > capacity ? -1 : (int64_t)used;
}

/* The area that holds stream byte pos, for a consumer that has read up to at least the
 * position of the move before geo's. */
static inline int vtoe_geo_area(uint64_t geo, uint64_t pos)
{
	return pos >= vtoe_geo_at(geo) ? (int)(geo & 3) : (int)((geo >> 2) & 3);
}

/* Where stream byte pos lives in an area of area_size bytes, given the ring's base. */
static inline uint64_t vtoe_area_index(uint64_t pos, uint64_t base, int area, uint32_t area_size)
{
	return (area == 0 ? pos - base : pos) & (area_size - 1);
}

/* Bytes from pos, at index in its area, that are contiguous there, before the area's end or a
 * move. */
static inline uint64_t vtoe_geo_run(uint64_t geo, uint64_t pos, uint64_t index, uint32_t area_size)
{
	uint64_t at = vtoe_geo_at(geo), run = area_size - index;
	if (pos < at && at - pos < run)
		run = at - pos;
	return run;
}

/* The producer's room: its current area's size less the unread bytes in it (those before the
 * move are in the other area).  -1 if the indices are impossible. */
static inline int64_t vtoe_ring_room(uint64_t geo, uint64_t head, uint64_t tail,
				     uint32_t ring_size, uint32_t ring_large)
{
	uint64_t at = vtoe_geo_at(geo), from = tail > at ? tail : at;
	uint32_t area = vtoe_geo_area_size(geo, ring_size, ring_large, (int)(geo & 3));

	if (!vtoe_geo_valid(geo, ring_size, ring_large) ||
	    head - tail > vtoe_ring_capacity(ring_size, ring_large) || head < at || head - from > area)
		return -1;
	return (int64_t)(area - (head - from));
}

/* ------------------------------------------------------------------------------------------ */
/* Listener page                                                                                */
/*                                                                                              */
/* A sealed memfd of VTOE_LISTENER_PAGE_BYTES that the agent writes and a listener's processes */
/* map read-only.  `waiting` counts the offloaded connections to the listener's port that no   */
/* process has claimed yet; the agent raises it before it answers their CONNECT (shm) or sends */
/* their REP (verbs), so a process that accepted a connection and then reads 0 has a kernel    */
/* client and need not send ACCEPT.                                                             */
/* ------------------------------------------------------------------------------------------ */
#define VTOE_LISTENER_PAGE_MAGIC 0x56544c50u /* "VTLP" */
#define VTOE_LISTENER_PAGE_BYTES 4096u
/* A region's seals, and no write but the agent's own mapping (F_SEAL_FUTURE_WRITE). */
#define VTOE_LISTENER_PAGE_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL | F_SEAL_FUTURE_WRITE)

struct vtoe_listener_page {
	uint32_t magic; /* VTOE_LISTENER_PAGE_MAGIC */
	VTOE_ATOMIC(uint32_t) waiting;
};

#ifdef __cplusplus
static_assert(sizeof(struct vtoe_ctl_req) == 96, "vtoe_ctl_req layout");
static_assert(sizeof(struct vtoe_ctl_rep) == 56, "vtoe_ctl_rep layout");
static_assert(sizeof(struct vtoe_ring_ctl) == 4 * VTOE_CACHELINE, "vtoe_ring_ctl layout");
static_assert(sizeof(struct vtoe_conn_region) <= VTOE_REGION_DATA_OFFSET, "region header fits");
}
#else
_Static_assert(sizeof(struct vtoe_ctl_req) == 96, "vtoe_ctl_req layout");
_Static_assert(sizeof(struct vtoe_ctl_rep) == 56, "vtoe_ctl_rep layout");
_Static_assert(sizeof(struct vtoe_ring_ctl) == 4 * VTOE_CACHELINE, "vtoe_ring_ctl layout");
_Static_assert(sizeof(struct vtoe_conn_region) <= VTOE_REGION_DATA_OFFSET, "region header fits");
#endif

#endif /* VTOE_ABI_H */
