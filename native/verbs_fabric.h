// VerbsFabric: the verbs fabric's host CA in native code.  It owns the rdma_cm event channel,
// every rdma_cm id (each known to JavaScript by a small integer handle), one protection domain
// per device, and the connections' data paths (VerbsConn).
//
// The ids are created without a QP: the QP is created by createQp and moved through RESET,
// INIT, RTR and RTS by modifyQp (rdma_init_qp_attr + ibv_modify_qp), so the agent's IB CM and QP
// state machines run step by step.  rdma_cm events and data-path events are queued and reported
// in a batch after the native work that produced them, never from inside it.
#ifndef VTOE_NATIVE_VERBS_FABRIC_H
#define VTOE_NATIVE_VERBS_FABRIC_H

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <sys/socket.h>
#include <uv.h>

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "fd_watch.h"
#include "shm_relay.h"
#include "unique_fd.h"
#include "verbs_conn.h"

namespace vtoe {

struct CmEventInfo {
	uint32_t handle;        // the id the event is for (a new one for CONNECT_REQUEST)
	uint32_t listen_handle; // CONNECT_REQUEST: the listening id; else 0
	rdma_cm_event_type type;
	int status;
	std::vector<uint8_t> private_data;
	sockaddr_storage local, remote;
};

struct ConnEventInfo {
	uint32_t handle;
	ConnEvent event;
	std::string detail;
};

class VerbsFabricListener {
public:
	virtual ~VerbsFabricListener() = default;
	virtual void cm_event(const CmEventInfo &event) = 0;
	virtual void conn_event(const ConnEventInfo &event) = 0;
};

class VerbsFabric : private VerbsConnSink {
public:
	// rdma_cm events handled per wake-up at most (REQs come from the network).
	static constexpr int kCmEventsPerWake = 64;

	// Throws SystemError(ENODEV) when rdma_cm is unusable (no RDMA device, module not loaded).
	VerbsFabric(uv_loop_t *loop, VerbsFabricListener &listener);
	~VerbsFabric();
	VerbsFabric(const VerbsFabric &) = delete;
	VerbsFabric &operator=(const VerbsFabric &) = delete;

	uint32_t listen(const sockaddr *addr, int backlog);
	uint32_t resolve(const sockaddr *dst, int timeout_ms);
	void resolve_route(uint32_t handle, int timeout_ms);
	LocalWindow create_qp(uint32_t handle, uint32_t ring_size, uint64_t cid, int app_side);
	void modify_qp(uint32_t handle, ibv_qp_state state);
	void connect(uint32_t handle, const uint8_t *data, size_t len);
	void accept(uint32_t handle, const uint8_t *data, size_t len);
	void reject(uint32_t handle, const uint8_t *data, size_t len);
	void establish(uint32_t handle);
	void start(uint32_t handle, const PeerWindow &peer, const WireAuth &auth);
	void disconnect(uint32_t handle);
	// Whether the id's local port is active now, asked of the device (not its last event):
	// a DREQ sent while the link is down is lost, and the peer never hears of the reset.
	bool port_active(uint32_t handle);
	void reset_app(uint32_t handle);
	void answer_write_after_close(uint32_t handle);
	// Also asks a port believed down whether it is up again (recheck_port).
	LivenessSample liveness(uint32_t handle);
	bool probe(uint32_t handle);
	void time_out(uint32_t handle);
	// Resuming a connection on a new QP (VerbsConn: suspend, renew_qp, position, resume):
	// adopt() moves the connection of `from` to the id `to` (a new REQ's or a resolved one, on
	// the same device) with a fresh QP in RESET; `from` keeps only its id, to be destroyed.
	void suspend(uint32_t handle);
	void adopt(uint32_t to, uint32_t from);
	ResumePoint position(uint32_t handle);
	void resume(uint32_t handle, const ResumePoint &peer, const WireAuth &auth);
	std::array<int, VTOE_FD__COUNT> fds_for_app(uint32_t handle);
	void release_app(uint32_t handle);
	VerbsConn &conn(uint32_t handle);
	// Late fallback (verbs_wire.h, `accepted`).  The passive end tells its peer that a process
	// claimed it (kernel false) or took the connection on kernel TCP (true).
	void send_accepted(uint32_t handle, bool kernel);
	// The active end's stream goes on over the client's kernel rendezvous socket: its data path
	// is handed over (the QP and registrations go now, the id stays for the DREQ) and a relay
	// plays the server's side from the process's rings, until both FINs or a reset.  Takes
	// ksock.  Throws SystemError.
	void relay(uint32_t handle, unique_fd ksock);
	// Adaptive polling: once a connection has traffic, the loop polls it (and every other
	// connection with traffic) instead of sleeping, until nothing moved for `us` microseconds;
	// then it sleeps in epoll again, so idle costs nothing.  Windows that keep catching
	// nothing (round trips longer than `us`) stop being opened, but for one in 16 wake-ups.
	// 0: never poll (each message is a wake-up).  Worth it only with a core to spare: the
	// caller passes 0 on one CPU.
	void set_spin(uint32_t us);
	struct SpinStats {
		uint64_t polled;  // connections being polled now (0 once traffic stopped: idle costs nothing)
		uint64_t windows; // polling windows opened
		uint64_t caught;  // windows in which polling caught traffic that needed no wake-up
	};
	SpinStats spin_stats() const { return {spinning_.size(), spin_windows_, spin_caught_}; }
	// Send staging (VerbsConn): how much one connection may stage, and how much all may hold
	// together (what the pinned-memory budget leaves; the agent updates it as ends come and go).
	void set_staging(uint64_t per_conn_max, uint64_t allowance)
	{
		staging_.per_conn_max = per_conn_max;
		staging_.allowance = allowance;
	}
	const SendStaging &staging() const { return staging_; }
	// Destroys the QP, its resources and the id.  Unknown handles are ignored.
	void destroy(uint32_t handle);
	void close();
	bool closed() const { return channel_ == nullptr; }
	size_t id_count() const { return ids_.size(); }

private:
	struct Entry {
		rdma_cm_id *id;
		std::unique_ptr<VerbsConn> conn;
	};
	// A device's ports as its async events report them.  While the local port is down the
	// connections on it post nothing (a send on a down link fails the QP at once on some
	// devices), and they resume when it is active again: a short link flap loses nothing.
	struct Device {
		bool port_up = true;
		FdWatch watch;
	};
	// A connection whose stream went to kernel TCP: the region (in its handed-over VerbsConn)
	// and the relay, which outlive the rdma_cm id.
	struct Relayed {
		std::unique_ptr<VerbsConn> conn;
		std::unique_ptr<ShmRelay> relay;
		FdWatch app_watch; // the process's last close, as VerbsConn watched it
	};

	void resume(ibv_context *ctx);
	void recheck_port(rdma_cm_id *id);
	void conn_event(uint32_t handle, ConnEvent event, const char *detail) override;
	void traffic(uint32_t handle) override;
	void spin_turn();
	void stop_spinning();
	void on_channel();
	void schedule_flush();
	void flush();
	Entry &entry(uint32_t handle);
	uint32_t add(rdma_cm_id *id);
	rdma_conn_param conn_param(Entry &e, const uint8_t *data, size_t len);
	Device &device(rdma_cm_id *id);
	void on_async_event(ibv_context *ctx);

	uv_loop_t *loop_;
	VerbsFabricListener &listener_;
	SendStaging staging_; // before the connections: they give their chunks back to it
	rdma_event_channel *channel_ = nullptr;
	FdWatch channel_watch_;
	std::map<uint32_t, Entry> ids_;
	std::map<ibv_context *, Device> devices_; // never erased before close(): conns point into it
	std::map<uint64_t, std::unique_ptr<Relayed>> relays_;
	// adaptive polling (set_spin)
	uint64_t spin_ns_ = 0;
	uv_idle_t *spin_idle_ = nullptr;
	std::set<uint32_t> spinning_;   // handles of connections being polled
	uint64_t spin_until_ns_ = 0;
	uint32_t spin_history_ = 0xffffu; // the last 16 windows: 1 = polling caught traffic
	uint32_t spin_skips_ = 0;
	bool window_caught_ = false;
	uint64_t spin_windows_ = 0, spin_caught_ = 0;
	uint64_t next_relay_ = 1;
	uint32_t next_handle_ = 1;
	std::deque<std::variant<CmEventInfo, ConnEventInfo>> queue_; // in the order they happened
	uv_timer_t *flush_timer_ = nullptr;
	bool flushing_ = false;
};

} // namespace vtoe

#endif
