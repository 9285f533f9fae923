#include "verbs_conn.h"
#include "fd_drain.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include "system_error.h"

namespace vtoe {

namespace {

constexpr auto ACQ = std::memory_order_acquire;
constexpr auto REL = std::memory_order_release;
constexpr auto RLX = std::memory_order_relaxed;

void set_nonblocking(int fd)
{
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
		throw_errno("cannot make a descriptor nonblocking");
}

[[noreturn]] void throw_verbs(int err, const std::string &what)
{
	if (err == ENOMEM || err == EAGAIN)
		throw_system_error(err, what,
				   "the locked-memory limit is probably too low: raise it (ulimit -l "
				   "unlimited, or LimitMEMLOCK=infinity for a service)");
	throw_system_error(err, what);
}

} // namespace

const char *conn_event_name(ConnEvent event)
{
	switch (event) {
	case ConnEvent::app_closed: return "app_closed";
	case ConnEvent::fin_sent: return "fin_sent";
	case ConnEvent::peer_fin: return "peer_fin";
	case ConnEvent::peer_closed: return "peer_closed";
	case ConnEvent::peer_reset: return "peer_reset";
	case ConnEvent::qp_error: return "qp_error";
	case ConnEvent::protocol: return "protocol";
	case ConnEvent::authenticated: return "authenticated";
	case ConnEvent::timed_out: return "timed_out";
	case ConnEvent::link_lost: return "link_lost";
	case ConnEvent::claimed: return "claimed";
	case ConnEvent::kernel_accepted: return "kernel_accepted";
	}
	return "unknown";
}

VerbsConn::VerbsConn(uv_loop_t *loop, uint32_t handle, ibv_context *ctx, uint32_t ring_size,
		     uint64_t cid, int app_side, VerbsConnSink &sink, const bool &port_up,
		     SendStaging &staging)
	: loop_(loop), handle_(handle), port_up_(port_up), staging_(staging), sink_(sink), app_side_(app_side), size_(ring_size),
	  shm_(ring_size, 0, cid), wire_(ring_size, kRecvDepth)
{
	vtoe_conn_region &reg = shm_.mapping();
	tx_ = &reg.ring[app_side];
	rx_ = &reg.ring[1 - app_side];
	tx_data_ = shm_.ring_data(app_side);
	rx_data_ = shm_.ring_data(1 - app_side);
	auto end = shm_.take_agent_end(app_side);
	agent_fd_ = std::move(end[0]);
	app_bell_ = std::move(end[1]);
	set_nonblocking(agent_fd_.get());
	set_nonblocking(app_bell_.get());
	mail_ = std::make_unique<Mailboxes>();
	std::memset(mail_.get(), 0, sizeof(Mailboxes));

	try {
		pd_ = ibv_alloc_pd(ctx);
		if (!pd_)
			throw_verbs(errno, "ibv_alloc_pd failed");
		channel_ = ibv_create_comp_channel(ctx);
		if (!channel_)
			throw_verbs(errno, "ibv_create_comp_channel failed");
		set_nonblocking(channel_->fd);
		send_cq_ = ibv_create_cq(ctx, kSendDepth, this, channel_, 0);
		if (!send_cq_)
			throw_verbs(errno, "ibv_create_cq (send) failed");
		recv_cq_ = ibv_create_cq(ctx, kRecvDepth, this, channel_, 0);
		if (!recv_cq_)
			throw_verbs(errno, "ibv_create_cq (receive) failed");
		// The send CQ is armed only while something waits for its completions (see
		// arm_send_cq): most sends need no wake-up of their own.
		if (ibv_req_notify_cq(recv_cq_, 0) != 0)
			throw_verbs(errno, "ibv_req_notify_cq failed");

		qp_ = create_qp();

		// The process's tx ring is only read by our HCA; the rx ring is written by the peer's.
		tx_mr_ = ibv_reg_mr(pd_, tx_data_, ring_size, 0);
		if (!tx_mr_)
			throw_verbs(errno, "ibv_reg_mr of the tx ring failed");
		rx_mr_ = ibv_reg_mr(pd_, rx_data_, ring_size,
				    IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
		if (!rx_mr_)
			throw_verbs(errno, "ibv_reg_mr of the rx ring failed");
		static_assert(offsetof(Mailboxes, auth_in) == sizeof(wire_mailbox), "slot follows");
		mail_mr_ = ibv_reg_mr(pd_, &mail_->in, offsetof(Mailboxes, out),
				      IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
		if (!mail_mr_)
			throw_verbs(errno, "ibv_reg_mr of the mailbox failed");
	} catch (...) {
		release_verbs();
		throw;
	}
}

ibv_qp *VerbsConn::create_qp()
{
	ibv_qp_init_attr attr{};
	attr.send_cq = send_cq_;
	attr.recv_cq = recv_cq_;
	attr.qp_type = IBV_QPT_RC;
	attr.sq_sig_all = 0;
	attr.cap.max_send_wr = kSendDepth;
	attr.cap.max_recv_wr = kRecvDepth;
	attr.cap.max_send_sge = 1;
	attr.cap.max_recv_sge = 1;
	attr.cap.max_inline_data = sizeof(wire_mailbox);
	ibv_qp *qp = ibv_create_qp(pd_, &attr);
	if (!qp)
		throw_verbs(errno, "ibv_create_qp (RC) failed");
	return qp;
}

VerbsConn::~VerbsConn()
{
	release_verbs();
	// Not a failure: the process's fd hangs up without ECONNRESET (the fuse, vtoe_abi.h).
	if (!failed_ && app_bell_)
		drain_app_filler();
}

void VerbsConn::release_verbs()
{
	channel_watch_.stop();
	agent_watch_.stop();
	bell_watch_.stop();
	if (stage_timer_) {
		uv_timer_stop(stage_timer_);
		uv_close(reinterpret_cast<uv_handle_t *>(stage_timer_),
			 [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
		stage_timer_ = nullptr;
	}
	if (qp_)
		ibv_destroy_qp(qp_);
	qp_ = nullptr;
	release_staged(UINT64_MAX);
	for (ibv_mr **mr : {&tx_mr_, &rx_mr_, &mail_mr_}) {
		if (*mr)
			ibv_dereg_mr(*mr);
		*mr = nullptr;
	}
	if (send_cq_)
		ibv_destroy_cq(send_cq_);
	send_cq_ = nullptr;
	if (recv_cq_)
		ibv_destroy_cq(recv_cq_);
	recv_cq_ = nullptr;
	if (channel_)
		ibv_destroy_comp_channel(channel_);
	channel_ = nullptr;
	if (pd_)
		ibv_dealloc_pd(pd_);
	pd_ = nullptr;
}

LocalWindow VerbsConn::local_window() const
{
	LocalWindow w;
	w.ring_addr = reinterpret_cast<uintptr_t>(rx_data_);
	w.ring_rkey = rx_mr_->rkey;
	w.mailbox_addr = reinterpret_cast<uintptr_t>(&mail_->in);
	w.mailbox_rkey = mail_mr_->rkey;
	w.recv_credits = kRecvDepth;
	w.qp_num = qp_->qp_num;
	return w;
}

void VerbsConn::post_receives()
{
	while (recvs_posted_ - wire_.messages_received() < kRecvDepth) {
		ibv_recv_wr wr{}, *bad = nullptr;
		wr.wr_id = recvs_posted_;
		wr.num_sge = 0; // WRITE_WITH_IMM only: the bytes land in the rings, not here
		int rc = ibv_post_recv(qp_, &wr, &bad);
		if (rc != 0)
			throw_verbs(rc, "ibv_post_recv failed");
		recvs_posted_++;
	}
}

void VerbsConn::start(const PeerWindow &peer, const WireAuth &auth)
{
	if (started_)
		return;
	peer_ = peer;
	auth_ = auth;
	auth_pending_ = auth.send;
	wire_.start(peer.recv_credits, auth);
	peer_seen_ns_ = loop_ns();
	started_ = true;
	channel_watch_.start(loop_, channel_->fd, UV_READABLE,
			     [this](int, int) { on_completion_channel(); });
	agent_watch_.start(loop_, agent_fd_.get(), UV_READABLE,
			   [this](int status, int events) { on_agent_fd(status, events); });
	// The bell's read side shuts only when the process's last fd of the socket closes.
	bell_watch_.start(loop_, app_bell_.get(), UV_DISCONNECT,
			  [this](int status, int events) { on_app_bell(status, events); });
	progress();
	arm_send_cq();
}

void VerbsConn::stop()
{
	stopped_ = true;
	channel_watch_.stop();
	agent_watch_.stop();
	bell_watch_.stop();
}

// ---- completions ----------------------------------------------------------------------------

void VerbsConn::on_completion_channel()
{
	// One event a wake-up: reading on to EAGAIN cost a system call each time, and an event
	// still queued keeps the (level-triggered) watch ready, so it is read on the next turn.
	// Its CQ stays marked armed meanwhile, and the poll below reaps both CQs anyway.
	ibv_cq *cq = nullptr;
	void *ctx = nullptr;
	if (ibv_get_cq_event(channel_, &cq, &ctx) == 0) {
		ibv_ack_cq_events(cq, 1);
		if (cq == send_cq_)
			send_cq_armed_ = false;
		else
			recv_cq_armed_ = false;
	}
	// Re-armed before the poll, so nothing lands unseen; not while the fabric polls us.
	if (!spinning_ && !arm_recv_cq())
		return;
	poll_completions();
	advance_tx_tail();
	progress();
	arm_send_cq();
	sink_.traffic(handle_);
}

bool VerbsConn::poll_once()
{
	if (!started_ || stopped_ || failed_ || suspended_)
		return false;
	const uint64_t completed = completed_, sent = sent_, received = wire_.messages_received();
	poll_completions();
	advance_tx_tail();
	progress();
	return completed_ != completed || sent_ != sent || wire_.messages_received() != received;
}

void VerbsConn::set_spinning(bool on)
{
	if (spinning_ == on)
		return;
	spinning_ = on;
	if (on || stopped_ || failed_)
		return;
	// Wake-ups again: arm, then look once more (progress arms the doorbell before it reads
	// head, Dekker with the shim), so nothing that came meanwhile waits.
	if (arm_recv_cq())
		drain();
}

bool VerbsConn::arm_recv_cq()
{
	if (recv_cq_armed_)
		return true;
	if (ibv_req_notify_cq(recv_cq_, 0) != 0) {
		fail(ConnEvent::qp_error, "ibv_req_notify_cq failed");
		return false;
	}
	recv_cq_armed_ = true;
	return true;
}

// Send completions free ring space only together with the peer's credits, so a wake-up for
// them is needed only when the peer has reported more than we have seen complete, when the
// send queue is nearly full, or when staged bytes wait in the ring only for the sends that
// read them there.  Otherwise they are reaped on the next wake-up anyway.
void VerbsConn::arm_send_cq()
{
	while (!stopped_ && !failed_ && !suspended_ && !batches_.empty() && !send_cq_armed_ &&
	       (wire_.peer_consumed() > completed_ || sq_used_ + 3 > kSendDepth || ring_holds_staged())) {
		if (ibv_req_notify_cq(send_cq_, 0) != 0) {
			fail(ConnEvent::qp_error, "ibv_req_notify_cq failed");
			return;
		}
		send_cq_armed_ = true;
		// A completion that arrived before the arm raises no event: reap it now.
		uint64_t before = completed_;
		poll_completions();
		if (completed_ == before)
			return;
		send_cq_armed_ = false; // events for the reaped ones may still come; harmless
		advance_tx_tail();
		progress();
	}
}

void VerbsConn::drain()
{
	if (!started_ || stopped_ || suspended_)
		return;
	poll_completions();
	advance_tx_tail();
	progress();
	arm_send_cq();
}

void VerbsConn::poll_completions()
{
	ibv_wc wcs[32];
	bool more = true;
	while (more && !stopped_ && !suspended_) {
		more = false;
		// Sends first: when a send fails, the receives are flushed, and the send says why.
		int n = ibv_poll_cq(send_cq_, 32, wcs);
		for (int i = 0; i < n && !stopped_ && !suspended_; i++)
			handle_send_completion(wcs[i]);
		more |= n == 32;
		n = ibv_poll_cq(recv_cq_, 32, wcs);
		for (int i = 0; i < n && !stopped_ && !suspended_; i++)
			handle_recv_completion(wcs[i]);
		more |= n == 32;
	}
}

void VerbsConn::handle_send_completion(const ibv_wc &wc)
{
	stats_.completions++;
	if (wc.status != IBV_WC_SUCCESS) {
		fail_completion("send", wc);
		return;
	}
	if (batches_.empty()) {
		fail(ConnEvent::qp_error, "a send completion nobody posted");
		return;
	}
	Batch batch = batches_.front();
	batches_.pop_front();
	sq_used_ -= batch.wrs;
	completed_ = batch.end;
	peer_seen_ns_ = loop_ns();
}

void VerbsConn::handle_recv_completion(const ibv_wc &wc)
{
	if (wc.status != IBV_WC_SUCCESS) {
		fail_completion("receive", wc);
		return;
	}
	peer_seen_ns_ = loop_ns();
	WireArrival in;
	in.write_with_imm = wc.opcode == IBV_WC_RECV_RDMA_WITH_IMM && (wc.wc_flags & IBV_WC_WITH_IMM);
	in.imm = ntohl(wc.imm_data);
	in.mailbox_stable = read_mailbox(in.mailbox);
	volatile uint8_t *slot = mail_->auth_in;
	for (size_t i = 0; i < kWireAuthBytes; i++)
		in.auth[i] = slot[i];
	WireVerdict v = wire_.accept(in, {sent_, msgs_sent_});
	if (v.action == WireAction::violation) {
		fail(ConnEvent::protocol, v.why);
		return;
	}
	if (wire_.broken() || failed_)
		return; // what a broken peer sends after its reset reaches nobody
	try {
		post_receives();
	} catch (const SystemError &) {
		fail(ConnEvent::qp_error, "cannot repost a receive");
		return;
	}
	switch (v.action) {
	case WireAction::deliver:
		deliver(v.bytes);
		return;
	case WireAction::fin:
		rx_->fin_at.store(wire_.delivered(), RLX);
		rx_->fin.store(1, REL);
		wake_app();
		// The process's fd now reads POLLIN|POLLRDHUP, as after a TCP FIN.
		shutdown(app_bell_.get(), SHUT_WR);
		report(ConnEvent::peer_fin, "");
		return;
	case WireAction::peer_reset:
		fail(ConnEvent::peer_reset, v.why);
		return;
	case WireAction::peer_closed:
		tx_->rd_shut.store(1, REL);
		// A writer blocked on a full ring must wake up to find EPIPE.
		std::atomic_thread_fence(std::memory_order_seq_cst);
		if (tx_->tx_waiting.exchange(0) == 1)
			drain_app_filler();
		report(ConnEvent::peer_closed, "");
		return;
	case WireAction::authenticated:
		report(ConnEvent::authenticated, "");
		return;
	case WireAction::claimed:
		may_stage_ = true;
		report(ConnEvent::claimed, "");
		return;
	case WireAction::kernel_accepted:
		report(ConnEvent::kernel_accepted, "");
		return;
	case WireAction::none:
	case WireAction::violation:
		return;
	}
}

void VerbsConn::fail_completion(const char *queue, const ibv_wc &wc)
{
	std::string detail = std::string(queue) + " completion: " + ibv_wc_status_str(wc.status) +
			     " (status " + std::to_string(wc.status) + ", vendor error " +
			     std::to_string(wc.vendor_err) + ")";
	if (resumable(wc.status)) {
		suspend();
		report(ConnEvent::link_lost, detail.c_str());
		return;
	}
	fail(ConnEvent::qp_error, detail.c_str());
}

// What a link or path does to a QP (retries spent, no route, work flushed by the QP's error),
// as opposed to what the peer or this end did wrong, and only while the stream is whole.
bool VerbsConn::resumable(ibv_wc_status status) const
{
	if (reset_sent_ || wire_.peer_reset() || wire_.broken() || auth_pending_ || wire_.awaiting_auth())
		return false;
	return status == IBV_WC_RETRY_EXC_ERR || status == IBV_WC_LOC_QP_OP_ERR ||
	       status == IBV_WC_WR_FLUSH_ERR;
}

// ---- resume ---------------------------------------------------------------------------------

void VerbsConn::suspend()
{
	if (suspended_ || failed_ || stopped_)
		return;
	suspended_ = true;
	channel_watch_.stop();
	ibv_qp_attr attr{};
	attr.qp_state = IBV_QPS_ERR;
	if (qp_)
		ibv_modify_qp(qp_, &attr, IBV_QP_STATE); // a QP that failed is there already
}

void VerbsConn::renew_qp()
{
	if (!suspended_)
		throw_system_error(EINVAL, "a QP is renewed only while its connection is suspended");
	if (qp_) // none when an earlier renewal could not create its QP
		ibv_destroy_qp(qp_);
	qp_ = nullptr;
	// What the old QP left behind (flushed work, its completion events) belongs to nobody: the
	// peer sends again from what we delivered, and we from what it says it has.
	ibv_wc wcs[32];
	while (ibv_poll_cq(send_cq_, 32, wcs) > 0) {
	}
	while (ibv_poll_cq(recv_cq_, 32, wcs) > 0) {
	}
	for (;;) {
		ibv_cq *cq = nullptr;
		void *ctx = nullptr;
		if (ibv_get_cq_event(channel_, &cq, &ctx) != 0)
			break;
		ibv_ack_cq_events(cq, 1);
	}
	qp_ = create_qp();
	if (ibv_req_notify_cq(recv_cq_, 0) != 0)
		throw_verbs(errno, "ibv_req_notify_cq failed");
	recv_cq_armed_ = true;
	send_cq_armed_ = false;
	batches_.clear();
	sq_used_ = 0;
	msgs_sent_ = 0;
	recvs_posted_ = 0;
	wire_.new_qp();
	std::memset(&mail_->in, 0, sizeof(mail_->in));
	std::memset(mail_->auth_in, 0, sizeof(mail_->auth_in));
}

ResumePoint VerbsConn::position()
{
	ResumePoint p{};
	p.delivered = wire_.delivered();
	uint64_t tail = rx_->tail.load(ACQ);
	if (tail < wire_.reported_consumed() || tail > p.delivered)
		tail = wire_.reported_consumed(); // the process wrote nonsense: say nothing new
	p.consumed = tail;
	p.have_fin = wire_.peer_fin();
	p.have_close = wire_.peer_closed();
	resume_told_consumed_ = tail;
	return p;
}

void VerbsConn::resume(const ResumePoint &peer, const WireAuth &auth)
{
	if (!suspended_)
		throw_system_error(EINVAL, "only a suspended connection resumes");
	// The peer cannot hold more of our stream than we sent, nor have read less than it said.
	if (peer.delivered > sent_ || peer.consumed > peer.delivered || peer.consumed < wire_.peer_consumed())
		throw_system_error(EPROTO, "the peer resumes from a position our stream never had");
	sent_ = peer.delivered;
	completed_ = sent_;
	ring_posted_end_ = 0; // the old QP's sends are gone
	fin_sent_ = fin_sent_ && peer.have_fin;
	close_sent_ = close_sent_ && peer.have_close;
	wire_.resume(kRecvDepth, auth, peer.consumed, resume_told_consumed_);
	accepted_sent_ = false; // the old QP may have failed before it reached the peer: again
	auth_ = auth;
	auth_pending_ = auth.send;
	peer_seen_ns_ = loop_ns();
	suspended_ = false;
	channel_watch_.start(loop_, channel_->fd, UV_READABLE,
			     [this](int, int) { on_completion_channel(); });
	advance_tx_tail();
	progress();
	arm_send_cq();
}

// The peer's HCA may be writing a newer mailbox while we read: take two equal reads.
bool VerbsConn::read_mailbox(wire_mailbox &out)
{
	volatile wire_mailbox *in = &mail_->in;
	for (int tries = 0; tries < kMailboxReadTries; tries++) {
		wire_mailbox a, b;
		a.consumed = in->consumed;
		a.recvs_posted = in->recvs_posted;
		b.consumed = in->consumed;
		b.recvs_posted = in->recvs_posted;
		if (a.consumed == b.consumed && a.recvs_posted == b.recvs_posted) {
			out = a;
			return true;
		}
	}
	out = {};
	return false;
}

void VerbsConn::deliver(uint64_t bytes)
{
	stats_.bytes_delivered += bytes;
	rx_->head.store(wire_.delivered(), REL);
	wake_app();
}

// ---- doorbells ------------------------------------------------------------------------------

void VerbsConn::wake_app()
{
	std::atomic_thread_fence(std::memory_order_seq_cst);
	if (!rx_->rx_armed.load(RLX) || rx_->rx_armed.exchange(0) != 1)
		return;
	rx_->wakes.fetch_add(1);
	for (;;) {
		if (send(app_bell_.get(), "w", 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1)
			return;
		if (errno != EINTR)
			break;
	}
	rx_->wakes.fetch_sub(1); // no byte went out (EAGAIN: plenty are pending anyway)
}

// Reads the filler and the reset fuse the process put in its fd (it re-arms the fuse).
void VerbsConn::drain_app_filler()
{
	discard_pending(app_bell_.get());
}

// Ask the process to tell us when it consumes: fill our fd so that it is unwritable, and set
// tx_waiting on its rx ring; its next recv drains the filler, and our fd becomes writable.
void VerbsConn::request_consume_notification()
{
	fill_until_full(agent_fd_.get());
	rx_->tx_waiting.store(1);
	std::atomic_thread_fence(std::memory_order_seq_cst);
	notify_requested_ = true;
	update_watches();
}

void VerbsConn::on_agent_fd(int status, int events)
{
	if (status < 0) {
		agent_fd_eof_ = true;
	} else {
		if (events & UV_READABLE) {
			char buf[256];
			for (size_t budget = kBellReadMax; budget >= sizeof(buf); budget -= sizeof(buf)) {
				ssize_t n = recv(agent_fd_.get(), buf, sizeof(buf), MSG_DONTWAIT);
				if (n > 0 && static_cast<size_t>(n) < sizeof(buf))
					break; // a short read of a stream socket emptied it: no EAGAIN call
				if (n > 0 || (n < 0 && errno == EINTR))
					continue;
				if (n == 0 || errno != EAGAIN)
					agent_fd_eof_ = true; // the process shut its bell: FIN or close
				break;
			}
		}
		if ((events & UV_WRITABLE) && notify_requested_) {
			notify_requested_ = false;
			stats_.notifications++;
		}
	}
	update_watches();
	poll_completions(); // reap send completions without a wake-up of their own
	advance_tx_tail();
	progress();
	arm_send_cq();
	sink_.traffic(handle_);
}

void VerbsConn::on_app_bell(int, int)
{
	app_gone();
}

void VerbsConn::app_gone()
{
	if (app_gone_)
		return;
	app_gone_ = true;
	bell_watch_.stop();
	if (failed_ || stopped_) {
		report(ConnEvent::app_closed, "after the connection failed");
		return;
	}
	progress(); // reports app_closed once its FIN or reset is on the wire
	arm_send_cq();
}

void VerbsConn::update_watches()
{
	if (stopped_ || !started_)
		return;
	int events = (agent_fd_eof_ ? 0 : UV_READABLE) | (notify_requested_ ? UV_WRITABLE : 0);
	agent_watch_.set_events(events);
}

// ---- transmit -------------------------------------------------------------------------------

uint32_t VerbsConn::message_credits() const
{
	const uint64_t recvs = wire_.peer_recvs();
	return recvs > msgs_sent_ ? static_cast<uint32_t>(recvs - msgs_sent_) : 0;
}

// The ring's space below the returned tail goes back to the writer: the bytes there are read
// by the peer (or kept in staging chunks for a resume), and no send still reads them.
void VerbsConn::advance_tx_tail()
{
	const uint64_t consumed = wire_.peer_consumed();
	const uint64_t retained = consumed < completed_ ? consumed : completed_;
	release_staged(retained);
	uint64_t t = staged_.empty() ? retained : staged_end_;
	if (ring_posted_end_ > completed_ && completed_ < t)
		t = completed_;
	if (t <= tx_tail_)
		return;
	tx_tail_ = t;
	tx_->tail.store(t, REL);
	std::atomic_thread_fence(std::memory_order_seq_cst);
	if (tx_->tx_waiting.load(RLX) && tx_->tx_waiting.exchange(0) == 1)
		drain_app_filler(); // the process's fd is writable again
}

// The peer's ring is full of our bytes and the writer's half full.  A reader that has read
// nothing for kStallNs has stalled: take the ring's bytes into staging so the writer can go
// on, as the kernel's send buffer would; until then look again when that time is up.
void VerbsConn::stage_if_stalled(uint64_t head)
{
	const uint64_t now = loop_ns();
	const uint64_t consumed = wire_.peer_consumed();
	if (!stall_since_ns_ || consumed != stall_consumed_) {
		stall_consumed_ = consumed; // consumed only grows: unchanged means nothing read since
		stall_since_ns_ = now;
	}
	if (now - stall_since_ns_ >= kStallNs) {
		stage(head);
		return;
	}
	if (!stage_timer_) {
		stage_timer_ = new uv_timer_t;
		uv_timer_init(loop_, stage_timer_);
		stage_timer_->data = this;
	}
	if (uv_is_active(reinterpret_cast<uv_handle_t *>(stage_timer_)))
		return;
	const uint64_t ms = (kStallNs - (now - stall_since_ns_) + 999'999) / 1'000'000;
	uv_timer_start(stage_timer_, [](uv_timer_t *t) {
		auto *self = static_cast<VerbsConn *>(t->data);
		self->progress();
		self->arm_send_cq();
	}, ms, 0);
}

// Copies what the tx ring holds beyond the staging chunks into them (new chunks as needed, as
// far as the connection's share and the allowance go), then returns the ring's space.
void VerbsConn::stage(uint64_t head)
{
	uint64_t pos = staged_end_ > tx_tail_ ? staged_end_ : tx_tail_;
	while (pos < head) {
		if (staged_.empty() || pos >= staged_.back().base + size_) {
			if (!add_staged_chunk(staged_.empty() ? pos : staged_.back().base + size_))
				break;
		}
		const StagedChunk &c = staged_.back();
		const uint64_t end = head < c.base + size_ ? head : c.base + size_;
		const uint64_t off = pos & (size_ - 1);
		const uint64_t n = end - pos;
		const uint64_t first = n < size_ - off ? n : size_ - off;
		std::memcpy(c.data + (pos - c.base), tx_data_ + off, first);
		std::memcpy(c.data + (pos - c.base) + first, tx_data_, n - first);
		stats_.bytes_staged += n;
		pos = end;
		staged_end_ = pos;
	}
	advance_tx_tail();
}

// Bytes that are in staging chunks and that the ring keeps only for sends not yet complete.
bool VerbsConn::ring_holds_staged() const
{
	return !staged_.empty() && ring_posted_end_ > completed_ && staged_end_ > completed_;
}

// What this connection may stage: its share, and no more than the kernel's send buffer would
// hold beside the tx ring if the process set SO_SNDBUF (the kernel doubles what it is given).
uint64_t VerbsConn::staging_cap() const
{
	const uint64_t asked = 2ull * tx_->sndbuf.load(RLX);
	if (!asked)
		return staging_.per_conn_max;
	const uint64_t beside_ring = asked > size_ ? asked - size_ : 0;
	return beside_ring < staging_.per_conn_max ? beside_ring : staging_.per_conn_max;
}

bool VerbsConn::add_staged_chunk(uint64_t base)
{
	if ((staged_.size() + 1) * size_ > staging_cap())
		return false; // its share is full: the writer waits, as on a full kernel send buffer
	ibv_mr *mr = nullptr;
	void *mem = MAP_FAILED;
	if (staging_.take(size_)) {
		mem = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		mr = mem == MAP_FAILED ? nullptr : ibv_reg_mr(pd_, mem, size_, 0); // our HCA reads it
		if (!mr) {
			if (mem != MAP_FAILED)
				munmap(mem, size_);
			staging_.give(size_);
		}
	}
	if (!mr) { // the writer waits for the peer's reader, as without staging
		if (!staging_refused_)
			staging_.refused++;
		staging_refused_ = true;
		return false;
	}
	staging_refused_ = false;
	staged_.push_back({static_cast<uint8_t *>(mem), mr, base});
	return true;
}

// Frees the chunks whose bytes the peer has all read (all of them: UINT64_MAX).
void VerbsConn::release_staged(uint64_t retained)
{
	while (!staged_.empty()) {
		const StagedChunk &c = staged_.front();
		const uint64_t end = c.base + size_ < staged_end_ ? c.base + size_ : staged_end_;
		if (end > retained)
			return;
		ibv_dereg_mr(c.mr);
		munmap(c.data, size_);
		staging_.give(size_);
		staged_.pop_front();
		staging_refused_ = false;
	}
}

const VerbsConn::StagedChunk *VerbsConn::staged_chunk(uint64_t pos) const
{
	if (staged_.empty() || pos < staged_.front().base || pos >= staged_end_)
		return nullptr;
	return &staged_[(pos - staged_.front().base) / size_];
}

// Posts one message: for data, the bytes [from, to) of the stream, which lie in the tx ring or
// in one staging chunk; always the mailbox first.
bool VerbsConn::post_message(WireMsg type, uint64_t from, uint64_t to, int64_t value)
{
	const bool data = type == WireMsg::data;
	if (!port_up_)
		return false; // the link is down: the fabric drains us when it is back
	if (message_credits() <= (data ? kCreditReserve : 0)) {
		stats_.credit_stalls++;
		return false;
	}
	if (sq_used_ + 3 > kSendDepth)
		return false;

	uint64_t tail = rx_->tail.load(ACQ);
	if (tail < wire_.reported_consumed() || tail > wire_.delivered())
		tail = wire_.reported_consumed(); // the process wrote nonsense: report nothing new
	mail_->out.consumed = tail;
	mail_->out.recvs_posted = recvs_posted_;

	ibv_sge sge[3]{};
	ibv_send_wr wr[3]{};
	uint32_t n = 0;
	sge[0].addr = reinterpret_cast<uintptr_t>(&mail_->out);
	sge[0].length = sizeof(mail_->out);
	wr[0].opcode = IBV_WR_RDMA_WRITE;
	wr[0].send_flags = IBV_SEND_INLINE;
	wr[0].sg_list = &sge[0];
	wr[0].num_sge = 1;
	wr[0].wr.rdma.remote_addr = peer_.mailbox_addr;
	wr[0].wr.rdma.rkey = peer_.mailbox_rkey;
	n = 1;

	const uint64_t bytes = to - from;
	const StagedChunk *staged = data && bytes ? staged_chunk(from) : nullptr;
	if (staged && to > staged->base + size_) {
		fail(ConnEvent::qp_error, "a send that spans staging chunks");
		return false;
	}
	uint64_t pos = from;
	uint64_t left = bytes;
	do {
		const uint64_t off = pos & (size_ - 1);
		uint64_t chunk = left < size_ - off ? left : size_ - off;
		ibv_send_wr &w = wr[n];
		w.opcode = IBV_WR_RDMA_WRITE;
		w.wr.rdma.remote_addr = peer_.ring_addr + off;
		w.wr.rdma.rkey = peer_.ring_rkey;
		if (chunk) {
			sge[n].addr = reinterpret_cast<uintptr_t>(staged ? staged->data + (pos - staged->base)
									  : tx_data_ + off);
			sge[n].length = static_cast<uint32_t>(chunk);
			sge[n].lkey = staged ? staged->mr->lkey : tx_mr_->lkey;
			w.sg_list = &sge[n];
			w.num_sge = 1;
		}
		n++;
		left -= chunk;
		pos += chunk;
	} while (left);
	ibv_send_wr &last = wr[n - 1];
	last.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
	last.imm_data = htonl(wire_imm(type, static_cast<uint32_t>(value >= 0 ? static_cast<uint64_t>(value) : bytes)));
	last.send_flags |= IBV_SEND_SIGNALED;
	last.wr_id = to;
	for (uint32_t i = 0; i + 1 < n; i++)
		wr[i].next = &wr[i + 1];

	ibv_send_wr *bad = nullptr;
	int rc = ibv_post_send(qp_, wr, &bad);
	if (rc != 0) {
		fail(ConnEvent::qp_error, "ibv_post_send failed");
		return false;
	}
	sq_used_ += n;
	batches_.push_back({n, to, loop_ns(), false});
	msgs_sent_++;
	stats_.messages_sent++;
	stats_.bytes_sent += bytes;
	if (type == WireMsg::credit)
		stats_.credit_messages++;
	if (data) {
		sent_ = to;
		if (bytes && !staged)
			ring_posted_end_ = to;
	}
	wire_.reported(tail, recvs_posted_);
	return true;
}

// The active end's proof: the MAC into the peer's auth slot, then an empty auth message.
bool VerbsConn::post_auth()
{
	if (!port_up_ || message_credits() == 0 || sq_used_ + 2 > kSendDepth)
		return false;
	std::memcpy(mail_->auth_out, auth_.mac, kWireAuthBytes);
	ibv_sge sge{};
	sge.addr = reinterpret_cast<uintptr_t>(mail_->auth_out);
	sge.length = kWireAuthBytes;
	ibv_send_wr wr[2]{};
	wr[0].opcode = IBV_WR_RDMA_WRITE;
	wr[0].send_flags = IBV_SEND_INLINE;
	wr[0].sg_list = &sge;
	wr[0].num_sge = 1;
	wr[0].wr.rdma.remote_addr = peer_.mailbox_addr + sizeof(wire_mailbox);
	wr[0].wr.rdma.rkey = peer_.mailbox_rkey;
	wr[0].next = &wr[1];
	wr[1].opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
	wr[1].imm_data = htonl(wire_imm(WireMsg::auth, 0));
	wr[1].send_flags = IBV_SEND_SIGNALED;
	wr[1].wr_id = sent_;
	ibv_send_wr *bad = nullptr;
	if (ibv_post_send(qp_, wr, &bad) != 0) {
		fail(ConnEvent::qp_error, "ibv_post_send failed");
		return false;
	}
	sq_used_ += 2;
	batches_.push_back({2, sent_, loop_ns(), false});
	msgs_sent_++;
	stats_.messages_sent++;
	auth_pending_ = false;
	return true;
}

void VerbsConn::progress()
{
	if (!started_ || stopped_ || failed_ || suspended_)
		return;
	if (auth_pending_ && !post_auth())
		return; // nothing may precede it
	// Nor does anything go to a peer that has yet to prove the key: a resume REQ replayed by
	// someone without it must not be sent the stream.
	if (wire_.awaiting_auth())
		return;
	if (accepted_ >= 0 && !accepted_sent_) {
		if (!post_message(WireMsg::accepted, sent_, sent_, accepted_))
			return; // nothing goes before it
		accepted_sent_ = true;
	}
	if (accepted_ == kWireAcceptedKernel)
		return; // the stream went to kernel TCP: the active agent carries it from here
	// A doorbell for new data, unless the fabric is polling us: arm before reading head
	// (Dekker with the shim).
	if (!spinning_) {
		tx_->rx_armed.store(1);
		std::atomic_thread_fence(std::memory_order_seq_cst);
	}

	if (!reset_sent_) {
		const bool app_reset = tx_->reset.load(ACQ) != 0;
		const bool fin = tx_->fin.load(ACQ) != 0;
		uint64_t head = tx_->head.load(ACQ);
		if (head < sent_ || head - tx_tail_ > size_) {
			fail(ConnEvent::protocol, "the process wrote an impossible tx head");
			return;
		}
		// A process that closed (or died: the kernel closes for it) with data unread, or
		// that gets data after closing, resets the connection, as TCP sends RST.
		const bool unread = app_gone_ && rx_->tail.load(ACQ) != wire_.delivered();
		if (app_reset || unread) {
			if (post_message(WireMsg::reset, sent_, sent_)) {
				reset_sent_ = true;
				if (app_gone_)
					report(ConnEvent::app_closed, "reset");
			}
			return;
		}
		// As much as the peer's ring has room for: from a staging chunk at a time, then the
		// tx ring.
		const uint64_t room_end = wire_.peer_consumed() + size_;
		const uint64_t limit = head < room_end ? head : room_end;
		while (sent_ < limit) {
			uint64_t to = limit;
			if (sent_ < staged_end_) {
				const StagedChunk *c = staged_chunk(sent_);
				if (!c) {
					fail(ConnEvent::qp_error, "staged bytes that no chunk holds");
					return;
				}
				to = to < staged_end_ ? to : staged_end_;
				to = to < c->base + size_ ? to : c->base + size_;
			}
			if (!post_message(WireMsg::data, sent_, to))
				break;
		}
		if (may_stage_ && staging_cap() >= size_ && sent_ >= room_end && head - tx_tail_ >= size_ / 2)
			stage_if_stalled(head);
		if ((fin || app_gone_) && !fin_sent_ && sent_ == head) {
			if (fin && tx_->fin_at.load(RLX) != head) {
				fail(ConnEvent::protocol, "the process's FIN is not at the end of its data");
				return;
			}
			fin_sent_ = post_message(WireMsg::fin, sent_, sent_);
			if (fin_sent_)
				report(ConnEvent::fin_sent, "");
		}
		if (app_gone_ && fin_sent_ && !close_sent_) {
			close_sent_ = post_message(WireMsg::close, sent_, sent_);
			if (close_sent_)
				report(ConnEvent::app_closed, "fin");
		}
	}

	uint64_t tail = rx_->tail.load(ACQ);
	const uint64_t delivered = wire_.delivered(), reported = wire_.reported_consumed();
	if (tail < reported || tail > delivered) {
		fail(ConnEvent::protocol, "the process wrote an impossible rx tail");
		return;
	}
	if (!reset_sent_ && (tail - reported >= size_ / 4 ||
			     recvs_posted_ - wire_.reported_recvs() >= kRecvDepth / 2))
		post_message(WireMsg::credit, sent_, sent_);
	if (!notify_requested_ && !app_gone_ && !wire_.peer_reset() &&
	    delivered - reported >= size_ / 4) {
		request_consume_notification();
		if (rx_->tail.load(ACQ) != tail && rx_->tx_waiting.exchange(0) == 1) {
			// The process consumed meanwhile and may never look again: do it now.
			notify_requested_ = false;
			update_watches();
			progress();
		}
	}
}

// ---- failure --------------------------------------------------------------------------------

void VerbsConn::send_accepted(bool kernel)
{
	if (accepted_ >= 0)
		return;
	accepted_ = kernel ? kWireAcceptedKernel : kWireAcceptedOffloaded;
	may_stage_ = !kernel;
	progress();
	arm_send_cq();
}

ShmConnection &VerbsConn::hand_over()
{
	if (!handed_over_) {
		handed_over_ = true;
		stop();
		release_verbs();
		shm_.restore_agent_end(app_side_, {std::move(agent_fd_), std::move(app_bell_)});
	}
	return shm_;
}

void VerbsConn::reset_app()
{
	if (failed_)
		return;
	failed_ = true;
	hang_up_app(VTOE_RESET_ABORT);
}

void VerbsConn::answer_write_after_close()
{
	if (failed_)
		return;
	failed_ = true;
	hang_up_app(0);
}

VerbsConnState VerbsConn::state() const
{
	VerbsConnState s{};
	s.sent = sent_;
	s.completed = completed_;
	s.tx_tail = tx_tail_;
	s.staged_end = staged_end_;
	s.staged_pinned = staged_.size() * size_;
	s.msgs_sent = msgs_sent_;
	s.oldest_unacked_ms = batches_.empty() ? 0 : (loop_ns() - batches_.front().posted_ns) / 1000000;
	s.sq_used = sq_used_;
	s.batches_out = static_cast<uint32_t>(batches_.size());
	s.peer_consumed = wire_.peer_consumed();
	s.peer_recvs = wire_.peer_recvs();
	s.delivered = wire_.delivered();
	s.reported_consumed = wire_.reported_consumed();
	s.recvs_posted = recvs_posted_;
	s.reported_recvs = wire_.reported_recvs();
	s.port_up = port_up_;
	s.notify_requested = notify_requested_;
	s.send_cq_armed = send_cq_armed_;
	s.auth_pending = auth_pending_;
	s.fin_sent = fin_sent_;
	s.reset_sent = reset_sent_;
	s.failed = failed_;
	return s;
}

LivenessSample VerbsConn::liveness()
{
	// Send completions are reaped lazily (arm_send_cq): an acknowledged send may still sit in
	// the CQ, and would look unacknowledged.
	drain();
	const uint64_t now = loop_ns();
	LivenessSample s{};
	if (!batches_.empty())
		s.unacked_ms = (now - batches_.front().posted_ns) / 1000000;
	s.quiet_ms = (now - peer_seen_ns_) / 1000000;
	for (const Batch &b : batches_)
		s.probe_pending |= b.probe;
	// TCP's zero window: the peer's ring is full of our bytes, or the process has bytes that
	// the credits hold back.
	s.waiting_for_peer = tx_->head.load(ACQ) > sent_ || sent_ - wire_.peer_consumed() >= size_;
	s.user_timeout_ms = tx_->user_timeout_ms.load(RLX);
	s.keep_idle_s = tx_->keep_idle_s.load(RLX);
	s.keep_intvl_s = tx_->keep_intvl_s.load(RLX);
	s.keep_cnt = tx_->keep_cnt.load(RLX);
	return s;
}

bool VerbsConn::probe()
{
	if (!started_ || stopped_ || failed_ || suspended_ || reset_sent_ || auth_pending_)
		return false;
	for (const Batch &b : batches_)
		if (b.probe)
			return false;
	if (!port_up_ || sq_used_ + 1 > kSendDepth)
		return false;
	ibv_send_wr wr{};
	wr.opcode = IBV_WR_RDMA_WRITE;
	wr.send_flags = IBV_SEND_SIGNALED;
	wr.wr.rdma.remote_addr = peer_.mailbox_addr;
	wr.wr.rdma.rkey = peer_.mailbox_rkey;
	wr.wr_id = sent_;
	ibv_send_wr *bad = nullptr;
	if (ibv_post_send(qp_, &wr, &bad) != 0) {
		fail(ConnEvent::qp_error, "ibv_post_send of a probe failed");
		return false;
	}
	sq_used_ += 1;
	batches_.push_back({1, sent_, loop_ns(), true});
	stats_.probes++;
	return true;
}

void VerbsConn::time_out()
{
	fail(ConnEvent::timed_out, "the peer acknowledged nothing for longer than the socket allows");
}

// The process's reset (ECONNRESET, or ETIMEDOUT; 0: one it asked for): reset flag, then hang up
// its fd to wake every waiter.
void VerbsConn::hang_up_app(uint32_t reset_code)
{
	if (reset_code)
		rx_->reset.store(reset_code, REL);
	tx_->rd_shut.store(1, REL);
	std::atomic_thread_fence(std::memory_order_seq_cst);
	agent_watch_.stop();
	bell_watch_.stop();
	app_bell_.reset();
}

void VerbsConn::fail(ConnEvent event, const char *detail)
{
	if (failed_)
		return;
	failed_ = true;
	hang_up_app(event == ConnEvent::timed_out ? VTOE_RESET_TIMEDOUT : VTOE_RESET_ABORT);
	// The process broke the protocol with a healthy QP: tell the peer (best effort).
	if (event == ConnEvent::protocol && started_ && !stopped_ && !reset_sent_)
		reset_sent_ = post_message(WireMsg::reset, sent_, sent_);
	report(event, detail);
}

void VerbsConn::report(ConnEvent event, const char *detail)
{
	sink_.conn_event(handle_, event, detail);
}

} // namespace vtoe
