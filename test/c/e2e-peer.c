/*
 * e2e-peer: small TCP roles for end-to-end tests, synchronised by lines on stdout.
 *   e2e-peer hold                 listen on 127.0.0.1:0, print "READY <port>", accept one client,
 *                                 print "ACCEPTED", then wait until killed
 *   e2e-peer reader PORT          connect, print "CONNECTED", block in recv, then print
 *                                 "RESULT <n> <errno name or OK> <elapsed ms>"
 *   e2e-peer connect PORT         connect, print "CONNECT OK" or "CONNECT <errno name>"
 *   e2e-peer self                 one process, both ends: listen, connect, accept, echo 1 MiB,
 *                                 print "SELF OK" (for `vtoe run`, which starts one program)
 *   e2e-peer late-listen          bind 127.0.0.1:0, print "BOUND <port>", listen only when a
 *                                 line arrives on stdin, accept, read 1 byte, print "ACCEPTED"
 *   e2e-peer eager PORT           connect again at once after each ECONNREFUSED (printing
 *                                 "REFUSED" the first time), send 1 byte, print
 *                                 "CONNECTED <refusals>"
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *errno_name(int e)
{
	switch (e) {
	case ECONNREFUSED: return "ECONNREFUSED";
	case ECONNRESET: return "ECONNRESET";
	case EPIPE: return "EPIPE";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EHOSTUNREACH: return "EHOSTUNREACH";
	case EAGAIN: return "EAGAIN";
	case EINTR: return "EINTR";
	default: return "OTHER";
	}
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int connect_to(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		printf("CONNECT %s\n", errno_name(errno));
		return -1;
	}
	return fd;
}

static int self_test(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &len) < 0)
		return perror("self: listen"), 1;
	int c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) < 0)
		return perror("self: connect"), 1;
	int s = accept(l, NULL, NULL);
	if (s < 0)
		return perror("self: accept"), 1;
	static unsigned char out[1 << 20], in[1 << 20];
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (unsigned char)(i * 131 + 7);
	/* Chunks smaller than any ring, so one thread can alternate writer and reader. */
	for (size_t off = 0; off < sizeof(out); off += 4096) {
		if (write(c, out + off, 4096) != 4096)
			return perror("self: write"), 1;
		for (size_t got = 0; got < 4096;) {
			ssize_t n = read(s, in + off + got, 4096 - got);
			if (n <= 0)
				return perror("self: read"), 1;
			got += (size_t)n;
		}
	}
	if (memcmp(in, out, sizeof(out)) != 0)
		return fprintf(stderr, "self: data mismatch\n"), 1;
	close(c);
	char b;
	if (read(s, &b, 1) != 0)
		return fprintf(stderr, "self: no EOF after close\n"), 1;
	printf("SELF OK\n");
	return 0;
}

/* Bound but not listening until told: the moment of listen() is the test's to choose. */
static int late_listen(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &len) < 0)
		return perror("late-listen: bind"), 1;
	printf("BOUND %d\n", ntohs(a.sin_port));
	char line[16];
	if (!fgets(line, sizeof(line), stdin) || listen(l, 8) < 0)
		return perror("late-listen: listen"), 1;
	int c = accept(l, NULL, NULL);
	char b;
	if (c < 0 || read(c, &b, 1) != 1)
		return perror("late-listen: accept"), 1;
	printf("ACCEPTED\n");
	return 0;
}

/* A client that is already knocking when the listener appears (bounded to 10 s). */
static int eager_connect(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	unsigned refusals = 0;
	for (double t0 = now_ms(); now_ms() - t0 < 10000;) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0)
			return perror("eager: socket"), 1;
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
			if (write(fd, "x", 1) != 1)
				return perror("eager: write"), 1;
			printf("CONNECTED %u\n", refusals);
			close(fd);
			return 0;
		}
		if (errno != ECONNREFUSED)
			return perror("eager: connect"), 1;
		close(fd);
		if (refusals++ == 0)
			printf("REFUSED\n");
	}
	fprintf(stderr, "eager: no listener within 10 s\n");
	return 1;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && strcmp(argv[1], "hold") == 0) {
		struct sockaddr_in a = { .sin_family = AF_INET };
		socklen_t len = sizeof(a);
		inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
		int l = socket(AF_INET, SOCK_STREAM, 0);
		if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 8) < 0 ||
		    getsockname(l, (struct sockaddr *)&a, &len) < 0) {
			perror("hold: listen");
			return 1;
		}
		printf("READY %d\n", ntohs(a.sin_port));
		int c = accept(l, NULL, NULL);
		if (c < 0) {
			perror("hold: accept");
			return 1;
		}
		printf("ACCEPTED\n");
		for (;;)
			pause();
	}
	if (argc >= 3 && strcmp(argv[1], "reader") == 0) {
		int fd = connect_to(atoi(argv[2]));
		if (fd < 0)
			return 2;
		printf("CONNECTED\n");
		char buf[256];
		double t0 = now_ms();
		/* optionally asleep in poll or epoll_wait first, as event loops are */
		if (argc >= 4 && strcmp(argv[3], "poll") == 0) {
			struct pollfd p = { .fd = fd, .events = POLLIN };
			poll(&p, 1, -1);
		} else if (argc >= 4 && strcmp(argv[3], "epoll") == 0) {
			struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
			int ep = epoll_create1(0);
			epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
			epoll_wait(ep, &ev, 1, -1);
		}
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		printf("RESULT %zd %s %.0f\n", n, n < 0 ? errno_name(errno) : "OK", now_ms() - t0);
		return 0;
	}
	if (argc >= 3 && strcmp(argv[1], "connect") == 0) {
		int fd = connect_to(atoi(argv[2]));
		if (fd < 0)
			return 0;
		printf("CONNECT OK\n");
		close(fd);
		return 0;
	}
	if (argc >= 2 && strcmp(argv[1], "self") == 0)
		return self_test();
	if (argc >= 2 && strcmp(argv[1], "late-listen") == 0)
		return late_listen();
	if (argc >= 3 && strcmp(argv[1], "eager") == 0)
		return eager_connect(atoi(argv[2]));
	fprintf(stderr, "usage: e2e-peer hold | reader PORT [recv|poll|epoll] | connect PORT | self | late-listen | eager PORT\n");
	return 2;
}
