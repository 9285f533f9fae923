// The verbs fabric's wire protocol between two agents, on one RC queue pair per connection.
//
// Each agent's side of a connection is a region like the shm fabric's (struct vtoe_conn_region):
// the process produces into its tx ring and consumes its rx ring, and the agent is the other
// party of both.  Ring sizes are equal on both ends, and byte i of the stream lives at offset
// i & (size - 1) in the sender's tx ring and in the receiver's rx ring; so a sender moves bytes
// with RDMA WRITEs straight from its tx ring into the peer's rx ring, and nothing is copied.
//
// Every message ends in a WRITE_WITH_IMM, whose immediate value is a wire_msg type and a value.
// It consumes one posted receive at the peer, which therefore grants receives as credits.
// Before it, the sender RDMA WRITEs its mailbox (struct wire_mailbox, inline) into the peer's:
// how much of the peer's stream it consumed (byte credits) and how many receives it has posted
// (message credits).  RC ordering puts the mailbox in place before the completion is seen.
//
// Authentication: the passive agent proved the cluster key in its REP (src/agent/cluster-key.ts);
// the active one proves it with its first message, an `auth` whose 16-byte MAC it RDMA WRITEs
// into the auth slot right after the peer's mailbox.  Until that message checks out, the
// passive end carries nothing and no process can claim it.
//
// A sender never has more unconsumed bytes outstanding than one ring (its tx ring holds them
// until the peer reports them consumed), so the peer's rx ring always has room: a slow reader
// stalls the writer, and no receive is ever missing (no RNR).
#ifndef VTOE_NATIVE_VERBS_WIRE_H
#define VTOE_NATIVE_VERBS_WIRE_H

#include <cstddef>
#include <cstdint>

namespace vtoe {

enum class WireMsg : uint32_t {
	data = 0,   // value = bytes, which now follow the previous data in the peer's rx ring
	credit = 1, // nothing but the mailbox
	fin = 2,    // the sender shut down writing; all its data came before this
	reset = 3,  // the sender's process aborted (linger 0, unread data at close, death)
	close = 4,  // the sender's process closed the socket: it reads no more (EPIPE for writers)
	auth = 5,   // the active end's proof of the cluster key, in the auth slot; first message only
	accepted = 6, // passive end to active, once: value kWireAcceptedOffloaded or kWireAcceptedKernel
};

// The server's process claimed the passive end: the client's kernel rendezvous socket, which
// the active agent holds until then, is no longer needed.
constexpr uint32_t kWireAcceptedOffloaded = 0;
// A process took the connection on kernel TCP instead (no shim, no agent, out of descriptors:
// "late fallback").  The passive end says nothing more; the active agent carries the stream
// over the client's kernel rendezvous socket from its tx ring's tail, where nothing was lost.
constexpr uint32_t kWireAcceptedKernel = 1;

constexpr size_t kWireAuthBytes = 16;

constexpr uint32_t kWireTypeShift = 29;
constexpr uint32_t kWireValueMask = (1u << kWireTypeShift) - 1;
static_assert((64u << 20) <= kWireValueMask, "a whole ring's bytes fit in one message's value");

constexpr uint32_t wire_imm(WireMsg type, uint32_t value)
{
	return (static_cast<uint32_t>(type) << kWireTypeShift) | (value & kWireValueMask);
}
constexpr WireMsg wire_type(uint32_t imm)
{
	return static_cast<WireMsg>(imm >> kWireTypeShift);
}
constexpr uint32_t wire_value(uint32_t imm)
{
	return imm & kWireValueMask;
}

struct wire_mailbox {
	uint64_t consumed;     // bytes of the receiver's stream the sender's process has read
	uint64_t recvs_posted; // receives the sender has posted since the connection began
};

// What start() is told about authentication: a MAC to send first (active), or the MAC the
// peer's first message must carry (passive).  Neither: an unauthenticated (test) connection.
struct WireAuth {
	bool send = false;
	bool expect = false;
	uint8_t mac[kWireAuthBytes] = {};
};

} // namespace vtoe

#endif
