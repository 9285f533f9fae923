#include "shm_relay.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>

#include "fd_drain.h"
#include "system_error.h"

namespace vtoe {

namespace {

constexpr auto ACQ = std::memory_order_acquire;
constexpr auto REL = std::memory_order_release;
constexpr auto RLX = std::memory_order_relaxed;

// Turns of pump() per event: one busy connection must not hold the agent's loop.
constexpr int kTurns = 32;

} // namespace

ShmRelay::ShmRelay(uv_loop_t *loop, ShmConnection &conn, unique_fd ksock, Done done)
	: loop_(loop), conn_(conn), ksock_(std::move(ksock)), done_(std::move(done))
{
	if (!ksock_)
		throw_system_error(EBADF, "the relay needs the client's kernel socket");
	app_ = conn_.take_app(1); // side 0's bell stays the connection's (its end watch polls it)
	make_room_for_backlog();
	ksock_watch_.start(loop_, ksock_.get(), 0, [this](int, int) { pump(); });
	app_watch_.start(loop_, app_.get(), 0, [this](int status, int events) {
		if (status >= 0 && (events & UV_WRITABLE))
			ring1_blocked_ = false; // the client drained our filler: room in ring 1
		pump();
	});
	pump();
}

ShmRelay::~ShmRelay()
{
	ksock_watch_.stop();
	app_watch_.stop();
	if (more_) {
		uv_close(reinterpret_cast<uv_handle_t *>(more_),
			 [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
		more_ = nullptr;
	}
}

// What the client wrote before the relay began would have been in its kernel's send queue long
// ago, and at the server in one piece: room for all of it in the socket, so one send moves it.
// (A fresh socket's send buffer is small, and a server that answers the first part would meet
// a closed client's reset before the rest.)
void ShmRelay::make_room_for_backlog()
{
	vtoe_ring_ctl &r = conn_.mapping().ring[0];
	const int64_t used = vtoe_ring_used(r.head.load(ACQ), r.tail.load(RLX), conn_.ring_capacity());
	int have = 0;
	socklen_t len = sizeof(have);
	if (used <= 0 || getsockopt(ksock_.get(), SOL_SOCKET, SO_SNDBUF, &have, &len) != 0)
		return;
	// The kernel doubles what it is given (for its own overhead) and caps it at wmem_max.
	if (used > have / 2) {
		int want = static_cast<int>(std::min<int64_t>(used, INT32_MAX / 2));
		setsockopt(ksock_.get(), SOL_SOCKET, SO_SNDBUF, &want, sizeof(want));
	}
}

void ShmRelay::pump()
{
	if (finished_)
		return;
	drain_app();
	bool progress = true;
	for (int turn = 0; turn < kTurns && progress && !finished_; turn++)
		progress = pump_out() | pump_in();
	if (finished_)
		return;
	if (out_done_ && in_done_)
		return finish(Outcome::fin);
	if (progress)
		schedule_more();
	update_watches();
}

// The client's doorbells (and, once it shut its bell, end of file) arrive on side 1's fd.
void ShmRelay::drain_app()
{
	if (!discard_pending(app_.get()))
		app_eof_ = true;
}

// The client's tx_block filled its own fd; what it wrote waits in its bell.
void ShmRelay::drain_client_filler()
{
	int bell = conn_.bell_fd(0);
	if (bell >= 0)
		discard_pending(bell);
}

bool ShmRelay::pump_out()
{
	vtoe_ring_ctl &r = conn_.mapping().ring[0];
	if (out_done_)
		return false;
	if (r.reset.load(ACQ)) {
		finish(Outcome::reset);
		return false;
	}
	const uint64_t tail = r.tail.load(RLX);
	const int64_t used = vtoe_ring_used(r.head.load(ACQ), tail, conn_.ring_capacity());
	const uint64_t geo = r.geo.load(RLX); // after head: it and base cover every byte published
	const uint64_t base = r.base.load(RLX);
	const int area = vtoe_geo_area(geo, tail);
	const uint32_t area_size = vtoe_geo_area_size(geo, conn_.ring_size(), conn_.ring_large(), area);
	if (used < 0 || area_size == 0) { // an impossible index from the client: it is broken
		reset_client();
		finish(Outcome::reset);
		return false;
	}
	if (used > 0) {
		const size_t off = vtoe_area_index(tail, base, area, area_size);
		const size_t n = std::min<uint64_t>(static_cast<uint64_t>(used), vtoe_geo_run(geo, tail, off, area_size));
		ssize_t w = send(ksock_.get(), conn_.area_data(0, area) + off, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			return true;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ksock_blocked_ = true;
			return false;
		}
		if (w < 0) { // the server's socket is gone: a reset, as TCP would report
			reset_client();
			finish(Outcome::reset);
			return false;
		}
		ksock_blocked_ = false;
		r.tail.store(tail + static_cast<uint64_t>(w), REL);
		std::atomic_thread_fence(std::memory_order_seq_cst);
		if (r.tx_waiting.load(RLX) && r.tx_waiting.exchange(0) == 1)
			drain_client_filler();
		return true;
	}
	if (r.fin.load(ACQ) && r.fin_at.load(RLX) == tail) {
		shutdown(ksock_.get(), SHUT_WR);
		out_done_ = true;
		return true;
	}
	// Empty: ask for a doorbell, then look again (Dekker with the shim's vtoe_wake_peer).
	r.rx_armed.store(1);
	std::atomic_thread_fence(std::memory_order_seq_cst);
	return r.head.load(ACQ) != tail || r.fin.load(ACQ) || r.reset.load(ACQ);
}

bool ShmRelay::pump_in()
{
	vtoe_ring_ctl &r = conn_.mapping().ring[1];
	const uint32_t size = conn_.ring_size();
	if (in_done_ || ring1_blocked_)
		return false;
	if (r.rd_shut.load(ACQ)) {
		// The client closed.  All it wrote goes first (its kernel would have sent it before
		// any answer came back), the server's bytes meanwhile dropped unread as a closed
		// socket's are; after that, data from the server is answered with a reset, as the
		// kernel answers data for a closed socket.
		char sink[4096];
		ssize_t n = recv(ksock_.get(), sink, out_done_ ? 1 : sizeof(sink),
				 MSG_DONTWAIT | (out_done_ ? MSG_PEEK : 0));
		if (n > 0 && out_done_) {
			finish(Outcome::reset);
			return false;
		}
		if (n > 0)
			return true;
		if (n == 0) {
			in_done_ = true;
			return true;
		}
		return false;
	}
	const uint64_t head = r.head.load(RLX);
	const int64_t used = vtoe_ring_used(head, r.tail.load(ACQ), size);
	if (used < 0) {
		reset_client();
		finish(Outcome::reset);
		return false;
	}
	if (static_cast<uint64_t>(used) == size) {
		block_on_ring1();
		return !ring1_blocked_;
	}
	const size_t off = vtoe_area_index(head, r.base.load(RLX), 0, size);
	const size_t room = std::min<size_t>(size - static_cast<size_t>(used), size - off);
	ssize_t n = recv(ksock_.get(), conn_.ring_data(1) + off, room, MSG_DONTWAIT);
	if (n < 0 && errno == EINTR)
		return true;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return false;
	if (n < 0) { // the server reset the connection
		reset_client();
		finish(Outcome::reset);
		return false;
	}
	if (n == 0) { // the server's FIN, after its data
		r.fin_at.store(head, RLX);
		r.fin.store(1, REL);
		wake_client();
		const bool both = conn_.mapping().ring[0].fin.load(ACQ) != 0;
		int bell = conn_.bell_fd(0);
		if (bell >= 0)
			shutdown(bell, both ? SHUT_RDWR : SHUT_WR);
		if (both)
			shutdown(app_.get(), SHUT_WR);
		in_done_ = true;
		return true;
	}
	r.head.store(head + static_cast<uint64_t>(n), REL);
	wake_client();
	return true;
}

// As the shim's vtoe_tx_block: our fd unwritable, tx_waiting set; the client's next read
// drains the filler and makes it writable again.
void ShmRelay::block_on_ring1()
{
	vtoe_ring_ctl &r = conn_.mapping().ring[1];
	fill_until_full(app_.get());
	r.tx_waiting.store(1);
	std::atomic_thread_fence(std::memory_order_seq_cst);
	ring1_blocked_ = vtoe_ring_used(r.head.load(RLX), r.tail.load(ACQ), conn_.ring_size()) ==
			 static_cast<int64_t>(conn_.ring_size());
	if (!ring1_blocked_)
		r.tx_waiting.exchange(0); // room appeared meanwhile; a stale filler is harmless
}

void ShmRelay::wake_client()
{
	vtoe_ring_ctl &r = conn_.mapping().ring[1];
	std::atomic_thread_fence(std::memory_order_seq_cst);
	if (!r.rx_armed.load(RLX) || r.rx_armed.exchange(0) != 1)
		return;
	r.wakes.fetch_add(1);
	int bell = conn_.bell_fd(0);
	if (bell < 0 || send(bell, "w", 1, MSG_DONTWAIT | MSG_NOSIGNAL) != 1)
		r.wakes.fetch_sub(1); // EAGAIN: bytes are pending anyway; EPIPE: the client is gone
}

void ShmRelay::reset_client()
{
	conn_.mapping().ring[1].reset.store(1, REL);
	wake_client();
}

void ShmRelay::update_watches()
{
	int k = 0, a = 0;
	if (!in_done_ && !ring1_blocked_)
		k |= UV_READABLE;
	if (ksock_blocked_)
		k |= UV_WRITABLE;
	if (!app_eof_)
		a |= UV_READABLE;
	if (ring1_blocked_)
		a |= UV_WRITABLE;
	ksock_watch_.set_events(k);
	app_watch_.set_events(a);
}

// The relay's one timer, made on first use: a later turn of pump(), or the done report.
void ShmRelay::run_soon(uv_timer_cb cb)
{
	if (!more_) {
		more_ = new uv_timer_t;
		uv_timer_init(loop_, more_);
		more_->data = this;
	}
	uv_timer_start(more_, cb, 0, 0);
}

void ShmRelay::schedule_more()
{
	run_soon([](uv_timer_t *t) { static_cast<ShmRelay *>(t->data)->pump(); });
}

void ShmRelay::finish(Outcome how)
{
	if (finished_)
		return;
	finished_ = true;
	ksock_watch_.stop();
	app_watch_.stop();
	if (more_)
		uv_timer_stop(more_);
	if (how == Outcome::reset) {
		linger lg = {1, 0}; // an RST to the server, as the client's kernel would send
		setsockopt(ksock_.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	ksock_.reset();
	app_.reset(); // side 1's last copy: the agent's end watch sees it closed
	// Told from a timer callback of its own, never from inside pump(): the one told may
	// destroy the relay.
	outcome_ = how;
	run_soon([](uv_timer_t *t) {
		auto *self = static_cast<ShmRelay *>(t->data);
		Done done = std::move(self->done_);
		if (done)
			done(self->outcome_); // may destroy the relay: nothing after it
	});
}

} // namespace vtoe
