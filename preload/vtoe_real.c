/*
 * vtoe_real.c - find the real libc functions behind our wrappers, once, and set the library up.
 *
 * dlsym() may itself call into libc (and so into our wrappers) while it resolves; a thread-local
 * flag routes such calls to raw system calls instead of recursing into the resolver.
 */
#include "vtoe.h"
#include "vtoe_agent_path.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct vtoe_real_fns vtoe_real_tab;
atomic_int vtoe_real_ready;
struct vtoe_config vtoe_cfg = { .offload = true, .agent_timeout_ms = 5000, .internal_fd_base = 100,
				 .poll_kernel_us = 1000, .peer_bells = true };
atomic_uint vtoe_fork_gen;
atomic_int vtoe_pid;

static pthread_once_t vtoe_once = PTHREAD_ONCE_INIT;
static __thread int vtoe_resolving;

enum vtoe_fcntl_arg vtoe_fcntl_arg_kind(int cmd)
{
	switch (cmd) {
	case F_GETFD:
	case F_GETFL:
	case F_GETOWN:
	case F_GETSIG:
	case F_GETLEASE:
	case F_GETPIPE_SZ:
	case F_GET_SEALS:
		return VTOE_FCNTL_NONE;
	case F_DUPFD:
	case F_DUPFD_CLOEXEC:
	case F_SETFD:
	case F_SETFL:
	case F_SETOWN:
	case F_SETSIG:
	case F_SETLEASE:
	case F_NOTIFY:
	case F_SETPIPE_SZ:
	case F_ADD_SEALS:
		return VTOE_FCNTL_INT;
	default:
		return VTOE_FCNTL_PTR; /* locks, F_[GS]ETOWN_EX, hints: all take a pointer */
	}
}

/* Raw system-call stand-ins, used only by a thread that is inside the resolver. */
static int raw_socket(int d, int t, int p) { return vtoe_syscall(SYS_socket, d, t, p); }
static int raw_connect(int fd, const struct sockaddr *a, socklen_t l) { return vtoe_syscall(SYS_connect, fd, a, l); }
static int raw_listen(int fd, int b) { return vtoe_syscall(SYS_listen, fd, b); }
static int raw_accept4(int fd, struct sockaddr *a, socklen_t *l, int f) { return vtoe_syscall(SYS_accept4, fd, a, l, f); }
static int raw_accept(int fd, struct sockaddr *a, socklen_t *l) { return raw_accept4(fd, a, l, 0); }
static int raw_close(int fd) { return vtoe_syscall(SYS_close, fd); }
static int raw_shutdown(int fd, int how) { return vtoe_syscall(SYS_shutdown, fd, how); }
static ssize_t raw_read(int fd, void *b, size_t n) { return vtoe_syscall(SYS_read, fd, b, n); }
static ssize_t raw_write(int fd, const void *b, size_t n) { return vtoe_syscall(SYS_write, fd, b, n); }
static ssize_t raw_readv(int fd, const struct iovec *v, int c) { return vtoe_syscall(SYS_readv, fd, v, c); }
static ssize_t raw_writev(int fd, const struct iovec *v, int c) { return vtoe_syscall(SYS_writev, fd, v, c); }
static ssize_t raw_recvfrom(int fd, void *b, size_t n, int f, struct sockaddr *a, socklen_t *l)
{
	return vtoe_syscall(SYS_recvfrom, fd, b, n, f, a, l);
}
static ssize_t raw_recv(int fd, void *b, size_t n, int f) { return raw_recvfrom(fd, b, n, f, NULL, NULL); }
static ssize_t raw_recvmsg(int fd, struct msghdr *m, int f) { return vtoe_syscall(SYS_recvmsg, fd, m, f); }
static ssize_t raw_sendto(int fd, const void *b, size_t n, int f, const struct sockaddr *a, socklen_t l)
{
	return vtoe_syscall(SYS_sendto, fd, b, n, f, a, l);
}
static ssize_t raw_send(int fd, const void *b, size_t n, int f) { return raw_sendto(fd, b, n, f, NULL, 0); }
static ssize_t raw_sendmsg(int fd, const struct msghdr *m, int f) { return vtoe_syscall(SYS_sendmsg, fd, m, f); }
static int raw_sendmmsg(int fd, struct mmsghdr *v, unsigned int n, int f) { return vtoe_syscall(SYS_sendmmsg, fd, v, n, f); }
static int raw_recvmmsg(int fd, struct mmsghdr *v, unsigned int n, int f, struct timespec *t)
{
	return vtoe_syscall(SYS_recvmmsg, fd, v, n, f, t);
}
static int raw_getsockname(int fd, struct sockaddr *a, socklen_t *l) { return vtoe_syscall(SYS_getsockname, fd, a, l); }
static int raw_getpeername(int fd, struct sockaddr *a, socklen_t *l) { return vtoe_syscall(SYS_getpeername, fd, a, l); }
static int raw_getsockopt(int fd, int lv, int n, void *v, socklen_t *l) { return vtoe_syscall(SYS_getsockopt, fd, lv, n, v, l); }
static int raw_setsockopt(int fd, int lv, int n, const void *v, socklen_t l) { return vtoe_syscall(SYS_setsockopt, fd, lv, n, v, l); }
static int raw_fcntl(int fd, int cmd, ...)
{
	unsigned long arg = 0;
	va_list ap;

	va_start(ap, cmd);
	switch (vtoe_fcntl_arg_kind(cmd)) {
	case VTOE_FCNTL_INT:
		arg = (unsigned long)va_arg(ap, int);
		break;
	case VTOE_FCNTL_PTR:
		arg = (unsigned long)va_arg(ap, void *);
		break;
	case VTOE_FCNTL_NONE:
		break;
	}
	va_end(ap);
	return vtoe_syscall(SYS_fcntl, fd, cmd, arg);
}
static int raw_ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	return vtoe_syscall(SYS_ioctl, fd, req, arg);
}
static int raw_dup(int fd) { return vtoe_syscall(SYS_dup, fd); }
static int raw_dup3(int o, int n, int f) { return vtoe_syscall(SYS_dup3, o, n, f); }
static int raw_dup2(int o, int n)
{
	if (o == n) /* dup3 refuses this case; dup2 checks validity */
		return vtoe_syscall(SYS_fcntl, o, F_GETFD) < 0 ? -1 : n;
	return raw_dup3(o, n, 0);
}
static ssize_t raw_sendfile(int o, int i, off_t *off, size_t n) { return vtoe_syscall(SYS_sendfile, o, i, off, n); }
static ssize_t raw_sendfile64(int o, int i, off64_t *off, size_t n) { return vtoe_syscall(SYS_sendfile, o, i, off, n); }
static int raw_execve(const char *p, char *const a[], char *const e[]) { return vtoe_syscall(SYS_execve, p, a, e); }
static int raw_execvpe(const char *p, char *const a[], char *const e[])
{
	(void)p, (void)a, (void)e;
	errno = ENOSYS; /* only while the real symbols are being resolved */
	return -1;
}
static int raw_fexecve(int fd, char *const a[], char *const e[])
{
	return vtoe_syscall(SYS_execveat, fd, "", a, e, AT_EMPTY_PATH);
}
/* Only while the real symbols are being resolved: no process is started then. */
static int raw_posix_spawn(pid_t *p, const char *f, const posix_spawn_file_actions_t *fa,
			   const posix_spawnattr_t *at, char *const a[], char *const e[])
{
	(void)p, (void)f, (void)fa, (void)at, (void)a, (void)e;
	return ENOSYS;
}
static int raw_system(const char *c)
{
	(void)c;
	errno = ENOSYS;
	return -1;
}
static FILE *raw_popen(const char *c, const char *t)
{
	(void)c, (void)t;
	errno = ENOSYS;
	return NULL;
}
static FILE *raw_fdopen(int fd, const char *m)
{
	(void)fd, (void)m;
	errno = ENOSYS;
	return NULL;
}
static int raw_fileno(FILE *f)
{
	(void)f;
	errno = EBADF;
	return -1;
}
static int raw_epoll_ctl(int e, int op, int fd, struct epoll_event *ev) { return vtoe_syscall(SYS_epoll_ctl, e, op, fd, ev); }
static int raw_ppoll(struct pollfd *f, nfds_t n, const struct timespec *t, const sigset_t *m)
{
	return vtoe_syscall(SYS_ppoll, f, n, t, m, _NSIG / 8);
}
static int raw_pselect(int n, fd_set *r, fd_set *w, fd_set *e, const struct timespec *t,
		       const sigset_t *m)
{
	struct { const sigset_t *ss; size_t len; } data = { m, _NSIG / 8 };
	struct timespec copy, *tp = NULL;

	if (t) {
		copy = *t;
		tp = &copy;
	}
	return vtoe_syscall(SYS_pselect6, n, r, w, e, tp, &data);
}
static int raw_select(int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	struct timespec ts;
	int res;

	if (!tv)
		return raw_pselect(n, r, w, e, NULL, NULL);
	ts.tv_sec = tv->tv_sec;
	ts.tv_nsec = tv->tv_usec * 1000;
	res = vtoe_syscall(SYS_pselect6, n, r, w, e, &ts, NULL);
	tv->tv_sec = ts.tv_sec;
	tv->tv_usec = ts.tv_nsec / 1000;
	return res;
}
static int raw_epoll_create1(int fl) { return vtoe_syscall(SYS_epoll_create1, fl); }
static int raw_epoll_pwait(int e, struct epoll_event *ev, int n, int ms, const sigset_t *m)
{
	return vtoe_syscall(SYS_epoll_pwait, e, ev, n, ms, m, _NSIG / 8);
}
static int raw_epoll_pwait2(int e, struct epoll_event *ev, int n, const struct timespec *t,
			    const sigset_t *m)
{
	return vtoe_syscall(SYS_epoll_pwait2, e, ev, n, t, m, _NSIG / 8);
}
static ssize_t raw_splice(int i, off64_t *oi, int o, off64_t *oo, size_t n, unsigned int f)
{
	return vtoe_syscall(SYS_splice, i, oi, o, oo, n, f);
}
static ssize_t raw_read_chk(int fd, void *b, size_t n, size_t bl)
{
	if (n > bl)
		abort();
	return raw_read(fd, b, n);
}
static ssize_t raw_recv_chk(int fd, void *b, size_t n, size_t bl, int f)
{
	if (n > bl)
		abort();
	return raw_recv(fd, b, n, f);
}
static ssize_t raw_recvfrom_chk(int fd, void *b, size_t n, size_t bl, int f, struct sockaddr *a,
				socklen_t *l)
{
	if (n > bl)
		abort();
	return raw_recvfrom(fd, b, n, f, a, l);
}

static int raw_openat(int dir, const char *path, int flags, ...)
{
	mode_t mode;

	VTOE_OPEN_MODE(flags, mode);
	return vtoe_syscall(SYS_openat, dir, path, flags, mode);
}
static int raw_open(const char *path, int flags, ...)
{
	mode_t mode;

	VTOE_OPEN_MODE(flags, mode);
	return vtoe_syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}
static int raw_open_2(const char *path, int flags) { return raw_open(path, flags); }
static int raw_openat_2(int dir, const char *path, int flags)
{
	return raw_openat(dir, path, flags);
}
static int raw_pipe2(int fds[2], int flags) { return vtoe_syscall(SYS_pipe2, fds, flags); }
static int raw_pipe(int fds[2]) { return raw_pipe2(fds, 0); }
static int raw_socketpair(int d, int t, int p, int fds[2])
{
	return vtoe_syscall(SYS_socketpair, d, t, p, fds);
}

static const struct vtoe_real_fns vtoe_raw_tab = {
	.open = raw_open, .open64 = raw_open, .openat = raw_openat, .openat64 = raw_openat,
	.open_2 = raw_open_2, .open64_2 = raw_open_2, .openat_2 = raw_openat_2,
	.openat64_2 = raw_openat_2, .pipe = raw_pipe, .pipe2 = raw_pipe2,
	.socketpair = raw_socketpair,
	.socket = raw_socket, .connect = raw_connect, .listen = raw_listen,
	.accept = raw_accept, .accept4 = raw_accept4, .close = raw_close,
	.shutdown = raw_shutdown, .read = raw_read, .write = raw_write,
	.readv = raw_readv, .writev = raw_writev, .recv = raw_recv,
	.recvfrom = raw_recvfrom, .recvmsg = raw_recvmsg, .send = raw_send,
	.sendto = raw_sendto, .sendmsg = raw_sendmsg, .sendmmsg = raw_sendmmsg,
	.recvmmsg = raw_recvmmsg, .getsockname = raw_getsockname,
	.getpeername = raw_getpeername, .getsockopt = raw_getsockopt,
	.setsockopt = raw_setsockopt, .fcntl = raw_fcntl, .fcntl64 = raw_fcntl,
	.ioctl = raw_ioctl, .dup = raw_dup, .dup2 = raw_dup2, .dup3 = raw_dup3,
	.sendfile = raw_sendfile, .sendfile64 = raw_sendfile64, .splice = raw_splice, .execve = raw_execve, .execvpe = raw_execvpe,
	.fexecve = raw_fexecve, .posix_spawn = raw_posix_spawn, .posix_spawnp = raw_posix_spawn,
	.system = raw_system, .popen = raw_popen, .fdopen = raw_fdopen, .fileno = raw_fileno,
	.fileno_unlocked = raw_fileno, .epoll_ctl = raw_epoll_ctl, .read_chk = raw_read_chk,
	.recv_chk = raw_recv_chk, .recvfrom_chk = raw_recvfrom_chk, .ppoll = raw_ppoll,
	.epoll_create1 = raw_epoll_create1, .epoll_pwait = raw_epoll_pwait,
	.epoll_pwait2 = raw_epoll_pwait2, .select = raw_select, .pselect = raw_pselect,
};

static void *vtoe_sym(const char *name, bool required)
{
	void *p = dlsym(RTLD_NEXT, name);

	if (!p && required) {
		static const char msg[] = "vtoe: a required libc symbol is missing: ";
		raw_write(2, msg, sizeof(msg) - 1);
		raw_write(2, name, strlen(name));
		raw_write(2, "\n", 1);
		abort();
	}
	return p;
}

/* Set to one of the words the agent's config table accepts for false? */
static bool vtoe_env_false(const char *name)
{
	const char *v = getenv(name);

	return v && (strcmp(v, "0") == 0 || strcasecmp(v, "false") == 0 ||
		     strcasecmp(v, "no") == 0 || strcasecmp(v, "off") == 0);
}

static void vtoe_config_read(void)
{
	const char *v;
	struct rlimit rl;

	if (vtoe_env_false("VTOE_OFFLOAD"))
		vtoe_cfg.offload = false;
	if (vtoe_env_false("VTOE_PEER_BELLS"))
		vtoe_cfg.peer_bells = false;
	v = getenv("VTOE_AGENT_TIMEOUT_MS");
	if (v && *v) {
		long ms = strtol(v, NULL, 10);
		if (ms > 0 && ms < 3600 * 1000)
			vtoe_cfg.agent_timeout_ms = (int)ms;
	}
	v = getenv("VTOE_POLL_KERNEL_US");
	if (v && *v) {
		long us = strtol(v, NULL, 10);
		if (us >= 0 && us <= 1000000)
			vtoe_cfg.poll_kernel_us = (uint32_t)us;
	}
	v = getenv("VTOE_AGENT_SOCKET");
	if (v && *v && strlen(v) < sizeof(vtoe_cfg.agent_path))
		strcpy(vtoe_cfg.agent_path, v);
	else
		vtoe_agent_path_default(vtoe_cfg.agent_path, sizeof(vtoe_cfg.agent_path));

	/* Internal fds go high, clear of the small numbers programs expect to get, but not so
	 * high that the kernel has to grow the fd table to millions of entries. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		rlim_t base = rl.rlim_cur / 2;
		if (base > 4096)
			base = 4096;
		if (base < 100)
			base = rl.rlim_cur > 100 ? 100 : 3;
		vtoe_cfg.internal_fd_base = (int)base;
	}
}

static void vtoe_atfork_parent(void)
{
	atomic_fetch_add(&vtoe_fork_gen, 1);
	vtoe_ep_atfork_parent();
}

static void vtoe_atfork_child(void)
{
	atomic_fetch_add(&vtoe_fork_gen, 1);
	atomic_store(&vtoe_pid, (int)getpid());
	vtoe_ep_atfork_child();
	vtoe_fdtab_atfork_child();
	vtoe_rcu_atfork_child();
	vtoe_ctl_atfork_child();
	vtoe_park_atfork_child();
	vtoe_held_atfork_child();
}

static void vtoe_resolve(void)
{
	struct vtoe_real_fns *r = &vtoe_real_tab;

	vtoe_resolving = 1;
#define SYM(field, name) r->field = vtoe_sym(name, true)
	SYM(socket, "socket");
	SYM(connect, "connect");
	SYM(listen, "listen");
	SYM(accept, "accept");
	SYM(accept4, "accept4");
	SYM(close, "close");
	SYM(shutdown, "shutdown");
	SYM(read, "read");
	SYM(write, "write");
	SYM(readv, "readv");
	SYM(writev, "writev");
	SYM(recv, "recv");
	SYM(recvfrom, "recvfrom");
	SYM(recvmsg, "recvmsg");
	SYM(send, "send");
	SYM(sendto, "sendto");
	SYM(sendmsg, "sendmsg");
	SYM(sendmmsg, "sendmmsg");
	SYM(recvmmsg, "recvmmsg");
	SYM(getsockname, "getsockname");
	SYM(getpeername, "getpeername");
	SYM(getsockopt, "getsockopt");
	SYM(setsockopt, "setsockopt");
	SYM(fcntl, "fcntl");
	SYM(ioctl, "ioctl");
	SYM(dup, "dup");
	SYM(dup2, "dup2");
	SYM(dup3, "dup3");
	SYM(sendfile, "sendfile");
	SYM(splice, "splice");
	SYM(execve, "execve");
	SYM(execvpe, "execvpe");
	SYM(fexecve, "fexecve");
	SYM(posix_spawn, "posix_spawn");
	SYM(posix_spawnp, "posix_spawnp");
	SYM(system, "system");
	SYM(popen, "popen");
	SYM(fdopen, "fdopen");
	SYM(fileno, "fileno");
	SYM(fileno_unlocked, "fileno_unlocked");
	SYM(epoll_ctl, "epoll_ctl");
	SYM(read_chk, "__read_chk");
	SYM(recv_chk, "__recv_chk");
	SYM(recvfrom_chk, "__recvfrom_chk");
	SYM(ppoll, "ppoll");
	SYM(epoll_create1, "epoll_create1");
	SYM(epoll_pwait, "epoll_pwait");
	SYM(select, "select");
	SYM(pselect, "pselect");
	SYM(open, "open");
	SYM(open64, "open64");
	SYM(openat, "openat");
	SYM(openat64, "openat64");
	SYM(open_2, "__open_2");
	SYM(open64_2, "__open64_2");
	SYM(openat_2, "__openat_2");
	SYM(openat64_2, "__openat64_2");
	SYM(pipe, "pipe");
	SYM(pipe2, "pipe2");
	SYM(socketpair, "socketpair");
#undef SYM
	r->epoll_pwait2 = vtoe_sym("epoll_pwait2", false); /* glibc 2.35 */
	if (!r->epoll_pwait2)
		r->epoll_pwait2 = raw_epoll_pwait2;
	/* Older C libraries have no separate 64-bit names; on LP64 they are the same calls. */
	r->fcntl64 = vtoe_sym("fcntl64", false);
	if (!r->fcntl64)
		r->fcntl64 = r->fcntl;
	r->sendfile64 = vtoe_sym("sendfile64", false);
	if (!r->sendfile64)
		r->sendfile64 = (ssize_t(*)(int, int, off64_t *, size_t))r->sendfile;

	atomic_store(&vtoe_pid, (int)getpid());
	vtoe_config_read();
	vtoe_fdtab_init();
	vtoe_log_init();
	pthread_atfork(vtoe_ep_atfork_prepare, vtoe_atfork_parent, vtoe_atfork_child);
	vtoe_resolving = 0;
	atomic_store_explicit(&vtoe_real_ready, 1, memory_order_release);
	vtoe_dbg("loaded: offload=%d agent=%s timeout=%dms", vtoe_cfg.offload,
		 vtoe_cfg.agent_path, vtoe_cfg.agent_timeout_ms);
}

const struct vtoe_real_fns *vtoe_real_slow(void)
{
	if (vtoe_resolving)
		return &vtoe_raw_tab;
	pthread_once(&vtoe_once, vtoe_resolve);
	return &vtoe_real_tab;
}

__attribute__((constructor)) static void vtoe_ctor(void)
{
	(void)vtoe_real();
	vtoe_exec_adopt();
	vtoe_stdio_adopt();
}
