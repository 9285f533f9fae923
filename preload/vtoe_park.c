/*
 * vtoe_park.c - closing the server's end of kernel rendezvous connections in the right order.
 */
#include "vtoe.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#define VTOE_PARK_MAX 64
#define VTOE_PARK_MS 10000

/*
 * The server's end of a kernel rendezvous connection must be closed after the client's end,
 * so TIME_WAIT lands on the client's ephemeral port, as after any client-closed connection,
 * and never on the listening port (a server restarting without SO_REUSEADDR could not bind
 * it again).  The client closes right after its connect() returns; if its FIN is not here
 * yet, the socket is parked on an internal fd and closed by a later sweep once the FIN came
 * (or after VTOE_PARK_MS), so accept() never waits for the client.
 */
static struct {
	int fd;
	long long until_ms;
} vtoe_parked[VTOE_PARK_MAX];
static int vtoe_nparked;
static pthread_mutex_t vtoe_park_lock = PTHREAD_MUTEX_INITIALIZER;

static long long vtoe_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool vtoe_fin_seen(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };

	return vtoe_kpoll(&p, 1, 0) != 0; /* RDHUP, HUP, ERR, or a bad fd: nothing left to wait for */
}

static void vtoe_unpark_locked(int i)
{
	vtoe_fd_set_internal(vtoe_parked[i].fd, false);
	REAL(close)(vtoe_parked[i].fd);
	vtoe_parked[i] = vtoe_parked[--vtoe_nparked];
}

/* Close parked rendezvous sockets whose client has closed (or that waited long enough). */
void vtoe_park_sweep(void)
{
	long long now;

	if (!__atomic_load_n(&vtoe_nparked, __ATOMIC_RELAXED))
		return;
	now = vtoe_ms();
	pthread_mutex_lock(&vtoe_park_lock);
	for (int i = vtoe_nparked - 1; i >= 0; i--)
		if (now >= vtoe_parked[i].until_ms || vtoe_fin_seen(vtoe_parked[i].fd))
			vtoe_unpark_locked(i);
	pthread_mutex_unlock(&vtoe_park_lock);
}

/* Keep the accepted kernel socket cfd open until the client's FIN, unless it is here. */
void vtoe_park_rendezvous(int cfd)
{
	int fd;

	/* Short of descriptors, the program's need comes first: TIME_WAIT may land on the
	 * listening port then (SO_REUSEADDR servers do not mind). */
	if (vtoe_fin_seen(cfd) || atomic_load(&vtoe_fds_short))
		return;
	fd = REAL(fcntl)(cfd, F_DUPFD_CLOEXEC, vtoe_cfg.internal_fd_base);
	if (fd < 0)
		return;
	vtoe_fd_set_internal(fd, true);
	pthread_mutex_lock(&vtoe_park_lock);
	if (vtoe_nparked == VTOE_PARK_MAX)
		vtoe_unpark_locked(0);
	vtoe_parked[vtoe_nparked].fd = fd;
	vtoe_parked[vtoe_nparked].until_ms = vtoe_ms() + VTOE_PARK_MS;
	vtoe_nparked++;
	pthread_mutex_unlock(&vtoe_park_lock);
}

void vtoe_park_atfork_child(void)
{
	pthread_mutex_init(&vtoe_park_lock, NULL);
}

bool vtoe_park_fd_rehome(int from, int to)
{
	bool found = false;

	pthread_mutex_lock(&vtoe_park_lock);
	for (int i = 0; i < vtoe_nparked && !found; i++)
		found = vtoe_fd_swap(&vtoe_parked[i].fd, from, to);
	pthread_mutex_unlock(&vtoe_park_lock);
	return found;
}
