// Reading what a doorbell socket holds now, without waiting: doorbell bytes, the filler of a
// full ring, a reset fuse.  Shared by the agent's ring peers (shm ends, relay, verbs).
#ifndef VTOE_NATIVE_FD_DRAIN_H
#define VTOE_NATIVE_FD_DRAIN_H

#include <sys/socket.h>

#include <cerrno>

namespace vtoe {

// Discards everything fd holds now; false once its peer shut it or closed (end of file).
inline bool discard_pending(int fd)
{
	char buf[4096];
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0 || (n < 0 && errno == EINTR))
			continue;
		return n != 0;
	}
}

} // namespace vtoe

#endif
