// JavaScript class ControlServer over vtoe::ControlServer.
//
// Events reach the JS handlers from uv_poll callbacks on the loop thread (see JsHandlers).
// A handler that throws does not stop the server: the error is kept in lastHandlerError and
// counted in handlerErrors, and the server keeps serving every client.
#include <napi.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include <memory>
#include <string>
#include <vector>

#include "bindings.h"
#include "control_server.h"
#include "ctl_message.h"
#include "js_boundary.h"
#include "js_handlers.h"

namespace vtoe {

namespace {

Napi::Value sockaddr_to_js(Napi::Env env, const vtoe_sockaddr &addr)
{
	if (addr.family == 0)
		return env.Null();
	char text[INET6_ADDRSTRLEN] = "";
	inet_ntop(addr.family, addr.addr, text, sizeof(text));
	Napi::Object js = Napi::Object::New(env);
	js.Set("family", Napi::Number::New(env, addr.family == AF_INET ? 4 : 6));
	js.Set("address", Napi::String::New(env, text));
	js.Set("port", Napi::Number::New(env, addr.port));
	js.Set("scopeId", Napi::Number::New(env, addr.scope_id));
	return js;
}

Napi::Object request_to_js(Napi::Env env, const vtoe_ctl_req &req)
{
	Napi::Object js = Napi::Object::New(env);
	js.Set("op", Napi::Number::New(env, req.op));
	js.Set("seq", Napi::Number::New(env, req.seq));
	js.Set("sid", Napi::Number::New(env, req.sid));
	js.Set("cid", Napi::BigInt::New(env, static_cast<uint64_t>(req.cid)));
	js.Set("arg", Napi::Number::New(env, req.arg));
	js.Set("local", sockaddr_to_js(env, req.local));
	js.Set("remote", sockaddr_to_js(env, req.remote));
	js.Set("name", Napi::String::New(env, req.name)); // NUL-terminated: checked on receipt
	return js;
}

vtoe_ctl_rep reply_from_js(const Napi::Value &value)
{
	if (!value.IsObject())
		throw Napi::TypeError::New(value.Env(), "reply must be an object");
	Napi::Object js = value.As<Napi::Object>();
	vtoe_ctl_rep rep = ctl_reply_template();
	rep.event = static_cast<uint16_t>(
		js_integer(js.Get("event"), "reply.event", 0, VTOE_EV__COUNT - 1));
	rep.seq = js_u32(js.Get("seq"), "reply.seq");
	Napi::Value err = js.Get("err");
	if (!err.IsUndefined())
		rep.err = static_cast<int32_t>(js_integer(err, "reply.err", 0, INT32_MAX));
	rep.sid = js_u32_property(js, "sid", "reply.sid", 0);
	rep.fabric = js_u32_property(js, "fabric", "reply.fabric", VTOE_FABRIC_NONE);
	Napi::Value cid = js.Get("cid");
	if (!cid.IsUndefined())
		rep.cid = js_u64_bigint(cid, "reply.cid");
	rep.side = js_u32_property(js, "side", "reply.side", 0);
	if (rep.side > 1)
		throw Napi::RangeError::New(value.Env(), "reply.side must be 0 (active) or 1 (passive)");
	rep.ring_size = js_u32_property(js, "ringSize", "reply.ringSize", 0);
	rep.reason = js_u32_property(js, "reason", "reply.reason", VTOE_FB_NONE);
	rep.spin_us = js_u32_property(js, "spinUs", "reply.spinUs", 0);
	rep.skip_until_ms = js_u32_property(js, "skipUntilMs", "reply.skipUntilMs", 0);
	return rep;
}

std::vector<int> fds_from_js(const Napi::Value &value)
{
	std::vector<int> fds;
	if (value.IsUndefined() || value.IsNull())
		return fds;
	if (!value.IsArray())
		throw Napi::TypeError::New(value.Env(), "fds must be an array of file descriptors");
	Napi::Array array = value.As<Napi::Array>();
	if (array.Length() > VTOE_FD__COUNT)
		throw Napi::RangeError::New(value.Env(),
					    "a reply carries at most " + std::to_string(VTOE_FD__COUNT) +
						    " descriptors (region, app, peer bell: enum vtoe_rep_fd)");
	for (uint32_t i = 0; i < array.Length(); i++)
		fds.push_back(static_cast<int>(js_integer(array.Get(i), "fds[i]", 0, INT32_MAX)));
	return fds;
}

class JsControlServer : public Napi::ObjectWrap<JsControlServer>, private ControlListener {
public:
	static Napi::Function define(Napi::Env env)
	{
		return DefineClass(
			env, "ControlServer",
			{
				InstanceMethod<&JsControlServer::reply>("reply"),
				InstanceMethod<&JsControlServer::drop>("drop"),
				InstanceMethod<&JsControlServer::close>("close"),
				InstanceAccessor<&JsControlServer::client_count>("clientCount"),
				InstanceAccessor<&JsControlServer::protocol_errors>("protocolErrors"),
				InstanceAccessor<&JsControlServer::handler_errors>("handlerErrors"),
				InstanceAccessor<&JsControlServer::last_handler_error>("lastHandlerError"),
				InstanceAccessor<&JsControlServer::shed_connections>("shedConnections"),
				InstanceAccessor<&JsControlServer::closed>("closed"),
				InstanceAccessor<&JsControlServer::path>("path"),
			});
	}

	// new ControlServer(path: string, handlers: { onOpen, onMessage, onClose })
	explicit JsControlServer(const Napi::CallbackInfo &info) : ObjectWrap(info)
	{
		Napi::Env env = info.Env();
		if (!info[0].IsString())
			throw Napi::TypeError::New(env, "path must be a string");
		handlers_ = std::make_unique<JsHandlers>(info[1],
							 std::initializer_list<const char *>{"onOpen", "onMessage", "onClose"},
							 "vtoe:ControlServer", info.This().As<Napi::Object>());

		uv_loop_t *loop = nullptr;
		if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop)
			throw Napi::Error::New(env, "no libuv loop for this Node environment");
		std::string path = info[0].As<Napi::String>().Utf8Value();
		server_ = at_js_boundary(env, [&] {
			ControlListener &listener = *this; // a private base: convert here, where it is accessible
			return std::make_unique<ControlServer>(loop, path, listener);
		});
		// Like a net.Server: a listening server stays alive without a JS reference to it.
		Ref();
		referenced_ = true;
	}

	~JsControlServer() override
	{
		// From the finalizer: no JS may run, and the server is closed without on_close.
		if (server_)
			server_->close();
	}

private:
	// ---- events from the server, on the loop thread ----

	void on_open(uint64_t client, const PeerCredentials &cred) override
	{
		Napi::Env env = Env();
		Napi::HandleScope scope(env);
		Napi::Object js = Napi::Object::New(env);
		js.Set("pid", Napi::Number::New(env, cred.pid));
		js.Set("uid", Napi::Number::New(env, cred.uid));
		js.Set("gid", Napi::Number::New(env, cred.gid));
		handlers_->call("onOpen", {Napi::Number::New(env, static_cast<double>(client)), js});
	}

	void on_message(uint64_t client, const vtoe_ctl_req &req, int fd) override
	{
		Napi::Env env = Env();
		Napi::HandleScope scope(env);
		Napi::Object js = request_to_js(env, req);
		if (fd >= 0)
			js.Set("fd", Napi::Number::New(env, fd)); // the handler owns it now
		handlers_->call("onMessage", {Napi::Number::New(env, static_cast<double>(client)), js});
	}

	void on_close(uint64_t client, const std::string &reason) override
	{
		Napi::Env env = Env();
		Napi::HandleScope scope(env);
		handlers_->call("onClose",
				{Napi::Number::New(env, static_cast<double>(client)), Napi::String::New(env, reason)});
	}

	// ---- methods ----

	// reply(client, rep, fds?) -> boolean
	Napi::Value reply(const Napi::CallbackInfo &info)
	{
		Napi::Env env = info.Env();
		double client = js_integer(info[0], "client", 0, 9007199254740991.0);
		vtoe_ctl_rep rep = reply_from_js(info[1]);
		std::vector<int> fds = fds_from_js(info[2]);
		rep.nfds = static_cast<uint32_t>(fds.size());
		bool sent = at_js_boundary(env, [&] {
			return server_->reply(static_cast<uint64_t>(client), rep, fds.data(), fds.size());
		});
		return Napi::Boolean::New(env, sent);
	}

	// drop(client): closes it and reports onClose(client, 'dropped').
	void drop(const Napi::CallbackInfo &info)
	{
		double client = js_integer(info[0], "client", 0, 9007199254740991.0);
		server_->drop(static_cast<uint64_t>(client), "dropped");
	}

	void close(const Napi::CallbackInfo &)
	{
		server_->close();
		if (referenced_) {
			referenced_ = false;
			Unref();
		}
	}

	Napi::Value client_count(const Napi::CallbackInfo &info)
	{
		return Napi::Number::New(info.Env(), static_cast<double>(server_->client_count()));
	}

	Napi::Value protocol_errors(const Napi::CallbackInfo &info)
	{
		return Napi::Number::New(info.Env(), static_cast<double>(server_->protocol_errors()));
	}

	Napi::Value shed_connections(const Napi::CallbackInfo &info)
	{
		return Napi::Number::New(info.Env(), static_cast<double>(server_->shed_connections()));
	}

	Napi::Value handler_errors(const Napi::CallbackInfo &info)
	{
		return Napi::Number::New(info.Env(), static_cast<double>(handlers_->errors()));
	}

	Napi::Value last_handler_error(const Napi::CallbackInfo &info)
	{
		return handlers_->last_error(info.Env());
	}

	Napi::Value closed(const Napi::CallbackInfo &info)
	{
		return Napi::Boolean::New(info.Env(), server_->closed());
	}

	Napi::Value path(const Napi::CallbackInfo &info)
	{
		return Napi::String::New(info.Env(), server_->path());
	}

	// A handler bug must not take every process's control channel down with it (JsHandlers).
	std::unique_ptr<JsHandlers> handlers_;
	bool referenced_ = false;
	// Never reset before the destructor: a handler may close the server from inside one of
	// its callbacks, and the server's frames are still on the stack then.
	std::unique_ptr<ControlServer> server_;
};

} // namespace

Napi::Function define_control_server(Napi::Env env)
{
	return JsControlServer::define(env);
}

} // namespace vtoe
