/*
 * vtoe_short.c - destinations whose connections the agent keeps on kernel TCP for a while.
 *
 * The agent learns which listeners take only short connections (too short for the set-up of
 * an offload to pay) and answers a CONNECT to one with VTOE_FB_SHORT_LIVED and a time until
 * which it offloads none.  Until then connect() to that destination goes straight to the
 * kernel, without the round trip to the agent.  How many did is told in FALLBACK notes: before
 * the next CONNECT there, every VTOE_SHORT_NOTE_EVERY, and at exit.  A listener's own process
 * is told the same in its ACCEPT replies (vtoe_socket.c).
 */
#include "vtoe.h"

#include <string.h>

#define VTOE_SHORT_SLOTS 64
#define VTOE_SHORT_NOTE_EVERY 1024

struct vtoe_short_dest {
	struct vtoe_sockaddr to;
	uint32_t until_ms; /* 0: free */
	uint32_t skipped;  /* connections made without asking, not yet told */
};

static struct vtoe_short_dest vtoe_short_dests[VTOE_SHORT_SLOTS];
static pthread_mutex_t vtoe_short_lock = PTHREAD_MUTEX_INITIALIZER;

uint32_t vtoe_ms32_now(void)
{
	return (uint32_t)(vtoe_now_ns() / 1000000u);
}

bool vtoe_ms_before(uint32_t now, uint32_t until)
{
	return until != 0 && (int32_t)(until - now) > 0;
}

static struct vtoe_short_dest *vtoe_short_slot(const struct vtoe_sockaddr *to)
{
	const unsigned char *b = (const unsigned char *)to;
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < sizeof(*to); i++)
		h = (h ^ b[i]) * 16777619u;
	return &vtoe_short_dests[h % VTOE_SHORT_SLOTS];
}

/* A slot's count, taken; vtoe_short_lock held. */
static uint32_t vtoe_short_take(struct vtoe_short_dest *d)
{
	uint32_t n = d->skipped;

	d->skipped = 0;
	return n;
}

static void vtoe_short_tell(uint32_t n)
{
	if (n)
		vtoe_ctl_note(VTOE_OP_FALLBACK, 0, n, VTOE_FB_SHORT_LIVED);
}

bool vtoe_short_skip(const struct vtoe_sockaddr *to)
{
	struct vtoe_short_dest *d = vtoe_short_slot(to);
	uint32_t tell = 0;
	bool skip;

	pthread_mutex_lock(&vtoe_short_lock);
	skip = d->until_ms && !memcmp(&d->to, to, sizeof(*to)) &&
	       vtoe_ms_before(vtoe_ms32_now(), d->until_ms);
	if (skip && ++d->skipped == VTOE_SHORT_NOTE_EVERY)
		tell = vtoe_short_take(d);
	pthread_mutex_unlock(&vtoe_short_lock);
	vtoe_short_tell(tell);
	return skip;
}

void vtoe_short_flush(const struct vtoe_sockaddr *to)
{
	struct vtoe_short_dest *d = vtoe_short_slot(to);
	uint32_t tell = 0;

	pthread_mutex_lock(&vtoe_short_lock);
	if (!memcmp(&d->to, to, sizeof(*to)))
		tell = vtoe_short_take(d);
	pthread_mutex_unlock(&vtoe_short_lock);
	vtoe_short_tell(tell);
}

/* At exit (not _exit: a child that only execs or _exits has nothing of its own to tell). */
__attribute__((destructor)) static void vtoe_short_flush_all(void)
{
	uint32_t tell = 0;

	pthread_mutex_lock(&vtoe_short_lock);
	for (int i = 0; i < VTOE_SHORT_SLOTS; i++)
		tell += vtoe_short_take(&vtoe_short_dests[i]);
	pthread_mutex_unlock(&vtoe_short_lock);
	vtoe_short_tell(tell);
}

/* The parent tells its own counts; the child keeps the promises, not the counts. */
void vtoe_short_atfork_child(void)
{
	pthread_mutex_init(&vtoe_short_lock, NULL);
	for (int i = 0; i < VTOE_SHORT_SLOTS; i++)
		(void)vtoe_short_take(&vtoe_short_dests[i]);
}

void vtoe_short_learn(const struct vtoe_sockaddr *to, uint32_t until_ms)
{
	struct vtoe_short_dest *d = vtoe_short_slot(to);
	uint32_t tell = 0;

	pthread_mutex_lock(&vtoe_short_lock);
	if (memcmp(&d->to, to, sizeof(*to))) {
		if (!until_ms)
			goto out;
		tell = vtoe_short_take(d); /* another destination had the slot: tell its count now */
		d->to = *to;
	}
	d->until_ms = until_ms;
out:
	pthread_mutex_unlock(&vtoe_short_lock);
	vtoe_short_tell(tell);
}
