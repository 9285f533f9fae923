/*
 * shim-close-race.c - connections closed while they are being polled without waiting.
 *
 * `threads`: two threads spin on poll(..., 0) and epoll_wait(..., 0) over a few connections
 * while the main thread closes them one by one and connects new ones in their place.
 * `signal`: a timer's handler closes the connection that its own thread is spinning on with
 * poll(..., 0).  Each connection has carried a byte each way.  Either way, every connection's server end must read the end of the stream.
 * Prints "ok N connections" and exits 0, or says what went wrong and exits 1; a poll that read
 * a released connection would crash it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LIVE 4 /* connections open at once in `threads` */

static struct sockaddr_in srv;
static pthread_mutex_t eof_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t eof_cond = PTHREAD_COND_INITIALIZER;
static int eofs;
static atomic_int slots[LIVE];
static atomic_bool stop;
static atomic_ulong polls;
static int epfd;

static void *drain(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[256];
	ssize_t n;

	while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
		;
	if (n == 0) {
		pthread_mutex_lock(&eof_lock);
		eofs++;
		pthread_cond_signal(&eof_cond);
		pthread_mutex_unlock(&eof_lock);
	} else
		fprintf(stderr, "server recv: %s\n", strerror(errno));
	close(fd);
	return NULL;
}

/* Accepts for ever; each connection gets one byte (so polls see POLLIN) and a drainer. */
static void *serve(void *arg)
{
	int ls = (int)(intptr_t)arg;

	for (;;) {
		int fd = accept(ls, NULL, NULL);
		pthread_t t;

		if (fd < 0) {
			if (errno == EINTR)
				continue;
			perror("accept");
			exit(1);
		}
		if (send(fd, "s", 1, 0) != 1 || pthread_create(&t, NULL, drain, (void *)(intptr_t)fd))
			exit(1);
		pthread_detach(t);
	}
	return NULL;
}

static int dial(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct pollfd p;
	char b;

	if (fd < 0 || connect(fd, (struct sockaddr *)&srv, sizeof(srv)) < 0 || send(fd, "c", 1, 0) != 1) {
		perror("connect");
		exit(1);
	}
	p = (struct pollfd){ .fd = fd, .events = POLLIN };
	/* the server's byte (its end is set up), read: a close with unread data is a reset */
	if (poll(&p, 1, 10000) != 1 || recv(fd, &b, 1, 0) != 1) {
		fprintf(stderr, "no byte from the server\n");
		exit(1);
	}
	return fd;
}

static void *spin(void *arg)
{
	struct epoll_event ev[LIVE];
	struct pollfd p[LIVE];

	(void)arg;
	while (!atomic_load(&stop)) {
		for (int i = 0; i < LIVE; i++)
			p[i] = (struct pollfd){ .fd = atomic_load(&slots[i]), .events = POLLIN | POLLOUT };
		if (poll(p, LIVE, 0) < 0 || epoll_wait(epfd, ev, LIVE, 0) < 0) {
			perror("poll");
			exit(1);
		}
		atomic_fetch_add(&polls, 1);
	}
	return NULL;
}

static int run_threads(int rounds)
{
	pthread_t t[2];

	epfd = epoll_create1(0);
	for (int i = 0; i < LIVE; i++) {
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT };
		int fd = dial();

		atomic_store(&slots[i], fd);
		ev.data.fd = fd;
		epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
	}
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, spin, NULL);
	for (int r = 0; r < rounds; r++) {
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT };
		int i = r % LIVE, fd;

		close(atomic_load(&slots[i])); /* the spinners may be reading it right now */
		fd = dial();
		atomic_store(&slots[i], fd);
		ev.data.fd = fd;
		epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < LIVE; i++)
		close(atomic_load(&slots[i]));
	if (atomic_load(&polls) == 0) {
		fprintf(stderr, "the spinners never polled\n");
		return -1;
	}
	return rounds + LIVE;
}

static volatile sig_atomic_t target = -1, closed_by_handler;

static void on_alarm(int sig)
{
	int saved = errno;

	(void)sig;
	if (target >= 0) {
		close(target);
		target = -1;
		closed_by_handler = 1;
	}
	errno = saved;
}

static int run_signal(int rounds)
{
	struct sigaction sa = { .sa_handler = on_alarm };

	sigaction(SIGALRM, &sa, NULL);
	for (int r = 0; r < rounds; r++) {
		struct itimerval it = { .it_value = { 0, 20 + rand() % 300 } };
		int fd = dial();

		closed_by_handler = 0;
		target = fd;
		setitimer(ITIMER_REAL, &it, NULL);
		while (!closed_by_handler) {
			struct pollfd p = { .fd = fd, .events = POLLIN };

			if (poll(&p, 1, 0) < 0 && errno != EINTR) {
				perror("poll");
				return -1;
			}
		}
	}
	return rounds;
}

int main(int argc, char **argv)
{
	socklen_t l = sizeof(srv);
	int ls = socket(AF_INET, SOCK_STREAM, 0), n;
	struct timespec deadline;
	pthread_t t;

	if (argc != 3 || (strcmp(argv[1], "threads") && strcmp(argv[1], "signal"))) {
		fprintf(stderr, "usage: shim-close-race threads|signal ROUNDS\n");
		return 2;
	}
	srand((unsigned)getpid());
	srv.sin_family = AF_INET;
	srv.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(ls, (struct sockaddr *)&srv, l) < 0 || listen(ls, 64) < 0 ||
	    getsockname(ls, (struct sockaddr *)&srv, &l) < 0)
		return perror("listen"), 1;
	pthread_create(&t, NULL, serve, (void *)(intptr_t)ls);
	n = strcmp(argv[1], "threads") == 0 ? run_threads(atoi(argv[2])) : run_signal(atoi(argv[2]));
	if (n < 0)
		return 1;
	/* Every close, deferred or not, became an end of stream at the server. */
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 20;
	pthread_mutex_lock(&eof_lock);
	while (eofs < n && pthread_cond_timedwait(&eof_cond, &eof_lock, &deadline) == 0)
		;
	if (eofs < n) {
		fprintf(stderr, "%d of %d connections ended at the server\n", eofs, n);
		return 1;
	}
	pthread_mutex_unlock(&eof_lock);
	printf("ok %d connections\n", n);
	return 0;
}
