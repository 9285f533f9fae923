// VerbsConn: one end of a verbs-fabric connection, in this agent.
//
// It owns the connection's region (shared with the local process, as on the shm fabric), an RC
// queue pair with its own send and receive completion queues and completion channel, and three
// memory registrations in a protection domain of its own (so a peer's keys reach this
// connection's memory and no other's): the process's tx ring, which our HCA only reads; the rx
// ring, which the peer's HCA writes (RDMA WRITEs go straight from one's tx ring into the other's
// rx ring); and a small agent-private mailbox the peer writes.  The rdma_cm
// id and the QP state transitions belong to VerbsFabric; this class runs the data path, on the
// loop thread, from three watched descriptors: the completion channel, and the two doorbell
// sockets it holds as the process's other party.  Nothing here calls JavaScript: what the agent
// must know is reported through VerbsConnSink.
#ifndef VTOE_NATIVE_VERBS_CONN_H
#define VTOE_NATIVE_VERBS_CONN_H

#include <infiniband/verbs.h>
#include <uv.h>

#include <array>
#include <cstdint>
#include <deque>
#include <memory>

#include "fd_watch.h"
#include "shm_connection.h"
#include "unique_fd.h"
#include "verbs_wire.h"
#include "verbs_wire_rx.h"

namespace vtoe {

// What the peer told us (REQ or REP private data) so that we can write into its memory.
struct PeerWindow {
	uint64_t ring_addr;
	uint32_t ring_rkey;
	uint64_t mailbox_addr;
	uint32_t mailbox_rkey;
	uint32_t recv_credits; // receives it posted before the connection began
};

// Ours, for the private data we send.
struct LocalWindow {
	uint64_t ring_addr;
	uint32_t ring_rkey;
	uint64_t mailbox_addr;
	uint32_t mailbox_rkey;
	uint32_t recv_credits;
	uint32_t qp_num;
};

// The agent's send buffers (VerbsConn "Send staging"), shared by a fabric's connections.  Their
// pages are registered, so they come out of the pinned-memory budget: the agent gives them
// what its connection ends leave (allowance) and counts what they hold.
struct SendStaging {
	uint64_t per_conn_max = 0; // bytes one connection may stage (0: never)
	uint64_t allowance = 0;    // bytes all of them may hold together
	uint64_t used = 0, peak = 0;
	// times a connection's send buffer could not grow when it had to (the allowance was spent,
	// or registration failed), counted once until it grows or shrinks again
	uint64_t refused = 0;

	bool take(uint64_t bytes)
	{
		if (used + bytes > allowance)
			return false;
		used += bytes;
		if (used > peak)
			peak = used;
		return true;
	}
	void give(uint64_t bytes) { used -= bytes < used ? bytes : used; }
};

struct VerbsConnStats {
	uint64_t messages_sent, messages_received, credit_messages, notifications, completions;
	uint64_t bytes_sent, bytes_delivered, credit_stalls, probes;
	uint64_t bytes_staged; // copied into the agent's send buffer while the peer's ring was full
};

// Where the data path stands, for `vtoe ss --json` (as `ss -i` shows a TCP socket's state):
// enough to tell which side a stalled stream waits for.
struct VerbsConnState {
	uint64_t sent, completed, tx_tail, msgs_sent, oldest_unacked_ms;
	uint64_t staged_end, staged_pinned; // the send buffer: bytes below staged_end left the tx ring
	uint32_t sq_used, batches_out;
	uint64_t peer_consumed, peer_recvs;     // what the peer last told us
	uint64_t delivered, reported_consumed, recvs_posted, reported_recvs;
	bool port_up, notify_requested, send_cq_armed, auth_pending, fin_sent, reset_sent, failed;
};

// Things the data path cannot settle itself.  Called on the loop thread, never re-entrantly
// from inside a data-path call that is still using the connection (see VerbsFabric::flush).
enum class ConnEvent {
	app_closed,  // the process's last fd of the socket closed (or it died)
	fin_sent,    // the process shut down writing and its FIN is on the wire
	peer_fin,    // the peer shut down writing
	peer_closed, // the peer's process closed the socket
	peer_reset,  // the peer aborted: the process sees ECONNRESET
	qp_error,    // a work completion failed: the process sees ECONNRESET
	protocol,    // the peer or the process broke the protocol: reset
	authenticated, // the peer's auth message matched: the passive end may be handed out
	timed_out,   // the peer fell silent for longer than the process allows: ETIMEDOUT
	link_lost,   // the QP failed as a link fails it (retries spent, no route): the data path is
		     // suspended, the process not told, until a new QP resumes it or it is given up
	claimed,     // (active) the server's process took the passive end (verbs_wire.h, `accepted`)
	kernel_accepted, // (active) the server took the connection on kernel TCP: hand_over() it
};

// Where this end's receive stream stands, for a resume: the peer sends again from `delivered`.
struct ResumePoint {
	uint64_t delivered, consumed;
	bool have_fin, have_close;
};

// What the agent needs to judge whether the peer has fallen silent (src/agent/liveness.ts).
// RC retries forever on some devices (rxe), so a dead host shows as sends that never complete.
struct LivenessSample {
	uint64_t unacked_ms;   // age of the oldest send the peer's HCA has not acknowledged (0: none)
	uint64_t quiet_ms;     // since the peer last showed life: an acknowledgement or a message
	bool probe_pending;    // one of those unacknowledged sends is a probe
	bool waiting_for_peer; // TCP's zero window: the peer's ring is full, or credits hold bytes back
	// the process's own settings (vtoe_ring_ctl): 0 = unset / keepalive off
	uint32_t user_timeout_ms, keep_idle_s, keep_intvl_s, keep_cnt;
};
const char *conn_event_name(ConnEvent event);

class VerbsConnSink {
public:
	virtual ~VerbsConnSink() = default;
	virtual void conn_event(uint32_t handle, ConnEvent event, const char *detail) = 0;
	// The connection was woken for traffic (a completion, a doorbell): the fabric may poll it
	// for a while instead of waiting for the next wake-up (VerbsFabric::set_spin).
	virtual void traffic(uint32_t handle) = 0;
};

class VerbsConn {
public:
	static constexpr uint32_t kRecvDepth = 64;   // receives posted ahead = message credits
	static constexpr uint32_t kSendDepth = 256;  // send work requests outstanding at most
	static constexpr uint32_t kCreditReserve = 2; // message credits data never takes

	// Bytes read from the process's doorbell per wake-up at most: a process that keeps writing
	// into it cannot hold the agent's loop (the watch is level-triggered, so the rest waits).
	static constexpr size_t kBellReadMax = 64 * 1024;
	// Reads of a mailbox the peer keeps rewriting before we call it broken.
	static constexpr int kMailboxReadTries = 1000;

	// Creates the PD, region, CQs, QP (in RESET) and registrations.  Throws SystemError.
	// port_up: the local port's state, kept by the fabric; nothing is posted while it is false.
	VerbsConn(uv_loop_t *loop, uint32_t handle, ibv_context *ctx, uint32_t ring_size, uint64_t cid,
		  int app_side, VerbsConnSink &sink, const bool &port_up, SendStaging &staging);
	~VerbsConn();
	VerbsConn(const VerbsConn &) = delete;
	VerbsConn &operator=(const VerbsConn &) = delete;

	ibv_qp *qp() const { return qp_; }
	// The rdma_cm id it now belongs to (a resume moves it to a new one): its events say so.
	void set_handle(uint32_t handle) { handle_ = handle; }
	LocalWindow local_window() const;
	int app_side() const { return app_side_; }
	ShmConnection &region() { return shm_; }
	// Messages received are the wire's own count (it checks them against the credits given).
	VerbsConnStats stats() const
	{
		VerbsConnStats s = stats_;
		s.messages_received = wire_.messages_received();
		return s;
	}

	VerbsConnState state() const;

	// Fills the receive queue; the QP must be in INIT or later.  Throws SystemError.
	void post_receives();
	// Starts moving bytes (the QP is in RTS, the peer's window known).  Throws SystemError.
	// With auth.send the auth message goes first; with auth.expect nothing is delivered (and
	// ConnEvent::authenticated not reported) until the peer's auth message matches.
	void start(const PeerWindow &peer, const WireAuth &auth);
	// Handles the completions already queued (before the QP goes to ERR: a FIN or reset that
	// arrived just before the DREQ must still reach the process).
	void drain();
	// The QP went to ERR on purpose: completions flushed from now on are not failures.
	void stop();
	// The connection is lost (DREQ without FIN): the process sees ECONNRESET.  No event.
	void reset_app();
	// The process wrote after the peer's process closed, having queued a fuse in its fd: the
	// reset TCP's peer answers such a write with.  Its fd hangs up (POLLHUP|POLLERR), with no
	// reset code in the ring: the process asked for this one, and reports EPIPE.  No event.
	void answer_write_after_close();
	LivenessSample liveness();
	// Posts a zero-length RDMA WRITE that the peer's HCA must acknowledge (a keepalive or
	// window probe).  It takes no receive at the peer, so a writer out of message credits can
	// still find its peer dead.  False when one is already out or none can go now.
	bool probe();
	// The peer was silent for longer than the process allows: ETIMEDOUT, and ConnEvent::timed_out.
	void time_out();

	// Resuming on a new QP (ConnEvent::link_lost, or the peer asked): suspend() stops the data
	// path and moves the QP to ERR (the process is not told); renew_qp() replaces the QP with a
	// fresh one in RESET, in the same protection domain, so the rings' keys stay valid;
	// position() says where our receive stream stands, for the resume REQ or REP; resume(),
	// once the new QP is in RTS, sends again from what the peer has and goes on.  A connection
	// that cannot be resumed is given up with reset_app() or time_out().
	void suspend();
	bool suspended() const { return suspended_; }
	void renew_qp();
	ResumePoint position();
	void resume(const ResumePoint &peer, const WireAuth &auth);

	// Passive end: tells the peer, once, that a process claimed this end (kernel false) or
	// took the connection on kernel TCP (true: this end sends nothing more).
	void send_accepted(bool kernel);
	// Active end, late fallback (ConnEvent::kernel_accepted): stops the data path, releases
	// the QP, completion queues and registrations, and gives the region the process's
	// doorbells back, so that ShmRelay can play the peer's side over the kernel socket.
	// Nothing of the data path runs afterwards; the region lives as long as this object.
	ShmConnection &hand_over();
	bool handed_over() const { return handed_over_; }

	// Adaptive polling.  poll_once() looks at the completion queues and the process's tx ring
	// with no system call unless there is work (a post, a doorbell to a sleeping process), and
	// says whether anything moved.  While set_spinning(true), the process's writes ring no
	// doorbell (the agent is looking anyway); set_spinning(false) asks for them again and
	// looks once more, so nothing written meanwhile waits.
	bool poll_once();
	void set_spinning(bool on);

private:
	// The loop's time, read once a turn: per completion, a precise clock cost a system call
	// where the kernel offers no vDSO clock (some VMs), and every use here is in milliseconds.
	uint64_t loop_ns() const { return uv_now(loop_) * 1000000ull; }

	// Send staging.  The peer's rx ring has our ring's size, so without help a writer whose
	// reader is not reading blocks once one ring's worth is out, where kernel TCP takes a few
	// MiB.  So when the peer's ring is full, the process's tx ring half full and the reader
	// has stalled (kStallNs), the agent copies the ring's bytes into chunks of registered
	// memory of its own (a ring's size each, at most staging_cap() in all: its share, or less
	// for a process that set SO_SNDBUF), hands the ring's space back to the writer, and sends
	// those bytes from the chunks as the peer reads.  A chunk goes once the peer has read all
	// of it.  The chunks hold [staged_.front().base, staged_end_) of the stream, contiguous;
	// the tx ring holds [tx_tail_, head).
	struct StagedChunk {
		uint8_t *data;
		ibv_mr *mr;
		uint64_t base; // stream position of data[0]
	};

	struct Batch {
		uint32_t wrs;
		uint64_t end;       // stream position sent once this batch completes
		uint64_t posted_ns; // loop_ns() when posted
		bool probe;
	};

	void on_completion_channel();
	void on_agent_fd(int status, int events);
	void on_app_bell(int status, int events);
	void handle_send_completion(const ibv_wc &wc);
	void handle_recv_completion(const ibv_wc &wc);
	bool read_mailbox(wire_mailbox &out);
	void progress();
	// value: the immediate's value; by default the message's bytes.
	bool post_message(WireMsg type, uint64_t from, uint64_t to, int64_t value = -1);
	bool post_auth();
	uint32_t message_credits() const;
	void advance_tx_tail();
	void stage_if_stalled(uint64_t head);
	void stage(uint64_t head);
	bool add_staged_chunk(uint64_t base);
	bool ring_holds_staged() const;
	uint64_t staging_cap() const;
	void release_staged(uint64_t retained);
	const StagedChunk *staged_chunk(uint64_t pos) const;
	void deliver(uint64_t bytes);
	void wake_app();
	void drain_app_filler();
	void request_consume_notification();
	void app_gone();
	void fail(ConnEvent event, const char *detail);
	void fail_completion(const char *queue, const ibv_wc &wc);
	void hang_up_app(uint32_t reset_code);
	void poll_completions();
	ibv_qp *create_qp();
	bool resumable(ibv_wc_status status) const;
	void arm_send_cq();
	bool arm_recv_cq(); // false: it failed, and the connection with it
	void report(ConnEvent event, const char *detail);
	void update_watches();
	void release_verbs();

	uv_loop_t *loop_;
	uint32_t handle_;
	const bool &port_up_;
	SendStaging &staging_;
	VerbsConnSink &sink_;
	int app_side_;
	uint32_t size_;
	ShmConnection shm_;
	vtoe_ring_ctl *tx_; // the process produces, we consume
	vtoe_ring_ctl *rx_; // we produce, the process consumes
	uint8_t *tx_data_;
	uint8_t *rx_data_;
	unique_fd agent_fd_;  // the process's doorbells arrive here; our filler leaves from here
	unique_fd app_bell_;  // our doorbells to the process; its filler arrives here

	struct Mailboxes {
		wire_mailbox in; // the peer writes here
		uint8_t auth_in[kWireAuthBytes]; // and its proof here, once (registered with `in`)
		wire_mailbox out;
		uint8_t auth_out[kWireAuthBytes];
	};
	std::unique_ptr<Mailboxes> mail_;
	ibv_comp_channel *channel_ = nullptr;
	ibv_cq *send_cq_ = nullptr;
	ibv_cq *recv_cq_ = nullptr;
	ibv_pd *pd_ = nullptr;
	ibv_qp *qp_ = nullptr;
	ibv_mr *tx_mr_ = nullptr; // local read only
	ibv_mr *rx_mr_ = nullptr; // the peer writes
	ibv_mr *mail_mr_ = nullptr;

	FdWatch channel_watch_, agent_watch_, bell_watch_;

	PeerWindow peer_{};
	bool started_ = false;
	bool stopped_ = false;
	bool failed_ = false;
	bool app_gone_ = false;
	bool agent_fd_eof_ = false;
	bool notify_requested_ = false;
	bool send_cq_armed_ = false;
	bool recv_cq_armed_ = true; // armed at creation
	bool suspended_ = false;
	uint64_t resume_told_consumed_ = 0; // what position() told the peer we read
	WireAuth auth_{};
	bool auth_pending_ = false; // active: the auth message is not posted yet
	int64_t accepted_ = -1;      // passive: the `accepted` value send_accepted() gave (-1: none)
	bool accepted_sent_ = false; // ...and it is posted on this QP
	bool handed_over_ = false;
	bool spinning_ = false;

	// transmit (the process's tx ring)
	uint64_t sent_ = 0;        // posted to the QP
	uint64_t completed_ = 0;   // send completions seen up to here
	uint64_t tx_tail_ = 0;     // published to the process: what neither the peer nor the HCA needs
	uint64_t msgs_sent_ = 0;
	uint32_t sq_used_ = 0;
	std::deque<Batch> batches_;
	std::deque<StagedChunk> staged_;
	uint64_t staged_end_ = 0;
	uint64_t ring_posted_end_ = 0; // end of the last data sent from the tx ring itself
	// Only once a process holds the passive end: before, a late fallback hands the client's
	// bytes to a relay from the tx ring (hand_over), so they must all be there.
	bool may_stage_ = false;
	bool staging_refused_ = false; // counted in SendStaging::refused already
	// Staging waits until the peer's reader has read nothing for kStallNs with its ring full
	// of our bytes: a reader that only lags (each report a quarter ring later) costs no copy.
	static constexpr uint64_t kStallNs = 10'000'000;
	uint64_t stall_consumed_ = 0;  // the peer's consumed count when the stall was first seen
	uint64_t stall_since_ns_ = 0;  // 0: none seen
	uv_timer_t *stage_timer_ = nullptr; // looks again once the stall is long enough
	uint64_t peer_seen_ns_ = 0; // the peer's last sign of life: a completion or a message
	bool fin_sent_ = false, reset_sent_ = false, close_sent_ = false;

	// receive (the process's rx ring)
	uint64_t recvs_posted_ = 0;
	WireRx wire_; // what the peer said and may say: credits, delivered bytes, FIN, auth

	VerbsConnStats stats_{};
};

} // namespace vtoe

#endif
