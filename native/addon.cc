// vtoe_native: the agent's native half.  Exports ControlServer, ShmConnection, ShmRegionPool,
// ListenerPage, abiConstants, probeVerbs, tcpPeerAccepted, tcpSocketIdentity, tcpEndpoints,
// tcpBufferSizes, tcpBindAnyPort, tcpListening, notifyService.
#include <napi.h>

#include "bindings.h"

namespace {

Napi::Object init(Napi::Env env, Napi::Object exports)
{
	exports.Set("ControlServer", vtoe::define_control_server(env));
	exports.Set("ShmConnection", vtoe::define_shm_connection(env));
	exports.Set("ShmRegionPool", vtoe::define_shm_region_pool(env));
	exports.Set("ListenerPage", vtoe::define_listener_page(env));
	exports.Set("abiConstants", Napi::Function::New(env, vtoe::abi_constants, "abiConstants"));
	exports.Set("probeVerbs", Napi::Function::New(env, vtoe::probe_verbs_js, "probeVerbs"));
	exports.Set("tcpPeerAccepted", Napi::Function::New(env, vtoe::tcp_peer_accepted_js, "tcpPeerAccepted"));
	exports.Set("tcpEndpoints", Napi::Function::New(env, vtoe::tcp_endpoints_js, "tcpEndpoints"));
	exports.Set("tcpBufferSizes", Napi::Function::New(env, vtoe::tcp_buffer_sizes_js, "tcpBufferSizes"));
	exports.Set("tcpBindAnyPort", Napi::Function::New(env, vtoe::tcp_bind_any_port_js, "tcpBindAnyPort"));
	exports.Set("tcpListening", Napi::Function::New(env, vtoe::tcp_listening_js, "tcpListening"));
	exports.Set("tcpSocketIdentity", Napi::Function::New(env, vtoe::tcp_socket_identity_js, "tcpSocketIdentity"));
	exports.Set("notifyService", Napi::Function::New(env, vtoe::notify_service_js, "notifyService"));
	return exports;
}

} // namespace

NODE_API_MODULE(vtoe_native, init)
