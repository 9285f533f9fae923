/*
 * Hostile input: a connection region as the peer process (or a hostile agent) can write it.
 * Both ends map the same sealed memfd, and the peer may write any header field or index at any
 * time.  The harness builds a region from the input, has the shim map it (vtoe_conn_map, which
 * checks its geometry), then plays the peer: between the shim's own calls (recv, peek, send,
 * poll readiness, the preparation for a sleep, shutdown, close) it writes fields the input
 * picks, rings or drains the doorbells, or goes away.
 *
 * The shim's mapping has a PROT_NONE page on each side (vtoe_ring.c is compiled with mmap and
 * munmap renamed to the two functions below), and the buffers it copies to and from are heap
 * blocks of their exact size: any access outside either is a crash.  A loop without end is a
 * libFuzzer timeout.
 */
#include "vtoe.h"

#include <fcntl.h>
#include <sanitizer/asan_interface.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096u
#define MAX_PAGES 40u /* 151552 bytes: 8 KiB rings with 32 KiB large and bulk areas */
#define MAX_OPS 32

/* ------------------------------------------------------------------------------------------ */
/* The shim's mmap and munmap (vtoe_ring.c): the region between two guard pages.               */
/* ------------------------------------------------------------------------------------------ */
static size_t vtoe_span(size_t len)
{
	return (len + PAGE - 1) & ~(size_t)(PAGE - 1);
}

void *vtoe_fuzz_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	unsigned char *base, *p;

	(void)addr;
	base = mmap(NULL, vtoe_span(len) + 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		return MAP_FAILED;
	p = mmap(base + PAGE, len, prot, flags | MAP_FIXED, fd, off);
	if (p == MAP_FAILED) {
		munmap(base, vtoe_span(len) + 2 * PAGE);
		return MAP_FAILED;
	}
	/* The rest of the last page is mapped but is not the region's. */
	ASAN_POISON_MEMORY_REGION(p + len, vtoe_span(len) - len);
	return p;
}

int vtoe_fuzz_munmap(void *addr, size_t len)
{
	ASAN_UNPOISON_MEMORY_REGION((char *)addr + len, vtoe_span(len) - len);
	return munmap((char *)addr - PAGE, vtoe_span(len) + 2 * PAGE);
}

/* ------------------------------------------------------------------------------------------ */
/* Input                                                                                        */
/* ------------------------------------------------------------------------------------------ */
struct in {
	const uint8_t *p;
	size_t n;
};

static uint64_t take(struct in *in, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes && in->n; i++, in->p++, in->n--)
		v |= (uint64_t)*in->p << (8 * i);
	return v;
}

/* ------------------------------------------------------------------------------------------ */
/* Regions: one memfd per size (and sealed or not), reused, with the peer's own mapping.       */
/* ------------------------------------------------------------------------------------------ */
struct memfd {
	int fd;
	unsigned char *map; /* the peer's view */
	size_t len;
};
static struct memfd memfds[2][MAX_PAGES + 1][2]; /* [sealed][pages][ragged] */

static struct memfd *region_file(unsigned pages, bool sealed, bool ragged)
{
	struct memfd *m = &memfds[sealed][pages][ragged];

	if (m->map)
		return m;
	m->len = (size_t)pages * PAGE + (ragged ? 512 : 0);
	m->fd = memfd_create("vtoe-fuzz-region", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (m->fd < 0 || ftruncate(m->fd, (off_t)m->len) < 0 ||
	    (sealed && fcntl(m->fd, F_ADD_SEALS, VTOE_REGION_SEALS) < 0))
		abort();
	m->map = mmap(NULL, m->len, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
	if (m->map == MAP_FAILED)
		abort();
	return m;
}

/* Fields the peer may write, by offset and width. */
#define RF(f) { offsetof(struct vtoe_conn_region, f), sizeof(((struct vtoe_conn_region *)0)->f) }
#define RING(i, f) { offsetof(struct vtoe_conn_region, ring) + (i) * sizeof(struct vtoe_ring_ctl) + \
		     offsetof(struct vtoe_ring_ctl, f), sizeof(((struct vtoe_ring_ctl *)0)->f) }
#define RINGF(i) RING(i, head), RING(i, fin_at), RING(i, geo), RING(i, fin), RING(i, reset), \
		 RING(i, tx_waiting), RING(i, rx_armed), RING(i, rd_shut), RING(i, tail), RING(i, wakes), RING(i, base), \
		 RING(i, sndbuf), RING(i, rcvbuf)
static const struct { size_t off, width; } fields[] = {
	RF(magic), RF(abi), RF(ring_size), RF(data_offset), RF(cid), RF(ring_large), RF(ring_auto), RINGF(0), RINGF(1),
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static uint64_t peek_field(const unsigned char *map, unsigned f)
{
	const void *at = map + fields[f].off;

	return fields[f].width == 8 ? __atomic_load_n((const uint64_t *)at, __ATOMIC_ACQUIRE)
				    : __atomic_load_n((const uint32_t *)at, __ATOMIC_ACQUIRE);
}

static void poke_field(unsigned char *map, unsigned f, uint64_t v)
{
	void *at = map + fields[f].off;

	if (fields[f].width == 8)
		__atomic_store_n((uint64_t *)at, v, __ATOMIC_RELEASE);
	else
		__atomic_store_n((uint32_t *)at, (uint32_t)v, __ATOMIC_RELEASE);
}

/* One write by the peer: a raw value, a nudge, or another field's value nudged (head = tail
 * + d makes a plausible fill, which raw values rarely are). */
static void peer_write(struct in *in, unsigned char *map, uint32_t ring_size)
{
	unsigned f = (unsigned)take(in, 1) % NFIELDS, mode = (unsigned)take(in, 1);
	int64_t d = (int16_t)take(in, 2);
	uint64_t v;

	switch (mode % 4) {
	case 0:
		v = take(in, fields[f].width);
		break;
	case 1:
		v = peek_field(map, f) + (uint64_t)d;
		break;
	case 2:
		v = peek_field(map, (unsigned)take(in, 1) % NFIELDS) + (uint64_t)d;
		break;
	default:
		v = peek_field(map, f) + (uint64_t)d * ring_size;
		break;
	}
	poke_field(map, f, v);
}

/* ------------------------------------------------------------------------------------------ */
/* One connection                                                                               */
/* ------------------------------------------------------------------------------------------ */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	signal(SIGPIPE, SIG_IGN); /* the shim raises it for EPIPE, as the kernel would */
	/* No agent: BELL requests through one fail at once. */
	snprintf(vtoe_cfg.agent_path, sizeof(vtoe_cfg.agent_path), "/nonexistent/vtoe-fuzz.sock");
	vtoe_cfg.agent_timeout_ms = 0; /* a doorbell that never comes is waited for once, 10 ms */
	/* Warnings go through the formatting code, into /dev/null. */
	setenv("VTOE_LOG_FILE", "/dev/null", 0);
	setenv("VTOE_LOG_LEVEL", "debug", 0);
	vtoe_log_init();
	return 0;
}

static unsigned char *user_buf(size_t len)
{
	unsigned char *b = malloc(len ? len : 1);

	memset(b, 0xa5, len);
	return b;
}

/* An iovec of up to three parts over a heap block of exactly len bytes. */
static int split_iov(struct in *in, unsigned char *buf, size_t len, struct iovec iov[3])
{
	int cnt = 1 + (int)(take(in, 1) % 3);
	size_t at = 0;

	for (int i = 0; i < cnt; i++) {
		size_t part = i == cnt - 1 ? len - at : (size_t)take(in, 2) % (len - at + 1);

		iov[i].iov_base = buf + at;
		iov[i].iov_len = part;
		at += part;
	}
	return cnt;
}

static void op_recv(struct in *in, struct vtoe_conn *c, bool blocking)
{
	static const int extra[] = { 0, MSG_PEEK, MSG_TRUNC, MSG_WAITALL, MSG_PEEK | MSG_TRUNC };
	size_t len = (size_t)take(in, 2) % (3 * 65536u / 2);
	int flags = extra[take(in, 1) % 5];
	unsigned char *buf = user_buf(len);
	struct iovec iov[3];
	int cnt = split_iov(in, buf, len, iov);
	uint64_t tail = c->rx_tail;
	ssize_t r;

	if (blocking) {
		atomic_store(&c->opts.rcvtimeo_us, 20 + take(in, 1)); /* bounded: SO_RCVTIMEO */
		atomic_store(&c->nonblock, 0);
	} else {
		flags |= MSG_DONTWAIT;
	}
	r = vtoe_conn_recv(c, iov, cnt, flags);
	if (r > (ssize_t)len && !(flags & MSG_TRUNC))
		abort(); /* more than asked for */
	/* Consumed what it returned (unless shared: another process may have read meanwhile, and
	 * the shim takes the ring's tail). */
	if (r >= 0 && !(flags & MSG_PEEK) && c->gen == atomic_load(&vtoe_fork_gen) &&
	    c->rx_tail - tail != (uint64_t)r)
		abort();
	if (r > (ssize_t)vtoe_ring_capacity(c->size, c->large))
		abort(); /* more than the ring holds */
	atomic_store(&c->opts.rcvtimeo_us, 0);
	free(buf);
}

static void op_send(struct in *in, struct vtoe_conn *c, bool blocking)
{
	size_t len = (size_t)take(in, 2) % (3 * 65536u / 2);
	unsigned char *buf = user_buf(len);
	struct iovec iov[3];
	int cnt = split_iov(in, buf, len, iov);
	int flags = MSG_NOSIGNAL;
	ssize_t r;

	if (blocking) {
		atomic_store(&c->opts.sndtimeo_us, 20 + take(in, 1));
		atomic_store(&c->nonblock, 0);
	} else {
		flags |= MSG_DONTWAIT;
	}
	r = vtoe_conn_send(c, iov, cnt, flags);
	if (r > (ssize_t)len)
		abort();
	atomic_store(&c->opts.sndtimeo_us, 0);
	free(buf);
}

static short events_of(uint64_t v)
{
	return (short)((v & 1 ? POLLIN : 0) | (v & 2 ? POLLOUT : 0) | (v & 4 ? POLLRDHUP : 0) |
		       (v & 8 ? POLLPRI : 0));
}

/* The peer's own doorbell actions, on the two socketpairs: ours (app fd, the bell the peer
 * holds) and the peer's (its app fd, our bell). */
static void op_peer_bell(struct in *in, int *our_bell_at_peer, int peer_app)
{
	char buf[4096];
	uint64_t v = take(in, 1);

	switch (v % 4) {
	case 0: /* ring: bytes readable on our fd */
		if (*our_bell_at_peer >= 0)
			(void)send(*our_bell_at_peer, buf, 1 + v / 4 % 8, MSG_DONTWAIT | MSG_NOSIGNAL);
		break;
	case 1: /* drain our filler and fuse */
		if (*our_bell_at_peer >= 0)
			while (recv(*our_bell_at_peer, buf, sizeof(buf), MSG_DONTWAIT) > 0)
				;
		break;
	case 2: /* filler of its own, for us to drain */
		(void)send(peer_app, buf, 1 + (size_t)take(in, 2) % sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);
		break;
	default: /* the peer is gone: our fd hangs up */
		if (*our_bell_at_peer >= 0)
			close(*our_bell_at_peer);
		*our_bell_at_peer = -1;
		break;
	}
}

/* The peer as the protocol has it: publish bytes into our rx ring (ringing us if we armed),
 * or consume from our tx ring (draining our filler if we wait).  Wrong amounts are the point:
 * nothing stops the fuzzer from publishing more than fits. */
static void op_peer_io(struct in *in, struct vtoe_conn *c, int our_bell_at_peer)
{
	uint64_t k = take(in, 2);
	char buf[4096];

	k *= 1 + take(in, 1) % 4;

	if (take(in, 1) & 1) {
		atomic_fetch_add(&c->rx->head, k);
		if (atomic_exchange(&c->rx->rx_armed, 0) == 1 && our_bell_at_peer >= 0)
			(void)send(our_bell_at_peer, "w", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	} else {
		atomic_fetch_add(&c->tx->tail, k);
		if (atomic_exchange(&c->tx->tx_waiting, 0) == 1 && our_bell_at_peer >= 0)
			while (recv(our_bell_at_peer, buf, sizeof(buf), MSG_DONTWAIT) > 0)
				;
	}
}

/* State the shim reaches by other paths: kernel-watched, edge-triggered, nonblocking, a send
 * buffer the application sized, linger, a fork sharing it. */
static void op_state(struct in *in, struct vtoe_conn *c)
{
	uint64_t v = take(in, 1);

	switch (v % 6) {
	case 0:
		atomic_fetch_xor(&c->flags, VTOE_CF_KWATCH);
		break;
	case 1:
		atomic_fetch_xor(&c->flags, VTOE_CF_EDGE);
		break;
	case 2:
		atomic_store(&c->nonblock, !atomic_load(&c->nonblock));
		break;
	case 3:
		c->opts.sndbuf = (int)take(in, 2) * 4;
		break;
	case 4:
		c->opts.linger.l_onoff = (int)(v >> 3) & 1;
		c->opts.linger.l_linger = 0;
		break;
	default:
		c->gen = atomic_load(&vtoe_fork_gen) + (unsigned)((v >> 3) & 1);
		break;
	}
}

/* The large areas a region may have; 8 KiB is below an 8 KiB ring's: invalid there. */
static const uint32_t larges[] = { 0, 16384, 32768, 8192 };

/*
 * Input: cfg (16 bits: sealed, ragged file end, raw ring size, 8 KiB rings, raw side, side,
 * raw large area, large area choice (2), geo at the start index, no bell, verbs fabric, region
 * fd not a file, raw fill for ends without buffers), the file's pages, then the fields cfg says
 * are raw, cid, the start index,
 * up to 3 peer writes before the map, and up to MAX_OPS operations.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	uint64_t cfg = take(&in, 2);
	unsigned pages = 1 + (unsigned)take(&in, 1) % MAX_PAGES;
	struct memfd *m = region_file(pages, !(cfg & 1), cfg & 2);
	struct vtoe_ctl_rep rep = { .magic = VTOE_CTL_MAGIC, .abi = VTOE_ABI_VERSION };
	struct vtoe_conn_region *reg = (struct vtoe_conn_region *)m->map;
	struct vtoe_conn *c = calloc(1, sizeof(*c));
	uint32_t large;
	uint64_t base;
	int app[2], peer[2], memfd;
	bool mapped;

	/* The agent's reply says the ring size and side; the region's header says the rest. */
	rep.ring_size = cfg & 4 ? (uint32_t)take(&in, 4) : 4096u << ((cfg >> 3) & 1);
	rep.side = cfg & 16 ? (uint32_t)take(&in, 4) : (cfg >> 5) & 1;
	rep.cid = take(&in, 8);
	large = cfg & 64 ? (uint32_t)take(&in, 4) : larges[(cfg >> 7) & 3];

	memset(m->map, 0, PAGE);
	reg->magic = VTOE_REGION_MAGIC;
	reg->abi = VTOE_ABI_VERSION;
	reg->ring_size = rep.ring_size;
	reg->data_offset = VTOE_REGION_DATA_OFFSET;
	reg->cid = rep.cid;
	reg->ring_large = large;
	reg->ring_auto = cfg & 8192 ? (uint32_t)take(&in, 4) : large;
	/* Indices start anywhere: a long-lived connection, or one near the wrap. */
	base = take(&in, 8);
	for (int i = 0; i < 2; i++) {
		atomic_store(&reg->ring[i].head, base);
		atomic_store(&reg->ring[i].tail, base);
		atomic_store(&reg->ring[i].fin_at, base);
		/* a move's position at the start index, or none */
		atomic_store(&reg->ring[i].geo, cfg & 512 ? vtoe_geo(base, 0, 0, 0) : 0);
		atomic_store(&reg->ring[i].rx_armed, 1); /* as the agent makes it */
	}
	for (unsigned n = (unsigned)take(&in, 1) % 4; n; n--)
		peer_write(&in, m->map, rep.ring_size);

	/* The app fd pair (ours, and its bell at the peer), the peer's pair (its app fd, our copy
	 * of its bell), as the agent makes them: a small send buffer and a fuse byte each. */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, app) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, peer) < 0)
		abort();
	for (int i = 0; i < 2; i++) {
		int fd = i ? peer[0] : app[0], v = VTOE_BELL_SNDBUF;

		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
		(void)send(fd, "!", VTOE_BELL_FUSE, MSG_DONTWAIT);
	}
	c->fd = app[0];
	c->fd_retired = -1;
	c->memfd = -1;
	c->bell = peer[1];
	if (cfg & 1024) { /* none: the agent would ring it (VTOE_OP_BELL) */
		close(peer[1]);
		c->bell = -1;
	}
	c->fabric = cfg & 2048 ? VTOE_FABRIC_VERBS : VTOE_FABRIC_SHM;
	c->gen = atomic_load(&vtoe_fork_gen);
	pthread_mutex_init(&c->rx_lock, NULL);
	pthread_mutex_init(&c->tx_lock, NULL);
	atomic_store(&c->nonblock, 1);

	memfd = cfg & 4096 ? app[0] : m->fd; /* not a regular file at all */
	mapped = vtoe_conn_map(c, memfd, &rep) == 0;
	if (mapped) {
		/* What the map promised: a ring size and large area the header and reply agree on,
		 * within the file. */
		if (c->size != rep.ring_size || !vtoe_ring_size_valid(c->size) ||
		    !vtoe_ring_large_valid(c->large, c->size) ||
		    vtoe_region_bytes(c->size, c->large) > c->map_len || c->side > 1)
			abort();
		for (int n = 0; n < MAX_OPS && in.n; n++) {
			switch (take(&in, 1) % 13) {
			case 0:
				peer_write(&in, m->map, rep.ring_size);
				break;
			case 1:
				op_peer_io(&in, c, app[1]);
				break;
			case 2:
				op_recv(&in, c, false);
				break;
			case 3:
				op_send(&in, c, false);
				break;
			case 4: {
				short ev = events_of(take(&in, 1));
				uint64_t kr = take(&in, 1); /* the kernel's answer, if the caller has one */
				short rev = vtoe_conn_poll(c, ev, kr & 1 ? events_of(kr >> 1) : -1);

				if (rev & ~(ev | POLLHUP | POLLERR | POLLNVAL))
					abort();
				break;
			}
			case 5: {
				uint64_t wake_ns = 0;

				vtoe_conn_sleep_prepare(c, events_of(take(&in, 1)), &wake_ns);
				break;
			}
			case 6:
				op_recv(&in, c, true);
				break;
			case 7:
				op_send(&in, c, true);
				break;
			case 8:
				(void)vtoe_conn_rx_bytes(c);
				(void)vtoe_conn_tx_bytes(c);
				(void)vtoe_conn_rx_ready(c);
				(void)vtoe_conn_take_error(c);
				break;
			case 9:
				(void)vtoe_conn_shutdown(c, (int)(take(&in, 1) % 4));
				break;
			case 10:
				op_peer_bell(&in, &app[1], peer[0]);
				break;
			case 11:
				op_state(&in, c);
				break;
			default:
				(void)vtoe_conn_drop_bell(c);
				break;
			}
		}
		/* Closes our fd and bell and unmaps. */
		(void)vtoe_conn_close(c, c->gen != atomic_load(&vtoe_fork_gen));
	} else {
		close(app[0]);
		if (c->bell >= 0)
			close(c->bell);
		if (c->reg)
			abort(); /* refused, yet left mapped */
	}
	if (app[1] >= 0)
		close(app[1]);
	close(peer[0]);
	pthread_mutex_destroy(&c->rx_lock);
	pthread_mutex_destroy(&c->tx_lock);
	free(c);
	return 0;
}
