// FdWatch: one uv_poll on a descriptor the caller owns, with a C++ callback.
//
// libuv frees a poll handle only after its close callback has run, which can be after the
// watcher's owner is gone; so the handle lives on the heap and forgets its owner on stop.
#ifndef VTOE_NATIVE_FD_WATCH_H
#define VTOE_NATIVE_FD_WATCH_H

#include <uv.h>

#include <functional>

namespace vtoe {

class FdWatch {
public:
	// events: UV_READABLE | UV_WRITABLE | UV_DISCONNECT; status < 0 is a libuv error.
	using Callback = std::function<void(int status, int events)>;

	FdWatch() = default;
	~FdWatch() { stop(); }
	FdWatch(const FdWatch &) = delete;
	FdWatch &operator=(const FdWatch &) = delete;

	// Starts watching `fd`, or changes the events of a running watch.  Throws SystemError.
	void start(uv_loop_t *loop, int fd, int events, Callback callback);
	void set_events(int events);
	int events() const { return events_; }
	bool active() const { return handle_ != nullptr; }
	// Stops and closes the handle; the callback is never called again.  Idempotent.
	void stop();

private:
	struct Handle {
		uv_poll_t poll;
		FdWatch *owner;
	};
	static void on_poll(uv_poll_t *poll, int status, int events);

	Handle *handle_ = nullptr;
	Callback callback_;
	int events_ = 0;
};

} // namespace vtoe

#endif
