#include "ctl_message.h"

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

vtoe_ctl_rep ctl_reply_template()
{
	vtoe_ctl_rep rep;
	memset(&rep, 0, sizeof(rep));
	rep.magic = VTOE_CTL_MAGIC;
	rep.abi = VTOE_ABI_VERSION;
	return rep;
}

} // namespace vtoe
