/*
 * vtoe_ctl.c - the control channel to the agent: one SOCK_SEQPACKET socket per process,
 * connected lazily, with strictly alternating request/reply under a mutex.
 *
 * Whenever the agent cannot be reached or misbehaves the channel is dropped and the agent
 * counts as unavailable for a while (vtoe_ctl_drop_locked); every socket meanwhile stays on
 * kernel TCP.  Each new channel registers the listeners the agent at its end does not know.
 */
#include "vtoe.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#define VTOE_CTL_RETRY_MS 1000
#define VTOE_CTL_RETRY_MAX_MS 8000
#define VTOE_CTL_HELLO_MS 1000 /* a live agent answers HELLO at once; a stopped one never */
#define VTOE_SPIN_US_MAX 100000u

static pthread_mutex_t vtoe_ctl_lock = PTHREAD_MUTEX_INITIALIZER;
static int vtoe_ctl_fd = -1;
static uint32_t vtoe_ctl_seq;
static atomic_uint vtoe_ctl_spin;
static bool vtoe_ctl_down;
static long long vtoe_ctl_retry_at;
static long long vtoe_ctl_retry_ms = VTOE_CTL_RETRY_MS; /* doubles while attempts fail */
static atomic_uint vtoe_ctl_lost;
static atomic_bool vtoe_ctl_relisten; /* connected: listeners may need registering */
static atomic_bool vtoe_ctl_barred;   /* a seccomp filter forbids the channel's calls */

static long long vtoe_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *vtoe_ev_name(unsigned int ev)
{
	static const char *const names[] = {
		"ACK", "ADDRESS_RESOLVED", "ADDRESS_ERROR", "ROUTE_RESOLVED", "ROUTE_ERROR",
		"CONNECT_REQUEST", "CONNECT_RESPONSE", "CONNECT_ERROR", "UNREACHABLE",
		"CONNECT_REJECTED", "CONNECT_ESTABLISHED", "DISCONNECTED", "DEVICE_REMOVAL",
		"FALLBACK", "ERROR",
	};
	return ev < VTOE_EV__COUNT ? names[ev] : "?";
}

void vtoe_ctl_req_init(struct vtoe_ctl_req *req, uint16_t op)
{
	memset(req, 0, sizeof(*req));
	req->magic = VTOE_CTL_MAGIC;
	req->abi = VTOE_ABI_VERSION;
	req->op = op;
}

int vtoe_addr_to_wire(const struct sockaddr *sa, socklen_t len, struct vtoe_sockaddr *w)
{
	memset(w, 0, sizeof(*w));
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		w->family = AF_INET;
		w->port = ntohs(in->sin_port);
		memcpy(w->addr, &in->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		w->family = AF_INET6;
		w->port = ntohs(in6->sin6_port);
		w->scope_id = in6->sin6_scope_id;
		memcpy(w->addr, &in6->sin6_addr, 16);
		return 0;
	}
	return -1;
}

/*
 * Drop the channel.  One that was up and broke (the agent went away, or was restarted) may be
 * replaced at once: a new agent may already be there.  Otherwise the agent counts as
 * unavailable for a while that doubles with each failed attempt (up to 8 s), so that an agent
 * that is stopped (SIGSTOP) or hung costs one timeout now and then, not one per connect.
 */
static void vtoe_ctl_drop_locked(const char *why, bool lost)
{
	long long wait_ms = 0;

	if (vtoe_ctl_fd >= 0) {
		vtoe_fd_set_internal(vtoe_ctl_fd, false);
		REAL(close)(vtoe_ctl_fd);
		vtoe_ctl_fd = -1;
		atomic_fetch_add(&vtoe_ctl_lost, 1);
	}
	if (!lost) {
		wait_ms = vtoe_ctl_retry_ms;
		vtoe_ctl_retry_ms = VTOE_MIN(vtoe_ctl_retry_ms * 2, VTOE_CTL_RETRY_MAX_MS);
	}
	vtoe_ctl_down = true;
	vtoe_ctl_retry_at = vtoe_now_ms() + wait_ms;
	vtoe_dbg("agent unavailable (%s): kernel TCP for %lld ms", why, wait_ms);
}

unsigned vtoe_ctl_losses(void)
{
	return atomic_load(&vtoe_ctl_lost);
}

/* Is the channel that was up at vtoe_ctl_losses() == since still up, with the agent at the
 * other end (no hang-up, nothing unasked for)?  One poll, no message. */
bool vtoe_ctl_alive(unsigned since)
{
	static const struct timespec zero = { 0, 0 };
	struct pollfd p = { .events = POLLIN };
	bool alive;

	pthread_mutex_lock(&vtoe_ctl_lock);
	p.fd = vtoe_ctl_fd;
	alive = p.fd >= 0 && !atomic_load(&vtoe_ctl_barred) && atomic_load(&vtoe_ctl_lost) == since &&
		REAL(ppoll)(&p, 1, &zero, NULL) == 0;
	pthread_mutex_unlock(&vtoe_ctl_lock);
	return alive;
}

static int vtoe_ctl_wait(int fd, short events, long long deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		long long left = deadline - vtoe_now_ms();
		int r;

		r = vtoe_kpoll(&p, 1, left < 0 ? 0 : (int)left);
		if (r > 0)
			return 0; /* readiness or an error: the next call tells which */
		if (r == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (errno != EINTR)
			return -1;
	}
}

/* One request, with one descriptor attached if fd >= 0. */
static int vtoe_ctl_send_locked(const struct vtoe_ctl_req *req, long long deadline, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { .iov_base = (void *)req, .iov_len = sizeof(*req) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0) {
		struct cmsghdr *cm;

		memset(&cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = sizeof(cbuf.buf);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	for (;;) {
		ssize_t n = REAL(sendmsg)(vtoe_ctl_fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n == (ssize_t)sizeof(*req))
			return 0;
		if (n >= 0) {
			errno = EPROTO;
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN || vtoe_ctl_wait(vtoe_ctl_fd, POLLOUT, deadline) < 0)
			return -1;
	}
}

static void vtoe_close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++) {
		if (fds[i] >= 0)
			REAL(close)(fds[i]);
		fds[i] = -1;
	}
}

/* Receive exactly one reply with up to VTOE_FD__COUNT fds on fd; anything odd is a protocol
 * error.  Descriptors that came with a reply that is refused are closed. */
int vtoe_ctl_recv_reply(int fd, uint32_t seq, struct vtoe_ctl_rep *rep, int fds[VTOE_FD__COUNT],
			long long deadline)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * VTOE_FD__COUNT)];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { .iov_base = rep, .iov_len = sizeof(*rep) };
	struct msghdr msg;
	struct cmsghdr *cm;
	int got[VTOE_FD__COUNT + 8];
	int ngot = 0;
	ssize_t n;

	for (;;) {
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = &iov;
		msg.msg_iovlen = 1;
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = sizeof(cbuf.buf);
		n = REAL(recvmsg)(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n >= 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN || vtoe_ctl_wait(fd, POLLIN, deadline) < 0)
			return -1;
	}
	for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
		int k;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (int i = 0; i < k && ngot < (int)(sizeof(got) / sizeof(got[0])); i++)
			memcpy(&got[ngot++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
	}
	if (n == 0) {
		/* The agent closed the channel, or sent an empty datagram: either way the channel is
		 * done, and descriptors that came with it are not ours to keep. */
		vtoe_close_fds(got, ngot);
		errno = ECONNRESET;
		return -1;
	}
	/* A whole, well-formed reply whose descriptors did not fit (EMFILE: the kernel dropped
	 * them): our shortage, not the agent's fault.  The channel stays in step; the caller falls
	 * back and tells the agent so. */
	if (n == (ssize_t)sizeof(*rep) && (msg.msg_flags & MSG_CTRUNC) &&
	    !(msg.msg_flags & MSG_TRUNC) && rep->magic == VTOE_CTL_MAGIC &&
	    rep->abi == VTOE_ABI_VERSION && rep->seq == seq && rep->nfds >= 1 &&
	    rep->nfds <= VTOE_FD__COUNT) {
		vtoe_close_fds(got, ngot);
		vtoe_dbg("agent reply's descriptors did not fit (%d of %u): kernel TCP", ngot, rep->nfds);
		errno = EMFILE;
		return -1;
	}
	if (n != (ssize_t)sizeof(*rep) || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    rep->magic != VTOE_CTL_MAGIC || rep->abi != VTOE_ABI_VERSION || rep->seq != seq ||
	    rep->nfds != (uint32_t)ngot || ngot > VTOE_FD__COUNT) {
		vtoe_warn("malformed agent reply (len %zd flags %#x magic %#x seq %u/%u nfds %u/%d)",
			  n, msg.msg_flags, rep->magic, rep->seq, seq, rep->nfds, ngot);
		vtoe_close_fds(got, ngot);
		errno = EPROTO;
		return -1;
	}
	for (int i = 0; i < VTOE_FD__COUNT; i++)
		fds[i] = i < ngot ? got[i] : -1;
	return 0;
}

static int vtoe_ctl_rpc_locked(struct vtoe_ctl_req *req, int send_fd, struct vtoe_ctl_rep *rep,
			       int fds[VTOE_FD__COUNT], long long timeout_ms)
{
	long long deadline = vtoe_now_ms() + timeout_ms;
	int dummy[VTOE_FD__COUNT];

	req->seq = ++vtoe_ctl_seq;
	/* The reply cannot be there yet: wait before the first recvmsg, not after its EAGAIN. */
	if (vtoe_ctl_send_locked(req, deadline, send_fd) < 0 ||
	    vtoe_ctl_wait(vtoe_ctl_fd, POLLIN, deadline) < 0 ||
	    vtoe_ctl_recv_reply(vtoe_ctl_fd, req->seq, rep, fds ? fds : dummy, deadline) < 0) {
		/* EOF or EPIPE: the agent closed the channel (it went away); else it is stuck */
		bool lost = errno == ECONNRESET || errno == EPIPE;

		if (errno == EMFILE)
			return -1; /* the reply came, its descriptors did not: rep is valid */
		vtoe_ctl_drop_locked(errno == ETIMEDOUT ? "timeout" : strerror(errno),
				     lost && req->op != VTOE_OP_HELLO);
		return -1;
	}
	if (!fds)
		vtoe_close_fds(dummy, VTOE_FD__COUNT);
	return 0;
}

static bool vtoe_ctl_peer_trusted(int fd)
{
	static atomic_bool warned;
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (REAL(getsockopt)(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof(cred))
		return false;
	if (cred.uid == geteuid() || cred.uid == 0)
		return true;
	if (!atomic_exchange(&warned, true))
		vtoe_warn("the agent at %s runs as uid %u, not as this process's uid %u: not trusted, "
			  "kernel TCP (start your own agent, or point VTOE_AGENT_SOCKET at it)",
			  vtoe_cfg.agent_path, (unsigned int)cred.uid, (unsigned int)geteuid());
	return false;
}

static int vtoe_ctl_connect_locked(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct vtoe_ctl_req req;
	struct vtoe_ctl_rep rep;
	long long deadline;
	int fd;

	if (atomic_load(&vtoe_ctl_barred)) {
		errno = EACCES;
		return -1;
	}
	if (vtoe_ctl_fd >= 0)
		return 0;
	if (vtoe_ctl_down && vtoe_now_ms() < vtoe_ctl_retry_at)
		return -1;
	fd = REAL(socket)(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		vtoe_ctl_drop_locked("socket", false);
		return -1;
	}
	memcpy(sun.sun_path, vtoe_cfg.agent_path, sizeof(sun.sun_path)); /* NUL-terminated: checked at start-up */
	deadline = vtoe_now_ms() + vtoe_cfg.agent_timeout_ms;
	while (REAL(connect)(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		/* EAGAIN: the agent's backlog is full; it is alive, so wait a little */
		struct timespec ms = { 0, 1000000 };

		if ((errno != EAGAIN && errno != EINTR) || vtoe_now_ms() >= deadline) {
			REAL(close)(fd);
			vtoe_ctl_drop_locked(strerror(errno), false);
			return -1;
		}
		if (errno == EAGAIN)
			nanosleep(&ms, NULL);
	}
	/* Whoever answers at the path gets our connections: only an agent of our own user (or
	 * root's) is trusted, never one another user started at a path they could squat. */
	if (!vtoe_ctl_peer_trusted(fd)) {
		REAL(close)(fd);
		vtoe_ctl_drop_locked("the agent runs as another user", false);
		return -1;
	}
	vtoe_ctl_fd = vtoe_fd_move_high(fd);
	vtoe_fd_set_internal(vtoe_ctl_fd, true);

	vtoe_ctl_req_init(&req, VTOE_OP_HELLO);
	req.arg = (uint32_t)getpid();
	strncpy(req.name, program_invocation_short_name, sizeof(req.name) - 1);
	if (vtoe_ctl_rpc_locked(&req, -1, &rep, NULL,
				VTOE_MIN(vtoe_cfg.agent_timeout_ms, VTOE_CTL_HELLO_MS)) < 0)
		return -1;
	if (rep.event != VTOE_EV_ACK) {
		vtoe_ctl_drop_locked("HELLO refused", false);
		return -1;
	}
	atomic_store(&vtoe_ctl_spin, VTOE_MIN(rep.spin_us, VTOE_SPIN_US_MAX));
	vtoe_ctl_down = false;
	vtoe_ctl_retry_ms = VTOE_CTL_RETRY_MS;
	atomic_store(&vtoe_ctl_relisten, true);
	vtoe_dbg("agent connected at %s (fd %d, spin %u us)", vtoe_cfg.agent_path, vtoe_ctl_fd,
		 rep.spin_us);
	return 0;
}

/* A new channel: listeners this process holds that the agent does not know (registered with
 * an agent that went away, or opened while none was there) are registered now.  Outside the
 * channel's lock, since that takes RPCs of its own. */
static void vtoe_ctl_after_connect(void)
{
	if (atomic_load(&vtoe_ctl_relisten) && atomic_exchange(&vtoe_ctl_relisten, false))
		vtoe_listen_reregister();
}

int vtoe_ctl_up(void)
{
	int r;

	pthread_mutex_lock(&vtoe_ctl_lock);
	r = vtoe_ctl_connect_locked();
	pthread_mutex_unlock(&vtoe_ctl_lock);
	vtoe_ctl_after_connect();
	return r;
}

uint32_t vtoe_ctl_spin_us(void)
{
	return atomic_load(&vtoe_ctl_spin);
}

/* One RPC; fds (if given) receives the reply's descriptors or -1s.  -1: agent unavailable,
 * or EMFILE: the reply (in rep) came but its descriptors did not fit in this process. */
int vtoe_ctl_rpc(struct vtoe_ctl_req *req, struct vtoe_ctl_rep *rep, int fds[VTOE_FD__COUNT])
{
	return vtoe_ctl_rpc_fd(req, -1, rep, fds);
}

/* The same, with send_fd (if >= 0) passed along with the request; ours stays the caller's. */
int vtoe_ctl_rpc_fd(struct vtoe_ctl_req *req, int send_fd, struct vtoe_ctl_rep *rep,
		    int fds[VTOE_FD__COUNT])
{
	int r = -1;

	memset(rep, 0, sizeof(*rep)); /* callers read it after EMFILE; never stale */
	if (fds)
		fds[0] = fds[1] = fds[2] = -1;
	pthread_mutex_lock(&vtoe_ctl_lock);
	if (vtoe_ctl_connect_locked() == 0)
		r = vtoe_ctl_rpc_locked(req, send_fd, rep, fds, vtoe_cfg.agent_timeout_ms);
	pthread_mutex_unlock(&vtoe_ctl_lock);
	vtoe_ctl_after_connect();
	if (r == 0)
		vtoe_dbg("rpc op %u sid %u -> %s (err %d reason %u nfds %u)", req->op, req->sid,
			 vtoe_ev_name(rep->event), rep->err, rep->reason, rep->nfds);
	return r;
}

/* A note gets no reply.  With no channel there is nobody to tell, so it is dropped.  fd (if
 * >= 0) goes with it (the agent gets its own copy; ours stays the caller's). */
void vtoe_ctl_note_fd(uint16_t op, uint32_t sid, uint64_t cid, uint32_t arg, int fd)
{
	struct vtoe_ctl_req req;
	int saved = errno;

	vtoe_ctl_req_init(&req, op);
	req.sid = sid;
	req.cid = cid;
	req.arg = arg;
	pthread_mutex_lock(&vtoe_ctl_lock);
	if (vtoe_ctl_fd >= 0 && !atomic_load(&vtoe_ctl_barred)) {
		req.seq = ++vtoe_ctl_seq;
		if (vtoe_ctl_send_locked(&req, vtoe_now_ms() + vtoe_cfg.agent_timeout_ms, fd) < 0)
			vtoe_ctl_drop_locked("note", errno == EPIPE || errno == ECONNRESET);
	}
	pthread_mutex_unlock(&vtoe_ctl_lock);
	vtoe_dbg("note op %u sid %u cid %llu arg %u", op, sid, (unsigned long long)cid, arg);
	errno = saved;
}

void vtoe_ctl_note(uint16_t op, uint32_t sid, uint64_t cid, uint32_t arg)
{
	vtoe_ctl_note_fd(op, sid, cid, arg, -1);
}

/* The program installed a seccomp filter: allowed says whether it allows all the channel
 * takes.  If not, the agent counts as gone from now on, as for a process that cannot reach it:
 * new sockets use kernel TCP, and the agent learns of closes from its own watch. */
void vtoe_ctl_sandboxed(bool allowed)
{
	pthread_mutex_lock(&vtoe_ctl_lock);
	if (!allowed && !atomic_exchange(&vtoe_ctl_barred, true)) {
		if (vtoe_ctl_fd >= 0 && VTOE_MAY(SYS_close, vtoe_ctl_fd)) {
			vtoe_fd_set_internal(vtoe_ctl_fd, false);
			REAL(close)(vtoe_ctl_fd);
			vtoe_ctl_fd = -1;
		}
		vtoe_dbg("seccomp filter forbids the agent channel's calls: kernel TCP from now on");
	}
	pthread_mutex_unlock(&vtoe_ctl_lock);
}

/* This process registered a listener: its forks are likely workers that accept on it. */
static atomic_bool vtoe_ctl_is_server;

void vtoe_ctl_serving(void)
{
	atomic_store(&vtoe_ctl_is_server, true);
}

void vtoe_ctl_atfork_child(void)
{
	/* The child must not talk on its parent's channel; it reconnects when it needs to. */
	pthread_mutex_init(&vtoe_ctl_lock, NULL);
	if (vtoe_ctl_fd >= 0) {
		vtoe_fd_set_internal(vtoe_ctl_fd, false);
		REAL(close)(vtoe_ctl_fd);
		vtoe_ctl_fd = -1;
	}
	vtoe_ctl_down = false;
	vtoe_ctl_seq = 0;
	vtoe_ctl_retry_ms = VTOE_CTL_RETRY_MS;
	/* A server's worker connects now, while it has its parent's credentials: nginx, apache
	 * and postgres workers drop privileges before they accept, and a user they switch to
	 * may not reach the agent's socket (owner-only).  Without a channel the worker could not
	 * take over the offloaded connections its listener receives. */
	if (atomic_load(&vtoe_ctl_is_server) && vtoe_cfg.offload)
		(void)vtoe_ctl_connect_locked();
}

bool vtoe_ctl_fd_rehome(int from, int to)
{
	return vtoe_fd_swap(&vtoe_ctl_fd, from, to);
}
