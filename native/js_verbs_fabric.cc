// vtoe_verbs: the verbs fabric addon, built only where rdma-core's headers are installed and
// loaded only when the agent enables the verbs fabric, so the main addon never needs librdmacm.
// Exports class VerbsFabric over vtoe::VerbsFabric (see src/native-verbs.ts for the types).
#include <napi.h>
#include <arpa/inet.h>

#include <cstring>
#include <memory>
#include <utility>
#include <string>

#include "js_boundary.h"
#include "js_handlers.h"
#include "verbs_fabric.h"

namespace vtoe {

namespace {

sockaddr_storage sockaddr_from_js(const Napi::Value &value, const char *what)
{
	Napi::Env env = value.Env();
	if (!value.IsObject())
		throw Napi::TypeError::New(env, std::string(what) + " must be { address, port }");
	Napi::Object js = value.As<Napi::Object>();
	Napi::Value address = js.Get("address");
	if (!address.IsString())
		throw Napi::TypeError::New(env, std::string(what) + ".address must be a string");
	std::string text = address.As<Napi::String>().Utf8Value();
	uint16_t port = static_cast<uint16_t>(js_integer(js.Get("port"), "port", 0, 65535));
	sockaddr_storage ss{};
	auto *v4 = reinterpret_cast<sockaddr_in *>(&ss);
	auto *v6 = reinterpret_cast<sockaddr_in6 *>(&ss);
	if (inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(port);
	} else if (inet_pton(AF_INET6, text.c_str(), &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(port);
	} else {
		throw Napi::TypeError::New(env, std::string(what) + ".address is not an IP address: " + text);
	}
	return ss;
}

Napi::Value sockaddr_to_js(Napi::Env env, const sockaddr_storage &ss)
{
	char text[INET6_ADDRSTRLEN] = "";
	uint16_t port = 0;
	if (ss.ss_family == AF_INET) {
		auto *v4 = reinterpret_cast<const sockaddr_in *>(&ss);
		inet_ntop(AF_INET, &v4->sin_addr, text, sizeof(text));
		port = ntohs(v4->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		auto *v6 = reinterpret_cast<const sockaddr_in6 *>(&ss);
		inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof(text));
		port = ntohs(v6->sin6_port);
	} else {
		return env.Null();
	}
	Napi::Object js = Napi::Object::New(env);
	js.Set("address", text);
	js.Set("port", port);
	return js;
}

const char *cm_event_name(rdma_cm_event_type type)
{
	switch (type) {
	case RDMA_CM_EVENT_ADDR_RESOLVED: return "ADDRESS_RESOLVED";
	case RDMA_CM_EVENT_ADDR_ERROR: return "ADDRESS_ERROR";
	case RDMA_CM_EVENT_ROUTE_RESOLVED: return "ROUTE_RESOLVED";
	case RDMA_CM_EVENT_ROUTE_ERROR: return "ROUTE_ERROR";
	case RDMA_CM_EVENT_CONNECT_REQUEST: return "CONNECT_REQUEST";
	case RDMA_CM_EVENT_CONNECT_RESPONSE: return "CONNECT_RESPONSE";
	case RDMA_CM_EVENT_CONNECT_ERROR: return "CONNECT_ERROR";
	case RDMA_CM_EVENT_UNREACHABLE: return "UNREACHABLE";
	case RDMA_CM_EVENT_REJECTED: return "CONNECT_REJECTED";
	case RDMA_CM_EVENT_ESTABLISHED: return "CONNECT_ESTABLISHED";
	case RDMA_CM_EVENT_DISCONNECTED: return "DISCONNECTED";
	case RDMA_CM_EVENT_DEVICE_REMOVAL: return "DEVICE_REMOVAL";
	case RDMA_CM_EVENT_TIMEWAIT_EXIT: return "TIMEWAIT_EXIT";
	case RDMA_CM_EVENT_ADDR_CHANGE: return "ADDRESS_CHANGE";
	default: return "OTHER";
	}
}

ibv_qp_state qp_state_from_js(const Napi::Value &value)
{
	std::string s = value.IsString() ? value.As<Napi::String>().Utf8Value() : "";
	if (s == "INIT") return IBV_QPS_INIT;
	if (s == "RTR") return IBV_QPS_RTR;
	if (s == "RTS") return IBV_QPS_RTS;
	if (s == "ERR") return IBV_QPS_ERR;
	if (s == "RESET") return IBV_QPS_RESET;
	throw Napi::RangeError::New(value.Env(), "state must be INIT, RTR, RTS, ERR or RESET");
}

Napi::Value bigint(Napi::Env env, uint64_t v)
{
	return Napi::BigInt::New(env, v);
}

uint64_t u64_from_js(const Napi::Object &js, const char *key)
{
	return js_u64_bigint(js.Get(key), key);
}

// { send } or { expect }: a 16-byte MAC (verbs_wire.h), or neither.
WireAuth auth_from_js(const Napi::Env &env, const Napi::Value &value)
{
	WireAuth auth;
	if (value.IsUndefined())
		return auth;
	if (!value.IsObject())
		throw Napi::TypeError::New(env, "auth must be an object");
	Napi::Object a = value.As<Napi::Object>();
	for (const char *key : {"send", "expect"}) {
		Napi::Value v = a.Get(key);
		if (v.IsUndefined())
			continue;
		if (!v.IsBuffer() || v.As<Napi::Buffer<uint8_t>>().Length() != kWireAuthBytes)
			throw Napi::TypeError::New(env, std::string("auth.") + key + " must be a 16-byte Buffer");
		if (auth.send || auth.expect)
			throw Napi::TypeError::New(env, "auth has send or expect, not both");
		std::memcpy(auth.mac, v.As<Napi::Buffer<uint8_t>>().Data(), kWireAuthBytes);
		(key[0] == 's' ? auth.send : auth.expect) = true;
	}
	return auth;
}

class JsVerbsFabric : public Napi::ObjectWrap<JsVerbsFabric>, private VerbsFabricListener {
public:
	static Napi::Function define(Napi::Env env)
	{
		return DefineClass(
			env, "VerbsFabric",
			{
				InstanceMethod<&JsVerbsFabric::listen>("listen"),
				InstanceMethod<&JsVerbsFabric::resolve>("resolve"),
				InstanceMethod<&JsVerbsFabric::resolve_route>("resolveRoute"),
				InstanceMethod<&JsVerbsFabric::create_qp>("createQp"),
				InstanceMethod<&JsVerbsFabric::modify_qp>("modifyQp"),
				InstanceMethod<&JsVerbsFabric::connect>("connect"),
				InstanceMethod<&JsVerbsFabric::accept>("accept"),
				InstanceMethod<&JsVerbsFabric::reject>("reject"),
				InstanceMethod<&JsVerbsFabric::establish>("establish"),
				InstanceMethod<&JsVerbsFabric::start>("start"),
				InstanceMethod<&JsVerbsFabric::suspend>("suspend"),
				InstanceMethod<&JsVerbsFabric::adopt>("adopt"),
				InstanceMethod<&JsVerbsFabric::position>("position"),
				InstanceMethod<&JsVerbsFabric::resume>("resume"),
				InstanceMethod<&JsVerbsFabric::disconnect>("disconnect"),
				InstanceMethod<&JsVerbsFabric::port_active>("portActive"),
				InstanceMethod<&JsVerbsFabric::reset_app>("resetApp"),
				InstanceMethod<&JsVerbsFabric::answer_write_after_close>("answerWriteAfterClose"),
				InstanceMethod<&JsVerbsFabric::send_accepted>("sendAccepted"),
				InstanceMethod<&JsVerbsFabric::relay>("relay"),
				InstanceMethod<&JsVerbsFabric::set_spin>("setSpin"),
				InstanceMethod<&JsVerbsFabric::spin_stats>("spinStats"),
				InstanceMethod<&JsVerbsFabric::set_staging>("setStaging"),
				InstanceMethod<&JsVerbsFabric::staging_stats>("stagingStats"),
				InstanceMethod<&JsVerbsFabric::liveness>("liveness"),
				InstanceMethod<&JsVerbsFabric::probe>("probe"),
				InstanceMethod<&JsVerbsFabric::time_out>("timeOut"),
				InstanceMethod<&JsVerbsFabric::fds_for_app>("fdsForApp"),
				InstanceMethod<&JsVerbsFabric::release_app>("releaseApp"),
				InstanceMethod<&JsVerbsFabric::counters>("counters"),
				InstanceMethod<&JsVerbsFabric::destroy>("destroy"),
				InstanceMethod<&JsVerbsFabric::close>("close"),
				InstanceAccessor<&JsVerbsFabric::handler_errors>("handlerErrors"),
				InstanceAccessor<&JsVerbsFabric::last_handler_error>("lastHandlerError"),
			});
	}

	// new VerbsFabric({ onCmEvent(event), onConnEvent(event) })
	explicit JsVerbsFabric(const Napi::CallbackInfo &info) : ObjectWrap(info)
	{
		Napi::Env env = info.Env();
		handlers_ = std::make_unique<JsHandlers>(info[0],
							 std::initializer_list<const char *>{"onCmEvent", "onConnEvent"},
							 "vtoe:VerbsFabric", info.This().As<Napi::Object>());
		uv_loop_t *loop = nullptr;
		if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop)
			throw Napi::Error::New(env, "no libuv loop for this Node environment");
		fabric_ = at_js_boundary(env, [&] {
			VerbsFabricListener &listener = *this;
			return std::make_unique<VerbsFabric>(loop, listener);
		});
	}

	~JsVerbsFabric() override
	{
		if (fabric_)
			fabric_->close();
	}

private:
	void cm_event(const CmEventInfo &e) override
	{
		Napi::Env env = Env();
		Napi::HandleScope scope(env);
		Napi::Object js = Napi::Object::New(env);
		js.Set("type", cm_event_name(e.type));
		js.Set("handle", e.handle);
		js.Set("listenHandle", e.listen_handle);
		js.Set("status", e.status);
		js.Set("privateData", Napi::Buffer<uint8_t>::Copy(env, e.private_data.data(),
								  e.private_data.size()));
		js.Set("local", sockaddr_to_js(env, e.local));
		js.Set("remote", sockaddr_to_js(env, e.remote));
		handlers_->call("onCmEvent", {js});
	}

	void conn_event(const ConnEventInfo &e) override
	{
		Napi::Env env = Env();
		Napi::HandleScope scope(env);
		Napi::Object js = Napi::Object::New(env);
		js.Set("type", conn_event_name(e.event));
		js.Set("handle", e.handle);
		js.Set("detail", e.detail);
		handlers_->call("onConnEvent", {js});
	}

	static uint32_t handle_arg(const Napi::Value &v)
	{
		return js_u32(v, "handle");
	}

	// rdma_cm's private data limits on RC: REQ 56, REP 196, REJ 148 bytes.
	static std::pair<const uint8_t *, size_t> bytes_arg(const Napi::Value &v, size_t max,
							     const char *what)
	{
		if (v.IsUndefined())
			return {nullptr, 0};
		if (!v.IsBuffer())
			throw Napi::TypeError::New(v.Env(), "private data must be a Buffer");
		auto buf = v.As<Napi::Buffer<uint8_t>>();
		if (buf.Length() > max)
			throw Napi::RangeError::New(v.Env(), std::string("private data is at most ") +
								     std::to_string(max) + " bytes (" + what + ")");
		return {buf.Data(), buf.Length()};
	}

	// listen({address, port}, backlog) -> handle
	Napi::Value listen(const Napi::CallbackInfo &info)
	{
		sockaddr_storage ss = sockaddr_from_js(info[0], "address");
		int backlog = static_cast<int>(js_integer(info[1], "backlog", 1, 65535));
		return Napi::Number::New(info.Env(), at_js_boundary(info.Env(), [&] {
			return fabric_->listen(reinterpret_cast<sockaddr *>(&ss), backlog);
		}));
	}

	// resolve({address, port}, timeoutMs) -> handle; ADDRESS_RESOLVED or _ERROR follows
	Napi::Value resolve(const Napi::CallbackInfo &info)
	{
		sockaddr_storage ss = sockaddr_from_js(info[0], "destination");
		int timeout = static_cast<int>(js_integer(info[1], "timeoutMs", 1, 600000));
		return Napi::Number::New(info.Env(), at_js_boundary(info.Env(), [&] {
			return fabric_->resolve(reinterpret_cast<sockaddr *>(&ss), timeout);
		}));
	}

	void resolve_route(const Napi::CallbackInfo &info)
	{
		uint32_t h = handle_arg(info[0]);
		int timeout = static_cast<int>(js_integer(info[1], "timeoutMs", 1, 600000));
		at_js_boundary(info.Env(), [&] { fabric_->resolve_route(h, timeout); });
	}

	// createQp(handle, ringSize, cid, appSide) -> local window
	Napi::Value create_qp(const Napi::CallbackInfo &info)
	{
		Napi::Env env = info.Env();
		uint32_t h = handle_arg(info[0]);
		uint32_t ring = js_u32(info[1], "ringSize");
		uint64_t cid = js_u64_bigint(info[2], "cid");
		int side = static_cast<int>(js_integer(info[3], "appSide", 0, 1));
		LocalWindow w = at_js_boundary(env, [&] { return fabric_->create_qp(h, ring, cid, side); });
		Napi::Object js = Napi::Object::New(env);
		js.Set("ringAddr", bigint(env, w.ring_addr));
		js.Set("ringRkey", w.ring_rkey);
		js.Set("mailboxAddr", bigint(env, w.mailbox_addr));
		js.Set("mailboxRkey", w.mailbox_rkey);
		js.Set("recvCredits", w.recv_credits);
		js.Set("qpNum", w.qp_num);
		return js;
	}

	void modify_qp(const Napi::CallbackInfo &info)
	{
		uint32_t h = handle_arg(info[0]);
		ibv_qp_state s = qp_state_from_js(info[1]);
		at_js_boundary(info.Env(), [&] { fabric_->modify_qp(h, s); });
	}

	void connect(const Napi::CallbackInfo &info)
	{
		uint32_t h = handle_arg(info[0]);
		auto b = bytes_arg(info[1], 56, "REQ");
		at_js_boundary(info.Env(), [&] { fabric_->connect(h, b.first, b.second); });
	}

	void accept(const Napi::CallbackInfo &info)
	{
		uint32_t h = handle_arg(info[0]);
		auto b = bytes_arg(info[1], 196, "REP");
		at_js_boundary(info.Env(), [&] { fabric_->accept(h, b.first, b.second); });
	}

	void reject(const Napi::CallbackInfo &info)
	{
		uint32_t h = handle_arg(info[0]);
		auto b = bytes_arg(info[1], 148, "REJ");
		at_js_boundary(info.Env(), [&] { fabric_->reject(h, b.first, b.second); });
	}

	void establish(const Napi::CallbackInfo &info)
	{
		uint32_t h = handle_arg(info[0]);
		at_js_boundary(info.Env(), [&] { fabric_->establish(h); });
	}

	// start(handle, { ringAddr, ringRkey, mailboxAddr, mailboxRkey, recvCredits },
	//       { send?: Buffer(16), expect?: Buffer(16) }?)
	void start(const Napi::CallbackInfo &info)
	{
		uint32_t h = handle_arg(info[0]);
		if (!info[1].IsObject())
			throw Napi::TypeError::New(info.Env(), "peer window must be an object");
		Napi::Object js = info[1].As<Napi::Object>();
		PeerWindow p;
		p.ring_addr = u64_from_js(js, "ringAddr");
		p.ring_rkey = js_u32(js.Get("ringRkey"), "ringRkey");
		p.mailbox_addr = u64_from_js(js, "mailboxAddr");
		p.mailbox_rkey = js_u32(js.Get("mailboxRkey"), "mailboxRkey");
		p.recv_credits = js_u32(js.Get("recvCredits"), "recvCredits");
		WireAuth auth = auth_from_js(info.Env(), info[2]);
		at_js_boundary(info.Env(), [&] { fabric_->start(h, p, auth); });
	}

	void suspend(const Napi::CallbackInfo &info)
	{
		uint32_t h = handle_arg(info[0]);
		at_js_boundary(info.Env(), [&] { fabric_->suspend(h); });
	}

	void adopt(const Napi::CallbackInfo &info)
	{
		uint32_t to = handle_arg(info[0]);
		uint32_t from = handle_arg(info[1]);
		at_js_boundary(info.Env(), [&] { fabric_->adopt(to, from); });
	}

	// position(handle) -> { delivered, consumed (bigint), haveFin, haveClose }
	Napi::Value position(const Napi::CallbackInfo &info)
	{
		Napi::Env env = info.Env();
		uint32_t h = handle_arg(info[0]);
		ResumePoint p = at_js_boundary(env, [&] { return fabric_->position(h); });
		Napi::Object js = Napi::Object::New(env);
		js.Set("delivered", bigint(env, p.delivered));
		js.Set("consumed", bigint(env, p.consumed));
		js.Set("haveFin", p.have_fin);
		js.Set("haveClose", p.have_close);
		return js;
	}

	void resume(const Napi::CallbackInfo &info)
	{
		uint32_t h = handle_arg(info[0]);
		if (!info[1].IsObject())
			throw Napi::TypeError::New(info.Env(), "the peer's position must be an object");
		Napi::Object js = info[1].As<Napi::Object>();
		ResumePoint p{};
		p.delivered = u64_from_js(js, "delivered");
		p.consumed = u64_from_js(js, "consumed");
		p.have_fin = js.Get("haveFin").ToBoolean();
		p.have_close = js.Get("haveClose").ToBoolean();
		WireAuth auth = auth_from_js(info.Env(), info[2]);
		at_js_boundary(info.Env(), [&] { fabric_->resume(h, p, auth); });
	}

	Napi::Value port_active(const Napi::CallbackInfo &info)
	{
		uint32_t h = handle_arg(info[0]);
		return Napi::Boolean::New(info.Env(), at_js_boundary(info.Env(), [&] { return fabric_->port_active(h); }));
	}

	void disconnect(const Napi::CallbackInfo &info)
	{
		uint32_t h = handle_arg(info[0]);
		at_js_boundary(info.Env(), [&] { fabric_->disconnect(h); });
	}

	void reset_app(const Napi::CallbackInfo &info)
	{
		uint32_t h = handle_arg(info[0]);
		at_js_boundary(info.Env(), [&] { fabric_->reset_app(h); });
	}

	void answer_write_after_close(const Napi::CallbackInfo &info)
	{
		uint32_t h = handle_arg(info[0]);
		at_js_boundary(info.Env(), [&] { fabric_->answer_write_after_close(h); });
	}

	// sendAccepted(handle, kernel): the passive end's `accepted` message (verbs_wire.h).
	void send_accepted(const Napi::CallbackInfo &info)
	{
		uint32_t h = handle_arg(info[0]);
		bool kernel = info[1].ToBoolean().Value();
		at_js_boundary(info.Env(), [&] { fabric_->send_accepted(h, kernel); });
	}

	// relay(handle, fd): the active end's stream goes on over the kernel socket fd, which the
	// fabric owns from now on (closed on failure too).
	void relay(const Napi::CallbackInfo &info)
	{
		unique_fd owned(static_cast<int>(js_integer(info[1], "fd", 0, INT32_MAX)));
		uint32_t h = handle_arg(info[0]);
		at_js_boundary(info.Env(), [&] { fabric_->relay(h, std::move(owned)); });
	}

	// setSpin(us): adaptive polling of connections with traffic (VerbsFabric::set_spin).
	void set_spin(const Napi::CallbackInfo &info)
	{
		uint32_t us = static_cast<uint32_t>(js_integer(info[0], "us", 0, 10'000'000));
		at_js_boundary(info.Env(), [&] { fabric_->set_spin(us); });
	}

	// spinStats() -> { polled, windows, caught } (VerbsFabric::SpinStats)
	Napi::Value spin_stats(const Napi::CallbackInfo &info)
	{
		Napi::Env env = info.Env();
		VerbsFabric::SpinStats s = at_js_boundary(env, [&] { return fabric_->spin_stats(); });
		Napi::Object js = Napi::Object::New(env);
		js.Set("polled", Napi::Number::New(env, static_cast<double>(s.polled)));
		js.Set("windows", Napi::Number::New(env, static_cast<double>(s.windows)));
		js.Set("caught", Napi::Number::New(env, static_cast<double>(s.caught)));
		return js;
	}

	// setStaging(perConnection, allowance): send staging limits (VerbsFabric::set_staging).
	void set_staging(const Napi::CallbackInfo &info)
	{
		auto per_conn = static_cast<uint64_t>(js_integer(info[0], "perConnection", 0, 1ull << 40));
		auto allowance = static_cast<uint64_t>(js_integer(info[1], "allowance", 0, 1ull << 50));
		at_js_boundary(info.Env(), [&] { fabric_->set_staging(per_conn, allowance); });
	}

	// stagingStats() -> { bytes, peak, refused } (SendStaging)
	Napi::Value staging_stats(const Napi::CallbackInfo &info)
	{
		Napi::Env env = info.Env();
		const SendStaging &s = fabric_->staging();
		Napi::Object js = Napi::Object::New(env);
		js.Set("bytes", Napi::Number::New(env, static_cast<double>(s.used)));
		js.Set("peak", Napi::Number::New(env, static_cast<double>(s.peak)));
		js.Set("refused", Napi::Number::New(env, static_cast<double>(s.refused)));
		return js;
	}

	Napi::Value liveness(const Napi::CallbackInfo &info)
	{
		Napi::Env env = info.Env();
		uint32_t h = handle_arg(info[0]);
		LivenessSample s = at_js_boundary(env, [&] { return fabric_->liveness(h); });
		Napi::Object js = Napi::Object::New(env);
		js.Set("unackedMs", static_cast<double>(s.unacked_ms));
		js.Set("quietMs", static_cast<double>(s.quiet_ms));
		js.Set("probePending", s.probe_pending);
		js.Set("waitingForPeer", s.waiting_for_peer);
		js.Set("userTimeoutMs", s.user_timeout_ms);
		js.Set("keepIdleS", s.keep_idle_s);
		js.Set("keepIntvlS", s.keep_intvl_s);
		js.Set("keepCnt", s.keep_cnt);
		return js;
	}

	Napi::Value probe(const Napi::CallbackInfo &info)
	{
		uint32_t h = handle_arg(info[0]);
		return Napi::Boolean::New(info.Env(), at_js_boundary(info.Env(), [&] { return fabric_->probe(h); }));
	}

	void time_out(const Napi::CallbackInfo &info)
	{
		uint32_t h = handle_arg(info[0]);
		at_js_boundary(info.Env(), [&] { fabric_->time_out(h); });
	}

	Napi::Value fds_for_app(const Napi::CallbackInfo &info)
	{
		uint32_t h = handle_arg(info[0]);
		auto fds = at_js_boundary(info.Env(), [&] { return fabric_->fds_for_app(h); });
		Napi::Array a = Napi::Array::New(info.Env(), fds.size());
		for (uint32_t i = 0; i < fds.size(); i++)
			a.Set(i, fds[i]);
		return a;
	}

	void release_app(const Napi::CallbackInfo &info)
	{
		uint32_t h = handle_arg(info[0]);
		at_js_boundary(info.Env(), [&] { fabric_->release_app(h); });
	}

	// counters(handle) -> { rings: [..], sent, delivered, messages..., } for ss and stats
	Napi::Value counters(const Napi::CallbackInfo &info)
	{
		Napi::Env env = info.Env();
		uint32_t h = handle_arg(info[0]);
		return at_js_boundary(env, [&] {
			VerbsConn &c = fabric_->conn(h);
			Napi::Object js = Napi::Object::New(env);
			Napi::Array rings = Napi::Array::New(env, 2);
			for (int r = 0; r < 2; r++) {
				DirCounters d = c.region().counters(r);
				Napi::Object o = Napi::Object::New(env);
				o.Set("head", static_cast<double>(d.head));
				o.Set("tail", static_cast<double>(d.tail));
				o.Set("wakes", static_cast<double>(d.wakes));
				o.Set("grows", d.grows);
				o.Set("fin", d.fin);
				o.Set("reset", d.reset);
				o.Set("rdShut", d.rd_shut);
				o.Set("txWaiting", d.tx_waiting);
				rings.Set(r, o);
			}
			js.Set("rings", rings);
			js.Set("appSide", c.app_side());
			const VerbsConnStats s = c.stats();
			js.Set("messagesSent", static_cast<double>(s.messages_sent));
			js.Set("messagesReceived", static_cast<double>(s.messages_received));
			js.Set("creditMessages", static_cast<double>(s.credit_messages));
			js.Set("creditStalls", static_cast<double>(s.credit_stalls));
			js.Set("probes", static_cast<double>(s.probes));
			js.Set("notifications", static_cast<double>(s.notifications));
			js.Set("bytesSent", static_cast<double>(s.bytes_sent));
			js.Set("bytesDelivered", static_cast<double>(s.bytes_delivered));
			js.Set("bytesStaged", static_cast<double>(s.bytes_staged));
			const VerbsConnState st = c.state();
			Napi::Object dp = Napi::Object::New(env);
			const std::pair<const char *, uint64_t> numbers[] = {
				{"sent", st.sent}, {"completed", st.completed}, {"txTail", st.tx_tail},
				{"messagesSent", st.msgs_sent}, {"oldestUnackedMs", st.oldest_unacked_ms},
				{"sendQueueUsed", st.sq_used}, {"batchesOut", st.batches_out},
				{"peerConsumed", st.peer_consumed}, {"peerRecvs", st.peer_recvs},
				{"delivered", st.delivered}, {"reportedConsumed", st.reported_consumed},
				{"recvsPosted", st.recvs_posted}, {"reportedRecvs", st.reported_recvs},
				{"stagedEnd", st.staged_end}, {"stagedPinned", st.staged_pinned}};
			for (const auto &[name, value] : numbers)
				dp.Set(name, static_cast<double>(value));
			const std::pair<const char *, bool> flags[] = {
				{"portUp", st.port_up}, {"notifyRequested", st.notify_requested},
				{"sendCqArmed", st.send_cq_armed}, {"authPending", st.auth_pending},
				{"finSent", st.fin_sent}, {"resetSent", st.reset_sent}, {"failed", st.failed}};
			for (const auto &[name, value] : flags)
				dp.Set(name, value);
			js.Set("dataPath", dp);
			return js;
		});
	}

	void destroy(const Napi::CallbackInfo &info)
	{
		uint32_t h = handle_arg(info[0]);
		fabric_->destroy(h);
	}

	void close(const Napi::CallbackInfo &)
	{
		fabric_->close();
	}

	Napi::Value handler_errors(const Napi::CallbackInfo &info)
	{
		return Napi::Number::New(info.Env(), static_cast<double>(handlers_->errors()));
	}

	Napi::Value last_handler_error(const Napi::CallbackInfo &info)
	{
		return handlers_->last_error(info.Env());
	}

	std::unique_ptr<JsHandlers> handlers_;
	std::unique_ptr<VerbsFabric> fabric_;
};

} // namespace

} // namespace vtoe

static Napi::Object init_verbs(Napi::Env env, Napi::Object exports)
{
	exports.Set("VerbsFabric", vtoe::JsVerbsFabric::define(env));
	return exports;
}

NODE_API_MODULE(vtoe_verbs, init_verbs)
