/*
 * stream-roles: the two ends of a checksummed TCP stream, for fabric tests.  Lines on stdout
 * are the synchronisation points.
 *   stream-roles sink ADDR DELAY_MS    listen on ADDR:0, print "READY <port>", accept one
 *                                      client, read to EOF sleeping DELAY_MS after each read,
 *                                      print "DONE <bytes> <fnv64>" or "ERROR <errno> <bytes>"
 *   stream-roles sink-exec ADDR DELAY_MS  as sink, but the accepted socket is read by a new
 *                                      image: it execs "stream-roles read-fd FD DELAY_MS"
 *   stream-roles read-fd FD DELAY_MS   read FD (inherited) as sink reads its client
 *   stream-roles source ADDR PORT BYTES  connect, write BYTES of a seeded pseudo-random stream,
 *                                      close, print "SENT <bytes> <fnv64>" or "ERROR <errno> <bytes>"
 *   stream-roles flood ADDR PORT       connect, print "CONNECTED", write until a write fails,
 *                                      print "ERROR <errno> <bytes>"
 *   stream-roles hold ADDR             listen, print "READY <port>", accept, print "ACCEPTED",
 *                                      never read (the test kills it)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 65536

static const char *errno_name(int e)
{
	switch (e) {
	case ECONNRESET: return "ECONNRESET";
	case EPIPE: return "EPIPE";
	case ECONNREFUSED: return "ECONNREFUSED";
	case ETIMEDOUT: return "ETIMEDOUT";
	default: return strerror(e);
	}
}

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static void addr_of(struct sockaddr_in *sa, const char *ip, int port)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, ip, &sa->sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", ip);
		exit(2);
	}
}

static int listen_on(const char *ip)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int s = socket(AF_INET, SOCK_STREAM, 0);

	addr_of(&sa, ip, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) || listen(s, 4) ||
	    getsockname(s, (struct sockaddr *)&sa, &len)) {
		perror("listen");
		exit(2);
	}
	printf("READY %d\n", ntohs(sa.sin_port));
	fflush(stdout);
	return s;
}

static int connect_to(const char *ip, int port)
{
	struct sockaddr_in sa;
	int s = socket(AF_INET, SOCK_STREAM, 0);

	addr_of(&sa, ip, port);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa))) {
		printf("ERROR %s 0\n", errno_name(errno));
		exit(1);
	}
	return s;
}

static void fill(unsigned char *buf, size_t n, uint64_t *state)
{
	for (size_t i = 0; i < n; i++) {
		*state ^= *state << 13;
		*state ^= *state >> 7;
		*state ^= *state << 17;
		buf[i] = (unsigned char)*state;
	}
}

static unsigned char buf[CHUNK];

/* Reads s to its end, sleeping delay_ms after each read; prints DONE or ERROR. */
static int drain(int s, const char *delay_ms)
{
	uint64_t h = 0xcbf29ce484222325ull, total = 0;
	struct timespec d = { 0, atol(delay_ms) * 1000000L };
	ssize_t n;

	while ((n = read(s, buf, sizeof(buf))) > 0) {
		h = fnv(h, buf, (size_t)n);
		total += (uint64_t)n;
		if (d.tv_nsec)
			nanosleep(&d, NULL);
	}
	if (n < 0)
		printf("ERROR %s %llu\n", errno_name(errno), (unsigned long long)total);
	else
		printf("DONE %llu %016llx\n", (unsigned long long)total, (unsigned long long)h);
	return n < 0;
}

int main(int argc, char **argv)
{
	uint64_t h = 0xcbf29ce484222325ull, total = 0, state = 0x9e3779b97f4a7c15ull;

	signal(SIGPIPE, SIG_IGN);
	if (argc == 4 && !strcmp(argv[1], "sink"))
		return drain(accept(listen_on(argv[2]), NULL, NULL), argv[3]);
	if (argc == 4 && !strcmp(argv[1], "sink-exec")) {
		int l = listen_on(argv[2]), s = accept(l, NULL, NULL);
		char fd[16];

		close(l); /* only the connection goes to the new image */
		snprintf(fd, sizeof(fd), "%d", s);
		execl("/proc/self/exe", argv[0], "read-fd", fd, argv[3], (char *)NULL);
		printf("ERROR exec %s\n", strerror(errno));
		return 1;
	}
	if (argc == 4 && !strcmp(argv[1], "read-fd"))
		return drain(atoi(argv[2]), argv[3]);
	if (argc == 5 && !strcmp(argv[1], "source")) {
		int s = connect_to(argv[2], atoi(argv[3]));
		uint64_t want = strtoull(argv[4], NULL, 10);

		while (total < want) {
			size_t n = want - total < CHUNK ? (size_t)(want - total) : CHUNK;
			fill(buf, n, &state);
			h = fnv(h, buf, n);
			for (size_t off = 0; off < n;) {
				ssize_t w = write(s, buf + off, n - off);
				if (w < 0) {
					printf("ERROR %s %llu\n", errno_name(errno), (unsigned long long)total);
					return 1;
				}
				off += (size_t)w;
				total += (uint64_t)w;
			}
		}
		if (close(s)) {
			printf("ERROR %s %llu\n", errno_name(errno), (unsigned long long)total);
			return 1;
		}
		printf("SENT %llu %016llx\n", (unsigned long long)total, (unsigned long long)h);
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "flood")) {
		int s = connect_to(argv[2], atoi(argv[3]));

		printf("CONNECTED\n");
		fflush(stdout);
		for (;;) {
			ssize_t w = write(s, buf, sizeof(buf));
			if (w < 0) {
				printf("ERROR %s %llu\n", errno_name(errno), (unsigned long long)total);
				return 0;
			}
			total += (uint64_t)w;
		}
	}
	if (argc == 3 && !strcmp(argv[1], "hold")) {
		int l = listen_on(argv[2]), s = accept(l, NULL, NULL);

		printf(s < 0 ? "ERROR accept\n" : "ACCEPTED\n");
		fflush(stdout);
		for (;;)
			pause();
	}
	fprintf(stderr, "usage: see the comment at the top of stream-roles.c\n");
	return 2;
}
