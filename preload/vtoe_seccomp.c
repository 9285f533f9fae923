/*
 * vtoe_seccomp.c - the library's own system calls under the program's seccomp filter.
 *
 * A program may confine itself with seccomp: sshd's privilege-separated child, tor, chrony,
 * vsftpd.  The kernel then judges every call the process makes, the library's included, and a
 * filter typically kills the process at the first call it does not list.  The program lists
 * what it calls itself (read, write, poll), not what the library adds (a doorbell's sendto,
 * ppoll, the agent channel's sendmsg).  So the library keeps a copy of each filter the program
 * installs (prctl(PR_SET_SECCOMP) or seccomp(2) through syscall()), runs it as the kernel does
 * before each call of its own, and makes that call only if it is allowed, else an equivalent
 * the filter allows (poll or pselect6 for ppoll, epoll_wait for epoll_pwait, write for a
 * doorbell's send, read for its drain), else none: the agent then counts as gone, and an
 * unmapping as leaked.
 *
 * Filters installed before exec (systemd's SystemCallFilter=, a sandboxing parent) are not
 * seen: nothing in the new image can ask the kernel for them without risking the call itself;
 * nor are those a program installs with a system call instruction of its own (Chromium).
 */
#include "vtoe.h"
#include "vtoe_bpf.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#if defined(__x86_64__)
#define VTOE_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define VTOE_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "vtoe_seccomp.c: add this architecture's AUDIT_ARCH and system-call instruction"
#endif

/* One installed filter (len 0: strict mode), newest first; never freed (the kernel keeps them
 * for the process's life too). */
struct vtoe_filter {
	const struct vtoe_filter *prev;
	unsigned short len;
	struct sock_filter insns[];
};

static const struct vtoe_filter *_Atomic vtoe_filters;
static pthread_mutex_t vtoe_filter_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool vtoe_sandbox_blind; /* a filter we could not copy: assume it allows nothing */
atomic_bool vtoe_sandbox_on;

/* The kernel's entry points that poll and epoll may be swapped for, saved at the swap. */
static int (*vtoe_sb_real_ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
static int (*vtoe_sb_real_epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
static int (*vtoe_sb_real_epoll_pwait2)(int, struct epoll_event *, int, const struct timespec *,
					const sigset_t *);

long vtoe_syscall6(long nr, long a, long b, long c, long d, long e, long f)
{
	long ret;
#if defined(__x86_64__)
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
#else
	register long x8 __asm__("x8") = nr;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	register long x4 __asm__("x4") = e;
	register long x5 __asm__("x5") = f;

	__asm__ volatile("svc 0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
			 : "memory");
	ret = x0;
#endif
	if (ret < 0 && ret > -4096) {
		errno = (int)-ret;
		return -1;
	}
	return ret;
}

/* Strict mode allows read, write, exit and sigreturn, and kills for anything else. */
static uint32_t vtoe_strict_verdict(int nr)
{
	return nr == SYS_read || nr == SYS_write || nr == SYS_exit || nr == SYS_rt_sigreturn
		       ? SECCOMP_RET_ALLOW
		       : SECCOMP_RET_KILL_THREAD;
}

/* The most restrictive action of every filter, as the kernel takes it. */
static uint32_t vtoe_filters_verdict(const struct vtoe_filter *top, const struct seccomp_data *d)
{
	uint32_t ret = SECCOMP_RET_ALLOW;

	for (const struct vtoe_filter *f = top; f; f = f->prev) {
		uint32_t r = f->len ? vtoe_bpf_run(f->insns, f->len, d) : vtoe_strict_verdict(d->nr);

		if ((int32_t)(r & SECCOMP_RET_ACTION_FULL) < (int32_t)(ret & SECCOMP_RET_ACTION_FULL))
			ret = r;
	}
	return ret;
}

static bool vtoe_filters_allow(const struct vtoe_filter *top, long nr, const long args[6])
{
	struct seccomp_data d = { .nr = (int)nr, .arch = VTOE_AUDIT_ARCH };
	uint32_t action;

	for (int i = 0; i < 6; i++)
		d.args[i] = (uint64_t)args[i];
	action = vtoe_filters_verdict(top, &d) & SECCOMP_RET_ACTION_FULL;
	/* an errno, a trap, a tracer's say: the call would not do what we make it for */
	return action == SECCOMP_RET_ALLOW || action == SECCOMP_RET_LOG;
}

bool vtoe_sandbox_allows6(long nr, long a, long b, long c, long d, long e, long f)
{
	const long args[6] = { a, b, c, d, e, f };

	if (atomic_load_explicit(&vtoe_sandbox_blind, memory_order_relaxed))
		return false;
	return vtoe_filters_allow(atomic_load_explicit(&vtoe_filters, memory_order_acquire), nr, args);
}

/* ------------------------------------------------------------------------------------------ */
/* Equivalents for the calls the library makes for the program                                */
/* ------------------------------------------------------------------------------------------ */

static int vtoe_timespec_ms(const struct timespec *ts)
{
	long long ms;

	if (!ts)
		return -1;
	ms = (long long)ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000; /* never early */
	return ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}

/* poll through pselect6, for a filter that allows only select (-2: not allowed either).  The
 * sets are the kernel's bitmaps, as long as the highest fd needs (our fds live high, past
 * FD_SETSIZE).  A hang-up or an error reads as readable, as select reports them; RDHUP is
 * not seen. */
static int vtoe_sb_poll_by_select(struct pollfd *fds, nfds_t n, const struct timespec *ts)
{
	enum { BITS = 8 * sizeof(unsigned long), STACK_WORDS = 8192 / BITS };
	struct timespec left = ts ? *ts : (struct timespec){ 0, 0 };
	unsigned long stack_sets[3 * STACK_WORDS], *sets = stack_sets, *set[3];
	int maxfd = -1, r, ready = 0;
	size_t words;

	for (nfds_t i = 0; i < n; i++)
		maxfd = fds[i].fd > maxfd ? fds[i].fd : maxfd;
	if (!VTOE_MAY(SYS_pselect6, maxfd + 1, NULL, NULL, NULL, ts ? &left : NULL, NULL))
		return -2;
	words = maxfd < 0 ? 1 : (size_t)maxfd / BITS + 1;
	if (words > STACK_WORDS && !(sets = calloc(3 * words, sizeof(*sets)))) {
		errno = ENOMEM;
		return -1;
	}
	if (sets == stack_sets)
		memset(stack_sets, 0, 3 * words * sizeof(*sets));
	for (int k = 0; k < 3; k++)
		set[k] = sets + (size_t)k * words;
	for (nfds_t i = 0; i < n; i++) {
		int fd = fds[i].fd;
		short want[3] = { POLLIN, POLLOUT, POLLPRI };

		for (int k = 0; fd >= 0 && k < 3; k++)
			if (fds[i].events & want[k])
				set[k][fd / BITS] |= 1ul << (fd % BITS);
	}
	r = (int)vtoe_syscall(SYS_pselect6, maxfd + 1, set[0], set[1], set[2], ts ? &left : NULL, NULL);
	for (nfds_t i = 0; r >= 0 && i < n; i++) {
		int fd = fds[i].fd;
		short got[3] = { POLLIN, POLLOUT, POLLPRI };

		fds[i].revents = 0;
		for (int k = 0; fd >= 0 && k < 3; k++)
			if (set[k][fd / BITS] & (1ul << (fd % BITS)))
				fds[i].revents |= got[k];
		ready += fds[i].revents != 0;
	}
	if (sets != stack_sets)
		free(sets);
	return r < 0 ? r : ready;
}

static int vtoe_sb_ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask)
{
	int r;

	if (mask || VTOE_MAY(SYS_ppoll, fds, n, ts, mask, sizeof(sigset_t)))
		return vtoe_sb_real_ppoll(fds, n, ts, mask); /* allowed, or the program's own call */
	if (VTOE_MAY(SYS_poll, fds, n, vtoe_timespec_ms(ts)))
		return (int)vtoe_syscall(SYS_poll, fds, n, vtoe_timespec_ms(ts));
	if ((r = vtoe_sb_poll_by_select(fds, n, ts)) != -2)
		return r;
	return vtoe_sb_real_ppoll(fds, n, ts, mask); /* nothing else: the kernel's verdict */
}

static int vtoe_sb_epoll_pwait(int epfd, struct epoll_event *ev, int max, int ms, const sigset_t *mask)
{
	if (!mask && !VTOE_MAY(SYS_epoll_pwait, epfd, ev, max, ms, mask, sizeof(sigset_t)) &&
	    VTOE_MAY(SYS_epoll_wait, epfd, ev, max, ms))
		return (int)vtoe_syscall(SYS_epoll_wait, epfd, ev, max, ms);
	return vtoe_sb_real_epoll_pwait(epfd, ev, max, ms, mask);
}

static int vtoe_sb_epoll_pwait2(int epfd, struct epoll_event *ev, int max, const struct timespec *ts,
				const sigset_t *mask)
{
	if (!VTOE_MAY(SYS_epoll_pwait2, epfd, ev, max, ts, mask, sizeof(sigset_t)))
		return vtoe_sb_epoll_pwait(epfd, ev, max, vtoe_timespec_ms(ts), mask);
	return vtoe_sb_real_epoll_pwait2(epfd, ev, max, ts, mask);
}

/* May the library ask the kernel about a descriptor (ppoll, poll or pselect6)? */
static bool vtoe_sb_can_poll(void)
{
	return VTOE_MAY(SYS_ppoll, NULL, 1, NULL, NULL, sizeof(sigset_t)) || VTOE_MAY(SYS_poll, NULL, 1, 0) ||
	       VTOE_MAY(SYS_pselect6, 1, NULL, NULL, NULL, NULL, NULL);
}

/* Wakes a peer: send(MSG_DONTWAIT | MSG_NOSIGNAL), or under a filter that allows write but not
 * sendto, a write of the one byte, after a poll (if allowed) that finds room and no hang-up (a
 * byte never blocks a socket that polls writable, and a doorbell holds at most a few).  -1
 * EAGAIN: neither is allowed, or more than a byte (a filler: kernel watchers only). */
ssize_t vtoe_bell_send(int fd, const void *buf, size_t n)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int flags = MSG_DONTWAIT | MSG_NOSIGNAL;

	if (vtoe_likely(!vtoe_sandboxed()) || VTOE_MAY(SYS_sendto, fd, buf, n, flags, NULL, 0))
		return REAL(send)(fd, buf, n, flags);
	if (n != 1 || !VTOE_MAY(SYS_write, fd, buf, n) ||
	    (vtoe_sb_can_poll() && (vtoe_kpoll(&p, 1, 0) != 1 || (p.revents & (POLLHUP | POLLERR))))) {
		errno = p.revents & (POLLHUP | POLLERR) ? EPIPE : EAGAIN;
		return -1;
	}
	return REAL(write)(fd, buf, n);
}

/* recv(MSG_DONTWAIT), or under a filter that allows read but not recvfrom, a read once a poll
 * finds the socket readable; with no poll allowed, a read only of bytes that are owed (due
 * from a producer, or the end of the stream), which cannot block for long. */
ssize_t vtoe_bell_recv(int fd, void *buf, size_t n, bool owed)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (vtoe_likely(!vtoe_sandboxed()) || VTOE_MAY(SYS_recvfrom, fd, buf, n, MSG_DONTWAIT, NULL, NULL))
		return REAL(recv)(fd, buf, n, MSG_DONTWAIT);
	if (!VTOE_MAY(SYS_read, fd, buf, n) ||
	    (vtoe_sb_can_poll() ? vtoe_kpoll(&p, 1, 0) != 1 : !owed)) {
		errno = EAGAIN;
		return -1;
	}
	return REAL(read)(fd, buf, n);
}

/* ------------------------------------------------------------------------------------------ */
/* Following the program into its sandbox                                                     */
/* ------------------------------------------------------------------------------------------ */

static struct vtoe_filter *vtoe_filter_copy(const struct sock_fprog *prog, bool strict)
{
	struct vtoe_filter *f;
	size_t len = strict || !prog ? 0 : prog->len;

	if (!strict && (!prog || !prog->filter || !len || len > BPF_MAXINSNS))
		return NULL;
	f = malloc(sizeof(*f) + len * sizeof(f->insns[0]));
	if (!f)
		return NULL;
	f->len = (unsigned short)len;
	if (len)
		memcpy(f->insns, prog->filter, len * sizeof(f->insns[0]));
	return f;
}

static void vtoe_swap_entry(void **slot, void **saved, void *with)
{
	if (!*saved)
		*saved = __atomic_load_n(slot, __ATOMIC_RELAXED);
	__atomic_store_n(slot, with, __ATOMIC_RELEASE);
}

/* Would the filters from top allow what the agent channel takes: a message each way with
 * descriptors, the connect of a new channel, the agent's credentials? */
static bool vtoe_channel_allowed(const struct vtoe_filter *top)
{
	static const long none[6];
	const long unix_socket[6] = { AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0 };
	const long peercred[6] = { -1, SOL_SOCKET, SO_PEERCRED };

	if (!top)
		return false; /* a filter we could not copy */
	return vtoe_filters_allow(top, SYS_sendmsg, none) && vtoe_filters_allow(top, SYS_recvmsg, none) &&
	       vtoe_filters_allow(top, SYS_socket, unix_socket) && vtoe_filters_allow(top, SYS_connect, none) &&
	       vtoe_filters_allow(top, SYS_getsockopt, peercred);
}

/*
 * Before the kernel takes a filter: if it (stacked on those in force) will forbid the agent
 * channel, connections that ring their peer through the agent take their bells now, while
 * they still can.  Returns the copy to publish once the kernel took it (NULL: not copied).
 */
static struct vtoe_filter *vtoe_sandbox_prepare(bool strict, const struct sock_fprog *prog)
{
	int saved = errno;
	struct vtoe_filter *f = vtoe_filter_copy(prog, strict);

	if (f)
		f->prev = atomic_load(&vtoe_filters);
	if (!vtoe_channel_allowed(f))
		vtoe_conns_take_bells();
	errno = saved;
	return f;
}

/* The kernel took the filter (f, or NULL: one we could not copy): from now on every call of
 * ours asks the filters first. */
static void vtoe_sandbox_publish(struct vtoe_filter *f)
{
	int saved = errno;
	bool channel;

	pthread_mutex_lock(&vtoe_filter_lock);
	if (f) {
		f->prev = atomic_load(&vtoe_filters);
		atomic_store_explicit(&vtoe_filters, f, memory_order_release);
	} else {
		atomic_store(&vtoe_sandbox_blind, true);
	}
	if (!atomic_exchange(&vtoe_sandbox_on, true)) {
		vtoe_swap_entry((void **)&vtoe_real_tab.ppoll, (void **)&vtoe_sb_real_ppoll, (void *)vtoe_sb_ppoll);
		vtoe_swap_entry((void **)&vtoe_real_tab.epoll_pwait, (void **)&vtoe_sb_real_epoll_pwait,
				(void *)vtoe_sb_epoll_pwait);
		vtoe_swap_entry((void **)&vtoe_real_tab.epoll_pwait2, (void **)&vtoe_sb_real_epoll_pwait2,
				(void *)vtoe_sb_epoll_pwait2);
	}
	channel = !atomic_load(&vtoe_sandbox_blind) && vtoe_channel_allowed(atomic_load(&vtoe_filters));
	pthread_mutex_unlock(&vtoe_filter_lock);
	vtoe_ctl_sandboxed(channel);
	if (f)
		vtoe_dbg("seccomp filter of %u instructions in force: the library's own calls follow it",
			 (unsigned int)f->len);
	else
		vtoe_warn("seccomp filter not copied: the library makes no call of its own from now on");
	errno = saved;
}

/* The kernel took the filter prepared as f (installed), or refused it: publish, or forget. */
static void vtoe_sandbox_settle(struct vtoe_filter *f, bool installed)
{
	if (installed)
		vtoe_sandbox_publish(f);
	else
		free(f);
}

VTOE_EXPORT int prctl(int option, ...)
{
	unsigned long a2, a3, a4, a5;
	struct vtoe_filter *f;
	va_list ap;
	int r;

	va_start(ap, option);
	a2 = va_arg(ap, unsigned long);
	a3 = va_arg(ap, unsigned long);
	a4 = va_arg(ap, unsigned long);
	a5 = va_arg(ap, unsigned long);
	va_end(ap);
	if (option != PR_SET_SECCOMP || (a2 != SECCOMP_MODE_STRICT && a2 != SECCOMP_MODE_FILTER))
		return (int)vtoe_syscall(SYS_prctl, option, a2, a3, a4, a5);
	f = vtoe_sandbox_prepare(a2 == SECCOMP_MODE_STRICT, (const struct sock_fprog *)a3);
	r = (int)vtoe_syscall(SYS_prctl, option, a2, a3, a4, a5);
	vtoe_sandbox_settle(f, r == 0);
	return r;
}

/* Did seccomp(2) install the filter?  0, or with NEW_LISTENER a descriptor; with TSYNC (and
 * without TSYNC_ESRCH) a positive result is the thread that could not be synchronised. */
static bool vtoe_seccomp_installed(unsigned long op, unsigned long flags, long r)
{
	if (op == SECCOMP_SET_MODE_STRICT || r == 0)
		return r == 0;
	return r > 0 && (flags & SECCOMP_FILTER_FLAG_NEW_LISTENER) &&
	       (!(flags & SECCOMP_FILTER_FLAG_TSYNC) || (flags & SECCOMP_FILTER_FLAG_TSYNC_ESRCH));
}

VTOE_EXPORT long syscall(long nr, ...)
{
	struct vtoe_filter *f;
	long a[6];
	va_list ap;
	long r;

	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (nr != SYS_seccomp || (a[0] != SECCOMP_SET_MODE_STRICT && a[0] != SECCOMP_SET_MODE_FILTER))
		return vtoe_syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	f = vtoe_sandbox_prepare(a[0] == SECCOMP_SET_MODE_STRICT, (const struct sock_fprog *)a[2]);
	r = vtoe_syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	vtoe_sandbox_settle(f, vtoe_seccomp_installed((unsigned long)a[0], (unsigned long)a[1], r));
	return r;
}
