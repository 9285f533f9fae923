// The agent in the place of a connection's passive side: when the server took the connection
// on kernel TCP after all (a process without the shim, or without the agent, accepted it:
// "late fallback"), the client already writes into ring 0.  The relay carries ring 0 into the
// server's kernel socket (the client's rendezvous socket) and that socket's bytes into ring 1,
// speaking the ring protocol of vtoe_abi.h to the client's shim exactly as a shim at side 1
// would: doorbells when the client armed, the filler while ring 1 is full, FIN and reset.
#ifndef VTOE_NATIVE_SHM_RELAY_H
#define VTOE_NATIVE_SHM_RELAY_H

#include <uv.h>

#include <functional>

#include "fd_watch.h"
#include "shm_connection.h"
#include "unique_fd.h"

namespace vtoe {

class ShmRelay {
public:
	enum class Outcome { fin, reset };
	using Done = std::function<void(Outcome)>;

	// Takes side 1's app fd from `conn` and `ksock`; `done` runs once, when both directions
	// ended (FINs) or either was reset, after the relay closed its descriptors.  Throws
	// SystemError.
	ShmRelay(uv_loop_t *loop, ShmConnection &conn, unique_fd ksock, Done done);
	~ShmRelay();
	ShmRelay(const ShmRelay &) = delete;
	ShmRelay &operator=(const ShmRelay &) = delete;

	bool finished() const { return finished_; }
	// Something changed that no watched descriptor reports (the owner wrote a FIN or reset
	// into ring 0 for a client that died): look again.
	void kick() { pump(); }

private:
	void pump();
	void make_room_for_backlog();
	bool pump_out(); // ring 0 -> ksock
	bool pump_in();  // ksock -> ring 1
	void drain_app();
	void drain_client_filler();
	void wake_client();
	void block_on_ring1();
	void update_watches();
	void reset_client();
	void finish(Outcome how);
	void schedule_more();
	void run_soon(uv_timer_cb cb);

	uv_loop_t *loop_;
	ShmConnection &conn_;
	unique_fd ksock_;
	unique_fd app_; // side 1's app fd: the client's doorbells arrive here
	FdWatch ksock_watch_, app_watch_;
	uv_timer_t *more_ = nullptr; // more to do after a bounded turn
	Done done_;
	Outcome outcome_ = Outcome::fin;
	bool out_done_ = false;       // the client's FIN went on to the server
	bool in_done_ = false;        // the server's FIN went into ring 1
	bool ksock_blocked_ = false;  // ring 0's bytes wait for room in the kernel socket
	bool ring1_blocked_ = false;  // the server's bytes wait for room in ring 1
	bool app_eof_ = false;        // the client shut its doorbell: no more doorbells
	bool finished_ = false;
};

} // namespace vtoe

#endif
