/*
 * shim-semantics.c - TCP socket semantics, printed one fact per line, so a run under
 * libvtoe.so can be diffed against a run on plain kernel TCP (the oracle).
 *
 *   shim-semantics [v6]
 *
 * Both ends live in this process (threads or a forked child where one end must block), on
 * 127.0.0.1 (or ::1) with ephemeral ports.  Only facts that do not depend on buffer sizes
 * or timing are printed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "facts.h"

static volatile sig_atomic_t sigpipes;

static void t_basic(void)
{
	struct sockaddr_storage cl, cp, sl, sp;
	socklen_t l1 = sizeof(cl), l2 = sizeof(cp), l3 = sizeof(sl), l4 = sizeof(sp);
	char buf[64];
	int c, s, n = -1, v;
	socklen_t vl = sizeof(v);

	make_pair(&c, &s);
	getsockname(c, (struct sockaddr *)&cl, &l1);
	getpeername(c, (struct sockaddr *)&cp, &l2);
	getsockname(s, (struct sockaddr *)&sl, &l3);
	getpeername(s, (struct sockaddr *)&sp, &l4);
	SAY("basic.addrlen: %u %u %u %u", l1, l2, l3, l4);
	SAY("basic.ports-match: %d %d", port_of(&cl) == port_of(&sp), port_of(&cp) == port_of(&sl));
	SAY("basic.family: %d", cl.ss_family == family && sp.ss_family == family);
	SAY("basic.poll-idle: c=%s s=%s", evs(poll1(c, POLLIN | POLLOUT | POLLRDHUP, 0)),
	    evs(poll1(s, POLLIN | POLLOUT | POLLRDHUP, 0)));
	SAY("basic.send: %s", res(send(c, "hello", 5, 0)));
	SAY("basic.poll-data: %s", evs(poll1(s, POLLIN | POLLRDHUP, 1000)));
	ioctl(s, FIONREAD, &n);
	SAY("basic.fionread: %d", n);
	SAY("basic.peek: %s", res(recv(s, buf, sizeof(buf), MSG_PEEK)));
	SAY("basic.recv: %s %.5s", res(recv(s, buf, sizeof(buf), 0)), buf);
	SAY("basic.recv-dontwait: %s", res(recv(s, buf, sizeof(buf), MSG_DONTWAIT)));
	SAY("basic.poll-after-eagain: %s", evs(poll1(s, POLLIN, 0)));
	SAY("basic.recv-len0-empty: %s", res(recv(s, buf, 0, MSG_DONTWAIT)));
	send(c, "x", 1, 0);
	poll1(s, POLLIN, 1000);
	SAY("basic.recv-len0: %s", res(recv(s, buf, 0, 0)));
	SAY("basic.recv-after-len0: %s", res(recv(s, buf, sizeof(buf), 0)));
	getsockopt(c, SOL_SOCKET, SO_TYPE, &v, &vl);
	SAY("basic.so_type: %d", v);
	getsockopt(c, SOL_SOCKET, SO_DOMAIN, &v, &vl);
	SAY("basic.so_domain: %d", v);
	getsockopt(c, SOL_SOCKET, SO_PROTOCOL, &v, &vl);
	SAY("basic.so_protocol: %d", v);
	getsockopt(c, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl);
	SAY("basic.so_acceptconn: %d", v);
	getsockopt(c, SOL_SOCKET, SO_ERROR, &v, &vl);
	SAY("basic.so_error: %d", v);
	v = 1;
	setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &v, sizeof(v));
	v = 5;
	getsockopt(c, IPPROTO_TCP, TCP_NODELAY, &v, &vl);
	SAY("basic.nodelay: %d", v);
	v = 7;
	setsockopt(c, SOL_SOCKET, SO_KEEPALIVE, &v, sizeof(v));
	getsockopt(c, SOL_SOCKET, SO_KEEPALIVE, &v, &vl);
	SAY("basic.keepalive: %d", v);
	v = 65536;
	setsockopt(c, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
	getsockopt(c, SOL_SOCKET, SO_RCVBUF, &v, &vl);
	SAY("basic.rcvbuf: %d", v);
	/* beyond net.core.rmem_max/wmem_max, and below the minimum: clamped as the kernel does */
	{
		static const struct { const char *label; int name, value; } bufs[] = {
			{ "rcvbuf-huge", SO_RCVBUF, 1 << 28 }, { "rcvbuf-tiny", SO_RCVBUF, 1 },
			{ "sndbuf-huge", SO_SNDBUF, 1 << 28 }, { "sndbuf-tiny", SO_SNDBUF, 1 },
			{ "rcvbuf-negative", SO_RCVBUF, -5 },
		};
		for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
			int r = setsockopt(c, SOL_SOCKET, bufs[i].name, &bufs[i].value, sizeof(int));

			v = 0;
			vl = sizeof(v);
			getsockopt(c, SOL_SOCKET, bufs[i].name, &v, &vl);
			SAY("basic.%s: %s %d", bufs[i].label, res(r), v);
		}
	}
	v = 600;
	SAY("basic.keepidle-set: %s", res(setsockopt(c, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof(v))));
	getsockopt(c, IPPROTO_TCP, TCP_KEEPIDLE, &v, &vl);
	SAY("basic.keepidle: %d", v);
	v = 0;
	SAY("basic.keepidle-set0: %s", res(setsockopt(c, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof(v))));
	SAY("basic.setsockopt-short: %s", res(setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &v, 2)));
	SAY("basic.getsockopt-bogus: %s", res(getsockopt(c, SOL_SOCKET, 9999, &v, &vl)));
	{
		struct linger lg = { 1, 0 };
		socklen_t ll = sizeof(lg);
		setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		memset(&lg, 0, sizeof(lg));
		getsockopt(c, SOL_SOCKET, SO_LINGER, &lg, &ll);
		SAY("basic.linger: %d %d %u", lg.l_onoff, lg.l_linger, ll);
		lg.l_onoff = 0;
		setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	SAY("basic.connect-again: %s", res(connect(c, (struct sockaddr *)&cp, l2)));
	SAY("basic.listen-connected: %s", res(listen(c, 1)));
	close(c);
	close(s);
}

static void t_shutdown(void)
{
	char buf[64];
	int c, s;

	make_pair(&c, &s);
	send(c, "abc", 3, 0);
	SAY("shut.wr: %s", res(shutdown(c, SHUT_WR)));
	/* Between hosts the bytes can arrive before the FIN: wait for the FIN, then look. */
	poll1(s, POLLRDHUP, 1000);
	SAY("shut.peer-poll: %s", evs(poll1(s, POLLIN | POLLRDHUP, 0)));
	SAY("shut.peer-recv: %s", res(recv(s, buf, sizeof(buf), 0)));
	SAY("shut.peer-recv-eof: %s", res(recv(s, buf, sizeof(buf), 0)));
	SAY("shut.peer-recv-eof2: %s", res(recv(s, buf, sizeof(buf), MSG_DONTWAIT)));
	SAY("shut.send-after-wr: %s", res(send(c, "x", 1, MSG_NOSIGNAL)));
	SAY("shut.poll-self: %s", evs(poll1(c, POLLOUT, 0)));
	SAY("shut.peer-send: %s", res(send(s, "back", 4, 0)));
	SAY("shut.recv-half: %s", res(recv(c, buf, sizeof(buf), 0)));
	SAY("shut.wr-again: %s", res(shutdown(c, SHUT_WR)));
	SAY("shut.bad-how: %s", res(shutdown(c, 7)));
	close(s);
	SAY("shut.recv-after-peer-close: %s", res(recv(c, buf, sizeof(buf), 0)));
	close(c);
}

/* The thread a test waits on with wait_blocked(), published once it runs. */
static pid_t other_tid;

static pid_t other_thread_tid(void)
{
	pid_t tid;

	while (!(tid = __atomic_load_n(&other_tid, __ATOMIC_ACQUIRE)))
		sched_yield();
	return tid;
}

static void *t_shutrd_thread(void *arg)
{
	char buf[16];
	static ssize_t r;

	__atomic_store_n(&other_tid, self_tid(), __ATOMIC_RELEASE);
	r = recv(*(int *)arg, buf, sizeof(buf), 0);
	return &r;
}

static void t_shutrd(void)
{
	pthread_t th;
	void *ret;
	int c, s;

	make_pair(&c, &s);
	other_tid = 0;
	pthread_create(&th, NULL, t_shutrd_thread, &s);
	wait_blocked(other_thread_tid());
	SAY("shutrd.shutdown: %s", res(shutdown(s, SHUT_RD)));
	pthread_join(th, &ret);
	SAY("shutrd.blocked-recv: %zd", *(ssize_t *)ret);
	SAY("shutrd.poll: %s", evs(poll1(s, POLLIN | POLLRDHUP, 0)));
	SAY("shutrd.peer-send: %s", res(send(c, "z", 1, MSG_NOSIGNAL)));
	close(c);
	close(s);
}

static void t_reset(void)
{
	char buf[64];
	int c, s;

	make_pair(&c, &s);
	send(c, "unread", 6, 0);
	poll1(s, POLLIN, 1000);
	close(s); /* unread data: RST */
	SAY("reset.poll: %s", evs(poll1(c, POLLIN | POLLRDHUP, 1000)));
	SAY("reset.recv: %s", res(recv(c, buf, sizeof(buf), 0)));
	SAY("reset.recv2: %s", res(recv(c, buf, sizeof(buf), 0)));
	SAY("reset.send: %s", res(send(c, "x", 1, MSG_NOSIGNAL)));
	close(c);

	make_pair(&c, &s);
	{
		struct linger lg = { 1, 0 };
		setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(s);
	poll1(c, POLLIN, 1000);
	{
		int v = -1;
		socklen_t vl = sizeof(v);
		getsockopt(c, SOL_SOCKET, SO_ERROR, &v, &vl);
		SAY("linger0.so_error: %s", v ? strerrorname_np(v) : "0");
		getsockopt(c, SOL_SOCKET, SO_ERROR, &v, &vl);
		SAY("linger0.so_error2: %d", v);
	}
	SAY("linger0.recv: %s", res(recv(c, buf, sizeof(buf), 0)));
	close(c);
}

static void on_sigpipe(int sig)
{
	(void)sig;
	sigpipes++;
}

static void t_closed_peer(void)
{
	char buf[8];
	int c, s;

	make_pair(&c, &s);
	close(s);
	SAY("fin.recv: %s", res(recv(c, buf, sizeof(buf), 0)));
	signal(SIGPIPE, on_sigpipe);
	/* the kernel accepts one send and answers it with RST; the ring knows at once */
	ssize_t r1 = send(c, "a", 1, 0);
	poll1(c, POLLERR, 1000); /* the reset that answers it */
	ssize_t r2 = send(c, "b", 1, 0);
	SAY("fin.send-eventually-fails: %d sigpipe=%d", r1 < 0 || r2 < 0, sigpipes > 0);
	signal(SIGPIPE, SIG_DFL);
	close(c);
}

static void t_nonblock_connect(void)
{
	uint16_t port;
	int l = make_listener(&port), c, s, v = -1;
	socklen_t vl = sizeof(v);
	struct sockaddr_storage ss;
	socklen_t sl = addr_any(&ss, port, 1);

	c = socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0);
	SAY("nbconnect.connect: %s", res(connect(c, (struct sockaddr *)&ss, sl)));
	SAY("nbconnect.poll: %s", evs(poll1(c, POLLOUT, 1000)));
	getsockopt(c, SOL_SOCKET, SO_ERROR, &v, &vl);
	SAY("nbconnect.so_error: %d", v);
	SAY("nbconnect.connect2: %s", res(connect(c, (struct sockaddr *)&ss, sl)));
	SAY("nbconnect.connect3: %s", res(connect(c, (struct sockaddr *)&ss, sl)));
	s = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	SAY("accept4.flags: nonblock=%d cloexec=%d", !!(fcntl(s, F_GETFL) & O_NONBLOCK),
	    !!(fcntl(s, F_GETFD) & FD_CLOEXEC));
	SAY("nbconnect.client-nonblock: %d", !!(fcntl(c, F_GETFL) & O_NONBLOCK));
	{
		char buf[8];
		SAY("accept4.recv-empty: %s", res(recv(s, buf, sizeof(buf), 0)));
	}
	close(c);
	close(s);
	close(l);
}

static void t_refused(void)
{
	uint16_t port;
	int l = make_listener(&port);

	close(l);
	SAY("refused.blocking: %s", res(connect_to(port, 0)));
	{
		struct sockaddr_storage ss;
		socklen_t sl = addr_any(&ss, port, 1);
		int c = socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0), v = -1;
		socklen_t vl = sizeof(v);
		int r = connect(c, (struct sockaddr *)&ss, sl);
		if (r < 0 && errno == EINPROGRESS) {
			poll1(c, POLLOUT, 1000);
			getsockopt(c, SOL_SOCKET, SO_ERROR, &v, &vl);
			SAY("refused.nonblocking: %s", v ? strerrorname_np(v) : "0");
		} else {
			SAY("refused.nonblocking: %s", r < 0 ? strerrorname_np(errno) : "0");
		}
		close(c);
	}
}

static void t_timeout(void)
{
	struct timeval tv = { 0, 100000 };
	struct timespec a, b;
	char buf[8];
	int c, s;

	make_pair(&c, &s);
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	memset(&tv, 0, sizeof(tv));
	{
		socklen_t l = sizeof(tv);
		getsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, &l);
		SAY("rcvtimeo.get: %ld.%06ld", (long)tv.tv_sec, (long)tv.tv_usec);
	}
	clock_gettime(CLOCK_MONOTONIC, &a);
	ssize_t r = recv(s, buf, sizeof(buf), 0);
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ms = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
	SAY("rcvtimeo.recv: %s in-range=%d", res(r), ms >= 90 && ms < 1000);
	close(c);
	close(s);
}

static void t_fill(void)
{
	static char big[1 << 16];
	size_t total = 0;
	int c, s;

	make_pair(&c, &s);
	set_nonblock(c, 1);
	for (;;) {
		ssize_t r = send(c, big, sizeof(big), 0);
		if (r < 0)
			break;
		total += (size_t)r;
	}
	SAY("fill.errno: %s", strerrorname_np(errno));
	SAY("fill.poll-full: %s", evs(poll1(c, POLLOUT, 0)));
	{
		int q = -1;
		ioctl(c, SIOCOUTQ, &q);
		SAY("fill.outq-positive: %d", q > 0);
	}
	size_t got = 0;
	while (got < total) {
		ssize_t r = recv(s, big, sizeof(big), 0);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	SAY("fill.drained-all: %d", got == total);
	SAY("fill.poll-after-drain: %s", evs(poll1(c, POLLOUT, 1000)));
	SAY("fill.peer-poll-after-drain: %s", evs(poll1(s, POLLIN, 0)));
	close(c);
	close(s);
}

static pid_t main_tid;

/* The second half goes once the reader waits for it. */
static void *t_waitall_thread(void *arg)
{
	int fd = *(int *)arg;

	send(fd, "12345", 5, 0);
	wait_blocked(main_tid);
	send(fd, "67890", 5, 0);
	return NULL;
}

static void t_waitall(void)
{
	pthread_t th;
	char buf[16] = "";
	int c, s;

	make_pair(&c, &s);
	main_tid = self_tid();
	pthread_create(&th, NULL, t_waitall_thread, &c);
	SAY("waitall.recv: %s %.10s", res(recv(s, buf, 10, MSG_WAITALL)), buf);
	pthread_join(th, NULL);
	close(c);
	close(s);
}

static void t_epoll(void)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET }, out[4];
	char buf[8];
	int c, s, ep = epoll_create1(0);

	make_pair(&c, &s);
	ev.data.fd = s;
	epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
	SAY("epoll.idle: %d", epoll_wait(ep, out, 4, 0));
	send(c, "0123456789", 10, 0);
	SAY("epoll.data: %d", epoll_wait(ep, out, 4, 1000));
	recv(s, buf, 4, 0);
	SAY("epoll.et-no-rearm: %d", epoll_wait(ep, out, 4, 0));
	send(c, "x", 1, 0);
	SAY("epoll.et-new-data: %d", epoll_wait(ep, out, 4, 1000));
	recv(s, buf, sizeof(buf), 0);
	ev.events = EPOLLIN; /* level triggered */
	epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev);
	SAY("epoll.lt-after-drain: %d", epoll_wait(ep, out, 4, 0));
	close(c);
	SAY("epoll.peer-closed: %d", epoll_wait(ep, out, 4, 1000));
	close(s);
	close(ep);
}

static void t_dup(void)
{
	char buf[8];
	int c, s, d, d2;

	make_pair(&c, &s);
	d = dup(c);
	close(c);
	SAY("dup.send: %s", res(send(d, "dd", 2, 0)));
	SAY("dup.recv: %s", res(recv(s, buf, sizeof(buf), 0)));
	d2 = fcntl(d, F_DUPFD_CLOEXEC, 50);
	SAY("dup.fdupfd: %d", d2 >= 50);
	SAY("dup.dup2: %s", res(dup2(d2, d) == d));
	close(d2);
	SAY("dup.send2: %s", res(send(d, "ee", 2, 0)));
	SAY("dup.recv2: %s", res(recv(s, buf, sizeof(buf), 0)));
	close(d);
	SAY("dup.eof-after-last-close: %s", res(recv(s, buf, sizeof(buf), 0)));
	close(s);
}

static void t_vectors(void)
{
	char a[3], b[4], buf[16];
	struct iovec iov[2] = { { "abc", 3 }, { "defg", 4 } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
	struct sockaddr_storage from;
	socklen_t fl = sizeof(from);
	int c, s;

	make_pair(&c, &s);
	SAY("vec.writev: %s", res(writev(c, iov, 2)));
	iov[0] = (struct iovec){ a, 3 };
	iov[1] = (struct iovec){ b, 4 };
	SAY("vec.readv: %s %.3s%.4s", res(readv(s, iov, 2)), a, b);
	iov[0] = (struct iovec){ "hij", 3 };
	iov[1] = (struct iovec){ "klmn", 4 };
	m.msg_name = &from;
	m.msg_namelen = sizeof(from);
	SAY("vec.sendmsg: %s", res(sendmsg(c, &m, 0)));
	iov[0] = (struct iovec){ buf, sizeof(buf) };
	m.msg_iovlen = 1;
	m.msg_namelen = sizeof(from);
	{
		const char *r = res(recvmsg(s, &m, 0));
		SAY("vec.recvmsg: %s namelen=%u flags=%d", r, m.msg_namelen, m.msg_flags);
	}
	send(c, "q", 1, 0);
	{
		const char *r = res(recvfrom(s, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl));
		SAY("vec.recvfrom: %s fromlen=%u", r, fl);
	}
	SAY("vec.sendto-addr-ignored: %s",
	    res(sendto(c, "r", 1, 0, (struct sockaddr *)&from, sizeof(from))));
	SAY("vec.read: %s", res(read(s, buf, sizeof(buf))));
	SAY("vec.write: %s", res(write(c, "stu", 3)));
	SAY("vec.read2: %s", res(read(s, buf, sizeof(buf))));
	{
		FILE *f = tmpfile();
		off_t off = 2;
		fputs("0123456789", f);
		fflush(f);
		SAY("vec.sendfile: %s off=%ld", res(sendfile(c, fileno(f), &off, 5)), (long)off);
		SAY("vec.sendfile-recv: %s %.5s", res(recv(s, buf, sizeof(buf), 0)), buf);
		fclose(f);
	}
	close(c);
	close(s);
}

static void t_fork(void)
{
	char buf[8];
	int c, s, st;
	pid_t p;

	make_pair(&c, &s);
	p = fork();
	if (p == 0) {
		send(c, "kid", 3, 0);
		_exit(0);
	}
	waitpid(p, &st, 0);
	SAY("fork.child-sent: %s", res(recv(s, buf, sizeof(buf), 0)));
	SAY("fork.parent-send: %s", res(send(c, "dad", 3, 0)));
	SAY("fork.parent-sent: %s", res(recv(s, buf, sizeof(buf), 0)));
	close(c);
	SAY("fork.eof: %s", res(recv(s, buf, sizeof(buf), 0)));
	close(s);
}

/* A vfork child execs a writer on the socket; the parent, resumed, writes after it.  The
 * exec runs on the parent's memory with no fork handler: the parent must still see that
 * another process wrote (a writer that trusted its own copy of the ring's head would publish
 * its bytes over the child's, and the reader would wait for them forever). */
static const char *self_path; /* this program, for the exec */

static void t_vfork_exec(void)
{
	char buf[8], fdarg[16];
	int c, s, st;
	pid_t p;

	make_pair(&c, &s);
	snprintf(fdarg, sizeof(fdarg), "%d", c);
	p = vfork();
	if (p == 0) {
		char *const argv[] = { (char *)self_path, "write-kid", fdarg, NULL };

		execv(self_path, argv);
		_exit(127);
	}
	waitpid(p, &st, 0);
	SAY("vfork.child-exit: %d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	SAY("vfork.child-sent: %s", res(recv(s, buf, sizeof(buf), 0)));
	SAY("vfork.parent-send: %s", res(send(c, "dad", 3, 0)));
	SAY("vfork.parent-readable: %d", poll(&(struct pollfd){ .fd = s, .events = POLLIN }, 1, 5000));
	SAY("vfork.parent-sent: %s", res(recv(s, buf, sizeof(buf), MSG_DONTWAIT)));
	close(c);
	SAY("vfork.eof: %s", res(recv(s, buf, sizeof(buf), 0)));
	close(s);
}

static void on_alarm(int sig)
{
	(void)sig;
}

/* Signals the main thread once it is blocked. */
static pthread_t main_thread;

static void *t_eintr_thread(void *arg)
{
	(void)arg;
	wait_blocked(main_tid);
	pthread_kill(main_thread, SIGALRM);
	return NULL;
}

/* A signal in a blocking wait: EINTR (no SA_RESTART here; the shim does not restart). */
static void t_eintr(void)
{
	struct sigaction sa = { .sa_handler = on_alarm }; /* no SA_RESTART */
	pthread_t th;
	char buf[8];
	int c, s;

	make_pair(&c, &s);
	sigaction(SIGALRM, &sa, NULL);
	main_tid = self_tid();
	main_thread = pthread_self();
	pthread_create(&th, NULL, t_eintr_thread, NULL);
	SAY("eintr.recv: %s", res(recv(s, buf, sizeof(buf), 0)));
	pthread_join(th, NULL);
	signal(SIGALRM, SIG_DFL);
	close(c);
	close(s);
}

/* A program that closes every fd it does not know about must not break the library. */
static void t_closeall(void)
{
	char buf[8];
	int c, s, bad = 0;

	make_pair(&c, &s);
	for (int fd = 3; fd < 65536; fd++)
		if (fd != c && fd != s && close(fd) == 0)
			bad++;
	SAY("closeall.closed-something: %d", bad > 0);
	SAY("closeall.send: %s", res(send(c, "ok", 2, 0)));
	SAY("closeall.recv: %s", res(recv(s, buf, sizeof(buf), 0)));
	/* The shim keeps internal fds from 4096 up: it must move its own out of the way. */
	SAY("closeall.dup2-onto-high: %s", res(dup2(c, 4096) >= 0 ? 0 : -1));
	SAY("closeall.send-via-high: %s", res(send(4096, "hi", 2, 0)));
	SAY("closeall.recv-after: %s", res(recv(s, buf, sizeof(buf), 0)));
	close(4096);
	close(c);
	close(s);
	make_pair(&c, &s); /* the library still reaches its agent */
	SAY("closeall.new-pair-send: %s", res(send(c, "ok", 2, 0)));
	SAY("closeall.new-pair-recv: %s", res(recv(s, buf, sizeof(buf), 0)));
	close(c);
	close(s);
}

static void t_badfd(void)
{
	SAY("badfd.close: %s", res(close(-1)));
	SAY("badfd.recv: %s", res(recv(12345, NULL, 0, 0)));
}

int main(int argc, char **argv)
{
	/* t_vfork_exec's child: write to the inherited socket and go */
	if (argc > 2 && !strcmp(argv[1], "write-kid"))
		return send(atoi(argv[2]), "kid", 3, 0) == 3 ? 0 : 1;
	self_path = "/proc/self/exe";
	if (argc > 1 && !strcmp(argv[1], "v6"))
		family = AF_INET6;
	t_basic();
	t_shutdown();
	t_shutrd();
	t_reset();
	t_closed_peer();
	t_nonblock_connect();
	t_refused();
	t_timeout();
	t_fill();
	t_waitall();
	t_epoll();
	t_dup();
	t_vectors();
	t_fork();
	t_vfork_exec();
	t_badfd();
	t_eintr();
	t_closeall();
	return 0;
}
