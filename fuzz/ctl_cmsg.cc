// Hostile input: the control buffer recvmsg hands the agent with a request, with any headers
// and lengths in it.  The kernel writes it, so this models a kernel or libc that gets it wrong;
// ctl_passed_fds must still read nothing outside msg_controllen and find every descriptor an
// honest SCM_RIGHTS header names.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sys/socket.h>
#include <vector>

#include "../native/ctl_message.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	// Exactly the fuzzer's bytes, on the heap (malloc aligns for cmsghdr), so a read past them
	// is an ASan report.
	void *control = size ? malloc(size) : nullptr;
	if (size)
		memcpy(control, data, size);
	msghdr msg;
	memset(&msg, 0, sizeof(msg));
	msg.msg_control = control;
	msg.msg_controllen = size;

	std::vector<int> fds = vtoe::ctl_passed_fds(msg);

	// No more descriptors than the buffer has room for.
	if (fds.size() * sizeof(int) > size)
		abort();
	// A first header that is an honest SCM_RIGHTS one yields its descriptors, in order.
	if (size >= CMSG_LEN(0)) {
		const auto *c = static_cast<const cmsghdr *>(control);
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len >= CMSG_LEN(0) && c->cmsg_len <= size) {
			size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			if (fds.size() < n || (n && memcmp(fds.data(), CMSG_DATA(c), n * sizeof(int)) != 0))
				abort();
		}
	}
	free(control);
	return 0;
}
