// Checks of control requests received from a process.  Everything a process sends is hostile
// (docs/design.md invariant 5), so a request reaches JavaScript only after every field the agent
// relies on has been checked here.
#ifndef VTOE_NATIVE_CTL_MESSAGE_H
#define VTOE_NATIVE_CTL_MESSAGE_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <sys/socket.h>
#include <vector>

#include "vtoe_abi.h"

namespace vtoe {

// What is wrong with a request of `length` bytes (its real length, even when longer than the
// buffer), or "" when it is acceptable.  Only the first sizeof(vtoe_ctl_req) bytes are read.
std::string ctl_request_violation(const vtoe_ctl_req &req, size_t length);

// Whether a message of `length` bytes got as far as the seq field, so an error reply can echo it.
constexpr bool ctl_seq_readable(size_t length)
{
	return length >= offsetof(vtoe_ctl_req, seq) + sizeof(uint32_t);
}

// The descriptors SCM_RIGHTS headers in msg's control buffer name, in order.  Only bytes within
// msg_controllen are read, whatever a header's length says.
std::vector<int> ctl_passed_fds(const msghdr &msg);

// What the control server does with one received message.
struct CtlVerdict {
	std::string violation; // "" when the request goes to the listener
	bool with_socket;      // and its one descriptor with it
};

// The verdict on a message from what recvmsg returned: its first sizeof(vtoe_ctl_req) bytes, its
// real length, msg_flags, msg_controllen and the number of descriptors that came.  socket_ok:
// exactly one came and it is a socket the request's op may carry (the caller asks the kernel).
CtlVerdict ctl_message_verdict(const vtoe_ctl_req &req, size_t length, int msg_flags,
			       size_t controllen, size_t nfds, bool socket_ok);

// A reply with magic and abi filled in and everything else 0.
vtoe_ctl_rep ctl_reply_template();

} // namespace vtoe

#endif
