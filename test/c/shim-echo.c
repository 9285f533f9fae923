/*
 * shim-echo.c - full-duplex echo over TCP with nonblocking sockets and one poll() loop per
 * side, so both directions fill up at once: a test of readiness (POLLIN/POLLOUT) as much as
 * of the bytes.
 *
 *   shim-echo server PORT            echo one connection on 127.0.0.1:PORT, then exit
 *   shim-echo client PORT NBYTES     send NBYTES of a pseudo-random stream, check the echo
 *
 * The client prints "ok N" when all N bytes came back intact followed by EOF.
 */
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
#include <unistd.h>

#define BUF (1 << 20)

static unsigned char stream_byte(uint64_t i)
{
	uint64_t x = (i >> 3) * 0x9e3779b97f4a7c15ull;

	x ^= x >> 29;
	return (unsigned char)(x >> (8 * (i & 7)));
}

static int server(struct sockaddr_in *sin)
{
	static unsigned char buf[BUF];
	size_t head = 0, tail = 0; /* buf[tail..head) waits to be echoed */
	int l = socket(AF_INET, SOCK_STREAM, 0), c, one = 1, eof = 0;

	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)sin, sizeof(*sin)) < 0 || listen(l, 1) < 0)
		return perror("listen"), 1;
	c = accept4(l, NULL, NULL, SOCK_NONBLOCK);
	if (c < 0)
		return perror("accept"), 1;
	close(l);
	for (;;) {
		struct pollfd p = { .fd = c };
		ssize_t n;

		if (!eof && head - tail < BUF)
			p.events |= POLLIN;
		if (head > tail)
			p.events |= POLLOUT;
		if (!p.events)
			break;
		if (poll(&p, 1, 10000) != 1)
			return fprintf(stderr, "server: stuck (events %#x)\n", p.events), 1;
		if (p.revents & POLLIN) {
			size_t off = head % BUF, room = BUF - (head - tail);
			n = recv(c, buf + off, room < BUF - off ? room : BUF - off, 0);
			if (n > 0)
				head += (size_t)n;
			else if (n == 0)
				eof = 1;
			else if (errno != EAGAIN)
				return perror("server recv"), 1;
		}
		if (p.revents & POLLOUT) {
			size_t off = tail % BUF, len = head - tail;
			n = send(c, buf + off, len < BUF - off ? len : BUF - off, MSG_NOSIGNAL);
			if (n > 0)
				tail += (size_t)n;
			else if (n < 0 && errno != EAGAIN)
				return perror("server send"), 1;
		}
	}
	shutdown(c, SHUT_WR);
	close(c);
	return 0;
}

static int client(struct sockaddr_in *sin, uint64_t total)
{
	static unsigned char out[65536], in[65536];
	uint64_t sent = 0, got = 0;
	int c = socket(AF_INET, SOCK_STREAM, 0), shut = 0;

	if (connect(c, (struct sockaddr *)sin, sizeof(*sin)) < 0)
		return perror("connect"), 1;
	fcntl(c, F_SETFL, O_NONBLOCK);
	for (;;) {
		struct pollfd p = { .fd = c, .events = POLLIN };
		ssize_t n;

		if (sent < total)
			p.events |= POLLOUT;
		if (poll(&p, 1, 10000) != 1)
			return fprintf(stderr, "client: stuck at sent %llu got %llu\n",
				       (unsigned long long)sent, (unsigned long long)got), 1;
		if (p.revents & POLLOUT) {
			size_t len = total - sent < sizeof(out) ? total - sent : sizeof(out);
			for (size_t i = 0; i < len; i++)
				out[i] = stream_byte(sent + i);
			n = send(c, out, len, MSG_NOSIGNAL);
			if (n > 0)
				sent += (uint64_t)n;
			else if (n < 0 && errno != EAGAIN)
				return perror("client send"), 1;
		}
		if (sent == total && !shut) {
			shutdown(c, SHUT_WR);
			shut = 1;
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			n = recv(c, in, sizeof(in), 0);
			if (n == 0)
				break;
			if (n < 0 && errno != EAGAIN)
				return perror("client recv"), 1;
			for (ssize_t i = 0; i < n; i++)
				if (in[i] != stream_byte(got + (uint64_t)i))
					return fprintf(stderr, "client: mismatch at %llu\n",
						       (unsigned long long)(got + (uint64_t)i)), 1;
			if (n > 0)
				got += (uint64_t)n;
		}
	}
	if (got != total)
		return fprintf(stderr, "client: EOF after %llu of %llu\n", (unsigned long long)got,
			       (unsigned long long)total), 1;
	printf("ok %llu\n", (unsigned long long)got);
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };

	if (argc < 3)
		goto usage;
	sin.sin_port = htons((uint16_t)atoi(argv[2]));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (!strcmp(argv[1], "server"))
		return server(&sin);
	if (!strcmp(argv[1], "client") && argc > 3)
		return client(&sin, strtoull(argv[3], NULL, 0));
usage:
	fprintf(stderr, "usage: shim-echo server PORT | shim-echo client PORT NBYTES\n");
	return 2;
}
