#include "control_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "ctl_message.h"
#include "socket_path.h"
#include "system_error.h"

namespace vtoe {

namespace {

// Room for more descriptors than any honest client sends (none), so that the ones a hostile
// client attaches arrive and get closed, rather than linger in the kernel.
constexpr size_t kMaxPassedFds = 16;

std::string error_reason(int err)
{
	return std::string("error: ") + errno_name(err);
}

// recvmsg() returns 0 both for end of stream and for a zero-length message.
bool peer_hung_up(int fd)
{
	pollfd p = {fd, POLLRDHUP, 0};
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

bool is_stream_socket(int fd, bool unix_domain)
{
	int type = 0, domain = 0;
	socklen_t l = sizeof(int);
	return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) == 0 && type == SOCK_STREAM &&
	       getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l) == 0 &&
	       (unix_domain ? domain == AF_UNIX : (domain == AF_INET || domain == AF_INET6));
}

// What a request may carry: LISTEN, CONNECT and ACCEPT the kernel TCP socket they are about
// (the proof that the process holds it), ATTACH and BELL an offloaded socket (a Unix socketpair
// end).  Nothing else carries a descriptor.
bool may_carry(uint16_t op, int fd)
{
	return ((op == VTOE_OP_LISTEN || op == VTOE_OP_CONNECT || op == VTOE_OP_ACCEPT) &&
		is_stream_socket(fd, false)) ||
	       ((op == VTOE_OP_ATTACH || op == VTOE_OP_BELL) && is_stream_socket(fd, true));
}

} // namespace

ControlServer::ControlServer(uv_loop_t *loop, const std::string &path, ControlListener &listener)
	: loop_(loop), path_(path), listener_(listener)
{
	claim_socket_path(path_);
	bind_and_listen();
	spare_fd_.reset(open("/dev/null", O_RDONLY | O_CLOEXEC));
	try {
		listen_watch_ = start_watch(listen_fd_.get(), 0, on_listener_ready);
	} catch (...) {
		close();
		throw;
	}
}

ControlServer::~ControlServer()
{
	close();
}

void ControlServer::bind_and_listen()
{
	sockaddr_un addr = unix_address(path_);
	listen_fd_.reset(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	if (!listen_fd_)
		throw_errno("cannot create the control socket");
	if (bind(listen_fd_.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0) {
		if (errno == EADDRINUSE)
			throw_system_error(EADDRINUSE, "an agent is already running at " + path_,
					   "another agent bound it while this one started");
		throw_errno("cannot bind the control socket to " + path_);
	}
	// Owner only, set before listen() so that nobody can connect while it is wider.
	struct stat st;
	if (chmod(path_.c_str(), 0600) != 0 || stat(path_.c_str(), &st) != 0 ||
	    listen(listen_fd_.get(), SOMAXCONN) != 0) {
		int err = errno;
		unlink(path_.c_str());
		throw_system_error(err, "cannot set up the control socket at " + path_);
	}
	socket_dev_ = st.st_dev;
	socket_ino_ = st.st_ino;
}

ControlServer::Watch *ControlServer::start_watch(int fd, uint64_t client, uv_poll_cb callback)
{
	auto *watch = new Watch{};
	watch->server = this;
	watch->client = client;
	int rc = uv_poll_init(loop_, &watch->poll, fd);
	if (rc != 0) {
		delete watch; // never initialised, so libuv holds no reference to it
		throw_system_error(-rc, "cannot watch the control socket with uv_poll");
	}
	watch->poll.data = watch;
	rc = uv_poll_start(&watch->poll, UV_READABLE, callback);
	if (rc != 0) {
		stop_watch(watch);
		throw_system_error(-rc, "cannot watch the control socket with uv_poll");
	}
	return watch;
}

void ControlServer::stop_watch(Watch *watch)
{
	if (!watch)
		return;
	// uv_close() stops the poll now (so the fd may be closed right after) but frees the
	// handle only from its callback, on a later loop turn.
	watch->server = nullptr;
	uv_close(reinterpret_cast<uv_handle_t *>(&watch->poll),
		 [](uv_handle_t *handle) { delete static_cast<Watch *>(handle->data); });
}

void ControlServer::close()
{
	if (closed_)
		return;
	closed_ = true;
	stop_watch(listen_watch_);
	listen_watch_ = nullptr;
	listen_fd_.reset();
	spare_fd_.reset();
	for (auto &entry : clients_)
		stop_watch(entry.second.watch);
	clients_.clear(); // closes their fds
	// Unlink only our own socket: a newer agent may have replaced it.
	struct stat st;
	if (socket_ino_ != 0 && lstat(path_.c_str(), &st) == 0 && st.st_dev == socket_dev_ &&
	    st.st_ino == socket_ino_)
		unlink(path_.c_str());
}

void ControlServer::on_listener_ready(uv_poll_t *handle, int status, int)
{
	auto *watch = static_cast<Watch *>(handle->data);
	if (!watch->server || status < 0)
		return; // a listening socket error is transient (e.g. ENOBUFS): keep listening
	watch->server->accept_batch();
}

void ControlServer::accept_batch()
{
	for (int i = 0; i < kBatch && !closed_; i++) {
		int fd = accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			admit(unique_fd(fd));
			continue;
		}
		switch (errno) {
		case EINTR:
		case ECONNABORTED:
			continue;
		case EMFILE:
		case ENFILE:
			shed_one_connection();
			continue;
		default: // EAGAIN: all taken; anything else: try again on the next readiness
			return;
		}
	}
}

// Out of descriptors: give the spare one up for a moment to accept and close the waiting
// connection, so the client sees EOF (and falls back to TCP) instead of hanging.
void ControlServer::shed_one_connection()
{
	spare_fd_.reset();
	unique_fd refused(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
	if (refused)
		shed_connections_++;
	refused.reset();
	spare_fd_.reset(open("/dev/null", O_RDONLY | O_CLOEXEC));
}

void ControlServer::admit(unique_fd fd)
{
	ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof(cred))
		return; // cannot tell who it is: refuse it
	uint64_t id = next_client_++;
	Watch *watch;
	try {
		watch = start_watch(fd.get(), id, on_client_ready);
	} catch (const SystemError &) {
		return; // out of resources for this one client: it sees EOF
	}
	clients_.emplace(id, Client{std::move(fd), watch});
	listener_.on_open(id, PeerCredentials{cred.pid, cred.uid, cred.gid});
}

void ControlServer::on_client_ready(uv_poll_t *handle, int status, int)
{
	auto *watch = static_cast<Watch *>(handle->data);
	if (watch->server)
		watch->server->read_batch(watch->client, status);
}

void ControlServer::read_batch(uint64_t client, int status)
{
	if (status < 0) {
		drop(client, std::string("error: ") + uv_err_name(status));
		return;
	}
	for (int i = 0; i < kBatch; i++) {
		// A listener call may have dropped this client or closed the server.
		auto it = clients_.find(client);
		if (closed_ || it == clients_.end())
			return;
		if (!receive_one(client, it->second.fd.get()))
			return;
	}
}

bool ControlServer::receive_one(uint64_t client, int fd)
{
	// One byte more than a request, and MSG_TRUNC to learn the real length of longer ones.
	union {
		vtoe_ctl_req req;
		unsigned char bytes[sizeof(vtoe_ctl_req) + 1];
	} buffer;
	memset(&buffer, 0, sizeof(buffer));
	alignas(cmsghdr) unsigned char control[CMSG_SPACE(kMaxPassedFds * sizeof(int))];
	iovec iov = {buffer.bytes, sizeof(buffer.bytes)};
	msghdr msg;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control;
	msg.msg_controllen = sizeof(control);

	ssize_t n;
	do {
		n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return false;
		drop(client, errno == ECONNRESET ? std::string("closed") : error_reason(errno));
		return false;
	}
	size_t length = static_cast<size_t>(n);

	std::vector<unique_fd> passed;
	if (msg.msg_controllen > 0)
		for (int passed_fd : ctl_passed_fds(msg))
			passed.emplace_back(passed_fd);
	const bool socket_ok = passed.size() == 1 && may_carry(buffer.req.op, passed[0].get());
	CtlVerdict verdict = ctl_message_verdict(buffer.req, length, msg.msg_flags,
						 msg.msg_controllen, passed.size(), socket_ok);
	if (!verdict.violation.empty()) {
		const bool ancillary = msg.msg_controllen > 0 || (msg.msg_flags & MSG_CTRUNC);
		if (length == 0 && !ancillary && peer_hung_up(fd))
			drop(client, "closed");
		else
			violation(client, fd, buffer.req, length, verdict.violation);
		return false;
	}
	listener_.on_message(client, buffer.req, verdict.with_socket ? passed[0].release() : -1);
	return true;
}

void ControlServer::violation(uint64_t client, int fd, const vtoe_ctl_req &req, size_t length,
			      const std::string &what)
{
	protocol_errors_++;
	// Best effort: tell the client why before closing; if it cannot take it, it sees EOF.
	vtoe_ctl_rep rep = ctl_reply_template();
	rep.event = VTOE_EV_ERROR;
	rep.err = EPROTO;
	rep.seq = ctl_seq_readable(length) ? req.seq : 0;
	(void)send(fd, &rep, sizeof(rep), MSG_DONTWAIT | MSG_NOSIGNAL);
	drop(client, "protocol: " + what);
}

bool ControlServer::drop(uint64_t client, const std::string &reason)
{
	auto it = clients_.find(client);
	if (it == clients_.end())
		return false;
	stop_watch(it->second.watch);
	clients_.erase(it); // closes the fd
	listener_.on_close(client, reason);
	return true;
}

bool ControlServer::reply(uint64_t client, const vtoe_ctl_rep &rep, const int *fds, size_t nfds)
{
	auto it = clients_.find(client);
	if (it == clients_.end())
		return false;
	if (nfds > kMaxPassedFds)
		throw_system_error(EINVAL, "a reply carries at most " + std::to_string(kMaxPassedFds) +
						   " descriptors");

	iovec iov = {const_cast<vtoe_ctl_rep *>(&rep), sizeof(rep)};
	msghdr msg;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	alignas(cmsghdr) unsigned char control[CMSG_SPACE(kMaxPassedFds * sizeof(int))];
	if (nfds > 0) {
		memset(control, 0, sizeof(control));
		msg.msg_control = control;
		msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}

	ssize_t n;
	do {
		n = sendmsg(it->second.fd.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n == static_cast<ssize_t>(sizeof(rep)))
		return true;
	int err = n < 0 ? errno : EMSGSIZE;
	switch (err) {
	case EBADF: // the descriptors given to pass: the agent's mistake, not the client's
	case EFAULT:
	case EINVAL:
	case ETOOMANYREFS: // the agent has too many descriptors in flight overall
		throw_system_error(err, "cannot send a reply to control client " + std::to_string(client),
				   "check the descriptors passed with it");
	case EAGAIN:
#if EAGAIN != EWOULDBLOCK
	case EWOULDBLOCK:
#endif
	case ENOBUFS:
		// It does not read its replies: waiting would let it hold the agent hostage.
		drop(client, "stalled");
		return false;
	case EPIPE:
	case ECONNRESET:
	case ENOTCONN:
		drop(client, "closed");
		return false;
	default:
		drop(client, error_reason(err));
		return false;
	}
}

} // namespace vtoe
