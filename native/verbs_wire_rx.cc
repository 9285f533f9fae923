#include "verbs_wire_rx.h"

#include <cstring>

namespace vtoe {

void WireRx::start(uint64_t peer_recv_credits, const WireAuth &auth)
{
	peer_recvs_ = peer_recv_credits;
	awaiting_auth_ = auth.expect;
	passive_ = auth.expect;
	std::memcpy(mac_, auth.mac, kWireAuthBytes);
}

void WireRx::reported(uint64_t consumed, uint64_t recvs_posted)
{
	reported_consumed_ = consumed;
	reported_recvs_ = recvs_posted;
}

void WireRx::new_qp()
{
	messages_received_ = 0;
	reported_recvs_ = 0;
	peer_recvs_ = 0;
}

void WireRx::resume(uint64_t peer_recv_credits, const WireAuth &auth, uint64_t peer_consumed,
		    uint64_t reported_consumed)
{
	const bool passive = passive_; // who proves the key on a new QP says nothing of the sides
	start(peer_recv_credits, auth);
	passive_ = passive;
	accepted_ = false; // it may come again: the peer cannot know whether the old QP carried it
	peer_consumed_ = peer_consumed;
	reported_consumed_ = reported_consumed;
}

WireVerdict WireRx::violation(const char *why)
{
	broken_ = true;
	return {WireAction::violation, 0, why};
}

WireVerdict WireRx::accept(const WireArrival &in, const WireTxView &tx)
{
	if (broken_ || peer_reset_)
		return {WireAction::none, 0, ""};
	messages_received_++;
	// The peer may send only as many messages as receives we told it of: this also bounds how
	// long one poll of the completion queue can run, however fast the peer sends.
	if (messages_received_ > (reported_recvs_ > recv_depth_ ? reported_recvs_ : recv_depth_))
		return violation("the peer sent more messages than it had receive credits for");
	if (!in.write_with_imm)
		return violation("the peer sent something other than WRITE_WITH_IMM");
	if (awaiting_auth_ || wire_type(in.imm) == WireMsg::auth)
		return check_auth(in);
	if (!take_mailbox(in, tx))
		return violation("the peer's mailbox holds impossible credits");
	return take_message(wire_type(in.imm), wire_value(in.imm));
}

// The peer's first message must be its proof, and only the first.
WireVerdict WireRx::check_auth(const WireArrival &in)
{
	if (!awaiting_auth_)
		return violation("an auth message after the first");
	if (wire_type(in.imm) != WireMsg::auth)
		return violation("the peer sent data before proving the cluster key");
	uint8_t diff = 0; // in constant time
	for (size_t i = 0; i < kWireAuthBytes; i++)
		diff |= in.auth[i] ^ mac_[i];
	if (diff != 0)
		return violation("the peer did not prove the cluster key");
	awaiting_auth_ = false;
	return {WireAction::authenticated, 0, ""};
}

bool WireRx::take_mailbox(const WireArrival &in, const WireTxView &tx)
{
	if (!in.mailbox_stable)
		return false; // an honest peer writes it once per message, before the message
	const wire_mailbox &m = in.mailbox;
	if (m.recvs_posted == 0)
		return true; // no mailbox has arrived yet
	if (m.consumed < peer_consumed_ || m.consumed > tx.sent)
		return false;
	if (m.recvs_posted > tx.msgs_sent + recv_depth_)
		return false; // more receives than the peer's queue holds
	peer_consumed_ = m.consumed;
	if (m.recvs_posted > peer_recvs_)
		peer_recvs_ = m.recvs_posted;
	return true;
}

WireVerdict WireRx::take_message(WireMsg type, uint32_t value)
{
	switch (type) {
	case WireMsg::data:
		if (peer_fin_ || value == 0 || delivered_ + value - reported_consumed_ > size_)
			return violation("the peer wrote past the space it was given");
		delivered_ += value;
		return {WireAction::deliver, value, ""};
	case WireMsg::credit:
		return {WireAction::none, 0, ""};
	case WireMsg::fin:
		if (peer_fin_)
			return {WireAction::none, 0, ""};
		peer_fin_ = true;
		return {WireAction::fin, 0, ""};
	case WireMsg::reset:
		peer_reset_ = true;
		return {WireAction::peer_reset, 0, "the peer reset the connection"};
	case WireMsg::close:
		if (peer_closed_)
			return {WireAction::none, 0, ""};
		peer_closed_ = true;
		return {WireAction::peer_closed, 0, ""};
	case WireMsg::accepted:
		if (passive_ || accepted_)
			return violation("an accepted message to a passive end, or a second one");
		accepted_ = true;
		if (value == kWireAcceptedOffloaded)
			return {WireAction::claimed, 0, ""};
		// Only an end nobody claimed can go to kernel TCP: it never sent a byte.
		if (value == kWireAcceptedKernel && delivered_ == 0 && !peer_fin_ && !peer_closed_)
			return {WireAction::kernel_accepted, 0, ""};
		return violation("an impossible accepted message");
	case WireMsg::auth:
		break; // accept() hands it to check_auth()
	}
	return violation("unknown message type");
}

} // namespace vtoe
