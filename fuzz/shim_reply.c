/*
 * Hostile input: what comes back on the control channel from whatever answers at the agent's
 * path (an agent with a bug, one of another version, a process squatting the path before the
 * shim's SO_PEERCRED check is passed): a datagram of any length and content, with any number
 * of descriptors, or none at all, or the end of the channel.  The shim's reply check
 * (vtoe_ctl_recv_reply) must accept only a whole reply to the request it sent, with exactly
 * the descriptors it announces (at most VTOE_FD__COUNT), and close every descriptor of a reply
 * it refuses: a process must not run out of descriptors because an agent misbehaved.
 *
 * The reply goes through a real SOCK_SEQPACKET socketpair, with real descriptors attached, so
 * the kernel builds the control data as it does for the agent's.
 */
#include "vtoe.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_ATTACH 12 /* beyond the shim's room for VTOE_FD__COUNT: the kernel truncates */
#define FD_SCAN 64 /* well above what a harness holds open: new ones take the lowest numbers */

static int devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	setenv("VTOE_LOG_FILE", "/dev/null", 0);
	setenv("VTOE_LOG_LEVEL", "debug", 0);
	vtoe_log_init();
	return devnull < 0;
}

/* Which of the first FD_SCAN descriptors are open. */
static void open_fds(unsigned char open_now[FD_SCAN])
{
	for (int fd = 0; fd < FD_SCAN; fd++)
		open_now[fd] = fcntl(fd, F_GETFD) >= 0;
}

static void send_reply(int to, const uint8_t *bytes, size_t len, int nattach)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * MAX_ATTACH)];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { .iov_base = (void *)bytes, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	int fds[MAX_ATTACH];

	for (int i = 0; i < nattach; i++)
		fds[i] = fcntl(devnull, F_DUPFD_CLOEXEC, 0);
	if (nattach) {
		struct cmsghdr *cm;

		memset(&cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nattach);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nattach);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nattach);
	}
	(void)sendmsg(to, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	for (int i = 0; i < nattach; i++)
		close(fds[i]); /* in flight now, or never sent */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char before[FD_SCAN], after[FD_SCAN];
	struct vtoe_ctl_rep rep;
	int sv[2], fds[VTOE_FD__COUNT], r, e;
	uint32_t seq;
	uint8_t mode;

	/* Byte 0: what the other end does and how many descriptors go along; bytes 1-4: the seq
	 * the shim waits for; the rest: the datagram(s). */
	if (size < 5)
		return 0;
	mode = data[0];
	memcpy(&seq, data + 1, 4);
	data += 5;
	size -= 5;

	open_fds(before);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	if (mode & 1) {
		/* One datagram or two (a stale reply first), each with descriptors. */
		size_t first = mode & 2 ? size / 2 : size;
		uint8_t *reply = malloc(first + 1);

		memcpy(reply, data, first);
		/* A plausible header, so that the fuzzer need not find magic and seq by itself. */
		if ((mode & 4) && first >= sizeof(struct vtoe_ctl_rep)) {
			struct vtoe_ctl_rep h;

			memcpy(&h, reply, sizeof(h));
			h.magic = VTOE_CTL_MAGIC;
			h.abi = VTOE_ABI_VERSION;
			h.seq = seq;
			memcpy(reply, &h, sizeof(h));
		}
		send_reply(sv[1], reply, first, (mode >> 3) % (MAX_ATTACH + 1));
		if (mode & 2)
			send_reply(sv[1], data + first, size - first, (mode >> 5) % 4);
		free(reply);
	}
	if (mode & 128)
		close(sv[1]); /* the agent went away */

	memset(&rep, 0, sizeof(rep));
	/* Already due: nothing sent means a timeout at once, not a wait. */
	r = vtoe_ctl_recv_reply(sv[0], seq, &rep, fds, 0);
	e = errno;
	if (r == 0) {
		/* Accepted: a whole reply to this request, its descriptors exactly the announced. */
		int n = 0;

		if (rep.magic != VTOE_CTL_MAGIC || rep.abi != VTOE_ABI_VERSION || rep.seq != seq ||
		    rep.nfds > VTOE_FD__COUNT)
			abort();
		for (int i = 0; i < VTOE_FD__COUNT; i++) {
			if (fds[i] >= 0 && fcntl(fds[i], F_GETFD) < 0)
				abort(); /* handed a descriptor that is not open */
			if (fds[i] >= 0)
				n++;
		}
		if ((uint32_t)n != rep.nfds)
			abort();
		for (int i = 0; i < VTOE_FD__COUNT; i++)
			if (fds[i] >= 0)
				close(fds[i]);
	} else if (e != EPROTO && e != EMFILE && e != ECONNRESET && e != ETIMEDOUT) {
		abort(); /* a failure the caller does not expect */
	}
	close(sv[0]);
	if (!(mode & 128))
		close(sv[1]);

	/* Every descriptor that arrived was handed over (and closed above) or closed by the shim. */
	open_fds(after);
	if (memcmp(before, after, sizeof(before)) != 0)
		abort();
	return 0;
}
