// The kernel's view of a TCP socket the agent was handed, asked with sock_diag (as ss asks):
//  - tcpPeerAccepted(fd): has a process accepted the other end of this connected socket?  A
//    socket still in its listener's accept queue has no inode yet.
//  - tcpSocketIdentity(fd): what the socket is (its addresses, listening or not) and whether
//    it lives in the agent's network namespace (in another one a process can make any tuple).
//  - tcpListening(family, address, port): does any TCP socket of the agent's namespace listen
//    where a connect to that address would land?
// One netlink round trip each for the first two; the last reads the listeners (a dump per family).
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "bindings.h"
#include "js_boundary.h"
#include "system_error.h"
#include "unique_fd.h"

namespace vtoe {

namespace {

struct DiagResult {
	bool found;
	uint32_t inode;
};

void set_diag_endpoint(__be16 *port, __be32 *addr, const sockaddr_storage &ss)
{
	if (ss.ss_family == AF_INET) {
		auto *a = reinterpret_cast<const sockaddr_in *>(&ss);
		*port = a->sin_port;
		memcpy(addr, &a->sin_addr, 4);
	} else {
		auto *a = reinterpret_cast<const sockaddr_in6 *>(&ss);
		*port = a->sin6_port;
		memcpy(addr, &a->sin6_addr, 16);
	}
}

struct DiagRequest {
	nlmsghdr nlh;
	inet_diag_req_v2 req;
};

// A TCP request of `family` with `flags`; the caller fills in what it asks.
DiagRequest diag_request(int family, uint16_t flags)
{
	DiagRequest msg{};
	msg.nlh.nlmsg_len = sizeof(msg);
	msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	msg.nlh.nlmsg_flags = flags;
	msg.req.sdiag_family = static_cast<uint8_t>(family);
	msg.req.sdiag_protocol = IPPROTO_TCP;
	return msg;
}

// Sends msg to the kernel on a fresh sock_diag socket, which it returns for the answer.
unique_fd diag_send(const DiagRequest &msg)
{
	unique_fd nl(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
	if (!nl)
		throw_errno("cannot open a sock_diag netlink socket");
	sockaddr_nl kernel{};
	kernel.nl_family = AF_NETLINK;
	if (sendto(nl.get(), &msg, sizeof(msg), 0, reinterpret_cast<const sockaddr *>(&kernel), sizeof(kernel)) < 0)
		throw_errno("sock_diag request failed");
	return nl;
}

// The TCP socket whose source is `src` and destination `dst` in the agent's namespace; with a
// cookie, only that very socket (another one with the tuple is "not found").
DiagResult diag_find(const sockaddr_storage &src, const sockaddr_storage &dst, const uint32_t cookie[2])
{
	DiagRequest msg = diag_request(src.ss_family, NLM_F_REQUEST);
	msg.req.idiag_states = ~0u;
	msg.req.id.idiag_cookie[0] = cookie[0];
	msg.req.id.idiag_cookie[1] = cookie[1];
	set_diag_endpoint(&msg.req.id.idiag_sport, msg.req.id.idiag_src, src);
	set_diag_endpoint(&msg.req.id.idiag_dport, msg.req.id.idiag_dst, dst);
	unique_fd nl = diag_send(msg);
	alignas(nlmsghdr) char buf[8192];
	ssize_t n;
	do {
		n = recv(nl.get(), buf, sizeof(buf), 0);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		throw_errno("sock_diag reply failed");
	for (auto *h = reinterpret_cast<nlmsghdr *>(buf); NLMSG_OK(h, static_cast<unsigned>(n));
	     h = NLMSG_NEXT(h, n)) {
		if (h->nlmsg_type == NLMSG_ERROR) {
			auto *e = static_cast<nlmsgerr *>(NLMSG_DATA(h));
			if (e->error == -ENOENT || e->error == -ESTALE) // none, or not that socket
				return {false, 0};
			throw_system_error(-e->error, "sock_diag lookup failed");
		}
		if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY) {
			auto *d = static_cast<inet_diag_msg *>(NLMSG_DATA(h));
			return {true, d->idiag_inode};
		}
	}
	return {false, 0};
}

// Calls match(msg) for each listening TCP socket of `family` in the agent's namespace until it
// returns true; true if one did.
template <typename Match>
bool diag_listeners(int family, Match &&match)
{
	DiagRequest msg = diag_request(family, NLM_F_REQUEST | NLM_F_DUMP);
	msg.req.idiag_states = 1u << 10; // TCP_LISTEN
	unique_fd nl = diag_send(msg);
	alignas(nlmsghdr) char buf[16384];
	for (;;) {
		ssize_t n = recv(nl.get(), buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			throw_errno("sock_diag reply failed");
		if (n == 0)
			return false;
		for (auto *h = reinterpret_cast<nlmsghdr *>(buf); NLMSG_OK(h, static_cast<unsigned>(n));
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_DONE)
				return false;
			if (h->nlmsg_type == NLMSG_ERROR) {
				auto *e = static_cast<nlmsgerr *>(NLMSG_DATA(h));
				throw_system_error(-e->error, "sock_diag listener dump failed");
			}
			if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
			    match(*static_cast<const inet_diag_msg *>(NLMSG_DATA(h))))
				return true; // the rest of the dump goes with the socket
		}
	}
}

// Would a connect to (family, addr, port) reach a listener here?  A wildcard listener counts;
// an IPv6 wildcard counts for IPv4 too (dual stack: IPV6_V6ONLY is not asked, so this may say
// yes where the kernel would refuse, never the other way round for an exact or IPv4 listener).
bool listening_at(int family, const unsigned char *addr, uint16_t port)
{
	static const unsigned char any[16] = {};
	static const unsigned char mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	const __be16 port_be = htons(port);
	// The destination as IPv4, if it is one (plain or v4-mapped).
	const unsigned char *v4 = family == AF_INET ? addr
				  : memcmp(addr, mapped_prefix, 12) == 0 ? addr + 12 : nullptr;
	if (v4 && diag_listeners(AF_INET, [&](const inet_diag_msg &d) {
		    return d.id.idiag_sport == port_be &&
			   (memcmp(d.id.idiag_src, any, 4) == 0 || memcmp(d.id.idiag_src, v4, 4) == 0);
	    }))
		return true;
	return diag_listeners(AF_INET6, [&](const inet_diag_msg &d) {
		if (d.id.idiag_sport != port_be)
			return false;
		const auto *src = reinterpret_cast<const unsigned char *>(d.id.idiag_src);
		if (memcmp(src, any, 16) == 0)
			return true;
		if (family == AF_INET6)
			return memcmp(src, addr, 16) == 0;
		return memcmp(src, mapped_prefix, 12) == 0 && memcmp(src + 12, v4, 4) == 0;
	});
}

// A TCP/IP socket's two addresses (peer only once connected).
struct Endpoints {
	sockaddr_storage self{}, peer{};
	bool connected = false;
};

Endpoints addresses(int fd)
{
	Endpoints e;
	socklen_t sl = sizeof(e.self), pl = sizeof(e.peer);
	if (getsockname(fd, reinterpret_cast<sockaddr *>(&e.self), &sl) != 0)
		throw_errno("not a socket");
	if (e.self.ss_family != AF_INET && e.self.ss_family != AF_INET6)
		throw_system_error(EAFNOSUPPORT, "not a TCP/IP socket");
	e.connected = getpeername(fd, reinterpret_cast<sockaddr *>(&e.peer), &pl) == 0;
	if (!e.connected && errno != ENOTCONN)
		throw_errno("cannot read the socket's peer");
	return e;
}

const uint32_t kNoCookie[2] = {INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE};

// 1: accepted, 0: not yet, -1: no such socket (the peer end is gone).  Throws SystemError.
int peer_accepted(int fd)
{
	const Endpoints e = addresses(fd);
	if (!e.connected)
		throw_system_error(ENOTCONN, "not a connected socket");
	DiagResult r = diag_find(e.peer, e.self, kNoCookie); // the other end: from our peer to us
	return !r.found ? -1 : r.inode != 0 ? 1 : 0;
}

int int_option(int fd, int level, int name)
{
	int v = 0;
	socklen_t l = sizeof(v);
	if (getsockopt(fd, level, name, &v, &l) != 0)
		throw_errno("cannot read a socket option");
	return v;
}

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71 // Linux 5.14
#endif

// The cookie of the network namespace socket fd lives in; 0 where the kernel has none to give.
uint64_t netns_cookie(int fd)
{
	uint64_t cookie = 0;
	socklen_t l = sizeof(cookie);
	return getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &l) == 0 ? cookie : 0;
}

// Is socket fd in the agent's network namespace?  1 yes, 0 no, -1 cannot tell.  The kernel
// gives each namespace a cookie (5.14: one call, no privilege); before that, with
// CAP_NET_ADMIN, it names the socket's namespace (SIOCGSKNS: an fd to open and close).
// Otherwise a connected socket's four-tuple is looked up here: this very socket (its cookie)
// is a yes; another socket with that tuple is a no (a process can make any tuple in a
// namespace of its own, never here); none at all means sock_diag cannot see it (no tcp_diag
// module), and nothing is known.
int in_own_netns(int fd, const Endpoints &e)
{
	static const uint64_t own_cookie = [] { // the agent's namespace never changes
		unique_fd probe(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
		return probe ? netns_cookie(probe.get()) : 0;
	}();
	const uint64_t theirs_cookie = own_cookie ? netns_cookie(fd) : 0;
	if (theirs_cookie)
		return theirs_cookie == own_cookie ? 1 : 0;
	static struct stat ours;
	static const bool known = stat("/proc/self/ns/net", &ours) == 0;
	unique_fd ns(known ? ioctl(fd, SIOCGSKNS) : -1);
	struct stat theirs;
	if (ns && fstat(ns.get(), &theirs) == 0)
		return theirs.st_ino == ours.st_ino && theirs.st_dev == ours.st_dev ? 1 : 0;
	if (!e.connected)
		return -1;
	uint64_t cookie = 0;
	socklen_t l = sizeof(cookie);
	if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &l) != 0)
		throw_errno("cannot read the socket's cookie");
	const uint32_t parts[2] = {static_cast<uint32_t>(cookie), static_cast<uint32_t>(cookie >> 32)};
	if (diag_find(e.self, e.peer, parts).found)
		return 1;
	return diag_find(e.self, e.peer, kNoCookie).found ? 0 : -1;
}

Napi::Value endpoint_to_js(Napi::Env env, const sockaddr_storage &ss)
{
	char text[INET6_ADDRSTRLEN] = "";
	Napi::Object js = Napi::Object::New(env);
	if (ss.ss_family == AF_INET) {
		auto *a = reinterpret_cast<const sockaddr_in *>(&ss);
		inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text));
		js.Set("family", 4);
		js.Set("port", ntohs(a->sin_port));
		js.Set("scopeId", 0);
	} else {
		auto *a = reinterpret_cast<const sockaddr_in6 *>(&ss);
		inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof(text));
		js.Set("family", 6);
		js.Set("port", ntohs(a->sin6_port));
		js.Set("scopeId", a->sin6_scope_id);
	}
	js.Set("address", text);
	return js;
}

// { local, remote (null until connected) }: what tcpEndpoints returns, and tcpSocketIdentity
// adds to.
Napi::Object endpoints_to_js(Napi::Env env, const Endpoints &e)
{
	Napi::Object js = Napi::Object::New(env);
	js.Set("local", endpoint_to_js(env, e.self));
	js.Set("remote", e.connected ? endpoint_to_js(env, e.peer) : env.Null());
	return js;
}

// addresses() for a JS call: its errors become JS ones.
Endpoints addresses_js(Napi::Env env, int fd)
{
	return at_js_boundary(env, [&] { return addresses(fd); });
}

} // namespace

Napi::Value tcp_peer_accepted_js(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	int fd = static_cast<int>(js_integer(info[0], "fd", 0, INT32_MAX));
	int r = at_js_boundary(env, [&] { return peer_accepted(fd); });
	return Napi::Number::New(env, r);
}

Napi::Value tcp_socket_identity_js(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	int fd = static_cast<int>(js_integer(info[0], "fd", 0, INT32_MAX));
	Endpoints e;
	bool listening = false;
	int own_netns = -1; // unknown
	at_js_boundary(env, [&] {
		// IPPROTO_TCP exists only as SOCK_STREAM, and addresses() refuses other families.
		if (int_option(fd, SOL_SOCKET, SO_PROTOCOL) != IPPROTO_TCP)
			throw_system_error(EPROTOTYPE, "not a TCP socket");
		e = addresses(fd);
		listening = int_option(fd, SOL_SOCKET, SO_ACCEPTCONN) != 0;
		own_netns = in_own_netns(fd, e);
		return 0;
	});
	Napi::Object js = endpoints_to_js(env, e);
	js.Set("listening", listening);
	js.Set("inAgentNetns", own_netns < 0 ? env.Null() : Napi::Value(Napi::Boolean::New(env, own_netns == 1)));
	return js;
}

Napi::Value tcp_endpoints_js(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	int fd = static_cast<int>(js_integer(info[0], "fd", 0, INT32_MAX));
	return endpoints_to_js(env, addresses_js(env, fd));
}

Napi::Value tcp_buffer_sizes_js(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	int fd = static_cast<int>(js_integer(info[0], "fd", 0, INT32_MAX));
	int sndbuf = 0, rcvbuf = 0;
	at_js_boundary(env, [&] {
		sndbuf = int_option(fd, SOL_SOCKET, SO_SNDBUF);
		rcvbuf = int_option(fd, SOL_SOCKET, SO_RCVBUF);
		return 0;
	});
	Napi::Object js = Napi::Object::New(env);
	js.Set("sndbuf", sndbuf);
	js.Set("rcvbuf", rcvbuf);
	return js;
}

Napi::Value tcp_bind_any_port_js(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	int fd = static_cast<int>(js_integer(info[0], "fd", 0, INT32_MAX));
	Endpoints e = addresses_js(env, fd);
	at_js_boundary(env, [&] {
		if (e.connected)
			throw_system_error(EISCONN, "the socket is connected already");
		// Its address as it stands (the wildcard, or what the program bound), port 0: the
		// kernel picks one.
		socklen_t len = e.self.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
		if (bind(fd, reinterpret_cast<sockaddr *>(&e.self), len) != 0)
			throw_errno("cannot bind the socket to a port", "the port range may be exhausted");
		e = addresses(fd);
		return 0;
	});
	return endpoint_to_js(env, e.self);
}

Napi::Value tcp_listening_js(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	double version = js_integer(info[0], "family", 4, 6);
	if (version != 4 && version != 6)
		throw Napi::TypeError::New(env, "family must be 4 or 6");
	int family = version == 4 ? AF_INET : AF_INET6;
	if (!info[1].IsString())
		throw Napi::TypeError::New(env, "address must be a string");
	std::string text = info[1].As<Napi::String>().Utf8Value();
	uint16_t port = static_cast<uint16_t>(js_integer(info[2], "port", 1, 65535));
	unsigned char addr[16] = {};
	if (inet_pton(family, text.c_str(), addr) != 1)
		throw Napi::TypeError::New(env, "address is not an IP address of that family");
	bool yes = at_js_boundary(env, [&] { return listening_at(family, addr, port); });
	return Napi::Boolean::New(env, yes);
}

} // namespace vtoe
