/*
 * vtoe_exec.c - offloaded sockets survive exec.
 *
 * An exec keeps the application's fd (unless it is close-on-exec) but closes the shim's own
 * descriptors and drops its mappings, which would leave a dead fd in the new image.  So the
 * exec wrappers hand every inheritable connection on: its region memfd and the peer's doorbell
 * lose close-on-exec for the exec, and the environment variable VTOE_INHERIT describes them.
 * The new image's shim adopts them when it loads (vtoe_exec_adopt) and removes the variable.
 *
 * An adopted connection counts as shared (as after fork): closing it in the new image does not
 * write a FIN into the ring; the peer sees the end when the last holder of the doorbell closes.
 * posix_spawn() and system() exec without passing through these wrappers: not handed on.
 */
#include "vtoe.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VTOE_INHERIT "VTOE_INHERIT"

extern char **environ;

struct vtoe_handover {
	char *var;   /* "VTOE_INHERIT=..." or NULL */
	char **envp; /* the environment to exec with */
	int *opened; /* fds whose close-on-exec was cleared, to restore if exec fails */
	int nopened, capopened;
};

static void vtoe_hex(char *out, const void *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static size_t vtoe_unhex(void *p, size_t max, const char *in)
{
	unsigned char *b = p;
	size_t n = 0;

	while (n < max && in[0] && in[1]) {
		unsigned int v;
		if (sscanf(in, "%2x", &v) != 1)
			break;
		b[n++] = (unsigned char)v;
		in += 2;
	}
	return n;
}

/* One connection as a VTOE_INHERIT record: its fds (e.g. "0+1"), then the descriptors that
 * carry its region and doorbell, then what the new holder needs to know.  -1 if it is too long. */
int vtoe_handover_describe(struct vtoe_sock *s, const char *fds, int memfd, int bell, char *out,
			   size_t cap)
{
	char local[2 * sizeof(s->local) + 1], peer[2 * sizeof(s->peer) + 1];
	int n;

	vtoe_hex(local, &s->local, s->local_len);
	vtoe_hex(peer, &s->peer, s->peer_len);
	n = snprintf(out, cap, "%s,%d,%d,%u,%llu,%u,%u,%u,%d,%s,%s", fds, memfd, bell, s->c.sid,
		     (unsigned long long)s->c.cid, s->c.side, s->c.size, s->c.spin_us, s->family,
		     local, peer);
	return n < 0 || (size_t)n >= cap ? -1 : n;
}

static void vtoe_keep_open(struct vtoe_handover *h, int fd)
{
	if (h->nopened == h->capopened) {
		int cap = h->capopened ? 2 * h->capopened : 16;
		int *bigger = realloc(h->opened, sizeof(int) * (size_t)cap);
		if (!bigger)
			return; /* this fd stays close-on-exec: the new image leaves it to the kernel */
		h->opened = bigger;
		h->capopened = cap;
	}
	if (REAL(fcntl)(fd, F_SETFD, 0) == 0)
		h->opened[h->nopened++] = fd;
}

/* Describe every inheritable connection and let its descriptors cross the exec. */
static void vtoe_handover_prepare(struct vtoe_handover *h, char *const envp[])
{
	size_t cap = 64, len = 0, nenv = 0;
	char *var;

	memset(h, 0, sizeof(*h));
	h->envp = (char **)envp;
	if (!vtoe_fdtab || !(var = malloc(cap)))
		return;
	len = (size_t)snprintf(var, cap, "%s=", VTOE_INHERIT);
	for (unsigned int fd = 0; fd < vtoe_fdtab_max; fd++) {
		struct vtoe_sock *s = vtoe_fd_peek((int)fd);
		char rec[1024];
		size_t fds_len = 0;
		bool seen = false;
		int fl, n;

		if (!s || s == &vtoe_internal_sock || atomic_load(&s->kind) != VTOE_KIND_CONN ||
		    s->c.memfd < 0 || s->c.bell < 0)
			continue;
		fl = REAL(fcntl)((int)fd, F_GETFD);
		if (fl < 0 || (fl & FD_CLOEXEC))
			continue;
		/* One record per connection, naming every inheritable fd number it has. */
		for (unsigned int e = 0; e < fd && !seen; e++)
			seen = vtoe_fd_peek((int)e) == s && (REAL(fcntl)((int)e, F_GETFD) & FD_CLOEXEC) == 0;
		if (seen)
			continue;
		char fds[256];
		for (unsigned int e = fd; e < vtoe_fdtab_max && fds_len + 12 < sizeof(fds); e++) {
			if (vtoe_fd_peek((int)e) != s || (REAL(fcntl)((int)e, F_GETFD) & FD_CLOEXEC))
				continue;
			fds_len += (size_t)snprintf(fds + fds_len, sizeof(fds) - fds_len, "%s%u",
						    fds_len ? "+" : "", e);
		}
		const bool first = len == strlen(VTOE_INHERIT) + 1;
		if (!first)
			rec[0] = ';';
		n = vtoe_handover_describe(s, fds, s->c.memfd, s->c.bell, rec + !first, sizeof(rec) - 1);
		if (n < 0)
			continue;
		n += !first;
		if (len + (size_t)n + 1 > cap) {
			char *bigger = realloc(var, (cap = 2 * (len + (size_t)n + 1)));
			if (!bigger)
				break;
			var = bigger;
		}
		memcpy(var + len, rec, (size_t)n + 1);
		len += (size_t)n;
		vtoe_keep_open(h, s->c.memfd);
		vtoe_keep_open(h, s->c.bell);
	}
	if (!h->nopened) {
		free(var);
		return;
	}
	/* The new environment: the caller's, without an old VTOE_INHERIT, plus ours. */
	while (envp && envp[nenv])
		nenv++;
	h->envp = malloc(sizeof(char *) * (nenv + 2));
	if (!h->envp) {
		h->envp = (char **)envp;
		free(var);
		return;
	}
	size_t k = 0;
	for (size_t i = 0; i < nenv; i++)
		if (strncmp(envp[i], VTOE_INHERIT "=", sizeof(VTOE_INHERIT)) != 0)
			h->envp[k++] = envp[i];
	h->envp[k++] = var;
	h->envp[k] = NULL;
	h->var = var;
}

/* The exec failed: everything as it was. */
static void vtoe_handover_undo(struct vtoe_handover *h)
{
	int saved = errno;

	for (int i = 0; i < h->nopened; i++)
		REAL(fcntl)(h->opened[i], F_SETFD, FD_CLOEXEC);
	if (h->var) {
		free(h->envp);
		free(h->var);
	}
	free(h->opened);
	errno = saved;
}

enum vtoe_exec_how { VTOE_EXEC_PATH, VTOE_EXEC_SEARCH, VTOE_EXEC_FD };

/* Every exec variant ends here; the exported wrappers never call each other (no call through
 * our own PLT). */
static int vtoe_exec(enum vtoe_exec_how how, const char *file, int fd, char *const argv[],
		     char *const envp[])
{
	struct vtoe_handover h;
	int r;

	vtoe_handover_prepare(&h, envp);
	switch (how) {
	case VTOE_EXEC_PATH:
		r = REAL(execve)(file, argv, h.envp);
		break;
	case VTOE_EXEC_SEARCH:
		r = REAL(execvpe)(file, argv, h.envp);
		break;
	default:
		r = REAL(fexecve)(fd, argv, h.envp);
		break;
	}
	vtoe_handover_undo(&h);
	return r;
}

VTOE_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	return vtoe_exec(VTOE_EXEC_PATH, path, -1, argv, envp);
}

VTOE_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	return vtoe_exec(VTOE_EXEC_SEARCH, file, -1, argv, envp);
}

VTOE_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	return vtoe_exec(VTOE_EXEC_FD, NULL, fd, argv, envp);
}

VTOE_EXPORT int execv(const char *path, char *const argv[])
{
	return vtoe_exec(VTOE_EXEC_PATH, path, -1, argv, environ);
}

VTOE_EXPORT int execvp(const char *file, char *const argv[])
{
	return vtoe_exec(VTOE_EXEC_SEARCH, file, -1, argv, environ);
}

/* The list forms: collect the arguments (execle: then its environment) and exec. */
static int vtoe_exec_list(enum vtoe_exec_how how, const char *file, const char *arg, va_list *ap,
			  bool with_env)
{
	size_t n = 1, cap = 16;
	char **argv = malloc(sizeof(char *) * cap), **envp = environ;
	int r;

	if (!argv)
		return errno = ENOMEM, -1;
	argv[0] = (char *)arg;
	do {
		if (n + 1 >= cap) {
			char **bigger = realloc(argv, sizeof(char *) * (cap *= 2));
			if (!bigger) {
				free(argv);
				return errno = ENOMEM, -1;
			}
			argv = bigger;
		}
	} while ((argv[n++] = va_arg(*ap, char *)) != NULL);
	if (with_env)
		envp = va_arg(*ap, char **);
	r = vtoe_exec(how, file, -1, argv, envp);
	free(argv);
	return r;
}

VTOE_EXPORT int execl(const char *path, const char *arg, ...)
{
	va_list ap;
	int r;

	va_start(ap, arg);
	r = vtoe_exec_list(VTOE_EXEC_PATH, path, arg, &ap, false);
	va_end(ap);
	return r;
}

VTOE_EXPORT int execlp(const char *file, const char *arg, ...)
{
	va_list ap;
	int r;

	va_start(ap, arg);
	r = vtoe_exec_list(VTOE_EXEC_SEARCH, file, arg, &ap, false);
	va_end(ap);
	return r;
}

VTOE_EXPORT int execle(const char *path, const char *arg, ...)
{
	va_list ap;
	int r;

	va_start(ap, arg);
	r = vtoe_exec_list(VTOE_EXEC_PATH, path, arg, &ap, true);
	va_end(ap);
	return r;
}

/* ---- the new image ------------------------------------------------------------------------ */

void vtoe_adopt_record(char *rec)
{
	unsigned int sid, side, size, spin, fds[64], nfds = 0;
	unsigned long long cid;
	int memfd, bell, family, consumed = 0;
	char fdlist[256] = "", local[300] = "", peer[300] = "";
	struct vtoe_ctl_rep rep;
	struct vtoe_sock *s;

	if (sscanf(rec, "%255[0-9+],%d,%d,%u,%llu,%u,%u,%u,%d,%299[0-9a-f],%299[0-9a-f]%n", fdlist,
		   &memfd, &bell, &sid, &cid, &side, &size, &spin, &family, local, peer,
		   &consumed) < 11 ||
	    rec[consumed] != '\0') {
		vtoe_warn("VTOE_INHERIT: malformed record ignored");
		return;
	}
	for (char *p = fdlist, *end; *p && nfds < 64; p = *end ? end + 1 : end) {
		fds[nfds] = (unsigned int)strtoul(p, &end, 10);
		if (REAL(fcntl)((int)fds[nfds], F_GETFD) >= 0)
			nfds++;
	}
	if (!nfds || REAL(fcntl)(memfd, F_GETFD) < 0 || REAL(fcntl)(bell, F_GETFD) < 0) {
		vtoe_warn("VTOE_INHERIT: connection cid %llu was not inherited whole; left alone", cid);
		return;
	}
	s = vtoe_sock_new(VTOE_KIND_CANDIDATE, family);
	if (!s)
		return;
	memset(&rep, 0, sizeof(rep));
	rep.side = side;
	rep.ring_size = size;
	rep.cid = cid;
	if (vtoe_conn_map(&s->c, memfd, &rep) < 0) {
		vtoe_warn("VTOE_INHERIT: the region of cid %llu cannot be mapped", cid);
		vtoe_sock_put(s);
		REAL(close)(memfd); /* ours, not the application's */
		REAL(close)(bell);
		return;
	}
	s->local_len = (socklen_t)vtoe_unhex(&s->local, sizeof(s->local), local);
	s->peer_len = (socklen_t)vtoe_unhex(&s->peer, sizeof(s->peer), peer);
	s->c.sid = sid;
	s->c.spin_us = spin;
	s->c.memfd = vtoe_fd_move_high(memfd);
	s->c.bell = vtoe_fd_move_high(bell);
	s->c.fd = REAL(fcntl)((int)fds[0], F_DUPFD_CLOEXEC, vtoe_cfg.internal_fd_base);
	vtoe_fd_set_internal(s->c.memfd, true);
	vtoe_fd_set_internal(s->c.bell, true);
	if (s->c.fd >= 0)
		vtoe_fd_set_internal(s->c.fd, true);
	atomic_store(&s->c.nonblock, (REAL(fcntl)((int)fds[0], F_GETFL) & O_NONBLOCK) != 0);
	/* Shared, as after fork: the image that exec'd may not have been the only holder. */
	s->gen = s->c.gen = ~0u;
	atomic_store(&s->kind, VTOE_KIND_CONN);
	for (unsigned int i = 0; i < nfds; i++)
		vtoe_fd_install((int)fds[i], s);
	vtoe_sock_put(s);
	vtoe_dbg("offloaded connection cid %llu adopted (fds %s)", cid, fdlist);
}

void vtoe_exec_adopt(void)
{
	const char *env = getenv(VTOE_INHERIT);
	char *copy, *save = NULL;

	if (!env || !*env)
		return;
	copy = strdup(env);
	unsetenv(VTOE_INHERIT); /* not for this image's own children */
	if (!copy)
		return;
	for (char *rec = strtok_r(copy, ";", &save); rec; rec = strtok_r(NULL, ";", &save))
		vtoe_adopt_record(rec);
	free(copy);
}
