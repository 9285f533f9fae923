/*
 * vtoe_rcu.c - read-side sections without atomics, for calls that must not wait.
 *
 * An MPI progress engine calls poll(..., 0) or epoll_wait(..., 0) between every few memory
 * updates.  A reference on each socket is a locked instruction, and a locked instruction waits
 * for every load the program still has in flight: HPCC's RandomAccess loses its memory-level
 * parallelism to it.  So those calls read sockets inside a section that costs two plain stores,
 * and the last release of a connection or epoll instance, before unmapping or freeing it,
 * waits until every thread that was inside a section has left it.  The readers' stores are
 * ordered against the release by membarrier(2) (an IPI to the threads that run), as in
 * liburcu's "memb" flavour.  A section never blocks: it only reads rings and asks the kernel
 * with a zero timeout.
 *
 * Without membarrier (an old kernel, a seccomp filter) nothing registers and every caller
 * takes references as before; a filter installed later that forbids it leaves what a reader
 * may still see unfreed.
 */
#include "vtoe.h"

#include <linux/membarrier.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static struct vtoe_rcu_reader *_Atomic vtoe_rcu_all; /* only grows; records are reused */
static atomic_int vtoe_rcu_threads;                  /* records in use */
static pthread_once_t vtoe_rcu_once = PTHREAD_ONCE_INIT;
static pthread_key_t vtoe_rcu_key;
static bool vtoe_rcu_usable;
VTOE_TLS_FAST struct vtoe_rcu_reader *vtoe_rcu_self;

static long vtoe_membarrier(int cmd)
{
	if (!VTOE_MAY(SYS_membarrier, cmd, 0, 0)) {
		errno = EPERM; /* the program's seccomp filter would not allow it */
		return -1;
	}
	return vtoe_syscall(SYS_membarrier, cmd, 0, 0);
}

static bool vtoe_rcu_register_process(void)
{
	long cmds = vtoe_membarrier(MEMBARRIER_CMD_QUERY);

	return cmds >= 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
	       vtoe_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
}

/* Thread exit: the record goes back for another thread (never inside a section here). */
static void vtoe_rcu_thread_exit(void *arg)
{
	struct vtoe_rcu_reader *r = arg;

	if (vtoe_rcu_self == r)
		vtoe_rcu_self = NULL;
	atomic_store(&r->used, false);
	atomic_fetch_sub(&vtoe_rcu_threads, 1);
}

static void vtoe_rcu_setup(void)
{
	vtoe_rcu_usable = pthread_key_create(&vtoe_rcu_key, vtoe_rcu_thread_exit) == 0 &&
			  vtoe_rcu_register_process();
	if (!vtoe_rcu_usable)
		vtoe_dbg("no private expedited membarrier: polls take references");
}

struct vtoe_rcu_reader *vtoe_rcu_register(void)
{
	struct vtoe_rcu_reader *r;
	bool no = false;

	pthread_once(&vtoe_rcu_once, vtoe_rcu_setup);
	if (!vtoe_rcu_usable)
		return NULL;
	for (r = atomic_load(&vtoe_rcu_all); r; r = r->next) {
		no = false;
		if (atomic_compare_exchange_strong(&r->used, &no, true))
			break;
	}
	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r)
			return NULL;
		atomic_store(&r->used, true);
		r->next = atomic_load(&vtoe_rcu_all);
		while (!atomic_compare_exchange_weak(&vtoe_rcu_all, &r->next, r))
			;
	}
	/* Counted before the first section: a release that finds no other thread counted knows
	 * that this one will see its socket gone (both are full barriers). */
	atomic_fetch_add(&vtoe_rcu_threads, 1);
	if (pthread_setspecific(vtoe_rcu_key, r) != 0) {
		vtoe_rcu_thread_exit(r);
		return NULL;
	}
	vtoe_rcu_self = r;
	return r;
}

/* Sockets released inside this thread's own section (a signal handler closed them): the
 * section is over, so their release goes on. */
void vtoe_rcu_run_deferred(struct vtoe_rcu_reader *r)
{
	struct vtoe_sock *s;

	while ((s = r->deferred) != NULL) {
		r->deferred = s->pool_next;
		if (vtoe_rcu_wait_readers())
			vtoe_sock_free(s);
	}
}

bool vtoe_rcu_defer(struct vtoe_sock *s)
{
	struct vtoe_rcu_reader *self = vtoe_rcu_self;

	if (!self || !(atomic_load_explicit(&self->word, memory_order_relaxed) & VTOE_RCU_NEST_MASK))
		return false;
	s->pool_next = self->deferred;
	self->deferred = s;
	return true;
}

bool vtoe_rcu_wait_readers(void)
{
	struct vtoe_rcu_reader *self = vtoe_rcu_self;
	int others = atomic_load(&vtoe_rcu_threads) - (self ? 1 : 0);
	int saved = errno;

	if (others <= 0)
		return true; /* no other thread ever read without references, or none is left */
	/* A seccomp filter the program installed since forbids the barrier: a reader may still
	 * be looking, so what it may see is never freed (a leak, not a use after free). */
	if (!VTOE_MAY(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0))
		return false;
	/* Every running thread of ours passes a full barrier: a reader's section start that
	 * preceded our unpublishing is visible below, or its look-up sees the socket gone.
	 * Registered at set-up, it cannot fail but for a bug: then say so and go on. */
	if (vtoe_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0)
		vtoe_warn("membarrier: %s: a reader may see a closed socket", strerror(errno));
	errno = saved;
	for (struct vtoe_rcu_reader *r = atomic_load(&vtoe_rcu_all); r; r = r->next) {
		uint64_t w;

		if (r == self || !atomic_load(&r->used))
			continue;
		w = atomic_load_explicit(&r->word, memory_order_acquire);
		for (unsigned int spins = 0; (w & VTOE_RCU_NEST_MASK) &&
					     atomic_load_explicit(&r->word, memory_order_acquire) == w;
		     spins++) {
			if (spins < 64)
				vtoe_cpu_relax();
			else if (VTOE_MAY(SYS_sched_yield))
				sched_yield(); /* it may need this core to finish */
		}
	}
	return true;
}

void vtoe_rcu_atfork_child(void)
{
	struct vtoe_rcu_reader *self = vtoe_rcu_self;

	/* Only the forking thread lives on; the kernel keeps the registration across fork, and
	 * registering again costs nothing if it did not. */
	for (struct vtoe_rcu_reader *r = atomic_load(&vtoe_rcu_all); r; r = r->next)
		if (r != self) {
			atomic_store(&r->word, 0);
			r->deferred = NULL;
			atomic_store(&r->used, false);
		}
	atomic_store(&vtoe_rcu_threads, self ? 1 : 0);
	if (vtoe_rcu_usable && !vtoe_rcu_register_process()) {
		/* no barrier to order a reader against a release: every thread takes references */
		vtoe_rcu_usable = false;
		if (self) {
			atomic_store(&self->used, false);
			atomic_store(&vtoe_rcu_threads, 0);
			pthread_setspecific(vtoe_rcu_key, NULL);
			vtoe_rcu_self = NULL;
		}
	}
}
