/*
 * shim-fake-agent.c - a minimal stand-in for the vtoe agent, to exercise libvtoe.so by hand.
 *
 * It speaks the control protocol of include/vtoe_abi.h on a SOCK_SEQPACKET socket and builds
 * shm-fabric connections: one region and two doorbell socketpairs per connection.  Only the
 * handshake goes through it; data then flows between the two processes directly.
 *
 *   shim-fake-agent [-r ring_size] [-s spin_us] [-v] SOCKET_PATH
 *
 * Prints "ready" on stdout once it listens.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vtoe_abi.h"

#define MAX_CLIENTS 256
#define MAX_LISTEN 256
#define MAX_PENDING 1024

struct listen_ent {
	int used, client;
	uint32_t sid;
	uint16_t port;
};

struct pending_ent {
	int used;
	uint16_t client_port;
	uint64_t cid;
	int fds[VTOE_FD__COUNT];
};

static struct pollfd pfds[MAX_CLIENTS + 1];
static struct listen_ent listens[MAX_LISTEN];
static struct pending_ent pendings[MAX_PENDING];
static uint32_t next_sid = 1;
static uint64_t next_cid = 1;
static uint32_t ring_size = 256 * 1024;
static uint32_t spin_us = 20;
static int verbose;

#define LOG(...)                                                                           \
	do {                                                                               \
		if (verbose)                                                               \
			fprintf(stderr, "fake-agent: " __VA_ARGS__);                      \
	} while (0)

static void close_fds(int *fds)
{
	for (int i = 0; i < VTOE_FD__COUNT; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

static void reply(int c, const struct vtoe_ctl_req *req, struct vtoe_ctl_rep *rep, int *fds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * VTOE_FD__COUNT)];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { .iov_base = rep, .iov_len = sizeof(*rep) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	rep->magic = VTOE_CTL_MAGIC;
	rep->abi = VTOE_ABI_VERSION;
	rep->seq = req->seq;
	rep->spin_us = spin_us;
	rep->fabric = VTOE_FABRIC_SHM;
	if (fds) {
		struct cmsghdr *cm;

		memset(&cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = sizeof(cbuf.buf);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * VTOE_FD__COUNT);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * VTOE_FD__COUNT);
		rep->nfds = VTOE_FD__COUNT;
	}
	if (sendmsg(c, &msg, MSG_NOSIGNAL) < 0)
		fprintf(stderr, "fake-agent: reply: %s\n", strerror(errno));
}

/* One region and two doorbell pairs; fills the fds of side 0 and side 1. */
static int make_conn(uint64_t cid, int fds0[VTOE_FD__COUNT], int fds1[VTOE_FD__COUNT])
{
	uint64_t len = vtoe_region_bytes(ring_size);
	struct vtoe_conn_region *reg;
	int mfd, a[2], b[2], one = 1;

	mfd = memfd_create("vtoe-conn", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (mfd < 0 || ftruncate(mfd, (off_t)len) < 0)
		return -1;
	fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	reg = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (reg == MAP_FAILED)
		return -1;
	reg->magic = VTOE_REGION_MAGIC;
	reg->abi = VTOE_ABI_VERSION;
	reg->ring_size = ring_size;
	reg->data_offset = VTOE_REGION_DATA_OFFSET;
	reg->cid = cid;
	/* both consumers start out waiting, so the first data rings the bell */
	atomic_store(&reg->ring[0].rx_armed, 1);
	atomic_store(&reg->ring[1].rx_armed, 1);
	munmap(reg, len);

	/* a[0]: side 0's app fd, a[1]: its bell (held by side 1); b likewise for side 1 */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b) < 0)
		return -1;
	setsockopt(a[0], SOL_SOCKET, SO_SNDBUF, &one, sizeof(one));
	setsockopt(b[0], SOL_SOCKET, SO_SNDBUF, &one, sizeof(one));
	fds0[VTOE_FD_REGION] = mfd;
	fds0[VTOE_FD_APP] = a[0];
	fds0[VTOE_FD_PEER_BELL] = b[1];
	fds1[VTOE_FD_REGION] = dup(mfd);
	fds1[VTOE_FD_APP] = b[0];
	fds1[VTOE_FD_PEER_BELL] = a[1];
	return 0;
}

static void handle(int ci, const struct vtoe_ctl_req *req)
{
	int c = pfds[ci].fd;
	struct vtoe_ctl_rep rep;
	int fds0[VTOE_FD__COUNT], fds1[VTOE_FD__COUNT];
	int i;

	memset(&rep, 0, sizeof(rep));
	rep.sid = req->sid;
	switch (req->op) {
	case VTOE_OP_HELLO:
		LOG("HELLO pid %u name %.16s\n", req->arg, req->name);
		reply(c, req, &rep, NULL);
		break;
	case VTOE_OP_OPEN:
		rep.sid = next_sid++;
		LOG("OPEN -> sid %u\n", rep.sid);
		reply(c, req, &rep, NULL);
		break;
	case VTOE_OP_LISTEN:
		for (i = 0; i < MAX_LISTEN && listens[i].used; i++)
			;
		if (i == MAX_LISTEN) {
			rep.event = VTOE_EV_ERROR;
			rep.err = ENOMEM;
		} else {
			listens[i] = (struct listen_ent){ 1, ci, req->sid, req->local.port };
		}
		LOG("LISTEN sid %u port %u\n", req->sid, req->local.port);
		reply(c, req, &rep, NULL);
		break;
	case VTOE_OP_CONNECT:
		for (i = 0; i < MAX_LISTEN; i++)
			if (listens[i].used && listens[i].port == req->remote.port)
				break;
		if (i == MAX_LISTEN) {
			rep.event = VTOE_EV_FALLBACK;
			rep.reason = VTOE_FB_PEER_NOT_OFFLOADED;
			LOG("CONNECT sid %u to port %u: FALLBACK\n", req->sid, req->remote.port);
			reply(c, req, &rep, NULL);
			break;
		}
		for (i = 0; i < MAX_PENDING && pendings[i].used; i++)
			;
		rep.cid = next_cid++;
		if (i == MAX_PENDING || make_conn(rep.cid, fds0, fds1) < 0) {
			rep.event = VTOE_EV_FALLBACK;
			rep.reason = VTOE_FB_RESOURCES;
			reply(c, req, &rep, NULL);
			break;
		}
		pendings[i].used = 1;
		pendings[i].client_port = req->local.port;
		pendings[i].cid = rep.cid;
		memcpy(pendings[i].fds, fds1, sizeof(fds1));
		rep.event = VTOE_EV_CONNECT_RESPONSE;
		rep.side = 0;
		rep.ring_size = ring_size;
		LOG("CONNECT sid %u port %u -> %u: cid %llu\n", req->sid, req->local.port,
		    req->remote.port, (unsigned long long)rep.cid);
		reply(c, req, &rep, fds0);
		close_fds(fds0); /* the agent keeps nothing, so a process death closes the bells */
		break;
	case VTOE_OP_ACCEPT:
		for (i = 0; i < MAX_PENDING; i++)
			if (pendings[i].used && pendings[i].client_port == req->remote.port)
				break;
		if (i == MAX_PENDING) {
			rep.event = VTOE_EV_FALLBACK;
			rep.reason = VTOE_FB_PEER_NOT_OFFLOADED;
			LOG("ACCEPT from port %u: FALLBACK\n", req->remote.port);
			reply(c, req, &rep, NULL);
			break;
		}
		rep.event = VTOE_EV_CONNECT_ESTABLISHED;
		rep.sid = next_sid++;
		rep.cid = pendings[i].cid;
		rep.side = 1;
		rep.ring_size = ring_size;
		LOG("ACCEPT from port %u: cid %llu sid %u\n", req->remote.port,
		    (unsigned long long)rep.cid, rep.sid);
		reply(c, req, &rep, pendings[i].fds);
		close_fds(pendings[i].fds);
		pendings[i].used = 0;
		break;
	case VTOE_OP_CLOSE:
		LOG("CLOSE sid %u cid %llu arg %u\n", req->sid, (unsigned long long)req->cid,
		    req->arg);
		for (i = 0; i < MAX_LISTEN; i++)
			if (listens[i].used && listens[i].client == ci && listens[i].sid == req->sid)
				listens[i].used = 0;
		if (req->arg & VTOE_CLOSE_ABORTED)
			for (i = 0; i < MAX_PENDING; i++)
				if (pendings[i].used && pendings[i].cid == req->cid) {
					close_fds(pendings[i].fds);
					pendings[i].used = 0;
				}
		break;
	case VTOE_OP_ESTABLISH:
	case VTOE_OP_SHUTDOWN:
	case VTOE_OP_FALLBACK:
		LOG("note op %u sid %u cid %llu arg %u\n", req->op, req->sid,
		    (unsigned long long)req->cid, req->arg);
		break;
	default:
		rep.event = VTOE_EV_ERROR;
		rep.err = EINVAL;
		reply(c, req, &rep, NULL);
		break;
	}
}

static void drop_client(int ci)
{
	for (int i = 0; i < MAX_LISTEN; i++)
		if (listens[i].used && listens[i].client == ci)
			listens[i].used = 0;
	close(pfds[ci].fd);
	pfds[ci].fd = -1;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int opt, lfd;

	while ((opt = getopt(argc, argv, "r:s:v")) != -1) {
		switch (opt) {
		case 'r':
			ring_size = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 's':
			spin_us = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'v':
			verbose = 1;
			break;
		default:
			goto usage;
		}
	}
	if (optind != argc - 1 || !vtoe_ring_size_valid(ring_size) ||
	    strlen(argv[optind]) >= sizeof(sun.sun_path))
		goto usage;
	signal(SIGPIPE, SIG_IGN);
	strcpy(sun.sun_path, argv[optind]);
	unlink(sun.sun_path);
	lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(lfd, 64) < 0) {
		perror("fake-agent: listen");
		return 1;
	}
	for (int i = 0; i <= MAX_CLIENTS; i++)
		pfds[i] = (struct pollfd){ .fd = -1, .events = POLLIN };
	pfds[MAX_CLIENTS].fd = lfd;
	printf("ready\n");
	fflush(stdout);

	for (;;) {
		if (poll(pfds, MAX_CLIENTS + 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("fake-agent: poll");
			return 1;
		}
		if (pfds[MAX_CLIENTS].revents & POLLIN) {
			int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			int i;

			for (i = 0; c >= 0 && i < MAX_CLIENTS && pfds[i].fd >= 0; i++)
				;
			if (c >= 0 && i < MAX_CLIENTS)
				pfds[i].fd = c;
			else if (c >= 0)
				close(c);
		}
		for (int i = 0; i < MAX_CLIENTS; i++) {
			struct vtoe_ctl_req req;
			ssize_t n;

			if (pfds[i].fd < 0 || !pfds[i].revents)
				continue;
			n = recv(pfds[i].fd, &req, sizeof(req), MSG_DONTWAIT | MSG_TRUNC); /* real length */
			if (n < 0 && errno == EAGAIN)
				continue;
			if (n != (ssize_t)sizeof(req) || req.magic != VTOE_CTL_MAGIC ||
			    req.abi != VTOE_ABI_VERSION || req.reserved != 0) {
				/* a malformed message closes the channel */
				drop_client(i);
				continue;
			}
			handle(i, &req);
		}
	}
usage:
	fprintf(stderr, "usage: shim-fake-agent [-r ring_size] [-s spin_us] [-v] SOCKET_PATH\n");
	return 2;
}
