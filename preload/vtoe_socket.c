/*
 * vtoe_socket.c - socket life cycle: socket, connect, listen, accept, close, shutdown, dup.
 *
 * A connection is offloaded by replacing the application's kernel TCP socket, under the
 * same fd number, with the agent's socketpair end (dup3).  The kernel TCP connection is still
 * made first: it is how a listener's fd becomes readable, and it keeps the kernel's backlog
 * and ECONNREFUSED behaviour exact.
 */
#include "vtoe.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define VTOE_RENDEZVOUS_MS 10000
#define VTOE_KERNEL_TELL_EVERY 64

/* ------------------------------------------------------------------------------------------ */
/* Listener pages (vtoe_abi.h): how many offloaded connections wait on a listener's port       */
/* ------------------------------------------------------------------------------------------ */

/* Maps the page the agent sent with a LISTEN's ACK; NULL if it is not one (accept then asks). */
static const struct vtoe_listener_page *vtoe_listener_page_map(int fd)
{
	struct stat st;
	int seals = REAL(fcntl)(fd, F_GET_SEALS);
	const struct vtoe_listener_page *page;
	void *p;

	if (fstat(fd, &st) < 0 || st.st_size < (off_t)VTOE_LISTENER_PAGE_BYTES || seals < 0 ||
	    (seals & VTOE_LISTENER_PAGE_SEALS) != VTOE_LISTENER_PAGE_SEALS)
		return NULL;
	p = mmap(NULL, VTOE_LISTENER_PAGE_BYTES, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return NULL;
	page = p;
	if (page->magic != VTOE_LISTENER_PAGE_MAGIC) {
		munmap(p, VTOE_LISTENER_PAGE_BYTES);
		return NULL;
	}
	return page;
}

static void vtoe_listener_page_unmap(const struct vtoe_listener_page *page)
{
	if (page)
		munmap((void *)page, VTOE_LISTENER_PAGE_BYTES);
}

/* Nothing offloaded waits on the listener's port, as far as its page says. */
static bool vtoe_listener_page_idle(const struct vtoe_listener_page *page)
{
	return page && atomic_load_explicit(&page->waiting, memory_order_acquire) == 0;
}

/* Tells the agent of the kernel clients ls accepted without asking (its kernelAccepted). */
static void vtoe_listener_tell_kernel(struct vtoe_sock *ls)
{
	unsigned n = atomic_exchange(&ls->kernel_untold, 0);

	if (n && ls->sid)
		vtoe_ctl_note(VTOE_OP_FALLBACK, ls->sid, n, VTOE_FB_PEER_NOT_OFFLOADED);
}

static int vtoe_ebadf(void)
{
	errno = EBADF;
	return -1;
}

static bool vtoe_sock_shared(struct vtoe_sock *s)
{
	return atomic_load(&s->nfds) > 1 || s->gen != atomic_load(&vtoe_fork_gen);
}

/* Drop a table entry left by a close we did not see (close_range, a libc-internal close...).
 * A connection that worked on that number has lost it: it must not touch the new file. */
void vtoe_fd_forget_stale(int fd)
{
	struct vtoe_sock *s;

	if (fd < 0 || !vtoe_fd_peek(fd))
		return;
	s = vtoe_fd_remove(fd);
	if (s && s != &vtoe_internal_sock && atomic_load(&s->kind) == VTOE_KIND_CONN) {
		if (vtoe_fd_swap(&s->c.fd, fd, -1))
			atomic_fetch_or(&s->c.flags, VTOE_CF_PEER_GONE | VTOE_CF_BROKEN);
	}
	vtoe_sock_put(s);
}

static void vtoe_close_fds(int *fds)
{
	for (int i = 0; i < VTOE_FD__COUNT; i++) {
		if (fds[i] >= 0)
			REAL(close)(fds[i]);
		fds[i] = -1;
	}
}

/* Final put of a socket object. */
void vtoe_sock_release(struct vtoe_sock *s)
{
	bool shared = s->gen != atomic_load(&vtoe_fork_gen);
	uint32_t res;

	switch (atomic_load(&s->kind)) {
	case VTOE_KIND_LISTENER:
		if (!shared && s->sid) {
			vtoe_listener_tell_kernel(s);
			vtoe_ctl_note(VTOE_OP_CLOSE, s->sid, 0, 0);
		}
		vtoe_listener_page_unmap(atomic_load(&s->lpage));
		break;
	case VTOE_KIND_CONN:
		vtoe_park_sweep();
		res = vtoe_conn_close(&s->c, shared);
		if (!shared)
			vtoe_ctl_note(VTOE_OP_CLOSE, s->c.sid, s->c.cid, res);
		break;
	case VTOE_KIND_EPOLL:
		vtoe_ep_release(s);
		break;
	default:
		break;
	}
}

VTOE_EXPORT int socket(int domain, int type, int protocol)
{
	int fd = REAL(socket)(domain, type, protocol);
	int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
	struct vtoe_sock *s;

	if (vtoe_retry_emfile(fd))
		fd = REAL(socket)(domain, type, protocol);
	if (fd < 0)
		return fd;
	vtoe_fd_forget_stale(fd);
	if (!vtoe_cfg.offload || (domain != AF_INET && domain != AF_INET6) ||
	    base != SOCK_STREAM || (protocol != 0 && protocol != IPPROTO_TCP))
		return fd;
	s = vtoe_sock_new(VTOE_KIND_CANDIDATE, domain);
	if (s) {
		s->made_here = true;
		vtoe_fd_install(fd, s);
		vtoe_sock_put(s);
	}
	return fd;
}

/* ------------------------------------------------------------------------------------------ */
/* Attaching an agent connection to the application's fd number                               */
/* ------------------------------------------------------------------------------------------ */

/* Validate the reply's descriptors and map the region into conn. */
static int vtoe_conn_prepare(struct vtoe_sock *conn, const struct vtoe_ctl_rep *rep, int *fds,
			     uint32_t side)
{
	int type = 0, dom = 0;
	socklen_t l = sizeof(int);

	if (rep->nfds != VTOE_FD__COUNT || rep->side != side)
		return -1;
	if (REAL(getsockopt)(fds[VTOE_FD_APP], SOL_SOCKET, SO_TYPE, &type, &l) < 0 ||
	    type != SOCK_STREAM ||
	    REAL(getsockopt)(fds[VTOE_FD_APP], SOL_SOCKET, SO_DOMAIN, &dom, &l) < 0 ||
	    dom != AF_UNIX)
		return -1;
	if (vtoe_conn_map(&conn->c, fds[VTOE_FD_REGION], rep) < 0)
		return -1;
	if (rep->fabric == VTOE_FABRIC_SHM) {
		/* The mapping is all we need; an exec or SCM_RIGHTS asks the agent (ATTACH). */
		REAL(close)(fds[VTOE_FD_REGION]);
	} else {
		/* The verbs agent keeps no copy to give again: kept for exec (vtoe_exec.c). */
		conn->c.memfd = vtoe_fd_move_high(fds[VTOE_FD_REGION]);
		vtoe_fd_set_internal(conn->c.memfd, true);
	}
	fds[VTOE_FD_REGION] = -1;
	conn->c.sid = rep->sid;
	conn->c.fabric = rep->fabric;
	return 0;
}

/*
 * Where the peer's bell lives: among our internal descriptors, at the top of the fd space.
 * On the shm fabric, whose agent keeps a copy, none while the process is short of descriptors
 * (or VTOE_PEER_BELLS=0): the agent rings it for us, and the socket costs one fd, as TCP's.
 * Consumes bell; returns the fd to use or -1.
 */
static int vtoe_bell_keep(struct vtoe_conn *c, int bell)
{
	int high = -1;

	/* The program's new socket got a low number: it has plenty free again. */
	if (c->fd >= 0 && c->fd < vtoe_cfg.internal_fd_base / 2)
		atomic_store(&vtoe_fds_short, false);
	if (c->fabric != VTOE_FABRIC_SHM) {
		high = vtoe_fd_move_high(bell);
	} else if (vtoe_cfg.peer_bells && !atomic_load(&vtoe_fds_short)) {
		high = REAL(fcntl)(bell, F_DUPFD_CLOEXEC, vtoe_cfg.internal_fd_base);
		if (high < 0) /* the top of the fd space is full: stop taking from the program's */
			atomic_store(&vtoe_fds_short, true);
		REAL(close)(bell);
	} else {
		REAL(close)(bell);
	}
	if (high >= 0)
		vtoe_fd_set_internal(high, true);
	return high;
}

/* The peer's bell of connection c, from the agent's copy.  Returns it, or -1. */
static int vtoe_bell_from_agent(struct vtoe_conn *c)
{
	struct vtoe_ctl_rep rep;
	int bell = -1, memfd = vtoe_attach(c->fd, c->cid, VTOE_ATTACH_BELL, &rep, &bell);

	if (memfd < 0)
		return -1;
	REAL(close)(memfd); /* the region is mapped already */
	if (rep.side != c->side) {
		REAL(close)(bell);
		return -1;
	}
	return bell;
}

/*
 * The program is about to install a seccomp filter that forbids the agent channel.  A
 * connection on the shm fabric that rings its peer through the agent (VTOE_PEER_BELLS=0, or
 * it was short of descriptors) could not wake it any more: each takes its peer's bell now.
 * One that cannot (no descriptors, no agent) stays as it is, its wake-ups lost.
 */
void vtoe_conns_take_bells(void)
{
	for (struct vtoe_sock *s = vtoe_sock_first(); s; s = s->all_next) {
		struct vtoe_conn *c = &s->c;
		int bell;

		if (!vtoe_sock_tryget(s)) /* a live one, pinned while we look at it */
			continue;
		if (atomic_load(&s->kind) == VTOE_KIND_CONN && c->fabric == VTOE_FABRIC_SHM && c->fd >= 0 &&
		    __atomic_load_n(&c->bell, __ATOMIC_ACQUIRE) < 0 && (bell = vtoe_bell_from_agent(c)) >= 0) {
			bell = vtoe_fd_move_high(bell);
			vtoe_fd_set_internal(bell, true);
			/* read without a lock by whoever rings: -1 (the agent) or this, both work now */
			__atomic_store_n(&c->bell, bell, __ATOMIC_RELEASE);
			vtoe_dbg("cid %llu: took its peer's bell (fd %d) before a seccomp filter",
				 (unsigned long long)c->cid, bell);
		}
		vtoe_sock_put(s);
	}
}

/* Put conn's socketpair end at fd (replacing the kernel socket there) and track it.  origin:
 * the socket it was made from, the connecting one or the listener (vtoe_opts_capture). */
static int vtoe_conn_attach(int fd, struct vtoe_sock *conn, int *fds, bool nonblock, bool cloexec,
			    struct vtoe_sock *origin)
{
	struct vtoe_conn *c = &conn->c;
	int fl;

	conn->local_len = sizeof(conn->local);
	conn->peer_len = sizeof(conn->peer);
	if (REAL(getsockname)(fd, (struct sockaddr *)&conn->local, &conn->local_len) < 0 ||
	    REAL(getpeername)(fd, (struct sockaddr *)&conn->peer, &conn->peer_len) < 0)
		return -1;
	vtoe_opts_capture(c, fd, conn->family, origin);
	c->gen = conn->gen;
	fl = REAL(fcntl)(fds[VTOE_FD_APP], F_GETFL);
	if (fl < 0)
		return -1;
	if (nonblock != ((fl & O_NONBLOCK) != 0) &&
	    REAL(fcntl)(fds[VTOE_FD_APP], F_SETFL, fl ^ O_NONBLOCK) < 0)
		return -1;
	atomic_store(&c->nonblock, nonblock);
	/* From here on the number the application holds is the offloaded socket. */
	if (REAL(dup3)(fds[VTOE_FD_APP], fd, cloexec ? O_CLOEXEC : 0) < 0)
		return -1;
	/* The shim works on the application's own number: no private copy (an fd per
	 * connection); vtoe_fd_close() keeps it valid for as long as the shim may use it. */
	REAL(close)(fds[VTOE_FD_APP]);
	c->fd = fd;
	c->bell = vtoe_bell_keep(c, fds[VTOE_FD_PEER_BELL]);
	fds[VTOE_FD_APP] = fds[VTOE_FD_PEER_BELL] = -1;
	atomic_store(&conn->kind, VTOE_KIND_CONN); /* from now on its release closes it */
	vtoe_fd_install(fd, conn);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Active open                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/* The kernel TCP connection, bounded; returns 0 or the errno connect(2) would give.  *flags:
 * the socket's file status flags (F_GETFL), or -1. */
static int vtoe_rendezvous(int fd, const struct sockaddr *addr, socklen_t len, int *flags)
{
	struct timespec start, now;
	int fl = *flags = REAL(fcntl)(fd, F_GETFL);
	int e = 0;
	socklen_t l = sizeof(e);

	if (fl >= 0 && !(fl & O_NONBLOCK))
		REAL(fcntl)(fd, F_SETFL, fl | O_NONBLOCK);
	clock_gettime(CLOCK_MONOTONIC, &start);
	if (REAL(connect)(fd, addr, len) < 0) {
		e = errno;
		while (e == EINPROGRESS) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			long ms;
			int r;

			clock_gettime(CLOCK_MONOTONIC, &now);
			ms = VTOE_RENDEZVOUS_MS - ((now.tv_sec - start.tv_sec) * 1000 +
						   (now.tv_nsec - start.tv_nsec) / 1000000);
			r = vtoe_kpoll(&p, 1, ms < 0 ? 0 : (int)ms);
			if (r < 0 && errno == EINTR)
				continue; /* the handshake goes on; finish it */
			if (r <= 0) {
				e = r == 0 ? ETIMEDOUT : errno;
				break;
			}
			if (REAL(getsockopt)(fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0)
				e = errno;
		}
	}
	if (fl >= 0 && !(fl & O_NONBLOCK))
		REAL(fcntl)(fd, F_SETFL, fl);
	return e;
}

/* A connected kernel TCP socket is no business of ours any more: untrack it. */
static void vtoe_untrack(int fd, struct vtoe_sock *s)
{
	struct vtoe_sock *old;

	if (atomic_load(&s->nfds) != 1)
		return;
	old = vtoe_fd_remove(fd);
	if (old == s)
		atomic_store(&s->kind, VTOE_KIND_PLAIN);
	vtoe_sock_put(old);
}

static int vtoe_connect_kernel(int fd, struct vtoe_sock *s, const struct sockaddr *addr,
			       socklen_t len)
{
	int r = REAL(connect)(fd, addr, len);

	if (r == 0 || errno == EINPROGRESS) {
		int saved = errno;

		vtoe_untrack(fd, s);
		errno = saved;
	}
	return r;
}

/* The socket's local address as it stands.  An unbound socket stays unbound (port 0): the
 * kernel picks its port at the rendezvous connect, as for any TCP client, and the agent reads
 * it from the socket.  (A bind(0) here costs a scan of the ports TIME_WAIT holds, which grows
 * with every short connection.) */
static int vtoe_local_address(int fd, struct sockaddr_storage *ss, socklen_t *sl)
{
	*sl = sizeof(*ss);
	return REAL(getsockname)(fd, (struct sockaddr *)ss, sl);
}

static int vtoe_connect_offload(int fd, struct vtoe_sock *s, const struct sockaddr *addr,
				socklen_t len)
{
	struct vtoe_ctl_req req;
	struct vtoe_ctl_rep rep;
	struct sockaddr_storage local;
	struct vtoe_sockaddr to;
	socklen_t local_len;
	struct vtoe_sock *conn;
	int fds[VTOE_FD__COUNT] = { -1, -1, -1 };
	uint32_t sid;
	bool nonblock;
	int fl, fdfl, e;

	vtoe_addr_to_wire(addr, len, &to);
	if (vtoe_held_skip(&to) || vtoe_ctl_up() < 0)
		return vtoe_connect_kernel(fd, s, addr, len);

	if (vtoe_local_address(fd, &local, &local_len) < 0) {
		vtoe_dbg("fd %d: cannot read its local address (%s): kernel TCP", fd, strerror(errno));
		vtoe_ctl_note(VTOE_OP_FALLBACK, 0, 0, VTOE_FB_ADDRESS_FAMILY);
		return vtoe_connect_kernel(fd, s, addr, len);
	}

	/* SID 0: the agent opens the socket with the CONNECT, one round trip instead of two. */
	vtoe_ctl_req_init(&req, VTOE_OP_CONNECT);
	req.sid = 0;
	vtoe_addr_to_wire((struct sockaddr *)&local, local_len, &req.local);
	req.remote = to;
	vtoe_held_flush(&to);
	/* The socket goes with it: the agent checks its port, and keeps it as the proof that the
	 * server's shim will be checked against (and for a late fallback). */
	if (vtoe_ctl_rpc_fd(&req, fd, &rep, fds) < 0) {
		/* Out of descriptors: the agent's offer is withdrawn, kernel TCP carries it. */
		if (errno == EMFILE && rep.event == VTOE_EV_CONNECT_RESPONSE) {
			vtoe_ctl_note(VTOE_OP_CLOSE, rep.sid, rep.cid, VTOE_CLOSE_ABORTED);
			vtoe_ctl_note(VTOE_OP_FALLBACK, rep.sid, rep.cid, VTOE_FB_RESOURCES);
		}
		return vtoe_connect_kernel(fd, s, addr, len);
	}

	sid = rep.sid;
	switch (rep.event) {
	case VTOE_EV_CONNECT_RESPONSE:
		break;
	case VTOE_EV_CONNECT_REJECTED:
	case VTOE_EV_UNREACHABLE:
	case VTOE_EV_ERROR:
		vtoe_close_fds(fds);
		errno = rep.err > 0 && rep.err < 4096 ? rep.err : ECONNREFUSED;
		return -1;
	case VTOE_EV_FALLBACK:
		vtoe_close_fds(fds);
		vtoe_dbg("fd %d: agent says kernel TCP (reason %u)", fd, rep.reason);
		vtoe_held_learn(&to, rep.skip_until_ms, rep.reason);
		return vtoe_connect_kernel(fd, s, addr, len);
	default:
		vtoe_close_fds(fds);
		vtoe_ctl_note(VTOE_OP_FALLBACK, sid, rep.cid, VTOE_FB_RESOURCES);
		return vtoe_connect_kernel(fd, s, addr, len);
	}

	conn = vtoe_sock_new(VTOE_KIND_PLAIN, s->family); /* CONN once attached */
	if (!conn || vtoe_conn_prepare(conn, &rep, fds, 0) < 0) {
		vtoe_warn("fd %d: unusable CONNECT_RESPONSE from the agent: kernel TCP", fd);
		goto abort_kernel;
	}

	e = vtoe_rendezvous(fd, addr, len, &fl);
	if (e) {
		vtoe_dbg("fd %d: kernel rendezvous failed: %s", fd, strerror(e));
		vtoe_ctl_note(VTOE_OP_CLOSE, sid, rep.cid, VTOE_CLOSE_ABORTED);
		vtoe_conn_unmap(&conn->c);
		vtoe_close_fds(fds);
		vtoe_sock_put(conn);
		errno = e;
		return -1;
	}

	fdfl = REAL(fcntl)(fd, F_GETFD);
	nonblock = fl >= 0 && (fl & O_NONBLOCK);
	/* The agent holds the kernel rendezvous socket since the CONNECT, until the server's
	 * shim claims the connection: if the server takes it on kernel TCP instead (a process
	 * without the shim or the agent accepted it), the agent carries our stream over it. */
	if (vtoe_conn_attach(fd, conn, fds, nonblock, fdfl >= 0 && (fdfl & FD_CLOEXEC), s) < 0) {
		/* The kernel connection exists: keep it rather than fail the call. */
		vtoe_warn("fd %d: cannot attach the offloaded socket (%s): kernel TCP", fd,
			  strerror(errno));
		vtoe_ctl_note(VTOE_OP_CLOSE, sid, rep.cid, VTOE_CLOSE_ABORTED);
		vtoe_conn_unmap(&conn->c);
		vtoe_close_fds(fds);
		vtoe_sock_put(conn);
		vtoe_untrack(fd, s);
		return 0;
	}
	vtoe_ep_follow(fd, s, conn); /* epoll registrations made before connect() */
	vtoe_ctl_note(VTOE_OP_ESTABLISH, sid, rep.cid, 0);
	vtoe_info("fd %d: offloaded connect, cid %llu, ring %u", fd, (unsigned long long)rep.cid,
		  rep.ring_size);
	if (nonblock)
		atomic_fetch_or(&conn->c.flags, VTOE_CF_CONNECT_PENDING);
	vtoe_sock_put(conn);
	if (nonblock) {
		/* like TCP: in progress now, but writable at once with SO_ERROR 0 */
		errno = EINPROGRESS;
		return -1;
	}
	return 0;

abort_kernel:
	vtoe_ctl_note(VTOE_OP_CLOSE, sid, rep.cid, VTOE_CLOSE_ABORTED);
	if (conn)
		vtoe_sock_put(conn);
	vtoe_close_fds(fds);
	return vtoe_connect_kernel(fd, s, addr, len);
}

static int vtoe_connect_candidate(int fd, struct vtoe_sock *s, const struct sockaddr *addr,
				  socklen_t len)
{
	int r;

	/* Only what the kernel would accept is worth asking the agent about. */
	if (!addr || addr->sa_family != s->family ||
	    len < (addr->sa_family == AF_INET ? sizeof(struct sockaddr_in)
					      : sizeof(struct sockaddr_in6)) ||
	    vtoe_sock_shared(s))
		return REAL(connect)(fd, addr, len);
	pthread_mutex_lock(&s->lock);
	if (atomic_load(&s->kind) == VTOE_KIND_CANDIDATE)
		r = vtoe_connect_offload(fd, s, addr, len);
	else
		r = REAL(connect)(fd, addr, len);
	pthread_mutex_unlock(&s->lock);
	return r;
}

VTOE_EXPORT int vtoe_w_connect(int fd, const struct sockaddr *addr, socklen_t len)
	__asm__("connect");
int vtoe_w_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	struct vtoe_sock *s;
	int r;

	if (vtoe_likely(!vtoe_fd_peek(fd)))
		return REAL(connect)(fd, addr, len);
	s = vtoe_fd_get(fd);
	switch (s ? atomic_load(&s->kind) : VTOE_KIND_FREE) {
	case VTOE_KIND_INTERNAL:
		return vtoe_ebadf();
	case VTOE_KIND_CANDIDATE:
		r = vtoe_connect_candidate(fd, s, addr, len);
		break;
	case VTOE_KIND_CONN:
		/* After a nonblocking connect the next connect() reports success once. */
		if (atomic_fetch_and(&s->c.flags, ~VTOE_CF_CONNECT_PENDING) &
		    VTOE_CF_CONNECT_PENDING) {
			r = 0;
		} else {
			errno = EISCONN;
			r = -1;
		}
		break;
	default:
		r = REAL(connect)(fd, addr, len);
		break;
	}
	vtoe_sock_put(s);
	return r;
}

/* ------------------------------------------------------------------------------------------ */
/* Passive open                                                                                */
/* ------------------------------------------------------------------------------------------ */

enum vtoe_listen_outcome {
	VTOE_LISTEN_REGISTERED,
	VTOE_LISTEN_DECLINED,	/* policy: a plain kernel listener */
	VTOE_LISTEN_NO_AGENT,	/* no agent now: registered when one answers (vtoe_ctl.c) */
	VTOE_LISTEN_UNBOUND,	/* no port yet: listen() picks it, register afterwards */
};

/* OPEN and LISTEN for s's bound address, with its socket fd as the proof; s->lock held. */
static enum vtoe_listen_outcome vtoe_listen_announce(struct vtoe_sock *s, int fd)
{
	struct vtoe_ctl_req req;
	struct vtoe_ctl_rep rep;
	int fds[VTOE_FD__COUNT];
	const struct vtoe_listener_page *page;

	vtoe_ctl_req_init(&req, VTOE_OP_OPEN);
	if (vtoe_ctl_rpc(&req, &rep, NULL) < 0)
		return VTOE_LISTEN_NO_AGENT;
	if (rep.event != VTOE_EV_ACK)
		return VTOE_LISTEN_DECLINED;
	s->sid = rep.sid;
	atomic_store(&s->accept_quiet_until, 0); /* a promise of another registration */
	vtoe_ctl_req_init(&req, VTOE_OP_LISTEN);
	req.sid = s->sid;
	req.arg = s->backlog < 0 ? 0 : (uint32_t)s->backlog;
	vtoe_addr_to_wire((struct sockaddr *)&s->local, s->local_len, &req.local);
	s->ctl_losses = vtoe_ctl_losses();
	if (vtoe_ctl_rpc_fd(&req, fd, &rep, fds) < 0) {
		/* Registered, but the page did not fit (EMFILE): accept asks every time. */
		if (errno == EMFILE && rep.event == VTOE_EV_ACK) {
			atomic_store_explicit(&s->lpage, NULL, memory_order_release);
			return VTOE_LISTEN_REGISTERED;
		}
		s->sid = 0;
		return VTOE_LISTEN_NO_AGENT;
	}
	if (rep.event != VTOE_EV_ACK) {
		vtoe_close_fds(fds);
		s->sid = 0;
		return VTOE_LISTEN_DECLINED;
	}
	page = fds[0] >= 0 ? vtoe_listener_page_map(fds[0]) : NULL;
	vtoe_close_fds(fds);
	/* A page of an earlier registration (an agent that went away) stays mapped, since an
	 * accept in another thread may be reading it: one page per agent restart. */
	atomic_store_explicit(&s->lpage, page, memory_order_release);
	vtoe_info("listener registered, sid %u port %u", s->sid, req.local.port);
	return VTOE_LISTEN_REGISTERED;
}

static enum vtoe_listen_outcome vtoe_listen_register(int fd, struct vtoe_sock *s, int backlog)
{
	enum vtoe_listen_outcome outcome = VTOE_LISTEN_DECLINED;

	pthread_mutex_lock(&s->lock);
	if (atomic_load(&s->kind) != VTOE_KIND_CANDIDATE)
		goto out;
	s->local_len = sizeof(s->local);
	if (REAL(getsockname)(fd, (struct sockaddr *)&s->local, &s->local_len) < 0)
		goto out;
	if (((struct sockaddr_in *)&s->local)->sin_port == 0) { /* same offset for sin6_port */
		outcome = VTOE_LISTEN_UNBOUND;
		goto out;
	}
	s->backlog = backlog;
	outcome = vtoe_listen_announce(s, fd);
	if (outcome == VTOE_LISTEN_REGISTERED || outcome == VTOE_LISTEN_NO_AGENT)
		atomic_store(&s->kind, VTOE_KIND_LISTENER); /* NO_AGENT: sid 0 for now */
out:
	pthread_mutex_unlock(&s->lock);
	return outcome;
}

/*
 * The channel to an agent is new: register each listener this process holds that the agent
 * does not know, so its clients are offloaded again after an agent restart (or once an agent
 * comes up at all).  Listeners registered on the channel still in use are left alone, as are
 * those a fork inherited registered (the parent's registration stands for them).
 */
void vtoe_listen_reregister(void)
{
	unsigned losses = vtoe_ctl_losses();

	for (struct vtoe_sock *s = vtoe_sock_first(); s; s = s->all_next) {
		int fd;

		if (atomic_load(&s->kind) != VTOE_KIND_LISTENER || !vtoe_sock_tryget(s))
			continue;
		pthread_mutex_lock(&s->lock);
		if (atomic_load(&s->kind) == VTOE_KIND_LISTENER && atomic_load(&s->nfds) > 0 &&
		    !s->listen_declined && (s->sid == 0 || s->ctl_losses != losses) &&
		    (fd = vtoe_fd_of(s)) >= 0 && vtoe_listen_announce(s, fd) == VTOE_LISTEN_DECLINED)
			s->listen_declined = true;
		pthread_mutex_unlock(&s->lock);
		vtoe_sock_put(s);
	}
}

/* The kernel refused the listen the agent was told of: take it back. */
static void vtoe_listen_withdraw(struct vtoe_sock *s)
{
	int saved = errno;

	pthread_mutex_lock(&s->lock);
	if (atomic_load(&s->kind) == VTOE_KIND_LISTENER) {
		if (s->sid)
			vtoe_ctl_note(VTOE_OP_CLOSE, s->sid, 0, 0);
		s->sid = 0;
		atomic_store(&s->kind, VTOE_KIND_CANDIDATE);
	}
	pthread_mutex_unlock(&s->lock);
	errno = saved;
}

/*
 * A bound socket is registered with the agent before the kernel opens its port: a client
 * already knocking would otherwise reach the kernel listener first, find no offloaded
 * listener and fall back.  An unbound socket's port is chosen by listen() itself, so no
 * client can know it before listen() returns: it is registered afterwards.
 */
VTOE_EXPORT int listen(int fd, int backlog)
{
	enum vtoe_listen_outcome outcome = VTOE_LISTEN_DECLINED;
	struct vtoe_sock *s;
	bool ours;
	int r;

	if (vtoe_likely(!vtoe_fd_peek(fd)))
		return REAL(listen)(fd, backlog);
	s = vtoe_fd_get(fd);
	if (s == &vtoe_internal_sock)
		return vtoe_ebadf();
	ours = s && atomic_load(&s->kind) == VTOE_KIND_CANDIDATE && !vtoe_sock_shared(s);
	if (ours)
		outcome = vtoe_listen_register(fd, s, backlog);
	r = REAL(listen)(fd, backlog);
	if (r < 0 && (outcome == VTOE_LISTEN_REGISTERED || outcome == VTOE_LISTEN_NO_AGENT)) {
		vtoe_listen_withdraw(s);
	} else if (r == 0 && ours) {
		if (outcome == VTOE_LISTEN_UNBOUND)
			outcome = vtoe_listen_register(fd, s, backlog);
		if (outcome == VTOE_LISTEN_REGISTERED || outcome == VTOE_LISTEN_NO_AGENT)
			vtoe_ctl_serving();
		else if (atomic_load(&s->kind) == VTOE_KIND_CANDIDATE)
			vtoe_untrack(fd, s); /* a plain kernel listener: nothing more for us to do */
	}
	vtoe_sock_put(s);
	return r;
}

/* Ask the agent whether the new kernel connection cfd is an offloaded client; if so swap
 * in the offloaded socket.  Any trouble leaves cfd on kernel TCP: never lose a client. */
static void vtoe_accept_offload(struct vtoe_sock *ls, int cfd, const struct sockaddr_storage *peer,
				socklen_t peer_len, int flags)
{
	struct vtoe_ctl_req req;
	struct vtoe_ctl_rep rep;
	struct vtoe_sock *conn;
	int fds[VTOE_FD__COUNT];

	if (!ls->sid) {
		/* Unknown to the agent, so this client came over the kernel; an agent that is
		 * up now gets the listener for the next ones (vtoe_listen_reregister). */
		(void)vtoe_ctl_up();
		return;
	}
	/* A claim this process could not take would strand the client: without room for the
	 * offloaded socket's descriptors, do not claim; the agent then carries the connection
	 * over this kernel socket (its late-fallback relay).  Tried only once the process uses
	 * much of its descriptor space (cfd, the lowest free number, says how much). */
	if (cfd >= vtoe_cfg.internal_fd_base / 2 && !vtoe_fds_free(VTOE_FD__COUNT + 1))
		return;
	/* A kernel client, with nothing to claim, when the agent said it offloads nothing to this
	 * listener for now, or when no offloaded connection waits on its port (the agent counts
	 * them before their client can connect), as long as the agent that wrote the page is
	 * still there: after a restart, asking is what registers the listener again.  The agent
	 * is told how many, the first at once and then every VTOE_KERNEL_TELL_EVERY. */
	if (vtoe_ms_before(vtoe_ms32_now(), atomic_load_explicit(&ls->accept_quiet_until,
							      memory_order_relaxed)) ||
	    (vtoe_listener_page_idle(atomic_load_explicit(&ls->lpage, memory_order_acquire)) &&
	     vtoe_ctl_alive(ls->ctl_losses))) {
		unsigned n = atomic_fetch_add(&ls->kernel_untold, 1) + 1;

		if (n >= VTOE_KERNEL_TELL_EVERY || !atomic_exchange(&ls->kernel_told, true))
			vtoe_listener_tell_kernel(ls);
		return;
	}
	vtoe_ctl_req_init(&req, VTOE_OP_ACCEPT);
	req.sid = ls->sid;
	vtoe_addr_to_wire((struct sockaddr *)&ls->local, ls->local_len, &req.local);
	if (vtoe_addr_to_wire((const struct sockaddr *)peer, peer_len, &req.remote) < 0)
		return;
	/* The accepted socket goes with it: it alone names the connection to claim. */
	if (vtoe_ctl_rpc_fd(&req, cfd, &rep, fds) < 0) {
		/* Claimed, but its descriptors did not fit after all: a reset, which the client
		 * sees, rather than a connection nobody reads. */
		if (errno == EMFILE && rep.event == VTOE_EV_CONNECT_ESTABLISHED)
			vtoe_ctl_note(VTOE_OP_CLOSE, rep.sid, rep.cid, VTOE_CLOSE_RESET);
		return;
	}
	if (rep.event != VTOE_EV_CONNECT_ESTABLISHED) {
		if (rep.event == VTOE_EV_FALLBACK)
			atomic_store_explicit(&ls->accept_quiet_until, rep.skip_until_ms,
					      memory_order_relaxed);
		vtoe_close_fds(fds);
		return;
	}
	conn = vtoe_sock_new(VTOE_KIND_PLAIN, ls->family); /* CONN once attached */
	vtoe_park_sweep();
	if (conn && vtoe_conn_prepare(conn, &rep, fds, 1) == 0)
		vtoe_park_rendezvous(cfd);
	if (!conn || !conn->c.reg ||
	    vtoe_conn_attach(cfd, conn, fds, flags & SOCK_NONBLOCK, flags & SOCK_CLOEXEC, ls) < 0) {
		vtoe_warn("fd %d: unusable CONNECT_ESTABLISHED from the agent: kernel TCP", cfd);
		vtoe_ctl_note(VTOE_OP_CLOSE, rep.sid, rep.cid, VTOE_CLOSE_RESET);
		if (conn) {
			vtoe_conn_unmap(&conn->c);
			vtoe_sock_put(conn);
		}
		vtoe_close_fds(fds);
		return;
	}
	if (!conn->c.sid)
		conn->c.sid = ls->sid;
	vtoe_info("fd %d: offloaded accept, cid %llu, ring %u", cfd, (unsigned long long)rep.cid,
		  rep.ring_size);
	vtoe_sock_put(conn);
}

void vtoe_addr_copy_out(const struct sockaddr_storage *ss, socklen_t len, struct sockaddr *addr,
			socklen_t *alen)
{
	if (!addr || !alen)
		return;
	memcpy(addr, ss, VTOE_MIN(*alen, len));
	*alen = len;
}

static int vtoe_accept_common(int fd, struct sockaddr *addr, socklen_t *alen, int flags)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct vtoe_sock *s = vtoe_fd_get(fd);
	int cfd;

	if (s == &vtoe_internal_sock)
		return vtoe_ebadf();
	/* Not ours, or argument errors the kernel must report exactly as it does. */
	if (!s || atomic_load(&s->kind) != VTOE_KIND_LISTENER || (addr && !alen) ||
	    (alen && (int)*alen < 0)) {
		vtoe_sock_put(s);
		cfd = REAL(accept4)(fd, addr, alen, flags);
		if (vtoe_retry_emfile(cfd))
			cfd = REAL(accept4)(fd, addr, alen, flags);
		vtoe_fd_forget_stale(cfd);
		return cfd;
	}
	cfd = REAL(accept4)(fd, (struct sockaddr *)&ss, &sl, flags);
	if (vtoe_retry_emfile(cfd))
		cfd = REAL(accept4)(fd, (struct sockaddr *)&ss, &sl, flags);
	if (cfd >= 0) {
		vtoe_fd_forget_stale(cfd);
		vtoe_accept_offload(s, cfd, &ss, sl, flags);
		vtoe_addr_copy_out(&ss, sl, addr, alen);
	}
	vtoe_sock_put(s);
	return cfd;
}

VTOE_EXPORT int vtoe_w_accept(int fd, struct sockaddr *addr, socklen_t *alen) __asm__("accept");
int vtoe_w_accept(int fd, struct sockaddr *addr, socklen_t *alen)
{
	int cfd;

	if (vtoe_likely(!vtoe_fd_peek(fd))) {
		cfd = REAL(accept)(fd, addr, alen);
		if (vtoe_retry_emfile(cfd))
			cfd = REAL(accept)(fd, addr, alen);
		vtoe_fd_forget_stale(cfd);
		return cfd;
	}
	return vtoe_accept_common(fd, addr, alen, 0);
}

VTOE_EXPORT int vtoe_w_accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags)
	__asm__("accept4");
int vtoe_w_accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags)
{
	int cfd;

	if (vtoe_likely(!vtoe_fd_peek(fd))) {
		cfd = REAL(accept4)(fd, addr, alen, flags);
		if (vtoe_retry_emfile(cfd))
			cfd = REAL(accept4)(fd, addr, alen, flags);
		vtoe_fd_forget_stale(cfd);
		return cfd;
	}
	return vtoe_accept_common(fd, addr, alen, flags);
}

/* ------------------------------------------------------------------------------------------ */
/* close, shutdown, dup                                                                        */
/* ------------------------------------------------------------------------------------------ */

VTOE_EXPORT int close(int fd)
{
	return vtoe_fd_close(fd);
}

/* The kernel's close_range over [lo, hi]; without it (before Linux 5.9), one close per number
 * up to the descriptor limit. */
static int vtoe_close_run(unsigned int lo, unsigned int hi, unsigned int flags)
{
	long max;

	if (vtoe_syscall(SYS_close_range, lo, hi, flags) == 0)
		return 0;
	if (errno != ENOSYS)
		return -1;
	if (flags) /* CLOEXEC or UNSHARE cannot be done one number at a time */
		return -1;
	max = sysconf(_SC_OPEN_MAX);
	for (unsigned long fd = lo; fd <= hi && (max < 0 || fd < (unsigned long)max); fd++)
		REAL(close)((int)fd);
	return 0;
}

/*
 * close_range and closefrom (daemons such as sshd close every number above their own after
 * taking over a socket; a child about to exec does the same, often a vfork child on its
 * parent's memory, or the fork child of a threaded parent).  The library's own descriptors in
 * the range stay open: the program never had them, and without them its connections lose
 * their agent and their peers' bells.  Every other number goes to the kernel, in runs between
 * ours, and the table is left as it is: a socket of ours closed so is found gone when its
 * number comes back (vtoe_fd_forget_stale), and its peer sees the end of its socketpair, as
 * before.  So nothing here takes a lock or changes what the parent would see.
 * CLOSE_RANGE_CLOEXEC goes to the kernel whole: ours are close-on-exec already.
 */
static int vtoe_close_range(unsigned int lo, unsigned int hi, unsigned int flags)
{
	unsigned int run = lo, top = hi < vtoe_fdtab_max ? hi : vtoe_fdtab_max - 1;
	int r = 0;

	if (lo > hi || (flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC))) {
		errno = EINVAL;
		return -1;
	}
	if (flags & CLOSE_RANGE_CLOEXEC)
		return vtoe_syscall(SYS_close_range, lo, hi, flags) == 0 ? 0 : -1;
	if ((flags & CLOSE_RANGE_UNSHARE) && unshare(CLONE_FILES) < 0)
		return -1;
	for (unsigned int fd = lo; lo < vtoe_fdtab_max && fd <= top; fd++) {
		if (vtoe_likely(vtoe_fd_peek((int)fd) != &vtoe_internal_sock))
			continue;
		if (run < fd && vtoe_close_run(run, fd - 1, 0) < 0)
			r = -1;
		run = fd + 1;
	}
	if (run > lo && run - 1 == hi)
		return r; /* the range ended on one of ours */
	if (vtoe_close_run(run, hi, 0) < 0)
		r = -1;
	return r;
}

VTOE_EXPORT int close_range(unsigned int lo, unsigned int hi, int flags)
{
	return vtoe_close_range(lo, hi, (unsigned int)flags);
}

VTOE_EXPORT void closefrom(int lowfd)
{
	vtoe_close_range(lowfd < 0 ? 0 : (unsigned int)lowfd, ~0u, 0);
}

/*
 * A connection works on one of the application's numbers for its socket (c->fd), and the
 * application is closing (after clearing its slot) or replacing (dup2 onto it) that number.
 * Returns 1 if the number stays open for the connection (the caller must not close it: the
 * release does), 0 if the caller may go on, -1 (EMFILE) if no number was left to move to.
 */
static int vtoe_conn_fd_leaving(struct vtoe_sock *s, int fd, bool replacing)
{
	int nfd;

	if (atomic_load(&s->kind) != VTOE_KIND_CONN ||
	    __atomic_load_n(&s->c.fd, __ATOMIC_SEQ_CST) != fd)
		return 0;
	if (!replacing && atomic_load(&s->nfds) == 0) {
		/* The last number: the release (FIN or reset) runs on it and closes it, now or,
		 * if a call in progress (a blocked reader) holds the socket, when that returns. */
		vtoe_fd_set_internal(fd, true);
		return 1;
	}
	/* Other numbers keep the socket: move to a copy of our own.  Then look for calls in
	 * progress, which may have read the old number before the move (they take their
	 * reference first): while there may be, the old number stays open too. */
	nfd = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, vtoe_cfg.internal_fd_base);
	if (nfd < 0) {
		if (replacing)
			return -1; /* the caller fails with EMFILE, as the kernel's dup would */
		vtoe_fd_set_internal(fd, true); /* out of numbers: keep this one */
		return 1;
	}
	vtoe_fd_set_internal(nfd, true);
	__atomic_store_n(&s->c.fd, nfd, __ATOMIC_SEQ_CST);
	if (replacing || atomic_load(&s->ref) == atomic_load(&s->nfds) + 1)
		return 0;
	vtoe_fd_set_internal(fd, true);
	__atomic_store_n(&s->c.fd_retired, fd, __ATOMIC_SEQ_CST);
	return 1;
}

int vtoe_fd_close(int fd)
{
	struct vtoe_sock *s = vtoe_fd_peek(fd);
	int r = 0;

	if (vtoe_likely(!s))
		return REAL(close)(fd);
	if (s == &vtoe_internal_sock)
		return vtoe_ebadf();
	/* Untrack first: once the number is closed another thread may get it back. */
	s = vtoe_fd_remove(fd);
	if (!s || vtoe_conn_fd_leaving(s, fd, false) == 0)
		r = REAL(close)(fd);
	vtoe_sock_put(s);
	return r;
}

VTOE_EXPORT int shutdown(int fd, int how)
{
	struct vtoe_sock *s;
	int r;

	if (vtoe_likely(!vtoe_fd_peek(fd)))
		return REAL(shutdown)(fd, how);
	s = vtoe_fd_get(fd);
	if (s == &vtoe_internal_sock)
		return vtoe_ebadf();
	if (s && atomic_load(&s->kind) == VTOE_KIND_CONN) {
		r = vtoe_conn_shutdown(&s->c, how);
		if (r == 0) {
			/* after a fork the SID belongs to the parent's channel, not ours */
			if (s->gen == atomic_load(&vtoe_fork_gen))
				vtoe_ctl_note(VTOE_OP_SHUTDOWN, s->c.sid, s->c.cid, (uint32_t)how);
			vtoe_dbg("fd %d: shutdown(%d), cid %llu: %llu bytes sent, %llu received over the ring",
				 fd, how, (unsigned long long)s->c.cid,
				 (unsigned long long)s->c.bytes_tx, (unsigned long long)s->c.bytes_rx);
		}
	} else {
		r = REAL(shutdown)(fd, how);
	}
	vtoe_sock_put(s);
	return r;
}

VTOE_EXPORT int dup(int fd)
{
	struct vtoe_sock *s;
	int r;

	if (vtoe_likely(!vtoe_fd_peek(fd))) {
		r = REAL(dup)(fd);
		if (vtoe_retry_emfile(r))
			r = REAL(dup)(fd);
		vtoe_fd_forget_stale(r);
		return r;
	}
	s = vtoe_fd_get(fd);
	if (s == &vtoe_internal_sock)
		return vtoe_ebadf();
	r = REAL(dup)(fd);
	if (vtoe_retry_emfile(r))
		r = REAL(dup)(fd);
	if (r >= 0)
		vtoe_fd_install(r, s); /* the new number shares the socket object */
	vtoe_sock_put(s);
	return r;
}

/* dup2/dup3: newfd's old object loses a reference (and is closed if it was the last). */
static int vtoe_dup_to(int oldfd, int newfd, int flags, bool is3)
{
	struct vtoe_sock *so = vtoe_fd_peek(oldfd), *sn = vtoe_fd_peek(newfd);
	int r;

	if (vtoe_likely(!so && !sn))
		return is3 ? REAL(dup3)(oldfd, newfd, flags) : REAL(dup2)(oldfd, newfd);
	if (so == &vtoe_internal_sock)
		return vtoe_ebadf();
	if (sn == &vtoe_internal_sock && vtoe_fd_rehome_internal(newfd) < 0)
		return -1; /* no number left for ours: EMFILE, as the kernel would say for a dup */
	if (sn && sn != &vtoe_internal_sock && oldfd != newfd && so != sn) {
		sn = vtoe_fd_get(newfd);
		r = sn && sn != &vtoe_internal_sock ? vtoe_conn_fd_leaving(sn, newfd, true) : 0;
		vtoe_sock_put(sn == &vtoe_internal_sock ? NULL : sn);
		if (r < 0)
			return -1;
	}
	so = vtoe_fd_get(oldfd);
	r = is3 ? REAL(dup3)(oldfd, newfd, flags) : REAL(dup2)(oldfd, newfd);
	if (r >= 0 && oldfd != newfd)
		vtoe_fd_install(newfd, so);
	vtoe_sock_put(so);
	return r;
}

VTOE_EXPORT int dup2(int oldfd, int newfd)
{
	return vtoe_dup_to(oldfd, newfd, 0, false);
}

VTOE_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	return vtoe_dup_to(oldfd, newfd, flags, true);
}
