/*
 * vtoe_sockopt.c - socket options, fcntl, ioctl and addresses of offloaded sockets.
 *
 * The fd under an offloaded socket is AF_UNIX, so every TCP-level question is answered here.
 * Values start as the kernel TCP socket had them just before it was replaced (so inherited
 * and pre-connect settings, and the kernel's own defaults, carry over).
 */
#include "vtoe.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/time.h>

struct vtoe_optdef {
	int level, name;
	bool boolean; /* get returns 0/1 whatever was set */
	int min, max; /* accepted by set when min < max */
};

static const struct vtoe_optdef vtoe_optdefs[VTOE_OPT__COUNT] = {
	[VTOE_OPT_REUSEADDR] = { SOL_SOCKET, SO_REUSEADDR, true, 0, 0 },
	[VTOE_OPT_REUSEPORT] = { SOL_SOCKET, SO_REUSEPORT, true, 0, 0 },
	[VTOE_OPT_KEEPALIVE] = { SOL_SOCKET, SO_KEEPALIVE, true, 0, 0 },
	[VTOE_OPT_OOBINLINE] = { SOL_SOCKET, SO_OOBINLINE, true, 0, 0 },
	[VTOE_OPT_PRIORITY] = { SOL_SOCKET, SO_PRIORITY, false, 0, 0 },
	[VTOE_OPT_RCVLOWAT] = { SOL_SOCKET, SO_RCVLOWAT, false, 0, 0 },
	[VTOE_OPT_DONTROUTE] = { SOL_SOCKET, SO_DONTROUTE, true, 0, 0 },
	[VTOE_OPT_BROADCAST] = { SOL_SOCKET, SO_BROADCAST, true, 0, 0 },
	[VTOE_OPT_MARK] = { SOL_SOCKET, SO_MARK, false, 0, 0 },
	[VTOE_OPT_TIMESTAMP] = { SOL_SOCKET, SO_TIMESTAMP, true, 0, 0 },
	[VTOE_OPT_BUSY_POLL] = { SOL_SOCKET, SO_BUSY_POLL, false, 0, 0 },
	[VTOE_OPT_TCP_NODELAY] = { IPPROTO_TCP, TCP_NODELAY, true, 0, 0 },
	[VTOE_OPT_TCP_CORK] = { IPPROTO_TCP, TCP_CORK, true, 0, 0 },
	[VTOE_OPT_TCP_QUICKACK] = { IPPROTO_TCP, TCP_QUICKACK, true, 0, 0 },
	[VTOE_OPT_TCP_KEEPIDLE] = { IPPROTO_TCP, TCP_KEEPIDLE, false, 1, 32767 },
	[VTOE_OPT_TCP_KEEPINTVL] = { IPPROTO_TCP, TCP_KEEPINTVL, false, 1, 32767 },
	[VTOE_OPT_TCP_KEEPCNT] = { IPPROTO_TCP, TCP_KEEPCNT, false, 1, 127 },
	[VTOE_OPT_TCP_USER_TIMEOUT] = { IPPROTO_TCP, TCP_USER_TIMEOUT, false, 0, 0x7fffffff },
	[VTOE_OPT_TCP_MAXSEG] = { IPPROTO_TCP, TCP_MAXSEG, false, 0, 0 },
	[VTOE_OPT_TCP_SYNCNT] = { IPPROTO_TCP, TCP_SYNCNT, false, 1, 127 },
	[VTOE_OPT_TCP_LINGER2] = { IPPROTO_TCP, TCP_LINGER2, false, 0, 0 },
	[VTOE_OPT_TCP_DEFER_ACCEPT] = { IPPROTO_TCP, TCP_DEFER_ACCEPT, false, 0, 0 },
	[VTOE_OPT_TCP_WINDOW_CLAMP] = { IPPROTO_TCP, TCP_WINDOW_CLAMP, false, 0, 0 },
	[VTOE_OPT_TCP_NOTSENT_LOWAT] = { IPPROTO_TCP, TCP_NOTSENT_LOWAT, false, 0, 0 },
	[VTOE_OPT_IP_TOS] = { IPPROTO_IP, IP_TOS, false, 0, 0 },
	[VTOE_OPT_IP_TTL] = { IPPROTO_IP, IP_TTL, false, 0, 0 },
	[VTOE_OPT_IPV6_V6ONLY] = { IPPROTO_IPV6, IPV6_V6ONLY, true, 0, 0 },
	[VTOE_OPT_IPV6_TCLASS] = { IPPROTO_IPV6, IPV6_TCLASS, false, 0, 0 },
	[VTOE_OPT_IPV6_UNICAST_HOPS] = { IPPROTO_IPV6, IPV6_UNICAST_HOPS, false, 0, 0 },
};

static int vtoe_optdef_find(int level, int name)
{
	for (int i = 0; i < VTOE_OPT__COUNT; i++)
		if (vtoe_optdefs[i].level == level && vtoe_optdefs[i].name == name)
			return i;
	return -1;
}

static long long vtoe_tv_to_us(const struct timeval *tv)
{
	if (tv->tv_sec < 0)
		return 0;
	return (long long)tv->tv_sec * 1000000 + tv->tv_usec;
}

static uint32_t vtoe_opt_value(const struct vtoe_opts *o, int i)
{
	return o->err[i] || o->val[i] < 0 ? 0 : (uint32_t)o->val[i];
}

/* What the verbs agent needs to judge a peer that falls silent, into our tx ring's header:
 * TCP_USER_TIMEOUT and keepalive, as the kernel would apply them (vtoe_abi.h); and our
 * SO_SNDBUF and SO_RCVBUF, into the ring each bounds (vtoe_large_fill(); the verbs agent's
 * send buffer). */
static void vtoe_opts_publish(struct vtoe_conn *c)
{
	const struct vtoe_opts *o = &c->opts;
	struct vtoe_ring_ctl *tx = c->tx;
	bool keepalive = vtoe_opt_value(o, VTOE_OPT_KEEPALIVE) != 0;

	if (!tx)
		return;
	/* Rarely written, so plain (sequentially consistent) stores. */
	atomic_store(&tx->user_timeout_ms, vtoe_opt_value(o, VTOE_OPT_TCP_USER_TIMEOUT));
	atomic_store(&tx->keep_intvl_s, vtoe_opt_value(o, VTOE_OPT_TCP_KEEPINTVL));
	atomic_store(&tx->keep_cnt, vtoe_opt_value(o, VTOE_OPT_TCP_KEEPCNT));
	atomic_store(&tx->keep_idle_s, keepalive ? vtoe_opt_value(o, VTOE_OPT_TCP_KEEPIDLE) : 0);
	/* Buffers only once set: the agent wrote what was set before the connection existed,
	 * which a process that inherited the socket over exec does not know. */
	if (o->sndbuf)
		atomic_store(&tx->sndbuf, (uint32_t)o->sndbuf);
	if (o->rcvbuf)
		atomic_store(&c->rx->rcvbuf, (uint32_t)o->rcvbuf);
}

static void vtoe_opt_read(struct vtoe_opts *o, int kfd, int i)
{
	socklen_t l = sizeof(int);
	int v = 0;

	if (REAL(getsockopt)(kfd, vtoe_optdefs[i].level, vtoe_optdefs[i].name, &v, &l) == 0) {
		o->val[i] = v;
		o->err[i] = 0;
	} else {
		o->err[i] = errno;
	}
}

/* Values the kernel works out for each connection (its path, its traffic, a reflected TOS),
 * so two connections made alike can still differ in them.  (An IPv4 socket refuses the IPv6
 * ones, always alike.) */
static bool vtoe_opt_per_connection(int i, int family)
{
	switch (i) {
	case VTOE_OPT_TCP_MAXSEG:
	case VTOE_OPT_TCP_QUICKACK:
	case VTOE_OPT_TCP_WINDOW_CLAMP:
	case VTOE_OPT_IP_TOS:
	case VTOE_OPT_IP_TTL:
		return true;
	case VTOE_OPT_IPV6_TCLASS:
	case VTOE_OPT_IPV6_UNICAST_HOPS:
		return family == AF_INET6;
	default:
		return false;
	}
}

/*
 * Most connections are made alike: from a socket fresh from socket(), or accepted from a
 * listener that was.  Such sockets hold the kernel's defaults but for what the program set on
 * them, or on the listener (which accepted sockets inherit), so each thread reads the defaults
 * once a second (they follow sysctls) rather than some 30 calls per connection, then reads
 * what was set (opts_touched) and what the kernel works out per connection.  A socket set
 * anything we cannot name, or made before a fork or exec (where it could be set unseen), is
 * read in full.
 */
#define VTOE_OPTS_MEMO_NS 1000000000ull
#define VTOE_TOUCHED_BUFS (1ull << 59)   /* SO_RCVBUF, SO_SNDBUF: as the program set them */
#define VTOE_TOUCHED_LINGER (1ull << 60)
#define VTOE_TOUCHED_TIMEO (1ull << 61) /* SO_RCVTIMEO, SO_SNDTIMEO */
#define VTOE_TOUCHED_OTHER (1ull << 62) /* anything else that could change what is read */
_Static_assert(VTOE_OPT__COUNT < 59, "option bits overlap the others");

struct vtoe_opts_memo {
	int family;
	uint64_t at_ns;   /* 0: empty */
	uint64_t touched; /* what had been set on the socket it was read from: not defaults */
	int val[VTOE_OPT__COUNT], err[VTOE_OPT__COUNT];
	struct linger linger;
	long long rcvtimeo_us, sndtimeo_us;
};
static __thread struct vtoe_opts_memo vtoe_opts_memo[2]; /* [0] connected, [1] accepted */

/* What a setsockopt(level, name) may change among what vtoe_opts_capture reads. */
static uint64_t vtoe_opt_touches(int level, int name)
{
	int i = vtoe_optdef_find(level, name);

	if (level == SOL_SOCKET && (name == SO_RCVBUF || name == SO_SNDBUF ||
				    name == SO_RCVBUFFORCE || name == SO_SNDBUFFORCE))
		return VTOE_TOUCHED_BUFS; /* the window clamp follows too, read for each connection */
	if (level == SOL_SOCKET && name == SO_LINGER)
		return VTOE_TOUCHED_LINGER;
	if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO ||
				    name == SO_RCVTIMEO_NEW || name == SO_SNDTIMEO_NEW))
		return VTOE_TOUCHED_TIMEO;
	if (i == VTOE_OPT_IP_TOS) /* the kernel sets the priority from the TOS */
		return 1ull << i | 1ull << VTOE_OPT_PRIORITY;
	return i >= 0 ? 1ull << i : VTOE_TOUCHED_OTHER;
}

/* The memo for connections made from origin, or NULL when they cannot share one. */
static struct vtoe_opts_memo *vtoe_opts_memo_for(struct vtoe_sock *origin, int family,
						 bool *hit)
{
	struct vtoe_opts_memo *m;

	*hit = false;
	if (!origin || !origin->made_here || origin->gen != atomic_load(&vtoe_fork_gen) ||
	    (atomic_load(&origin->opts_touched) & VTOE_TOUCHED_OTHER))
		return NULL;
	m = &vtoe_opts_memo[atomic_load(&origin->kind) == VTOE_KIND_LISTENER];
	*hit = m->at_ns && vtoe_coarse_ns() - m->at_ns < VTOE_OPTS_MEMO_NS && m->family == family;
	if (!*hit) {
		m->family = family;
		m->at_ns = 0; /* filled once read */
	}
	return m;
}

/* SO_RCVBUF and SO_SNDBUF as the program set them on the socket (or on its listener). */
static void vtoe_opts_capture_bufs(struct vtoe_opts *o, int kfd)
{
	int v = 0;
	socklen_t l = sizeof(v);

	if (REAL(getsockopt)(kfd, SOL_SOCKET, SO_RCVBUF, &v, &l) == 0 && v > 0)
		o->rcvbuf = v / 2;
	l = sizeof(v);
	if (REAL(getsockopt)(kfd, SOL_SOCKET, SO_SNDBUF, &v, &l) == 0 && v > 0)
		o->sndbuf = v / 2;
}

/* Read the kernel socket's options before it is replaced by the offloaded one; origin: the
 * socket the connection was made from (vtoe_opts_memo_for). */
void vtoe_opts_capture(struct vtoe_conn *c, int kfd, int family, struct vtoe_sock *origin)
{
	struct vtoe_opts *o = &c->opts;
	bool hit;
	struct vtoe_opts_memo *m = vtoe_opts_memo_for(origin, family, &hit);
	/* what was set on the connecting socket, or on the listener */
	uint64_t touched = m ? atomic_load(&origin->opts_touched) : 0;
	uint64_t reread = hit ? touched | m->touched : ~0ull;
	struct timeval tv;
	socklen_t l;

	if (hit) {
		memcpy(o->val, m->val, sizeof(o->val));
		memcpy(o->err, m->err, sizeof(o->err));
		o->linger = m->linger;
		atomic_store(&o->rcvtimeo_us, m->rcvtimeo_us);
		atomic_store(&o->sndtimeo_us, m->sndtimeo_us);
	}
	for (int i = 0; i < VTOE_OPT__COUNT; i++)
		if ((reread & (1ull << i)) || vtoe_opt_per_connection(i, family))
			vtoe_opt_read(o, kfd, i);
	l = sizeof(o->congestion) - 1; /* a route can choose it */
	if (REAL(getsockopt)(kfd, IPPROTO_TCP, TCP_CONGESTION, o->congestion, &l) < 0)
		strcpy(o->congestion, "cubic");
	l = sizeof(o->linger);
	if ((reread & VTOE_TOUCHED_LINGER) &&
	    REAL(getsockopt)(kfd, SOL_SOCKET, SO_LINGER, &o->linger, &l) < 0)
		memset(&o->linger, 0, sizeof(o->linger));
	/* Only what the program set: the kernel's defaults would read as a small SO_SNDBUF. */
	if (origin && (atomic_load(&origin->opts_touched) & VTOE_TOUCHED_BUFS))
		vtoe_opts_capture_bufs(o, kfd);
	l = sizeof(tv);
	if ((reread & VTOE_TOUCHED_TIMEO) && REAL(getsockopt)(kfd, SOL_SOCKET, SO_RCVTIMEO, &tv, &l) == 0)
		atomic_store(&o->rcvtimeo_us, vtoe_tv_to_us(&tv));
	l = sizeof(tv);
	if ((reread & VTOE_TOUCHED_TIMEO) && REAL(getsockopt)(kfd, SOL_SOCKET, SO_SNDTIMEO, &tv, &l) == 0)
		atomic_store(&o->sndtimeo_us, vtoe_tv_to_us(&tv));
	if (m && !hit) {
		memcpy(m->val, o->val, sizeof(m->val));
		memcpy(m->err, o->err, sizeof(m->err));
		m->linger = o->linger;
		m->rcvtimeo_us = atomic_load(&o->rcvtimeo_us);
		m->sndtimeo_us = atomic_load(&o->sndtimeo_us);
		m->touched = touched;
		m->at_ns = vtoe_coarse_ns();
	}
	vtoe_opts_publish(c);
}

/* Copy a value out with the kernel's truncation: min(room, size) bytes, *optlen = that. */
static int vtoe_opt_out(void *optval, socklen_t *optlen, const void *v, socklen_t size)
{
	socklen_t n = VTOE_MIN(*optlen, size);

	memcpy(optval, v, n);
	*optlen = n;
	return 0;
}

static int vtoe_opt_fail(int e)
{
	errno = e;
	return -1;
}

/*
 * Options outside the table.  A kernel TCP socket of the connection's family applies the
 * kernel's rules to them: what it accepts is accepted (its read-back kept, to read back), what
 * it refuses is refused with its errno, and an option never set reads as its default.  Those
 * that would change how data or errors reach the program (zero-copy, timestamping, repair
 * mode, upper-layer protocols such as kernel TLS, peek offsets, in-queue cmsgs) stay refused:
 * the rings carry no such thing, and a program told yes would wait for what never comes.
 */
static bool vtoe_opt_refused(int level, int name)
{
	if (level == SOL_SOCKET)
		return name == SO_ZEROCOPY || name == SO_TIMESTAMPING_OLD ||
		       name == SO_TIMESTAMPING_NEW || name == SO_PEEK_OFF || name == SO_TXTIME;
	if (level == IPPROTO_TCP)
		return name == TCP_REPAIR || name == TCP_REPAIR_QUEUE || name == TCP_QUEUE_SEQ ||
		       name == TCP_REPAIR_OPTIONS || name == TCP_REPAIR_WINDOW || name == TCP_INQ ||
		       name == TCP_ZEROCOPY_RECEIVE || name == TCP_TX_DELAY;
	return false;
}

static struct vtoe_opt_extra *vtoe_opt_extra_find(struct vtoe_opts *o, int level, int name)
{
	for (int i = 0; i < VTOE_OPT_EXTRA; i++)
		if (o->extra[i].used && o->extra[i].level == level && o->extra[i].name == name)
			return &o->extra[i];
	return NULL;
}

/* getsockopt on a probe socket: a fresh TCP one, or (udp_peer) a UDP one routed to the peer,
 * for what depends on the route (IP_MTU). */
static int vtoe_opt_probe_get(struct vtoe_sock *s, bool udp_peer, int level, int name,
			      void *optval, socklen_t *optlen)
{
	int fd = REAL(socket)(s->family, (udp_peer ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
	int r = -1, saved;

	if (fd < 0) /* out of descriptors: as before there was a probe */
		return vtoe_opt_fail(ENOPROTOOPT);
	if (!udp_peer || REAL(connect)(fd, (struct sockaddr *)&s->peer, s->peer_len) == 0)
		r = REAL(getsockopt)(fd, level, name, optval, optlen);
	saved = errno;
	REAL(close)(fd);
	errno = saved;
	return r;
}

static int vtoe_getsockopt_unlisted(struct vtoe_sock *s, int level, int name, void *optval,
				    socklen_t *optlen)
{
	struct vtoe_opt_extra *x = vtoe_opt_extra_find(&s->c.opts, level, name);

	if (vtoe_opt_refused(level, name))
		return vtoe_opt_fail(ENOPROTOOPT);
	if (x)
		return vtoe_opt_out(optval, optlen, x->val, x->len);
	if (level == SOL_SOCKET && name == SO_PEERNAME) {
		/* the kernel's rule: the buffer may not be longer than the address */
		if (atomic_load(&s->c.flags) & VTOE_CF_RESET_REPORTED)
			return vtoe_opt_fail(ENOTCONN);
		if (*optlen > s->peer_len)
			return vtoe_opt_fail(EINVAL);
		memcpy(optval, &s->peer, *optlen);
		return 0;
	}
	return vtoe_opt_probe_get(s, (level == IPPROTO_IP && name == IP_MTU) ||
					     (level == IPPROTO_IPV6 && name == IPV6_MTU),
				  level, name, optval, optlen);
}

static int vtoe_setsockopt_unlisted(struct vtoe_sock *s, int level, int name,
				    const void *optval, socklen_t optlen)
{
	struct vtoe_opts *o = &s->c.opts;
	struct vtoe_opt_extra *x, got = { .used = true, .level = level, .name = name };
	int fd, r, saved;

	if (level == IPPROTO_TCP && name == TCP_ULP)
		return vtoe_opt_fail(ENOENT); /* as a kernel without the module asked for */
	if (vtoe_opt_refused(level, name))
		return vtoe_opt_fail(ENOPROTOOPT);
	fd = REAL(socket)(s->family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0) /* out of descriptors: IP-level settings mean nothing on the ring */
		return level == IPPROTO_IP || level == IPPROTO_IPV6 ? 0 : vtoe_opt_fail(ENOPROTOOPT);
	r = REAL(setsockopt)(fd, level, name, optval, optlen);
	saved = errno;
	got.len = sizeof(got.val);
	if (r == 0 && REAL(getsockopt)(fd, level, name, got.val, &got.len) == 0) {
		if (!(x = vtoe_opt_extra_find(o, level, name)))
			for (int i = 0; i < VTOE_OPT_EXTRA && !x; i++)
				x = o->extra[i].used ? NULL : &o->extra[i];
		if (!x) /* full: the oldest goes (it reads its default again) */
			x = &o->extra[0];
		*x = got;
	}
	REAL(close)(fd);
	errno = saved;
	return r;
}

static int vtoe_getsockopt_conn(struct vtoe_sock *s, int level, int name, void *optval,
				socklen_t *optlen)
{
	struct vtoe_conn *c = &s->c;
	struct vtoe_opts *o = &c->opts;
	int v, i;

	if (!optlen || (int)*optlen < 0)
		return vtoe_opt_fail(optlen ? EINVAL : EFAULT);
	if (level == SOL_SOCKET) {
		switch (name) {
		case SO_ERROR:
			v = vtoe_conn_take_error(c);
			return vtoe_opt_out(optval, optlen, &v, sizeof(v));
		case SO_TYPE:
			v = SOCK_STREAM;
			return vtoe_opt_out(optval, optlen, &v, sizeof(v));
		case SO_DOMAIN:
			v = s->family;
			return vtoe_opt_out(optval, optlen, &v, sizeof(v));
		case SO_PROTOCOL:
			v = IPPROTO_TCP;
			return vtoe_opt_out(optval, optlen, &v, sizeof(v));
		case SO_ACCEPTCONN:
			v = 0;
			return vtoe_opt_out(optval, optlen, &v, sizeof(v));
		case SO_RCVBUF:
			v = o->rcvbuf ? 2 * o->rcvbuf : (int)(2 * c->size);
			return vtoe_opt_out(optval, optlen, &v, sizeof(v));
		case SO_SNDBUF:
			v = o->sndbuf ? 2 * o->sndbuf : (int)(2 * c->size);
			return vtoe_opt_out(optval, optlen, &v, sizeof(v));
		case SO_SNDLOWAT:
			v = 1;
			return vtoe_opt_out(optval, optlen, &v, sizeof(v));
		case SO_LINGER:
			return vtoe_opt_out(optval, optlen, &o->linger, sizeof(o->linger));
		case SO_RCVTIMEO:
		case SO_SNDTIMEO: {
			long long us = atomic_load(name == SO_RCVTIMEO ? &o->rcvtimeo_us
								    : &o->sndtimeo_us);
			struct timeval tv = { .tv_sec = us / 1000000, .tv_usec = us % 1000000 };

			return vtoe_opt_out(optval, optlen, &tv, sizeof(tv));
		}
		}
	} else if (level == IPPROTO_TCP) {
		switch (name) {
		case TCP_INFO:
			return vtoe_conn_tcp_info(c, (uint32_t)o->val[VTOE_OPT_TCP_MAXSEG], optval, optlen);
		case TCP_CONGESTION:
			return vtoe_opt_out(optval, optlen, o->congestion, sizeof(o->congestion));
		}
	}
	i = vtoe_optdef_find(level, name);
	if (i < 0)
		return vtoe_getsockopt_unlisted(s, level, name, optval, optlen);
	if (o->err[i])
		return vtoe_opt_fail(o->err[i]);
	v = vtoe_optdefs[i].boolean ? !!o->val[i] : o->val[i];
	return vtoe_opt_out(optval, optlen, &v, sizeof(v));
}

/*
 * The running kernel's rules for a SOL_SOCKET option: `name` = v put to a throwaway TCP socket
 * of the family (its receive buffer first set to rcvbuf, if any), `read_as` read back into
 * *got.  1: read; 0: the kernel refused (errno its); -1: no descriptor to spare (errno kept).
 */
static int vtoe_opt_on_probe(int family, int rcvbuf, int name, int read_as, int v, int *got)
{
	int fd = REAL(socket)(family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP), saved = errno, r;
	socklen_t l = sizeof(*got);

	if (fd < 0) {
		errno = saved;
		return -1;
	}
	if (rcvbuf)
		(void)REAL(setsockopt)(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	r = REAL(setsockopt)(fd, SOL_SOCKET, name, &v, sizeof(v)) == 0 &&
	    REAL(getsockopt)(fd, SOL_SOCKET, read_as, got, &l) == 0;
	saved = errno;
	REAL(close)(fd);
	errno = saved;
	return r;
}

/*
 * A socket buffer size as a TCP socket of this family would keep it: clamped to
 * net.core.rmem_max or wmem_max, raised to the kernel's minimum, the FORCE variants only with
 * CAP_NET_ADMIN.  Returns half the size getsockopt reports (what struct vtoe_opts keeps), or
 * -1 with errno; with no descriptor to spare, the value as given.
 */
static int vtoe_buf_as_kernel(int family, int name, int v)
{
	int base = name == SO_RCVBUFFORCE ? SO_RCVBUF : name == SO_SNDBUFFORCE ? SO_SNDBUF : name;
	int got = 0, r = vtoe_opt_on_probe(family, 0, name, base, v, &got);

	if (r < 0)
		return v < 0 ? 0 : VTOE_MIN(v, 0x3fffffff);
	return r ? got / 2 : -1;
}

/*
 * SO_RCVLOWAT as TCP keeps it: negative is INT_MAX, 0 is 1, and at most half the receive
 * buffer the socket may get (its own, once set: rcvbuf as struct vtoe_opts keeps it).
 */
static int vtoe_rcvlowat_as_kernel(int family, int rcvbuf, int v)
{
	int got;

	if (vtoe_opt_on_probe(family, rcvbuf, SO_RCVLOWAT, SO_RCVLOWAT, v, &got) > 0)
		return got;
	return v < 0 ? INT_MAX : v ? v : 1;
}

static int vtoe_setsockopt_conn(struct vtoe_sock *s, int level, int name, const void *optval,
				socklen_t optlen)
{
	struct vtoe_conn *c = &s->c;
	struct vtoe_opts *o = &c->opts;
	int v, i;

	if ((int)optlen < 0)
		return vtoe_opt_fail(EINVAL);
	if (level == SOL_SOCKET) {
		switch (name) {
		case SO_LINGER:
			if (optlen < sizeof(struct linger))
				return vtoe_opt_fail(EINVAL);
			memcpy(&o->linger, optval, sizeof(o->linger));
			o->linger.l_onoff = !!o->linger.l_onoff;
			return 0;
		case SO_RCVTIMEO:
		case SO_SNDTIMEO: {
			struct timeval tv;

			if (optlen < sizeof(tv))
				return vtoe_opt_fail(EINVAL);
			memcpy(&tv, optval, sizeof(tv));
			if (tv.tv_usec < 0 || tv.tv_usec >= 1000000)
				return vtoe_opt_fail(EDOM);
			atomic_store(name == SO_RCVTIMEO ? &o->rcvtimeo_us : &o->sndtimeo_us,
				     vtoe_tv_to_us(&tv));
			return 0;
		}
		case SO_ERROR:
		case SO_TYPE:
		case SO_DOMAIN:
		case SO_PROTOCOL:
		case SO_ACCEPTCONN:
		case SO_SNDLOWAT:
			return vtoe_opt_fail(ENOPROTOOPT);
		}
	} else if (level == IPPROTO_TCP && name == TCP_CONGESTION) {
		size_t n = VTOE_MIN((size_t)optlen, sizeof(o->congestion) - 1);

		if (n == 0)
			return vtoe_opt_fail(EINVAL);
		memset(o->congestion, 0, sizeof(o->congestion));
		memcpy(o->congestion, optval, n);
		return 0;
	}
	i = vtoe_optdef_find(level, name);
	if (i < 0 && !(level == SOL_SOCKET && (name == SO_RCVBUF || name == SO_RCVBUFFORCE ||
					       name == SO_SNDBUF || name == SO_SNDBUFFORCE)))
		return vtoe_setsockopt_unlisted(s, level, name, optval, optlen);
	if (optlen < sizeof(int))
		return vtoe_opt_fail(EINVAL);
	memcpy(&v, optval, sizeof(v));
	if (level == SOL_SOCKET) {
		switch (name) {
		case SO_RCVLOWAT:
			/* read without a lock by readers and poll (vtoe_rx_lowat) */
			__atomic_store_n(&o->val[VTOE_OPT_RCVLOWAT],
					 vtoe_rcvlowat_as_kernel(s->family, o->rcvbuf, v), __ATOMIC_RELAXED);
			o->err[VTOE_OPT_RCVLOWAT] = 0;
			return 0;
		case SO_RCVBUF:
		case SO_RCVBUFFORCE:
			if ((v = vtoe_buf_as_kernel(s->family, name, v)) < 0)
				return -1;
			o->rcvbuf = v;
			vtoe_opts_publish(c);
			vtoe_conn_rx_room_changed(c);
			return 0;
		case SO_SNDBUF:
		case SO_SNDBUFFORCE:
			if ((v = vtoe_buf_as_kernel(s->family, name, v)) < 0)
				return -1;
			o->sndbuf = v;
			vtoe_opts_publish(c);
			return 0;
		}
	}
	if (i == VTOE_OPT_TCP_MAXSEG && v && (v < 88 || v > 65535))
		return vtoe_opt_fail(EINVAL);
	if (vtoe_optdefs[i].min < vtoe_optdefs[i].max &&
	    (v < vtoe_optdefs[i].min || v > vtoe_optdefs[i].max))
		return vtoe_opt_fail(EINVAL);
	o->val[i] = v;
	o->err[i] = 0;
	if (i == VTOE_OPT_KEEPALIVE || i == VTOE_OPT_TCP_KEEPIDLE || i == VTOE_OPT_TCP_KEEPINTVL ||
	    i == VTOE_OPT_TCP_KEEPCNT || i == VTOE_OPT_TCP_USER_TIMEOUT)
		vtoe_opts_publish(c);
	return 0;
}

/* Referenced offloaded connection behind fd, NULL for libc, or the internal marker.  A socket
 * of ours not offloaded yet goes to libc, marked with `touches` (what a set changed:
 * vtoe_opts_capture). */
static struct vtoe_sock *vtoe_opt_get(int fd, uint64_t touches)
{
	struct vtoe_sock *s = vtoe_fd_get(fd);

	if (s && s != &vtoe_internal_sock && atomic_load(&s->kind) != VTOE_KIND_CONN) {
		if (touches)
			atomic_fetch_or(&s->opts_touched, touches);
		vtoe_sock_put(s);
		s = NULL;
	}
	return s;
}

#define VTOE_OPT_ENTER(fd, s, touches, libc_call)                                          \
	do {                                                                               \
		if (vtoe_likely(!vtoe_fd_peek(fd)))                                        \
			return libc_call;                                                  \
		s = vtoe_opt_get(fd, touches);                                             \
		if (!s)                                                                    \
			return libc_call;                                                  \
		if (s == &vtoe_internal_sock)                                              \
			return vtoe_opt_fail(EBADF);                                       \
	} while (0)

VTOE_EXPORT int getsockopt(int fd, int level, int name, void *optval, socklen_t *optlen)
{
	struct vtoe_sock *s;
	int r;

	VTOE_OPT_ENTER(fd, s, 0, REAL(getsockopt)(fd, level, name, optval, optlen));
	r = vtoe_getsockopt_conn(s, level, name, optval, optlen);
	vtoe_sock_put(s);
	return r;
}

VTOE_EXPORT int setsockopt(int fd, int level, int name, const void *optval, socklen_t optlen)
{
	struct vtoe_sock *s;
	int r;

	VTOE_OPT_ENTER(fd, s, vtoe_opt_touches(level, name),
		       REAL(setsockopt)(fd, level, name, optval, optlen));
	r = vtoe_setsockopt_conn(s, level, name, optval, optlen);
	vtoe_sock_put(s);
	return r;
}

static int vtoe_name_out(struct vtoe_sock *s, bool peer, struct sockaddr *addr, socklen_t *alen)
{
	if (!alen)
		return vtoe_opt_fail(EFAULT);
	if ((int)*alen < 0)
		return vtoe_opt_fail(EINVAL);
	if (peer && (atomic_load(&s->c.flags) & VTOE_CF_RESET_REPORTED))
		return vtoe_opt_fail(ENOTCONN); /* a reset TCP socket is CLOSED */
	vtoe_addr_copy_out(peer ? &s->peer : &s->local, peer ? s->peer_len : s->local_len, addr,
			   alen);
	return 0;
}

VTOE_EXPORT int vtoe_w_getsockname(int fd, struct sockaddr *addr, socklen_t *alen)
	__asm__("getsockname");
int vtoe_w_getsockname(int fd, struct sockaddr *addr, socklen_t *alen)
{
	struct vtoe_sock *s;
	int r;

	VTOE_OPT_ENTER(fd, s, 0, REAL(getsockname)(fd, addr, alen));
	r = vtoe_name_out(s, false, addr, alen);
	vtoe_sock_put(s);
	return r;
}

VTOE_EXPORT int vtoe_w_getpeername(int fd, struct sockaddr *addr, socklen_t *alen)
	__asm__("getpeername");
int vtoe_w_getpeername(int fd, struct sockaddr *addr, socklen_t *alen)
{
	struct vtoe_sock *s;
	int r;

	VTOE_OPT_ENTER(fd, s, 0, REAL(getpeername)(fd, addr, alen));
	r = vtoe_name_out(s, true, addr, alen);
	vtoe_sock_put(s);
	return r;
}

/* ------------------------------------------------------------------------------------------ */
/* fcntl and ioctl                                                                             */
/* ------------------------------------------------------------------------------------------ */

static int vtoe_fcntl_call(int (*fn)(int, int, ...), int fd, int cmd, enum vtoe_fcntl_arg kind,
			   int iarg, void *parg)
{
	switch (kind) {
	case VTOE_FCNTL_NONE:
		return fn(fd, cmd);
	case VTOE_FCNTL_INT:
		return fn(fd, cmd, iarg);
	default:
		return fn(fd, cmd, parg);
	}
}

static int vtoe_fcntl(int (*fn)(int, int, ...), int fd, int cmd, va_list ap)
{
	enum vtoe_fcntl_arg kind = vtoe_fcntl_arg_kind(cmd);
	struct vtoe_sock *s;
	void *parg = NULL;
	int iarg = 0, r;

	if (kind == VTOE_FCNTL_INT)
		iarg = va_arg(ap, int);
	else if (kind == VTOE_FCNTL_PTR)
		parg = va_arg(ap, void *);

	if (vtoe_likely(!vtoe_fd_peek(fd))) {
		r = vtoe_fcntl_call(fn, fd, cmd, kind, iarg, parg);
		if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && vtoe_fd_peek(r))
			vtoe_fd_install(r, NULL); /* stale entry from a close we missed */
		return r;
	}
	s = vtoe_fd_get(fd);
	if (s == &vtoe_internal_sock)
		return vtoe_opt_fail(EBADF);
	r = vtoe_fcntl_call(fn, fd, cmd, kind, iarg, parg);
	if (r >= 0 && s) {
		if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
			vtoe_fd_install(r, s); /* like dup: same socket object */
		else if (cmd == F_SETFL && atomic_load(&s->kind) == VTOE_KIND_CONN) {
			atomic_store(&s->c.nonblock, !!(iarg & O_NONBLOCK));
			if (iarg & O_ASYNC) /* SIGIO comes from the kernel's view of the fd */
				atomic_fetch_or(&s->c.flags, VTOE_CF_KWATCH);
		}
	}
	vtoe_sock_put(s);
	return r;
}

VTOE_EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	int r;

	va_start(ap, cmd);
	r = vtoe_fcntl(REAL(fcntl), fd, cmd, ap);
	va_end(ap);
	return r;
}

VTOE_EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	int r;

	va_start(ap, cmd);
	r = vtoe_fcntl(REAL(fcntl64), fd, cmd, ap);
	va_end(ap);
	return r;
}

VTOE_EXPORT int ioctl(int fd, unsigned long req, ...)
{
	struct vtoe_sock *s;
	va_list ap;
	void *arg;
	int r;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	VTOE_OPT_ENTER(fd, s, 0, REAL(ioctl)(fd, req, arg));
	switch (req) {
	case FIONREAD: /* == SIOCINQ */
		*(int *)arg = (int)vtoe_conn_rx_bytes(&s->c);
		r = 0;
		break;
	case SIOCOUTQ:
	case SIOCOUTQNSD:
		*(int *)arg = (int)vtoe_conn_tx_bytes(&s->c);
		r = 0;
		break;
	case SIOCATMARK:
		*(int *)arg = 0;
		r = 0;
		break;
	case FIONBIO:
		r = REAL(ioctl)(fd, req, arg);
		if (r == 0)
			atomic_store(&s->c.nonblock, *(int *)arg != 0);
		break;
	default:
		r = REAL(ioctl)(fd, req, arg);
		break;
	}
	vtoe_sock_put(s);
	return r;
}
