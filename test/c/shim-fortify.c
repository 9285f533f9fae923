/*
 * shim-fortify.c - the fortified entry points (__read_chk, __recv_chk, __recvfrom_chk, and
 * __poll_chk and __fdelt_chk for poll and select) on a TCP connection.  Build with -O2
 * -D_FORTIFY_SOURCE=2.
 *
 *   shim-fortify          read through each entry point, print what came back
 *   shim-fortify overflow ask for more than the buffer holds: must abort like glibc does
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/select.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t l = sizeof(sin);
	char buf[16];
	volatile size_t n = 4; /* not a constant, so the _chk variants are used */
	int ls, c, s;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ls = socket(AF_INET, SOCK_STREAM, 0);
	if (bind(ls, (struct sockaddr *)&sin, l) < 0 || listen(ls, 1) < 0)
		return perror("listen"), 1;
	getsockname(ls, (struct sockaddr *)&sin, &l);
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(c, (struct sockaddr *)&sin, l) < 0)
		return perror("connect"), 1;
	s = accept(ls, NULL, NULL);
	send(c, "aaaabbbbcccc", 12, 0);
	if (argc > 1 && !strcmp(argv[1], "overflow")) {
		n = sizeof(buf) + 1;
		printf("overflow read returned %zd\n", read(s, buf, n));
		return 0;
	}
	printf("read: %zd %.4s\n", read(s, buf, n), buf);
	printf("recv: %zd %.4s\n", recv(s, buf, n, 0), buf);
	l = sizeof(sin);
	{
		/* called before printf: its arguments are evaluated in no set order, and l must
		 * be read after recvfrom() has set it */
		ssize_t r = recvfrom(s, buf, n, 0, (struct sockaddr *)&sin, &l);

		printf("recvfrom: %zd %.4s fromlen=%u\n", r, buf, l);
	}
	{
		/* a variable count into a sized array: __poll_chk; FD_SET of a variable fd: __fdelt_chk */
		struct pollfd p[2] = { { .fd = s, .events = POLLIN } };
		volatile nfds_t one = 1;
		struct timeval tv = { 1, 0 };
		fd_set r;
		int pr, sr;

		send(c, "d", 1, 0);
		pr = poll(p, one, 1000);
		printf("poll: %d in=%d\n", pr, (p[0].revents & POLLIN) != 0);
		FD_ZERO(&r);
		FD_SET(s, &r);
		sr = select(s + 1, &r, NULL, NULL, &tv);
		printf("select: %d r=%d\n", sr, FD_ISSET(s, &r) != 0);
	}
	return 0;
}
