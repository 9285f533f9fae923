/*
 * vtoe_tcpinfo.c - getsockopt(TCP_INFO) of an offloaded connection, in the kernel's layout.
 *
 * Programs read tcpi_state to tell a live connection from one the peer has closed (connection
 * pools do), and the byte counters to report throughput.  The state follows the FINs and the
 * reset in the rings as TCP's follows them on the wire; the counters are the rings' indices.
 * The struct is the kernel's (linux/tcp.h), longer than glibc's: a program built against
 * either gets the fields it asked for, up to what this kernel would return.
 */
#include "vtoe.h"

#include <linux/tcp.h>
#include <string.h>

/* tcpi_state's values: the kernel's TCP states (include/net/tcp_states.h), also those of
 * /proc/net/tcp; glibc's netinet/tcp.h has them, but not the kernel's longer struct. */
enum {
	VTOE_TCP_ESTABLISHED = 1,
	VTOE_TCP_FIN_WAIT1 = 4,
	VTOE_TCP_FIN_WAIT2 = 5,
	VTOE_TCP_CLOSE = 7,
	VTOE_TCP_CLOSE_WAIT = 8,
};

/*
 * A socket that has sent its FIN and received the peer's is CLOSE however it got there (the
 * kernel hands the first closer's TIME_WAIT to a socket of its own and leaves the program's
 * CLOSE).  A FIN behind data the peer has not read is not acknowledged yet: FIN_WAIT1 (the
 * kernel may stay there longer, until the peer's delayed ACK; its timing is not copied).
 */
static uint8_t vtoe_tcp_state(struct vtoe_conn *c)
{
	unsigned int fl = atomic_load(&c->flags);
	bool peer_fin = atomic_load_explicit(&c->rx->fin, memory_order_acquire) != 0;

	if (vtoe_conn_reset_seen(c))
		return VTOE_TCP_CLOSE;
	if (!(fl & VTOE_CF_WR_SHUT))
		return peer_fin ? VTOE_TCP_CLOSE_WAIT : VTOE_TCP_ESTABLISHED;
	if (peer_fin)
		return VTOE_TCP_CLOSE;
	return atomic_load_explicit(&c->tx->tail, memory_order_acquire) <
			       atomic_load_explicit(&c->tx->fin_at, memory_order_relaxed)
		       ? VTOE_TCP_FIN_WAIT1
		       : VTOE_TCP_FIN_WAIT2;
}

int vtoe_conn_tcp_info(struct vtoe_conn *c, uint32_t mss, void *optval, socklen_t *optlen)
{
	struct tcp_info ti;
	socklen_t len;
	uint64_t sent, received;

	memset(&ti, 0, sizeof(ti));
	ti.tcpi_state = vtoe_tcp_state(c);
	ti.tcpi_snd_mss = ti.tcpi_rcv_mss = ti.tcpi_advmss = mss;
	ti.tcpi_snd_cwnd = 10; /* the kernel's initial window, which a ring never needs to grow */
	ti.tcpi_reordering = 3;
	/* Counted as the kernel counts sequence space: a byte is acknowledged once it is in the
	 * peer's ring (the ring is the peer's receive buffer), the active end's SYN is acknowledged
	 * too, and a FIN received counts as a byte received. */
	sent = atomic_load_explicit(&c->tx->head, memory_order_relaxed);
	received = atomic_load_explicit(&c->rx->head, memory_order_acquire);
	ti.tcpi_bytes_sent = sent;
	ti.tcpi_bytes_acked = sent + (c->side == 0);
	ti.tcpi_bytes_received = received + (atomic_load_explicit(&c->rx->fin, memory_order_acquire) != 0);
	len = *optlen < sizeof(ti) ? *optlen : (socklen_t)sizeof(ti); /* *optlen >= 0: checked */
	memcpy(optval, &ti, len);
	*optlen = len;
	return 0;
}
