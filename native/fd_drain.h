// Reading what a doorbell socket holds now, without waiting (doorbell bytes, the filler of a
// full ring, a reset fuse), and filling one until it is unwritable.  Shared by the agent's ring
// peers (shm ends, relay, verbs).  Both are bounded: the process at the other end may keep
// writing (or reading) as fast as it can, and the agent's loop serves everyone.
#ifndef VTOE_NATIVE_FD_DRAIN_H
#define VTOE_NATIVE_FD_DRAIN_H

#include <sys/socket.h>

#include <cerrno>
#include <cstddef>

namespace vtoe {

// More than an honest peer can have pending: a socket buffer holds well under this.
constexpr size_t kFdDrainMax = 1024 * 1024;

// Discards what fd holds now, up to kFdDrainMax bytes; false once its peer shut it or closed
// (end of file).
inline bool discard_pending(int fd)
{
	char buf[4096];
	for (size_t budget = kFdDrainMax; budget >= sizeof(buf); budget -= sizeof(buf)) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0 || (n < 0 && errno == EINTR))
			continue;
		return n != 0;
	}
	return true; // more is coming than anyone honest sends: the rest waits for the next call
}

// Writes filler into fd until it is unwritable, or kFdDrainMax bytes (its peer reads as fast).
inline void fill_until_full(int fd)
{
	static const char filler[4096] = {};
	for (size_t budget = kFdDrainMax; budget >= sizeof(filler); budget -= sizeof(filler)) {
		ssize_t n = send(fd, filler, sizeof(filler), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0 || (n < 0 && errno == EINTR))
			continue;
		return;
	}
}

} // namespace vtoe

#endif
