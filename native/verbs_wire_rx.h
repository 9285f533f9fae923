// WireRx: what one end of a verbs connection accepts from its peer, and nothing else.
//
// Everything a remote agent controls reaches us as receive completions (an immediate value),
// the mailbox it RDMA WRITEs before each message, and, once, the auth slot.  This class holds the
// receive side's protocol state and judges each arrival against what this end has granted (ring
// space, receive credits, the bytes it sent): it does no I/O and touches no verbs object, so
// VerbsConn acts on its verdicts and fuzz/verbs_rx.cc drives it with any bytes a peer could send.
#ifndef VTOE_NATIVE_VERBS_WIRE_RX_H
#define VTOE_NATIVE_VERBS_WIRE_RX_H

#include <cstdint>

#include "verbs_wire.h"

namespace vtoe {

// One receive completion, as the data path saw it.
struct WireArrival {
	bool write_with_imm;       // the opcode was RECV_RDMA_WITH_IMM and it carried an immediate
	uint32_t imm;              // in host order
	bool mailbox_stable;       // two equal reads of the mailbox were had
	wire_mailbox mailbox;      // what they read
	uint8_t auth[kWireAuthBytes]; // a copy of the auth slot
};

// This end's transmit side, which bounds what the peer may say it consumed or posted.
struct WireTxView {
	uint64_t sent;      // bytes of our stream posted to the peer
	uint64_t msgs_sent; // messages posted to the peer
};

enum class WireAction {
	none,          // nothing for the process (a credit message, a repeated FIN or close)
	deliver,       // `bytes` more of the stream are in the rx ring
	fin,           // the peer shut down writing
	peer_reset,    // the peer aborted
	peer_closed,   // the peer's process closed the socket
	authenticated, // the peer proved the cluster key
	claimed,       // (active end) the server's process took the passive end
	kernel_accepted, // (active end) the server took the connection on kernel TCP instead
	violation,     // the peer broke the protocol: reset the connection, `why` says how
};

struct WireVerdict {
	WireAction action;
	uint32_t bytes;
	const char *why;
};

class WireRx {
public:
	WireRx(uint32_t ring_size, uint32_t recv_depth) : size_(ring_size), recv_depth_(recv_depth) {}

	// The peer's window is known.  With auth.expect, only a matching auth message may come first.
	void start(uint64_t peer_recv_credits, const WireAuth &auth);

	// Judges one arrival and takes it into the state.  After a violation or a reset every later
	// arrival is `none`: what a broken peer sends next never reaches the process.
	WireVerdict accept(const WireArrival &in, const WireTxView &tx);

	// What our latest mailbox told the peer: the stream consumed and the receives posted.
	void reported(uint64_t consumed, uint64_t recvs_posted);

	// A new QP replaces a failed one: its messages and receives count from zero.
	void new_qp();
	// ...and it is connected: the peer posted peer_recv_credits receives, said it read
	// peer_consumed of our stream, and we told it we read reported_consumed of its own.
	// Positions, FIN and close carry over.  The caller checked peer_consumed against our stream.
	void resume(uint64_t peer_recv_credits, const WireAuth &auth, uint64_t peer_consumed,
		    uint64_t reported_consumed);

	uint64_t delivered() const { return delivered_; }
	uint64_t reported_consumed() const { return reported_consumed_; }
	uint64_t reported_recvs() const { return reported_recvs_; }
	uint64_t peer_consumed() const { return peer_consumed_; }
	uint64_t peer_recvs() const { return peer_recvs_; }
	uint64_t messages_received() const { return messages_received_; }
	bool awaiting_auth() const { return awaiting_auth_; }
	bool peer_fin() const { return peer_fin_; }
	bool peer_reset() const { return peer_reset_; }
	bool peer_closed() const { return peer_closed_; }
	bool broken() const { return broken_; }

private:
	WireVerdict check_auth(const WireArrival &in);
	bool take_mailbox(const WireArrival &in, const WireTxView &tx);
	WireVerdict take_message(WireMsg type, uint32_t value);
	WireVerdict violation(const char *why);

	uint32_t size_;
	uint32_t recv_depth_;
	uint8_t mac_[kWireAuthBytes] = {};
	bool awaiting_auth_ = false;
	bool passive_ = false;  // this end expects a proof: it is the one that says `accepted`
	bool accepted_ = false; // the peer said `accepted` (once per QP: a resume may repeat it)
	bool broken_ = false;
	uint64_t messages_received_ = 0;
	uint64_t reported_recvs_ = 0;    // receives our mailbox last told the peer of
	uint64_t reported_consumed_ = 0; // bytes of its stream our mailbox last said were read
	uint64_t delivered_ = 0;         // bytes of its stream handed to the process
	uint64_t peer_consumed_ = 0;     // bytes of our stream it says its process read
	uint64_t peer_recvs_ = 0;        // receives it says it posted
	bool peer_fin_ = false, peer_reset_ = false, peer_closed_ = false;
};

} // namespace vtoe

#endif
