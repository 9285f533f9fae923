/*
 * agent-flood - one process that sends the agent control messages as fast as it can, to show
 * that it cannot starve anyone else (the agent serves each client a batch per turn).
 *
 *   agent-flood AGENT_SOCKET notes|opens|spin
 *
 * notes: FALLBACK notes back to back (no reply; a well-formed message the agent must count).
 * opens: OPEN (a reply with a new socket ID) then CLOSE of it, back to back.
 * spin:  the control: as busy, but never a word to the agent (what CPU load alone costs).
 * Prints "FLOODING" once it has said HELLO, then floods until killed.
 */
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vtoe_abi.h"

static int ctl;
static uint32_t seq;

static void fill(struct vtoe_ctl_req *req, uint16_t op)
{
	memset(req, 0, sizeof(*req));
	req->magic = VTOE_CTL_MAGIC;
	req->abi = VTOE_ABI_VERSION;
	req->op = op;
	req->seq = ++seq;
}

/* Sends one message, waiting only while the agent's queue for us is full. */
static int put(const struct vtoe_ctl_req *req)
{
	for (;;) {
		if (send(ctl, req, sizeof(*req), MSG_DONTWAIT | MSG_NOSIGNAL) == sizeof(*req))
			return 0;
		struct pollfd p = { .fd = ctl, .events = POLLOUT };
		if (poll(&p, 1, 5000) <= 0 || (p.revents & (POLLHUP | POLLERR)))
			return -1;
	}
}

static int rpc(struct vtoe_ctl_req *req, struct vtoe_ctl_rep *rep)
{
	return put(req) == 0 && recv(ctl, rep, sizeof(*rep), 0) == sizeof(*rep) ? 0 : -1;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct vtoe_ctl_req req;
	struct vtoe_ctl_rep rep;
	int opens;

	if (argc != 3 || (strcmp(argv[2], "notes") != 0 && strcmp(argv[2], "opens") != 0 &&
			  strcmp(argv[2], "spin") != 0))
		return fprintf(stderr, "usage: agent-flood AGENT_SOCKET notes|opens|spin\n"), 2;
	if (strcmp(argv[2], "spin") == 0) {
		printf("FLOODING\n");
		fflush(stdout);
		for (volatile unsigned long n = 0;; n++) {
		}
	}
	opens = argv[2][0] == 'o';
	ctl = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	strncpy(sun.sun_path, argv[1], sizeof(sun.sun_path) - 1);
	if (connect(ctl, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		return perror("agent-flood: agent"), 1;
	fill(&req, VTOE_OP_HELLO);
	req.arg = (uint32_t)getpid();
	strcpy(req.name, opens ? "flood-opens" : "flood-notes");
	if (rpc(&req, &rep) < 0)
		return fprintf(stderr, "agent-flood: no HELLO reply\n"), 1;
	printf("FLOODING\n");
	fflush(stdout);
	for (;;) {
		if (opens) {
			fill(&req, VTOE_OP_OPEN);
			if (rpc(&req, &rep) < 0)
				break;
			uint32_t sid = rep.sid;
			fill(&req, VTOE_OP_CLOSE);
			req.sid = sid;
		} else {
			fill(&req, VTOE_OP_FALLBACK);
			req.arg = VTOE_FB_POLICY;
		}
		if (put(&req) < 0)
			break;
	}
	fprintf(stderr, "agent-flood: the agent hung up\n");
	return 1;
}
