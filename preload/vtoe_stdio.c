/*
 * vtoe_stdio.c - stdio streams on offloaded sockets.
 *
 * glibc's stdio reads and writes its fd with internal calls that no preload can see, so a
 * stream opened on an offloaded socket would read the doorbell bytes of the socketpair under
 * it.  fdopen() of an offloaded fd therefore returns a cookie stream whose reads and writes go
 * through the rings; fileno() still names the fd.  A program exec'd with an offloaded socket on
 * fd 0 or 1 (inetd, tcpserver, a socat EXEC) gets stdin or stdout replaced the same way.
 */
#include "vtoe.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vtoe_stream {
	FILE *f;
	int fd;
	struct vtoe_stream *next;
};

static pthread_mutex_t vtoe_streams_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vtoe_stream *vtoe_streams;

static ssize_t vtoe_cookie_read(void *cookie, char *buf, size_t len)
{
	return vtoe_fd_read(((struct vtoe_stream *)cookie)->fd, buf, len);
}

static ssize_t vtoe_cookie_write(void *cookie, const char *buf, size_t len)
{
	ssize_t n = vtoe_fd_write(((struct vtoe_stream *)cookie)->fd, buf, len);

	return n < 0 ? 0 : n; /* stdio's cookie contract: 0 is the error */
}

static int vtoe_cookie_close(void *cookie)
{
	struct vtoe_stream *st = cookie, **p;
	int fd = st->fd;

	pthread_mutex_lock(&vtoe_streams_lock);
	for (p = &vtoe_streams; *p; p = &(*p)->next)
		if (*p == st) {
			*p = st->next;
			break;
		}
	pthread_mutex_unlock(&vtoe_streams_lock);
	free(st);
	return fd >= 0 ? vtoe_fd_close(fd) : 0;
}

/* A stream on offloaded fd; NULL with errno on failure. */
static FILE *vtoe_stream_open(int fd, const char *mode)
{
	static const cookie_io_functions_t io = {
		.read = vtoe_cookie_read, .write = vtoe_cookie_write, .close = vtoe_cookie_close,
	};
	struct vtoe_stream *st = calloc(1, sizeof(*st));

	if (!st)
		return NULL;
	st->fd = fd;
	st->f = fopencookie(st, mode, io);
	if (!st->f) {
		free(st);
		return NULL;
	}
	pthread_mutex_lock(&vtoe_streams_lock);
	st->next = vtoe_streams;
	vtoe_streams = st;
	pthread_mutex_unlock(&vtoe_streams_lock);
	return st->f;
}

static bool vtoe_fd_offloaded(int fd)
{
	struct vtoe_sock *s = vtoe_fd_peek(fd);

	return s && s != &vtoe_internal_sock && atomic_load(&s->kind) == VTOE_KIND_CONN;
}

VTOE_EXPORT FILE *fdopen(int fd, const char *mode)
{
	if (vtoe_likely(!vtoe_fd_offloaded(fd)))
		return REAL(fdopen)(fd, mode);
	/* the kernel's checks: a valid fd whose access mode allows the stream's */
	int fl = REAL(fcntl)(fd, F_GETFL);
	if (fl < 0)
		return NULL;
	return vtoe_stream_open(fd, mode);
}

static int vtoe_stream_fd(FILE *f)
{
	int fd = -1;

	pthread_mutex_lock(&vtoe_streams_lock);
	for (struct vtoe_stream *st = vtoe_streams; st; st = st->next)
		if (st->f == f) {
			fd = st->fd;
			break;
		}
	pthread_mutex_unlock(&vtoe_streams_lock);
	return fd;
}

VTOE_EXPORT int fileno(FILE *f)
{
	int fd;

	if (vtoe_likely(!__atomic_load_n(&vtoe_streams, __ATOMIC_ACQUIRE)) || (fd = vtoe_stream_fd(f)) < 0)
		return REAL(fileno)(f);
	return fd;
}

VTOE_EXPORT int fileno_unlocked(FILE *f)
{
	int fd;

	if (vtoe_likely(!__atomic_load_n(&vtoe_streams, __ATOMIC_ACQUIRE)) || (fd = vtoe_stream_fd(f)) < 0)
		return REAL(fileno_unlocked)(f);
	return fd;
}

/* After adoption: stdin/stdout on an offloaded socket read and write through the rings. */
void vtoe_stdio_adopt(void)
{
	FILE *f;

	if (vtoe_fd_offloaded(0) && (f = vtoe_stream_open(0, "r")))
		stdin = f;
	if (vtoe_fd_offloaded(1) && (f = vtoe_stream_open(1, "w")))
		stdout = f;
}
