// The agent's end of the control channel: an AF_UNIX SOCK_SEQPACKET listener that accepts
// processes, checks every request they send and sends replies (with descriptors) back.
//
// It runs on one libuv loop (Node's) and never blocks it: every fd is nonblocking and watched
// with uv_poll.  It knows nothing of JavaScript; ControlListener is how events leave it.
#ifndef VTOE_NATIVE_CONTROL_SERVER_H
#define VTOE_NATIVE_CONTROL_SERVER_H

#include <sys/types.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "unique_fd.h"
#include "vtoe_abi.h"

namespace vtoe {

struct PeerCredentials {
	pid_t pid;
	uid_t uid;
	gid_t gid;
};

// Told about clients, on the loop thread.  A listener may call back into the server (reply,
// drop, close) from any of these; the server re-checks its state after each call.
class ControlListener {
public:
	virtual ~ControlListener() = default;
	virtual void on_open(uint64_t client, const PeerCredentials &cred) = 0;
	// Only requests that passed ctl_request_violation() arrive here.  fd: the one socket a
	// request may carry (LISTEN, CONNECT, ACCEPT: the TCP socket it is about; ATTACH, BELL: an
	// offloaded socket), owned by the listener from now on; -1 for none.
	virtual void on_message(uint64_t client, const vtoe_ctl_req &req, int fd) = 0;
	// Exactly once per opened client, unless the whole server is closed first.
	virtual void on_close(uint64_t client, const std::string &reason) = 0;
};

class ControlServer {
public:
	// Most messages or connections handled per readiness callback, so one busy client cannot
	// starve the others (the poll is level-triggered: the rest come on the next loop turn).
	static constexpr int kBatch = 8;

	// Binds and listens at `path`; throws SystemError (EADDRINUSE if another agent answers).
	ControlServer(uv_loop_t *loop, const std::string &path, ControlListener &listener);
	~ControlServer();
	ControlServer(const ControlServer &) = delete;
	ControlServer &operator=(const ControlServer &) = delete;

	// Sends one reply, with `nfds` descriptors when nfds > 0.  Returns false when the client is
	// unknown, or when it could not take the reply: then it has been dropped ("stalled" if its
	// queue is full, "closed" if it is gone).  Throws SystemError for the agent's own mistakes
	// (a bad descriptor, too many descriptors in flight) without touching the client.
	bool reply(uint64_t client, const vtoe_ctl_rep &rep, const int *fds, size_t nfds);

	// Closes one client and reports on_close(client, reason).  False if it is unknown.
	bool drop(uint64_t client, const std::string &reason);

	// Stops listening, closes every client (without on_close) and unlinks the socket if it is
	// still ours.  Idempotent.
	void close();

	bool closed() const { return closed_; }
	size_t client_count() const { return clients_.size(); }
	uint64_t protocol_errors() const { return protocol_errors_; }
	uint64_t shed_connections() const { return shed_connections_; }
	const std::string &path() const { return path_; }

private:
	// A uv_poll handle outlives the object that started it until libuv's close callback runs,
	// so it lives on the heap and points back at the server only while it is active.
	struct Watch {
		uv_poll_t poll;
		ControlServer *server;
		uint64_t client; // 0 for the listening socket
	};

	struct Client {
		unique_fd fd;
		Watch *watch;
	};

	void bind_and_listen();
	Watch *start_watch(int fd, uint64_t client, uv_poll_cb callback);
	static void stop_watch(Watch *watch);

	static void on_listener_ready(uv_poll_t *handle, int status, int events);
	static void on_client_ready(uv_poll_t *handle, int status, int events);

	void accept_batch();
	void admit(unique_fd fd);
	void shed_one_connection();
	void read_batch(uint64_t client, int status);
	// Handles one message; false when the batch must stop (nothing left, or client gone).
	bool receive_one(uint64_t client, int fd);
	void violation(uint64_t client, int fd, const vtoe_ctl_req &req, size_t length,
		       const std::string &what);

	uv_loop_t *loop_;
	std::string path_;
	ControlListener &listener_;
	unique_fd listen_fd_;
	Watch *listen_watch_ = nullptr;
	// Kept open so accept() can still take (and refuse) a connection when fds run out,
	// instead of the level-triggered poll spinning on it.
	unique_fd spare_fd_;
	dev_t socket_dev_ = 0;
	ino_t socket_ino_ = 0;
	std::unordered_map<uint64_t, Client> clients_;
	uint64_t next_client_ = 1;
	uint64_t protocol_errors_ = 0;
	uint64_t shed_connections_ = 0;
	bool closed_ = false;
};

} // namespace vtoe

#endif
