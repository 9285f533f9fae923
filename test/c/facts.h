/*
 * facts.h - helpers shared by the differential programs (shim-semantics.c, shim-conformance.c):
 * one fact per line, "label: value", on a loopback connection whose both ends live in the
 * calling process.  Values must not depend on buffer sizes or timing.
 */
#ifndef VTOE_TEST_FACTS_H
#define VTOE_TEST_FACTS_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int family = AF_INET;

#define SAY(...) (printf(__VA_ARGS__), putchar('\n'), fflush(stdout))

static const char *res(ssize_t r)
{
	static char buf[8][64];
	static int i;
	char *b = buf[i++ & 7];

	if (r < 0)
		snprintf(b, 64, "-1 %s", strerrorname_np(errno));
	else
		snprintf(b, 64, "%zd", r);
	return b;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static socklen_t addr_any(struct sockaddr_storage *ss, uint16_t port, int loopback)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		in->sin_addr.s_addr = htonl(loopback ? INADDR_LOOPBACK : INADDR_ANY);
		return sizeof(*in);
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(port);
	in6->sin6_addr = loopback ? in6addr_loopback : in6addr_any;
	return sizeof(*in6);
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
	return ntohs(((const struct sockaddr_in *)ss)->sin_port); /* same offset in sin6 */
}

/* A listener on an ephemeral loopback port. */
static int make_listener(uint16_t *port)
{
	struct sockaddr_storage ss;
	socklen_t l = addr_any(&ss, 0, 1);
	int fd = socket(family, SOCK_STREAM, 0), one = 1;

	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, l) < 0 || listen(fd, 16) < 0)
		die("listen");
	l = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &l);
	*port = port_of(&ss);
	return fd;
}

static int connect_to(uint16_t port, int type_flags)
{
	struct sockaddr_storage ss;
	socklen_t l = addr_any(&ss, port, 1);
	int fd = socket(family, SOCK_STREAM | type_flags, 0);

	if (connect(fd, (struct sockaddr *)&ss, l) < 0 && errno != EINPROGRESS)
		return -1;
	return fd;
}

/* A connected pair: *c client, *s accepted server side. */
static void make_pair(int *c, int *s)
{
	uint16_t port;
	int l = make_listener(&port);

	*c = connect_to(port, 0);
	if (*c < 0)
		die("connect");
	*s = accept(l, NULL, NULL);
	if (*s < 0)
		die("accept");
	close(l);
}

static short poll1(int fd, short ev, int ms)
{
	struct pollfd p = { .fd = fd, .events = ev };

	return poll(&p, 1, ms) == 1 ? p.revents : 0;
}

static const char *evs(short e)
{
	static char buf[4][64];
	static int i;
	char *b = buf[i++ & 3];

	snprintf(b, 64, "%s%s%s%s%s", e & POLLIN ? "IN " : "", e & POLLOUT ? "OUT " : "",
		 e & POLLRDHUP ? "RDHUP " : "", e & POLLHUP ? "HUP " : "", e & POLLERR ? "ERR " : "");
	return b[0] ? b : "none";
}

static void set_nonblock(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

/* This thread's kernel ID, for wait_blocked() from another thread. */
static pid_t self_tid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* The system call thread tid is asleep in (not futex: a lock), or -1 while it runs. */
static long blocked_in(pid_t tid)
{
	char path[64], buf[512], state = 0;
	long nr = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	if ((f = fopen(path, "r"))) {
		char *p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;

		if (p && p[1] == ' ')
			state = p[2];
		fclose(f);
	}
	if (state != 'S')
		return -1;
	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	if ((f = fopen(path, "r"))) {
		if (fscanf(f, "%ld", &nr) != 1)
			nr = -1;
		fclose(f);
	}
	return nr == SYS_futex ? -1 : nr;
}

/*
 * Wait until thread tid is asleep in its blocking call: the kernel's word that it blocked,
 * where a sleep would only guess.  Looks every millisecond, for at most 10 s.
 */
static void wait_blocked(pid_t tid)
{
	struct timespec ms = { 0, 1000000 };

	for (int i = 0; i < 10000; i++) {
		if (blocked_in(tid) >= 0)
			return;
		nanosleep(&ms, NULL);
	}
	die("wait_blocked: the thread never blocked");
}

#endif
