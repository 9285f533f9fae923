// JavaScript class ShmConnection over vtoe::ShmConnection.
#include <napi.h>

#include <array>
#include <memory>

#include <sys/epoll.h>

#include "bindings.h"
#include "epoll_set.h"
#include "js_boundary.h"
#include "js_handlers.h"
#include "js_shm_region_pool.h"
#include "shm_connection.h"
#include "shm_relay.h"

namespace vtoe {

namespace {

// The ends watches of every connection in this environment share one EpollSet.  It is never
// freed: a connection's finalizer may stop its watches after the environment's cleanup hook
// closed the set.  One environment per thread in Node.
EpollSet &ends_watch_set(Napi::Env env, uv_loop_t *loop)
{
	thread_local EpollSet *set = nullptr;
	if (!set) {
		set = new EpollSet(loop);
		napi_add_env_cleanup_hook(env, [](void *s) { static_cast<EpollSet *>(s)->close(); }, set);
	}
	return *set;
}

class JsShmConnection : public Napi::ObjectWrap<JsShmConnection> {
public:
	static Napi::Function define(Napi::Env env)
	{
		return DefineClass(env, "ShmConnection",
				   {
					   InstanceMethod<&JsShmConnection::fds_for>("fdsFor"),
					   InstanceMethod<&JsShmConnection::release_side>("releaseSide"),
					   InstanceMethod<&JsShmConnection::side_of_socket>("sideOfSocket"),
					   InstanceMethod<&JsShmConnection::region_fd>("regionFd"),
					   InstanceMethod<&JsShmConnection::peer_bell_fd>("peerBellFd"),
					   InstanceMethod<&JsShmConnection::bell_op>("bellOp"),
					   InstanceMethod<&JsShmConnection::watch_ends>("watchEnds"),
					   InstanceMethod<&JsShmConnection::hang_up>("hangUp"),
					   InstanceMethod<&JsShmConnection::relay>("relay"),
					   InstanceMethod<&JsShmConnection::counters>("counters"),
					   InstanceMethod<&JsShmConnection::set_cm_state>("setCmState"),
					   InstanceMethod<&JsShmConnection::close>("close"),
					   InstanceAccessor<&JsShmConnection::mapped_bytes>("mappedBytes"),
					   InstanceAccessor<&JsShmConnection::resident_bytes>("residentBytes"),
					   InstanceAccessor<&JsShmConnection::ring_size>("ringSize"),
					   InstanceAccessor<&JsShmConnection::closed>("closed"),
				   });
	}

	// new ShmConnection(ringSize: number, cid: bigint, ringLarge = 0, pool?: ShmRegionPool,
	//                   ringAuto = 0, buffers?: [sndbuf0, rcvbuf0, sndbuf1, rcvbuf1])
	explicit JsShmConnection(const Napi::CallbackInfo &info) : ObjectWrap(info)
	{
		Napi::Env env = info.Env();
		if (!info[0].IsNumber())
			throw Napi::TypeError::New(env, "ringSize must be a number");
		// Anything outside uint32 becomes 0, which the ring size check then refuses by name.
		double requested = info[0].As<Napi::Number>().DoubleValue();
		uint32_t ring_size = requested >= 0 && requested <= UINT32_MAX &&
						     requested == static_cast<uint32_t>(requested)
					     ? static_cast<uint32_t>(requested)
					     : 0;
		uint64_t cid = js_u64_bigint(info[1], "cid");
		uint32_t ring_large = info[2].IsUndefined()
					      ? 0
					      : static_cast<uint32_t>(js_integer(info[2], "ringLarge", 0, UINT32_MAX));
		ShmRegionPool *pool = shm_region_pool_of(info[3]);
		uint32_t ring_auto = info[4].IsUndefined()
					     ? 0
					     : static_cast<uint32_t>(js_integer(info[4], "ringAuto", 0, UINT32_MAX));
		std::array<uint32_t, ShmConnection::kSides> sndbuf{}, rcvbuf{};
		if (!info[5].IsUndefined()) {
			if (!info[5].IsArray() || info[5].As<Napi::Array>().Length() != 4)
				throw Napi::TypeError::New(env, "buffers must be [sndbuf0, rcvbuf0, sndbuf1, rcvbuf1]");
			auto buffers = info[5].As<Napi::Array>();
			for (uint32_t side = 0; side < ShmConnection::kSides; side++) {
				sndbuf[side] = static_cast<uint32_t>(js_integer(buffers.Get(2 * side), "sndbuf", 0, INT32_MAX));
				rcvbuf[side] = static_cast<uint32_t>(js_integer(buffers.Get(2 * side + 1), "rcvbuf", 0, INT32_MAX));
			}
		}
		connection_ = at_js_boundary(env, [&] {
			std::unique_ptr<ShmConnection> made;
			if (pool)
				made = pool->take(ring_size, ring_large, cid);
			if (!made)
				made = std::make_unique<ShmConnection>(ring_size, ring_large, cid);
			made->set_fill(ring_auto, sndbuf, rcvbuf);
			return made;
		});
	}

private:
	static int side_argument(const Napi::Value &value, const char *what)
	{
		return static_cast<int>(js_integer(value, what, 0, 1));
	}

	Napi::Value fds_for(const Napi::CallbackInfo &info)
	{
		int side = side_argument(info[0], "side");
		auto fds = at_js_boundary(info.Env(), [&] { return connection_->fds_for(side); });
		Napi::Array array = Napi::Array::New(info.Env(), fds.size());
		for (uint32_t i = 0; i < fds.size(); i++)
			array.Set(i, Napi::Number::New(info.Env(), fds[i]));
		return array;
	}

	void release_side(const Napi::CallbackInfo &info)
	{
		int side = side_argument(info[0], "side");
		at_js_boundary(info.Env(), [&] { connection_->release_side(side); });
	}

	Napi::Value side_of_socket(const Napi::CallbackInfo &info)
	{
		int fd = static_cast<int>(js_integer(info[0], "fd", 0, INT32_MAX));
		return Napi::Number::New(info.Env(), connection_->side_of_socket(fd));
	}

	Napi::Value region_fd(const Napi::CallbackInfo &info)
	{
		return Napi::Number::New(info.Env(),
					 at_js_boundary(info.Env(), [&] { return connection_->region_fd(); }));
	}

	Napi::Value peer_bell_fd(const Napi::CallbackInfo &info)
	{
		int side = side_argument(info[0], "side");
		return Napi::Number::New(info.Env(),
					 at_js_boundary(info.Env(), [&] { return connection_->peer_bell_fd(side); }));
	}

	void bell_op(const Napi::CallbackInfo &info)
	{
		int side = side_argument(info[0], "side");
		uint32_t op = js_u32(info[1], "op");
		at_js_boundary(info.Env(), [&] { connection_->bell_op(side, op); });
	}

	Napi::Value counters(const Napi::CallbackInfo &info)
	{
		Napi::Env env = info.Env();
		return at_js_boundary(env, [&] {
			Napi::Array rings = Napi::Array::New(env, ShmConnection::kSides);
			Napi::Array cm_state = Napi::Array::New(env, ShmConnection::kSides);
			for (int d = 0; d < ShmConnection::kSides; d++) {
				DirCounters c = connection_->counters(d);
				Napi::Object ring = Napi::Object::New(env);
				// Byte counts reach 2^53 only after 9 PB on one connection.
				ring.Set("head", Napi::Number::New(env, static_cast<double>(c.head)));
				ring.Set("tail", Napi::Number::New(env, static_cast<double>(c.tail)));
				ring.Set("wakes", Napi::Number::New(env, static_cast<double>(c.wakes)));
				ring.Set("grows", Napi::Number::New(env, c.grows));
				ring.Set("fin", Napi::Boolean::New(env, c.fin));
				ring.Set("reset", Napi::Boolean::New(env, c.reset));
				ring.Set("rdShut", Napi::Boolean::New(env, c.rd_shut));
				ring.Set("txWaiting", Napi::Boolean::New(env, c.tx_waiting));
				rings.Set(static_cast<uint32_t>(d), ring);
				cm_state.Set(static_cast<uint32_t>(d),
					     Napi::Number::New(env, connection_->cm_state(d)));
			}
			Napi::Object result = Napi::Object::New(env);
			result.Set("rings", rings);
			result.Set("cmState", cm_state);
			return result;
		});
	}

	void set_cm_state(const Napi::CallbackInfo &info)
	{
		int side = side_argument(info[0], "side");
		uint32_t code = js_u32(info[1], "code");
		at_js_boundary(info.Env(), [&] { connection_->set_cm_state(side, code); });
	}

	// watchEnds({ onEnd(side, 'fin' | 'reset') }): from now on, when a side's socket is gone
	// from every process, end it as TCP would (ShmConnection::end_side) and say so.
	void watch_ends(const Napi::CallbackInfo &info)
	{
		Napi::Env env = info.Env();
		uv_loop_t *loop = nullptr;
		if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop)
			throw Napi::Error::New(env, "no libuv loop for this Node environment");
		handlers_ = std::make_unique<JsHandlers>(info[0], std::initializer_list<const char *>{"onEnd"},
							 "vtoe:ShmConnection", info.This().As<Napi::Object>());
		at_js_boundary(env, [&] {
			EpollSet &set = ends_watch_set(env, loop);
			connection_->keep_bells();
			for (int side = 0; side < ShmConnection::kSides; side++) {
				int fd = connection_->bell_fd(side);
				if (fd < 0)
					throw_system_error(EBADF, "the shm connection is closed");
				ends_[side].start(set, fd, EPOLLRDHUP, [this, side](uint32_t) { on_end(side); });
			}
		});
	}

	void on_end(int side)
	{
		ends_[side].stop();
		SideEnd how;
		try {
			how = connection_->end_side(side);
		} catch (const SystemError &) {
			return; // closed meanwhile: nothing left to end
		}
		ended_[side] = true;
		// After both FINs the bells stay until the connection is freed; the agent is still
		// told, since the side's owner may never send its CLOSE (a forked child closed it).
		if (how == SideEnd::reset || (how == SideEnd::fin && ended_[1 - side])) {
			// A reset, or both sides gone: the peer's bell is the one its own watch polls,
			// stop that before closing it.  Nobody needs the bells after both ends.
			ends_[1 - side].stop();
			connection_->hang_up(1 - side);
			if (how == SideEnd::fin)
				connection_->hang_up(side);
		}
		Napi::Env env = Env();
		Napi::HandleScope scope(env);
		handlers_->call("onEnd", {Napi::Number::New(env, side),
					  Napi::String::New(env, how == SideEnd::reset ? "reset" : "fin")});
	}

	// hangUp(side): side's peer is gone and side wrote to it: close the agent's copy of the
	// bell into side's fd, so that fd reads POLLHUP (and POLLERR with a fuse queued), as after
	// the reset a TCP peer's kernel answers such a write with.
	void hang_up(const Napi::CallbackInfo &info)
	{
		int side = side_argument(info[0], "side");
		ends_[side].stop(); // it polls the bell closed here
		connection_->hang_up(side);
	}

	// relay(fd, { onRelayEnd(how) }): the agent takes side 1's place, carrying the stream
	// between the rings and the kernel socket fd (which it owns from now on), until both
	// directions ended ('fin') or one was reset ('reset').
	void relay(const Napi::CallbackInfo &info)
	{
		Napi::Env env = info.Env();
		int fd = static_cast<int>(js_integer(info[0], "fd", 0, INT32_MAX));
		unique_fd owned(fd);
		uv_loop_t *loop = nullptr;
		if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop)
			throw Napi::Error::New(env, "no libuv loop for this Node environment");
		if (relay_)
			throw Napi::Error::New(env, "this connection is relayed already");
		relay_handlers_ = std::make_unique<JsHandlers>(
			info[1], std::initializer_list<const char *>{"onRelayEnd"}, "vtoe:ShmRelay",
			info.This().As<Napi::Object>());
		at_js_boundary(env, [&] {
			relay_ = std::make_unique<ShmRelay>(loop, *connection_, std::move(owned),
							    [this](ShmRelay::Outcome how) { on_relay_end(how); });
		});
	}

	void on_relay_end(ShmRelay::Outcome how)
	{
		Napi::Env env = Env();
		Napi::HandleScope scope(env);
		relay_handlers_->call("onRelayEnd",
				      {Napi::String::New(env, how == ShmRelay::Outcome::reset ? "reset" : "fin")});
	}

	void close(const Napi::CallbackInfo &)
	{
		relay_.reset();
		for (auto &w : ends_)
			w.stop();
		connection_->close();
	}

	Napi::Value resident_bytes(const Napi::CallbackInfo &info)
	{
		return Napi::Number::New(info.Env(), static_cast<double>(connection_->resident_bytes()));
	}

	Napi::Value mapped_bytes(const Napi::CallbackInfo &info)
	{
		return Napi::Number::New(info.Env(), static_cast<double>(connection_->mapped_bytes()));
	}

	Napi::Value ring_size(const Napi::CallbackInfo &info)
	{
		return Napi::Number::New(info.Env(), connection_->ring_size());
	}

	Napi::Value closed(const Napi::CallbackInfo &info)
	{
		return Napi::Boolean::New(info.Env(), connection_->closed());
	}

	// Declared before the watches, so those stop before the bells they poll are closed.
	// Its destructor (run by the finalizer) closes and unmaps whatever close() did not.
	std::unique_ptr<ShmConnection> connection_;
	std::array<EpollWatch, ShmConnection::kSides> ends_;
	std::array<bool, ShmConnection::kSides> ended_ = {false, false};
	std::unique_ptr<JsHandlers> handlers_;
	// After connection_ and the watches: it goes first, before the bells it borrows.
	std::unique_ptr<ShmRelay> relay_;
	std::unique_ptr<JsHandlers> relay_handlers_;
};

} // namespace

Napi::Function define_shm_connection(Napi::Env env)
{
	return JsShmConnection::define(env);
}

} // namespace vtoe
