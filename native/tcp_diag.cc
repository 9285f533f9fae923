// tcpPeerAccepted(fd): has a process accepted the other end of this connected TCP socket?
// Asks the kernel for that one socket by its four-tuple (sock_diag, as ss does): a socket still
// in its listener's accept queue has no inode yet.  One netlink round trip, however many
// sockets the host has (reading /proc/net/tcp walks them all).
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "bindings.h"
#include "js_boundary.h"
#include "system_error.h"
#include "unique_fd.h"

namespace vtoe {

namespace {

// 1: accepted, 0: not yet, -1: no such socket (the peer end is gone).  Throws SystemError.
int peer_accepted(int fd)
{
	sockaddr_storage self{}, peer{};
	socklen_t sl = sizeof(self), pl = sizeof(peer);
	if (getsockname(fd, reinterpret_cast<sockaddr *>(&self), &sl) != 0 ||
	    getpeername(fd, reinterpret_cast<sockaddr *>(&peer), &pl) != 0)
		throw_errno("not a connected socket");
	if (self.ss_family != AF_INET && self.ss_family != AF_INET6)
		throw_system_error(EAFNOSUPPORT, "not a TCP/IP socket");

	struct {
		nlmsghdr nlh;
		inet_diag_req_v2 req;
	} msg{};
	msg.nlh.nlmsg_len = sizeof(msg);
	msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	msg.nlh.nlmsg_flags = NLM_F_REQUEST;
	msg.req.sdiag_family = self.ss_family;
	msg.req.sdiag_protocol = IPPROTO_TCP;
	msg.req.idiag_states = ~0u;
	msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
	msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	// The other end: its source is our peer, its destination is us.
	if (self.ss_family == AF_INET) {
		auto *s = reinterpret_cast<sockaddr_in *>(&self);
		auto *p = reinterpret_cast<sockaddr_in *>(&peer);
		msg.req.id.idiag_sport = p->sin_port;
		msg.req.id.idiag_dport = s->sin_port;
		memcpy(msg.req.id.idiag_src, &p->sin_addr, 4);
		memcpy(msg.req.id.idiag_dst, &s->sin_addr, 4);
	} else {
		auto *s = reinterpret_cast<sockaddr_in6 *>(&self);
		auto *p = reinterpret_cast<sockaddr_in6 *>(&peer);
		msg.req.id.idiag_sport = p->sin6_port;
		msg.req.id.idiag_dport = s->sin6_port;
		memcpy(msg.req.id.idiag_src, &p->sin6_addr, 16);
		memcpy(msg.req.id.idiag_dst, &s->sin6_addr, 16);
	}

	unique_fd nl(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
	if (!nl)
		throw_errno("cannot open a sock_diag netlink socket");
	sockaddr_nl kernel{};
	kernel.nl_family = AF_NETLINK;
	if (sendto(nl.get(), &msg, sizeof(msg), 0, reinterpret_cast<sockaddr *>(&kernel), sizeof(kernel)) < 0)
		throw_errno("sock_diag request failed");
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
			if (e->error == -ENOENT)
				return -1;
			throw_system_error(-e->error, "sock_diag lookup failed");
		}
		if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY) {
			auto *d = static_cast<inet_diag_msg *>(NLMSG_DATA(h));
			return d->idiag_inode != 0 ? 1 : 0;
		}
	}
	return -1;
}

} // namespace

Napi::Value tcp_peer_accepted_js(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	int fd = static_cast<int>(js_integer(info[0], "fd", 0, INT32_MAX));
	int r = at_js_boundary(env, [&] { return peer_accepted(fd); });
	return Napi::Number::New(env, r);
}

} // namespace vtoe
