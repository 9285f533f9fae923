/*
 * shim-conformance.c - more TCP behaviours, one fact per line ("call.behaviour: value"), to be
 * diffed between kernel TCP and the shim like shim-semantics.c: multiplexing (select, pselect,
 * ppoll, epoll flags, nested epoll, epoll_pwait2), descriptor life (dup3, F_DUPFD_CLOEXEC,
 * SCM_RIGHTS, fork, exec), introspection, flags, signals, accept and bind options, IPv4-mapped
 * addresses and splice.
 *
 *   shim-conformance list              the groups, one per line
 *   shim-conformance [v6] GROUP        one group's facts
 *   shim-conformance exec-child FD     (internal: the program exec()ed with an inherited socket)
 *   shim-conformance stdio-child       (internal: the same with the socket as stdin and stdout)
 */
#define _GNU_SOURCE
#include "facts.h"

#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <linux/audit.h>
#include <linux/close_range.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <time.h>

static const char *self;

static int readable(int fd, int ms)
{
	return (poll1(fd, POLLIN, ms) & POLLIN) != 0;
}

static void close2(int a, int b)
{
	close(a);
	close(b);
}

static const char *epevs(uint32_t e)
{
	static char buf[4][64];
	static int i;
	char *b = buf[i++ & 3];

	snprintf(b, 64, "%s%s%s%s%s", e & EPOLLIN ? "IN " : "", e & EPOLLOUT ? "OUT " : "",
		 e & EPOLLRDHUP ? "RDHUP " : "", e & EPOLLHUP ? "HUP " : "", e & EPOLLERR ? "ERR " : "");
	return b[0] ? b : "none";
}

/* ---- select, pselect, ppoll --------------------------------------------------------------- */
static void t_select(void)
{
	struct timespec zero = { 0, 0 }, sec = { 1, 0 };
	struct timeval tv0 = { 0, 0 };
	sigset_t mask;
	fd_set r, w;
	char buf[8];
	int c, s;

	make_pair(&c, &s);
	sigemptyset(&mask);
	FD_ZERO(&r);
	FD_ZERO(&w);
	FD_SET(s, &r);
	FD_SET(c, &w);
	int n = select((c > s ? c : s) + 1, &r, &w, NULL, &tv0);
	SAY("select.idle: %d r=%d w=%d", n, FD_ISSET(s, &r), FD_ISSET(c, &w));
	send(c, "abc", 3, 0);
	FD_ZERO(&r);
	FD_SET(s, &r);
	n = pselect(s + 1, &r, NULL, NULL, &sec, &mask);
	SAY("pselect.data: %d r=%d", n, FD_ISSET(s, &r));
	struct pollfd p = { .fd = s, .events = POLLIN | POLLRDHUP };
	n = ppoll(&p, 1, &zero, &mask);
	SAY("ppoll.data: %d %s", n, evs(p.revents));
	recv(s, buf, sizeof(buf), 0);
	shutdown(c, SHUT_WR);
	p.revents = 0;
	n = ppoll(&p, 1, &sec, &mask);
	SAY("ppoll.fin: %d %s", n, evs(p.revents));
	FD_ZERO(&r);
	FD_SET(s, &r);
	n = select(s + 1, &r, NULL, NULL, &tv0);
	SAY("select.fin: %d r=%d", n, FD_ISSET(s, &r));
	close2(c, s);
}

/* ---- epoll: one-shot, RDHUP, HUP/ERR, exclusive, nested, pwait, pwait2 --------------------- */
static int ep_wait(int ep, int ms, uint32_t *events)
{
	struct epoll_event out[4];
	int n = epoll_wait(ep, out, 4, ms);

	*events = n > 0 ? out[0].events : 0;
	return n;
}

/* ---- a kernel fd beside offloaded ones under spinning zero-timeout calls ------------------- */
static double mono_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Calls a zero-timeout wait until it reports something or `limit` seconds pass (-1: nothing). */
#define SPIN_UNTIL(call, limit)                                                                   \
	({                                                                                        \
		double end_ = mono_s() + (limit);                                                 \
		int n_;                                                                           \
		while ((n_ = (call)) == 0 && mono_s() < end_)                                     \
			;                                                                         \
		n_ ? n_ : -1;                                                                     \
	})

/*
 * Through vtoe, poll(…, 0) and epoll_wait(…, 0) answer offloaded fds from the rings and ask the
 * kernel about the others at most every VTOE_POLL_KERNEL_US.  So each case first spins on
 * nothing for 50 ms (many such periods: calls that ask the kernel and calls that do not), then
 * makes the pipe readable: a spinning caller must see it, as on the kernel, well within the
 * 5 s allowed (that bound is a hang's, not a speed).
 */
static void t_poll_mixed(void)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int c, s, pfd[2], ep = epoll_create1(0);
	char buf[8];
	uint32_t e;

	make_pair(&c, &s);
	if (pipe(pfd))
		die("pipe");
	struct pollfd p[2] = { { .fd = s, .events = POLLIN }, { .fd = pfd[0], .events = POLLIN } };
	SAY("poll.mixed-idle: %d", SPIN_UNTIL(poll(p, 2, 0), 0.05));
	if (write(pfd[1], "x", 1) != 1)
		die("write");
	int n = SPIN_UNTIL(poll(p, 2, 0), 5);
	SAY("poll.mixed-kernel-ready: %d %s | %s", n, evs(p[0].revents), evs(p[1].revents));
	send(c, "a", 1, 0);
	poll1(s, POLLIN, 5000); /* arrived (over a fabric it takes a while, as over a network) */
	n = poll(p, 2, 0);
	SAY("poll.mixed-both-ready: %d %s | %s", n, evs(p[0].revents), evs(p[1].revents));
	{
		fd_set r;
		struct timeval tv0 = { 0, 0 };
		int top = (s > pfd[0] ? s : pfd[0]) + 1;

		FD_ZERO(&r);
		FD_SET(s, &r);
		FD_SET(pfd[0], &r);
		n = select(top, &r, NULL, NULL, &tv0);
		SAY("select.mixed-both-ready: %d socket=%d pipe=%d", n, FD_ISSET(s, &r),
		    FD_ISSET(pfd[0], &r));
	}
	SAY("poll.mixed-drain: %s %s", res(read(pfd[0], buf, sizeof(buf))),
	    res(recv(s, buf, sizeof(buf), 0)));

	ev.data.fd = s;
	epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
	ev.data.fd = pfd[0];
	epoll_ctl(ep, EPOLL_CTL_ADD, pfd[0], &ev);
	SAY("epoll.mixed-idle: %d", SPIN_UNTIL(ep_wait(ep, 0, &e), 0.05));
	if (write(pfd[1], "y", 1) != 1)
		die("write");
	n = SPIN_UNTIL(ep_wait(ep, 0, &e), 5);
	SAY("epoll.mixed-kernel-ready: %d %s", n, epevs(e));
	send(c, "b", 1, 0);
	poll1(s, POLLIN, 5000);
	{
		struct epoll_event out[4];
		int got = 0;

		n = epoll_wait(ep, out, 4, 0);
		for (int i = 0; i < n; i++)
			got |= out[i].data.fd == s ? 1 : out[i].data.fd == pfd[0] ? 2 : 4;
		SAY("epoll.mixed-both-ready: %d socket=%d pipe=%d", n, !!(got & 1), !!(got & 2));
	}
	close(ep);
	close(pfd[0]);
	close(pfd[1]);
	close2(c, s);
}

static void t_epoll_flags(void)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT };
	char buf[16];
	uint32_t e = 0;
	int c, s, ep = epoll_create1(EPOLL_CLOEXEC), n;

	make_pair(&c, &s);
	ev.data.fd = s;
	epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
	send(c, "a", 1, 0);
	n = ep_wait(ep, 1000, &e);
	SAY("epoll.oneshot-first: %d %s", n, epevs(e));
	send(c, "b", 1, 0);
	SAY("epoll.oneshot-disarmed: %d", ep_wait(ep, 100, &e));
	ev.events = EPOLLIN | EPOLLONESHOT;
	SAY("epoll.oneshot-mod: %s", res(epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev)));
	n = ep_wait(ep, 1000, &e);
	SAY("epoll.oneshot-rearmed: %d %s", n, epevs(e));
	recv(s, buf, sizeof(buf), 0);

	ev.events = EPOLLIN | EPOLLRDHUP;
	epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev);
	SAY("epoll.rdhup-idle: %d", ep_wait(ep, 0, &e));
	shutdown(c, SHUT_WR);
	n = ep_wait(ep, 1000, &e);
	SAY("epoll.rdhup: %d %s", n, epevs(e));
	SAY("epoll.rdhup-eof: %s", res(recv(s, buf, sizeof(buf), 0)));
	close2(c, s);
	close(ep);

	/* EPOLLEXCLUSIVE: allowed with ADD, refused with MOD */
	make_pair(&c, &s);
	ep = epoll_create1(0);
	ev.events = EPOLLIN | EPOLLEXCLUSIVE;
	ev.data.fd = s;
	SAY("epoll.exclusive-add: %s", res(epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev)));
	SAY("epoll.exclusive-mod: %s", res(epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev)));
	send(c, "x", 1, 0);
	n = ep_wait(ep, 1000, &e);
	SAY("epoll.exclusive-data: %d %s", n, epevs(e));
	close2(c, s);
	close(ep);

	/* nested: an epoll fd inside another */
	int inner = epoll_create1(0), outer = epoll_create1(0);
	make_pair(&c, &s);
	ev.events = EPOLLIN;
	ev.data.fd = s;
	epoll_ctl(inner, EPOLL_CTL_ADD, s, &ev);
	ev.data.fd = inner;
	epoll_ctl(outer, EPOLL_CTL_ADD, inner, &ev);
	SAY("epoll.nested-idle: %d", ep_wait(outer, 0, &e));
	send(c, "y", 1, 0);
	n = ep_wait(outer, 1000, &e);
	SAY("epoll.nested-data: %d %s", n, epevs(e));
	SAY("epoll.nested-inner: %d", ep_wait(inner, 0, &e));

	/* epoll_pwait and epoll_pwait2 */
	struct epoll_event out[2];
	struct timespec ts = { 1, 0 };
	sigset_t mask;
	sigemptyset(&mask);
	n = epoll_pwait(inner, out, 2, 1000, &mask);
	SAY("epoll.pwait: %d %s", n, epevs(n > 0 ? out[0].events : 0));
	n = epoll_pwait2(inner, out, 2, &ts, &mask);
	SAY("epoll.pwait2: %d %s", n, epevs(n > 0 ? out[0].events : 0));
	close2(c, s);
	close2(inner, outer);

	/* an instance with kernel fds only: a call that does not wait sees a write at once */
	int kp[2];
	if (pipe(kp))
		die("pipe");
	ep = epoll_create1(0);
	ev.events = EPOLLIN;
	ev.data.fd = kp[0];
	epoll_ctl(ep, EPOLL_CTL_ADD, kp[0], &ev);
	SAY("epoll.kernel-only-idle: %d", ep_wait(ep, 0, &e));
	if (write(kp[1], "k", 1) != 1)
		die("write");
	n = ep_wait(ep, 0, &e);
	SAY("epoll.kernel-only-at-once: %d %s", n, epevs(e));
	close2(kp[0], kp[1]);
	close(ep);
}

/* HUP/ERR after the peer's reset (linger 0) */
static void t_epoll_reset(void)
{
	struct linger lg = { 1, 0 };
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
	uint32_t e = 0;
	int c, s, ep = epoll_create1(0), err = -1;
	socklen_t el = sizeof(err);

	make_pair(&c, &s);
	ev.data.fd = s;
	epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
	setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(c);
	int n = ep_wait(ep, 1000, &e);
	SAY("epoll.reset: %d %s", n, epevs(e));
	getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el);
	SAY("epoll.reset-so_error: %s", err ? strerrorname_np(err) : "0");
	close(s);
	close(ep);
}

/* ---- edge-triggered epoll: every arrival an edge, read or not; epoll fds as readiness ------ */
/* Asleep in an edge-triggered epoll_wait for up to 5 s. */
struct et_sleeper {
	int ep, n;
	pid_t tid;
	uint32_t e;
};

static void *et_sleep(void *arg)
{
	struct et_sleeper *w = arg;

	__atomic_store_n(&w->tid, self_tid(), __ATOMIC_RELEASE);
	w->n = ep_wait(w->ep, 5000, &w->e);
	return NULL;
}

static void t_epoll_edge(void)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
	char buf[16];
	uint32_t e = 0;
	int c, s, n, ep = epoll_create1(0);

	make_pair(&c, &s);
	ev.data.fd = s;
	epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
	SAY("et.idle: %d", ep_wait(ep, 0, &e));
	send(c, "a", 1, 0);
	n = ep_wait(ep, 1000, &e);
	SAY("et.first: %d %s", n, epevs(e));
	SAY("et.no-new-edge: %d", ep_wait(ep, 0, &e));
	send(c, "b", 1, 0); /* nothing read yet: TCP gives a new edge */
	n = ep_wait(ep, 1000, &e);
	SAY("et.unread-arrival: %d %s", n, epevs(e));
	SAY("et.unread-quiet: %d", ep_wait(ep, 0, &e));
	SAY("et.partial-read: %s", res(recv(s, buf, 1, 0)));
	SAY("et.after-partial: %d", ep_wait(ep, 0, &e));
	send(c, "c", 1, 0);
	n = ep_wait(ep, 1000, &e);
	SAY("et.after-partial-arrival: %d %s", n, epevs(e));
	SAY("et.fionread: %s", res(recv(s, buf, sizeof(buf), MSG_PEEK)));
	shutdown(c, SHUT_WR); /* a FIN after unread data, RDHUP not asked for */
	n = ep_wait(ep, 1000, &e);
	SAY("et.fin-unread: %d %s", n, epevs(e));
	SAY("et.fin-quiet: %d", ep_wait(ep, 0, &e));
	/* Through vtoe the kernel is asked about an fd at most every VTOE_POLL_KERNEL_US (a few
	 * ms at most, with the tick): its wake-up for the FIN, queued meanwhile, is no second
	 * edge either.  The wait is that bound passing, not an ordering. */
	nanosleep(&(struct timespec){ 0, 20 * 1000000 }, NULL);
	SAY("et.fin-quiet-later: %d", ep_wait(ep, 0, &e));
	close2(c, s);

	/* A FIN after unread data wakes a thread asleep in epoll_wait, with an edge (through vtoe
	 * the wake-up comes from the kernel, the next look from the ring).  Whether a look right
	 * after it finds a second edge is the kernel's race, not a rule: TCP wakes the queue twice
	 * for a FIN (the state change, then the data-ready call), and a sleeper that has already
	 * taken the first edge gets the second as a new one (seen under ASan: kernel 1, vtoe 0). */
	{
		struct et_sleeper w = { .ep = ep };
		pthread_t th;

		make_pair(&c, &s);
		ev.events = EPOLLIN | EPOLLET;
		ev.data.fd = s;
		epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
		send(c, "a", 1, 0);
		n = ep_wait(ep, 1000, &e);
		SAY("et.sleep-data: %d %s", n, epevs(e));
		pthread_create(&th, NULL, et_sleep, &w);
		while (!__atomic_load_n(&w.tid, __ATOMIC_ACQUIRE))
			sched_yield();
		wait_blocked(w.tid);
		shutdown(c, SHUT_WR);
		pthread_join(th, NULL);
		SAY("et.sleep-fin: %d %s", w.n, epevs(w.e));
		close2(c, s);
	}

	/* RDHUP asked for, after unread data */
	make_pair(&c, &s);
	ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
	ev.data.fd = s;
	epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
	send(c, "x", 1, 0);
	n = ep_wait(ep, 1000, &e);
	SAY("et.rdhup-data: %d %s", n, epevs(e));
	shutdown(c, SHUT_WR);
	n = ep_wait(ep, 1000, &e);
	SAY("et.rdhup-after-unread: %d %s", n, epevs(e));
	SAY("et.rdhup-read: %s", res(recv(s, buf, sizeof(buf), 0)));
	SAY("et.rdhup-eof: %s", res(recv(s, buf, sizeof(buf), 0)));
	close2(c, s);

	/* OUT edges, and IN|OUT together on an arrival */
	make_pair(&c, &s);
	ev.events = EPOLLOUT | EPOLLET;
	ev.data.fd = c;
	epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
	n = ep_wait(ep, 1000, &e);
	SAY("et.out-first: %d %s", n, epevs(e));
	SAY("et.out-quiet: %d", ep_wait(ep, 0, &e));
	send(s, "z", 1, 0); /* IN is not asked for */
	SAY("et.out-peer-data: %d", ep_wait(ep, 0, &e));
	/* Arrived (at once on loopback; a fabric between hosts takes a while): MOD must report it. */
	poll1(c, POLLIN, 2000);
	ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
	SAY("et.mod: %s", res(epoll_ctl(ep, EPOLL_CTL_MOD, c, &ev)));
	n = ep_wait(ep, 1000, &e);
	SAY("et.mod-reports: %d %s", n, epevs(e));
	SAY("et.mod-quiet: %d", ep_wait(ep, 0, &e));
	send(s, "w", 1, 0);
	n = ep_wait(ep, 1000, &e);
	SAY("et.inout-arrival: %d %s", n, epevs(e));
	ev.events = EPOLLIN | EPOLLET | EPOLLONESHOT;
	epoll_ctl(ep, EPOLL_CTL_MOD, c, &ev);
	n = ep_wait(ep, 1000, &e);
	SAY("et.oneshot: %d %s", n, epevs(e));
	send(s, "v", 1, 0);
	SAY("et.oneshot-disabled: %d", ep_wait(ep, 0, &e));

	/* Room after a write found the buffer full is an OUT edge, even when the reader made the
	 * room before any epoll call saw the buffer full (the kernel's SOCK_NOSPACE). */
	{
		static char chunk[65536], sink[65536];
		int wc, ws, eag = 0;

		make_pair(&wc, &ws);
		ev.events = EPOLLOUT | EPOLLET;
		ev.data.fd = wc;
		epoll_ctl(ep, EPOLL_CTL_ADD, wc, &ev);
		n = ep_wait(ep, 1000, &e);
		SAY("et.out-full-first: %d %s", n, epevs(e));
		while (send(wc, chunk, sizeof(chunk), MSG_DONTWAIT) > 0)
			;
		eag = errno;
		SAY("et.out-full-write: %s", strerrorname_np(eag));
		for (int i = 0; i < 50; i++) {
			while (recv(ws, sink, sizeof(sink), MSG_DONTWAIT) > 0)
				;
			if ((n = ep_wait(ep, 100, &e)) != 0)
				break;
		}
		SAY("et.out-after-full: %d %s", n, epevs(e));
		epoll_ctl(ep, EPOLL_CTL_DEL, wc, NULL);
		close2(wc, ws);
	}

	/* registration lives with the socket, not the number: dup, then close the original */
	int d = dup(c);
	ev.events = EPOLLIN;
	ev.data.fd = 77;
	epoll_ctl(ep, EPOLL_CTL_MOD, c, &ev);
	close(c);
	struct epoll_event out[4];
	n = epoll_wait(ep, out, 4, 1000);
	SAY("et.dup-survives: %d data=%d %s", n, n > 0 ? out[0].data.fd : -1,
	    epevs(n > 0 ? out[0].events : 0));
	SAY("et.del-closed: %s", res(epoll_ctl(ep, EPOLL_CTL_DEL, c, NULL)));
	close(d); /* the last one: the registration goes with the socket */
	SAY("et.closed-gone: %d", epoll_wait(ep, out, 4, 0));
	close(s);

	/* registered before connect(): the registration follows the socket through it */
	uint16_t port;
	int l = make_listener(&port);
	struct sockaddr_storage ss;
	socklen_t sl = addr_any(&ss, port, 1);
	c = socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0);
	ev.events = EPOLLIN | EPOLLOUT;
	ev.data.fd = c;
	epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
	SAY("pre-connect.connect: %s", res(connect(c, (struct sockaddr *)&ss, sl)));
	n = ep_wait(ep, 1000, &e);
	SAY("pre-connect.writable: %d %s", n, epevs(e));
	s = accept(l, NULL, NULL);
	send(s, "p", 1, 0);
	poll1(c, POLLIN, 2000); /* arrived: at once on loopback, a while over a fabric */
	for (int i = 0; i < 100 && (n = ep_wait(ep, 1000, &e)) == 1 && !(e & EPOLLIN); i++)
		;
	SAY("pre-connect.readable: %d %s", n, epevs(e));
	SAY("pre-connect.read: %s", res(recv(c, buf, sizeof(buf), 0)));
	epoll_ctl(ep, EPOLL_CTL_DEL, c, NULL);
	close2(c, s);
	close(l);

	/* an epoll fd as a readiness source for poll and select */
	make_pair(&c, &s);
	ev.events = EPOLLIN;
	ev.data.fd = s;
	epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
	struct pollfd p = { .fd = ep, .events = POLLIN };
	SAY("ep-poll.idle: %d", poll(&p, 1, 0));
	send(c, "q", 1, 0);
	n = poll(&p, 1, 1000);
	SAY("ep-poll.data: %d %s", n, evs(p.revents));
	fd_set r;
	struct timeval tv = { 1, 0 };
	FD_ZERO(&r);
	FD_SET(ep, &r);
	n = select(ep + 1, &r, NULL, NULL, &tv);
	SAY("ep-select.data: %d %d", n, FD_ISSET(ep, &r));
	recv(s, buf, sizeof(buf), 0);
	p.revents = 0;
	SAY("ep-poll.drained: %d", poll(&p, 1, 0));

	/* an epoll fd shared with a child after fork */
	send(c, "f", 1, 0);
	pid_t pid = fork();
	if (pid == 0) {
		int k = epoll_wait(ep, out, 4, 1000);
		char got = 0;
		if (k == 1)
			recv(out[0].data.fd, &got, 1, 0);
		_exit(k == 1 && got == 'f' ? 42 : 1);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	SAY("ep-fork.child: %d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	send(c, "g", 1, 0);
	n = epoll_wait(ep, out, 4, 1000);
	SAY("ep-fork.parent: %d %s", n, epevs(n > 0 ? out[0].events : 0));
	close2(c, s);
	close(ep);
}

/* ---- descriptor life ---------------------------------------------------------------------- */
static void t_fdlife(void)
{
	char buf[16];
	struct stat st;
	int c, s, d, n;

	make_pair(&c, &s);
	SAY("fstat.sock: %d %d", fstat(c, &st) == 0 && S_ISSOCK(st.st_mode),
	    fstat(s, &st) == 0 && S_ISSOCK(st.st_mode));
	d = dup3(s, 200, O_CLOEXEC);
	SAY("dup3.cloexec: %d %d", d == 200, (fcntl(d, F_GETFD) & FD_CLOEXEC) != 0);
	SAY("dup3.same-fd: %s", res(dup3(s, s, 0)));
	n = fcntl(s, F_DUPFD_CLOEXEC, 300);
	SAY("fcntl.dupfd-cloexec: %d %d", n >= 300, (fcntl(n, F_GETFD) & FD_CLOEXEC) != 0);
	close(s);
	close(d);
	send(c, "via-dup", 7, 0);
	SAY("dup.close-others-recv: %s", res(recv(n, buf, sizeof(buf), 0)));
	SAY("dup.reply: %s", res(send(n, "ok", 2, 0)));
	SAY("dup.reply-recv: %s", res(recv(c, buf, sizeof(buf), 0)));
	close(n);
	SAY("dup.last-close-eof: %s", res(recv(c, buf, sizeof(buf), 0)));
	close(c);
}

/* fork: parent and child both use the connection, one after the other */
static void t_fork_both(void)
{
	char buf[16];
	int c, s, st;
	pid_t pid;

	make_pair(&c, &s);
	pid = fork();
	if (pid == 0) {
		send(c, "C", 1, 0);
		char b[4];
		ssize_t r = recv(c, b, sizeof(b), 0); /* the server's reply to the child */
		_exit(r == 2 && !memcmp(b, "c!", 2) ? 0 : 3);
	}
	SAY("fork2.server-got-child: %s", res(recv(s, buf, 1, 0)));
	send(s, "c!", 2, 0);
	waitpid(pid, &st, 0);
	SAY("fork2.child-exit: %d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	SAY("fork2.parent-send: %s", res(send(c, "P", 1, 0)));
	ssize_t r = recv(s, buf, 1, 0);
	SAY("fork2.server-got-parent: %s %c", res(r), buf[0]);
	close2(c, s);
}

/* SCM_RIGHTS: the connection's fd goes to another process, which uses it */
static int send_fd(int via, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { "F", 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return (int)sendmsg(via, &m, 0);
}

static int recv_fd(int via)
{
	char cbuf[CMSG_SPACE(sizeof(int))], one;
	struct iovec iov = { &one, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;
	int fd = -1;

	if (recvmsg(via, &m, 0) != 1)
		return -1;
	cm = CMSG_FIRSTHDR(&m);
	if (cm && cm->cmsg_type == SCM_RIGHTS)
		memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

static void t_scm_rights(void)
{
	char buf[16];
	int c, s, sp[2], st;
	pid_t pid;

	make_pair(&c, &s);
	socketpair(AF_UNIX, SOCK_STREAM, 0, sp);
	pid = fork();
	if (pid == 0) {
		close(c);
		close(s);
		int fd = recv_fd(sp[1]);
		char b[8];
		ssize_t r = recv(fd, b, sizeof(b), 0);
		ssize_t w = send(fd, "from-child", 10, 0);
		_exit(r == 5 && w == 10 ? 0 : 4);
	}
	SAY("scm.sendmsg: %d", send_fd(sp[0], s));
	close(s); /* only the other process holds the server side now */
	send(c, "hello", 5, 0);
	SAY("scm.peer-recv: %s %.10s", res(recv(c, buf, 10, MSG_WAITALL)), buf);
	waitpid(pid, &st, 0);
	SAY("scm.child-exit: %d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	SAY("scm.eof-after-child: %s", res(recv(c, buf, sizeof(buf), 0)));
	close2(sp[0], sp[1]);
	close(c);
}

/* The peer's side of one hand-over: ping the child, read its pong (`pong` bytes), then its
 * exit and the end of the connection. */
static void handover_check(const char *what, int c, pid_t pid, const char *ping, size_t pong)
{
	char buf[32];
	int st = -1;

	send(c, ping, strlen(ping), 0);
	SAY("%s.peer-recv: %s %.*s", what, res(recv(c, buf, pong, MSG_WAITALL)), (int)pong, buf);
	if (pid > 0)
		waitpid(pid, &st, 0);
	SAY("%s.child-exit: %d", what, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	SAY("%s.eof: %s", what, res(recv(c, buf, sizeof(buf), 0)));
	close(c);
}

/* exec with an inherited (not close-on-exec) socket: the new image must be able to use it */
static void t_exec(void)
{
	char fdtext[16];
	int c, s;
	pid_t pid;

	make_pair(&c, &s);
	snprintf(fdtext, sizeof(fdtext), "%d", s);
	pid = fork();
	if (pid == 0) {
		close(c);
		execl(self, self, "exec-child", fdtext, (char *)NULL);
		_exit(127);
	}
	close(s);
	handover_check("exec", c, pid, "ping", 9);
}

/* The same after posix_spawn and friends, which also say whether the child started. */
static void spawn_check(const char *what, int c, pid_t pid, int spawned)
{
	SAY("%s.spawned: %s", what, res(spawned));
	handover_check(what, c, pid, "ping", 9);
}

/* posix_spawn, posix_spawnp, system and popen start the child inside libc. */
static void t_spawn(void)
{
	char fdtext[16], cmd[600];
	char *argv[] = { (char *)self, "exec-child", fdtext, NULL };
	posix_spawn_file_actions_t fa;
	int c, s, r;
	pid_t pid = -1;

	/* close-on-exec socket moved to fd 0 by the file actions, as inetd-style servers do */
	make_pair(&c, &s);
	fcntl(s, F_SETFD, FD_CLOEXEC);
	snprintf(fdtext, sizeof(fdtext), "0");
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, s, 0);
	r = posix_spawn(&pid, self, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(s);
	spawn_check("posix_spawn.dup2-to-0", c, pid, r == 0 ? 0 : -1);

	/* inherited under its own number */
	make_pair(&c, &s);
	snprintf(fdtext, sizeof(fdtext), "%d", s);
	r = posix_spawnp(&pid, self, NULL, NULL, argv, environ);
	close(s);
	spawn_check("posix_spawnp", c, pid, r == 0 ? 0 : -1);

	make_pair(&c, &s);
	snprintf(cmd, sizeof(cmd), "'%s' exec-child %d", self, s);
	pid_t sys_pid = 0;
	int peer = c;
	/* system() blocks until the child is done: the peer side runs in a fork. */
	if ((sys_pid = fork()) == 0) {
		close(s);
		char buf[16];
		send(peer, "ping", 4, 0);
		_exit(recv(peer, buf, 9, MSG_WAITALL) == 9 && !memcmp(buf, "exec-pong", 9) ? 0 : 1);
	}
	r = system(cmd);
	int st;
	waitpid(sys_pid, &st, 0);
	SAY("system.status: %d", WIFEXITED(r) ? WEXITSTATUS(r) : -1);
	SAY("system.peer-ok: %d", WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(s);
	SAY("system.eof: %s", res(recv(c, cmd, sizeof(cmd), 0)));
	close(c);

	make_pair(&c, &s);
	snprintf(cmd, sizeof(cmd), "'%s' exec-child %d", self, s);
	FILE *p = popen(cmd, "r");
	close(s);
	send(c, "ping", 4, 0);
	SAY("popen.peer-recv: %s %.9s", res(recv(c, fdtext, 9, MSG_WAITALL)), fdtext);
	r = p ? pclose(p) : -1;
	SAY("popen.status: %d", r != -1 && WIFEXITED(r) ? WEXITSTATUS(r) : -1);
	SAY("popen.eof: %s", res(recv(c, cmd, sizeof(cmd), 0)));
	close(c);
}

/* stdio on a socket: fdopen, and stdin/stdout of an inetd-style child */
static void t_stdio(void)
{
	char line[64] = "", buf[64];
	int c, s;

	/* the socket idiom: one stream for reading, one on a dup for writing */
	make_pair(&c, &s);
	int s2 = dup(s);
	FILE *f = fdopen(s, "r"), *w = fdopen(s2, "w");
	SAY("fdopen.opened: %d %d fileno-same %d %d", f != NULL, w != NULL, f && fileno(f) == s,
	    w && fileno(w) == s2);
	send(c, "hello stdio\nsecond\n", 19, 0);
	if (!f || !fgets(line, sizeof(line), f))
		strcpy(line, "(null)");
	SAY("fdopen.fgets: %.*s", (int)strcspn(line, "\n"), line);
	SAY("fdopen.fprintf: %d", w ? fprintf(w, "answer %d\n", 42) : -1);
	SAY("fdopen.fflush: %d", w ? fflush(w) : -1);
	SAY("fdopen.peer-recv: %s %.10s", res(recv(c, buf, 10, MSG_WAITALL)), buf);
	if (!f || !fgets(line, sizeof(line), f))
		strcpy(line, "(null)");
	SAY("fdopen.fgets2: %.*s", (int)strcspn(line, "\n"), line);
	SAY("fdopen.fclose: %d %d", f ? fclose(f) : -1, w ? fclose(w) : -1);
	SAY("fdopen.peer-eof: %s", res(recv(c, buf, sizeof(buf), 0)));
	close(c);

	make_pair(&c, &s);
	pid_t pid = fork();
	if (pid == 0) {
		close(c);
		dup2(s, 0);
		dup2(s, 1);
		close(s);
		execl(self, self, "stdio-child", (char *)NULL);
		_exit(127);
	}
	close(s);
	handover_check("stdio-child", c, pid, "ping\n", 10);
}

/* stdin and stdout are the socket: a line in, a line out, through stdio alone */
static int stdio_child(void)
{
	char line[32];

	if (!fgets(line, sizeof(line), stdin) || strcmp(line, "ping\n"))
		return 5;
	printf("stdio-pong");
	return fflush(stdout) == 0 ? 0 : 6;
}

/* range-child S GO TOP: close every number above TOP, then, once told, write to S
 * (t_close_range). */
static int range_child(int s, int go, int top)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char buf[4];

	getpeername(s, (struct sockaddr *)&ss, &sl); /* the socket in use before the closefrom */
	closefrom(top + 1);
	if (read(go, buf, 1) != 1)
		return 1;
	return send(s, "x", 1, MSG_NOSIGNAL) == 1 ? 0 : 3;
}

static int exec_child(int fd)
{
	char b[8];
	ssize_t r = recv(fd, b, 4, MSG_WAITALL);

	if (r != 4 || memcmp(b, "ping", 4))
		return 5;
	return send(fd, "exec-pong", 9, 0) == 9 ? 0 : 6;
}

/* ---- introspection and flags -------------------------------------------------------------- */
static volatile sig_atomic_t sigpipes;

static void on_sigpipe(int sig)
{
	(void)sig;
	sigpipes++;
}

static void t_flags(void)
{
	char buf[32];
	int c, s, v = -1, on = 1, off = 0;
	socklen_t l = sizeof(v);

	make_pair(&c, &s);
	ioctl(c, SIOCOUTQ, &v);
	SAY("ioctl.siocoutq-idle: %d", v);
	SAY("ioctl.fionbio-on: %s", res(ioctl(s, FIONBIO, &on)));
	SAY("ioctl.fionbio-recv: %s", res(recv(s, buf, sizeof(buf), 0)));
	SAY("ioctl.fionbio-flag: %d", (fcntl(s, F_GETFL) & O_NONBLOCK) != 0);
	ioctl(s, FIONBIO, &off);
	SAY("ioctl.fionbio-off-flag: %d", (fcntl(s, F_GETFL) & O_NONBLOCK) != 0);
	getsockopt(s, SOL_SOCKET, SO_ERROR, &v, &l);
	SAY("getsockopt.so_error-idle: %d", v);
	ssize_t m1 = send(c, "ab", 2, MSG_MORE);
	ssize_t m2 = send(c, "cd", 2, 0);
	SAY("send.msg_more: %s %s", res(m1), res(m2));
	SAY("send.msg_more-recv: %s %.4s", res(recv(s, buf, 4, MSG_WAITALL)), buf);
	SAY("send.dontwait: %s", res(send(c, "e", 1, MSG_DONTWAIT)));
	recv(s, buf, 1, 0);
	close(s);
	signal(SIGPIPE, on_sigpipe);
	readable(c, 1000); /* the FIN is in */
	ssize_t r1 = send(c, "z", 1, MSG_NOSIGNAL);
	poll1(c, POLLERR, 1000); /* the reset that answers it */
	ssize_t r2 = send(c, "z", 1, MSG_NOSIGNAL);
	SAY("send.nosignal-closed-peer: %d sigpipe=%d", r1 < 0 || r2 < 0, sigpipes);
	ssize_t r3 = send(c, "z", 1, 0);
	SAY("send.sigpipe: %s sigpipe=%d", res(r3), sigpipes);
	signal(SIGPIPE, SIG_DFL);
	close(c);
}

/* ---- sendmmsg / recvmmsg ----------------------------------------------------------------- */
static void t_mmsg(void)
{
	char a[3] = "abc", b[2] = "de", r0[2], r1[8], r2[8];
	struct iovec out[2] = { { a, 3 }, { b, 2 } }, in[3] = { { r0, 2 }, { r1, 8 }, { r2, 8 } };
	struct mmsghdr sv[2], rv[3];
	struct timespec ts = { 0, 100000000 };
	int c, s;

	memset(sv, 0, sizeof(sv));
	memset(rv, 0, sizeof(rv));
	for (int i = 0; i < 2; i++) {
		sv[i].msg_hdr.msg_iov = &out[i];
		sv[i].msg_hdr.msg_iovlen = 1;
	}
	for (int i = 0; i < 3; i++) {
		rv[i].msg_hdr.msg_iov = &in[i];
		rv[i].msg_hdr.msg_iovlen = 1;
	}
	make_pair(&c, &s);
	int n = sendmmsg(c, sv, 2, 0);
	SAY("sendmmsg.count: %s lens %u %u", res(n), sv[0].msg_len, sv[1].msg_len);
	/* both messages are in: readable only with all 5 bytes */
	setsockopt(s, SOL_SOCKET, SO_RCVLOWAT, &(int){ 5 }, sizeof(int));
	readable(s, 1000);
	setsockopt(s, SOL_SOCKET, SO_RCVLOWAT, &(int){ 1 }, sizeof(int));
	n = recvmmsg(s, rv, 3, MSG_WAITFORONE, NULL);
	SAY("recvmmsg.waitforone: %s lens %u %u %.2s%.3s", res(n), rv[0].msg_len, rv[1].msg_len,
	    r0, r1);
	n = recvmmsg(s, rv, 3, MSG_DONTWAIT, NULL);
	SAY("recvmmsg.empty-dontwait: %s", res(n));
	send(c, "xyz", 3, 0);
	readable(s, 1000);
	n = recvmmsg(s, rv, 1, 0, &ts);
	SAY("recvmmsg.timeout-one: %s len %u", res(n), rv[0].msg_len);
	shutdown(c, SHUT_WR);
	readable(s, 1000);
	n = recvmmsg(s, rv, 2, 0, NULL);
	SAY("recvmmsg.eof: %s lens %u %u", res(n), rv[0].msg_len, rv[1].msg_len);
	close(s);
	readable(c, 1000);
	n = sendmmsg(c, sv, 2, MSG_NOSIGNAL);
	poll1(c, POLLERR, 1000); /* the reset that answers it */
	SAY("sendmmsg.closed-peer: first %s", n < 0 ? "error" : "sent");
	close(c);
}

/* ---- timeouts and signals ----------------------------------------------------------------- */
static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

/* Interrupts the main thread's blocked recv with a signal, then, once it blocks again
 * (restarted), sends the data it is waiting for. */
static pid_t main_tid;
static pthread_t main_thread;

static void *late_sender(void *arg)
{
	struct timespec ms = { 0, 1000000 };

	wait_blocked(main_tid);
	pthread_kill(main_thread, SIGALRM);
	for (int i = 0; i < 10000 && !alarms; i++)
		nanosleep(&ms, NULL);
	wait_blocked(main_tid);
	send(*(int *)arg, "late!", 5, 0);
	return NULL;
}

static void t_signals(void)
{
	struct sigaction sa = { .sa_handler = on_alarm, .sa_flags = SA_RESTART };
	struct timeval tv = { 0, 200000 };
	char buf[1 << 16];
	pthread_t th;
	int c, s, blocked = 0;

	/* SA_RESTART: the blocking recv is restarted and gets the data sent after the signal */
	make_pair(&c, &s);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	main_tid = self_tid();
	main_thread = pthread_self();
	pthread_create(&th, NULL, late_sender, &c);
	SAY("sa_restart.recv: %s", res(recv(s, buf, sizeof(buf), 0)));
	SAY("sa_restart.signals: %d", (int)alarms);
	pthread_join(th, NULL);
	signal(SIGALRM, SIG_DFL);

	/* SO_SNDTIMEO: a send into a full buffer gives up with EAGAIN (or sends part) */
	setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	for (int i = 0; i < 4096 && !blocked; i++) {
		ssize_t r = send(c, buf, sizeof(buf), 0);
		if (r < 0)
			blocked = errno == EAGAIN ? 1 : -errno;
		else if (r < (ssize_t)sizeof(buf))
			blocked = 1;
	}
	SAY("sndtimeo.send-gives-up: %d", blocked);
	close2(c, s);
}

/* close() of the fd while another thread is blocked in recv on it */
static pid_t reader_tid;

static void *blocked_reader(void *arg)
{
	static ssize_t r;
	char buf[8];

	__atomic_store_n(&reader_tid, self_tid(), __ATOMIC_RELEASE);
	r = recv(*(int *)arg, buf, sizeof(buf), 0);
	return &r;
}

static void t_close_blocked(void)
{
	pthread_t th;
	void *ret;
	int c, s;

	make_pair(&c, &s);
	reader_tid = 0;
	pthread_create(&th, NULL, blocked_reader, &s);
	while (!__atomic_load_n(&reader_tid, __ATOMIC_ACQUIRE))
		sched_yield();
	wait_blocked(reader_tid);
	SAY("close-blocked.close: %s", res(close(s)));
	send(c, "x", 1, 0); /* Linux: the blocked recv still owns the socket and gets this */
	pthread_join(th, &ret);
	SAY("close-blocked.recv: %zd", *(ssize_t *)ret);
	close(c);
}

/* ---- accept, bind options, addresses ------------------------------------------------------ */
static void t_accept_bind(void)
{
	struct sockaddr_storage ss;
	socklen_t l;
	uint16_t port;
	int lfd = make_listener(&port), one = 1, a, b, x, y;

	set_nonblock(lfd, 1);
	SAY("accept.empty-nonblock: %s", res(accept(lfd, NULL, NULL)));
	set_nonblock(lfd, 0);
	listen(lfd, 1);
	a = connect_to(port, 0);
	b = connect_to(port, 0);
	SAY("backlog.connects: %d %d", a >= 0, b >= 0);
	x = accept(lfd, NULL, NULL);
	y = accept(lfd, NULL, NULL);
	SAY("backlog.accepts: %d %d", x >= 0, y >= 0);
	close2(a, b);
	close2(x, y);

	/* a second listener on the same port: REUSEADDR does not allow it, REUSEPORT does */
	int r1 = socket(family, SOCK_STREAM, 0);
	setsockopt(r1, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	l = addr_any(&ss, port, 1);
	SAY("reuseaddr.bind-busy: %s", res(bind(r1, (struct sockaddr *)&ss, l)));
	close(r1);
	close(lfd);
	int p1 = socket(family, SOCK_STREAM, 0), p2 = socket(family, SOCK_STREAM, 0);
	setsockopt(p1, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	setsockopt(p2, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	l = addr_any(&ss, 0, 1);
	bind(p1, (struct sockaddr *)&ss, l);
	l = sizeof(ss);
	getsockname(p1, (struct sockaddr *)&ss, &l);
	int b2 = bind(p2, (struct sockaddr *)&ss, l);
	int l2 = listen(p1, 4) | listen(p2, 4);
	SAY("reuseport.bind2: %s %s", res(b2), res(l2));
	a = connect_to(port_of(&ss), 0);
	SAY("reuseport.connect: %d readable=%d", a >= 0, readable(p1, 1000) + readable(p2, 0));
	close(a);
	close2(p1, p2);
}

/* an IPv6 wildcard listener reached from IPv4: the accepted peer is IPv4-mapped */
static void t_v4mapped(void)
{
	struct sockaddr_in6 l6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
	struct sockaddr_in to = { .sin_family = AF_INET };
	struct sockaddr_storage peer;
	socklen_t l = sizeof(l6), pl = sizeof(peer);
	char text[INET6_ADDRSTRLEN] = "", buf[8];
	int lfd = socket(AF_INET6, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0), s;

	bind(lfd, (struct sockaddr *)&l6, l);
	listen(lfd, 4);
	getsockname(lfd, (struct sockaddr *)&l6, &l);
	to.sin_port = l6.sin6_port;
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	SAY("v4mapped.connect: %s", res(connect(c, (struct sockaddr *)&to, sizeof(to))));
	s = accept(lfd, (struct sockaddr *)&peer, &pl);
	inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&peer)->sin6_addr, text, sizeof(text));
	SAY("v4mapped.peer: family=%d %s", peer.ss_family, text);
	send(c, "m", 1, 0);
	SAY("v4mapped.recv: %s", res(recv(s, buf, sizeof(buf), 0)));
	close2(c, s);
	close(lfd);
}

/* splice from a pipe into the socket, and from the socket into a pipe */
static void t_splice(void)
{
	char buf[16] = "";
	int c, s, p[2], q[2];

	make_pair(&c, &s);
	if (pipe(p) || pipe(q))
		die("pipe");
	write(p[1], "spliced", 7);
	SAY("splice.to-socket: %s", res(splice(p[0], NULL, c, NULL, 7, 0)));
	SAY("splice.from-socket: %s", res(splice(s, NULL, q[1], NULL, 7, 0)));
	SAY("splice.pipe-read: %s %.7s", res(read(q[0], buf, sizeof(buf))), buf);
	close2(p[0], p[1]);
	close2(q[0], q[1]);
	close2(c, s);
}

/* ---- the peer's last close, or its death, seen from this end ------------------------------ */

/* A child that holds c (the parent's copy is closed) until it is killed or told to exit. */
static pid_t hold_in_child(int c, int s, int *go)
{
	int ready[2], cmd[2];
	char b;

	if (pipe(ready) || pipe(cmd))
		die("pipe");
	pid_t pid = fork();
	if (pid == 0) {
		close2(ready[0], cmd[1]);
		close(s);
		write(ready[1], "r", 1);
		if (read(cmd[0], &b, 1) == 1 && b == 'c')
			close(c);
		_exit(0);
	}
	close2(ready[1], cmd[0]);
	if (read(ready[0], &b, 1) != 1)
		die("hold_in_child");
	close(ready[0]);
	close(c);
	*go = cmd[1];
	return pid;
}

static void after_end(const char *what, int s)
{
	struct pollfd p = { .fd = s, .events = POLLIN | POLLOUT | POLLRDHUP };
	int err = -1, n;
	socklen_t el = sizeof(err);
	char buf[16];

	/* Across hosts an end arrives when it arrives: wait for it, then say what it is. */
	poll1(s, POLLIN | POLLRDHUP, 1000);
	n = poll(&p, 1, 0);
	SAY("peer-end.%s-poll: %d %s", what, n, evs(p.revents));
	getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el);
	SAY("peer-end.%s-so_error: %s", what, err ? strerrorname_np(err) : "0");
	SAY("peer-end.%s-recv: %s", what, res(recv(s, buf, sizeof(buf), MSG_DONTWAIT)));
	p.revents = 0;
	n = poll(&p, 1, 0);
	SAY("peer-end.%s-poll-after: %d %s", what, n, evs(p.revents));
}

static void t_peer_end(void)
{
	int c, s, go, st, err;
	socklen_t el = sizeof(err);
	pid_t pid;
	char buf[8];

	/* close() with everything read: a FIN */
	make_pair(&c, &s);
	close(c);
	after_end("close", s);
	/* TCP takes the first write after a FIN; the peer's kernel answers it with a reset */
	SAY("peer-end.close-send: %s", res(send(s, "x", 1, MSG_NOSIGNAL)));
	SAY("peer-end.close-send-rst: %s", evs(poll1(s, POLLERR, 1000)));
	err = -1;
	getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el);
	SAY("peer-end.close-send-so_error: %s", err ? strerrorname_np(err) : "0");
	SAY("peer-end.close-send-again: %s", res(send(s, "x", 1, MSG_NOSIGNAL)));
	SAY("peer-end.close-send-recv: %s", res(recv(s, buf, sizeof(buf), MSG_DONTWAIT)));
	SAY("peer-end.close-send-poll: %s", evs(poll1(s, POLLIN | POLLOUT | POLLRDHUP, 0)));
	close(s);

	/* the same, the error read by send instead of SO_ERROR */
	make_pair(&c, &s);
	close(c);
	poll1(s, POLLIN | POLLRDHUP, 1000);
	send(s, "x", 1, MSG_NOSIGNAL);
	poll1(s, POLLERR, 1000);
	SAY("peer-end.send-after-rst: %s", res(send(s, "x", 1, MSG_NOSIGNAL)));
	SAY("peer-end.send-after-rst-again: %s", res(send(s, "x", 1, MSG_NOSIGNAL)));
	close(s);

	/* the last holder killed, nothing unread: its kernel closes the socket with a FIN */
	make_pair(&c, &s);
	pid = hold_in_child(c, s, &go);
	SAY("peer-end.parent-closed-poll: %s", evs(poll1(s, POLLIN | POLLRDHUP, 100)));
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	after_end("killed", s);
	close2(s, go);

	/* killed with data it never read: a reset */
	make_pair(&c, &s);
	send(s, "unread", 6, 0);
	poll1(c, POLLIN, 1000);
	pid = hold_in_child(c, s, &go);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	after_end("killed-unread", s);
	close2(s, go);

	/* both directions shut, by shutdown or close: each end then reads POLLHUP too */
	const short all = POLLIN | POLLOUT | POLLRDHUP;

	make_pair(&c, &s);
	shutdown(c, SHUT_WR);
	poll1(s, POLLIN | POLLRDHUP, 1000);
	SAY("peer-end.half-shut-poll: %s %s", evs(poll1(c, all, 0)), evs(poll1(s, all, 0)));
	shutdown(s, SHUT_WR);
	poll1(c, POLLIN | POLLRDHUP, 1000);
	SAY("peer-end.both-shut-poll: %s %s", evs(poll1(c, all, 0)), evs(poll1(s, all, 0)));
	SAY("peer-end.both-shut-recv: %s %s", res(recv(c, buf, sizeof(buf), 0)),
	    res(recv(s, buf, sizeof(buf), 0)));
	close(s);
	SAY("peer-end.both-shut-peer-closed: %s", evs(poll1(c, all, 100)));
	close(c);

	make_pair(&c, &s);
	shutdown(c, SHUT_WR);
	poll1(s, POLLIN | POLLRDHUP, 1000);
	close(s);
	poll1(c, POLLIN | POLLRDHUP, 1000);
	SAY("peer-end.shut-then-peer-closed: %s", evs(poll1(c, all, 0)));
	close(c);

	make_pair(&c, &s);
	shutdown(s, SHUT_WR);
	poll1(c, POLLIN | POLLRDHUP, 1000);
	pid = hold_in_child(c, s, &go);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	poll1(s, POLLIN | POLLRDHUP, 1000);
	SAY("peer-end.shut-then-peer-killed: %s", evs(poll1(s, all, 0)));
	close2(s, go);

	/* a fork's copy outlives the parent's close; the child's clean close ends it */
	make_pair(&c, &s);
	send(c, "p", 1, 0);
	SAY("peer-end.shared-data: %s", res(recv(s, buf, sizeof(buf), 0)));
	pid = hold_in_child(c, s, &go);
	SAY("peer-end.shared-parent-closed: %s", evs(poll1(s, POLLIN | POLLRDHUP, 100)));
	write(go, "c", 1);
	waitpid(pid, &st, 0);
	after_end("shared-child-closed", s);
	close2(s, go);
}

/* ---- options an offloaded socket takes over from its kernel socket ---------------------- */

static void opts_say(const char *what, int fd)
{
	static const struct {
		const char *name;
		int level, opt;
	} opts[] = {
		{ "keepalive", SOL_SOCKET, SO_KEEPALIVE },   { "keepidle", IPPROTO_TCP, TCP_KEEPIDLE },
		{ "keepcnt", IPPROTO_TCP, TCP_KEEPCNT },     { "nodelay", IPPROTO_TCP, TCP_NODELAY },
		{ "priority", SOL_SOCKET, SO_PRIORITY },     { "rcvlowat", SOL_SOCKET, SO_RCVLOWAT },
		{ "user-timeout", IPPROTO_TCP, TCP_USER_TIMEOUT }, { "oobinline", SOL_SOCKET, SO_OOBINLINE },
	};
	struct linger lg = { 0, 0 };
	struct timeval tv = { 0, 0 };
	socklen_t l;
	int v;

	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		v = -1;
		l = sizeof(v);
		getsockopt(fd, opts[i].level, opts[i].opt, &v, &l);
		SAY("opts.%s.%s: %d", what, opts[i].name, v);
	}
	l = sizeof(lg);
	getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &l);
	l = sizeof(tv);
	getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &l);
	SAY("opts.%s.linger-rcvtimeo: %d %d %ld", what, lg.l_onoff, lg.l_linger, (long)tv.tv_sec);
}

static void set_int(int fd, int level, int opt, int v)
{
	setsockopt(fd, level, opt, &v, sizeof(v));
}

/* Connections made one after another, some with options set before connect() and some
 * without, and from a listener set between accepts: each reads what it was set, or inherited,
 * or the defaults, never what an earlier connection had. */
static void t_opts_carry(void)
{
	struct sockaddr_storage ss;
	struct linger lg = { 1, 5 };
	struct timeval tv = { 3, 0 };
	uint16_t port;
	int lfd = make_listener(&port), c[4], a[4];
	socklen_t l;

	for (int i = 0; i < 4; i++) {
		if (i == 2) { /* accepted sockets inherit the listener's */
			set_int(lfd, SOL_SOCKET, SO_KEEPALIVE, 1);
			set_int(lfd, IPPROTO_TCP, TCP_KEEPIDLE, 55);
			setsockopt(lfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		c[i] = socket(family, SOCK_STREAM, 0);
		if (i == 0) {
			set_int(c[i], SOL_SOCKET, SO_KEEPALIVE, 1);
			set_int(c[i], IPPROTO_TCP, TCP_KEEPIDLE, 77);
			set_int(c[i], IPPROTO_TCP, TCP_KEEPCNT, 3);
			set_int(c[i], IPPROTO_TCP, TCP_NODELAY, 1);
			set_int(c[i], SOL_SOCKET, SO_PRIORITY, 4);
			set_int(c[i], SOL_SOCKET, SO_RCVLOWAT, 2);
			set_int(c[i], IPPROTO_TCP, TCP_USER_TIMEOUT, 1234);
			setsockopt(c[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			setsockopt(c[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		} else if (i == 3) {
			set_int(c[i], IPPROTO_TCP, TCP_KEEPIDLE, 99);
			set_int(c[i], SOL_SOCKET, SO_OOBINLINE, 1);
		}
		l = addr_any(&ss, port, 1);
		if (connect(c[i], (struct sockaddr *)&ss, l) < 0)
			die("connect");
		a[i] = accept(lfd, NULL, NULL);
		if (a[i] < 0)
			die("accept");
	}
	for (int i = 0; i < 4; i++) {
		char what[32];

		snprintf(what, sizeof(what), "connected%d", i);
		opts_say(what, c[i]);
		snprintf(what, sizeof(what), "accepted%d", i);
		opts_say(what, a[i]);
		close2(c[i], a[i]);
	}
	close(lfd);
}

/* ---- close_range and closefrom ------------------------------------------------------------ */
static void range_after(const char *what, int c, int s)
{
	char buf[8];
	short ev;

	SAY("range.%s.send: %s", what, res(send(c, "k", 1, MSG_NOSIGNAL)));
	ev = poll1(s, POLLIN, 1000);
	SAY("range.%s.recv: %s %s", what, evs(ev), res(recv(s, buf, sizeof(buf), 0)));
}

struct range_sleeper {
	int fd;
	pid_t tid;
	short ev;
};

static void *range_sleep(void *arg)
{
	struct range_sleeper *w = arg;

	__atomic_store_n(&w->tid, self_tid(), __ATOMIC_RELEASE);
	w->ev = poll1(w->fd, POLLIN, 5000);
	return NULL;
}

/* A child that closes every number from 3 and exits; the child never returns from here, as
 * a vfork child must not. */
static pid_t start_closefrom_child(int use_vfork)
{
	pid_t pid = use_vfork ? vfork() : fork();

	if (pid == 0) {
		closefrom(3);
		_exit(0);
	}
	return pid;
}

/* Daemons close every number above their own (sshd after taking over its socket), and a child
 * about to exec does the same: the sockets below stay connected, those in the range close. */
static void t_close_range(void)
{
	char buf[8];
	int c, s, st, pairs = 0;
	short ev;
	pid_t pid;

	make_pair(&c, &s);
	pairs++;
	closefrom((c > s ? c : s) + 1);
	range_after("closefrom-above", c, s);
	/* a reader asleep when the writer sends, after the closefrom and after new sockets took
	 * whatever numbers it freed: it is woken */
	{
		struct range_sleeper w = { .fd = s };
		int c2, s2;
		pthread_t th;

		make_pair(&c2, &s2);
		pairs++;
		pthread_create(&th, NULL, range_sleep, &w);
		while (!__atomic_load_n(&w.tid, __ATOMIC_ACQUIRE))
			sched_yield();
		wait_blocked(w.tid);
		send(c, "w", 1, MSG_NOSIGNAL);
		pthread_join(th, NULL);
		SAY("range.closefrom-above.sleeper: %s %s", evs(w.ev), res(recv(s, buf, sizeof(buf), 0)));
		range_after("closefrom-above.new-pair", c2, s2);
		close2(c2, s2);
	}
	close2(c, s);

	make_pair(&c, &s);
	pairs++;
	SAY("range.close-one: %s", res(close_range((unsigned int)s, (unsigned int)s, 0)));
	SAY("range.close-one.fd: %s", res(fcntl(s, F_GETFD)));
	ev = poll1(c, POLLIN, 1000);
	SAY("range.close-one.peer: %s %s", evs(ev), res(recv(c, buf, sizeof(buf), 0)));
	close(c);

	make_pair(&c, &s);
	pairs++;
	closefrom(c > s ? c : s);
	SAY("range.closefrom-upper.fds: %s %s", res(fcntl(c, F_GETFD)), res(fcntl(s, F_GETFD)));
	close(c < s ? c : s);

	make_pair(&c, &s);
	pairs++;
	SAY("range.cloexec: %s", res(close_range((unsigned int)c, (unsigned int)s, CLOSE_RANGE_CLOEXEC)));
	SAY("range.cloexec.flags: %s %s", res(fcntl(c, F_GETFD)), res(fcntl(s, F_GETFD)));
	range_after("cloexec", c, s);
	close2(c, s);

	SAY("range.inverted: %s", res(close_range(10, 9, 0)));
	SAY("range.bad-flags: %s", res(close_range(100, 200, 0x40)));

	/* Across processes, as sshd's re-executed child does it: a program exec'd with one end
	 * closes every number above its own, then writes to the parent, asleep in poll, which
	 * must wake. */
	{
		struct range_sleeper w;
		int go[2], top;
		pthread_t th;

		make_pair(&c, &s);
	pairs++;
		if (pipe(go))
			die("pipe");
		top = c > s ? c : s;
		top = top > go[0] ? top : go[0];
		top = top > go[1] ? top : go[1];
		pid = fork();
		if (pid == 0) {
			char a[16], b[16], t[16];

			close(c);
			/* the socket as the child's stdin and stdout, the inetd way (sshd -R) */
			dup2(s, 0);
			dup2(s, 1);
			close(s);
			fcntl(go[0], F_SETFD, 0);
			snprintf(a, sizeof(a), "%d", 1);
			snprintf(b, sizeof(b), "%d", go[0]);
			snprintf(t, sizeof(t), "%d", top);
			execl(self, self, "range-child", a, b, t, (char *)NULL);
			_exit(127);
		}
		close(s);
		w = (struct range_sleeper){ .fd = c };
		pthread_create(&th, NULL, range_sleep, &w);
		while (!__atomic_load_n(&w.tid, __ATOMIC_ACQUIRE))
			sched_yield();
		wait_blocked(w.tid);
		if (write(go[1], "g", 1) != 1)
			die("write");
		pthread_join(th, NULL);
		SAY("range.child-closefrom-writes: %s %s", evs(w.ev), res(recv(c, buf, sizeof(buf), 0)));
		waitpid(pid, &st, 0);
		SAY("range.child-closefrom-writes.child: %d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		close(c);
		close(go[0]);
		close(go[1]);
	}

	/* A child that closes everything leaves the parent's copies connected: a vfork child, on
	 * the parent's memory (Python's subprocess, posix_spawn), then a fork child. */
	for (int use_vfork = 1; use_vfork >= 0; use_vfork--) {
		make_pair(&c, &s);
		pairs++;
		waitpid(start_closefrom_child(use_vfork), &st, 0);
		range_after(use_vfork ? "vfork-closefrom" : "child-closefrom", c, s);
		close2(c, s);
	}
	/* for the test that every one of them was offloaded (conformance.test.ts) */
	SAY("range.pairs-made: %d", pairs);
}

/* ---- options outside those the shim carries: the kernel's rules and defaults --------------- */
static const char *opt_get_int(int fd, int level, int opt)
{
	static char buf[8][48];
	static int k;
	char *b = buf[k++ & 7];
	int v = -1;
	socklen_t l = sizeof(v);

	if (getsockopt(fd, level, opt, &v, &l) < 0)
		snprintf(b, 48, "%s", strerror(errno));
	else
		snprintf(b, 48, "%d/%u", v, (unsigned int)l);
	return b;
}

static void unlisted_say(const char *who, int fd)
{
	const int ip = family == AF_INET6 ? IPPROTO_IPV6 : IPPROTO_IP;
	const int mtu_discover = family == AF_INET6 ? IPV6_MTU_DISCOVER : IP_MTU_DISCOVER;
	const int recverr = family == AF_INET6 ? IPV6_RECVERR : IP_RECVERR;
	char dev[IFNAMSIZ + 1] = "?";
	socklen_t l = sizeof(dev);
	struct sockaddr_storage a, b;
	socklen_t al = sizeof(a), bl;
	int one = 1, dont = IP_PMTUDISC_DONT, r;

	r = getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, dev, &l);
	SAY("unlisted.%s.bindtodevice: %s len %u \"%s\"", who, res(r), (unsigned int)l,
	    r == 0 ? dev : "");
	if (family == AF_INET) {
		char opts[40];

		l = sizeof(opts);
		r = getsockopt(fd, IPPROTO_IP, IP_OPTIONS, opts, &l);
		SAY("unlisted.%s.ip-options: %s len %u", who, res(r), (unsigned int)l);
	}
	SAY("unlisted.%s.mtu: %s", who,
	    opt_get_int(fd, ip, family == AF_INET6 ? IPV6_MTU : IP_MTU));
	SAY("unlisted.%s.fastopen: %s", who, opt_get_int(fd, IPPROTO_TCP, TCP_FASTOPEN));
	SAY("unlisted.%s.mtu-discover: %s", who, opt_get_int(fd, ip, mtu_discover));
	r = setsockopt(fd, ip, mtu_discover, &dont, sizeof(dont));
	SAY("unlisted.%s.mtu-discover-set: %s %s", who, res(r), opt_get_int(fd, ip, mtu_discover));
	r = setsockopt(fd, ip, recverr, &one, sizeof(one));
	SAY("unlisted.%s.recverr-set: %s %s", who, res(r), opt_get_int(fd, ip, recverr));
	r = setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
	SAY("unlisted.%s.timestampns-set: %s %s", who, res(r),
	    opt_get_int(fd, SOL_SOCKET, SO_TIMESTAMPNS));
	SAY("unlisted.%s.mtu-discover-bad: %s", who,
	    res(setsockopt(fd, ip, mtu_discover, &(int){ 99 }, sizeof(int))));
	getpeername(fd, (struct sockaddr *)&a, &al);
	bl = al;
	r = getsockopt(fd, SOL_SOCKET, SO_PEERNAME, &b, &bl);
	SAY("unlisted.%s.peername: %s same %d", who, res(r), r == 0 && bl == al && !memcmp(&a, &b, al));
	bl = al + 4;
	SAY("unlisted.%s.peername-long: %s", who, res(getsockopt(fd, SOL_SOCKET, SO_PEERNAME, &b, &bl)));
	if (geteuid() == 0) {
		r = setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, "lo", 2);
		l = sizeof(dev);
		getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, dev, &l);
		SAY("unlisted.%s.bindtodevice-lo: %s \"%s\" len %u", who, res(r), dev, (unsigned int)l);
	}
}

/* sshd, for one, reads SO_BINDTODEVICE and IP_OPTIONS of every connection it accepts. */
static void t_opts_unlisted(void)
{
	char buf[8];
	int c, s;

	make_pair(&c, &s);
	unlisted_say("connected", c);
	unlisted_say("accepted", s);
	send(c, "x", 1, 0);
	SAY("unlisted.data-after: %s", res(recv(s, buf, sizeof(buf), 0)));
	close2(c, s);
}

/* TCP_INFO in the kernel's layout (linux/tcp.h, a UAPI: fixed offsets), which is longer than
 * glibc's struct: the state through both closes and a reset, and the byte counters. */
enum { TI_BYTES_ACKED = 120, TI_BYTES_RECEIVED = 128, TI_BYTES_SENT = 200, TI_LEN = 208 };

static uint64_t info_u64(const unsigned char *ti, size_t off)
{
	uint64_t v;

	memcpy(&v, ti + off, sizeof(v));
	return v;
}

/* "STATE" or "STATE sent=N acked=N received=N" (the counters only when asked) */
static const char *info_say(int fd, int counters)
{
	static char out[4][96];
	static int i;
	unsigned char ti[TI_LEN];
	socklen_t l = sizeof(ti);
	char *o = out[i++ & 3];

	memset(ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, ti, &l) < 0) {
		snprintf(o, 96, "-1 %s", strerrorname_np(errno));
		return o;
	}
	if (l < TI_LEN || !counters)
		snprintf(o, 96, "state %u%s", ti[0], l < TI_LEN ? " (short)" : "");
	else
		snprintf(o, 96, "state %u sent=%llu acked=%llu received=%llu", ti[0],
			 (unsigned long long)info_u64(ti, TI_BYTES_SENT),
			 (unsigned long long)info_u64(ti, TI_BYTES_ACKED),
			 (unsigned long long)info_u64(ti, TI_BYTES_RECEIVED));
	return o;
}

static void t_tcp_info(void)
{
	struct linger lg = { 1, 0 };
	unsigned char small[8];
	struct tcp_info glibc;
	socklen_t l;
	char buf[16];
	int c, s, r;

	make_pair(&c, &s);
	SAY("tcp-info.established: %s | %s", info_say(c, 1), info_say(s, 1));
	/* a request and its answer, each read: every byte acknowledged by the answer's segment */
	send(c, "request", 7, 0);
	poll1(s, POLLIN, 1000);
	SAY("tcp-info.request-arrived: %s", info_say(s, 1));
	recv(s, buf, sizeof(buf), 0);
	send(s, "ans", 3, 0);
	poll1(c, POLLIN, 1000);
	recv(c, buf, sizeof(buf), 0);
	SAY("tcp-info.answered: %s", info_say(c, 1));
	/* glibc's shorter struct, and shorter still: as much as was asked */
	l = sizeof(glibc);
	memset(&glibc, 0, sizeof(glibc));
	r = getsockopt(c, IPPROTO_TCP, TCP_INFO, &glibc, &l);
	SAY("tcp-info.glibc-struct: %s len=%u state=%u", res(r), (unsigned)l, glibc.tcpi_state);
	l = sizeof(small);
	r = getsockopt(c, IPPROTO_TCP, TCP_INFO, small, &l);
	SAY("tcp-info.eight-bytes: %s len=%u state=%u", res(r), (unsigned)l, small[0]);
	/* the client closes first: CLOSE_WAIT, and FIN_WAIT2 once the server's next segment has
	 * acknowledged the FIN (before that the kernel waits for its delayed ACK: timing) */
	shutdown(c, SHUT_WR);
	poll1(s, POLLIN | POLLRDHUP, 1000);
	send(s, "bye", 3, 0);
	poll1(c, POLLIN, 1000);
	SAY("tcp-info.first-fin: %s | %s", info_say(c, 0), info_say(s, 0));
	recv(c, buf, sizeof(buf), 0);
	/* both FINs: CLOSE at both ends, whoever went first, while the program holds the socket */
	shutdown(s, SHUT_WR);
	poll1(c, POLLRDHUP, 1000);
	poll1(s, POLLHUP, 1000);
	SAY("tcp-info.both-fins: %s | %s", info_say(c, 0), info_say(s, 0));
	close2(c, s);

	/* data still unread when the peer's FIN comes: CLOSE_WAIT all the same */
	make_pair(&c, &s);
	send(c, "unread", 6, 0);
	shutdown(c, SHUT_WR);
	poll1(s, POLLIN | POLLRDHUP, 1000);
	SAY("tcp-info.fin-after-unread: %s", info_say(s, 1));
	close2(c, s);

	/* a reset: CLOSE */
	make_pair(&c, &s);
	setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(c);
	poll1(s, POLLERR, 1000);
	SAY("tcp-info.reset: %s", info_say(s, 0));
	close(s);
}

/* Wait until fd has n unread bytes with SO_RCVLOWAT 1, then set it to lowat: on the verbs
 * fabric data arrives a while after send() returned. */
static void arrived_then_lowat(int fd, int n, int lowat)
{
	int one = 1, got = 0;

	setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
	for (int i = 0; i < 100 && got < n; i++) {
		poll1(fd, POLLIN, 1000);
		ioctl(fd, FIONREAD, &got);
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat));
}

static const char *lowat_get(int fd)
{
	static char out[2][32];
	static int i;
	char *o = out[i++ & 1];
	int v = -1;
	socklen_t l = sizeof(v);

	getsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &v, &l);
	snprintf(o, 32, "%d", v);
	return o;
}

/* SO_RCVLOWAT: input is reported, and a blocking read returns, from that many bytes on; the
 * end of the stream and a full receive buffer count whatever there is. */
static void t_rcvlowat(void)
{
	struct timeval tv = { 0, 200000 };
	struct timespec t0, t1;
	struct epoll_event ev = { .events = EPOLLIN };
	char buf[64];
	fd_set rd;
	int c, s, ep, v, n;

	make_pair(&c, &s);
	v = 0;
	setsockopt(s, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v));
	SAY("rcvlowat.set-0: %s", lowat_get(s));
	v = 10;
	setsockopt(s, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v));
	SAY("rcvlowat.set-10: %s", lowat_get(s));
	send(c, "12345", 5, 0);
	arrived_then_lowat(s, 5, 10);
	SAY("rcvlowat.poll-5-of-10: %s", evs(poll1(s, POLLIN, 0)));
	FD_ZERO(&rd);
	FD_SET(s, &rd);
	struct timeval zero = { 0, 0 };
	SAY("rcvlowat.select-5-of-10: %d", select(s + 1, &rd, NULL, NULL, &zero));
	ep = epoll_create1(0);
	epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
	SAY("rcvlowat.epoll-5-of-10: %d", epoll_wait(ep, &ev, 1, 0));
	send(c, "67890", 5, 0);
	SAY("rcvlowat.poll-10-of-10: %s", evs(poll1(s, POLLIN, 1000)));
	SAY("rcvlowat.epoll-10-of-10: %d", epoll_wait(ep, &ev, 1, 1000));
	SAY("rcvlowat.recv-10: %s", res(recv(s, buf, sizeof(buf), 0)));
	close(ep);

	/* below the mark: a nonblocking read takes what there is, a blocking one waits for its
	 * timeout and then returns what there is */
	send(c, "abc", 3, 0);
	arrived_then_lowat(s, 3, 10);
	SAY("rcvlowat.recv-nonblock-3: %s", res(recv(s, buf, sizeof(buf), MSG_DONTWAIT)));
	send(c, "abc", 3, 0);
	arrived_then_lowat(s, 3, 10);
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	n = (int)recv(s, buf, sizeof(buf), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	SAY("rcvlowat.recv-blocking-3: %d %s", n,
	    (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 >= 150 ? "after the timeout" : "at once");
	/* ... and a read asking for less than the mark waits only for what it asked */
	send(c, "abc", 3, 0);
	arrived_then_lowat(s, 3, 10);
	SAY("rcvlowat.recv-2-of-3: %s", res(recv(s, buf, 2, 0)));
	SAY("rcvlowat.recv-rest: %s", res(recv(s, buf, sizeof(buf), MSG_DONTWAIT)));

	/* the end of the stream below the mark: readable, and read */
	send(c, "xyz", 3, 0);
	shutdown(c, SHUT_WR);
	SAY("rcvlowat.fin-poll: %s", evs(poll1(s, POLLIN | POLLRDHUP, 1000)));
	SAY("rcvlowat.fin-recv: %s", res(recv(s, buf, sizeof(buf), 0)));
	SAY("rcvlowat.fin-recv-again: %s", res(recv(s, buf, sizeof(buf), 0)));
	close2(c, s);

	/* a mark above what the receiver can hold: input once the writer is out of room */
	make_pair(&c, &s);
	v = 1 << 30;
	setsockopt(s, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v));
	fcntl(c, F_SETFL, O_NONBLOCK);
	static char chunk[65536];
	while (send(c, chunk, sizeof(chunk), 0) > 0)
		;
	SAY("rcvlowat.full-poll: %s", evs(poll1(s, POLLIN, 1000)));
	close2(c, s);
}

/* ---- a child that confines itself with seccomp, as sshd's privilege-separated child does ---- */
#if defined(__x86_64__)
#define SECCOMP_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SECCOMP_ARCH AUDIT_ARCH_AARCH64
#endif

#ifdef SYS_poll
#define POLL_NR SYS_poll
#define SELECT_NR SYS_select
#define EPOLL_WAIT_NR SYS_epoll_wait
#else
#define POLL_NR SYS_ppoll
#define SELECT_NR SYS_pselect6
#define EPOLL_WAIT_NR SYS_epoll_pwait
#endif

#define ALLOW_NR(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)

/* How the confined child waits before each read: not at all (a blocking read), poll, epoll,
 * poll under a filter that fails calls rather than kills, select. */
enum confined_wait { WAIT_READ, WAIT_POLL, WAIT_EPOLL, WAIT_POLL_ERRNO, WAIT_SELECT };

/* Reads, writes, poll (not ppoll), accept, close, shutdown, memory and clocks; anything else kills the
 * process: sshd 9's preauth filter has the same shape.  epoll: also epoll_wait (not
 * epoll_pwait), as an event-loop program's filter would.  errno: the way libseccomp installs
 * one, through seccomp(2), failing other calls with EACCES, over a first filter that allows
 * everything (the kernel takes the stricter verdict).  select: select and pselect6, no poll. */
static int confine(enum confined_wait how)
{
	int errno_mode = how == WAIT_POLL_ERRNO;
	uint32_t deny = errno_mode ? SECCOMP_RET_ERRNO | EACCES : SECCOMP_RET_KILL_PROCESS;
	struct sock_filter insns[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SECCOMP_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		ALLOW_NR(SYS_read), ALLOW_NR(SYS_write), ALLOW_NR(SYS_close), ALLOW_NR(SYS_shutdown),
		ALLOW_NR(SYS_exit), ALLOW_NR(SYS_exit_group), ALLOW_NR(SYS_futex), ALLOW_NR(SYS_mmap),
		ALLOW_NR(SYS_munmap), ALLOW_NR(SYS_madvise), ALLOW_NR(SYS_brk), ALLOW_NR(SYS_rt_sigreturn),
		ALLOW_NR(SYS_clock_gettime), ALLOW_NR(SYS_clock_nanosleep), ALLOW_NR(SYS_getpid),
		ALLOW_NR(SYS_accept), ALLOW_NR(SYS_accept4),
		ALLOW_NR(how == WAIT_SELECT ? SYS_pselect6 : POLL_NR),
		ALLOW_NR(how == WAIT_SELECT ? SELECT_NR : how == WAIT_EPOLL ? EPOLL_WAIT_NR : POLL_NR),
		BPF_STMT(BPF_RET | BPF_K, deny),
	};
	struct sock_filter allow_all[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
	struct sock_fprog prog = { .len = sizeof(insns) / sizeof(insns[0]), .filter = insns };
	struct sock_fprog first = { .len = 1, .filter = allow_all };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -1;
	if (!errno_mode)
		return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &first) != 0)
		return -1;
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
}

static void confined_echo(int s, enum confined_wait how)
{
	char buf[65536];
	int ep = -1;

	if (how == WAIT_EPOLL) {
		struct epoll_event ev = { .events = EPOLLIN };
		ep = epoll_create1(0);
		ev.data.fd = s;
		if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) != 0)
			_exit(5);
	}
	if (confine(how) != 0)
		_exit(4);
	for (;;) {
		struct epoll_event ev;
		struct pollfd p = { .fd = s, .events = POLLIN };

		if ((how == WAIT_POLL || how == WAIT_POLL_ERRNO) && poll(&p, 1, 10000) != 1)
			_exit(6);
		if (how == WAIT_EPOLL && epoll_wait(ep, &ev, 1, 10000) != 1)
			_exit(6);
		if (how == WAIT_SELECT) {
			struct timeval tv = { 10, 0 };
			fd_set rd;

			FD_ZERO(&rd);
			FD_SET(s, &rd);
			if (select(s + 1, &rd, NULL, NULL, &tv) != 1)
				_exit(6);
		}
		ssize_t n = read(s, buf, sizeof(buf));
		if (n == 0)
			break;
		if (n < 0)
			_exit(7);
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(s, buf + off, (size_t)(n - off));
			if (w <= 0)
				_exit(8);
			off += w;
		}
	}
	shutdown(s, SHUT_WR);
	close(s);
	_exit(0);
}

static char pattern_byte(size_t i)
{
	return (char)(i * 7 + i / 251);
}

/* Streams both ways past the rings' size, so that each side blocks on a full ring and is woken
 * by the other: the confined child reads 2 MiB to the end with blocking reads, then writes
 * 1 MiB in one call. */
static void confined_stream(int s)
{
	static char buf[1 << 20];
	size_t got = 0, bad = 0;
	ssize_t n;

	if (confine(WAIT_POLL) != 0)
		_exit(4);
	while ((n = read(s, buf, 65536)) > 0) {
		for (ssize_t i = 0; i < n; i++)
			bad += buf[i] != pattern_byte(got + (size_t)i);
		got += (size_t)n;
	}
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = pattern_byte(i + 3);
	if (n < 0 || got != 2u << 20 || bad || write(s, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
		_exit(9);
	close(s);
	_exit(0);
}

static void t_seccomp_stream(void)
{
	static char buf[2 << 20];
	size_t got = 0, bad = 0;
	int c, s, st;
	ssize_t n;
	pid_t pid;

	make_pair(&c, &s);
	pid = fork();
	if (pid == 0) {
		close(c);
		confined_stream(s);
	}
	close(s);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = pattern_byte(i);
	SAY("seccomp.stream-send: %s", res(send(c, buf, sizeof(buf), 0)));
	shutdown(c, SHUT_WR);
	while ((n = recv(c, buf, 65536, 0)) > 0) {
		for (ssize_t i = 0; i < n; i++)
			bad += buf[i] != pattern_byte(got + (size_t)i + 3);
		got += (size_t)n;
	}
	SAY("seccomp.stream-received: %zu bad %zu end %s", got, bad, res(n));
	waitpid(pid, &st, 0);
	SAY("seccomp.stream-child: %s %d", WIFEXITED(st) ? "exit" : "signal",
	    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	close(c);
}

/* A confined child that accepts on a listener its parent opened (a forking server whose
 * workers confine themselves before they accept): it cannot ask the agent for the offloaded
 * end, so the connection must reach it whole some other way. */
static void t_seccomp_accept(void)
{
	static char buf[2 << 20];
	char reply[32] = { 0 };
	uint16_t port;
	int l = make_listener(&port), ready[2], c, st;
	pid_t pid;

	if (pipe(ready) != 0)
		die("pipe");
	pid = fork();
	if (pid == 0) {
		size_t got = 0, bad = 0;
		ssize_t n;
		int s, len;

		if (confine(WAIT_POLL) != 0 || write(ready[1], "r", 1) != 1)
			_exit(4);
		if ((s = accept(l, NULL, NULL)) < 0)
			_exit(5);
		while ((n = read(s, buf, 65536)) > 0) {
			for (ssize_t i = 0; i < n; i++)
				bad += buf[i] != pattern_byte(got + (size_t)i);
			got += (size_t)n;
		}
		len = snprintf(reply, sizeof(reply), "%zu bad %zu", got, bad);
		_exit(write(s, reply, (size_t)len) == len ? 0 : 6);
	}
	close(ready[1]);
	SAY("seccomp.accept-ready: %s", res(read(ready[0], reply, 1)));
	close(l); /* the child accepts, as a prefork worker does */
	c = connect_to(port, 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = pattern_byte(i);
	SAY("seccomp.accept-send: %s", res(send(c, buf, sizeof(buf), 0)));
	shutdown(c, SHUT_WR);
	memset(reply, 0, sizeof(reply));
	SAY("seccomp.accept-reply: %s %s", res(recv(c, reply, sizeof(reply) - 1, MSG_WAITALL)), reply);
	waitpid(pid, &st, 0);
	SAY("seccomp.accept-child: %s %d", WIFEXITED(st) ? "exit" : "signal",
	    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	close(c);
	close(ready[0]);
}

static void t_seccomp(void)
{
	static const char *const names[] = { "read", "poll", "epoll", "errno", "select" };
	struct timeval limit = { 10, 0 }; /* a child that is never woken: a fact, not a hang */
	enum { TOTAL = 600000, CHUNK = 24000 };

	for (int how = WAIT_READ; how <= WAIT_SELECT; how++) {
		static char out[CHUNK], in[CHUNK];
		size_t echoed = 0, bad = 0;
		int c, s, st;
		pid_t pid;

		make_pair(&c, &s);
		setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
		pid = fork();
		if (pid == 0) {
			close(c);
			confined_echo(s, (enum confined_wait)how);
		}
		close(s); /* the child serves it, as sshd's listener leaves it to its child */
		for (size_t sent = 0; sent < TOTAL; sent += CHUNK) {
			for (size_t i = 0; i < CHUNK; i++)
				out[i] = pattern_byte(sent + i);
			if (send(c, out, CHUNK, 0) != CHUNK)
				break;
			size_t got = 0;
			while (got < CHUNK) {
				ssize_t n = recv(c, in + got, CHUNK - got, 0);
				if (n <= 0)
					break;
				got += (size_t)n;
			}
			echoed += got;
			bad += got != CHUNK || memcmp(in, out, CHUNK) != 0;
			if (got != CHUNK)
				break;
		}
		shutdown(c, SHUT_WR);
		SAY("seccomp.%s-echoed: %zu bad chunks %zu", names[how], echoed, bad);
		SAY("seccomp.%s-eof: %s", names[how], res(recv(c, in, sizeof(in), 0)));
		waitpid(pid, &st, 0);
		SAY("seccomp.%s-child: %s %d", names[how], WIFEXITED(st) ? "exit" : "signal",
		    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		close(c);
	}
	t_seccomp_stream();
	t_seccomp_accept();
}

static const struct {
	const char *name;
	void (*run)(void);
} groups[] = {
	{ "select", t_select },	      { "epoll-flags", t_epoll_flags },
	{ "epoll-reset", t_epoll_reset }, { "epoll-edge", t_epoll_edge },
	{ "fdlife", t_fdlife },
	{ "fork-both", t_fork_both },     { "scm-rights", t_scm_rights },
	{ "exec", t_exec },		      { "flags", t_flags },
	{ "signals", t_signals },	      { "close-blocked", t_close_blocked },
	{ "accept-bind", t_accept_bind }, { "v4mapped", t_v4mapped },
	{ "splice", t_splice },	      { "mmsg", t_mmsg },
	{ "spawn", t_spawn },	      { "stdio", t_stdio },
	{ "peer-end", t_peer_end },	      { "opts-carry", t_opts_carry },
	{ "poll-mixed", t_poll_mixed },   { "opts-unlisted", t_opts_unlisted },
	{ "close-range", t_close_range }, { "tcp-info", t_tcp_info },
	{ "rcvlowat", t_rcvlowat },	      { "seccomp", t_seccomp },
};

/* shim-conformance [v6] GROUP: one group per run, so that a hang shows as that group's. */
int main(int argc, char **argv)
{
	self = argv[0];
	if (argc == 2 && !strcmp(argv[1], "stdio-child"))
		return stdio_child();
	if (argc == 3 && !strcmp(argv[1], "exec-child"))
		return exec_child(atoi(argv[2]));
	if (argc == 5 && !strcmp(argv[1], "range-child"))
		return range_child(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
	if (argc > 1 && !strcmp(argv[1], "v6")) {
		family = AF_INET6;
		argc--;
		argv++;
	}
	if (argc == 2 && !strcmp(argv[1], "list")) {
		for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++)
			puts(groups[i].name);
		return 0;
	}
	for (size_t i = 0; argc == 2 && i < sizeof(groups) / sizeof(groups[0]); i++) {
		if (!strcmp(argv[1], groups[i].name)) {
			groups[i].run();
			return 0;
		}
	}
	fprintf(stderr, "usage: shim-conformance [v6] list|GROUP\n");
	return 2;
}
