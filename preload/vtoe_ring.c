/*
 * vtoe_ring.c - the data path: byte rings in the connection region, and doorbells over the
 * socketpair so that the application's fd has the readiness of a TCP socket.
 *
 * Side s produces into ring[s] (tx) and consumes ring[1-s] (rx).  Invariant: a doorbell byte
 * is pending on our fd whenever our rx ring holds data (or FIN/reset) and rx_armed is 0, so the
 * kernel never misses data.  A consumer arms only before it sleeps in the kernel (a blocking
 * call, or poll/select/epoll, vtoe_poll.c, which answer from the rings until then): a spinning
 * or busy consumer costs its producer no doorbell.  Stale bytes are drained before a sleep, or
 * after every read for a connection that a kernel-only watcher may poll (VTOE_CF_KWATCH).
 *
 * Beyond the base protocol:
 *  - The consumer counts the bytes it is owed from its own arms: when it re-arms with an
 *    exchange and finds the previous arm consumed (0), the producer has sent, or is about to
 *    send, exactly one byte.  (Counting with the producer's `wakes` races with a producer that
 *    has consumed the arm but not yet incremented `wakes`.)
 *  - For a kernel-watched connection, a recv that empties the ring takes back the doorbells of
 *    the data it consumed, so the fd does not stay readable with nothing to read.
 *  - The peer's FIN shuts the bell for writing, so our fd shows POLLIN|POLLRDHUP as after a
 *    TCP FIN.  Our fd hangs up (POLLHUP) only when the last copy of the bell closes, which the
 *    agent does for a reset (or when the peer was gone before we wrote, TCP's answering RST);
 *    a peer that died is ended by the agent, with a FIN or a reset as its kernel would.
 *  - A full ring makes the fd unwritable before its writer sleeps (at once if kernel-watched).
 *
 * Every index written by the peer is checked with vtoe_ring_used(); an impossible value marks
 * the connection BROKEN (ECONNRESET), it never leads to an access outside the region.
 */
#include "vtoe.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define VTOE_BELL_MAX_PENDING (1u << 20) /* more unread doorbells than this is a lie */
/* A drain takes at most this much: several times the filler the peer's fd can hold (its send
 * buffer, VTOE_BELL_SNDBUF doubled), so a peer that keeps writing into its fd cannot keep us. */
#define VTOE_BELL_DRAIN_MAX (16u * VTOE_BELL_SNDBUF)
#define VTOE_SENDFILE_CHUNK (64u * 1024u)
#define VTOE_COPY_STEP (64u * 1024u) /* bytes copied between index updates */
/* A writer waiting for room grows its ring once the reader has read nothing for this long:
 * a reader that only lags keeps the small ring, whose lines stay in cache. */
#define VTOE_GROW_STALL_NS 1000000u
/* How far into the small area a writer goes before it looks whether it may start again. */
#define VTOE_REBASE_AT 4096u

#define ACQ memory_order_acquire
#define REL memory_order_release
#define RLX memory_order_relaxed

uint64_t vtoe_coarse_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t vtoe_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void vtoe_deadline_in(struct timespec *deadline, const struct timespec *rel)
{
	clock_gettime(CLOCK_MONOTONIC, deadline);
	deadline->tv_sec += rel->tv_sec;
	deadline->tv_nsec += rel->tv_nsec;
	if (deadline->tv_nsec >= 1000000000) {
		deadline->tv_sec++;
		deadline->tv_nsec -= 1000000000;
	}
}

int64_t vtoe_left_ns(const struct timespec *deadline)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)(deadline->tv_sec - now.tv_sec) * 1000000000 +
	       (deadline->tv_nsec - now.tv_nsec);
}

static void vtoe_conn_corrupt(struct vtoe_conn *c, const char *what)
{
	if (!(atomic_fetch_or(&c->flags, VTOE_CF_BROKEN) & VTOE_CF_BROKEN))
		vtoe_warn("cid %llu: peer wrote an impossible %s; connection reset",
			  (unsigned long long)c->cid, what);
}

/* The kernel's pending error on our fd (the peer's bell closed with its reset fuse queued)
 * is the one we report: clear it, so poll stops showing POLLERR, as TCP's does. */
static void vtoe_conn_clear_kernel_error(struct vtoe_conn *c)
{
	int err;
	socklen_t len = sizeof(err);

	(void)REAL(getsockopt)(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
}

/* Report a reset once, like the kernel's sk_err: afterwards reads see EOF, writes EPIPE. */
static bool vtoe_conn_report_reset(struct vtoe_conn *c)
{
	if (atomic_fetch_or(&c->flags, VTOE_CF_RESET_REPORTED) & VTOE_CF_RESET_REPORTED)
		return false;
	vtoe_conn_clear_kernel_error(c);
	return true;
}

/* On the verbs fabric the agent is the data path, and ends every stream with a FIN or a reset
 * in the ring before it lets go of our doorbell: a doorbell gone without either means the agent
 * died (or stopped) and the connection with it.  Never a clean end of stream. */
static bool vtoe_conn_agent_lost(struct vtoe_conn *c)
{
	return c->fabric == VTOE_FABRIC_VERBS && (atomic_load(&c->flags) & VTOE_CF_PEER_GONE) &&
	       !atomic_load_explicit(&c->rx->fin, ACQ);
}

bool vtoe_conn_reset_seen(struct vtoe_conn *c)
{
	return (atomic_load(&c->flags) & VTOE_CF_BROKEN) || atomic_load_explicit(&c->rx->reset, ACQ) ||
	       vtoe_conn_agent_lost(c);
}

/* The error a reset reports: a peer that fell silent times out, as TCP's retransmissions do;
 * a reset after the peer's FIN, while we still may write (CLOSE_WAIT), is EPIPE, as Linux has
 * it (tcp_reset), whichever way it came (the peer's agent answering a write, say). */
static int vtoe_conn_reset_errno(struct vtoe_conn *c)
{
	unsigned int fl = atomic_load(&c->flags);

	if (atomic_load_explicit(&c->rx->reset, ACQ) == VTOE_RESET_TIMEDOUT)
		return ETIMEDOUT;
	/* a FIN the peer really sent (at the end of its data), not a broken ring's */
	if (!(fl & (VTOE_CF_WR_SHUT | VTOE_CF_BROKEN)) && atomic_load_explicit(&c->rx->fin, ACQ) &&
	    atomic_load_explicit(&c->rx->fin_at, RLX) == atomic_load_explicit(&c->rx->head, ACQ))
		return EPIPE;
	return ECONNRESET;
}

/* The most a ring can hold. */
static uint64_t vtoe_cap(const struct vtoe_conn *c)
{
	return vtoe_ring_capacity(c->size, c->large);
}

/* An area's size as geo uses it (a stay in the large area has its own span); 0 if invalid. */
static uint32_t vtoe_geo_bytes(const struct vtoe_conn *c, uint64_t geo, int area)
{
	return vtoe_geo_area_size(geo, c->size, c->large, area);
}

/* Our tx ring still holds bytes the peer never read (for a vanished peer: a reset). */
static bool vtoe_conn_tx_unread(struct vtoe_conn *c)
{
	return vtoe_ring_used(atomic_load_explicit(&c->tx->head, RLX),
			      atomic_load_explicit(&c->tx->tail, ACQ), vtoe_cap(c)) != 0;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/*
 * Map, up front, the pages a new connection touches first: the header and the first page of
 * each small area, where a fresh ring's bytes go.  Two calls instead of a page fault each; a
 * fault costs some 15-25 us in a VM, three per process per connection.  Kernels before 5.14
 * refuse the advice (EINVAL): the pages then fault in as before.
 */
static void vtoe_region_prefault(struct vtoe_conn_region *reg, uint32_t size)
{
	const size_t page = 4096;

	/* ring 0's small area follows the header page, ring 1's follows ring 0's */
	if (madvise(reg, VTOE_REGION_DATA_OFFSET + page, MADV_POPULATE_WRITE) == 0)
		(void)madvise((char *)reg + VTOE_REGION_DATA_OFFSET + size, page, MADV_POPULATE_WRITE);
}

int vtoe_conn_map(struct vtoe_conn *c, int memfd, const struct vtoe_ctl_rep *rep)
{
	struct vtoe_conn_region *reg;
	struct stat st;
	uint64_t len;
	uint32_t large, ring_auto;
	int seals;

	if (rep->side > 1 || !vtoe_ring_size_valid(rep->ring_size))
		return -1;
	/* The file's size is sealed, so mapping all of it maps what the header will describe. */
	if (fstat(memfd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size < vtoe_region_bytes(rep->ring_size, 0) ||
	    (uint64_t)st.st_size > vtoe_region_bytes(VTOE_RING_MAX, VTOE_RING_MAX))
		return -1;
	len = (uint64_t)st.st_size;
	/* Unsealed, the peer could shrink the file under our mapping: SIGBUS, not ECONNRESET. */
	seals = REAL(fcntl)(memfd, F_GET_SEALS);
	if (seals < 0 || (seals & VTOE_REGION_SEALS) != VTOE_REGION_SEALS) {
		vtoe_warn("cid %llu: region not sealed (shrink, grow, seal): refused",
			  (unsigned long long)rep->cid);
		return -1;
	}
	reg = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (reg == MAP_FAILED)
		return -1;
	vtoe_region_prefault(reg, rep->ring_size); /* within len: checked above */
	large = reg->ring_large; /* read once: the peer can write the header too */
	ring_auto = reg->ring_auto;
	if (reg->magic != VTOE_REGION_MAGIC || reg->abi != VTOE_ABI_VERSION ||
	    reg->ring_size != rep->ring_size || reg->data_offset != VTOE_REGION_DATA_OFFSET ||
	    reg->cid != rep->cid || !vtoe_ring_large_valid(large, rep->ring_size) ||
	    ring_auto > large || vtoe_region_bytes(rep->ring_size, large) > len) {
		munmap(reg, len);
		return -1;
	}
	c->reg = reg;
	c->map_len = len;
	c->size = rep->ring_size;
	c->large = large;
	c->ring_auto = ring_auto;
	c->side = rep->side;
	c->cid = rep->cid;
	c->tx = &reg->ring[c->side];
	c->rx = &reg->ring[1 - c->side];
	for (int area = 0; area < 3; area++) {
		c->tx_area[area] = (unsigned char *)reg + vtoe_area_offset(c->size, large, (int)c->side, area);
		c->rx_area[area] = (unsigned char *)reg + vtoe_area_offset(c->size, large, 1 - (int)c->side, area);
	}
	c->tx_head = atomic_load(&c->tx->head);
	c->tx_geo = atomic_load(&c->tx->geo);
	c->tx_base = atomic_load(&c->tx->base);
	c->rebase_checked = c->tx_head;
	atomic_store(&c->tx_tail_seen, atomic_load(&c->tx->tail));
	c->rx_tail = atomic_load(&c->rx->tail);
	c->rx_base = atomic_load(&c->rx->base);
	c->owed = 0;
	c->spin_us = vtoe_ctl_spin_us();
	if (vtoe_ring_room(c->tx_geo, c->tx_head, atomic_load(&c->tx->tail), c->size, large) < 0 ||
	    !vtoe_geo_valid(atomic_load(&c->rx->geo), c->size, large) ||
	    vtoe_ring_used(atomic_load(&c->rx->head), c->rx_tail, vtoe_cap(c)) < 0) {
		vtoe_conn_unmap(c);
		return -1;
	}
	return 0;
}

/* Unmaps the region and closes its memfd. */
void vtoe_conn_unmap(struct vtoe_conn *c)
{
	if (c->memfd >= 0) {
		vtoe_fd_set_internal(c->memfd, false);
		REAL(close)(c->memfd);
		c->memfd = -1;
	}
	/* a seccomp filter that forbids unmapping: the region stays mapped (a leak) */
	if (c->reg && VTOE_MAY(SYS_munmap, c->reg, c->map_len))
		munmap(c->reg, c->map_len);
	c->reg = NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Copying between the ring and an iovec                                                      */
/* ------------------------------------------------------------------------------------------ */
struct vtoe_iov_cur {
	const struct iovec *iov;
	int cnt, i;
	size_t off;
};

static size_t vtoe_iov_chunk(struct vtoe_iov_cur *cur)
{
	while (cur->i < cur->cnt && cur->off == cur->iov[cur->i].iov_len) {
		cur->i++;
		cur->off = 0;
	}
	return cur->i < cur->cnt ? cur->iov[cur->i].iov_len - cur->off : 0;
}

/*
 * geo and base: the rx ring's, read after its head (they cover every byte published); geo is
 * checked by vtoe_rx_geo_valid(), and any base gives an index inside the area.  The area is a
 * predicted branch, not an index: the data's address must not wait for geo's cache line,
 * which comes from the producer's core, or the two transfers happen one after the other
 * instead of at once (+70 ns a small message).
 */
static void vtoe_copy_out(struct vtoe_conn *c, uint64_t geo, uint64_t base, uint64_t pos,
			  size_t n, struct vtoe_iov_cur *cur)
{
	while (n) {
		size_t room = vtoe_iov_chunk(cur); /* first: it moves on to the next iovec */
		char *to = (char *)cur->iov[cur->i].iov_base + cur->off;
		size_t k;

		int area = vtoe_geo_area(geo, pos);

		if (vtoe_likely(area == 0)) {
			uint64_t at = vtoe_area_index(pos, base, 0, c->size);

			k = VTOE_MIN(VTOE_MIN(n, vtoe_geo_run(geo, pos, at, c->size)), room);
			memcpy(to, c->rx_area[0] + at, k);
		} else {
			uint32_t size = vtoe_geo_bytes(c, geo, area);
			uint64_t at = vtoe_area_index(pos, base, area, size);

			k = VTOE_MIN(VTOE_MIN(n, vtoe_geo_run(geo, pos, at, size)), room);
			memcpy(to, c->rx_area[area] + at, k);
		}
		cur->off += k;
		pos += k;
		n -= k;
	}
}

/* geo names only areas the region has; a peer that says otherwise is broken. */
static bool vtoe_rx_geo_valid(const struct vtoe_conn *c, uint64_t geo)
{
	return vtoe_geo_valid(geo, c->size, c->large);
}

/* Into our current area: the producer writes only at or after its last move. */
static void vtoe_copy_in(struct vtoe_conn *c, uint64_t pos, size_t n, struct vtoe_iov_cur *cur)
{
	int area = (int)(c->tx_geo & 3);
	uint32_t size = vtoe_geo_bytes(c, c->tx_geo, area);

	while (n) {
		size_t ro = vtoe_area_index(pos, c->tx_base, area, size);
		size_t k = VTOE_MIN(VTOE_MIN(n, size - ro), vtoe_iov_chunk(cur));

		memcpy(c->tx_area[area] + ro, (const char *)cur->iov[cur->i].iov_base + cur->off, k);
		cur->off += k;
		pos += k;
		n -= k;
	}
}

static int vtoe_iov_total(const struct iovec *iov, int iovcnt, size_t *total)
{
	size_t t = 0;

	if (iovcnt < 0 || iovcnt > IOV_MAX) {
		errno = EINVAL;
		return -1;
	}
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > (size_t)SSIZE_MAX - t) {
			errno = EINVAL;
			return -1;
		}
		t += iov[i].iov_len;
	}
	*total = t;
	return 0;
}

/* How far our tx ring may fill its large area now: the two ends' buffers, which either
 * process may set at any time (vtoe_large_fill()). */
static uint64_t vtoe_tx_large_fill(const struct vtoe_conn *c)
{
	return vtoe_large_fill(c->size, c->large, c->ring_auto,
			       atomic_load_explicit(&c->tx->sndbuf, RLX),
			       atomic_load_explicit(&c->tx->rcvbuf, RLX));
}

/* A ring's room in its current area, less the part of a large area's span beyond its fill
 * (the buffers may have shrunk since the span was picked). */
static int64_t vtoe_tx_room_filled(const struct vtoe_conn *c, uint64_t geo, int64_t room)
{
	uint64_t span, fill, beyond;

	if (room <= 0 || (geo & 3) != 1)
		return room;
	span = vtoe_geo_span(geo);
	fill = vtoe_tx_large_fill(c);
	beyond = fill < span ? span - fill : 0;
	return (uint64_t)room > beyond ? room - (int64_t)beyond : 0;
}

/*
 * The room in our tx ring, at least `want` bytes if there are (-1: impossible indices): the
 * consumer's tail is read only when the copy we last read says there is not, so its cache
 * line stays with the consumer while the ring has room.  A stale copy only underestimates the
 * room (the tail never goes back), and an impossible fill (a copy from before a fork) is read
 * again.  geo and head: ours, from tx_lock's cache or, without it, from the ring.
 */
static int64_t vtoe_tx_room(struct vtoe_conn *c, uint64_t geo, uint64_t head, size_t want)
{
	uint64_t seen = atomic_load_explicit(&c->tx_tail_seen, RLX);
	int64_t room = vtoe_tx_room_filled(c, geo, vtoe_ring_room(geo, head, seen, c->size, c->large));

	if (room >= 0 && (uint64_t)room >= want)
		return room;
	seen = atomic_load_explicit(&c->tx->tail, ACQ);
	atomic_store_explicit(&c->tx_tail_seen, seen, RLX);
	return vtoe_tx_room_filled(c, geo, vtoe_ring_room(geo, head, seen, c->size, c->large));
}

/* The room in our tx ring without tx_lock (poll): our geo and head read as one. */
static int64_t vtoe_tx_room_unlocked(struct vtoe_conn *c)
{
	uint64_t geo, head;

	do {
		geo = atomic_load_explicit(&c->tx->geo, ACQ);
		head = atomic_load_explicit(&c->tx->head, ACQ);
	} while (geo != atomic_load_explicit(&c->tx->geo, RLX));
	return vtoe_tx_room(c, geo, head, 1);
}

/* Does another process share the socket (a fork, an exec, SCM_RIGHTS)?  Then it may have
 * moved our own indices, and the copies we keep of them are stale. */
static bool vtoe_conn_shared(const struct vtoe_conn *c)
{
	return c->gen != atomic_load_explicit(&vtoe_fork_gen, RLX);
}

/*
 * Our own indices, from the ring only when shared; tx_lock held.  Otherwise the copies are
 * exact, and reading head's line again is no free hit: right after the consumer read it, it
 * missed on this AMD host, on every message's path (IMB PingPong 0 B: 0.88 -> 0.71 us).
 */
static void vtoe_tx_sync(struct vtoe_conn *c)
{
	if (vtoe_likely(!vtoe_conn_shared(c)))
		return;
	c->tx_head = atomic_load_explicit(&c->tx->head, RLX);
	c->tx_geo = atomic_load_explicit(&c->tx->geo, RLX);
	c->tx_base = atomic_load_explicit(&c->tx->base, RLX);
}

/* Room now, from the consumer's current tail; tx_lock held. */
static int64_t vtoe_tx_room_now(struct vtoe_conn *c)
{
	return vtoe_tx_room_filled(c, c->tx_geo,
				   vtoe_ring_room(c->tx_geo, c->tx_head,
						  atomic_load_explicit(&c->tx->tail, ACQ), c->size, c->large));
}

/* An application that sized its send buffer to fit the small ring keeps it. */
static bool vtoe_tx_keeps_small(const struct vtoe_conn *c)
{
	return c->opts.sndbuf && 2 * (uint64_t)c->opts.sndbuf <= c->size;
}

/* Not yet in the large area, with one to go to that the ends' buffers let it fill. */
static bool vtoe_tx_may_grow(const struct vtoe_conn *c)
{
	return c->large && (c->tx_geo & 3) != 1 && !vtoe_tx_keeps_small(c) && vtoe_tx_large_fill(c);
}

/* The small area starts again at head (the ring is empty).  Published with geo or with the
 * next head, both released after it.  On the verbs fabric the agents address the rings from 0. */
static void vtoe_tx_set_base(struct vtoe_conn *c)
{
	if (c->fabric != VTOE_FABRIC_SHM)
		return;
	c->tx_base = c->tx_head;
	atomic_store_explicit(&c->tx->base, c->tx_base, RLX);
}

/*
 * A small area that its reader keeps empty is written from its start again once the writer
 * is a page into it: small messages then cycle through a page or two that both processes have
 * mapped and cached, where walking the whole area would cost each of them a page fault every
 * few hundred messages until every page had been touched (some 10 us each in a VM).  The
 * consumer's tail is read for this at most once a page.  tx_lock held.
 */
static void vtoe_tx_rebase(struct vtoe_conn *c)
{
	uint64_t tail;

	if ((c->tx_geo & 3) != 0 || vtoe_area_index(c->tx_head, c->tx_base, 0, c->size) < VTOE_REBASE_AT ||
	    c->tx_head - c->rebase_checked < VTOE_REBASE_AT)
		return;
	c->rebase_checked = c->tx_head;
	tail = atomic_load_explicit(&c->tx_tail_seen, RLX);
	if (tail != c->tx_head) {
		tail = atomic_load_explicit(&c->tx->tail, ACQ);
		atomic_store_explicit(&c->tx_tail_seen, tail, RLX);
	}
	if (tail == c->tx_head)
		vtoe_tx_set_base(c);
}

/*
 * Move our tx ring to `area` from head on (vtoe_abi.h, "Elastic rings"): to the large one
 * when a writer would otherwise wait for a reader that stalled, to the bulk one from the small
 * one for a bulk write, back to the small one once the reader has caught up.  Only when the
 * reader has read past the previous move, so that the unread bytes never span more than two
 * areas.  tx_lock held.
 */
static bool vtoe_tx_move(struct vtoe_conn *c, int area)
{
	int from = (int)(c->tx_geo & 3);
	uint64_t tail;
	uint32_t span;

	if (area == from || (area == 1 && !vtoe_tx_may_grow(c)) ||
	    (area == 2 && (from != 0 || !vtoe_ring_bulk(c->size, c->large) || vtoe_tx_keeps_small(c))))
		return false;
	tail = atomic_load_explicit(&c->tx->tail, ACQ);
	if (tail < vtoe_geo_at(c->tx_geo) || tail > c->tx_head || (area == 0 && tail != c->tx_head))
		return false;
	if (area == 0)
		vtoe_tx_set_base(c);
	/* A stay in the large area spans what the buffers let it fill now (vtoe_abi.h); bytes
	 * left there when moving out keep theirs. */
	span = area == 1 ? vtoe_large_span(c->size, c->large, vtoe_tx_large_fill(c))
	       : from == 1 ? vtoe_geo_span(c->tx_geo) : 0;
	c->tx_geo = vtoe_geo(c->tx_head, from, area, span);
	/* Before any head that covers a byte in the new area. */
	atomic_store_explicit(&c->tx->geo, c->tx_geo, REL);
	if (area)
		atomic_fetch_add_explicit(&c->tx->grows, 1, RLX);
	atomic_store_explicit(&c->tx_tail_seen, tail, RLX);
	return true;
}

/*
 * A write of `bulk` bytes begins: our indices as the ring has them, then the area it goes to.
 * A small ring's worth or more goes to the bulk area, as kernel TCP's autotuned buffers grow
 * for a bulk sender (through the small ring the two sides would copy a few lines apart, every
 * line still in the other core's cache: 1 MiB took three times as long).  The bulk area, not
 * the large one: each fresh page costs a fault in both processes (some 5 us a page in a VM),
 * and a reader that keeps up needs no more.  Anything less goes back to the cache-hot small
 * area once the reader has caught up.  tx_lock held.
 */
static void vtoe_tx_begin(struct vtoe_conn *c, size_t bulk)
{
	vtoe_tx_sync(c);
	if (bulk >= c->size)
		vtoe_tx_move(c, 2); /* nothing to do if already out of the small area */
	else if (c->tx_geo & 3)
		vtoe_tx_move(c, 0);
	else
		vtoe_tx_rebase(c);
}

/* Grow now, if the ring can; true if that made room.  tx_lock held. */
static bool vtoe_tx_grow_now(struct vtoe_conn *c)
{
	return vtoe_tx_move(c, 1) && vtoe_tx_room_now(c) > 0;
}

/*
 * About to wait for room: grow instead once the reader has read nothing for
 * VTOE_GROW_STALL_NS, as the kernel's buffers take more from a writer whose reader is not
 * reading.  Until then *wake_ns says when to look again, and the caller sleeps no longer than
 * that; only time stands in the way then (a move the reader must first read past is woken by
 * the reader, as any wait for room is).  tx_lock held.
 */
static bool vtoe_tx_grow(struct vtoe_conn *c, uint64_t *wake_ns)
{
	uint64_t tail, now, due;

	if (!vtoe_tx_may_grow(c))
		return false;
	tail = atomic_load_explicit(&c->tx->tail, ACQ);
	if (tail < vtoe_geo_at(c->tx_geo))
		return false;
	now = vtoe_now_ns();
	if (tail != c->stall_tail || !c->stall_since) {
		c->stall_tail = tail;
		c->stall_since = now;
	}
	due = c->stall_since + VTOE_GROW_STALL_NS;
	if (now >= due)
		return vtoe_tx_grow_now(c);
	if (!*wake_ns || *wake_ns > due)
		*wake_ns = due;
	return false;
}

/* ------------------------------------------------------------------------------------------ */
/* Doorbells                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* Without a bell of our own, the agent rings, drains or shuts the peer's for us; our socket,
 * which goes with the request, tells it which side we are.  wait: done before we return (a
 * FIN, which the peer's poll must see at once, as TCP's; the drain before a close). */
static void vtoe_bell_by_agent(struct vtoe_conn *c, uint32_t op, bool wait)
{
	struct vtoe_ctl_req req;
	struct vtoe_ctl_rep rep;

	if (c->fd < 0)
		return;
	if (!wait) {
		vtoe_ctl_note_fd(VTOE_OP_BELL, c->sid, c->cid, op, c->fd);
		return;
	}
	vtoe_ctl_req_init(&req, VTOE_OP_BELL);
	req.sid = c->sid;
	req.cid = c->cid;
	req.arg = op | VTOE_BELL_REPLY;
	(void)vtoe_ctl_rpc_fd(&req, c->fd, &rep, NULL);
}

bool vtoe_conn_drop_bell(struct vtoe_conn *c)
{
	bool dropped = false;
	int bell;

	if (c->fabric != VTOE_FABRIC_SHM || c->bell < 0 || pthread_mutex_trylock(&c->tx_lock) != 0)
		return false;
	if (pthread_mutex_trylock(&c->rx_lock) == 0) {
		bell = c->bell;
		if (bell >= 0) { /* every other use of c->bell holds one of the two locks */
			c->bell = -1;
			vtoe_fd_set_internal(bell, false);
			REAL(close)(bell);
			dropped = true;
		}
		pthread_mutex_unlock(&c->rx_lock);
	}
	pthread_mutex_unlock(&c->tx_lock);
	return dropped;
}

/* After publishing data, FIN or reset into our tx ring: ring the peer if it asked for it. */
static void vtoe_wake_peer(struct vtoe_conn *c)
{
	struct vtoe_ring_ctl *tx = c->tx;

	atomic_thread_fence(memory_order_seq_cst);
	if (!atomic_load_explicit(&tx->rx_armed, RLX) || atomic_exchange(&tx->rx_armed, 0) != 1)
		return;
	atomic_fetch_add(&tx->wakes, 1);
	if (c->bell < 0) {
		vtoe_bell_by_agent(c, VTOE_BELL_RING, false);
		return;
	}
	for (;;) {
		if (vtoe_bell_send(c->bell, "w", 1) == 1)
			return;
		if (errno != EINTR)
			break;
	}
	/* No byte went out, so none may be counted.  EAGAIN: the bell already holds many bytes,
	 * so the peer's fd is readable anyway.  EPIPE/ECONNRESET: the peer shut reading or died;
	 * death shows up as EOF on our own fd, shut reading as tx->rd_shut. */
	atomic_fetch_sub(&tx->wakes, 1);
}

/* Has the peer's bell closed (process gone)?  Sets PEER_GONE; for the nonblocking path,
 * which has no sleep to notice the hang-up. */
static bool vtoe_peer_hup(struct vtoe_conn *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };

	if (vtoe_kpoll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR))) {
		atomic_fetch_or(&c->flags, VTOE_CF_PEER_GONE);
		return true;
	}
	return false;
}

/* Arm for a doorbell; an arm the producer consumed meanwhile owes us one byte. */
static void vtoe_rx_arm(struct vtoe_conn *c)
{
	if (atomic_exchange(&c->rx->rx_armed, 1) == 0)
		c->owed++;
	atomic_thread_fence(memory_order_seq_cst);
}

/*
 * Read the doorbell bytes we are owed, waiting briefly for one whose producer is between its
 * exchange and its send.  Returns 0, or 1 when the peer is gone or broken (flags set; the
 * caller re-checks).
 */
static int vtoe_drain_doorbell(struct vtoe_conn *c)
{
	int waited_ms = 0;
	char buf[64];

	if (atomic_load(&c->flags) & VTOE_CF_RD_SHUT) {
		c->owed = 0; /* we shut our fd for reading: it reads as EOF, doorbells are moot */
		return 0;
	}
	while (c->owed) {
		ssize_t n = vtoe_bell_recv(c->fd, buf, VTOE_MIN(c->owed, sizeof(buf)), true);

		if (n > 0) {
			c->owed -= (uint32_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 && !vtoe_peer_hup(c)) {
			c->owed = 0; /* end of file without hang-up: the peer sent FIN, rings no more */
			return 0;
		}
		if (n == 0 || errno != EAGAIN) {
			atomic_fetch_or(&c->flags, VTOE_CF_PEER_GONE); /* the peer closed its bell */
			return 1;
		}
		/* After a fork the other process may have read our bytes: do not wait. */
		if (c->gen != atomic_load(&vtoe_fork_gen)) {
			c->owed = 0;
			return 0;
		}
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		if (vtoe_kpoll(&p, 1, 10) == 0 && (waited_ms += 10) > vtoe_cfg.agent_timeout_ms) {
			vtoe_conn_corrupt(c, "doorbell (consumed arm, no byte)");
			return 1;
		}
	}
	return 0;
}

/* Read the doorbell bytes we are owed beyond one, without waiting for any in flight. */
static void vtoe_drain_excess(struct vtoe_conn *c)
{
	char buf[64];

	while (c->owed > 1 && !(atomic_load(&c->flags) & VTOE_CF_RD_SHUT)) {
		ssize_t n = vtoe_bell_recv(c->fd, buf, VTOE_MIN(c->owed - 1, sizeof(buf)), true);

		if (n > 0)
			c->owed -= (uint32_t)n;
		else if (!(n < 0 && errno == EINTR))
			break;
	}
}

/* Take everything the peer put in its own fd, filler and reset fuse: that makes the peer's
 * fd writable again (the peer re-arms its fuse, vtoe_fuse_rearm).  A close that is not a
 * reset takes the fuse too, so that the peer's fd never reads an error. */
static void vtoe_drain_bell(struct vtoe_conn *c, bool closing)
{
	char buf[4096];

	if (c->bell < 0) {
		vtoe_bell_by_agent(c, VTOE_BELL_DRAIN, closing);
		return;
	}
	for (size_t drained = 0; drained < VTOE_BELL_DRAIN_MAX;) {
		ssize_t n = vtoe_bell_recv(c->bell, buf, sizeof(buf), false);

		if (n > 0)
			drained += (size_t)n;
		else if (n == 0 || errno != EINTR)
			break;
	}
}

/* Our receive buffer changed: a writer waiting for room in our rx ring looks again. */
void vtoe_conn_rx_room_changed(struct vtoe_conn *c)
{
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&c->rx->tx_waiting, RLX) && atomic_exchange(&c->rx->tx_waiting, 0) == 1)
		vtoe_drain_bell(c, false);
}

/* Put the reset fuse (vtoe_abi.h) back into our fd once the peer drained our filler and
 * it; tx_lock held. */
static void vtoe_fuse_rearm(struct vtoe_conn *c)
{
	int queued = -1;

	if (VTOE_MAY(SYS_ioctl, c->fd, SIOCOUTQ, &queued) &&
	    REAL(ioctl)(c->fd, SIOCOUTQ, &queued) == 0 && queued == 0 &&
	    vtoe_bell_send(c->fd, "!", VTOE_BELL_FUSE) == VTOE_BELL_FUSE)
		c->fuse_spent = false;
}

static void vtoe_set_sndbuf(struct vtoe_conn *c, int v)
{
	if (VTOE_MAY(SYS_setsockopt, c->fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)))
		(void)REAL(setsockopt)(c->fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
}

/* Our ring is full: make our fd unwritable until the consumer frees space.  Returns true
 * if space appeared meanwhile. */
static bool vtoe_tx_block(struct vtoe_conn *c)
{
	static const char filler[8192];
	struct vtoe_ring_ctl *tx = c->tx;

	c->fuse_spent = true; /* the consumer drains the filler and the fuse before it */
	if (c->sndbuf_raised) {
		vtoe_set_sndbuf(c, VTOE_BELL_SNDBUF);
		c->sndbuf_raised = false;
	}
	for (;;) {
		ssize_t n = vtoe_bell_send(c->fd, filler, sizeof(filler));

		if (n > 0 || (n < 0 && errno == EINTR))
			continue;
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
			atomic_fetch_or(&c->flags, VTOE_CF_PEER_GONE);
		break;
	}
	atomic_store(&tx->tx_waiting, 1);
	atomic_thread_fence(memory_order_seq_cst);
	if (vtoe_tx_room_now(c) == 0)
		return false;
	if (atomic_exchange(&tx->tx_waiting, 0) == 1) {
		/* Nobody will drain our filler: raise the limit so the fd is writable (this also
		 * wakes anyone polling it). */
		vtoe_set_sndbuf(c, 1 << 20);
		c->sndbuf_raised = true;
	}
	return true;
}

/*
 * The ring is full.  poll, select and epoll see that in the ring itself, and a sender that
 * waits grows the ring or blocks the fd before it sleeps; only a kernel watcher needs either
 * now: more room, or else an unwritable fd.  Returns true if the ring grew.
 */
static bool vtoe_tx_full(struct vtoe_conn *c)
{
	if (!(atomic_load(&c->flags) & VTOE_CF_KWATCH))
		return false;
	if (vtoe_tx_grow_now(c)) /* the kernel sleeper has no timer of ours to wait for a stall */
		return true;
	vtoe_tx_block(c);
	return false;
}

/* A nonblocking write found the ring full (EAGAIN, or a short count).  Like the kernel's
 * SOCK_NOSPACE, this makes the next room to write an EPOLLOUT edge for EPOLLET watchers, even
 * if no epoll call saw the ring full in between (the reader may free room first).  Returns
 * true if the ring grew (vtoe_tx_full): the write can go on. */
static bool vtoe_tx_nospace(struct vtoe_conn *c)
{
	atomic_fetch_add(&c->tx_nospace, 1);
	return vtoe_tx_full(c);
}

/* Sleep on our fd with the caller's lock dropped.  >0: revents, 0: timed out, -1: errno. */
static int vtoe_conn_sleep(struct vtoe_conn *c, pthread_mutex_t *lock, short events,
			   const struct timespec *deadline)
{
	struct pollfd p = { .fd = c->fd, .events = events };
	struct timespec left, *tp = NULL;
	int r, saved;

	if (deadline) {
		int64_t ns = vtoe_left_ns(deadline);

		if (ns < 0)
			return 0;
		left.tv_sec = ns / 1000000000;
		left.tv_nsec = ns % 1000000000;
		tp = &left;
	}
	pthread_mutex_unlock(lock);
	r = REAL(ppoll)(&p, 1, tp, NULL);
	saved = errno;
	pthread_mutex_lock(lock);
	errno = saved;
	if (r < 0)
		return -1;
	return r == 0 ? 0 : (p.revents ? p.revents : POLLIN);
}

/*
 * A signal handler interrupted a blocking call.  The kernel restarts it when the handler has
 * SA_RESTART and no SO_RCVTIMEO/SO_SNDTIMEO is set; ppoll tells us neither which signal it was,
 * so restart only when every caught signal has SA_RESTART (the usual all-or-nothing program).
 */
static bool vtoe_signals_restart(void)
{
	struct sigaction sa;

	for (int sig = 1; sig < NSIG; sig++) {
		if (!VTOE_MAY(SYS_rt_sigaction, sig, NULL, &sa, sizeof(sigset_t)))
			return false; /* seccomp: not allowed to ask; EINTR, as without SA_RESTART */
		if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &sa) != 0)
			continue;
		if (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN)
			continue;
		if (!(sa.sa_flags & SA_RESTART))
			return false;
	}
	return true;
}

static void vtoe_deadline(struct timespec *d, long long us)
{
	struct timespec rel = { us / 1000000, (us % 1000000) * 1000 };

	vtoe_deadline_in(d, &rel);
}

/* ------------------------------------------------------------------------------------------ */
/* Receive                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* Anything for the consumer: data, FIN or reset. */
static bool vtoe_rx_pending(struct vtoe_conn *c)
{
	return atomic_load_explicit(&c->rx->head, ACQ) != c->rx_tail ||
	       atomic_load_explicit(&c->rx->fin, ACQ) || atomic_load_explicit(&c->rx->reset, ACQ);
}

/* SO_RCVLOWAT (at least 1): what a blocking read waits for and poll reports as input. */
static uint64_t vtoe_rx_lowat(struct vtoe_conn *c)
{
	int v = __atomic_load_n(&c->opts.val[VTOE_OPT_RCVLOWAT], __ATOMIC_RELAXED);

	return v > 1 ? (uint64_t)v : 1;
}

/* Enough unread bytes to report input: SO_RCVLOWAT's worth, or fewer that leave the producer
 * no room (it waits: TCP too reports input below the mark once its window has closed). */
static bool vtoe_rx_enough(struct vtoe_conn *c, uint64_t head, uint64_t tail)
{
	if (head - tail >= vtoe_rx_lowat(c))
		return true;
	return atomic_load_explicit(&c->rx->tx_waiting, RLX) ||
	       vtoe_ring_room(atomic_load_explicit(&c->rx->geo, RLX), head, tail, c->size, c->large) <= 0;
}

/* What wakes a reader asleep for input: the end of the stream, or enough data. */
static bool vtoe_rx_wakes(struct vtoe_conn *c)
{
	uint64_t head = atomic_load_explicit(&c->rx->head, ACQ);

	return atomic_load_explicit(&c->rx->fin, ACQ) || atomic_load_explicit(&c->rx->reset, ACQ) ||
	       (head != c->rx_tail && vtoe_rx_enough(c, head, c->rx_tail));
}

/* 1: end of stream reached; 0: no FIN (or data still before it); -1: impossible FIN. */
static int vtoe_rx_fin(struct vtoe_conn *c)
{
	uint64_t fa, head;

	if (!atomic_load_explicit(&c->rx->fin, ACQ))
		return 0;
	fa = atomic_load_explicit(&c->rx->fin_at, RLX);
	head = atomic_load_explicit(&c->rx->head, ACQ);
	if (head != fa || vtoe_ring_used(fa, c->rx_tail, vtoe_cap(c)) < 0)
		return -1; /* the producer publishes nothing after its FIN */
	return fa == c->rx_tail;
}

/*
 * After a recv emptied the ring: take back the doorbells of the consumed data, so the fd is
 * not readable with nothing to read.  A producer that published but has not yet rung can
 * still leave a stale byte behind; that race is the protocol's only spurious wake-up.
 */
static void vtoe_rx_settle(struct vtoe_conn *c)
{
	/* Only a kernel watcher needs the fd's readiness exact after every read; poll, select,
	 * epoll and our own waits look at the ring and drain stale bytes before they sleep. */
	if (!(atomic_load(&c->flags) & VTOE_CF_KWATCH))
		return;
	if (vtoe_rx_pending(c)) {
		/* Data is left (a partial read).  An EPOLLET waiter needs a new edge for new data,
		 * as TCP gives one: stay armed so that the next publish rings again.  Keep one byte
		 * pending for level-triggered readers and take the rest, so that doorbells do not
		 * pile up in the socket while the reader lags. */
		if (atomic_load(&c->flags) & VTOE_CF_EDGE) {
			vtoe_rx_arm(c);
			vtoe_drain_excess(c);
		}
		return;
	}
	if (!c->owed && atomic_load_explicit(&c->rx->rx_armed, RLX))
		return; /* no byte out, and the next publish rings */
	vtoe_rx_arm(c);
	if (!vtoe_rx_pending(c))
		vtoe_drain_doorbell(c);
}

/* Spin for data (rx) or room (tx) before sleeping, while spinning pays (vtoe_spin_begin). */
static bool vtoe_spin(struct vtoe_conn *c, bool rx)
{
	uint32_t us = vtoe_spin_begin(c->spin_us);
	uint64_t end;

	if (!us)
		return false;
	end = vtoe_now_ns() + (uint64_t)us * 1000u;
	do {
		for (int i = 0; i < 64; i++) {
			if (rx ? vtoe_rx_pending(c) : vtoe_tx_room_now(c) != 0) {
				vtoe_spin_end(true);
				return true;
			}
			vtoe_cpu_relax();
		}
	} while (vtoe_now_ns() < end);
	vtoe_spin_end(false);
	return false;
}

static ssize_t vtoe_fail(int e)
{
	errno = e;
	return -1;
}

static ssize_t vtoe_recv_locked(struct vtoe_conn *c, const struct iovec *iov, int iovcnt,
				size_t len, int flags)
{
	struct vtoe_ring_ctl *rx = c->rx;
	struct vtoe_iov_cur cur = { .iov = iov, .cnt = iovcnt };
	bool nonblock = (flags & MSG_DONTWAIT) || atomic_load(&c->nonblock);
	struct timespec deadline;
	bool timed = false;
	size_t copied = 0;
	/* A blocking read returns once it has this much (SO_RCVLOWAT), the end of the stream,
	 * an error, a signal or its timeout; a nonblocking one returns what there is. */
	size_t target = (flags & MSG_WAITALL) ? len : VTOE_MIN(len, (size_t)vtoe_rx_lowat(c));

	/* Our own index: another process sharing the socket may have consumed. */
	if (vtoe_conn_shared(c))
		c->rx_tail = atomic_load_explicit(&rx->tail, RLX);
	for (;;) {
		uint64_t head, geo;

		/* The next bytes' line, fetched while head's is (see vtoe_copy_out), where they
		 * are unless the producer rebased meanwhile. */
		__builtin_prefetch(c->rx_area[0] + vtoe_area_index(c->rx_tail, c->rx_base, 0, c->size));
		head = atomic_load_explicit(&rx->head, ACQ);
		geo = atomic_load_explicit(&rx->geo, RLX); /* after head: covers it */
		c->rx_base = atomic_load_explicit(&rx->base, RLX); /* likewise */
		int64_t used = vtoe_ring_used(head, c->rx_tail, vtoe_cap(c));
		unsigned int fl;
		int r;

		if (used < 0 || !vtoe_rx_geo_valid(c, geo)) {
			vtoe_conn_corrupt(c, "rx head");
		} else if (used > 0) {
			size_t n = VTOE_MIN((size_t)used, len - copied);

			/* Large reads free the ring in steps, so the writer refills behind us. */
			if (!(flags & MSG_PEEK))
				n = VTOE_MIN(n, VTOE_COPY_STEP);
			if (!(flags & MSG_TRUNC))
				vtoe_copy_out(c, geo, c->rx_base, c->rx_tail, n, &cur);
			if (flags & MSG_PEEK)
				return (ssize_t)n;
			c->rx_tail += n;
			atomic_store_explicit(&rx->tail, c->rx_tail, REL);
			copied += n;
			c->bytes_rx += n;
			atomic_thread_fence(memory_order_seq_cst);
			if (atomic_load_explicit(&rx->tx_waiting, RLX) &&
			    atomic_exchange(&rx->tx_waiting, 0) == 1)
				vtoe_drain_bell(c, false);
			if (copied < len && (size_t)used > n)
				continue; /* more is in the ring already */
			if (copied >= target || (nonblock && !(flags & MSG_WAITALL))) {
				vtoe_rx_settle(c);
				return (ssize_t)copied;
			}
			continue;
		}

		fl = atomic_load(&c->flags);
		if (fl & VTOE_CF_RD_SHUT)
			return (ssize_t)copied;
		if (vtoe_conn_reset_seen(c)) {
			if (copied)
				return (ssize_t)copied;
			if (vtoe_conn_report_reset(c))
				return vtoe_fail(vtoe_conn_reset_errno(c));
			vtoe_conn_clear_kernel_error(c); /* a fuse that burnt after the report */
			return 0;
		}
		r = vtoe_rx_fin(c);
		if (r > 0)
			return (ssize_t)copied;
		if (r < 0) {
			vtoe_conn_corrupt(c, "FIN");
			continue;
		}
		if (fl & VTOE_CF_PEER_GONE) {
			/* Closed or died without FIN: like the kernel, unread data means RST. */
			if (copied)
				return (ssize_t)copied;
			if (vtoe_conn_tx_unread(c) && vtoe_conn_report_reset(c))
				return vtoe_fail(ECONNRESET);
			/* A peer that died with its fuse in place: TCP would have sent FIN, no RST. */
			vtoe_conn_clear_kernel_error(c);
			return 0;
		}

		if (nonblock && !(fl & VTOE_CF_KWATCH)) {
			/* Nothing to wait for, so no doorbell to ask for: the producer stays silent.
			 * A peer that vanished with its agent is noticed at most every
			 * VTOE_POLL_KERNEL_US (the one kernel call here). */
			if (vtoe_kernel_due_at(&c->hup_checked_ns) && vtoe_peer_hup(c))
				continue;
			return copied ? (ssize_t)copied : vtoe_fail(EAGAIN);
		}
		/* A spinning consumer costs its producer nothing: spin unarmed first. */
		if (!nonblock && vtoe_spin(c, true))
			continue;
		/* Ring empty: arm, then re-check (Dekker with vtoe_wake_peer). */
		vtoe_rx_arm(c);
		if (vtoe_rx_pending(c))
			continue; /* leave rx_armed set */
		if (vtoe_drain_doorbell(c))
			continue;
		if (nonblock) {
			if (vtoe_peer_hup(c))
				continue;
			return copied ? (ssize_t)copied : vtoe_fail(EAGAIN);
		}
		if (!timed && atomic_load(&c->opts.rcvtimeo_us)) {
			vtoe_deadline(&deadline, atomic_load(&c->opts.rcvtimeo_us));
			timed = true;
		}
		r = vtoe_conn_sleep(c, &c->rx_lock, POLLIN, timed ? &deadline : NULL);
		if (r < 0 && !copied && !timed && errno == EINTR && vtoe_signals_restart())
			continue;
		if (r < 0)
			return copied ? (ssize_t)copied : -1;
		if (r == 0)
			return copied ? (ssize_t)copied : vtoe_fail(EAGAIN);
		if (r & (POLLHUP | POLLERR)) /* our fd hangs up only when the peer's bell closed */
			atomic_fetch_or(&c->flags, VTOE_CF_PEER_GONE);
	}
}

ssize_t vtoe_conn_recv(struct vtoe_conn *c, const struct iovec *iov, int iovcnt, int flags)
{
	size_t len;
	ssize_t r;

	if (vtoe_iov_total(iov, iovcnt, &len) < 0)
		return -1;
	if (flags & MSG_OOB) /* no urgent data is ever pending here */
		return vtoe_fail(EINVAL);
	if (flags & MSG_ERRQUEUE)
		return vtoe_fail(EAGAIN);
	/* len 0 still waits for data (then returns 0 without consuming it), as TCP does */
	pthread_mutex_lock(&c->rx_lock);
	r = vtoe_recv_locked(c, iov, iovcnt, len, flags);
	pthread_mutex_unlock(&c->rx_lock);
	return r;
}

/* ------------------------------------------------------------------------------------------ */
/* Send                                                                                        */
/* ------------------------------------------------------------------------------------------ */

/*
 * TCP takes the first write after the peer's socket is gone, and the peer's kernel answers it
 * with a reset: our fd then reads POLLHUP|POLLERR and SO_ERROR says EPIPE.  So the first such
 * write succeeds here too (its bytes have nowhere to go), and the agent, which holds the last
 * copy of our doorbell's other end (shm) or its other end itself (verbs), closes it with a fuse
 * queued.  Not on the tcp fabric (late fallback), where the write fails with EPIPE.  tx_lock held.
 */
static bool vtoe_tx_write_to_closed_peer(struct vtoe_conn *c)
{
	unsigned int fl = atomic_load(&c->flags);

	if ((c->fabric != VTOE_FABRIC_SHM && c->fabric != VTOE_FABRIC_VERBS) ||
	    !atomic_load_explicit(&c->tx->rd_shut, ACQ) ||
	    vtoe_conn_reset_seen(c) ||
	    (fl & (VTOE_CF_WR_SHUT | VTOE_CF_PEER_GONE | VTOE_CF_RST_ASKED)))
		return false;
	atomic_fetch_or(&c->flags, VTOE_CF_RST_ASKED);
	(void)vtoe_bell_send(c->fd, "!", VTOE_BELL_FUSE);
	c->fuse_spent = false;
	vtoe_ctl_note(VTOE_OP_PEER_RESET, c->sid, c->cid, 0);
	return true;
}

/* Why a send cannot proceed, or 0. */
static int vtoe_tx_error(struct vtoe_conn *c)
{
	unsigned int fl = atomic_load(&c->flags);

	if (vtoe_conn_reset_seen(c))
		return vtoe_conn_report_reset(c) ? vtoe_conn_reset_errno(c) : EPIPE;
	if (fl & (VTOE_CF_WR_SHUT | VTOE_CF_PEER_GONE) || atomic_load(&c->tx->rd_shut))
		return EPIPE;
	return 0;
}

/* bulk: what the caller means to send in all, of which this is part (sendfile's chunks). */
static ssize_t vtoe_send_locked(struct vtoe_conn *c, const struct iovec *iov, int iovcnt,
				size_t len, size_t bulk, int flags)
{
	struct vtoe_ring_ctl *tx = c->tx;
	struct vtoe_iov_cur cur = { .iov = iov, .cnt = iovcnt };
	bool nonblock = (flags & MSG_DONTWAIT) || atomic_load(&c->nonblock);
	struct timespec deadline, wake;
	uint64_t wake_ns;
	bool timed = false, regrow;
	size_t sent = 0;
	int e;

	if (len && vtoe_tx_write_to_closed_peer(c))
		return (ssize_t)len;
	e = vtoe_tx_error(c);
	if (e)
		return vtoe_fail(e);
	if (len == 0)
		return 0;
	vtoe_tx_begin(c, bulk); /* see vtoe_recv_locked */
	for (;;) {
		int64_t room = vtoe_tx_room(c, c->tx_geo, c->tx_head,
					    VTOE_MIN(len - sent, VTOE_COPY_STEP));
		size_t space;
		int r;

		if (room < 0) {
			vtoe_conn_corrupt(c, "tx tail");
			e = vtoe_tx_error(c);
			return sent ? (ssize_t)sent : vtoe_fail(e);
		}
		space = (size_t)room;
		if (space) {
			/* published in steps, so the reader copies out while we copy in */
			size_t n = VTOE_MIN(VTOE_MIN(space, len - sent), VTOE_COPY_STEP);

			if (vtoe_unlikely(c->fuse_spent))
				vtoe_fuse_rearm(c);

			vtoe_copy_in(c, c->tx_head, n, &cur);
			c->tx_head += n;
			atomic_store_explicit(&tx->head, c->tx_head, REL);
			sent += n;
			c->bytes_tx += n;
			vtoe_wake_peer(c);
			if (sent < len)
				continue;
			/* Ring now full: unwritable from now on, like a TCP socket with a full
			 * send buffer (select() must not promise a write that would block). */
			if (n == space && vtoe_tx_room(c, c->tx_geo, c->tx_head, 1) == 0)
				vtoe_tx_full(c);
			return (ssize_t)sent;
		}
		/* Ring full. */
		if (nonblock) {
			if (vtoe_tx_nospace(c))
				continue;
			return sent ? (ssize_t)sent : vtoe_fail(EAGAIN);
		}
		wake_ns = 0;
		if (vtoe_spin(c, false) || vtoe_tx_grow(c, &wake_ns) || vtoe_tx_block(c))
			continue;
		if (!timed && atomic_load(&c->opts.sndtimeo_us)) {
			vtoe_deadline(&deadline, atomic_load(&c->opts.sndtimeo_us));
			timed = true;
		}
		/* Wake to grow the ring if the reader stays stalled, unless SO_SNDTIMEO ends first. */
		regrow = wake_ns && (!timed || (uint64_t)deadline.tv_sec * 1000000000u +
							   (uint64_t)deadline.tv_nsec > wake_ns);
		if (regrow) {
			wake.tv_sec = (time_t)(wake_ns / 1000000000u);
			wake.tv_nsec = (long)(wake_ns % 1000000000u);
		}
		r = vtoe_conn_sleep(c, &c->tx_lock, POLLOUT, regrow ? &wake : timed ? &deadline : NULL);
		if (r < 0 && !sent && !timed && errno == EINTR && vtoe_signals_restart())
			continue;
		if (r < 0)
			return sent ? (ssize_t)sent : -1;
		if (r == 0 && regrow)
			continue;
		if (r == 0)
			return sent ? (ssize_t)sent : vtoe_fail(EAGAIN);
		if (r & (POLLHUP | POLLERR))
			atomic_fetch_or(&c->flags, VTOE_CF_PEER_GONE);
		e = vtoe_tx_error(c);
		if (e)
			return sent ? (ssize_t)sent : vtoe_fail(e);
	}
}

ssize_t vtoe_conn_send(struct vtoe_conn *c, const struct iovec *iov, int iovcnt, int flags)
{
	size_t len;
	ssize_t r;

	if (vtoe_iov_total(iov, iovcnt, &len) < 0)
		return -1;
	pthread_mutex_lock(&c->tx_lock);
	r = vtoe_send_locked(c, iov, iovcnt, len, len, flags);
	pthread_mutex_unlock(&c->tx_lock);
	if (r < 0 && errno == EPIPE && !(flags & MSG_NOSIGNAL))
		raise(SIGPIPE); /* what the kernel does for a stream socket */
	return r;
}

/* sendfile(2) into the ring through a bounce buffer. */
ssize_t vtoe_conn_sendfile(struct vtoe_conn *c, int in_fd, off64_t *offset, size_t count)
{
	bool nonblock = atomic_load(&c->nonblock);
	char *buf = malloc(VTOE_SENDFILE_CHUNK);
	off64_t pos;
	size_t total = 0;
	ssize_t ret = 0;
	int saved;

	if (!buf)
		return vtoe_fail(ENOMEM);
	/* Read at an explicit position, so bytes that could not be sent stay unread. */
	pos = offset ? *offset : lseek64(in_fd, 0, SEEK_CUR);
	pthread_mutex_lock(&c->tx_lock);
	while (total < count) {
		size_t want = VTOE_MIN(count - total, VTOE_SENDFILE_CHUNK);
		struct iovec iov;
		ssize_t n, s;

		if (nonblock) {
			/* never read more than fits, so nothing read is left unsent */
			int64_t room;
			size_t space;

			vtoe_tx_begin(c, count - total);
			room = vtoe_tx_room_now(c);
			if (room == 0 && vtoe_tx_nospace(c))
				room = vtoe_tx_room_now(c);
			space = room < 0 ? 1 : (size_t)room; /* an impossible index fails the send */
			if (space == 0) {
				if (!total)
					ret = vtoe_fail(EAGAIN);
				break;
			}
			want = VTOE_MIN(want, space);
		}
		n = pos >= 0 ? pread64(in_fd, buf, want, pos) : REAL(read)(in_fd, buf, want);
		if (n <= 0) {
			if (n < 0 && !total)
				ret = -1;
			break;
		}
		iov.iov_base = buf;
		iov.iov_len = (size_t)n;
		s = vtoe_send_locked(c, &iov, 1, (size_t)n, count - total, MSG_NOSIGNAL);
		if (s < 0) {
			if (!total)
				ret = -1;
			break;
		}
		total += (size_t)s;
		if (pos >= 0)
			pos += s;
		if (s < n)
			break;
	}
	saved = errno;
	pthread_mutex_unlock(&c->tx_lock);
	free(buf);
	if (pos >= 0) {
		if (offset)
			*offset = pos;
		else
			lseek64(in_fd, pos, SEEK_SET);
	}
	errno = saved;
	if (ret < 0) {
		if (errno == EPIPE)
			raise(SIGPIPE);
		return -1;
	}
	return (ssize_t)total;
}

/* splice(2) out of the ring into a pipe: take no more than the pipe can hold now, so that no
 * byte leaves the ring without a place to go. */
ssize_t vtoe_conn_splice_out(struct vtoe_conn *c, int pipe_fd, size_t count, bool nonblock)
{
	int cap = REAL(fcntl)(pipe_fd, F_GETPIPE_SZ), queued = 0;
	struct iovec iov;
	size_t room, done = 0;
	ssize_t r;
	char *buf;

	if (cap < 0)
		return vtoe_fail(EINVAL); /* neither end is a pipe */
	for (;;) {
		if (REAL(ioctl)(pipe_fd, FIONREAD, &queued) < 0)
			queued = 0;
		room = cap > queued ? (size_t)(cap - queued) : 0;
		if (room)
			break;
		if (nonblock)
			return vtoe_fail(EAGAIN);
		struct pollfd p = { .fd = pipe_fd, .events = POLLOUT };
		if (vtoe_kpoll(&p, 1, -1) < 0)
			return -1;
	}
	iov.iov_len = VTOE_MIN(VTOE_MIN(count, room), VTOE_SENDFILE_CHUNK);
	if (!(buf = malloc(iov.iov_len ? iov.iov_len : 1)))
		return vtoe_fail(ENOMEM);
	iov.iov_base = buf;
	r = vtoe_conn_recv(c, &iov, 1, nonblock ? MSG_DONTWAIT : 0);
	while (r > 0 && done < (size_t)r) {
		ssize_t w = REAL(write)(pipe_fd, buf + done, (size_t)r - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			vtoe_warn("splice: %zu bytes read from the connection could not be written to the pipe",
				  (size_t)r - done);
			break;
		}
		done += (size_t)w;
	}
	free(buf);
	return r;
}

/* ------------------------------------------------------------------------------------------ */
/* Shutdown, close, queries                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* shutdown(2) on a descriptor of the connection's, unless a seccomp filter forbids it. */
static void vtoe_shut_internal(int fd, int how)
{
	if (VTOE_MAY(SYS_shutdown, fd, how))
		(void)REAL(shutdown)(fd, how);
}

/*
 * Our FIN is in the ring: make the fds read as TCP's do.  The peer's fd reads POLLIN|POLLRDHUP
 * (its bell shut for writing).  If the peer's FIN came first, both directions are now done
 * and TCP reports POLLHUP on both ends: shutting the bell for reading too gives the peer's fd
 * POLLHUP, and shutting our own fd for writing gives ours (own_fd false when it is about to
 * close).  Both ends check after publishing their own FIN, so at least one sees the other's.
 * Only on the shm fabric, whose agent reads the shut fds as such: the verbs agent would take
 * our own fd's shut write side for its close.
 */
static void vtoe_fin_shut_fds(struct vtoe_conn *c, bool peer_fin, bool own_fd)
{
	bool both = peer_fin && c->fabric == VTOE_FABRIC_SHM;

	if (c->bell >= 0)
		vtoe_shut_internal(c->bell, both ? SHUT_RDWR : SHUT_WR);
	else
		vtoe_bell_by_agent(c, both ? VTOE_BELL_SHUT_RDWR : VTOE_BELL_SHUT_WR, true);
	if (both && own_fd)
		vtoe_shut_internal(c->fd, SHUT_WR);
}

static bool vtoe_peer_fin_seen(struct vtoe_conn *c)
{
	atomic_thread_fence(memory_order_seq_cst);
	return atomic_load_explicit(&c->rx->fin, ACQ) != 0;
}

/* In-band FIN after all data; tx_lock held. */
static void vtoe_tx_fin(struct vtoe_conn *c)
{
	c->tx_head = atomic_load_explicit(&c->tx->head, RLX);
	atomic_store_explicit(&c->tx->fin_at, c->tx_head, RLX);
	atomic_store_explicit(&c->tx->fin, 1, REL);
	vtoe_wake_peer(c);
	atomic_fetch_or(&c->flags, VTOE_CF_WR_SHUT);
	/* No doorbell is needed after the FIN: a later reset is seen with the fd readable. */
	vtoe_fin_shut_fds(c, vtoe_peer_fin_seen(c), true);
}

int vtoe_conn_shutdown(struct vtoe_conn *c, int how)
{
	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
		return (int)vtoe_fail(EINVAL);
	if (vtoe_conn_reset_seen(c) && (atomic_load(&c->flags) & VTOE_CF_RESET_REPORTED))
		return (int)vtoe_fail(ENOTCONN); /* after a reset the kernel socket is CLOSED */
	if (how != SHUT_RD) {
		pthread_mutex_lock(&c->tx_lock);
		if (!(atomic_load(&c->flags) & VTOE_CF_WR_SHUT)) {
			vtoe_tx_fin(c);
			/* Writable from now on, like TCP after SHUT_WR, so writers find EPIPE. */
			vtoe_set_sndbuf(c, 1 << 20);
			c->sndbuf_raised = true;
		}
		pthread_mutex_unlock(&c->tx_lock);
	}
	if (how != SHUT_WR) {
		/* Only local: as on Linux, the peer's sends still succeed (rx->rd_shut is for close). */
		atomic_fetch_or(&c->flags, VTOE_CF_RD_SHUT);
		/* wakes our own blocked readers; the fd reads as EOF from now on */
		vtoe_shut_internal(c->fd, SHUT_RD);
	}
	return 0;
}

uint32_t vtoe_conn_close(struct vtoe_conn *c, bool shared)
{
	uint32_t res = 0;
	int64_t unread = 0;
	bool fin = false, peer_fin = false;

	if (c->reg)
		unread = vtoe_ring_used(atomic_load(&c->rx->head), atomic_load(&c->rx->tail), vtoe_cap(c));
	/* A socket inherited across fork may still be in use by the other process: leave the
	 * rings and the bell alone.  Whoever holds the socket last, or dies holding it, ends it:
	 * the agent sees our fd's last close and does what TCP would (FIN or reset). */
	if (!shared && c->reg) {
		bool linger0 = c->opts.linger.l_onoff && c->opts.linger.l_linger == 0;

		if (linger0 || unread != 0 || (atomic_load(&c->flags) & VTOE_CF_BROKEN)) {
			atomic_store_explicit(&c->tx->reset, 1, REL);
			res = VTOE_CLOSE_RESET;
		} else {
			if (!(atomic_load(&c->flags) & VTOE_CF_WR_SHUT)) {
				atomic_store_explicit(&c->tx->fin_at, atomic_load(&c->tx->head), RLX);
				atomic_store_explicit(&c->tx->fin, 1, REL);
			}
			/* The fuse too: the peer's fd must not read ECONNRESET.  Before rd_shut, after
			 * which the peer's first write puts a fuse back for the reset that answers it. */
			vtoe_drain_bell(c, true);
			fin = true;
			peer_fin = vtoe_peer_fin_seen(c);
		}
		atomic_store(&c->rx->rd_shut, 1);
		/* No doorbell.  A FIN shuts the bell's write side below, which wakes the peer with
		 * POLLIN|POLLRDHUP now, as TCP's FIN does.  A reset reaches the peer when the agent,
		 * seeing our fd closed, closes the bell's last copy with the fuse in it: one event
		 * with reset already in place, as TCP reports one. */
	}
	vtoe_dbg("cid %llu closed: %llu bytes sent, %llu received over the ring%s",
		 (unsigned long long)c->cid, (unsigned long long)c->bytes_tx,
		 (unsigned long long)c->bytes_rx, res ? " (reset)" : "");
	vtoe_conn_unmap(c);
	if (fin)
		vtoe_fin_shut_fds(c, peer_fin, false);
	if (c->bell >= 0) {
		vtoe_fd_set_internal(c->bell, false);
		REAL(close)(c->bell);
		c->bell = -1;
	}
	if (c->fd >= 0) {
		vtoe_fd_set_internal(c->fd, false);
		REAL(close)(c->fd);
		c->fd = -1;
	}
	if (c->fd_retired >= 0) {
		vtoe_fd_set_internal(c->fd_retired, false);
		REAL(close)(c->fd_retired);
		c->fd_retired = -1;
	}
	return res;
}

uint32_t vtoe_conn_rx_bytes(struct vtoe_conn *c)
{
	int64_t used;

	pthread_mutex_lock(&c->rx_lock);
	used = vtoe_ring_used(atomic_load_explicit(&c->rx->head, ACQ), c->rx_tail, vtoe_cap(c));
	pthread_mutex_unlock(&c->rx_lock);
	return used < 0 ? 0 : (uint32_t)used;
}

uint32_t vtoe_conn_tx_bytes(struct vtoe_conn *c)
{
	int64_t used;

	pthread_mutex_lock(&c->tx_lock);
	used = vtoe_ring_used(atomic_load_explicit(&c->tx->head, RLX),
			      atomic_load_explicit(&c->tx->tail, ACQ), vtoe_cap(c));
	pthread_mutex_unlock(&c->tx_lock);
	return used < 0 ? 0 : (uint32_t)used;
}

/* SO_ERROR: the pending error, cleared by reading it. */
int vtoe_conn_take_error(struct vtoe_conn *c)
{
	if (vtoe_conn_reset_seen(c) && vtoe_conn_report_reset(c))
		return vtoe_conn_reset_errno(c);
	/* The reset that answered a write after the peer's FIN (TCP's CLOSE_WAIT): EPIPE, once
	 * it has arrived, which the kernel's error on our fd says. */
	if ((atomic_load(&c->flags) & VTOE_CF_RST_ASKED) &&
	    !(atomic_load(&c->flags) & VTOE_CF_RESET_REPORTED)) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (REAL(getsockopt)(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err) {
			atomic_fetch_or(&c->flags, VTOE_CF_RESET_REPORTED);
			return EPIPE;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Readiness for poll, select and epoll (vtoe_poll.c, vtoe_epoll.c)                            */
/* ------------------------------------------------------------------------------------------ */
/* Data to read.  Its first line is fetched now: the read that follows (after the caller's
 * event dispatch) then copies from cache instead of waiting on the producer's core. */
bool vtoe_conn_rx_ready(struct vtoe_conn *c)
{
	uint64_t tail = atomic_load_explicit(&c->rx->tail, RLX);
	uint64_t geo, base;
	int area;

	uint64_t head = atomic_load_explicit(&c->rx->head, ACQ);

	if (head == tail || (vtoe_unlikely(vtoe_rx_lowat(c) > 1) && !vtoe_rx_enough(c, head, tail)))
		return false;
	geo = atomic_load_explicit(&c->rx->geo, RLX); /* head's line: no further miss */
	base = atomic_load_explicit(&c->rx->base, RLX);
	area = vtoe_geo_area(geo, tail);
	if (vtoe_likely(area == 0))
		__builtin_prefetch(c->rx_area[0] + vtoe_area_index(tail, base, 0, c->size));
	else if (vtoe_geo_bytes(c, geo, area))
		__builtin_prefetch(c->rx_area[area] + vtoe_area_index(tail, base, area, vtoe_geo_bytes(c, geo, area)));
	return true;
}

/*
 * What poll would say of our fd, from the rings.  An established connection with nothing
 * unusual is answered from the indices alone: data to read, room to write.  After a FIN, a
 * reset, a shutdown or a hang-up the kernel's answer for the socketpair is the one that matches
 * TCP (the conformance suites check it); only its POLLIN is corrected, since a stale doorbell
 * byte can make it readable with nothing to read.  krev is the kernel's answer if the caller
 * has one, else -1.
 */
short vtoe_conn_poll(struct vtoe_conn *c, short events, int krev)
{
	const short always = POLLHUP | POLLERR | POLLNVAL;
	unsigned int fl = atomic_load(&c->flags);
	int64_t room = 0;
	short rev = 0;

	/* The tx ring's consumer-written line is read only for POLLOUT: a reader that polls for
	 * input alone does not pull it from the peer's cache on every call. */
	if (events & POLLOUT)
		room = atomic_load_explicit(&c->tx->rd_shut, ACQ) ? -1 : vtoe_tx_room_unlocked(c);
	if (!(fl & VTOE_CF_UNUSUAL) && room >= 0 && !atomic_load_explicit(&c->rx->fin, ACQ) &&
	    !atomic_load_explicit(&c->rx->reset, ACQ) &&
	    (krev < 0 || !(krev & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)))) {
		if (vtoe_conn_rx_ready(c))
			rev |= POLLIN;
		if (room > 0)
			rev |= POLLOUT;
		return rev & (events | always);
	}
	if (krev < 0) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN | POLLOUT | POLLRDHUP | POLLPRI };

		krev = vtoe_kpoll(&p, 1, 0) == 1 ? p.revents : 0;
	}
	if (krev & (POLLHUP | POLLERR))
		atomic_fetch_or(&c->flags, VTOE_CF_PEER_GONE); /* as vtoe_peer_hup */
	rev = (short)(krev & ~POLLIN);
	/* The peer's FIN shows at once with RDHUP (and HUP once we shut writing too), as TCP's
	 * does, though our fd shows it only after the peer shut its end: an EPOLLET waiter gets
	 * one edge for it, not two. */
	if (atomic_load_explicit(&c->rx->fin, ACQ))
		rev |= POLLIN | POLLRDHUP | ((fl & VTOE_CF_WR_SHUT) ? POLLHUP : 0);
	/* Readable: data in the ring, or the end of the stream as the kernel shows it (the FIN
	 * or reset reaches the fd together with RDHUP, HUP and ERR, as TCP's do). */
	if (vtoe_conn_rx_ready(c) || ((krev & POLLIN) && (krev & (POLLRDHUP | POLLHUP | POLLERR))))
		rev |= POLLIN;
	return rev & (events | always);
}

/* About to sleep in the kernel on our fd: a doorbell for new data; for room to write, a ring
 * that grows or else an unwritable fd (and a time to look again); and no stale byte that would
 * wake the sleeper at once.  The caller looks at the rings again after this. */
void vtoe_conn_sleep_prepare(struct vtoe_conn *c, short events, uint64_t *wake_ns)
{
	if (events & POLLOUT) {
		pthread_mutex_lock(&c->tx_lock);
		vtoe_tx_sync(c);
		if (vtoe_tx_room_now(c) == 0 && !vtoe_tx_grow(c, wake_ns))
			vtoe_tx_block(c);
		pthread_mutex_unlock(&c->tx_lock);
	}
	if (!(events & (POLLIN | POLLRDHUP | POLLPRI)))
		return;
	pthread_mutex_lock(&c->rx_lock);
	c->rx_tail = atomic_load_explicit(&c->rx->tail, RLX);
	vtoe_rx_arm(c);
	/* data below SO_RCVLOWAT does not wake: its doorbell goes, the next one will */
	if (!vtoe_rx_wakes(c))
		vtoe_drain_doorbell(c);
	pthread_mutex_unlock(&c->rx_lock);
}
