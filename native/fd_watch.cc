#include "fd_watch.h"

#include <string>

#include "system_error.h"

namespace vtoe {

void FdWatch::start(uv_loop_t *loop, int fd, int events, Callback callback)
{
	stop();
	auto *handle = new Handle;
	handle->owner = this;
	int rc = uv_poll_init(loop, &handle->poll, fd);
	if (rc != 0) {
		delete handle;
		throw_system_error(-rc, "cannot watch descriptor " + std::to_string(fd));
	}
	handle->poll.data = handle;
	handle_ = handle;
	callback_ = std::move(callback);
	events_ = -1;
	set_events(events);
}

void FdWatch::set_events(int events)
{
	if (!handle_ || events == events_)
		return;
	events_ = events;
	int rc = events ? uv_poll_start(&handle_->poll, events, on_poll) : uv_poll_stop(&handle_->poll);
	if (rc != 0)
		throw_system_error(-rc, "cannot change a descriptor watch");
}

void FdWatch::stop()
{
	if (!handle_)
		return;
	handle_->owner = nullptr;
	uv_poll_stop(&handle_->poll);
	uv_close(reinterpret_cast<uv_handle_t *>(&handle_->poll),
		 [](uv_handle_t *h) { delete static_cast<Handle *>(h->data); });
	handle_ = nullptr;
	events_ = 0;
}

void FdWatch::on_poll(uv_poll_t *poll, int status, int events)
{
	auto *handle = static_cast<Handle *>(poll->data);
	if (handle->owner)
		handle->owner->callback_(status, events);
}

} // namespace vtoe
