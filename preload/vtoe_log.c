/*
 * vtoe_log.c - "vtoe[pid]: ..." lines to stderr or VTOE_LOG_FILE, never to stdout.
 */
#include "vtoe.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

int vtoe_log_level = VTOE_LOG_WARN;
static int vtoe_log_fd = 2;

void vtoe_log_init(void)
{
	const char *v = getenv("VTOE_LOG_LEVEL");
	const char *path = getenv("VTOE_LOG_FILE");

	if (v) {
		if (!strcasecmp(v, "error"))
			vtoe_log_level = VTOE_LOG_ERROR;
		else if (!strcasecmp(v, "warn"))
			vtoe_log_level = VTOE_LOG_WARN;
		else if (!strcasecmp(v, "info"))
			vtoe_log_level = VTOE_LOG_INFO;
		else if (!strcasecmp(v, "debug"))
			vtoe_log_level = VTOE_LOG_DEBUG;
	}
	if (path && *path) {
		int fd = REAL(openat)(AT_FDCWD, path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (fd >= 0) {
			/* Keep it away from the fds the application manages, and out of its reach. */
			fd = vtoe_fd_move_high(fd);
			vtoe_fd_set_internal(fd, true);
			vtoe_log_fd = fd;
		}
	}
}

/* A daemon may have closed stderr and got fd 2 back for a TCP socket: never log into it. */
static bool vtoe_log_fd_ok(void)
{
	int dom = 0;
	socklen_t l = sizeof(dom);

	if (vtoe_log_fd != 2)
		return true;
	if (vtoe_fd_peek(2))
		return false;
	return REAL(getsockopt)(2, SOL_SOCKET, SO_DOMAIN, &dom, &l) < 0 ||
	       (dom != AF_INET && dom != AF_INET6);
}

void vtoe_log_write(int level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	char buf[512];
	int n, m;
	va_list ap;
	int saved = errno; /* logging must never change what the application sees */

	if (!vtoe_log_fd_ok()) {
		errno = saved;
		return;
	}

	n = snprintf(buf, sizeof(buf), "vtoe[%d]: %s: ", (int)getpid(), names[level & 3]);
	va_start(ap, fmt);
	m = vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += VTOE_MIN((size_t)m, sizeof(buf) - n - 2);
	buf[n++] = '\n';
	(void)REAL(write)(vtoe_log_fd, buf, n);
	errno = saved;
}

bool vtoe_log_fd_rehome(int from, int to)
{
	return from != 2 && vtoe_fd_swap(&vtoe_log_fd, from, to);
}
