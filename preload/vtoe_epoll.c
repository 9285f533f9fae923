/*
 * vtoe_epoll.c - epoll answered from the rings.
 *
 * Every epoll instance this process creates is mirrored: each registration is an item whose
 * token (not the application's data) is what the kernel holds.  Offloaded connections (and
 * epoll instances nested inside) are answered from user space, with level-triggered,
 * edge-triggered (every arrival is an edge, as with TCP) and one-shot rules applied here;
 * their kernel registration is edge-triggered and serves only to wake a sleeper, after the
 * rings were asked for doorbells.  Kernel fds are answered by the kernel, at most every
 * VTOE_POLL_KERNEL_US for a call that finds offloaded events or does not sleep, and on every
 * call while its last answer held a kernel fd's event: readiness once seen is never hidden.
 *
 * An instance shared with another process after fork() goes back to the kernel for good
 * (the other process's registrations are invisible here): at fork its items get the
 * application's data back and its connections keep their fd's kernel readiness exact.
 * Instances this image did not create (inherited over exec) are the kernel's alone.
 */
#include "vtoe.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define VTOE_EP_MAX_DEPTH 5 /* the kernel's nesting limit */
#define VTOE_EP_PENDING 64
#define VTOE_EP_BATCH 64

struct vtoe_ep_item {
	bool live;
	bool user;          /* answered from user space (s) */
	bool nested;        /* user, and s is an epoll instance */
	bool disabled;      /* EPOLLONESHOT reported, until EPOLL_CTL_MOD */
	bool out_seen;      /* ET: EPOLLOUT reported, and the ring not seen full since */
	unsigned nospace;   /* ET: the connection's tx_nospace at the last EPOLLOUT report */
	int fd;
	uint32_t events;    /* the application's */
	epoll_data_t data;  /* the application's */
	struct vtoe_sock *s; /* weak: checked against inc before use; for a kernel item, the
			      * unconnected socket it was (vtoe_ep_follow) */
	unsigned int inc;
	uint64_t seen_head; /* ET: rx head at the last report */
	uint32_t seen_bits; /* ET: end-of-stream and error bits at the last report */
	uint64_t reported;  /* the wait call that reported it last */
};

struct vtoe_ep {
	pthread_mutex_t lock;
	uint32_t tag;       /* high half of every token: 0xfffe0000 | a per-instance nonce */
	bool legacy;        /* shared with a fork: the kernel answers everything */
	int fd;             /* a number it was last used under (for the fork hand-back) */
	struct vtoe_ep_item *items;
	int n, cap, nuser;
	int nnested;        /* user items that are epoll instances (their locks are taken) */
	unsigned int rr;    /* where the next scan starts: fairness among ready items */
	uint64_t calls;
	uint64_t kernel_ns; /* when the kernel was last asked (coarse clock) */
	atomic_bool kernel_hot; /* its last answer held a kernel fd's event: ask it every call */
	struct epoll_event pend[VTOE_EP_PENDING]; /* harvested one-time events, data translated */
	int npend;
	struct vtoe_ep *next;
};

static struct vtoe_ep_item *vtoe_ep_find(struct vtoe_ep *ep, int fd);
static void vtoe_ep_item_reset(struct vtoe_ep_item *it, const struct epoll_event *ev);

static pthread_mutex_t vtoe_ep_all_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vtoe_ep *vtoe_ep_all;

static uint64_t vtoe_ep_token(struct vtoe_ep *ep, int idx)
{
	return ((uint64_t)ep->tag << 32) | (uint32_t)idx;
}

/* The item behind a token from the kernel, or NULL for data that is not one of ours. */
static struct vtoe_ep_item *vtoe_ep_untoken(struct vtoe_ep *ep, uint64_t token)
{
	uint32_t idx = (uint32_t)token;

	if ((uint32_t)(token >> 32) != ep->tag || idx >= (uint32_t)ep->n || !ep->items[idx].live)
		return NULL;
	return &ep->items[idx];
}

/* A reference to an item's object if it is still the one registered. */
static struct vtoe_sock *vtoe_ep_item_get(struct vtoe_ep_item *it)
{
	struct vtoe_sock *s = it->s;

	if (!vtoe_sock_tryget(s))
		return NULL;
	if (atomic_load(&s->incarnation) != it->inc) {
		vtoe_sock_put(s);
		return NULL;
	}
	return s;
}

/* An item's object for one look.  Inside a read-side section (sectioned) it cannot be
 * released under us, so matching the incarnation is enough; elsewhere it takes a reference
 * (vtoe_ep_item_unpin gives it back). */
static struct vtoe_sock *vtoe_ep_item_pin(struct vtoe_ep_item *it, bool sectioned)
{
	if (!sectioned)
		return vtoe_ep_item_get(it);
	return atomic_load_explicit(&it->s->incarnation, memory_order_acquire) == it->inc ? it->s
											 : NULL;
}

static void vtoe_ep_item_unpin(struct vtoe_sock *s, bool sectioned)
{
	if (!sectioned)
		vtoe_sock_put(s);
}

static void vtoe_ep_item_drop(struct vtoe_ep *ep, struct vtoe_ep_item *it)
{
	if (it->user)
		ep->nuser--;
	if (it->nested)
		ep->nnested--;
	it->live = false;
	while (ep->n > 0 && !ep->items[ep->n - 1].live)
		ep->n--;
}

/* ------------------------------------------------------------------------------------------ */
/* Creation, release, fork                                                                     */
/* ------------------------------------------------------------------------------------------ */
static int vtoe_ep_track(int fd)
{
	struct vtoe_sock *s;
	struct vtoe_ep *ep;

	if (fd < 0 || !vtoe_cfg.offload)
		return fd;
	ep = calloc(1, sizeof(*ep));
	s = ep ? vtoe_sock_new(VTOE_KIND_PLAIN, 0) : NULL;
	if (!s) {
		free(ep);
		return fd; /* untracked: the kernel answers */
	}
	pthread_mutex_init(&ep->lock, NULL);
	ep->tag = 0xfffe0000u | ((uint32_t)(vtoe_now_ns() ^ (uintptr_t)ep) & 0xffffu);
	ep->fd = fd;
	s->ep = ep;
	atomic_store(&s->kind, VTOE_KIND_EPOLL);
	pthread_mutex_lock(&vtoe_ep_all_lock);
	ep->next = vtoe_ep_all;
	vtoe_ep_all = ep;
	pthread_mutex_unlock(&vtoe_ep_all_lock);
	vtoe_fd_install(fd, s);
	vtoe_sock_put(s);
	return fd;
}

static int vtoe_ep_create(int flags)
{
	int fd = REAL(epoll_create1)(flags);

	if (vtoe_retry_emfile(fd))
		fd = REAL(epoll_create1)(flags);
	return vtoe_ep_track(fd);
}

VTOE_EXPORT int epoll_create1(int flags)
{
	return vtoe_ep_create(flags);
}

VTOE_EXPORT int epoll_create(int size)
{
	if (size <= 0) {
		errno = EINVAL;
		return -1;
	}
	return vtoe_ep_create(0);
}

void vtoe_ep_release(struct vtoe_sock *s)
{
	struct vtoe_ep *ep = s->ep, **pp;

	if (!ep)
		return;
	pthread_mutex_lock(&vtoe_ep_all_lock);
	for (pp = &vtoe_ep_all; *pp; pp = &(*pp)->next)
		if (*pp == ep) {
			*pp = ep->next;
			break;
		}
	pthread_mutex_unlock(&vtoe_ep_all_lock);
	free(ep->items);
	free(ep);
	s->ep = NULL;
}

/* The kernel registration of an item: user-space items wake a sleeper on any change. */
static uint32_t vtoe_ep_kernel_events(const struct vtoe_ep_item *it)
{
	return it->user ? (it->events & ~EPOLLONESHOT) | EPOLLET : it->events;
}

/* Before fork: every instance goes back to the kernel, with the application's data, since
 * the child shares it.  The parent keeps it that way too (it cannot know when the child is
 * done with it). */
void vtoe_ep_atfork_prepare(void)
{
	pthread_mutex_lock(&vtoe_ep_all_lock); /* held through fork(): see vtoe_ep_atfork_*() */
	for (struct vtoe_ep *ep = vtoe_ep_all; ep; ep = ep->next) {
		pthread_mutex_lock(&ep->lock);
		for (int i = 0; i < ep->n && !ep->legacy; i++) {
			struct vtoe_ep_item *it = &ep->items[i];
			struct epoll_event ev = { .events = it->events, .data = it->data };
			struct vtoe_sock *s;

			if (!it->live)
				continue;
			if (it->user && (s = vtoe_ep_item_get(it)) != NULL) {
				if (atomic_load(&s->kind) == VTOE_KIND_CONN)
					atomic_fetch_or(&s->c.flags, VTOE_CF_KWATCH);
				vtoe_sock_put(s);
			}
			if (REAL(epoll_ctl)(ep->fd, EPOLL_CTL_MOD, it->fd, &ev) < 0 &&
			    errno == EINVAL) { /* EPOLLEXCLUSIVE cannot be modified */
				REAL(epoll_ctl)(ep->fd, EPOLL_CTL_DEL, it->fd, NULL);
				REAL(epoll_ctl)(ep->fd, EPOLL_CTL_ADD, it->fd, &ev);
			}
		}
		ep->legacy = true;
		ep->npend = 0; /* (a harvested event would be lost; the kernel re-reports LT ones) */
		pthread_mutex_unlock(&ep->lock);
	}
}

bool vtoe_ep_legacy(const struct vtoe_ep *ep)
{
	return ep->legacy;
}

void vtoe_ep_atfork_parent(void)
{
	pthread_mutex_unlock(&vtoe_ep_all_lock);
}

/* Another thread of the parent may have held any instance's lock at the fork. */
void vtoe_ep_atfork_child(void)
{
	pthread_mutex_init(&vtoe_ep_all_lock, NULL);
	for (struct vtoe_ep *ep = vtoe_ep_all; ep; ep = ep->next)
		pthread_mutex_init(&ep->lock, NULL);
}

/*
 * connect() put an offloaded socket at fd in place of the kernel socket the program had
 * registered: the kernel dropped that registration with the old socket, so it follows the
 * new one here, as the program expects of the socket it registered.
 */
void vtoe_ep_follow(int fd, struct vtoe_sock *candidate, struct vtoe_sock *conn)
{
	pthread_mutex_lock(&vtoe_ep_all_lock);
	for (struct vtoe_ep *ep = vtoe_ep_all; ep; ep = ep->next) {
		struct vtoe_sock *eps = vtoe_fd_peek(ep->fd);
		struct vtoe_ep_item *it;

		pthread_mutex_lock(&ep->lock);
		it = ep->legacy || eps == &vtoe_internal_sock || !eps || eps->ep != ep
			     ? NULL
			     : vtoe_ep_find(ep, fd);
		if (it && !it->user && it->s == candidate &&
		    it->inc == atomic_load(&candidate->incarnation)) {
			struct epoll_event ev = { .events = it->events, .data = it->data };
			struct epoll_event kev;

			it->user = true;
			it->s = conn;
			it->inc = atomic_load(&conn->incarnation);
			vtoe_ep_item_reset(it, &ev);
			kev.events = vtoe_ep_kernel_events(it);
			kev.data.u64 = vtoe_ep_token(ep, (int)(it - ep->items));
			if (REAL(epoll_ctl)(ep->fd, EPOLL_CTL_ADD, fd, &kev) == 0 || errno == EEXIST)
				ep->nuser++;
			else
				vtoe_ep_item_drop(ep, it);
		}
		pthread_mutex_unlock(&ep->lock);
	}
	pthread_mutex_unlock(&vtoe_ep_all_lock);
}

/* ------------------------------------------------------------------------------------------ */
/* epoll_ctl                                                                                   */
/* ------------------------------------------------------------------------------------------ */
static int vtoe_ep_slot(struct vtoe_ep *ep)
{
	for (int i = 0; i < ep->n; i++)
		if (!ep->items[i].live)
			return i;
	if (ep->n == ep->cap) {
		int cap = ep->cap ? ep->cap * 2 : 16;
		struct vtoe_ep_item *n = realloc(ep->items, (size_t)cap * sizeof(*n));

		if (!n)
			return -1;
		ep->items = n;
		ep->cap = cap;
	}
	memset(&ep->items[ep->n], 0, sizeof(ep->items[0]));
	return ep->n++;
}

static struct vtoe_ep_item *vtoe_ep_find(struct vtoe_ep *ep, int fd)
{
	for (int i = 0; i < ep->n; i++)
		if (ep->items[i].live && ep->items[i].fd == fd)
			return &ep->items[i];
	return NULL;
}

static void vtoe_ep_item_reset(struct vtoe_ep_item *it, const struct epoll_event *ev)
{
	it->events = ev->events;
	it->data = ev->data;
	it->disabled = false;
	it->out_seen = false;
	it->seen_head = UINT64_MAX; /* (re)registered: whatever is ready is reported once */
	it->seen_bits = UINT32_MAX;
}

static int vtoe_ep_ctl(struct vtoe_sock *eps, int epfd, int op, int fd, struct epoll_event *ev,
		       struct vtoe_sock *target)
{
	struct vtoe_ep *ep = eps->ep;
	struct vtoe_ep_item *it, tmp;
	struct epoll_event kev;
	bool user = target && vtoe_obj_polled(target) && target != eps;
	int idx = -1, it_idx, r;

	if ((op == EPOLL_CTL_ADD || op == EPOLL_CTL_MOD) && !ev) {
		errno = EFAULT;
		return -1;
	}
	/* Stripped from the kernel's copy below, so refused here as the kernel would. */
	if (op == EPOLL_CTL_ADD && (ev->events & EPOLLEXCLUSIVE) && (ev->events & EPOLLONESHOT)) {
		errno = EINVAL;
		return -1;
	}
	pthread_mutex_lock(&ep->lock);
	ep->fd = epfd;
	it = vtoe_ep_find(ep, fd);
	it_idx = it ? (int)(it - ep->items) : -1; /* vtoe_ep_slot may move the array */
	if (op == EPOLL_CTL_DEL) {
		r = REAL(epoll_ctl)(epfd, op, fd, ev);
		if (r == 0 && it)
			vtoe_ep_item_drop(ep, it);
		pthread_mutex_unlock(&ep->lock);
		return r;
	}
	if (op != EPOLL_CTL_ADD && op != EPOLL_CTL_MOD) {
		pthread_mutex_unlock(&ep->lock);
		return REAL(epoll_ctl)(epfd, op, fd, ev);
	}
	if (op == EPOLL_CTL_ADD || !it) {
		idx = vtoe_ep_slot(ep);
		if (idx < 0) {
			pthread_mutex_unlock(&ep->lock);
			errno = ENOMEM;
			return -1;
		}
		it = it_idx >= 0 ? &ep->items[it_idx] : NULL;
	} else {
		idx = it_idx;
	}
	tmp = ep->items[idx];
	tmp.fd = fd;
	tmp.user = user;
	tmp.nested = user && atomic_load(&target->kind) != VTOE_KIND_CONN;
	tmp.s = user || (target && atomic_load(&target->kind) == VTOE_KIND_CANDIDATE) ? target
										    : NULL;
	tmp.inc = tmp.s ? atomic_load(&target->incarnation) : 0;
	vtoe_ep_item_reset(&tmp, ev);
	kev.events = vtoe_ep_kernel_events(&tmp);
	kev.data.u64 = vtoe_ep_token(ep, idx);
	r = REAL(epoll_ctl)(epfd, op, fd, &kev);
	if (r == 0) {
		struct vtoe_ep_item *slot = &ep->items[idx];

		if (op == EPOLL_CTL_ADD && it) /* the old one was closed: the kernel had dropped it */
			vtoe_ep_item_drop(ep, it);
		if (slot->live && slot->user)
			ep->nuser--;
		if (slot->live && slot->nested)
			ep->nnested--;
		*slot = tmp;
		slot->live = true;
		if (user)
			ep->nuser++;
		if (tmp.nested)
			ep->nnested++;
		if (idx >= ep->n)
			ep->n = idx + 1;
	} else if (!ep->items[idx].live) {
		int saved = errno;
		while (ep->n > 0 && !ep->items[ep->n - 1].live)
			ep->n--;
		errno = saved;
	}
	pthread_mutex_unlock(&ep->lock);
	return r;
}

VTOE_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event)
{
	struct vtoe_sock *eps, *t;
	int r;

	if (vtoe_likely(!vtoe_fd_peek(epfd) && !vtoe_fd_peek(fd)))
		return REAL(epoll_ctl)(epfd, op, fd, event);
	eps = vtoe_fd_get(epfd);
	t = vtoe_fd_get(fd);
	if (eps == &vtoe_internal_sock || t == &vtoe_internal_sock) {
		vtoe_sock_put(eps == &vtoe_internal_sock ? NULL : eps);
		vtoe_sock_put(t == &vtoe_internal_sock ? NULL : t);
		errno = EBADF;
		return -1;
	}
	if (eps && atomic_load(&eps->kind) == VTOE_KIND_EPOLL && eps->ep && !eps->ep->legacy &&
	    eps->gen == atomic_load(&vtoe_fork_gen)) {
		r = vtoe_ep_ctl(eps, epfd, op, fd, event, t);
	} else {
		/* An instance the kernel answers: keep the connection's fd readiness exact. */
		if (t && atomic_load(&t->kind) == VTOE_KIND_CONN && event &&
		    (op == EPOLL_CTL_ADD || op == EPOLL_CTL_MOD))
			atomic_fetch_or(&t->c.flags, VTOE_CF_KWATCH |
						     (event->events & EPOLLET ? VTOE_CF_EDGE : 0));
		r = REAL(epoll_ctl)(epfd, op, fd, event);
	}
	vtoe_sock_put(eps);
	vtoe_sock_put(t);
	return r;
}

/* ------------------------------------------------------------------------------------------ */
/* Readiness of items                                                                          */
/* ------------------------------------------------------------------------------------------ */

/*
 * What an item reports now (0: nothing), applying the level, edge and one-shot rules; with
 * commit, the report is recorded.  krev: the kernel's epoll bits for the item if known, or -1.
 * sectioned: inside a read-side section, where no nested instance is looked at (its lock
 * could be waited for: the caller does not come here with nested items).
 */
static uint32_t vtoe_ep_item_eval(struct vtoe_ep_item *it, int krev, bool commit, int depth,
				  bool sectioned)
{
	const uint32_t always = EPOLLHUP | EPOLLERR;
	struct vtoe_sock *s;
	uint32_t rev = 0, bits;
	uint64_t head = 0;
	unsigned nospace = it->nospace;

	if (it->disabled || !(s = vtoe_ep_item_pin(it, sectioned)))
		return 0;
	if (atomic_load(&s->kind) == VTOE_KIND_CONN) {
		/* the whole input state, asked for or not: a FIN is an edge even without RDHUP;
		 * room to write only if asked (it reads the peer's line of our tx ring) */
		nospace = atomic_load(&s->c.tx_nospace); /* before the ring is looked at */
		rev = (uint16_t)vtoe_conn_poll(&s->c, (short)(POLLIN | POLLRDHUP | POLLPRI |
							    (it->events & EPOLLOUT)), krev);
		head = atomic_load_explicit(&s->c.rx->head, memory_order_acquire);
	} else if (!sectioned && depth < VTOE_EP_MAX_DEPTH &&
		   vtoe_ep_ready(s, krev > 0 && (krev & EPOLLIN), depth + 1)) {
		rev = EPOLLIN;
	}
	vtoe_ep_item_unpin(s, sectioned);
	bits = rev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR);
	rev &= it->events | always;
	if (!rev) {
		if (commit) {
			it->out_seen = false;
			it->seen_bits = 0;
		}
		return 0;
	}
	if (it->events & EPOLLET) {
		/* Every arrival is an edge, as with TCP, read or not; room to write is an edge
		 * once, and again after the ring was seen full or a write found it full. */
		bool edge_in = (rev & ~EPOLLOUT) && (head != it->seen_head || bits != it->seen_bits);
		bool edge_out = (rev & EPOLLOUT) && (!it->out_seen || nospace != it->nospace);

		if (commit && !(rev & EPOLLOUT))
			it->out_seen = false;
		if (!edge_in && !edge_out)
			return 0;
		if (commit) {
			it->seen_head = head;
			it->seen_bits = bits;
			it->out_seen = (rev & EPOLLOUT) != 0;
			if (rev & EPOLLOUT)
				it->nospace = nospace;
		}
	}
	if (commit && (it->events & EPOLLONESHOT))
		it->disabled = true;
	return rev;
}

/* Events that the kernel handed us for an instance nobody asked yet (nested, poll): kept
 * when the kernel will not report them again (edge-triggered or one-shot). */
static void vtoe_ep_harvest(struct vtoe_sock *s, int epfd)
{
	struct vtoe_ep *ep = s->ep;
	struct epoll_event kb[VTOE_EP_BATCH];
	int r = REAL(epoll_pwait)(epfd, kb, VTOE_EP_PENDING - ep->npend > VTOE_EP_BATCH
						   ? VTOE_EP_BATCH
						   : VTOE_EP_PENDING - ep->npend,
				  0, NULL);

	for (int i = 0; i < r; i++) {
		struct vtoe_ep_item *it = vtoe_ep_untoken(ep, kb[i].data.u64);

		if (it && it->user)
			continue; /* the rings are asked again anyway */
		if (it && !(it->events & (EPOLLET | EPOLLONESHOT)))
			continue; /* level-triggered: the kernel reports it again */
		ep->pend[ep->npend].events = kb[i].events;
		ep->pend[ep->npend++].data = it ? it->data : kb[i].data;
	}
}

bool vtoe_ep_ready(struct vtoe_sock *s, bool kernel_says, int depth)
{
	struct vtoe_ep *ep = s->ep;
	bool ready = false;

	pthread_mutex_lock(&ep->lock);
	for (int i = 0; i < ep->n && !ready; i++)
		ready = ep->items[i].live && ep->items[i].user &&
			vtoe_ep_item_eval(&ep->items[i], -1, false, depth, false) != 0;
	if (!ready && kernel_says && ep->npend < VTOE_EP_PENDING) {
		/* The kernel's readiness may be only our own wake-up edges: look. */
		struct epoll_event kb[VTOE_EP_BATCH];
		int r;

		vtoe_ep_harvest(s, ep->fd);
		if (ep->npend == 0) { /* level-triggered kernel events stay queued: are there? */
			r = REAL(epoll_pwait)(ep->fd, kb, 1, 0, NULL);
			if (r > 0) {
				struct vtoe_ep_item *it = vtoe_ep_untoken(ep, kb[0].data.u64);
				ready = !(it && it->user);
			}
		}
	}
	ready = ready || ep->npend > 0;
	pthread_mutex_unlock(&ep->lock);
	return ready;
}

void vtoe_ep_sleep_prepare(struct vtoe_sock *s, int depth, uint64_t *wake_ns)
{
	struct vtoe_ep *ep = s->ep;

	pthread_mutex_lock(&ep->lock);
	for (int i = 0; i < ep->n; i++) {
		struct vtoe_ep_item *it = &ep->items[i];
		struct vtoe_sock *t;

		if (!it->live || !it->user || it->disabled || !(t = vtoe_ep_item_get(it)))
			continue;
		if (atomic_load(&t->kind) == VTOE_KIND_CONN)
			vtoe_conn_sleep_prepare(&t->c, (short)(it->events & 0xffff), wake_ns);
		else if (depth < VTOE_EP_MAX_DEPTH)
			vtoe_ep_sleep_prepare(t, depth + 1, wake_ns);
		vtoe_sock_put(t);
	}
	pthread_mutex_unlock(&ep->lock);
}

/* ------------------------------------------------------------------------------------------ */
/* epoll_wait and friends                                                                      */
/* ------------------------------------------------------------------------------------------ */
struct vtoe_ep_call {
	struct vtoe_sock *s;
	int epfd;
	struct epoll_event *out;
	int max, n;
	uint64_t seq;
	bool sectioned; /* inside a read-side section: vtoe_ep_item_pin() */
};

static void vtoe_ep_emit(struct vtoe_ep_call *call, struct vtoe_ep_item *it, uint32_t rev)
{
	it->reported = call->seq;
	call->out[call->n].events = rev;
	call->out[call->n++].data = it->data;
}

/* Kernel events (tokens) into the caller's array: kernel items as the kernel says, ours
 * looked at again with the kernel's bits. */
static void vtoe_ep_translate(struct vtoe_ep_call *call, struct epoll_event *kb, int r)
{
	struct vtoe_ep *ep = call->s->ep;

	for (int i = 0; i < r && call->n < call->max; i++) {
		struct vtoe_ep_item *it = vtoe_ep_untoken(ep, kb[i].data.u64);
		uint32_t rev;

		if (!it) { /* registered behind our back (a raw system call): as it is */
			call->out[call->n++] = kb[i];
			atomic_store_explicit(&ep->kernel_hot, true, memory_order_relaxed);
			continue;
		}
		if (!it->user) {
			vtoe_ep_emit(call, it, kb[i].events);
			atomic_store_explicit(&ep->kernel_hot, true, memory_order_relaxed);
			continue;
		}
		if (it->reported == call->seq)
			continue;
		rev = vtoe_ep_item_eval(it, (int)(kb[i].events & 0xffff), true, 0, call->sectioned);
		if (rev)
			vtoe_ep_emit(call, it, rev);
	}
}

/* One pass, the instance locked: harvested events, then the rings, then (when due) the
 * kernel. */
static int vtoe_ep_collect_locked(struct vtoe_ep_call *call, bool ask_kernel)
{
	struct vtoe_ep *ep = call->s->ep;
	struct epoll_event kb[VTOE_EP_BATCH];

	call->seq = ++ep->calls;
	while (ep->npend && call->n < call->max) {
		call->out[call->n++] = ep->pend[0];
		memmove(&ep->pend[0], &ep->pend[1], (size_t)--ep->npend * sizeof(ep->pend[0]));
	}
	if (ep->nuser && ep->n) {
		int i = (int)(ep->rr++ % (unsigned int)ep->n);

		for (int k = 0; k < ep->n && call->n < call->max; k++, i = i + 1 < ep->n ? i + 1 : 0) {
			struct vtoe_ep_item *it = &ep->items[i];
			uint32_t rev;

			if (!it->live || !it->user)
				continue;
			if (atomic_load(&it->s->incarnation) != it->inc) {
				/* its socket is closed everywhere: the kernel dropped it too */
				vtoe_ep_item_drop(ep, it);
				continue;
			}
			rev = vtoe_ep_item_eval(it, -1, true, 0, call->sectioned);
			if (rev)
				vtoe_ep_emit(call, it, rev);
		}
	}
	if (ask_kernel && call->n < call->max) {
		int want = call->max - call->n, r;

		atomic_store_explicit(&ep->kernel_hot, false, memory_order_relaxed);
		r = REAL(epoll_pwait)(call->epfd, kb, want < VTOE_EP_BATCH ? want : VTOE_EP_BATCH, 0,
				      NULL);
		if (r > 0)
			vtoe_ep_translate(call, kb, r);
	}
	return call->n;
}

static int vtoe_ep_collect(struct vtoe_ep_call *call, bool ask_kernel)
{
	struct vtoe_ep *ep = call->s->ep;
	int n;

	pthread_mutex_lock(&ep->lock);
	n = vtoe_ep_collect_locked(call, ask_kernel);
	pthread_mutex_unlock(&ep->lock);
	return n;
}

/* Ask the kernel now?  At once for an instance with nothing of ours in it, as poll() sends a
 * set with no offloaded fd straight to the kernel, and while a kernel fd's event was in its
 * last answer: a level-triggered fd stays ready until it is drained, and reporting it only
 * every VTOE_POLL_KERNEL_US would hide it from the calls between. */
static bool vtoe_ep_kernel_due(struct vtoe_ep *ep)
{
	return !ep->nuser || atomic_load_explicit(&ep->kernel_hot, memory_order_relaxed) ||
	       vtoe_kernel_due_at(&ep->kernel_ns);
}

static int vtoe_ep_wait(struct vtoe_sock *s, int epfd, struct epoll_event *out, int max,
			const struct timespec *timeout, const sigset_t *sigmask)
{
	struct vtoe_ep_call call = { .s = s, .epfd = epfd, .out = out, .max = max };
	struct vtoe_ep *ep = s->ep;
	struct epoll_event kb[VTOE_EP_BATCH];
	struct timespec deadline, left;
	uint64_t spin_end;
	uint32_t spin_us;
	int r;

	if (vtoe_timeout_zero(timeout))
		return vtoe_ep_collect(&call, vtoe_ep_kernel_due(ep));
	if (timeout)
		vtoe_deadline_in(&deadline, timeout);
	if (vtoe_ep_collect(&call, vtoe_ep_kernel_due(ep)))
		return call.n;
	spin_us = ep->nuser ? vtoe_spin_budget_us() : 0;
	spin_end = vtoe_now_ns() + (uint64_t)spin_us * 1000u;
	while (spin_us && vtoe_now_ns() < spin_end && (!timeout || vtoe_left_ns(&deadline) > 0)) {
		if (vtoe_ep_collect(&call, vtoe_ep_kernel_due(ep))) {
			vtoe_spin_end(true);
			return call.n;
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

		vtoe_ep_sleep_prepare(s, 0, &wake_ns);
		if (vtoe_ep_collect(&call, false)) /* after arming: nothing published is missed */
			return call.n;
		if (timeout && (ns = vtoe_left_ns(&deadline)) < 0)
			ns = 0;
		regrow = vtoe_wake_sooner(wake_ns, &ns);
		if (ns >= 0) {
			left.tv_sec = ns / 1000000000;
			left.tv_nsec = ns % 1000000000;
		}
		r = REAL(epoll_pwait2)(epfd, kb, max < VTOE_EP_BATCH ? max : VTOE_EP_BATCH,
				       ns >= 0 ? &left : NULL, sigmask);
		if (r < 0 && errno == ENOSYS) /* a kernel before 5.11 */
			r = REAL(epoll_pwait)(epfd, kb, max < VTOE_EP_BATCH ? max : VTOE_EP_BATCH,
					      ns >= 0 ? (int)((ns + 999999) / 1000000) : -1, sigmask);
		if (r == 0 && regrow)
			continue; /* a full ring may grow now (vtoe_conn_sleep_prepare) */
		if (r <= 0)
			return r;
		pthread_mutex_lock(&ep->lock);
		call.seq = ++ep->calls;
		vtoe_ep_translate(&call, kb, r);
		pthread_mutex_unlock(&ep->lock);
		if (call.n)
			return call.n;
		if (timeout && ns == 0 && !regrow)
			return 0;
		/* Only our own wake-up edges, with nothing to report: sleep again. */
	}
}

/*
 * A call that does not wait, inside a read-side section: no reference and no atomics but the
 * instance's lock, which it only tries.  -2: not one of our instances (the kernel answers);
 * -3: not answered so (a nested instance, the lock busy, anything unusual): the caller takes
 * the general path.
 */
static __attribute__((noinline)) int vtoe_ep_wait_now(int epfd, struct epoll_event *out, int max)
{
	struct vtoe_ep_call call = { .epfd = epfd, .out = out, .max = max, .sectioned = true };
	struct vtoe_sock *s = vtoe_fd_peek(epfd);
	struct vtoe_rcu_reader *rd;
	struct vtoe_ep *ep;
	int r = -3;

	if (vtoe_likely(!s))
		return -2;
	if (!(rd = vtoe_rcu_read_begin()))
		return -3;
	s = vtoe_fd_peek(epfd); /* again, inside the section */
	if (s && s != &vtoe_internal_sock && atomic_load(&s->kind) == VTOE_KIND_EPOLL &&
	    (ep = s->ep) != NULL && !ep->legacy && s->gen == atomic_load(&vtoe_fork_gen) &&
	    max > 0 && out && (size_t)max <= INT_MAX / sizeof(*out) &&
	    pthread_mutex_trylock(&ep->lock) == 0) {
		if (!ep->nnested) {
			call.s = s;
			r = vtoe_ep_collect_locked(&call, vtoe_ep_kernel_due(ep));
		}
		pthread_mutex_unlock(&ep->lock);
	}
	vtoe_rcu_read_end(rd);
	return r;
}

/* -2: not one of our instances (the caller asks the kernel). */
static int vtoe_ep_wait_common(int epfd, struct epoll_event *out, int max,
			       const struct timespec *timeout, const sigset_t *sigmask)
{
	struct vtoe_sock *s;
	int r, saved;

	if (vtoe_likely(!vtoe_fd_peek(epfd)))
		return -2;
	if (vtoe_timeout_zero(timeout) && (r = vtoe_ep_wait_now(epfd, out, max)) != -3)
		return r;
	s = vtoe_fd_get(epfd);
	if (s == &vtoe_internal_sock) {
		errno = EBADF;
		return -1;
	}
	if (!s || atomic_load(&s->kind) != VTOE_KIND_EPOLL || !s->ep || s->ep->legacy ||
	    s->gen != atomic_load(&vtoe_fork_gen) || max <= 0 || !out ||
	    (size_t)max > INT_MAX / sizeof(*out)) { /* the kernel's errors for these */
		vtoe_sock_put(s);
		return -2;
	}
	r = vtoe_ep_wait(s, epfd, out, max, timeout, sigmask);
	saved = errno;
	vtoe_sock_put(s);
	errno = saved;
	return r;
}

static int vtoe_ep_wait_ms(int epfd, struct epoll_event *out, int max, int timeout,
			   const sigset_t *sigmask)
{
	struct timespec ts = { timeout / 1000, (timeout % 1000) * 1000000L };
	int r = vtoe_ep_wait_common(epfd, out, max, timeout < 0 ? NULL : &ts, sigmask);

	return r == -2 ? REAL(epoll_pwait)(epfd, out, max, timeout, sigmask) : r;
}

VTOE_EXPORT int epoll_pwait(int epfd, struct epoll_event *out, int max, int timeout,
			    const sigset_t *sigmask)
{
	return vtoe_ep_wait_ms(epfd, out, max, timeout, sigmask);
}

VTOE_EXPORT int epoll_wait(int epfd, struct epoll_event *out, int max, int timeout)
{
	return vtoe_ep_wait_ms(epfd, out, max, timeout, NULL);
}

VTOE_EXPORT int epoll_pwait2(int epfd, struct epoll_event *out, int max,
			     const struct timespec *timeout, const sigset_t *sigmask)
{
	int r;

	if (timeout && (timeout->tv_sec < 0 || timeout->tv_nsec < 0 ||
			timeout->tv_nsec >= 1000000000))
		return REAL(epoll_pwait2)(epfd, out, max, timeout, sigmask); /* its EINVAL */
	r = vtoe_ep_wait_common(epfd, out, max, timeout, sigmask);
	return r == -2 ? REAL(epoll_pwait2)(epfd, out, max, timeout, sigmask) : r;
}
