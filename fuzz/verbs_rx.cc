// Hostile input: everything a remote agent controls on a verbs connection, that is each
// message's immediate value, the mailbox it RDMA WRITEs before the message and the auth slot,
// interleaved with this end's own process reading its stream and sending.  WireRx (native/
// verbs_wire_rx.cc, the checks VerbsConn acts on) must keep the peer inside what it was granted:
// never more bytes than the rx ring had room for, never credits for bytes or receives it could
// not have, nothing before the proof of the cluster key, nothing after a violation or a reset.
// Some messages are built honestly instead, and those must be accepted: the checks may not
// refuse a peer that keeps the protocol.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "../native/verbs_wire_rx.h"

using vtoe::WireAction;

namespace {

struct Input {
	const uint8_t *p;
	size_t n;
	bool more() const { return n > 0; }
	uint8_t u8()
	{
		if (!n)
			return 0;
		n--;
		return *p++;
	}
	uint32_t u32()
	{
		uint32_t v = 0;
		for (int i = 0; i < 4; i++)
			v = v << 8 | u8();
		return v;
	}
	uint64_t u64() { return static_cast<uint64_t>(u32()) << 32 | u32(); }
};

void check(bool ok)
{
	if (!ok)
		abort();
}

// This end, as an honest process and agent would run it.
struct Local {
	uint32_t size, depth;
	uint64_t sent = 0, msgs_sent = 0, tail = 0;
	uint64_t initial_credits;
	uint8_t mac[vtoe::kWireAuthBytes];
	bool expect = false;
	bool accepted = false; // the peer said `accepted`
};

uint64_t below(Input &in, uint64_t limit) // 0..limit
{
	return limit == 0 ? 0 : in.u64() % (limit + 1);
}

// Our process sends, or reads and we report it: both carry a mailbox, so both take a credit.
void local_step(Input &in, Local &l, vtoe::WireRx &rx, bool send)
{
	if (rx.peer_recvs() <= l.msgs_sent)
		return; // no message credit: an honest sender waits
	if (send) {
		const uint64_t room = l.size - (l.sent - rx.peer_consumed());
		l.sent += below(in, room);
	} else {
		l.tail += below(in, rx.delivered() - l.tail);
	}
	l.msgs_sent++;
	rx.reported(l.tail, rx.messages_received() + l.depth); // every receive is reposted at once
}

vtoe::WireArrival hostile(Input &in, const Local &l, const vtoe::WireRx &rx)
{
	vtoe::WireArrival a{};
	const uint8_t flags = in.u8();
	a.write_with_imm = (flags & 1) == 0;
	a.imm = in.u32();
	a.mailbox_stable = (flags & 2) == 0;
	// Raw values rarely land near the bounds: half the time, offsets from them.
	if (flags & 4) {
		a.mailbox.consumed = rx.peer_consumed() + static_cast<int8_t>(in.u8());
		a.mailbox.recvs_posted = l.msgs_sent + l.depth + static_cast<int8_t>(in.u8());
		a.imm = vtoe::wire_imm(static_cast<vtoe::WireMsg>(a.imm % 8),
				       static_cast<uint32_t>(l.size - (rx.delivered() - rx.reported_consumed()) +
							     static_cast<int8_t>(in.u8())));
	} else {
		a.mailbox.consumed = in.u64();
		a.mailbox.recvs_posted = in.u64();
	}
	if (flags & 8)
		std::memcpy(a.auth, l.mac, sizeof(a.auth));
	else
		for (auto &b : a.auth)
			b = in.u8();
	return a;
}

// A message a peer that keeps the protocol could send now, or false if it may send none.
bool honest(Input &in, const Local &l, const vtoe::WireRx &rx, vtoe::WireArrival &a)
{
	const uint64_t credits = rx.reported_recvs() > l.depth ? rx.reported_recvs() : l.depth;
	if (rx.messages_received() >= credits || rx.broken() || rx.peer_reset())
		return false;
	a = {};
	a.write_with_imm = true;
	a.mailbox_stable = true;
	std::memcpy(a.auth, l.mac, sizeof(a.auth));
	if (rx.awaiting_auth()) {
		a.imm = vtoe::wire_imm(vtoe::WireMsg::auth, 0);
		return true;
	}
	a.mailbox.consumed = rx.peer_consumed() + below(in, l.sent - rx.peer_consumed());
	const uint64_t top = l.msgs_sent + l.depth;
	a.mailbox.recvs_posted = rx.peer_recvs() >= top ? rx.peer_recvs()
							: rx.peer_recvs() + below(in, top - rx.peer_recvs());
	const uint64_t room = l.size - (rx.delivered() - rx.reported_consumed());
	const uint8_t kind = in.u8() % 4;
	if (kind == 0 && room > 0 && !rx.peer_fin())
		a.imm = vtoe::wire_imm(vtoe::WireMsg::data, static_cast<uint32_t>(1 + below(in, room - 1)));
	else if (kind == 1)
		a.imm = vtoe::wire_imm(vtoe::WireMsg::fin, 0);
	else if (kind == 2 && rx.peer_fin())
		a.imm = vtoe::wire_imm(vtoe::WireMsg::close, 0);
	else if (kind == 2 && !l.expect && !l.accepted)
		a.imm = vtoe::wire_imm(vtoe::WireMsg::accepted,
				       rx.delivered() == 0 && !rx.peer_fin() && !rx.peer_closed()
					       ? in.u8() % 2 : vtoe::kWireAcceptedOffloaded);
	else
		a.imm = vtoe::wire_imm(vtoe::WireMsg::credit, 0);
	return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Input in{data, size};
	Local l;
	l.size = 1u << (12 + in.u8() % 15); // 4 KiB .. 64 MiB, as VTOE_RING_SIZE allows
	l.depth = 1 + in.u8() % 64;
	l.initial_credits = in.u8() % (l.depth + 1);
	vtoe::WireAuth auth;
	auth.expect = in.u8() & 1;
	for (auto &b : auth.mac)
		b = in.u8();
	std::memcpy(l.mac, auth.mac, sizeof(l.mac));
	l.expect = auth.expect;

	vtoe::WireRx rx(l.size, l.depth);
	rx.start(l.initial_credits, auth);
	bool authenticated = false, fin = false, closed = false;

	while (in.more()) {
		const uint8_t op = in.u8() % 5;
		if (op == 0 || op == 1) {
			local_step(in, l, rx, op == 0);
			continue;
		}
		vtoe::WireArrival a;
		const bool fair = op == 2 && honest(in, l, rx, a);
		if (!fair)
			a = hostile(in, l, rx);
		const bool was_done = rx.broken() || rx.peer_reset();
		const bool was_awaiting = rx.awaiting_auth();
		const uint64_t delivered = rx.delivered(), consumed = rx.peer_consumed(), recvs = rx.peer_recvs();

		const vtoe::WireVerdict v = rx.accept(a, {l.sent, l.msgs_sent});

		if (fair)
			check(v.action != WireAction::violation);
		if (was_done) { // nothing moves after a violation or a reset
			check(v.action == WireAction::none && rx.delivered() == delivered &&
			      rx.peer_consumed() == consumed && rx.peer_recvs() == recvs);
			continue;
		}
		// The peer stays inside what it was granted, whatever it sent.
		check(rx.delivered() - rx.reported_consumed() <= l.size);
		check(rx.peer_consumed() >= consumed && rx.peer_consumed() <= l.sent);
		check(rx.peer_recvs() >= recvs &&
		      (rx.peer_recvs() == recvs || rx.peer_recvs() <= l.msgs_sent + l.depth));
		if (v.action != WireAction::violation)
			check(rx.messages_received() <=
			      (rx.reported_recvs() > l.depth ? rx.reported_recvs() : l.depth));
		// Each verdict means what it says, once.
		check((v.action == WireAction::deliver) == (rx.delivered() != delivered));
		if (v.action == WireAction::deliver)
			check(v.bytes > 0 && rx.delivered() - delivered == v.bytes && !fin);
		if (was_awaiting && v.action != WireAction::violation)
			check(v.action == WireAction::authenticated);
		if (v.action == WireAction::authenticated) {
			check(l.expect && !authenticated && std::memcmp(a.auth, l.mac, sizeof(l.mac)) == 0);
			authenticated = true;
		}
		if (v.action == WireAction::fin) {
			check(!fin);
			fin = true;
		}
		if (v.action == WireAction::peer_closed) {
			check(!closed);
			closed = true;
		}
		// Only to an active end, once; kernel TCP only for a stream that never began.
		if (v.action == WireAction::claimed || v.action == WireAction::kernel_accepted) {
			check(!l.expect && !l.accepted);
			l.accepted = true;
		}
		if (v.action == WireAction::kernel_accepted)
			check(delivered == 0 && !fin && !closed);
		if (v.action == WireAction::violation)
			check(rx.broken() && v.why && *v.why);
	}
	return 0;
}
