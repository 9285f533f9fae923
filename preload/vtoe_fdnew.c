/*
 * vtoe_fdnew.c - calls that create descriptors: open, openat, pipe, socketpair.
 *
 * Two reasons to see them.  An offloaded socket holds its peer's doorbell as well, so a
 * process near its descriptor limit could run out where kernel TCP would not: on EMFILE the
 * connections give their doorbells up (vtoe_fds_shed) and the call is tried again.  And the new
 * number may be one the table still knows from a close the shim did not see (close_range): it
 * is forgotten, so the new file is never taken for a socket.
 *
 * glibc's own internal opens (fopen, opendir, ...) do not come through here.
 */
#include "vtoe.h"

#include <fcntl.h>

static int vtoe_fdnew_done(int fd)
{
	if (fd >= 0)
		vtoe_fd_forget_stale(fd);
	return fd;
}

static int vtoe_pair_done(int r, const int fds[2])
{
	if (r == 0) {
		vtoe_fd_forget_stale(fds[0]);
		vtoe_fd_forget_stale(fds[1]);
	}
	return r;
}

#define VTOE_RETRY(call)                                                                     \
	({                                                                                   \
		int r_ = (call);                                                             \
		if (vtoe_retry_emfile(r_))                                                   \
			r_ = (call);                                                         \
		r_;                                                                          \
	})

VTOE_EXPORT int open(const char *path, int flags, ...)
{
	mode_t mode;

	VTOE_OPEN_MODE(flags, mode);
	return vtoe_fdnew_done(VTOE_RETRY(REAL(open)(path, flags, mode)));
}

VTOE_EXPORT int open64(const char *path, int flags, ...)
{
	mode_t mode;

	VTOE_OPEN_MODE(flags, mode);
	return vtoe_fdnew_done(VTOE_RETRY(REAL(open64)(path, flags, mode)));
}

VTOE_EXPORT int openat(int dir, const char *path, int flags, ...)
{
	mode_t mode;

	VTOE_OPEN_MODE(flags, mode);
	return vtoe_fdnew_done(VTOE_RETRY(REAL(openat)(dir, path, flags, mode)));
}

VTOE_EXPORT int openat64(int dir, const char *path, int flags, ...)
{
	mode_t mode;

	VTOE_OPEN_MODE(flags, mode);
	return vtoe_fdnew_done(VTOE_RETRY(REAL(openat64)(dir, path, flags, mode)));
}

/* The fortified entry points (-D_FORTIFY_SOURCE), which take no mode. */
VTOE_EXPORT int __open_2(const char *path, int flags)
{
	return vtoe_fdnew_done(VTOE_RETRY(REAL(open_2)(path, flags)));
}

VTOE_EXPORT int __open64_2(const char *path, int flags)
{
	return vtoe_fdnew_done(VTOE_RETRY(REAL(open64_2)(path, flags)));
}

VTOE_EXPORT int __openat_2(int dir, const char *path, int flags)
{
	return vtoe_fdnew_done(VTOE_RETRY(REAL(openat_2)(dir, path, flags)));
}

VTOE_EXPORT int __openat64_2(int dir, const char *path, int flags)
{
	return vtoe_fdnew_done(VTOE_RETRY(REAL(openat64_2)(dir, path, flags)));
}

VTOE_EXPORT int pipe(int fds[2])
{
	return vtoe_pair_done(VTOE_RETRY(REAL(pipe)(fds)), fds);
}

VTOE_EXPORT int pipe2(int fds[2], int flags)
{
	return vtoe_pair_done(VTOE_RETRY(REAL(pipe2)(fds, flags)), fds);
}

VTOE_EXPORT int socketpair(int domain, int type, int protocol, int fds[2])
{
	return vtoe_pair_done(VTOE_RETRY(REAL(socketpair)(domain, type, protocol, fds)), fds);
}
