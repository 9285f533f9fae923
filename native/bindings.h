// The classes and functions the addon exports; each defined in its own js_*.cc file.
#ifndef VTOE_NATIVE_BINDINGS_H
#define VTOE_NATIVE_BINDINGS_H

#include <napi.h>

namespace vtoe {

// class ControlServer (js_control_server.cc)
Napi::Function define_control_server(Napi::Env env);
// class ShmConnection (js_shm_connection.cc)
Napi::Function define_shm_connection(Napi::Env env);
// class ShmRegionPool (js_shm_region_pool.cc)
Napi::Function define_shm_region_pool(Napi::Env env);
// class ListenerPage (listener_page.cc)
Napi::Function define_listener_page(Napi::Env env);
// abiConstants(): the header's constants by their C names (abi_constants.cc)
Napi::Value abi_constants(const Napi::CallbackInfo &info);
// probeVerbs(): RDMA devices via a dlopen()ed libibverbs, for `vtoe doctor` (js_verbs_probe.cc)
Napi::Value probe_verbs_js(const Napi::CallbackInfo &info);
// tcpPeerAccepted(fd): 1 if a process accepted the other end of TCP socket fd, 0 if it waits
// in an accept queue, -1 if it is gone (tcp_diag.cc)
Napi::Value tcp_peer_accepted_js(const Napi::CallbackInfo &info);
// tcpSocketIdentity(fd): { local, remote (null until connected), listening, inAgentNetns (null
// until connected) } of TCP socket fd (tcp_diag.cc)
Napi::Value tcp_socket_identity_js(const Napi::CallbackInfo &info);
// tcpEndpoints(fd): { local, remote (null until connected) } of an IP socket fd, and nothing
// else: for a socket whose kind and namespace are known already (tcp_diag.cc)
Napi::Value tcp_endpoints_js(const Napi::CallbackInfo &info);
// tcpBufferSizes(fd): { sndbuf, rcvbuf }, SO_SNDBUF and SO_RCVBUF as the kernel keeps them
// (tcp_diag.cc)
Napi::Value tcp_buffer_sizes_js(const Napi::CallbackInfo &info);
// tcpBindAnyPort(fd): binds an unbound TCP socket to a port the kernel picks, at the address
// it has; returns that local endpoint (tcp_diag.cc)
Napi::Value tcp_bind_any_port_js(const Napi::CallbackInfo &info);
// tcpListening(family, address, port): true if a TCP socket of the agent's namespace listens
// where a connect to that address and port would land (tcp_diag.cc)
Napi::Value tcp_listening_js(const Napi::CallbackInfo &info);
// notifyService(message): sends it to systemd's $NOTIFY_SOCKET; false when there is none
// (service_notify.cc)
Napi::Value notify_service_js(const Napi::CallbackInfo &info);

} // namespace vtoe

#endif
