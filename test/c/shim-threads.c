/*
 * shim-threads.c - several threads sending and receiving on one TCP connection at once.
 *
 * Writer i sends BYTES bytes of value i on the client socket; two readers share the server
 * socket and count bytes by value.  Then shutdown(SHUT_RD) must wake the readers.  Prints
 * "ok" when every byte arrived exactly once.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WRITERS 4
#define READERS 2
#define BYTES (32u << 20)

static int c, s;
static atomic_ulong counts[WRITERS];
static atomic_ulong total;

static void *writer(void *arg)
{
	unsigned char buf[3000];
	size_t left = BYTES;

	memset(buf, (int)(intptr_t)arg, sizeof(buf));
	while (left) {
		ssize_t n = send(c, buf, left < sizeof(buf) ? left : sizeof(buf), 0);
		if (n <= 0)
			return perror("send"), NULL;
		left -= (size_t)n;
	}
	return NULL;
}

static void *reader(void *arg)
{
	unsigned char buf[4096];

	(void)arg;
	for (;;) {
		ssize_t n = recv(s, buf, sizeof(buf), 0);
		if (n <= 0)
			return NULL; /* EOF or the final shutdown */
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] < WRITERS)
				atomic_fetch_add(&counts[buf[i]], 1);
		atomic_fetch_add(&total, (unsigned long)n);
	}
}

int main(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t l = sizeof(sin);
	pthread_t w[WRITERS], r[READERS];
	int ls = socket(AF_INET, SOCK_STREAM, 0), ok = 1;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(ls, (struct sockaddr *)&sin, l) < 0 || listen(ls, 1) < 0)
		return perror("listen"), 1;
	getsockname(ls, (struct sockaddr *)&sin, &l);
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(c, (struct sockaddr *)&sin, l) < 0)
		return perror("connect"), 1;
	s = accept(ls, NULL, NULL);
	for (int i = 0; i < READERS; i++)
		pthread_create(&r[i], NULL, reader, NULL);
	for (intptr_t i = 0; i < WRITERS; i++)
		pthread_create(&w[i], NULL, writer, (void *)i);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(w[i], NULL);
	while (atomic_load(&total) < (unsigned long)WRITERS * BYTES)
		usleep(1000);
	shutdown(s, SHUT_RD); /* must wake both blocked readers */
	for (int i = 0; i < READERS; i++)
		pthread_join(r[i], NULL);
	for (int i = 0; i < WRITERS; i++)
		if (atomic_load(&counts[i]) != BYTES) {
			printf("writer %d: %lu of %u bytes\n", i, atomic_load(&counts[i]), BYTES);
			ok = 0;
		}
	if (ok)
		printf("ok %lu bytes\n", atomic_load(&total));
	return !ok;
}
