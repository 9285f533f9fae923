/*
 * vtoe_poll.c - poll, ppoll, select and pselect answered from the rings.
 *
 * A set with no offloaded fd (and no epoll instance of ours) goes straight to the kernel.
 * Otherwise offloaded fds are answered from their rings, with no kernel call, and kernel fds
 * are asked at most every VTOE_POLL_KERNEL_US for a call that does not sleep: a program that
 * spins on poll(..., 0), as MPI progress engines do, enters the kernel about once a
 * millisecond instead of once per call.  While the kernel's last answer for a set held a
 * kernel fd's event, every call asks it again: readiness once reported is not hidden.  A call
 * that finds nothing spins on the rings for the agent's spin budget, then asks each ring for a
 * doorbell and sleeps in the kernel on the whole set; only then does a producer pay for a
 * wake-up.
 */
#include "vtoe.h"

#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

#define VTOE_POLL_STACK 64

int __poll_chk(struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen);
int __ppoll_chk(struct pollfd *fds, nfds_t nfds, const struct timespec *timeout,
		const sigset_t *ss, size_t fdslen);
void __chk_fail(void) __attribute__((noreturn));

/* When each thread last asked the kernel about a set's kernel fds, by a hash of the set, and
 * whether the answer held an event of one of them (then the next call asks again). */
#define VTOE_POLL_MEMO 4
struct vtoe_poll_memo {
	uint64_t key, at_ns;
	bool hot;
};
static VTOE_TLS_FAST struct vtoe_poll_memo vtoe_poll_memo[VTOE_POLL_MEMO];

/*
 * Adaptive spinning, per thread.  A wait spins before it sleeps only while spinning pays: a
 * thread whose recent spins mostly ran out with nothing found (a server waiting on its clients,
 * or more runnable processes than cores, where the spin takes the core from the very process
 * it waits for) sleeps at once.  Every 16th such wait spins anyway, to notice when spinning
 * pays again.  vtoe_spin_hits is a moving average of spins that found something (256: all).
 */
#define VTOE_SPIN_HIT_ALL 256u
#define VTOE_SPIN_HIT_MIN 64u /* spin while at least one spin in four pays */
#define VTOE_SPIN_PROBE_EVERY 16u
static __thread uint32_t vtoe_spin_hits = VTOE_SPIN_HIT_ALL;
static __thread uint32_t vtoe_spin_skipped;

uint32_t vtoe_spin_begin(uint32_t budget_us)
{
	if (!budget_us || vtoe_spin_hits >= VTOE_SPIN_HIT_MIN)
		return budget_us;
	return ++vtoe_spin_skipped % VTOE_SPIN_PROBE_EVERY ? 0 : budget_us;
}

void vtoe_spin_end(bool found)
{
	vtoe_spin_hits = vtoe_spin_hits - vtoe_spin_hits / 8 + (found ? VTOE_SPIN_HIT_ALL / 8 : 0);
}

uint32_t vtoe_spin_budget_us(void)
{
	return vtoe_spin_begin(vtoe_ctl_spin_us());
}

bool vtoe_wake_sooner(uint64_t wake_ns, int64_t *ns)
{
	int64_t until;

	if (!wake_ns)
		return false;
	until = (int64_t)(wake_ns - vtoe_now_ns());
	if (until < 0)
		until = 0;
	if (*ns >= 0 && *ns <= until)
		return false;
	*ns = until;
	return true;
}

/*
 * Is the kernel due to be asked about the set `key`?  Marks it asked if so.  Timed with the
 * coarse clock: a precise one costs, in a VM, as much as the rest of a poll that finds data;
 * so the bound is VTOE_POLL_KERNEL_US or the kernel's tick, whichever is longer.
 */
static bool vtoe_kernel_waited(uint64_t at_ns, uint64_t now)
{
	return !vtoe_cfg.poll_kernel_us || now - at_ns >= vtoe_cfg.poll_kernel_us * 1000ull;
}

bool vtoe_kernel_due_at(uint64_t *at_ns)
{
	uint64_t now = vtoe_coarse_ns();

	if (!vtoe_kernel_waited(*at_ns, now))
		return false;
	*at_ns = now;
	return true;
}

/* This thread's memo of the set `key` (at_ns 0: never asked). */
static struct vtoe_poll_memo *vtoe_poll_memo_of(uint64_t key)
{
	struct vtoe_poll_memo *m = &vtoe_poll_memo[(key ^ (key >> 17)) % VTOE_POLL_MEMO];

	if (m->key != key)
		*m = (struct vtoe_poll_memo){ .key = key };
	return m;
}

static bool vtoe_kernel_due(uint64_t key)
{
	struct vtoe_poll_memo *m = vtoe_poll_memo_of(key);

	return m->hot || vtoe_kernel_due_at(&m->at_ns);
}

#define VTOE_POLL_KEY_SEED 0xcbf29ce484222325ull /* FNV-1a over the set's kernel fds */

static uint64_t vtoe_poll_key_add(uint64_t key, int fd)
{
	return (key ^ (uint64_t)(unsigned int)fd) * 0x100000001b3ull;
}

short vtoe_obj_poll(struct vtoe_sock *s, short events, int krev)
{
	if (atomic_load(&s->kind) == VTOE_KIND_CONN)
		return vtoe_conn_poll(&s->c, events, krev);
	/* An epoll fd polls readable when it has an event to report. */
	return vtoe_ep_ready(s, krev > 0 && (krev & POLLIN), 0) ? (events & POLLIN) : 0;
}

void vtoe_obj_sleep_prepare(struct vtoe_sock *s, short events, uint64_t *wake_ns)
{
	if (atomic_load(&s->kind) == VTOE_KIND_CONN)
		vtoe_conn_sleep_prepare(&s->c, events, wake_ns);
	else if (events & POLLIN)
		vtoe_ep_sleep_prepare(s, 0, wake_ns);
}

struct vtoe_pollset {
	struct pollfd *fds;
	nfds_t n;
	struct vtoe_sock **obj; /* referenced; NULL for a kernel fd */
	bool has_kernel;
	uint64_t key;
};

/* One pass over the set.  With kernel answers in fds[].revents (asked), kernel fds keep
 * theirs; otherwise they report nothing this time. */
static int vtoe_pollset_scan(struct vtoe_pollset *ps, bool asked)
{
	int ready = 0;

	for (nfds_t i = 0; i < ps->n; i++) {
		struct pollfd *p = &ps->fds[i];

		if (p->fd < 0) {
			p->revents = 0;
			continue;
		}
		if (ps->obj[i])
			p->revents = vtoe_obj_poll(ps->obj[i], p->events, asked ? p->revents : -1);
		else if (!asked && p->revents != POLLNVAL)
			p->revents = 0;
		if (p->revents)
			ready++;
	}
	return ready;
}

/* After the kernel answered for the set: did it report one of its own fds? */
static void vtoe_pollset_note_kernel(struct vtoe_pollset *ps)
{
	bool hot = false;

	for (nfds_t i = 0; i < ps->n && !hot; i++)
		hot = !ps->obj[i] && ps->fds[i].fd >= 0 && ps->fds[i].revents;
	vtoe_poll_memo_of(ps->key)->hot = hot;
}

static int vtoe_pollset_ask_kernel(struct vtoe_pollset *ps)
{
	static const struct timespec zero = { 0, 0 };
	int r = REAL(ppoll)(ps->fds, ps->n, &zero, NULL);

	if (r < 0)
		return -1;
	vtoe_pollset_note_kernel(ps);
	return vtoe_pollset_scan(ps, true);
}

/* The engine: timeout NULL waits forever. */
static int vtoe_pollset_wait(struct vtoe_pollset *ps, const struct timespec *timeout,
			     const sigset_t *sigmask)
{
	struct timespec deadline, left;
	uint64_t spin_end;
	uint32_t spin_us;
	int r;

	/* No clock for a call that must not wait: MPI progress engines make millions. */
	if (vtoe_timeout_zero(timeout))
		return ps->has_kernel && vtoe_kernel_due(ps->key) ? vtoe_pollset_ask_kernel(ps)
								   : vtoe_pollset_scan(ps, false);
	if (timeout)
		vtoe_deadline_in(&deadline, timeout);
	if (ps->has_kernel && vtoe_kernel_due(ps->key))
		r = vtoe_pollset_ask_kernel(ps);
	else
		r = vtoe_pollset_scan(ps, false);
	if (r != 0)
		return r;

	spin_us = vtoe_spin_budget_us();
	spin_end = vtoe_now_ns() + (uint64_t)spin_us * 1000u;
	while (spin_us && vtoe_now_ns() < spin_end && (!timeout || vtoe_left_ns(&deadline) > 0)) {
		if (ps->has_kernel && vtoe_kernel_due(ps->key))
			r = vtoe_pollset_ask_kernel(ps);
		else
			r = vtoe_pollset_scan(ps, false);
		if (r != 0) {
			vtoe_spin_end(true);
			return r;
		}
		for (int i = 0; i < 32; i++)
			vtoe_cpu_relax();
	}
	if (spin_us)
		vtoe_spin_end(false);

	for (;;) {
		uint64_t wake_ns = 0;
		int64_t ns = -1; /* no limit */
		bool regrow;

		for (nfds_t i = 0; i < ps->n; i++)
			if (ps->obj[i] && ps->fds[i].fd >= 0)
				vtoe_obj_sleep_prepare(ps->obj[i], ps->fds[i].events, &wake_ns);
		r = vtoe_pollset_scan(ps, false); /* after arming: nothing published is missed */
		if (r != 0)
			return r;
		if (timeout && (ns = vtoe_left_ns(&deadline)) <= 0)
			return 0;
		regrow = vtoe_wake_sooner(wake_ns, &ns);
		if (ns >= 0) {
			left.tv_sec = ns / 1000000000;
			left.tv_nsec = ns % 1000000000;
		}
		r = REAL(ppoll)(ps->fds, ps->n, ns >= 0 ? &left : NULL, sigmask);
		if (r == 0 && regrow)
			continue; /* a full ring may grow now (vtoe_conn_sleep_prepare) */
		if (r <= 0)
			return r; /* timed out, or an error such as EINTR */
		if (ps->has_kernel)
			vtoe_pollset_note_kernel(ps);
		r = vtoe_pollset_scan(ps, true);
		if (r != 0)
			return r;
		/* Only stale doorbells woke us: sleep again for what is left. */
	}
}

/* Finds the objects answered here, each with a reference. */
static void vtoe_pollset_gather(struct vtoe_pollset *ps, bool *ours)
{
	struct pollfd *fds = ps->fds;

	*ours = false;
	ps->has_kernel = false;
	ps->key = VTOE_POLL_KEY_SEED;
	for (nfds_t i = 0; i < ps->n; i++) {
		struct vtoe_sock *s = fds[i].fd >= 0 ? vtoe_fd_peek(fds[i].fd) : NULL;

		ps->obj[i] = NULL;
		fds[i].revents = 0;
		if (s == &vtoe_internal_sock) {
			fds[i].revents = POLLNVAL; /* one of ours: not the application's fd */
			continue;
		}
		/* a reference only for what is answered here: kernel fds cost no atomics */
		if (s && vtoe_obj_polled(s) && (s = vtoe_fd_get(fds[i].fd)) != NULL) {
			if (s != &vtoe_internal_sock && vtoe_obj_polled(s)) {
				ps->obj[i] = s;
				*ours = true;
				continue;
			}
			if (s == &vtoe_internal_sock) {
				fds[i].revents = POLLNVAL;
				continue;
			}
			vtoe_sock_put(s);
		}
		if (fds[i].fd >= 0) {
			ps->has_kernel = true;
			ps->key = vtoe_poll_key_add(ps->key, fds[i].fd);
		}
	}
}

static int vtoe_pollset_run(struct vtoe_pollset *ps, bool ours, const struct timespec *timeout,
			    const sigset_t *sigmask)
{
	int r;

	if (ours)
		return vtoe_pollset_wait(ps, timeout, sigmask);
	/* only our internal fds and kernel fds: the kernel answers, ours stay POLLNVAL */
	r = REAL(ppoll)(ps->fds, ps->n, timeout, sigmask);
	return r < 0 ? r : vtoe_pollset_scan(ps, true);
}

/*
 * A call with a zero timeout, as MPI progress engines make millions: one pass inside a
 * read-side section, with no reference, no allocation and no kernel call, and few enough
 * instructions that the program's own cache misses still overlap across it.  -2: nothing of
 * ours in the set (the kernel answers); -3: for the general path (the kernel is due for the
 * set's kernel fds, an epoll instance or one of our internal fds is in it, or no section).
 */
static inline __attribute__((always_inline)) int vtoe_poll_now(struct pollfd *fds, nfds_t nfds)
{
	struct vtoe_rcu_reader *rd = NULL;
	uint64_t key = VTOE_POLL_KEY_SEED;
	bool ours = false, kernel = false;
	int ready = 0, r = -3;

	for (nfds_t i = 0; i < nfds; i++) {
		struct pollfd *p = &fds[i];
		struct vtoe_sock *s = p->fd >= 0 ? vtoe_fd_peek(p->fd) : NULL;

		p->revents = 0;
		if (s && !rd) { /* the first one of ours: look again inside a section */
			if (!(rd = vtoe_rcu_read_begin()))
				return -3;
			s = vtoe_fd_peek(p->fd);
		}
		if (s && atomic_load_explicit(&s->kind, memory_order_relaxed) == VTOE_KIND_CONN) {
			ours = true;
			if (vtoe_conn_poll_idle(&s->c, p->events))
				continue;
			p->revents = vtoe_conn_poll(&s->c, p->events, -1);
			ready += p->revents != 0;
			continue;
		}
		if (s == &vtoe_internal_sock || (s && vtoe_obj_polled(s)))
			goto out;
		if (p->fd >= 0) {
			kernel = true;
			key = vtoe_poll_key_add(key, p->fd);
		}
	}
	if (!ours) {
		r = -2;
	} else if (!kernel) {
		r = ready;
	} else {
		struct vtoe_poll_memo *m = vtoe_poll_memo_of(key);

		if (!m->hot && !vtoe_kernel_waited(m->at_ns, vtoe_coarse_ns()))
			r = ready;
	}
out:
	if (rd)
		vtoe_rcu_read_end(rd);
	return r;
}

/* Everything but the short path: references on what is ours, the spin, the sleep. */
static __attribute__((noinline)) int vtoe_poll_general(struct pollfd *fds, nfds_t nfds,
							 const struct timespec *timeout,
							 const sigset_t *sigmask)
{
	struct vtoe_sock *stack_obj[VTOE_POLL_STACK], **obj = stack_obj;
	struct vtoe_pollset ps = { .fds = fds, .n = nfds };
	bool ours = false;
	int r, saved;

	for (nfds_t i = 0; i < nfds && !ours; i++)
		ours = fds[i].fd >= 0 && vtoe_fd_peek(fds[i].fd);
	if (vtoe_likely(!ours))
		return -2;
	if (nfds > VTOE_POLL_STACK && !(obj = calloc(nfds, sizeof(*obj))))
		return -2;
	ps.obj = obj;
	vtoe_pollset_gather(&ps, &ours);
	r = vtoe_pollset_run(&ps, ours, timeout, sigmask);
	saved = errno;
	for (nfds_t i = 0; i < nfds; i++)
		vtoe_sock_put(obj[i]);
	if (obj != stack_obj)
		free(obj);
	errno = saved;
	return r;
}

/* Returns the kernel's result, or -2 when the set has nothing of ours (the caller passes it
 * to the kernel unchanged). */
static int vtoe_poll_common(struct pollfd *fds, nfds_t nfds, const struct timespec *timeout,
			    const sigset_t *sigmask)
{
	int r;

	if (vtoe_timeout_zero(timeout) && (r = vtoe_poll_now(fds, nfds)) != -3)
		return r;
	return vtoe_poll_general(fds, nfds, timeout, sigmask);
}

static int vtoe_poll_ms(struct pollfd *fds, nfds_t nfds, int timeout)
{
	static const struct timespec zero;
	struct timespec ts;
	int r;

	/* poll(…, 0) from a progress engine: the short path, before any conversion */
	if (timeout == 0) {
		r = vtoe_poll_now(fds, nfds);
		if (r == -3)
			r = vtoe_poll_general(fds, nfds, &zero, NULL);
		return r == -2 ? REAL(ppoll)(fds, nfds, &zero, NULL) : r;
	}
	ts = (struct timespec){ timeout / 1000, (timeout % 1000) * 1000000L };
	r = vtoe_poll_common(fds, nfds, timeout < 0 ? NULL : &ts, NULL);
	return r == -2 ? REAL(ppoll)(fds, nfds, timeout < 0 ? NULL : &ts, NULL) : r;
}

VTOE_EXPORT int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
	return vtoe_poll_ms(fds, nfds, timeout);
}

VTOE_EXPORT int __poll_chk(struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < nfds)
		__chk_fail();
	return vtoe_poll_ms(fds, nfds, timeout);
}

static int vtoe_ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *timeout,
		      const sigset_t *sigmask)
{
	int r;

	if (timeout && (timeout->tv_sec < 0 || timeout->tv_nsec < 0 ||
			timeout->tv_nsec >= 1000000000)) {
		errno = EINVAL;
		return -1;
	}
	r = vtoe_poll_common(fds, nfds, timeout, sigmask);
	return r == -2 ? REAL(ppoll)(fds, nfds, timeout, sigmask) : r;
}

VTOE_EXPORT int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *timeout,
		      const sigset_t *sigmask)
{
	return vtoe_ppoll(fds, nfds, timeout, sigmask);
}

VTOE_EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t nfds, const struct timespec *timeout,
			    const sigset_t *ss, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < nfds)
		__chk_fail();
	return vtoe_ppoll(fds, nfds, timeout, ss);
}

/* ------------------------------------------------------------------------------------------ */
/* select and pselect, on the same engine                                                      */
/* ------------------------------------------------------------------------------------------ */
#define VTOE_SEL_IN (POLLIN | POLLHUP | POLLERR) /* the kernel's POLLIN_SET */
#define VTOE_SEL_OUT (POLLOUT | POLLERR)          /* POLLOUT_SET */
#define VTOE_SEL_EX POLLPRI

static bool vtoe_fdset_has(const fd_set *set, int fd)
{
	return set && (set->fds_bits[fd / NFDBITS] & ((__fd_mask)1 << (fd % NFDBITS)));
}

static void vtoe_fdset_put(fd_set *set, int fd)
{
	set->fds_bits[fd / NFDBITS] |= (__fd_mask)1 << (fd % NFDBITS);
}

/* -2: nothing of ours in the sets. */
static int vtoe_select_common(int nfds, fd_set *r, fd_set *w, fd_set *e,
			      const struct timespec *timeout, const sigset_t *sigmask)
{
	struct pollfd stack_p[VTOE_POLL_STACK], *p = stack_p;
	size_t words = nfds > 0 ? ((size_t)nfds + NFDBITS - 1) / NFDBITS : 0;
	int n = 0, res, saved;
	bool ours = false;

	if (nfds < 0 || nfds > (int)vtoe_fdtab_max)
		return -2;
	for (int fd = 0; fd < nfds; fd++) {
		if (!vtoe_fdset_has(r, fd) && !vtoe_fdset_has(w, fd) && !vtoe_fdset_has(e, fd))
			continue;
		n++;
		ours = ours || vtoe_fd_peek(fd);
	}
	if (vtoe_likely(!ours))
		return -2;
	if (n > VTOE_POLL_STACK && !(p = malloc((size_t)n * sizeof(*p))))
		return -2;
	n = 0;
	for (int fd = 0; fd < nfds; fd++) {
		short ev = (vtoe_fdset_has(r, fd) ? VTOE_SEL_IN : 0) |
			   (vtoe_fdset_has(w, fd) ? VTOE_SEL_OUT : 0) |
			   (vtoe_fdset_has(e, fd) ? VTOE_SEL_EX : 0);
		if (ev)
			p[n++] = (struct pollfd){ .fd = fd, .events = ev };
	}
	res = vtoe_poll_common(p, (nfds_t)n, timeout, sigmask);
	saved = errno;
	if (res >= 0) {
		/* a descriptor that is not open: select fails where poll says POLLNVAL */
		for (int i = 0; i < n; i++)
			if (p[i].revents & POLLNVAL) {
				res = -1;
				saved = EBADF;
			}
	}
	if (res >= 0) {
		if (r)
			memset(r, 0, words * sizeof(__fd_mask));
		if (w)
			memset(w, 0, words * sizeof(__fd_mask));
		if (e)
			memset(e, 0, words * sizeof(__fd_mask));
		res = 0;
		for (int i = 0; i < n; i++) {
			short rv = p[i].revents;
			int fd = p[i].fd;

			if (r && (p[i].events & POLLIN) && (rv & VTOE_SEL_IN)) {
				vtoe_fdset_put(r, fd);
				res++;
			}
			if (w && (p[i].events & POLLOUT) && (rv & VTOE_SEL_OUT)) {
				vtoe_fdset_put(w, fd);
				res++;
			}
			if (e && (p[i].events & POLLPRI) && (rv & VTOE_SEL_EX)) {
				vtoe_fdset_put(e, fd);
				res++;
			}
		}
	}
	if (p != stack_p)
		free(p);
	errno = saved;
	return res;
}

VTOE_EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	struct timespec ts, start, now;
	int64_t left;
	int res, saved;

	if (vtoe_likely(nfds <= 0))
		return REAL(select)(nfds, r, w, e, tv);
	if (tv) {
		if (tv->tv_sec < 0 || tv->tv_usec < 0) {
			errno = EINVAL;
			return -1;
		}
		ts.tv_sec = tv->tv_sec + tv->tv_usec / 1000000;
		ts.tv_nsec = (tv->tv_usec % 1000000) * 1000;
		clock_gettime(CLOCK_MONOTONIC, &start);
	}
	res = vtoe_select_common(nfds, r, w, e, tv ? &ts : NULL, NULL);
	if (res == -2)
		return REAL(select)(nfds, r, w, e, tv);
	if (tv) {
		/* Linux writes back the time left */
		saved = errno;
		clock_gettime(CLOCK_MONOTONIC, &now);
		left = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 -
		       ((int64_t)(now.tv_sec - start.tv_sec) * 1000000 +
			(now.tv_nsec - start.tv_nsec) / 1000);
		if (left < 0 || res == 0)
			left = 0;
		tv->tv_sec = left / 1000000;
		tv->tv_usec = left % 1000000;
		errno = saved;
	}
	return res;
}

VTOE_EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *ts,
			const sigset_t *sigmask)
{
	int res;

	if (vtoe_likely(nfds <= 0))
		return REAL(pselect)(nfds, r, w, e, ts, sigmask);
	if (ts && (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000)) {
		errno = EINVAL;
		return -1;
	}
	res = vtoe_select_common(nfds, r, w, e, ts, sigmask);
	return res == -2 ? REAL(pselect)(nfds, r, w, e, ts, sigmask) : res;
}
