/*
 * fd-budget - how many TCP connections a process can hold under its descriptor limit.
 *
 *   fd-budget serve N          listen on 127.0.0.1, print "port P"; accept and echo one byte
 *                              per connection, holding each; print "accepted K err E fds F"
 *                              after N (or the first failure), then hold them until stdin ends
 *   fd-budget client PORT N    connect N times, each one a byte there and back, holding all;
 *                              print "connected K err E fds F"
 *   fd-budget both N [open]    both ends in this process; print "pairs K err E fds F"; with
 *                              open, then open /dev/null until that fails: "opened M err E"
 *
 * E is the errno name of the first failure ("none"); F counts /proc/self/fd.  Every step is
 * checked, so a connection that exists but carries nothing counts as a failure too.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

static const char *err_name(int e)
{
	switch (e) {
	case 0: return "none";
	case EMFILE: return "EMFILE";
	case ENFILE: return "ENFILE";
	case ECONNRESET: return "ECONNRESET";
	case ECONNREFUSED: return "ECONNREFUSED";
	case EPIPE: return "EPIPE";
	case EPROTO: return "EPROTO";
	default: return strerrorname_np(e) ? strerrorname_np(e) : "other";
	}
}

/* One byte each way; 0 or the errno (EPROTO for a wrong byte or an early end). */
static int ping(int fd, char c)
{
	char got;
	ssize_t n;

	if (send(fd, &c, 1, MSG_NOSIGNAL) != 1)
		return errno;
	n = recv(fd, &got, 1, 0);
	if (n < 0)
		return errno;
	return n == 1 && got == c ? 0 : EPROTO;
}

static int echo(int fd)
{
	char c;
	ssize_t n = recv(fd, &c, 1, 0);

	if (n < 0)
		return errno;
	if (n != 1)
		return EPROTO;
	return send(fd, &c, 1, MSG_NOSIGNAL) == 1 ? 0 : errno;
}

static int listen_any(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 128) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &l) < 0) {
		perror("listen");
		exit(2);
	}
	*port = ntohs(a.sin_port);
	return fd;
}

static int connect_to(int port, int *err)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0) {
		*err = errno;
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		*err = errno;
		close(fd);
		return -1;
	}
	return fd;
}

int main(int argc, char **argv)
{
	int n, k = 0, err = 0, port, lfd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "serve")) {
		n = atoi(argv[2]);
		lfd = listen_any(&port);
		printf("port %d\n", port);
		for (; k < n; k++) {
			int fd = accept(lfd, NULL, NULL);

			if (fd < 0 || (err = echo(fd)) != 0) {
				err = fd < 0 ? errno : err;
				break;
			}
		}
		printf("accepted %d err %s fds %d\n", k, err_name(err), count_fds());
		while (read(0, &port, sizeof(port)) > 0)
			;
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "client")) {
		port = atoi(argv[2]);
		n = atoi(argv[3]);
		for (; k < n; k++) {
			int fd = connect_to(port, &err);

			if (fd < 0 || (err = ping(fd, (char)('a' + k % 26))) != 0)
				break;
		}
		printf("connected %d err %s fds %d\n", k, err_name(err), count_fds());
		return 0;
	}
	if ((argc == 3 || (argc == 4 && !strcmp(argv[3], "open"))) && !strcmp(argv[1], "both")) {
		n = atoi(argv[2]);
		lfd = listen_any(&port);
		for (; k < n; k++) {
			int c = connect_to(port, &err), s = -1;
			char b = (char)('a' + k % 26), got = 0;

			if (c < 0)
				break;
			if ((s = accept(lfd, NULL, NULL)) < 0) {
				err = errno;
				break;
			}
			/* both directions, through both ends */
			if (send(c, &b, 1, MSG_NOSIGNAL) != 1 || recv(s, &got, 1, 0) != 1 || got != b ||
			    send(s, &b, 1, MSG_NOSIGNAL) != 1 || recv(c, &got, 1, 0) != 1 || got != b) {
				err = errno ? errno : EPROTO;
				break;
			}
		}
		printf("pairs %d err %s fds %d\n", k, err_name(err), count_fds());
		if (argc == 4) { /* the rest of the limit, for files */
			int m = 0;

			while (open("/dev/null", O_RDONLY) >= 0)
				m++;
			printf("opened %d err %s\n", m, err_name(errno));
		}
		return 0;
	}
	fprintf(stderr, "usage: fd-budget serve N | client PORT N | both N\n");
	return 2;
}
