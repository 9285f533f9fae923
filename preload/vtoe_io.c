/*
 * vtoe_io.c - the read and write families.  An fd that is not in the table costs one array
 * look-up, then the libc call.
 */
#include "vtoe.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* sendfile() passes its off_t offset on as off64_t. */
_Static_assert(sizeof(off_t) == sizeof(off64_t), "LP64 offsets");

/* The fortified entry points are declared by libc headers only under _FORTIFY_SOURCE. */
ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags);

/* An offloaded connection behind fd (referenced), NULL for libc, or the internal marker. */
static struct vtoe_sock *vtoe_io_get(int fd)
{
	struct vtoe_sock *s = vtoe_fd_get(fd);

	if (s && s != &vtoe_internal_sock && atomic_load(&s->kind) != VTOE_KIND_CONN) {
		vtoe_sock_put(s);
		s = NULL;
	}
	return s;
}

static ssize_t vtoe_io_ebadf(void)
{
	errno = EBADF;
	return -1;
}

/* Dispatch: fast path to libc, EBADF for our own fds, else fall through with s held. */
#define VTOE_IO_ENTER(fd, s, libc_call)                                                    \
	do {                                                                               \
		if (vtoe_likely(!vtoe_fd_peek(fd)))                                        \
			return libc_call;                                                  \
		s = vtoe_io_get(fd);                                                       \
		if (!s)                                                                    \
			return libc_call;                                                  \
		if (s == &vtoe_internal_sock)                                              \
			return vtoe_io_ebadf();                                            \
	} while (0)

static ssize_t vtoe_io_recv(struct vtoe_sock *s, void *buf, size_t len, int flags)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	ssize_t r = vtoe_conn_recv(&s->c, &iov, 1, flags);

	vtoe_sock_put(s);
	return r;
}

static ssize_t vtoe_io_send(struct vtoe_sock *s, const void *buf, size_t len, int flags)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	ssize_t r = vtoe_conn_send(&s->c, &iov, 1, flags);

	vtoe_sock_put(s);
	return r;
}

/* read() and write() for callers inside the library (stdio cookies): never our own PLT. */
ssize_t vtoe_fd_read(int fd, void *buf, size_t len)
{
	struct vtoe_sock *s;

	VTOE_IO_ENTER(fd, s, REAL(read)(fd, buf, len));
	return vtoe_io_recv(s, buf, len, 0);
}

ssize_t vtoe_fd_write(int fd, const void *buf, size_t len)
{
	struct vtoe_sock *s;

	VTOE_IO_ENTER(fd, s, REAL(write)(fd, buf, len));
	return vtoe_io_send(s, buf, len, 0);
}

VTOE_EXPORT ssize_t read(int fd, void *buf, size_t len)
{
	return vtoe_fd_read(fd, buf, len);
}

VTOE_EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	struct vtoe_sock *s;

	VTOE_IO_ENTER(fd, s, REAL(read_chk)(fd, buf, len, buflen));
	if (len > buflen) {
		vtoe_sock_put(s);
		return REAL(read_chk)(fd, buf, len, buflen); /* reports the overflow */
	}
	return vtoe_io_recv(s, buf, len, 0);
}

VTOE_EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	struct vtoe_sock *s;

	VTOE_IO_ENTER(fd, s, REAL(recv)(fd, buf, len, flags));
	return vtoe_io_recv(s, buf, len, flags);
}

VTOE_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
	struct vtoe_sock *s;

	VTOE_IO_ENTER(fd, s, REAL(recv_chk)(fd, buf, len, buflen, flags));
	if (len > buflen) {
		vtoe_sock_put(s);
		return REAL(recv_chk)(fd, buf, len, buflen, flags);
	}
	return vtoe_io_recv(s, buf, len, flags);
}

/* TCP reports no source address: *alen becomes 0. */
static ssize_t vtoe_io_recvfrom(struct vtoe_sock *s, void *buf, size_t len, int flags,
				struct sockaddr *addr, socklen_t *alen)
{
	ssize_t r = vtoe_io_recv(s, buf, len, flags);

	if (r >= 0 && addr && alen)
		*alen = 0;
	return r;
}

VTOE_EXPORT ssize_t vtoe_w_recvfrom(int fd, void *buf, size_t len, int flags,
				    struct sockaddr *addr, socklen_t *alen) __asm__("recvfrom");
ssize_t vtoe_w_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
			socklen_t *alen)
{
	struct vtoe_sock *s;

	VTOE_IO_ENTER(fd, s, REAL(recvfrom)(fd, buf, len, flags, addr, alen));
	return vtoe_io_recvfrom(s, buf, len, flags, addr, alen);
}

VTOE_EXPORT ssize_t vtoe_w_recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
					struct sockaddr *addr, socklen_t *alen)
	__asm__("__recvfrom_chk");
ssize_t vtoe_w_recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
			    struct sockaddr *addr, socklen_t *alen)
{
	struct vtoe_sock *s;

	VTOE_IO_ENTER(fd, s, REAL(recvfrom_chk)(fd, buf, len, buflen, flags, addr, alen));
	if (len > buflen) {
		vtoe_sock_put(s);
		return REAL(recvfrom_chk)(fd, buf, len, buflen, flags, addr, alen);
	}
	return vtoe_io_recvfrom(s, buf, len, flags, addr, alen);
}

VTOE_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	struct vtoe_sock *s;
	ssize_t r;

	/* A Unix socket may bring offloaded connections from another process (vtoe_scm.c). */
	if (vtoe_unlikely(msg && msg->msg_control && msg->msg_controllen) && !vtoe_fd_peek(fd) &&
	    vtoe_scm_recvmsg(fd, msg, flags, &r))
		return r;
	VTOE_IO_ENTER(fd, s, REAL(recvmsg)(fd, msg, flags));
	if (!msg || msg->msg_iovlen > IOV_MAX) {
		vtoe_sock_put(s);
		errno = msg ? EMSGSIZE : EFAULT;
		return -1;
	}
	r = vtoe_conn_recv(&s->c, msg->msg_iov, (int)msg->msg_iovlen, flags);
	vtoe_sock_put(s);
	if (r >= 0) {
		/* a stream: no source address, no ancillary data, never truncated */
		msg->msg_namelen = 0;
		msg->msg_controllen = 0;
		msg->msg_flags = 0;
	}
	return r;
}

VTOE_EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
	struct vtoe_sock *s;
	ssize_t r;

	VTOE_IO_ENTER(fd, s, REAL(readv)(fd, iov, iovcnt));
	r = vtoe_conn_recv(&s->c, iov, iovcnt, 0);
	vtoe_sock_put(s);
	return r;
}

VTOE_EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
	return vtoe_fd_write(fd, buf, len);
}

VTOE_EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	struct vtoe_sock *s;

	VTOE_IO_ENTER(fd, s, REAL(send)(fd, buf, len, flags));
	return vtoe_io_send(s, buf, len, flags);
}

/* On a connected TCP socket Linux ignores the destination. */
VTOE_EXPORT ssize_t vtoe_w_sendto(int fd, const void *buf, size_t len, int flags,
				  const struct sockaddr *addr, socklen_t alen) __asm__("sendto");
ssize_t vtoe_w_sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *addr,
		      socklen_t alen)
{
	struct vtoe_sock *s;

	VTOE_IO_ENTER(fd, s, REAL(sendto)(fd, buf, len, flags, addr, alen));
	return vtoe_io_send(s, buf, len, flags);
}

VTOE_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	struct vtoe_sock *s;
	ssize_t r;

	if (vtoe_unlikely(msg && msg->msg_control && msg->msg_controllen) && !vtoe_fd_peek(fd) &&
	    vtoe_scm_sendmsg(fd, msg, flags, &r))
		return r;
	VTOE_IO_ENTER(fd, s, REAL(sendmsg)(fd, msg, flags));
	if (!msg || msg->msg_iovlen > IOV_MAX) {
		vtoe_sock_put(s);
		errno = msg ? EMSGSIZE : EFAULT;
		return -1;
	}
	r = vtoe_conn_send(&s->c, msg->msg_iov, (int)msg->msg_iovlen, flags);
	vtoe_sock_put(s);
	return r;
}

/*
 * sendmmsg/recvmmsg as Linux runs them on a TCP socket: one message after another until one
 * fails; the count of those that went through, or the first one's error.  recvmmsg checks its
 * timeout only after each message, and MSG_WAITFORONE stops waiting after the first.
 */
VTOE_EXPORT int sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
	struct vtoe_sock *s;
	unsigned int i;
	ssize_t r = 0;

	VTOE_IO_ENTER(fd, s, REAL(sendmmsg)(fd, vec, vlen, flags));
	if (vlen > UIO_MAXIOV)
		vlen = UIO_MAXIOV;
	for (i = 0; i < vlen; i++) {
		if (vec[i].msg_hdr.msg_iovlen > IOV_MAX) {
			errno = EMSGSIZE;
			r = -1;
			break;
		}
		r = vtoe_conn_send(&s->c, vec[i].msg_hdr.msg_iov, (int)vec[i].msg_hdr.msg_iovlen, flags);
		if (r < 0)
			break;
		vec[i].msg_len = (unsigned int)r;
	}
	vtoe_sock_put(s);
	return i ? (int)i : (int)r;
}

VTOE_EXPORT int recvmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags,
			 struct timespec *timeout)
{
	struct vtoe_sock *s;
	struct timespec end, now;
	unsigned int i;
	ssize_t r = 0;

	VTOE_IO_ENTER(fd, s, REAL(recvmmsg)(fd, vec, vlen, flags, timeout));
	if (timeout) {
		if (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000L) {
			vtoe_sock_put(s);
			errno = EINVAL;
			return -1;
		}
		clock_gettime(CLOCK_MONOTONIC, &end);
		end.tv_sec += timeout->tv_sec + (end.tv_nsec + timeout->tv_nsec) / 1000000000L;
		end.tv_nsec = (end.tv_nsec + timeout->tv_nsec) % 1000000000L;
	}
	if (vlen > UIO_MAXIOV)
		vlen = UIO_MAXIOV;
	for (i = 0; i < vlen; i++) {
		struct msghdr *m = &vec[i].msg_hdr;

		if (m->msg_iovlen > IOV_MAX) {
			errno = EMSGSIZE;
			r = -1;
			break;
		}
		r = vtoe_conn_recv(&s->c, m->msg_iov, (int)m->msg_iovlen, flags & ~MSG_WAITFORONE);
		if (r < 0)
			break;
		vec[i].msg_len = (unsigned int)r;
		m->msg_namelen = 0;
		m->msg_controllen = 0;
		m->msg_flags = 0;
		if (flags & MSG_WAITFORONE)
			flags |= MSG_DONTWAIT;
		if (timeout) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec)) {
				i++;
				break;
			}
		}
	}
	vtoe_sock_put(s);
	return i ? (int)i : (int)r;
}

VTOE_EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	struct vtoe_sock *s;
	ssize_t r;

	VTOE_IO_ENTER(fd, s, REAL(writev)(fd, iov, iovcnt));
	r = vtoe_conn_send(&s->c, iov, iovcnt, 0);
	vtoe_sock_put(s);
	return r;
}

VTOE_EXPORT ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
	struct vtoe_sock *s;
	ssize_t r;

	VTOE_IO_ENTER(out_fd, s, REAL(sendfile)(out_fd, in_fd, offset, count));
	r = vtoe_conn_sendfile(&s->c, in_fd, (off64_t *)offset, count);
	vtoe_sock_put(s);
	return r;
}

/*
 * splice(2): one side must be a pipe.  Into an offloaded socket it is sendfile from the pipe;
 * out of one, a recv of at most what the pipe can take now, then a write that cannot block.
 */
VTOE_EXPORT ssize_t splice(int fd_in, off64_t *off_in, int fd_out, off64_t *off_out, size_t len,
			   unsigned int flags)
{
	const bool nonblock = flags & SPLICE_F_NONBLOCK;
	struct vtoe_sock *s;
	ssize_t r;

	if (vtoe_likely(!vtoe_fd_peek(fd_in) && !vtoe_fd_peek(fd_out)))
		return REAL(splice)(fd_in, off_in, fd_out, off_out, len, flags);
	if ((s = vtoe_io_get(fd_out)) != NULL) {
		if (s == &vtoe_internal_sock)
			return vtoe_io_ebadf();
		if (off_out) {
			vtoe_sock_put(s);
			errno = ESPIPE; /* a socket has no offset */
			return -1;
		}
		r = vtoe_conn_sendfile(&s->c, fd_in, off_in, len);
		vtoe_sock_put(s);
		return r;
	}
	if ((s = vtoe_io_get(fd_in)) != NULL) {
		if (s == &vtoe_internal_sock)
			return vtoe_io_ebadf();
		if (off_in) {
			vtoe_sock_put(s);
			errno = ESPIPE;
			return -1;
		}
		r = vtoe_conn_splice_out(&s->c, fd_out, len, nonblock);
		vtoe_sock_put(s);
		return r;
	}
	return REAL(splice)(fd_in, off_in, fd_out, off_out, len, flags);
}

VTOE_EXPORT ssize_t sendfile64(int out_fd, int in_fd, off64_t *offset, size_t count)
{
	struct vtoe_sock *s;
	ssize_t r;

	VTOE_IO_ENTER(out_fd, s, REAL(sendfile64)(out_fd, in_fd, offset, count));
	r = vtoe_conn_sendfile(&s->c, in_fd, offset, count);
	vtoe_sock_put(s);
	return r;
}
