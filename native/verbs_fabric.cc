#include "verbs_fabric.h"

#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "fd_drain.h"
#include "system_error.h"

namespace vtoe {

namespace {

const char *qp_state_name(ibv_qp_state s)
{
	switch (s) {
	case IBV_QPS_RESET: return "RESET";
	case IBV_QPS_INIT: return "INIT";
	case IBV_QPS_RTR: return "RTR";
	case IBV_QPS_RTS: return "RTS";
	case IBV_QPS_ERR: return "ERR";
	default: return "another state";
	}
}

void copy_addr(sockaddr_storage &to, const sockaddr *from)
{
	std::memset(&to, 0, sizeof(to));
	if (!from)
		return;
	size_t len = from->sa_family == AF_INET6 ? sizeof(sockaddr_in6)
		     : from->sa_family == AF_INET ? sizeof(sockaddr_in)
						  : 0;
	std::memcpy(&to, from, len);
}

// librdmacm returns -1 with errno set.
void check_cm(int rc, const std::string &what, const std::string &advice = std::string())
{
	if (rc != 0)
		throw_errno(what, advice);
}

} // namespace

VerbsFabric::VerbsFabric(uv_loop_t *loop, VerbsFabricListener &listener)
	: loop_(loop), listener_(listener)
{
	channel_ = rdma_create_event_channel();
	if (!channel_) {
		int err = errno;
		throw_system_error(err == ENOENT ? ENODEV : err, "rdma_cm is not available",
				   "no RDMA device or the rdma_ucm module is not loaded: run "
				   "`vtoe doctor`; for Soft-RoCE: modprobe rdma_rxe && rdma link add "
				   "rxe0 type rxe netdev IFACE");
	}
	int flags = fcntl(channel_->fd, F_GETFL);
	if (flags < 0 || fcntl(channel_->fd, F_SETFL, flags | O_NONBLOCK) != 0) {
		int err = errno;
		rdma_destroy_event_channel(channel_);
		channel_ = nullptr;
		throw_system_error(err, "cannot make the rdma_cm event channel nonblocking");
	}
	try {
		channel_watch_.start(loop_, channel_->fd, UV_READABLE, [this](int, int) { on_channel(); });
	} catch (...) {
		rdma_destroy_event_channel(channel_);
		channel_ = nullptr;
		throw;
	}
}

VerbsFabric::~VerbsFabric()
{
	close();
}

void VerbsFabric::close()
{
	if (!channel_)
		return;
	channel_watch_.stop();
	stop_spinning();
	if (spin_idle_) {
		uv_close(reinterpret_cast<uv_handle_t *>(spin_idle_),
			 [](uv_handle_t *h) { delete reinterpret_cast<uv_idle_t *>(h); });
		spin_idle_ = nullptr;
	}
	while (!ids_.empty())
		destroy(ids_.begin()->first);
	relays_.clear();
	devices_.clear();
	rdma_destroy_event_channel(channel_);
	channel_ = nullptr;
	queue_.clear();
	if (flush_timer_) {
		uv_timer_stop(flush_timer_);
		uv_close(reinterpret_cast<uv_handle_t *>(flush_timer_),
			 [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
		flush_timer_ = nullptr;
	}
}

VerbsFabric::Entry &VerbsFabric::entry(uint32_t handle)
{
	auto it = ids_.find(handle);
	if (it == ids_.end())
		throw_system_error(EBADF, "verbs handle " + std::to_string(handle) + " does not exist");
	return it->second;
}

VerbsConn &VerbsFabric::conn(uint32_t handle)
{
	Entry &e = entry(handle);
	if (!e.conn)
		throw_system_error(EBADF, "verbs handle " + std::to_string(handle) + " has no QP yet",
				   "call createQp first");
	return *e.conn;
}

uint32_t VerbsFabric::add(rdma_cm_id *id)
{
	while (next_handle_ == 0 || ids_.count(next_handle_))
		next_handle_++;
	uint32_t handle = next_handle_++;
	id->context = reinterpret_cast<void *>(static_cast<uintptr_t>(handle));
	ids_[handle] = Entry{id, nullptr};
	return handle;
}

uint32_t VerbsFabric::listen(const sockaddr *addr, int backlog)
{
	rdma_cm_id *id = nullptr;
	check_cm(rdma_create_id(channel_, &id, nullptr, RDMA_PS_TCP), "rdma_create_id failed");
	if (rdma_bind_addr(id, const_cast<sockaddr *>(addr)) != 0 || rdma_listen(id, backlog) != 0) {
		int err = errno;
		rdma_destroy_id(id);
		throw_system_error(err, "cannot listen for rdma_cm connections",
				   err == EADDRINUSE ? "another agent listens there: set VTOE_RDMA_PORT"
						     : "check `vtoe doctor`: is the address on an RDMA port?");
	}
	return add(id);
}

uint32_t VerbsFabric::resolve(const sockaddr *dst, int timeout_ms)
{
	rdma_cm_id *id = nullptr;
	check_cm(rdma_create_id(channel_, &id, nullptr, RDMA_PS_TCP), "rdma_create_id failed");
	uint32_t handle = add(id);
	if (rdma_resolve_addr(id, nullptr, const_cast<sockaddr *>(dst), timeout_ms) != 0) {
		int err = errno;
		destroy(handle);
		throw_system_error(err, "rdma_resolve_addr failed");
	}
	return handle;
}

void VerbsFabric::resolve_route(uint32_t handle, int timeout_ms)
{
	check_cm(rdma_resolve_route(entry(handle).id, timeout_ms), "rdma_resolve_route failed");
}

LocalWindow VerbsFabric::create_qp(uint32_t handle, uint32_t ring_size, uint64_t cid, int app_side)
{
	Entry &e = entry(handle);
	if (e.conn)
		throw_system_error(EEXIST, "verbs handle " + std::to_string(handle) + " has a QP already");
	if (!e.id->verbs)
		throw_system_error(ENODEV, "the rdma_cm id is not bound to a device yet",
				   "resolve the address (or receive the request) first");
	Device &dev = device(e.id);
	e.conn = std::make_unique<VerbsConn>(loop_, handle, e.id->verbs, ring_size, cid, app_side,
					     static_cast<VerbsConnSink &>(*this), dev.port_up, staging_);
	return e.conn->local_window();
}

// The state of the id's port, asked of the device now; false when it cannot say.
static bool query_port_state(rdma_cm_id *id, ibv_port_state &state)
{
	ibv_port_attr attr{};
	if (ibv_query_port(id->verbs, id->port_num ? id->port_num : 1, &attr) != 0)
		return false;
	state = attr.state;
	return true;
}

// The device of `id`, its port state and async event watch set up on first use.
VerbsFabric::Device &VerbsFabric::device(rdma_cm_id *id)
{
	ibv_context *ctx = id->verbs;
	auto found = devices_.find(ctx);
	if (found != devices_.end())
		return found->second;
	Device &dev = devices_[ctx];
	ibv_port_state state;
	if (query_port_state(id, state))
		dev.port_up = state == IBV_PORT_ACTIVE;
	int fl = fcntl(ctx->async_fd, F_GETFL);
	if (fl < 0 || fcntl(ctx->async_fd, F_SETFL, fl | O_NONBLOCK) != 0)
		return dev;
	try {
		dev.watch.start(loop_, ctx->async_fd, UV_READABLE, [this, ctx](int, int) { on_async_event(ctx); });
	} catch (const SystemError &) {
		// librdmacm opens a device once per process: a second fabric in this process (tests)
		// finds its events watched already, and runs as if the port were always up.
	}
	return dev;
}

void VerbsFabric::on_async_event(ibv_context *ctx)
{
	Device &dev = devices_[ctx];
	bool resumed = false;
	for (int i = 0; i < 64; i++) { // bounded per wake-up; the watch is level-triggered
		ibv_async_event ev;
		if (ibv_get_async_event(ctx, &ev) != 0)
			break; // EAGAIN
		if (ev.event_type == IBV_EVENT_PORT_ERR) {
			dev.port_up = false;
		} else if (ev.event_type == IBV_EVENT_PORT_ACTIVE) {
			resumed |= !dev.port_up;
			dev.port_up = true;
		}
		ibv_ack_async_event(&ev);
	}
	if (!resumed)
		return;
	resume(ctx);
	flush();
}

void VerbsFabric::resume(ibv_context *ctx)
{
	devices_[ctx].port_up = true;
	for (auto &[handle, e] : ids_)
		if (e.conn && e.id->verbs == ctx)
			e.conn->drain(); // post what waited for the link
}

// A port believed down is asked again: should its PORT_ACTIVE event never reach us, the
// connections on it would wait for good, their peers' writers starved of credits.
void VerbsFabric::recheck_port(rdma_cm_id *id)
{
	auto found = devices_.find(id->verbs);
	if (found == devices_.end() || found->second.port_up)
		return;
	ibv_port_state state;
	if (query_port_state(id, state) && state == IBV_PORT_ACTIVE)
		resume(id->verbs); // what that reports goes out through the deferred flush
}

constexpr uint8_t kMinAckTimeout = 19;

void VerbsFabric::modify_qp(uint32_t handle, ibv_qp_state state)
{
	Entry &e = entry(handle);
	VerbsConn &c = conn(handle);
	ibv_qp_attr attr{};
	int mask = 0;
	attr.qp_state = state;
	if (state == IBV_QPS_INIT || state == IBV_QPS_RTR || state == IBV_QPS_RTS) {
		check_cm(rdma_init_qp_attr(e.id, &attr, &mask), "rdma_init_qp_attr failed");
		if (state == IBV_QPS_INIT) {
			// Before rdma_connect the active id has no IB CM id yet, and rdma_cm then grants
			// no remote access: the peer's RDMA WRITEs would fail.  Ask for it explicitly.
			attr.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
			mask |= IBV_QP_ACCESS_FLAGS;
		}
		if (state == IBV_QPS_RTS) {
			attr.rnr_retry = 3; // finite: credits mean an RNR is a bug, reported as a reset
			mask |= IBV_QP_RNR_RETRY;
			// A lost packet must be sent again: with the attributes rdma_cm gave, a stream
			// over rxe stalled for good after a link flap (no retransmission).  At least
			// 2^19 × 4.096 µs ≈ 2.1 s, 7 times: a link down for up to ~15 s is ridden out,
			// as TCP rides out a short outage; longer, and the QP fails (ECONNRESET).
			if (attr.timeout < kMinAckTimeout)
				attr.timeout = kMinAckTimeout;
			attr.retry_cnt = 7;
			mask |= IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT;
		}
	} else {
		mask = IBV_QP_STATE;
		if (state == IBV_QPS_ERR || state == IBV_QPS_RESET) {
			c.drain();
			c.stop();
		}
	}
	if (!c.qp())
		throw_system_error(ENODEV, "the connection has no QP (its renewal failed)");
	int rc = ibv_modify_qp(c.qp(), &attr, mask);
	if (rc != 0)
		throw_system_error(rc, std::string("ibv_modify_qp to ") + qp_state_name(state) +
					       " failed");
	if (state == IBV_QPS_INIT)
		c.post_receives();
}

rdma_conn_param VerbsFabric::conn_param(Entry &e, const uint8_t *data, size_t len)
{
	rdma_conn_param p{};
	p.private_data = data;
	p.private_data_len = static_cast<uint8_t>(len);
	p.responder_resources = 0; // no RDMA READs or atomics
	p.initiator_depth = 0;
	p.flow_control = 1;
	p.retry_count = 7;
	p.rnr_retry_count = 3;
	p.qp_num = e.conn && e.conn->qp() ? e.conn->qp()->qp_num : 0;
	return p;
}

void VerbsFabric::connect(uint32_t handle, const uint8_t *data, size_t len)
{
	Entry &e = entry(handle);
	conn(handle);
	rdma_conn_param p = conn_param(e, data, len);
	check_cm(rdma_connect(e.id, &p), "rdma_connect (REQ) failed");
}

void VerbsFabric::accept(uint32_t handle, const uint8_t *data, size_t len)
{
	Entry &e = entry(handle);
	conn(handle);
	rdma_conn_param p = conn_param(e, data, len);
	check_cm(rdma_accept(e.id, &p), "rdma_accept (REP) failed");
}

void VerbsFabric::reject(uint32_t handle, const uint8_t *data, size_t len)
{
	check_cm(rdma_reject(entry(handle).id, data, static_cast<uint8_t>(len)),
		 "rdma_reject (REJ) failed");
}

void VerbsFabric::establish(uint32_t handle)
{
	check_cm(rdma_establish(entry(handle).id), "rdma_establish (RTU) failed");
}

void VerbsFabric::start(uint32_t handle, const PeerWindow &peer, const WireAuth &auth)
{
	conn(handle).start(peer, auth);
}

void VerbsFabric::reset_app(uint32_t handle)
{
	conn(handle).reset_app();
}

void VerbsFabric::answer_write_after_close(uint32_t handle)
{
	conn(handle).answer_write_after_close();
}

LivenessSample VerbsFabric::liveness(uint32_t handle)
{
	recheck_port(entry(handle).id);
	return conn(handle).liveness();
}

bool VerbsFabric::probe(uint32_t handle)
{
	return conn(handle).probe();
}

void VerbsFabric::time_out(uint32_t handle)
{
	conn(handle).time_out();
}

void VerbsFabric::suspend(uint32_t handle)
{
	conn(handle).suspend();
}

void VerbsFabric::adopt(uint32_t to, uint32_t from)
{
	Entry &dst = entry(to);
	Entry &src = entry(from);
	if (!src.conn)
		throw_system_error(ENOENT, "verbs handle " + std::to_string(from) + " has no connection to move");
	if (dst.conn)
		throw_system_error(EEXIST, "verbs handle " + std::to_string(to) + " has a QP already");
	if (!dst.id->verbs || dst.id->verbs != src.id->verbs)
		throw_system_error(ENODEV, "the new rdma_cm id is not on the connection's device");
	if (spinning_.erase(from))
		src.conn->set_spinning(false);
	src.conn->renew_qp();
	dst.conn = std::move(src.conn);
	dst.conn->set_handle(to);
}

ResumePoint VerbsFabric::position(uint32_t handle)
{
	return conn(handle).position();
}

void VerbsFabric::resume(uint32_t handle, const ResumePoint &peer, const WireAuth &auth)
{
	conn(handle).resume(peer, auth);
}

bool VerbsFabric::port_active(uint32_t handle)
{
	rdma_cm_id *id = entry(handle).id;
	if (!id->verbs)
		return true; // not bound to a device: nothing to wait for
	ibv_port_state state;
	return !query_port_state(id, state) || state == IBV_PORT_ACTIVE; // cannot tell: send it now
}

void VerbsFabric::disconnect(uint32_t handle)
{
	check_cm(rdma_disconnect(entry(handle).id), "rdma_disconnect (DREQ/DREP) failed");
}

std::array<int, VTOE_FD__COUNT> VerbsFabric::fds_for_app(uint32_t handle)
{
	VerbsConn &c = conn(handle);
	return c.region().fds_for(c.app_side());
}

void VerbsFabric::release_app(uint32_t handle)
{
	VerbsConn &c = conn(handle);
	c.region().release_side(c.app_side());
}

void VerbsFabric::send_accepted(uint32_t handle, bool kernel)
{
	conn(handle).send_accepted(kernel);
}

void VerbsFabric::relay(uint32_t handle, unique_fd ksock)
{
	Entry &e = entry(handle);
	if (!e.conn || e.conn->app_side() != 0 || e.conn->handed_over())
		throw_system_error(EINVAL, "only an active end's running stream can go to kernel TCP");
	spinning_.erase(handle);
	auto r = std::make_unique<Relayed>();
	r->conn = std::move(e.conn);
	ShmConnection &region = r->conn->hand_over();
	Relayed *raw = r.get();
	const uint64_t key = next_relay_++;
	relays_.emplace(key, std::move(r));
	try {
		raw->relay = std::make_unique<ShmRelay>(loop_, region, std::move(ksock), [this, key, raw](ShmRelay::Outcome how) {
			// A clean end: the fuse goes, so the process's fd hangs up without ECONNRESET.
			int bell = raw->conn->region().bell_fd(0);
			if (how == ShmRelay::Outcome::fin && bell >= 0)
				discard_pending(bell);
			relays_.erase(key); // from the relay's own timer: nothing of it runs after this
		});
		// The process's last fd of the socket closed (or it died): as at a TCP socket's last
		// close, a FIN after its data (or a reset), which the relay then carries on.
		raw->app_watch.start(loop_, region.bell_fd(0), UV_DISCONNECT, [raw](int, int) {
			raw->app_watch.stop();
			raw->conn->region().end_side(0);
			raw->relay->kick();
		});
	} catch (...) {
		relays_.erase(key);
		throw;
	}
}

void VerbsFabric::destroy(uint32_t handle)
{
	auto it = ids_.find(handle);
	if (it == ids_.end())
		return;
	Entry e = std::move(it->second);
	ids_.erase(it);
	spinning_.erase(handle);
	e.conn.reset(); // QP before id
	rdma_destroy_id(e.id);
}

// ---- events ---------------------------------------------------------------------------------

void VerbsFabric::on_channel()
{
	rdma_cm_event *event = nullptr;
	// Bounded: REQs from the network must not hold the loop; the channel stays readable.
	for (int i = 0; i < kCmEventsPerWake && channel_ && rdma_get_cm_event(channel_, &event) == 0; i++) {
		CmEventInfo info;
		info.type = event->event;
		info.status = event->status;
		info.listen_handle = 0;
		const auto *pd = static_cast<const uint8_t *>(event->param.conn.private_data);
		if (pd && event->param.conn.private_data_len)
			info.private_data.assign(pd, pd + event->param.conn.private_data_len);
		if (event->event == RDMA_CM_EVENT_CONNECT_REQUEST) {
			info.listen_handle = static_cast<uint32_t>(
				reinterpret_cast<uintptr_t>(event->listen_id->context));
			info.handle = add(event->id);
		} else {
			info.handle = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(event->id->context));
		}
		copy_addr(info.local, rdma_get_local_addr(event->id));
		copy_addr(info.remote, rdma_get_peer_addr(event->id));
		rdma_ack_cm_event(event);
		queue_.emplace_back(std::move(info));
	}
	flush();
}

// ---- adaptive polling -----------------------------------------------------------------------

namespace {

// One turn of the loop polls at most this long when nothing moves, so that the loop's other
// work (rdma_cm events, control channels, JavaScript) waits no longer than that.
constexpr uint64_t kSpinBurstNs = 20 * 1000;
constexpr size_t kSpinPassesPerClock = 16;

inline void cpu_relax()
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	asm volatile("yield" ::: "memory");
#endif
}

} // namespace

void VerbsFabric::set_spin(uint32_t us)
{
	spin_ns_ = static_cast<uint64_t>(us) * 1000u;
	if (spin_ns_ == 0)
		stop_spinning();
}

void VerbsFabric::traffic(uint32_t handle)
{
	if (spin_ns_ == 0)
		return;
	auto it = ids_.find(handle);
	if (it == ids_.end() || !it->second.conn)
		return;
	const bool active = spin_idle_ && uv_is_active(reinterpret_cast<uv_handle_t *>(spin_idle_));
	if (!active) {
		// A new window only while windows pay: at least 4 of the last 16 caught traffic by
		// polling (else the round trip outlasts the window, and it only burns the CPU that the
		// processes and the device need); every 16th wake-up tries one anyway.
		if (__builtin_popcount(spin_history_ & 0xffffu) < 4 && (++spin_skips_ & 15u) != 0)
			return;
		window_caught_ = false;
		spin_windows_++;
	}
	if (spinning_.insert(handle).second)
		it->second.conn->set_spinning(true);
	spin_until_ns_ = uv_hrtime() + spin_ns_;
	if (!spin_idle_) {
		spin_idle_ = new uv_idle_t;
		uv_idle_init(loop_, spin_idle_);
		spin_idle_->data = this;
	}
	if (!uv_is_active(reinterpret_cast<uv_handle_t *>(spin_idle_)))
		uv_idle_start(spin_idle_, [](uv_idle_t *h) { static_cast<VerbsFabric *>(h->data)->spin_turn(); });
}

// An idle handle keeps the loop from sleeping; each turn polls the busy connections for a
// burst, and returns to the loop as soon as one moved (its events are flushed by the loop).
void VerbsFabric::spin_turn()
{
	const uint64_t start = uv_hrtime();
	uint64_t now = start;
	bool moved = false;
	do {
		// The clock is read once per few passes over a small set (it is a system call where
		// there is no vDSO clock, as in some virtual machines), after every pass over a large one.
		const size_t n = spinning_.size();
		const size_t passes = n >= kSpinPassesPerClock || n == 0 ? 1 : kSpinPassesPerClock / n;
		for (size_t pass = 0; pass < passes && !moved && !spinning_.empty(); pass++) {
			for (auto it = spinning_.begin(); it != spinning_.end();) {
				auto e = ids_.find(*it);
				if (e == ids_.end() || !e->second.conn || e->second.conn->handed_over()) {
					it = spinning_.erase(it);
					continue;
				}
				moved |= e->second.conn->poll_once();
				++it;
			}
			if (!moved)
				cpu_relax();
		}
		now = uv_hrtime();
	} while (!moved && !spinning_.empty() && now - start < kSpinBurstNs && now < spin_until_ns_);
	if (moved) {
		spin_until_ns_ = now + spin_ns_;
		if (!window_caught_)
			spin_caught_++;
		window_caught_ = true;
	} else if (now >= spin_until_ns_ || spinning_.empty()) {
		spin_history_ = ((spin_history_ << 1) | (window_caught_ ? 1u : 0u)) & 0xffffu;
		stop_spinning();
	}
}

void VerbsFabric::stop_spinning()
{
	if (spin_idle_)
		uv_idle_stop(spin_idle_);
	std::set<uint32_t> was;
	was.swap(spinning_);
	for (uint32_t h : was) {
		auto e = ids_.find(h);
		if (e != ids_.end() && e->second.conn && !e->second.conn->handed_over())
			e->second.conn->set_spinning(false); // doorbells again, and one more look
	}
}

void VerbsFabric::conn_event(uint32_t handle, ConnEvent event, const char *detail)
{
	queue_.emplace_back(ConnEventInfo{handle, event, detail ? detail : ""});
	schedule_flush();
}

void VerbsFabric::schedule_flush()
{
	if (!flush_timer_) {
		flush_timer_ = new uv_timer_t;
		uv_timer_init(loop_, flush_timer_);
		flush_timer_->data = this;
	}
	uv_timer_start(flush_timer_, [](uv_timer_t *t) { static_cast<VerbsFabric *>(t->data)->flush(); },
		       0, 0);
}

// Delivers the queued events; the listener may call any method, including destroy and close.
void VerbsFabric::flush()
{
	if (flushing_)
		return; // the outer flush delivers what is queued meanwhile
	flushing_ = true;
	while (!queue_.empty()) {
		auto item = std::move(queue_.front());
		queue_.pop_front();
		if (auto *cm = std::get_if<CmEventInfo>(&item))
			listener_.cm_event(*cm);
		else
			listener_.conn_event(std::get<ConnEventInfo>(item));
	}
	flushing_ = false;
}

} // namespace vtoe
