/*
 * ctl-client: a control-channel client for test/native.test.ts.
 *
 *   ctl-client SOCKET SCENARIO
 *
 * Scenarios: valid, truncated, oversize, badmagic, badop, withfds, hold, noread, stale.
 * Everything it learns is printed as one line per fact, which the test waits on.
 */
#define _GNU_SOURCE /* strerrorname_np */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "vtoe_abi.h"

static void die(const char *what)
{
	printf("fatal %s errno=%d\n", what, errno);
	fflush(stdout);
	exit(1);
}

static struct sockaddr_un address_of(const char *path)
{
	struct sockaddr_un addr;
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	strncpy(addr.sun_path, path, sizeof(addr.sun_path) - 1);
	return addr;
}

static int connect_to(const char *path)
{
	struct sockaddr_un addr = address_of(path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
		die("connect");
	return fd;
}

static struct vtoe_ctl_req request(uint16_t op, uint32_t seq)
{
	struct vtoe_ctl_req req;
	memset(&req, 0, sizeof(req));
	req.magic = VTOE_CTL_MAGIC;
	req.abi = VTOE_ABI_VERSION;
	req.op = op;
	req.seq = seq;
	if (op == VTOE_OP_HELLO) {
		req.arg = (uint32_t)getpid();
		strcpy(req.name, "ctl-client");
	}
	return req;
}

static void send_bytes(int fd, const void *bytes, size_t len)
{
	if (send(fd, bytes, len, MSG_NOSIGNAL) != (ssize_t)len)
		die("send");
}

static void describe_region(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		die("fstat");
	void *map = mmap(NULL, VTOE_REGION_DATA_OFFSET, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		die("mmap");
	struct vtoe_conn_region *r = map;
	printf("region size=%lld magic=0x%08x abi=%u ring=%u data=%u cid=0x%llx armed=%u,%u\n",
	       (long long)st.st_size, r->magic, r->abi, r->ring_size, r->data_offset,
	       (unsigned long long)r->cid, atomic_load(&r->ring[0].rx_armed),
	       atomic_load(&r->ring[1].rx_armed));
	munmap(map, VTOE_REGION_DATA_OFFSET);
	/* The region is sealed: a process must not be able to shrink it under the others. */
	printf("shrink=%s\n", ftruncate(fd, 0) == 0 ? "allowed" : strerrorname_np(errno));
}

static const char *fd_type(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return "bad";
	if (S_ISREG(st.st_mode))
		return "regular";
	if (S_ISSOCK(st.st_mode))
		return "socket";
	return "other";
}

/* Reads one reply and prints it; returns 0 at EOF. */
static int read_reply(int fd)
{
	struct vtoe_ctl_rep rep;
	union {
		struct cmsghdr align;
		char bytes[CMSG_SPACE(8 * sizeof(int))];
	} control;
	struct iovec iov = {&rep, sizeof(rep)};
	struct msghdr msg;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control.bytes;
	msg.msg_controllen = sizeof(control.bytes);
	ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
	if (n == 0 || (n < 0 && errno == ECONNRESET)) {
		printf("eof\n");
		fflush(stdout);
		return 0;
	}
	if (n != (ssize_t)sizeof(rep))
		die("recvmsg");
	printf("reply event=%u seq=%u err=%d nfds=%u magic=%s\n", rep.event, rep.seq, rep.err,
	       rep.nfds, rep.magic == VTOE_CTL_MAGIC && rep.abi == VTOE_ABI_VERSION ? "ok" : "bad");
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < count; i++) {
			int passed;
			memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			printf("fd %zu %s\n", i, fd_type(passed));
			if (i == VTOE_FD_REGION)
				describe_region(passed);
			close(passed);
		}
	}
	fflush(stdout);
	return 1;
}

static void read_until_eof(int fd)
{
	while (read_reply(fd))
		;
}

static void scenario_valid(int fd)
{
	struct vtoe_ctl_req hello = request(VTOE_OP_HELLO, 1);
	send_bytes(fd, &hello, sizeof(hello));
	read_reply(fd);

	/* A CONNECT carrying both address families, for the conversion checks. */
	struct vtoe_ctl_req connect_req = request(VTOE_OP_CONNECT, 2);
	connect_req.sid = 7;
	connect_req.cid = 0x1122334455667788ull;
	connect_req.arg = 42;
	connect_req.local.family = AF_INET;
	connect_req.local.port = 40000;
	inet_pton(AF_INET, "127.0.0.1", connect_req.local.addr);
	connect_req.remote.family = AF_INET6;
	connect_req.remote.port = 5001;
	connect_req.remote.scope_id = 3;
	inet_pton(AF_INET6, "fe80::1", connect_req.remote.addr);
	send_bytes(fd, &connect_req, sizeof(connect_req));
	read_reply(fd);
}

static void send_malformed(int fd, const char *scenario)
{
	struct vtoe_ctl_req req = request(VTOE_OP_HELLO, 40);
	unsigned char big[200];
	if (strcmp(scenario, "truncated") == 0) {
		send_bytes(fd, &req, 40);
	} else if (strcmp(scenario, "oversize") == 0) {
		memset(big, 0, sizeof(big));
		memcpy(big, &req, sizeof(req));
		send_bytes(fd, big, sizeof(big));
	} else if (strcmp(scenario, "badmagic") == 0) {
		req.magic = 0xdeadbeef;
		send_bytes(fd, &req, sizeof(req));
	} else if (strcmp(scenario, "badop") == 0) {
		req.op = 99;
		send_bytes(fd, &req, sizeof(req));
	} else if (strcmp(scenario, "withfds") == 0) {
		int passed = open("/dev/null", O_RDONLY | O_CLOEXEC);
		union {
			struct cmsghdr align;
			char bytes[CMSG_SPACE(sizeof(int))];
		} control;
		memset(&control, 0, sizeof(control));
		struct iovec iov = {&req, sizeof(req)};
		struct msghdr msg;
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = &iov;
		msg.msg_iovlen = 1;
		msg.msg_control = control.bytes;
		msg.msg_controllen = sizeof(control.bytes);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &passed, sizeof(int));
		if (sendmsg(fd, &msg, MSG_NOSIGNAL) != (ssize_t)sizeof(req))
			die("sendmsg");
		close(passed);
	} else {
		printf("fatal unknown scenario %s\n", scenario);
		exit(2);
	}
	printf("sent\n");
	fflush(stdout);
	read_until_eof(fd);
}

/* Stays connected; each line on stdin sends one more OPEN and prints its reply. */
static void scenario_hold(int fd)
{
	uint32_t seq = 1;
	struct vtoe_ctl_req hello = request(VTOE_OP_HELLO, seq++);
	send_bytes(fd, &hello, sizeof(hello));
	read_reply(fd);
	char line[256];
	while (fgets(line, sizeof(line), stdin)) {
		struct vtoe_ctl_req open_req = request(VTOE_OP_OPEN, seq++);
		send_bytes(fd, &open_req, sizeof(open_req));
		if (!read_reply(fd))
			return;
	}
}

/* Sends requests without reading any reply, until the agent gives up on it. */
static void scenario_noread(int fd)
{
	uint32_t seq;
	for (seq = 1; seq <= 100000; seq++) {
		struct vtoe_ctl_req req = request(VTOE_OP_OPEN, seq);
		if (send(fd, &req, sizeof(req), MSG_NOSIGNAL) != (ssize_t)sizeof(req)) {
			printf("send-failed seq=%u errno=%s\n", seq, strerrorname_np(errno));
			fflush(stdout);
			return;
		}
	}
	printf("sent-all\n");
	fflush(stdout);
}

/* Leaves a socket file behind that nobody listens on, as a crashed agent would. */
static void make_stale(const char *path)
{
	struct sockaddr_un addr = address_of(path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
		die("bind");
	printf("stale\n");
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s SOCKET SCENARIO\n", argv[0]);
		return 2;
	}
	const char *path = argv[1];
	const char *scenario = argv[2];
	if (strcmp(scenario, "stale") == 0) {
		make_stale(path);
		return 0;
	}
	int fd = connect_to(path);
	printf("connected pid=%d\n", (int)getpid());
	fflush(stdout);
	if (strcmp(scenario, "valid") == 0)
		scenario_valid(fd);
	else if (strcmp(scenario, "hold") == 0)
		scenario_hold(fd);
	else if (strcmp(scenario, "noread") == 0)
		scenario_noread(fd);
	else
		send_malformed(fd, scenario);
	close(fd);
	return 0;
}
