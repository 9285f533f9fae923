/*
 * soak.c - many connections at once, each full duplex, random write and read sizes, every
 * byte checksummed.  One process holds both ends of every connection (2 threads per
 * connection end), so it runs the same on kernel TCP and through the shim.
 *
 *   soak CONNECTIONS SECONDS [SEED [MAX_CHUNK [LAG_MS]]]
 *
 * Each direction of each connection carries a seeded pseudo-random stream for SECONDS, then
 * shuts down writing; the reader checks every byte.  Writes and reads are 1..MAX_CHUNK bytes
 * (default 65536).  With LAG_MS, a reader stops reading for that long about every 16th read,
 * so that writers find their buffers full (through offload: rings grow and shrink).  Prints
 * one line:
 *   "SOAK OK <connections> conns <bytes> bytes <seconds> s"  or  "SOAK FAIL <why>"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static size_t max_chunk = 65536;
static unsigned lag_ms;

struct stream {
	int fd;		   /* this end's socket */
	uint64_t seed;	   /* of the stream this end writes */
	uint64_t peer_seed; /* of the stream it reads */
	uint64_t written, read_bytes;
	int failed;
};

static double deadline;
static atomic_ullong total_bytes;
static atomic_int failures;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* The stream's byte i depends only on the seed and i, so reader and writer agree on it. */
static unsigned char stream_byte(uint64_t seed, uint64_t i)
{
	uint64_t x = seed ^ (i / 8) * 0x9e3779b97f4a7c15ull;

	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return (unsigned char)(x >> (8 * (i % 8)));
}

static void *writer(void *arg)
{
	struct stream *st = arg;
	unsigned char *buf = malloc(max_chunk);
	uint64_t rng = st->seed | 1;

	if (!buf) {
		st->failed = 1;
		atomic_fetch_add(&failures, 1);
		shutdown(st->fd, SHUT_WR); /* its reader still ends */
		return NULL;
	}
	while (now() < deadline) {
		size_t n = 1 + next(&rng) % max_chunk;
		for (size_t i = 0; i < n; i++)
			buf[i] = stream_byte(st->seed, st->written + i);
		for (size_t off = 0; off < n;) {
			ssize_t w = send(st->fd, buf + off, n - off, MSG_NOSIGNAL);
			if (w < 0) {
				fprintf(stderr, "send: %s\n", strerror(errno));
				st->failed = 1;
				atomic_fetch_add(&failures, 1);
				free(buf);
				return NULL;
			}
			off += (size_t)w;
		}
		st->written += n;
	}
	shutdown(st->fd, SHUT_WR);
	free(buf);
	return NULL;
}

static void *reader(void *arg)
{
	struct stream *st = arg;
	unsigned char *buf = malloc(max_chunk);
	uint64_t rng = st->peer_seed ^ 0x5555;

	if (!buf) {
		atomic_fetch_add(&failures, 1);
		return NULL;
	}
	for (;;) {
		size_t want = 1 + next(&rng) % max_chunk;
		if (lag_ms && next(&rng) % 16 == 0) {
			struct timespec lag = { 0, (long)lag_ms * 1000000 };
			nanosleep(&lag, NULL); /* a reader that lags, not an ordering */
		}
		ssize_t n = recv(st->fd, buf, want, 0);
		if (n == 0)
			break;
		if (n < 0) {
			fprintf(stderr, "recv: %s\n", strerror(errno));
			atomic_fetch_add(&failures, 1);
			break;
		}
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] != stream_byte(st->peer_seed, st->read_bytes + (uint64_t)i)) {
				fprintf(stderr, "byte %llu of stream %llx is wrong\n",
					(unsigned long long)(st->read_bytes + (uint64_t)i),
					(unsigned long long)st->peer_seed);
				atomic_fetch_add(&failures, 1);
				free(buf);
				return NULL;
			}
		}
		st->read_bytes += (uint64_t)n;
		atomic_fetch_add(&total_bytes, (unsigned long long)n);
	}
	free(buf);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return fprintf(stderr, "usage: soak CONNECTIONS SECONDS [SEED]\n"), 2;
	int conns = atoi(argv[1]);
	double seconds = atof(argv[2]);
	uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 0) : 12345;
	if (argc > 4)
		max_chunk = strtoull(argv[4], NULL, 0);
	if (argc > 5)
		lag_ms = (unsigned)atoi(argv[5]);
	if (max_chunk < 1)
		return fprintf(stderr, "MAX_CHUNK must be at least 1\n"), 2;
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(sin);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct stream *ends = calloc((size_t)conns * 2, sizeof(*ends));
	pthread_t *th = calloc((size_t)conns * 4, sizeof(*th));

	if (conns < 1 || !ends || !th || bind(lfd, (struct sockaddr *)&sin, l) || listen(lfd, conns) ||
	    getsockname(lfd, (struct sockaddr *)&sin, &l))
		return perror("setup"), 2;
	for (int i = 0; i < conns; i++) {
		struct stream *c = &ends[2 * i], *s = &ends[2 * i + 1];
		c->fd = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(c->fd, (struct sockaddr *)&sin, l))
			return perror("connect"), 2;
		s->fd = accept(lfd, NULL, NULL);
		if (s->fd < 0)
			return perror("accept"), 2;
		c->seed = s->peer_seed = seed + 2 * (uint64_t)i + 1;
		s->seed = c->peer_seed = seed + 2 * (uint64_t)i + 2;
	}
	deadline = now() + seconds;
	for (int i = 0; i < 2 * conns; i++) {
		pthread_create(&th[2 * i], NULL, writer, &ends[i]);
		pthread_create(&th[2 * i + 1], NULL, reader, &ends[i]);
	}
	for (int i = 0; i < 4 * conns; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 2 * conns; i++) {
		struct stream *e = &ends[i], *peer = &ends[i ^ 1];
		if (!e->failed && peer->read_bytes != e->written) {
			fprintf(stderr, "stream %d: wrote %llu, peer read %llu\n", i,
				(unsigned long long)e->written, (unsigned long long)peer->read_bytes);
			atomic_fetch_add(&failures, 1);
		}
		close(e->fd);
	}
	if (atomic_load(&failures)) {
		printf("SOAK FAIL %d streams\n", atomic_load(&failures));
		return 1;
	}
	printf("SOAK OK %d conns %llu bytes %.0f s\n", conns, (unsigned long long)atomic_load(&total_bytes),
	       seconds);
	return 0;
}
