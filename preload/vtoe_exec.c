/*
 * vtoe_exec.c - offloaded sockets survive exec.
 *
 * An exec keeps the application's fd (unless it is close-on-exec) but closes the shim's own
 * descriptors and drops its mappings, which would leave a dead fd in the new image.  So the
 * exec wrappers hand every inheritable connection on: the peer's doorbell (and on the verbs
 * fabric the region's memfd) lose close-on-exec for the exec, and the environment variable
 * VTOE_INHERIT describes them.  The new image's shim adopts them when it loads
 * (vtoe_exec_adopt), asking the agent for the region of a shm connection (ATTACH, with the
 * socket as the proof that it holds it), and removes the variable.  Without an agent then, a
 * shm connection cannot be adopted: its fd stays a bare socketpair end.
 *
 * An adopted connection counts as shared (as after fork): closing it in the new image does not
 * write a FIN into the ring; the peer sees the end when the last holder of the doorbell closes.
 *
 * posix_spawn(), system() and popen() exec inside libc, past these wrappers, so they get
 * wrappers of their own; a spawned child's file actions may move a socket to another number
 * (dup2 onto 0 and 1, the inetd way), so every record carries the socket's inode and the new
 * image adopts whichever of its low fds is that socket.  After a spawn the parent's copy is
 * shared too, and so after an exec from a vfork child (vtoe_handover_vfork).
 */
#include "vtoe.h"

#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define VTOE_INHERIT "VTOE_INHERIT"

extern char **environ;

/* Fds below this are searched for an inherited socket that file actions moved. */
#define VTOE_ADOPT_SCAN 64

struct vtoe_handover {
	char *var;   /* "VTOE_INHERIT=..." or NULL */
	char **envp; /* the environment to exec with */
	int *opened; /* fds whose close-on-exec was cleared, to restore afterwards */
	int nopened, capopened;
	struct vtoe_sock **handed; /* the connections described (referenced) */
	int nhanded, caphanded;
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

/* One connection as a VTOE_INHERIT record: its fds (e.g. "0+1"), the socket's inode, then the
 * descriptors that carry its region (-1: the new holder asks the agent, ATTACH) and doorbell,
 * then what the new holder needs to know, its fabric last.  -1 if it is too long. */
int vtoe_handover_describe(struct vtoe_sock *s, const char *fds, int memfd, int bell, char *out,
			   size_t cap)
{
	char local[2 * sizeof(s->local) + 1], peer[2 * sizeof(s->peer) + 1];
	int n;

	struct stat st;

	if (s->c.fd < 0 || fstat(s->c.fd, &st) < 0)
		return -1;
	vtoe_hex(local, &s->local, s->local_len);
	vtoe_hex(peer, &s->peer, s->peer_len);
	n = snprintf(out, cap, "%s,%llu,%d,%d,%u,%llu,%u,%u,%u,%d,%s,%s,%u", fds,
		     (unsigned long long)st.st_ino, memfd, bell, s->c.sid,
		     (unsigned long long)s->c.cid, s->c.side, s->c.size, s->c.spin_us, s->family,
		     local, peer, s->c.fabric);
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

static void vtoe_keep_sock(struct vtoe_handover *h, struct vtoe_sock *s)
{
	if (h->nhanded == h->caphanded) {
		int cap = h->caphanded ? 2 * h->caphanded : 16;
		struct vtoe_sock **bigger = realloc(h->handed, sizeof(*bigger) * (size_t)cap);
		if (!bigger)
			return;
		h->handed = bigger;
		h->caphanded = cap;
	}
	atomic_fetch_add(&s->ref, 1);
	h->handed[h->nhanded++] = s;
}

/* Describe every inheritable connection and let its descriptors cross the exec.  A spawn
 * (with_cloexec) describes close-on-exec ones too: its file actions may dup2 them. */
static void vtoe_handover_prepare(struct vtoe_handover *h, char *const envp[], bool with_cloexec)
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

		if (!s || s == &vtoe_internal_sock || atomic_load(&s->kind) != VTOE_KIND_CONN)
			continue;
		fl = REAL(fcntl)((int)fd, F_GETFD);
		if (fl < 0 || ((fl & FD_CLOEXEC) && !with_cloexec))
			continue;
		/* One record per connection, naming every inheritable fd number it has. */
		for (unsigned int e = 0; e < fd && !seen; e++)
			seen = vtoe_fd_peek((int)e) == s &&
			       (with_cloexec || (REAL(fcntl)((int)e, F_GETFD) & FD_CLOEXEC) == 0);
		if (seen)
			continue;
		char fds[256];
		for (unsigned int e = fd; e < vtoe_fdtab_max && fds_len + 12 < sizeof(fds); e++) {
			if (vtoe_fd_peek((int)e) != s ||
			    (!with_cloexec && (REAL(fcntl)((int)e, F_GETFD) & FD_CLOEXEC)))
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
		if (s->c.memfd >= 0)
			vtoe_keep_open(h, s->c.memfd);
		if (s->c.bell >= 0)
			vtoe_keep_open(h, s->c.bell);
		vtoe_keep_sock(h, s);
	}
	if (!h->nhanded) {
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

/*
 * In a vfork child the exec wrapper runs on the parent's memory, no fork handler has run,
 * and after a successful exec nothing of ours runs again.  So the parent, once it resumes,
 * must find the connections shared, and no reference may outlive the exec (the parent's
 * close would never release them, and its peer would wait for a FIN).  Only the new
 * environment stays behind in the parent's heap, for the exec to read.
 */
static void vtoe_handover_vfork(struct vtoe_handover *h)
{
	for (int i = 0; i < h->nhanded; i++) {
		h->handed[i]->gen = h->handed[i]->c.gen = ~0u;
		vtoe_sock_put(h->handed[i]);
	}
	h->nhanded = 0;
	h->nopened = 0; /* a child whose exec failed only exits */
	free(h->handed);
	free(h->opened);
	h->handed = NULL;
	h->opened = NULL;
}

/* After the exec failed, or the spawn returned: our fds close-on-exec again.  A child that
 * was started shares the connections it was given, as after fork. */
static void vtoe_handover_finish(struct vtoe_handover *h, bool child_started)
{
	int saved = errno;

	for (int i = 0; i < h->nopened; i++)
		REAL(fcntl)(h->opened[i], F_SETFD, FD_CLOEXEC);
	for (int i = 0; i < h->nhanded; i++) {
		if (child_started)
			h->handed[i]->gen = h->handed[i]->c.gen = ~0u;
		vtoe_sock_put(h->handed[i]);
	}
	if (h->var) {
		free(h->envp);
		free(h->var);
	}
	free(h->opened);
	free(h->handed);
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

	vtoe_handover_prepare(&h, envp, false);
	if (getpid() != atomic_load(&vtoe_pid))
		vtoe_handover_vfork(&h);
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
	vtoe_handover_finish(&h, false);
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

/* ---- spawning from inside libc ------------------------------------------------------------ */

/* Both spawn variants end here (the exported wrappers never call each other). */
static int vtoe_spawn(bool search, pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
		      const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	struct vtoe_handover h;
	int r;

	vtoe_handover_prepare(&h, envp, true);
	r = search ? REAL(posix_spawnp)(pid, file, fa, attr, argv, h.envp)
		   : REAL(posix_spawn)(pid, file, fa, attr, argv, h.envp);
	vtoe_handover_finish(&h, r == 0);
	return r;
}

VTOE_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
			    const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	return vtoe_spawn(false, pid, path, fa, attr, argv, envp);
}

VTOE_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
			     const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	return vtoe_spawn(true, pid, file, fa, attr, argv, envp);
}

/* system() and popen() take no environment: ours goes into environ for the call.  Two such
 * calls at once would see each other's, so they are serialised: a thread's system() waits
 * while another thread's command runs (libc reads environ inside, at a moment we cannot see). */
static pthread_mutex_t vtoe_environ_lock = PTHREAD_MUTEX_INITIALIZER;

static void vtoe_environ_begin(struct vtoe_handover *h, char ***saved)
{
	pthread_mutex_lock(&vtoe_environ_lock);
	vtoe_handover_prepare(h, environ, false);
	*saved = environ;
	environ = h->envp;
}

static void vtoe_environ_end(struct vtoe_handover *h, char **saved, bool child_started)
{
	environ = saved;
	vtoe_handover_finish(h, child_started);
	pthread_mutex_unlock(&vtoe_environ_lock);
}

VTOE_EXPORT int system(const char *command)
{
	struct vtoe_handover h;
	char **saved;
	int r;

	if (!command)
		return REAL(system)(command);
	vtoe_environ_begin(&h, &saved);
	r = REAL(system)(command);
	vtoe_environ_end(&h, saved, r != -1);
	return r;
}

VTOE_EXPORT FILE *popen(const char *command, const char *type)
{
	struct vtoe_handover h;
	char **saved;
	FILE *f;

	vtoe_environ_begin(&h, &saved);
	f = REAL(popen)(command, type);
	vtoe_environ_end(&h, saved, f != NULL);
	return f;
}

/* ---- the new image ------------------------------------------------------------------------ */

/* Does fd refer to the socket with this inode? */
static bool vtoe_fd_is_socket(int fd, unsigned long long ino)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) && (unsigned long long)st.st_ino == ino;
}

int vtoe_attach(int fd, uint64_t cid, uint32_t flags, struct vtoe_ctl_rep *rep, int *bell)
{
	const uint32_t want = flags & VTOE_ATTACH_BELL ? 2 : 1;
	struct vtoe_ctl_req req;
	int fds[VTOE_FD__COUNT];

	vtoe_ctl_req_init(&req, VTOE_OP_ATTACH);
	req.cid = cid;
	req.arg = flags;
	if (vtoe_ctl_rpc_fd(&req, fd, rep, fds) < 0)
		return -1;
	if (rep->event == VTOE_EV_ACK && rep->nfds == want && rep->cid == cid) {
		if (bell)
			*bell = want == 2 ? fds[1] : -1;
		else if (want == 2)
			REAL(close)(fds[1]);
		return fds[0];
	}
	for (int i = 0; i < VTOE_FD__COUNT; i++)
		if (fds[i] >= 0)
			REAL(close)(fds[i]);
	return -1;
}

/* The record's last field, its fabric: absent from an older shim's records. */
static bool vtoe_record_fabric(const char *rest, unsigned int *fabric)
{
	int n = 0;

	if (*rest == '\0')
		return true;
	return sscanf(rest, ",%u%n", fabric, &n) == 1 && rest[n] == '\0' && *fabric <= VTOE_FABRIC_VERBS;
}

/* Adopt one record's connection.  scan_low: also look for the socket among the low fds,
 * where a spawn's file actions may have put it. */
void vtoe_adopt_record(char *rec, bool scan_low)
{
	unsigned int sid, side, size, spin, fabric = VTOE_FABRIC_NONE, fds[64], nfds = 0;
	unsigned long long cid, ino;
	int memfd, bell, family, consumed = 0;
	bool attached = false;
	char fdlist[256] = "", local[300] = "", peer[300] = "";
	struct vtoe_ctl_rep rep;
	struct vtoe_sock *s;

	if (sscanf(rec, "%255[0-9+],%llu,%d,%d,%u,%llu,%u,%u,%u,%d,%299[0-9a-f],%299[0-9a-f]%n",
		   fdlist, &ino, &memfd, &bell, &sid, &cid, &side, &size, &spin, &family, local,
		   peer, &consumed) < 12 || !vtoe_record_fabric(rec + consumed, &fabric)) {
		vtoe_warn("VTOE_INHERIT: malformed record ignored");
		return;
	}
	/* Only an fd that still is the socket: an inherited number may have been reused. */
	for (char *p = fdlist, *end; *p && nfds < 64; p = *end ? end + 1 : end) {
		fds[nfds] = (unsigned int)strtoul(p, &end, 10);
		if (vtoe_fd_is_socket((int)fds[nfds], ino))
			nfds++;
	}
	for (unsigned int fd = 0; scan_low && fd < VTOE_ADOPT_SCAN && nfds < 64; fd++) {
		bool named = false;

		for (unsigned int i = 0; i < nfds && !named; i++)
			named = fds[i] == fd;
		if (!named && (int)fd != memfd && (int)fd != bell && vtoe_fd_is_socket((int)fd, ino))
			fds[nfds++] = fd;
	}
	/* A connection without a bell (rung through the agent) is a shm one: its region comes
	 * from the agent too. */
	if (!nfds || (memfd >= 0 && REAL(fcntl)(memfd, F_GETFD) < 0) ||
	    (bell >= 0 ? REAL(fcntl)(bell, F_GETFD) < 0 : memfd >= 0)) {
		/* Its socket did not come along: the region and doorbell are no use here. */
		vtoe_dbg("VTOE_INHERIT: connection cid %llu not inherited here", cid);
		if (memfd >= 0 && memfd != bell && REAL(fcntl)(memfd, F_GETFD) >= 0)
			REAL(close)(memfd);
		if (bell >= 0 && REAL(fcntl)(bell, F_GETFD) >= 0)
			REAL(close)(bell);
		return;
	}
	memset(&rep, 0, sizeof(rep));
	rep.side = side;
	rep.ring_size = size;
	rep.cid = cid;
	rep.fabric = fabric;
	if (memfd < 0) {
		struct vtoe_ctl_rep got;

		memfd = vtoe_attach((int)fds[0], cid, 0, &got, NULL);
		if (memfd >= 0 && (got.side != side || got.ring_size != size)) {
			REAL(close)(memfd);
			memfd = -1;
		}
		if (memfd < 0) {
			vtoe_warn("cid %llu: no region from the agent for an inherited connection (is "
				  "the agent running?): fds %s are not offloaded here", cid, fdlist);
			if (bell >= 0)
				REAL(close)(bell);
			return;
		}
		attached = true;
		rep.fabric = got.fabric;
	}
	s = vtoe_sock_new(VTOE_KIND_CANDIDATE, family);
	if (!s || vtoe_conn_map(&s->c, memfd, &rep) < 0) {
		vtoe_warn("VTOE_INHERIT: the region of cid %llu cannot be mapped", cid);
		vtoe_sock_put(s);
		REAL(close)(memfd); /* ours, not the application's */
		if (bell >= 0)
			REAL(close)(bell);
		return;
	}
	s->local_len = (socklen_t)vtoe_unhex(&s->local, sizeof(s->local), local);
	s->peer_len = (socklen_t)vtoe_unhex(&s->peer, sizeof(s->peer), peer);
	s->c.sid = sid;
	s->c.spin_us = spin;
	s->c.fabric = rep.fabric;
	if (attached) {
		REAL(close)(memfd);
	} else {
		s->c.memfd = vtoe_fd_move_high(memfd);
		vtoe_fd_set_internal(s->c.memfd, true);
	}
	s->c.fd = (int)fds[0];
	if (bell >= 0) {
		s->c.bell = vtoe_fd_move_high(bell);
		vtoe_fd_set_internal(s->c.bell, true);
	}
	atomic_store(&s->c.nonblock, (REAL(fcntl)((int)fds[0], F_GETFL) & O_NONBLOCK) != 0);
	/* Shared, as after fork: the image that exec'd may not have been the only holder. */
	s->gen = s->c.gen = ~0u;
	/* It may sit in epoll sets inherited along with it, which only the kernel answers. */
	atomic_fetch_or(&s->c.flags, VTOE_CF_KWATCH);
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
		vtoe_adopt_record(rec, true);
	free(copy);
}
