#include "shm_region_pool.h"

#include <pthread.h>
#include <sched.h>

#include <exception>
#include <string>

#include "system_error.h"

namespace vtoe {

ShmRegionPool::ShmRegionPool(uint32_t ring_size, uint32_t ring_large, size_t depth)
	: ring_size_(ring_size), ring_large_(ring_large), depth_(depth)
{
	if (!vtoe_ring_size_valid(ring_size) || !vtoe_ring_large_valid(ring_large, ring_size))
		throw_system_error(EINVAL, "ring sizes " + std::to_string(ring_size) + "/" +
						   std::to_string(ring_large) + " are invalid",
				   "use the sizes the connections are made with");
	thread_ = std::thread([this] { run(); });
}

ShmRegionPool::~ShmRegionPool()
{
	stop();
}

void ShmRegionPool::stop()
{
	{
		std::lock_guard<std::mutex> lock(mutex_);
		if (stopping_ && !thread_.joinable())
			return;
		stopping_ = true;
	}
	wanted_.notify_all();
	if (thread_.joinable())
		thread_.join();
	std::lock_guard<std::mutex> lock(mutex_);
	ready_.clear();
}

std::unique_ptr<ShmConnection> ShmRegionPool::take(uint32_t ring_size, uint32_t ring_large, uint64_t cid)
{
	std::unique_ptr<ShmConnection> made;
	{
		std::lock_guard<std::mutex> lock(mutex_);
		if (stopping_)
			return nullptr;
		if (ring_size == ring_size_ && ring_large == ring_large_ && !ready_.empty()) {
			made = std::move(ready_.front());
			ready_.pop_front();
			taken_++;
		}
		failed_ = false;
	}
	wanted_.notify_one();
	if (made)
		made->set_cid(cid);
	return made;
}

size_t ShmRegionPool::ready() const
{
	std::lock_guard<std::mutex> lock(mutex_);
	return ready_.size();
}

uint64_t ShmRegionPool::taken() const
{
	std::lock_guard<std::mutex> lock(mutex_);
	return taken_;
}

uint64_t ShmRegionPool::failures() const
{
	std::lock_guard<std::mutex> lock(mutex_);
	return failures_;
}

void ShmRegionPool::run()
{
	// Only on a core nothing else wants: competing with the processes a reply just woke would
	// cost more than the calls it saves (where the kernel refuses, it runs as any thread).
	sched_param idle{};
	pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle);
	std::unique_lock<std::mutex> lock(mutex_);
	for (;;) {
		wanted_.wait(lock, [this] { return stopping_ || (!failed_ && ready_.size() < depth_); });
		if (stopping_)
			return;
		lock.unlock();
		std::unique_ptr<ShmConnection> made;
		try {
			made = std::make_unique<ShmConnection>(ring_size_, ring_large_, 0);
		} catch (const std::exception &) {
			// Out of descriptors or memory: the loop thread will meet the same error when
			// it makes one itself, and say so; this thread tries again after the next take.
		}
		lock.lock();
		if (made)
			ready_.push_back(std::move(made));
		else {
			failed_ = true;
			failures_++;
		}
	}
}

} // namespace vtoe
