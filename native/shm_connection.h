// The resources of one shm-fabric connection: a sealed memfd holding the two rings
// (struct vtoe_conn_region) and the two doorbell socketpairs.  The agent creates them, hands
// each side its descriptors over the control channel, then reads counters and, when a side's
// socket is gone from every process, does what the kernel does at a TCP socket's last close.
#ifndef VTOE_NATIVE_SHM_CONNECTION_H
#define VTOE_NATIVE_SHM_CONNECTION_H

#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>

#include <sys/types.h>

#include "unique_fd.h"
#include "vtoe_abi.h"

namespace vtoe {

struct DirCounters {
	uint64_t head;
	uint64_t wakes; /* doorbells the producer rang */
	uint32_t grows; /* times the producer moved to the large area */
	uint64_t tail;
	bool fin;
	bool reset;
	bool rd_shut;
	bool tx_waiting;
};

// What a side's last close amounts to, as TCP would put it on the wire.  `both_done`: both
// directions had finished already, so nothing is left to tell the peer (and an RDHUP on the
// bell may come from an end that shut its own fd after both FINs, not from a close).
enum class SideEnd { fin, reset, both_done };

class ShmConnection {
public:
	static constexpr int kSides = 2;

	// ring_large: the size each ring may grow to (0: never grows; vtoe_abi.h, "Elastic
	// rings").  Throws SystemError: EINVAL for sizes vtoe_ring_size_valid() or
	// vtoe_ring_large_valid() refuse, or the errno of the failing memfd/mmap/socketpair call.
	ShmConnection(uint32_t ring_size, uint32_t ring_large, uint64_t cid);
	~ShmConnection();
	ShmConnection(const ShmConnection &) = delete;
	ShmConnection &operator=(const ShmConnection &) = delete;

	// How far each ring's large area fills (vtoe_large_fill()): `ring_auto` for ends that set
	// no buffers (at most ring_large), and what each side's socket set before the connection
	// existed (SO_SNDBUF, SO_RCVBUF as set; 0: not set).  Before the region is handed out.
	// Throws SystemError EINVAL for a ring_auto above the large area.
	void set_fill(uint32_t ring_auto, const std::array<uint32_t, kSides> &sndbuf,
		      const std::array<uint32_t, kSides> &rcvbuf);

	// The descriptors for `side`, in enum vtoe_rep_fd order: region, app, peer bell.
	// Throws EBADF once that side was released or the connection closed.
	std::array<int, VTOE_FD__COUNT> fds_for(int side) const;

	// Closes the agent's copies of `side`'s app fd and, unless keep_bells(), of its peer bell
	// (after they were sent).  The memfd stays until close(): a process that inherits or is
	// passed the socket asks for it (ATTACH), since processes do not keep it.
	void release_side(int side);

	// The side whose socket `fd` is (the same socket, in any process), or -1: the proof an
	// ATTACH must bring.  fd is only looked at.
	int side_of_socket(int fd) const;
	// The region's memfd, for ATTACH.  Throws EBADF after close().
	int region_fd() const;
	// The agent's copy of the bell of `side`'s peer, for an ATTACH that asks for it (not to be
	// closed).  Throws EBADF without one.
	int peer_bell_fd(int side) const;
	// For side `side`, which holds no bell of its own: ring, drain or shut its peer's bell
	// (enum vtoe_bell_op) with the agent's copy.  Throws EBADF without one, EINVAL for another op.
	void bell_op(int side, uint32_t op);

	// The agent keeps both bells from now on, so that no process's exit hangs up its peer's
	// fd: end_side() decides what the peer sees (the shm fabric, whose ends the agent watches).
	void keep_bells() { keep_bells_ = true; }

	// The agent's copy of bell_[side], the other end of side's app fd: it hangs up (RDHUP)
	// once side's socket is closed in every process.  -1 once closed.
	int bell_fd(int side) const { return bell_[side].get(); }

	// Side `side`'s socket is gone from every process (closed, or its holders died).  Like
	// a TCP socket's last close: a reset if it was reset or left data unread, else a FIN after
	// its data, so the peer's fd reads POLLIN|POLLRDHUP.  For a reset the caller then calls
	// hang_up(1 - side).  Throws EBADF after close().
	SideEnd end_side(int side);
	// Closes the agent's copy of bell_[side]; with the reset fuse still in it, side's app fd
	// reads ECONNRESET and POLLERR|POLLHUP once no process holds the bell either.
	void hang_up(int side) { bell_[side].reset(); }

	// Ring d is produced by side d.  Throws EBADF after close().
	DirCounters counters(int ring) const;
	uint32_t cm_state(int side) const;
	void set_cm_state(int side, uint32_t code);

	// For a fabric where the agent itself is the other party of `app_side` (tcp, verbs): moves
	// out the descriptors side 1-app_side would have had, {its app fd, side app_side's bell},
	// and marks that side released.  Throws EBADF if it was released already.
	std::array<unique_fd, 2> take_agent_end(int app_side);
	// Undoes take_agent_end(app_side) with the descriptors it gave, so that ShmRelay can play
	// that side instead (a verbs connection that went to kernel TCP).
	void restore_agent_end(int app_side, std::array<unique_fd, 2> fds);
	// Moves out side's app fd, for the agent to play that side itself (ShmRelay), and marks
	// it released.  Throws EBADF if it was released already.
	unique_fd take_app(int side);
	// The whole region, mapped on first use: for a fabric that moves the bytes itself (verbs,
	// the relay of a late fallback).  Throws EBADF after close(), or the errno of mmap.
	vtoe_conn_region &mapping();
	// Ring `ring`'s small (area 0), large (area 1) or bulk (area 2) data area, in mapping().
	uint8_t *area_data(int ring, int area)
	{
		return reinterpret_cast<uint8_t *>(&mapping()) +
		       vtoe_area_offset(ring_size_, ring_large_, ring, area);
	}
	// The connection's id in the region header (a connection made ahead gets its own here).
	void set_cid(uint64_t cid) { region().cid = cid; }
	uint8_t *ring_data(int ring) { return area_data(ring, 0); }

	uint32_t ring_size() const { return ring_size_; }
	uint32_t ring_large() const { return ring_large_; }
	// An area's size; 0 for one the region does not have.
	uint64_t ring_capacity() const { return vtoe_ring_capacity(ring_size_, ring_large_); }
	uint64_t mapped_bytes() const { return vtoe_region_bytes(ring_size_, ring_large_); }
	// Memory the region uses: the header, and the pages of its areas that a ring has written
	// (the memfd's allocated blocks: the agent does not map the areas to count them).
	uint64_t resident_bytes() const;
	bool closed() const { return region_ == nullptr; }

	// Closes every descriptor and unmaps the region.  Idempotent.
	void close();

private:
	const vtoe_conn_region &region() const;
	vtoe_conn_region &region();

	uint32_t ring_size_;
	uint32_t ring_large_;
	// Only the header page: the agent reads and writes the header of every connection, the
	// data areas of a few.  Tens of MiB mapped and unmapped per connection cost it page-table
	// work (and, with its threads on every core, TLB shootdowns) that this page does not.
	vtoe_conn_region *region_ = nullptr;
	vtoe_conn_region *whole_ = nullptr; // mapping(), once asked for
	unique_fd memfd_;
	// app_[s] becomes side s's socket; bell_[s] is its other end, given to side 1-s.
	std::array<unique_fd, kSides> app_;
	std::array<unique_fd, kSides> bell_;
	// Identity of app_[s]'s socket (st_dev, st_ino), kept after app_[s] is handed out.
	std::array<std::pair<dev_t, ino_t>, kSides> app_id_{};
	std::array<bool, kSides> released_ = {false, false};
	bool keep_bells_ = false;
};

} // namespace vtoe

#endif
