#include "epoll_set.h"

#include <sys/epoll.h>

#include <array>
#include <string>

#include "system_error.h"

namespace vtoe {

EpollSet::EpollSet(uv_loop_t *loop) : epfd_(epoll_create1(EPOLL_CLOEXEC))
{
	if (!epfd_)
		throw_errno("cannot create an epoll instance", "raise the process's descriptor limit");
	auto *handle = new Handle;
	handle->owner = this;
	int rc = uv_poll_init(loop, &handle->poll, epfd_.get());
	if (rc == 0)
		rc = uv_poll_start(&handle->poll, UV_READABLE, on_ready);
	if (rc != 0) {
		uv_close(reinterpret_cast<uv_handle_t *>(&handle->poll),
			 [](uv_handle_t *h) { delete reinterpret_cast<Handle *>(h); });
		throw_system_error(-rc, "cannot watch an epoll instance");
	}
	// Like a uv_poll per watch: the loop stays alive while anything is watched.
	uv_unref(reinterpret_cast<uv_handle_t *>(&handle->poll));
	handle_ = handle;
}

uint64_t EpollSet::add(int fd, uint32_t events, Callback callback)
{
	if (!handle_)
		throw_system_error(EBADF, "the epoll set is closed");
	uint64_t token = next_token_++;
	epoll_event ev{};
	ev.events = events;
	ev.data.u64 = token;
	if (epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
		throw_errno("cannot watch descriptor " + std::to_string(fd));
	watches_.emplace(token, std::move(callback));
	if (watches_.size() == 1)
		uv_ref(reinterpret_cast<uv_handle_t *>(&handle_->poll));
	return token;
}

void EpollSet::remove(uint64_t token, int fd)
{
	if (watches_.erase(token) == 0)
		return;
	// Fails only if fd is no longer open (see the header: stop before closing).
	epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, fd, nullptr);
	if (watches_.empty())
		uv_unref(reinterpret_cast<uv_handle_t *>(&handle_->poll));
}

void EpollSet::close()
{
	if (!handle_)
		return;
	watches_.clear();
	handle_->owner = nullptr;
	uv_close(reinterpret_cast<uv_handle_t *>(&handle_->poll),
		 [](uv_handle_t *h) { delete reinterpret_cast<Handle *>(h); });
	handle_ = nullptr;
	epfd_.reset();
}

void EpollSet::on_ready(uv_poll_t *poll, int, int)
{
	auto *handle = reinterpret_cast<Handle *>(poll);
	if (handle->owner)
		handle->owner->dispatch();
}

void EpollSet::dispatch()
{
	std::array<epoll_event, 64> events;
	int n = epoll_wait(epfd_.get(), events.data(), static_cast<int>(events.size()), 0);
	for (int i = 0; i < n && handle_; i++) {
		// A callback may end other watches, this one's included: look each up afresh.
		auto it = watches_.find(events[i].data.u64);
		if (it == watches_.end())
			continue;
		Callback callback = it->second; // a copy: the callback may remove itself
		callback(events[i].events);
	}
}

void EpollWatch::start(EpollSet &set, int fd, uint32_t events, EpollSet::Callback callback)
{
	stop();
	token_ = set.add(fd, events, std::move(callback));
	set_ = &set;
	fd_ = fd;
}

void EpollWatch::stop()
{
	if (!set_)
		return;
	set_->remove(token_, fd_);
	set_ = nullptr;
}

} // namespace vtoe
