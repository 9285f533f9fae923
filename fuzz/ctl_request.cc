// Hostile input: any datagram a local process can send on the agent's control socket, of any
// length, with any recvmsg flags and any number of descriptors attached.  The agent's checks
// (ctl_message_verdict, ctl_request_violation) must accept exactly the well-formed requests,
// and what they accept must be safe for the handlers to read (the name as a C string).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sys/socket.h>

#include "../native/ctl_message.h"

namespace {

bool family_ok(uint16_t f)
{
	return f == 0 || f == AF_INET || f == AF_INET6;
}

// The contract, stated independently of the code under test.
bool well_formed(const vtoe_ctl_req &r, size_t length)
{
	return length == sizeof(r) && r.magic == VTOE_CTL_MAGIC && r.abi == VTOE_ABI_VERSION &&
	       r.op >= VTOE_OP_HELLO && r.op < VTOE_OP__COUNT && r.reserved == 0 &&
	       family_ok(r.local.family) && family_ok(r.remote.family) &&
	       memchr(r.name, 0, sizeof(r.name)) != nullptr;
}

// Features of their own (libFuzzer's extra counters) for what the checks do not branch on, the
// op and the name's length, so that requests differing only there are kept and a name grows to
// its end.
__attribute__((used, section("__libfuzzer_extra_counters"))) uint8_t extra[VTOE_OP__COUNT + 17];

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	// A 4-byte prefix says what recvmsg reported besides the bytes; the rest is the message.
	if (size < 4)
		return 0;
	const int flags = (data[0] & 1 ? MSG_CTRUNC : 0) | (data[0] & 2 ? MSG_TRUNC : 0);
	const size_t nfds = data[1] % 20;
	const size_t controllen = nfds ? CMSG_SPACE(nfds * sizeof(int)) : (data[0] & 4 ? 24 : 0);
	const bool socket_ok = data[2] & 1;
	// The real length may exceed what was read (MSG_TRUNC): data[3] * 256 bytes more.
	const size_t beyond = static_cast<size_t>(data[3]) << 8;
	data += 4;
	size -= 4;

	// Exactly the struct's bytes on the heap, so any read past it is an ASan report; bytes the
	// message did not have stay 0, as in the agent's zeroed buffer.
	auto *req = static_cast<vtoe_ctl_req *>(calloc(1, sizeof(vtoe_ctl_req)));
	memcpy(req, data, size < sizeof(*req) ? size : sizeof(*req));
	const size_t length = size + beyond;
	extra[req->op % VTOE_OP__COUNT] = 1;
	extra[VTOE_OP__COUNT + strnlen(req->name, sizeof(req->name))] = 1;

	vtoe::CtlVerdict v = vtoe::ctl_message_verdict(*req, length, flags, controllen, nfds, socket_ok);
	if (v.violation.empty()) {
		// What js_control_server.cc does with an accepted request's name.
		volatile size_t n = strlen(req->name);
		(void)n;
	}
	const bool ancillary_ok = (controllen == 0 && !(flags & MSG_CTRUNC)) ||
				  (nfds == 1 && socket_ok && !(flags & MSG_CTRUNC));
	if (v.violation.empty() != (ancillary_ok && well_formed(*req, length)))
		abort();
	if (v.with_socket && nfds != 1)
		abort();
	if (vtoe::ctl_request_violation(*req, length).empty() != well_formed(*req, length))
		abort();
	if (vtoe::ctl_seq_readable(length) != (length >= 12))
		abort();
	free(req);
	return 0;
}
