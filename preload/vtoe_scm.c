/*
 * vtoe_scm.c - offloaded sockets passed with SCM_RIGHTS.
 *
 * The fd of an offloaded connection is one end of a socketpair; on its own it is useless to a
 * process that did not set the connection up.  So a sendmsg() that passes one appends, after
 * the application's descriptors, the connection's doorbell (and on the verbs fabric its region
 * memfd), and last a small memfd named "vtoe-adopt" holding one record per connection (the
 * VTOE_INHERIT format of vtoe_exec.c, with positions in the descriptor array instead of fd
 * numbers).  The receiving shim takes the appended descriptors out, adopts the connections
 * (asking the agent for a shm connection's region, with the socket it received as the proof),
 * and hands the application exactly what was sent.  The passed connection counts as shared
 * from then on (as after fork), so the sender's close does not end the stream under the
 * receiver.
 */
#include "vtoe.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define VTOE_ADOPT_NAME "vtoe-adopt"
#define VTOE_SCM_MAX 253 /* SCM_MAX_FD */

static bool vtoe_is_conn(int fd)
{
	struct vtoe_sock *s = vtoe_fd_peek(fd);

	return s && s != &vtoe_internal_sock && atomic_load(&s->kind) == VTOE_KIND_CONN;
}

static struct cmsghdr *vtoe_rights(const struct msghdr *msg)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR((struct msghdr *)msg, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			return c;
	return NULL;
}

bool vtoe_scm_sendmsg(int fd, const struct msghdr *msg, int flags, ssize_t *result)
{
	struct cmsghdr *rights = vtoe_rights(msg), *out;
	int nfds, total, recfd = -1, *fds;
	struct vtoe_sock *passed[VTOE_SCM_MAX];
	int npassed = 0, nextra = 0;
	char text[4096];
	size_t tlen = 0;
	struct msghdr m;
	char *control;

	if (!rights)
		return false;
	nfds = (int)((rights->cmsg_len - CMSG_LEN(0)) / sizeof(int));
	fds = (int *)CMSG_DATA(rights);
	for (int i = 0; i < nfds; i++)
		if (vtoe_is_conn(fds[i]))
			npassed++;
	if (!npassed || nfds + 2 * npassed + 1 > VTOE_SCM_MAX)
		return false;

	/* The new descriptor array: the application's, then memfd and bell per connection, then
	 * the record memfd. */
	total = nfds + 2 * npassed + 1;
	control = calloc(1, msg->msg_controllen + CMSG_SPACE(sizeof(int) * (size_t)total));
	if (!control)
		return false;
	int *all = malloc(sizeof(int) * (size_t)total);
	if (!all) {
		free(control);
		return false;
	}
	memcpy(all, fds, sizeof(int) * (size_t)nfds);
	npassed = 0;
	for (int i = 0; i < nfds; i++) {
		struct vtoe_sock *s = vtoe_fd_peek(fds[i]);
		char idx[16], rec[1024];
		int n;

		if (!vtoe_is_conn(fds[i]))
			continue;
		const bool memfd = s->c.memfd >= 0, bell = s->c.bell >= 0;

		snprintf(idx, sizeof(idx), "%d", i);
		n = vtoe_handover_describe(s, idx, memfd ? nfds + nextra : -1,
					   bell ? nfds + nextra + memfd : -1, rec, sizeof(rec));
		if (n < 0 || tlen + (size_t)n + 2 > sizeof(text))
			continue;
		tlen += (size_t)snprintf(text + tlen, sizeof(text) - tlen, "%s%s", tlen ? ";" : "", rec);
		if (memfd)
			all[nfds + nextra++] = s->c.memfd;
		if (bell)
			all[nfds + nextra++] = s->c.bell;
		passed[npassed++] = s;
	}
	recfd = memfd_create(VTOE_ADOPT_NAME, MFD_CLOEXEC);
	if (recfd < 0 || REAL(write)(recfd, text, tlen) != (ssize_t)tlen) {
		if (recfd >= 0)
			REAL(close)(recfd);
		free(all);
		free(control);
		return false;
	}
	all[nfds + nextra] = recfd;
	total = nfds + nextra + 1;

	/* Copy the other control messages as they were; replace the SCM_RIGHTS one. */
	m = *msg;
	m.msg_control = control;
	m.msg_controllen = 0;
	out = (struct cmsghdr *)control;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
		if (c == rights) {
			out->cmsg_level = SOL_SOCKET;
			out->cmsg_type = SCM_RIGHTS;
			out->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)total);
			memcpy(CMSG_DATA(out), all, sizeof(int) * (size_t)total);
		} else {
			memcpy(out, c, c->cmsg_len);
		}
		m.msg_controllen += CMSG_ALIGN(out->cmsg_len);
		out = (struct cmsghdr *)((char *)out + CMSG_ALIGN(out->cmsg_len));
	}
	*result = REAL(sendmsg)(fd, &m, flags);
	int saved = errno;
	if (*result >= 0)
		for (int i = 0; i < npassed; i++)
			passed[i]->gen = passed[i]->c.gen = ~0u; /* shared from now on */
	REAL(close)(recfd);
	free(all);
	free(control);
	errno = saved;
	return true;
}

/* Is fd the record memfd another shim appended? */
static bool vtoe_is_adopt_memfd(int fd)
{
	char path[64], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n <= 0)
		return false;
	target[n] = '\0';
	return strncmp(target, "/memfd:" VTOE_ADOPT_NAME, strlen("/memfd:" VTOE_ADOPT_NAME)) == 0;
}

/* Adopt what the records describe; returns how many appended descriptors they used. */
static int vtoe_scm_adopt(int *fds, int nfds, int recfd)
{
	char text[4096], *save = NULL;
	ssize_t n = pread(recfd, text, sizeof(text) - 1, 0);
	int appended = 0;

	if (n <= 0)
		return 0;
	text[n] = '\0';
	for (char *rec = strtok_r(text, ";", &save); rec; rec = strtok_r(NULL, ";", &save)) {
		int i, m, b, off = 0;
		unsigned long long ino;
		char real[1200];

		if (sscanf(rec, "%d,%llu,%d,%d,%n", &i, &ino, &m, &b, &off) < 4 || i < 0 || m < -1 ||
		    b < -1 || i >= nfds || m >= nfds || b >= nfds) {
			vtoe_warn("SCM_RIGHTS: malformed vtoe-adopt record ignored");
			continue;
		}
		snprintf(real, sizeof(real), "%d,%llu,%d,%d,%s", fds[i], ino, m < 0 ? -1 : fds[m],
			 b < 0 ? -1 : fds[b], rec + off);
		vtoe_adopt_record(real, false);
		appended += (m >= 0) + (b >= 0);
	}
	return appended;
}

bool vtoe_scm_recvmsg(int fd, struct msghdr *msg, int flags, ssize_t *result)
{
	int domain = 0;
	socklen_t l = sizeof(domain);
	struct msghdr m;
	char *big;
	size_t bigsize;

	if (REAL(getsockopt)(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l) < 0 || domain != AF_UNIX)
		return false;
	/* Room for what another shim may append to what the application expects. */
	bigsize = msg->msg_controllen + CMSG_SPACE(sizeof(int) * VTOE_SCM_MAX);
	big = calloc(1, bigsize);
	if (!big)
		return false;
	m = *msg;
	m.msg_control = big;
	m.msg_controllen = bigsize;
	*result = REAL(recvmsg)(fd, &m, flags);
	int saved = errno;
	if (*result < 0) {
		free(big);
		errno = saved;
		return true;
	}
	msg->msg_namelen = m.msg_namelen;
	msg->msg_flags = m.msg_flags;

	/* Copy back what fits in the application's buffer, as the kernel would (MSG_CTRUNC, and
	 * descriptors that do not fit are closed). */
	size_t used = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
		size_t payload = c->cmsg_len - CMSG_LEN(0);
		int *cfds = (int *)CMSG_DATA(c), cn = 0;
		const bool rights = c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS;

		if (rights) {
			cn = (int)(payload / sizeof(int));
			if (cn > 0 && vtoe_is_adopt_memfd(cfds[cn - 1])) {
				int appended = vtoe_scm_adopt(cfds, cn, cfds[cn - 1]);
				REAL(close)(cfds[cn - 1]);
				cn -= 1 + appended; /* the appended ones were taken by the adoption */
			}
			payload = sizeof(int) * (size_t)cn;
		}
		size_t room = msg->msg_controllen > used ? msg->msg_controllen - used : 0;
		int fit = cn;
		if (CMSG_LEN(payload) > room) {
			msg->msg_flags |= MSG_CTRUNC;
			fit = rights && room > CMSG_LEN(0) ? (int)((room - CMSG_LEN(0)) / sizeof(int)) : 0;
			for (int i = fit; i < cn; i++)
				vtoe_fd_close(cfds[i]);
			if (!fit)
				continue;
			payload = sizeof(int) * (size_t)fit;
		}
		struct cmsghdr *out = (struct cmsghdr *)((char *)msg->msg_control + used);
		out->cmsg_level = c->cmsg_level;
		out->cmsg_type = c->cmsg_type;
		out->cmsg_len = CMSG_LEN(payload);
		memcpy(CMSG_DATA(out), CMSG_DATA(c), payload);
		used += CMSG_SPACE(payload);
		if (used > msg->msg_controllen)
			used = msg->msg_controllen;
	}
	msg->msg_controllen = used;
	free(big);
	errno = saved;
	return true;
}
