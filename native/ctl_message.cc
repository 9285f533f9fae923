#include "ctl_message.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <sys/socket.h>

namespace vtoe {

namespace {

std::string format(const char *fmt, unsigned long long value)
{
	char text[128];
	snprintf(text, sizeof(text), fmt, value);
	return text;
}

std::string sockaddr_violation(const char *which, const vtoe_sockaddr &addr)
{
	if (addr.family == 0 || addr.family == AF_INET || addr.family == AF_INET6)
		return {};
	return std::string(which) + format(" address has family %llu, expected 0, AF_INET or AF_INET6",
					   addr.family);
}

} // namespace

std::string ctl_request_violation(const vtoe_ctl_req &req, size_t length)
{
	if (length != sizeof(vtoe_ctl_req))
		return format("message of %llu bytes", length) + ", expected " +
		       std::to_string(sizeof(vtoe_ctl_req));
	if (req.magic != VTOE_CTL_MAGIC)
		return format("bad magic 0x%08llx", req.magic);
	if (req.abi != VTOE_ABI_VERSION)
		return format("ABI version %llu", req.abi) + ", the agent speaks " +
		       std::to_string(VTOE_ABI_VERSION);
	if (req.op < VTOE_OP_HELLO || req.op >= VTOE_OP__COUNT)
		return format("unknown op %llu", req.op);
	if (req.reserved != 0)
		return format("reserved field is 0x%llx, expected 0", req.reserved);
	std::string bad = sockaddr_violation("local", req.local);
	if (bad.empty())
		bad = sockaddr_violation("remote", req.remote);
	if (!bad.empty())
		return bad;
	if (memchr(req.name, '\0', sizeof(req.name)) == nullptr)
		return "name is not NUL-terminated within its 16 bytes";
	return {};
}

std::vector<int> ctl_passed_fds(const msghdr &msg)
{
	std::vector<int> fds;
	const unsigned char *start = static_cast<const unsigned char *>(msg.msg_control);
	const unsigned char *end = start + msg.msg_controllen;

	for (const cmsghdr *c = CMSG_FIRSTHDR(&msg); c;
	     c = CMSG_NXTHDR(const_cast<msghdr *>(&msg), const_cast<cmsghdr *>(c))) {
		if (c->cmsg_len < CMSG_LEN(0))
			break; // the kernel never writes one; nothing after it can be found
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		const unsigned char *data = CMSG_DATA(c);
		size_t room = data <= end ? static_cast<size_t>(end - data) : 0;
		size_t n = std::min(static_cast<size_t>(c->cmsg_len - CMSG_LEN(0)), room) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, data + i * sizeof(int), sizeof(int));
			fds.push_back(fd);
		}
	}
	return fds;
}

CtlVerdict ctl_message_verdict(const vtoe_ctl_req &req, size_t length, int msg_flags,
			       size_t controllen, size_t nfds, bool socket_ok)
{
	const bool truncated = (msg_flags & MSG_CTRUNC) != 0;
	const bool with_socket = nfds == 1 && socket_ok && !truncated && length == sizeof(vtoe_ctl_req);
	if ((controllen > 0 || truncated) && !with_socket)
		return {"ancillary data is not allowed (" + std::to_string(nfds) +
				" descriptors attached)",
			false};
	if (length == 0)
		return {"empty message", false};
	return {ctl_request_violation(req, length), with_socket};
}

vtoe_ctl_rep ctl_reply_template()
{
	vtoe_ctl_rep rep;
	memset(&rep, 0, sizeof(rep));
	rep.magic = VTOE_CTL_MAGIC;
	rep.abi = VTOE_ABI_VERSION;
	return rep;
}

} // namespace vtoe
