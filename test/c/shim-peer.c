/*
 * shim-peer.c - one end of a TCP connection that blocks, for peer-death tests.
 *
 *   shim-peer hold PORT            accept one connection on 127.0.0.1:PORT, print "accepted",
 *                                  then sleep forever without reading
 *   shim-peer recv PORT [NBYTES]   connect, send NBYTES (default 0), print "connected", then
 *                                  block in recv() and print what it returned and how long
 *                                  it took
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd, one = 1;

	if (argc < 3)
		goto usage;
	sin.sin_port = htons((uint16_t)atoi(argv[2]));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return perror("socket"), 1;

	if (!strcmp(argv[1], "hold")) {
		int c;

		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 8) < 0)
			return perror("listen"), 1;
		c = accept(fd, NULL, NULL);
		if (c < 0)
			return perror("accept"), 1;
		printf("accepted\n");
		fflush(stdout);
		for (;;)
			pause();
	}
	if (!strcmp(argv[1], "recv")) {
		size_t n = argc > 3 ? strtoul(argv[3], NULL, 0) : 0;
		char *buf = calloc(1, n + 4096);
		double t0;
		ssize_t r;
		int e;

		if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
			return perror("connect"), 1;
		if (n && send(fd, buf, n, 0) != (ssize_t)n)
			return perror("send"), 1;
		printf("connected\n");
		fflush(stdout);
		t0 = now_ms();
		r = recv(fd, buf, 4096, 0);
		e = errno;
		printf("recv=%zd errno=%s after %.0f ms\n", r, r < 0 ? strerror(e) : "-",
		       now_ms() - t0);
		return 0;
	}
usage:
	fprintf(stderr, "usage: shim-peer hold PORT | shim-peer recv PORT [NBYTES]\n");
	return 2;
}
