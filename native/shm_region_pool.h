// Connection regions made ahead of time, on a thread of their own.  Making one (a sealed
// memfd, its mapping, two doorbell socketpairs armed with their fuses) is a dozen system
// calls; made on the loop thread, they delay the CONNECT reply.  A pool keeps `depth` made,
// and its thread (SCHED_IDLE: only on a core nothing else wants) makes the next one while the
// loop thread answers.  It sleeps on a condition variable whenever the pool is full: no cost
// when idle.  On a saturated host the pool runs dry and the loop thread makes its own.
#ifndef VTOE_NATIVE_SHM_REGION_POOL_H
#define VTOE_NATIVE_SHM_REGION_POOL_H

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "shm_connection.h"

namespace vtoe {

class ShmRegionPool {
public:
	// Throws SystemError EINVAL for sizes ShmConnection would refuse (checked here, at once,
	// rather than by the thread later).
	ShmRegionPool(uint32_t ring_size, uint32_t ring_large, size_t depth);
	~ShmRegionPool();
	ShmRegionPool(const ShmRegionPool &) = delete;
	ShmRegionPool &operator=(const ShmRegionPool &) = delete;

	// A made connection of these sizes with `cid` written in, or nullptr when none is ready
	// (the caller makes one itself); either way the thread makes the next.
	std::unique_ptr<ShmConnection> take(uint32_t ring_size, uint32_t ring_large, uint64_t cid);

	// Stops the thread and closes what it made.  Idempotent.
	void stop();

	size_t ready() const;
	// Connections handed out made ahead.
	uint64_t taken() const;
	// Connections the thread could not make (fd limit, memory); it waits for the next take.
	uint64_t failures() const;

private:
	void run();

	const uint32_t ring_size_;
	const uint32_t ring_large_;
	const size_t depth_;
	mutable std::mutex mutex_;
	std::condition_variable wanted_;
	std::deque<std::unique_ptr<ShmConnection>> ready_;
	bool stopping_ = false;
	bool failed_ = false; // the last attempt failed: no retry before the next take
	uint64_t failures_ = 0;
	uint64_t taken_ = 0;
	std::thread thread_;
};

} // namespace vtoe

#endif
