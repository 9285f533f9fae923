/*
 * shim-hostile.c - a hostile peer: it speaks the agent protocol itself (no libvtoe.so),
 * connects to a listener whose process runs the shim, publishes some good data and then
 * impossible ring indices.  The shim must report ECONNRESET, never crash or read outside
 * the region.
 *
 *   shim-hostile AGENT_SOCKET PORT head|finat|wakes|bellflood|bellspam
 *
 * bellflood: no lie in the ring; it fills its own fd, whose far end the victim drains when
 * asked (tx_waiting), far beyond what a peer ever leaves there.  A victim that drained until
 * the queue was empty would spin for as long as a peer kept writing; it must take only a
 * bounded amount per read.
 *
 * bellspam: rings its peer's doorbell without end, as fast as the far end takes it.  On the
 * verbs fabric the far end is the agent: an agent that read until the queue was empty would
 * never get back to anyone else.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vtoe_abi.h"

static int ctl;
static uint32_t seq;

/* Fills the victim's doorbell queue (the far end of our own fd) as far as our send buffer
 * lets us, asks the victim to drain it and publishes `hello`; once told on stdin that the
 * victim read it, says how much of the filler the victim left unread. */
static int bellflood(struct vtoe_ring_ctl *tx, unsigned char *data, int *fds)
{
	static char junk[4096];
	int big = 4 << 20, left = -1;
	long filled = 0;
	char line[16];

	setsockopt(fds[VTOE_FD_APP], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	for (ssize_t n; (n = send(fds[VTOE_FD_APP], junk, sizeof(junk), MSG_DONTWAIT | MSG_NOSIGNAL)) > 0;)
		filled += n;
	atomic_store(&tx->tx_waiting, 1);
	memcpy(data, "hello\n", 6);
	atomic_store(&tx->head, 6);
	if (atomic_exchange(&tx->rx_armed, 0) == 1)
		send(fds[VTOE_FD_PEER_BELL], "w", 1, MSG_NOSIGNAL);
	printf("hostile: bellflood written %ld\n", filled);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	ioctl(fds[VTOE_FD_APP], SIOCOUTQ, &left);
	printf("hostile: unread %d\n", left);
	fflush(stdout);
	return 0;
}

/* One request (with send_fd passed along unless it is -1) and its reply. */
static int rpc(struct vtoe_ctl_req *req, int send_fd, struct vtoe_ctl_rep *rep, int *fds)
{
	char cbuf[CMSG_SPACE(sizeof(int) * VTOE_FD__COUNT)];
	char sbuf[CMSG_SPACE(sizeof(int))];
	struct iovec siov = { .iov_base = req, .iov_len = sizeof(*req) };
	struct msghdr smsg = { .msg_iov = &siov, .msg_iovlen = 1 };
	struct iovec iov = { .iov_base = rep, .iov_len = sizeof(*rep) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;

	req->magic = VTOE_CTL_MAGIC;
	req->abi = VTOE_ABI_VERSION;
	req->seq = ++seq;
	if (send_fd >= 0) {
		smsg.msg_control = sbuf;
		smsg.msg_controllen = sizeof(sbuf);
		cm = CMSG_FIRSTHDR(&smsg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &send_fd, sizeof(int));
	}
	if (sendmsg(ctl, &smsg, 0) != sizeof(*req) || recvmsg(ctl, &msg, 0) != sizeof(*rep))
		return -1;
	cm = CMSG_FIRSTHDR(&msg);
	if (fds && cm && cm->cmsg_type == SCM_RIGHTS)
		memcpy(fds, CMSG_DATA(cm), sizeof(int) * VTOE_FD__COUNT);
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct sockaddr_in local = { .sin_family = AF_INET }, remote = { .sin_family = AF_INET };
	socklen_t l = sizeof(local);
	struct vtoe_ctl_req req;
	struct vtoe_ctl_rep rep;
	struct vtoe_conn_region *reg;
	struct vtoe_ring_ctl *tx;
	unsigned char *data;
	int fds[VTOE_FD__COUNT], tcp;
	struct stat st;

	if (argc != 4)
		return fprintf(stderr, "usage: shim-hostile AGENT_SOCKET PORT head|finat|wakes|bellflood|bellspam\n"), 2;
	ctl = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	strncpy(sun.sun_path, argv[1], sizeof(sun.sun_path) - 1);
	if (connect(ctl, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		return perror("agent"), 1;
	memset(&req, 0, sizeof(req));
	req.op = VTOE_OP_HELLO;
	req.arg = (uint32_t)getpid();
	strcpy(req.name, "hostile");
	rpc(&req, -1, &rep, NULL);
	memset(&req, 0, sizeof(req));
	req.op = VTOE_OP_OPEN;
	rpc(&req, -1, &rep, NULL);

	tcp = socket(AF_INET, SOCK_STREAM, 0);
	local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(tcp, (struct sockaddr *)&local, sizeof(local));
	getsockname(tcp, (struct sockaddr *)&local, &l);
	remote.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	remote.sin_port = htons((uint16_t)atoi(argv[2]));

	memset(&req, 0, sizeof(req));
	req.op = VTOE_OP_CONNECT;
	req.sid = rep.sid;
	req.local.family = req.remote.family = AF_INET;
	req.local.port = ntohs(local.sin_port);
	req.remote.port = ntohs(remote.sin_port);
	memcpy(req.local.addr, &local.sin_addr, 4);
	memcpy(req.remote.addr, &remote.sin_addr, 4);
	/* its bound socket is the proof of the port it names */
	if (rpc(&req, tcp, &rep, fds) < 0 || rep.event != VTOE_EV_CONNECT_RESPONSE)
		return fprintf(stderr, "hostile: not offloaded (event %u)\n", rep.event), 1;
	if (connect(tcp, (struct sockaddr *)&remote, sizeof(remote)) < 0)
		return perror("rendezvous"), 1;
	if (fstat(fds[VTOE_FD_REGION], &st) < 0)
		return perror("fstat"), 1;
	reg = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[VTOE_FD_REGION], 0);
	if (reg == MAP_FAILED)
		return perror("mmap"), 1;
	tx = &reg->ring[0];
	data = (unsigned char *)reg + VTOE_REGION_DATA_OFFSET;
	if (!strcmp(argv[3], "bellflood"))
		return bellflood(tx, data, fds);
	if (!strcmp(argv[3], "bellspam")) {
		static char junk[4096];
		printf("hostile: bellspam\n");
		fflush(stdout);
		/* Never asleep: a blocked writer is woken only once most of the queue is read, and
		 * a reader that empties it in one go never meets us refilling it. */
		for (;;) {
			if (send(fds[VTOE_FD_PEER_BELL], junk, sizeof(junk), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 &&
			    errno != EAGAIN && errno != EINTR)
				return 0;
		}
	}

	/* good data first, so the victim has something to read before the lie */
	memcpy(data, "hello\n", 6);
	atomic_store(&tx->head, 6);
	if (atomic_exchange(&tx->rx_armed, 0) == 1) /* by the book, this once */
		send(fds[VTOE_FD_PEER_BELL], "w", 1, MSG_NOSIGNAL);
	/* The lie comes once the victim has read the good data and armed for more. */
	for (int i = 0; i < 10000; i++) {
		struct timespec ms = { 0, 1000000 };

		if (atomic_load(&tx->tail) == 6 && atomic_load(&tx->rx_armed) == 1)
			break;
		nanosleep(&ms, NULL);
	}
	if (!strcmp(argv[3], "head")) {
		/* more than every area holds */
		atomic_store(&tx->head, atomic_load(&tx->tail) + 2 * vtoe_ring_capacity(rep.ring_size, reg->ring_large));
	} else if (!strcmp(argv[3], "finat")) {
		atomic_store(&tx->fin_at, atomic_load(&tx->head) + 12345);
		atomic_store(&tx->fin, 1);
	} else {
		atomic_store(&tx->wakes, 1ull << 40);
		atomic_store(&tx->rx_armed, 0); /* consume the victim's arm, never ring */
	}
	if (strcmp(argv[3], "wakes")) /* wakes: the lie is the missing doorbell */
		send(fds[VTOE_FD_PEER_BELL], "w", 1, MSG_NOSIGNAL);
	printf("hostile: %s written\n", argv[3]);
	fflush(stdout);
	sleep(10); /* keep the bells open: the victim must not rely on our death */
	return 0;
}
