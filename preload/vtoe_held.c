/*
 * vtoe_held.c - destinations whose connections the agent keeps on kernel TCP for a while.
 *
 * The agent answers a CONNECT it will not offload with a time until which it will offload no
 * connection to that destination: a listener that takes only short connections (too short for
 * the set-up of an offload to pay), a server without the shim, a policy rule, a host no fabric
 * reaches.  Until then connect() to that destination goes straight to the kernel, without the
 * bind and the round trip to the agent.  How many did, and why, is told in FALLBACK notes:
 * before the next CONNECT there, every VTOE_HELD_NOTE_EVERY, and at exit.  A listener's own
 * process is told the same in its ACCEPT replies (vtoe_socket.c).
 */
#include "vtoe.h"

#include <string.h>

#define VTOE_HELD_SLOTS 64
#define VTOE_HELD_NOTE_EVERY 1024

struct vtoe_held_dest {
	struct vtoe_sockaddr to;
	uint32_t until_ms; /* 0: free */
	uint32_t reason;   /* enum vtoe_fallback_reason the agent gave */
	uint32_t skipped;  /* connections made without asking, not yet told */
};

static struct vtoe_held_dest vtoe_held_dests[VTOE_HELD_SLOTS];
static pthread_mutex_t vtoe_held_lock = PTHREAD_MUTEX_INITIALIZER;

uint32_t vtoe_ms32_now(void)
{
	return (uint32_t)(vtoe_now_ns() / 1000000u);
}

bool vtoe_ms_before(uint32_t now, uint32_t until)
{
	return until != 0 && (int32_t)(until - now) > 0;
}

static struct vtoe_held_dest *vtoe_held_slot(const struct vtoe_sockaddr *to)
{
	const unsigned char *b = (const unsigned char *)to;
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < sizeof(*to); i++)
		h = (h ^ b[i]) * 16777619u;
	return &vtoe_held_dests[h % VTOE_HELD_SLOTS];
}

/* What a slot counted and has not told yet. */
struct vtoe_held_count {
	uint32_t n, reason;
};

/* A slot's count, taken; vtoe_held_lock held. */
static struct vtoe_held_count vtoe_held_take(struct vtoe_held_dest *d)
{
	struct vtoe_held_count c = { d->skipped, d->reason };

	d->skipped = 0;
	return c;
}

static void vtoe_held_tell(struct vtoe_held_count c)
{
	if (c.n && c.reason > VTOE_FB_NONE && c.reason < VTOE_FB__COUNT)
		vtoe_ctl_note(VTOE_OP_FALLBACK, 0, c.n, c.reason);
}

bool vtoe_held_skip(const struct vtoe_sockaddr *to)
{
	struct vtoe_held_dest *d = vtoe_held_slot(to);
	struct vtoe_held_count tell = { 0, 0 };
	bool skip;

	pthread_mutex_lock(&vtoe_held_lock);
	skip = d->until_ms && !memcmp(&d->to, to, sizeof(*to)) &&
	       vtoe_ms_before(vtoe_ms32_now(), d->until_ms);
	if (skip && ++d->skipped == VTOE_HELD_NOTE_EVERY)
		tell = vtoe_held_take(d);
	pthread_mutex_unlock(&vtoe_held_lock);
	vtoe_held_tell(tell);
	return skip;
}

void vtoe_held_flush(const struct vtoe_sockaddr *to)
{
	struct vtoe_held_dest *d = vtoe_held_slot(to);
	struct vtoe_held_count tell = { 0, 0 };

	pthread_mutex_lock(&vtoe_held_lock);
	if (!memcmp(&d->to, to, sizeof(*to)))
		tell = vtoe_held_take(d);
	pthread_mutex_unlock(&vtoe_held_lock);
	vtoe_held_tell(tell);
}

/* At exit (not _exit: a child that only execs or _exits has nothing of its own to tell): one
 * note per reason. */
__attribute__((destructor)) static void vtoe_held_flush_all(void)
{
	uint32_t by_reason[VTOE_FB__COUNT] = { 0 };

	pthread_mutex_lock(&vtoe_held_lock);
	for (int i = 0; i < VTOE_HELD_SLOTS; i++) {
		struct vtoe_held_count c = vtoe_held_take(&vtoe_held_dests[i]);

		if (c.reason < VTOE_FB__COUNT)
			by_reason[c.reason] += c.n;
	}
	pthread_mutex_unlock(&vtoe_held_lock);
	for (uint32_t r = VTOE_FB_NONE + 1; r < VTOE_FB__COUNT; r++)
		vtoe_held_tell((struct vtoe_held_count){ by_reason[r], r });
}

/* The parent tells its own counts; the child keeps the promises, not the counts. */
void vtoe_held_atfork_child(void)
{
	pthread_mutex_init(&vtoe_held_lock, NULL);
	for (int i = 0; i < VTOE_HELD_SLOTS; i++)
		(void)vtoe_held_take(&vtoe_held_dests[i]);
}

void vtoe_held_learn(const struct vtoe_sockaddr *to, uint32_t until_ms, uint32_t reason)
{
	struct vtoe_held_dest *d = vtoe_held_slot(to);
	struct vtoe_held_count tell = { 0, 0 };

	pthread_mutex_lock(&vtoe_held_lock);
	if (memcmp(&d->to, to, sizeof(*to))) {
		if (!until_ms)
			goto out;
		d->to = *to;
	}
	/* another destination had the slot, or another reason: tell its count now */
	tell = vtoe_held_take(d);
	d->until_ms = until_ms;
	d->reason = reason;
out:
	pthread_mutex_unlock(&vtoe_held_lock);
	vtoe_held_tell(tell);
}
