/*
 * vtoe_fdtab.c - fd number -> socket object.
 *
 * Look-up is lock-free: a two-level array of atomic pointers, the second level allocated on
 * first use.  Objects are reference counted; a lookup takes a reference with
 * increment-if-not-zero and then re-checks the slot.  Objects are never returned to malloc,
 * only to our own free list, so a reader that raced with the last put touches valid memory
 * and simply retries.
 */
#include "vtoe.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

_Atomic(vtoe_slot_t *) *vtoe_fdtab;
unsigned int vtoe_fdtab_max;
struct vtoe_sock vtoe_internal_sock = { .ref = INT_MAX / 2, .kind = VTOE_KIND_INTERNAL };

static pthread_mutex_t vtoe_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vtoe_sock *vtoe_pool_free;
static struct vtoe_sock *vtoe_pool_all;

void vtoe_fdtab_init(void)
{
	struct rlimit rl;
	rlim_t n = 1u << 20;
	size_t chunks;

	/* Size for the hard limit, so a later setrlimit() by the program is still covered. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max > n)
		n = rl.rlim_max;
	if (n > (1u << 24))
		n = 1u << 24;
	chunks = (n + VTOE_FDTAB_CHUNK - 1) >> VTOE_FDTAB_SHIFT;
	vtoe_fdtab = calloc(chunks, sizeof(*vtoe_fdtab));
	if (!vtoe_fdtab) {
		vtoe_cfg.offload = false; /* without a table nothing can be tracked */
		return;
	}
	vtoe_fdtab_max = (unsigned int)(chunks << VTOE_FDTAB_SHIFT);
}

static vtoe_slot_t *vtoe_fd_slot(int fd, bool create)
{
	_Atomic(vtoe_slot_t *) *top;
	vtoe_slot_t *chunk, *expected = NULL;

	if ((unsigned int)fd >= vtoe_fdtab_max)
		return NULL;
	top = &vtoe_fdtab[(unsigned int)fd >> VTOE_FDTAB_SHIFT];
	chunk = atomic_load_explicit(top, memory_order_acquire);
	if (!chunk && create) {
		chunk = calloc(VTOE_FDTAB_CHUNK, sizeof(*chunk));
		if (!chunk)
			return NULL;
		if (!atomic_compare_exchange_strong(top, &expected, chunk)) {
			free(chunk);
			chunk = expected;
		}
	}
	return chunk ? &chunk[(unsigned int)fd & (VTOE_FDTAB_CHUNK - 1)] : NULL;
}

struct vtoe_sock *vtoe_fd_get(int fd)
{
	for (;;) {
		struct vtoe_sock *s = vtoe_fd_peek(fd);

		if (!s || s == &vtoe_internal_sock)
			return s;
		if (!vtoe_sock_tryget(s))
			continue; /* being released: its slot has already been cleared */
		if (vtoe_fd_peek(fd) == s)
			return s;
		vtoe_sock_put(s); /* recycled for another fd meanwhile */
	}
}

static void vtoe_sock_init_locks(struct vtoe_sock *s)
{
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->c.rx_lock, NULL);
	pthread_mutex_init(&s->c.tx_lock, NULL);
}

/* The newest of every object ever allocated; the list only grows (s->all_next). */
struct vtoe_sock *vtoe_sock_first(void)
{
	return __atomic_load_n(&vtoe_pool_all, __ATOMIC_ACQUIRE);
}

struct vtoe_sock *vtoe_sock_new(int kind, int family)
{
	struct vtoe_sock *s, *all;

	pthread_mutex_lock(&vtoe_pool_lock);
	s = vtoe_pool_free;
	if (s)
		vtoe_pool_free = s->pool_next;
	pthread_mutex_unlock(&vtoe_pool_lock);

	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
		pthread_mutex_lock(&vtoe_pool_lock);
		s->all_next = vtoe_pool_all;
		__atomic_store_n(&vtoe_pool_all, s, __ATOMIC_RELEASE); /* lock-free readers */
		pthread_mutex_unlock(&vtoe_pool_lock);
	} else {
		/* ref stays 0 until published, so stale readers keep failing their increment */
		unsigned int inc = atomic_load(&s->incarnation);

		all = s->all_next;
		memset((char *)s + sizeof(s->ref), 0, sizeof(*s) - sizeof(s->ref));
		s->all_next = all;
		atomic_store(&s->incarnation, inc); /* weak references (epoll items) must not match */
	}
	vtoe_sock_init_locks(s);
	s->c.fd = -1;
	s->c.fd_retired = -1;
	s->c.bell = -1;
	s->c.memfd = -1;
	s->family = family;
	s->gen = atomic_load(&vtoe_fork_gen);
	atomic_store(&s->kind, kind);
	atomic_store_explicit(&s->ref, 1, memory_order_release);
	return s;
}

void vtoe_sock_put(struct vtoe_sock *s)
{
	int kind;

	if (!s || s == &vtoe_internal_sock)
		return;
	if (atomic_fetch_sub_explicit(&s->ref, 1, memory_order_acq_rel) != 1)
		return;
	atomic_fetch_add(&s->incarnation, 1);
	kind = atomic_load(&s->kind);
	if (kind == VTOE_KIND_CONN || kind == VTOE_KIND_EPOLL) {
		/* what read-side sections may be reading without a reference (vtoe_rcu.c) */
		if (vtoe_rcu_defer(s) || !vtoe_rcu_wait_readers())
			return;
	}
	vtoe_sock_free(s);
}

void vtoe_sock_free(struct vtoe_sock *s)
{
	int saved = errno; /* the caller's result must survive the teardown */

	vtoe_sock_release(s);
	errno = saved;
	atomic_store(&s->kind, VTOE_KIND_FREE);
	pthread_mutex_lock(&vtoe_pool_lock);
	s->pool_next = vtoe_pool_free;
	vtoe_pool_free = s;
	pthread_mutex_unlock(&vtoe_pool_lock);
}

/* The lowest fd that points at s, or -1: a walk of the table, for rare paths only. */
int vtoe_fd_of(const struct vtoe_sock *s)
{
	for (unsigned int top = 0; top < vtoe_fdtab_max >> VTOE_FDTAB_SHIFT; top++) {
		vtoe_slot_t *chunk = atomic_load_explicit(&vtoe_fdtab[top], memory_order_acquire);

		for (unsigned int i = 0; chunk && i < VTOE_FDTAB_CHUNK; i++)
			if (atomic_load_explicit(&chunk[i], memory_order_acquire) == s)
				return (int)((top << VTOE_FDTAB_SHIFT) | i);
	}
	return -1;
}

/* Point fd at s (NULL: untrack it), dropping whatever the slot held before. */
void vtoe_fd_install(int fd, struct vtoe_sock *s)
{
	vtoe_slot_t *slot = vtoe_fd_slot(fd, s != NULL);
	struct vtoe_sock *old;

	if (!slot)
		return;
	if (s && s != &vtoe_internal_sock) {
		atomic_fetch_add(&s->ref, 1);
		atomic_fetch_add(&s->nfds, 1);
	}
	old = atomic_exchange(slot, s);
	if (old && old != &vtoe_internal_sock) {
		atomic_fetch_sub(&old->nfds, 1);
		vtoe_sock_put(old);
	}
}

/* Untrack fd; the slot's reference passes to the caller. */
struct vtoe_sock *vtoe_fd_remove(int fd)
{
	vtoe_slot_t *slot = vtoe_fd_slot(fd, false);
	struct vtoe_sock *old;

	if (!slot)
		return NULL;
	old = atomic_exchange(slot, NULL);
	if (old && old != &vtoe_internal_sock)
		atomic_fetch_sub(&old->nfds, 1);
	return old;
}

void vtoe_fd_set_internal(int fd, bool internal)
{
	if (internal) {
		vtoe_fd_install(fd, &vtoe_internal_sock);
	} else {
		vtoe_slot_t *slot = vtoe_fd_slot(fd, false);
		struct vtoe_sock *expected = &vtoe_internal_sock;

		if (slot)
			atomic_compare_exchange_strong(slot, &expected, NULL);
	}
}

/* Move one of our fds to the internal range (close-on-exec); returns the fd to use. */
int vtoe_fd_move_high(int fd)
{
	int nfd = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, vtoe_cfg.internal_fd_base);

	if (nfd < 0) {
		REAL(fcntl)(fd, F_SETFD, FD_CLOEXEC);
		return fd;
	}
	REAL(close)(fd);
	return nfd;
}

atomic_bool vtoe_fds_short;

bool vtoe_fds_shed(void)
{
	int shed = 0;

	atomic_store(&vtoe_fds_short, true);
	for (struct vtoe_sock *s = __atomic_load_n(&vtoe_pool_all, __ATOMIC_ACQUIRE);
	     s && shed < VTOE_SHED_BATCH; s = s->all_next) {
		if (!vtoe_sock_tryget(s)) /* a live one, pinned while we look at it */
			continue;
		if (atomic_load(&s->kind) == VTOE_KIND_CONN && vtoe_conn_drop_bell(&s->c))
			shed++;
		vtoe_sock_put(s);
	}
	if (shed)
		vtoe_info("out of descriptors: %d connections give up their peer's doorbell", shed);
	return shed > 0;
}

/* Are n descriptors free in this process?  Tried for real (the limit and the table decide),
 * with copies of stdin's slot taken and given back at once. */
bool vtoe_fds_free(int n)
{
	int got[8], k = 0;
	bool ok = true;

	for (; k < n && k < 8; k++) {
		got[k] = REAL(fcntl)(0, F_DUPFD_CLOEXEC, 0);
		if (got[k] < 0 && errno == EBADF) /* no fd 0 to copy: a spare socket will do */
			got[k] = REAL(socket)(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (got[k] < 0) {
			ok = false;
			break;
		}
	}
	while (k > 0)
		REAL(close)(got[--k]);
	return ok;
}

/* Replace `from` by `to` in one holder of an internal fd; true if it held it. */
bool vtoe_fd_swap(int *holder, int from, int to)
{
	return __atomic_compare_exchange_n(holder, &from, to, false, __ATOMIC_ACQ_REL,
					   __ATOMIC_ACQUIRE);
}

/*
 * The application wants the number of one of our internal fds (dup2 onto it, as a daemon may
 * do to any number): move ours to another number first, so the kernel's answer stands.  The
 * holder switches to the new number before the old one is taken over.
 */
int vtoe_fd_rehome_internal(int fd)
{
	int nfd = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, vtoe_cfg.internal_fd_base);
	struct vtoe_sock *s;
	bool found;

	if (nfd < 0)
		return -1;
	vtoe_fd_set_internal(nfd, true);
	found = vtoe_ctl_fd_rehome(fd, nfd) || vtoe_log_fd_rehome(fd, nfd) ||
		vtoe_park_fd_rehome(fd, nfd);
	for (s = __atomic_load_n(&vtoe_pool_all, __ATOMIC_ACQUIRE); s && !found; s = s->all_next)
		found = atomic_load(&s->kind) == VTOE_KIND_CONN &&
			(vtoe_fd_swap(&s->c.fd, fd, nfd) || vtoe_fd_swap(&s->c.fd_retired, fd, nfd) ||
			 vtoe_fd_swap(&s->c.bell, fd, nfd) ||
			 vtoe_fd_swap(&s->c.memfd, fd, nfd));
	if (!found) { /* nobody holds it any more: the number is simply free */
		vtoe_fd_set_internal(nfd, false);
		REAL(close)(nfd);
	}
	vtoe_fd_set_internal(fd, false);
	return 0;
}

void vtoe_fdtab_atfork_child(void)
{
	struct vtoe_sock *s;

	/* Another thread of the parent may have held any of these at the fork. */
	pthread_mutex_init(&vtoe_pool_lock, NULL);
	for (s = vtoe_pool_all; s; s = s->all_next)
		vtoe_sock_init_locks(s);
}
