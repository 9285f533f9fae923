// EpollSet: many descriptors watched through one epoll instance, itself a single uv_poll on
// the loop.  Starting or stopping a watch is one epoll_ctl, where a uv_poll handle of its own
// costs seven system calls over its life (libuv probes the descriptor with an add and a
// remove, sets O_NONBLOCK, adds it, and removes it twice).  For the agent's many short-lived
// watches: two per offloaded connection.  Level-triggered; the loop's thread only.
#ifndef VTOE_NATIVE_EPOLL_SET_H
#define VTOE_NATIVE_EPOLL_SET_H

#include <uv.h>

#include <cstdint>
#include <functional>
#include <unordered_map>

#include "unique_fd.h"

namespace vtoe {

class EpollSet {
public:
	// events: the epoll(7) bits that fired (EPOLLERR and EPOLLHUP whether asked for or not).
	using Callback = std::function<void(uint32_t events)>;

	// Throws SystemError.  close() it before the loop closes; watches may still stop after.
	explicit EpollSet(uv_loop_t *loop);
	~EpollSet() { close(); }
	EpollSet(const EpollSet &) = delete;
	EpollSet &operator=(const EpollSet &) = delete;

	// Watches fd for `events` (EPOLLIN, EPOLLRDHUP, ...); returns the watch's token, never 0.
	// Throws SystemError.
	uint64_t add(int fd, uint32_t events, Callback callback);
	// Ends the watch `token` of fd: its callback is never called again.  Idempotent.  Call it
	// while fd is still open: epoll keeps a registration as long as the open file lives, and
	// the agent's descriptors have copies in other processes.
	void remove(uint64_t token, int fd);
	// Stops every watch and closes the uv handle; add() refuses from then on.
	void close();

private:
	struct Handle {
		uv_poll_t poll;
		EpollSet *owner;
	};
	static void on_ready(uv_poll_t *poll, int status, int events);
	void dispatch();

	unique_fd epfd_;
	Handle *handle_ = nullptr;
	std::unordered_map<uint64_t, Callback> watches_;
	uint64_t next_token_ = 1;
};

// A watch of one descriptor in an EpollSet, stopped by its destructor at the latest.
class EpollWatch {
public:
	EpollWatch() = default;
	~EpollWatch() { stop(); }
	EpollWatch(const EpollWatch &) = delete;
	EpollWatch &operator=(const EpollWatch &) = delete;

	// Throws SystemError.  The set must outlive the watch, or close() first.
	void start(EpollSet &set, int fd, uint32_t events, EpollSet::Callback callback);
	void stop();

private:
	EpollSet *set_ = nullptr;
	uint64_t token_ = 0;
	int fd_ = -1;
};

} // namespace vtoe

#endif
