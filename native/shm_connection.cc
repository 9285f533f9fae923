#include "shm_connection.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <new>
#include <string>

#include "fd_drain.h"
#include "sealed_memfd.h"
#include "system_error.h"

namespace vtoe {

namespace {

void check_side(int side)
{
	if (side != 0 && side != 1)
		throw_system_error(EINVAL, "side " + std::to_string(side) + " does not exist",
				   "use 0 (active) or 1 (passive)");
}

} // namespace

ShmConnection::ShmConnection(uint32_t ring_size, uint32_t ring_large, uint64_t cid)
	: ring_size_(ring_size), ring_large_(ring_large)
{
	if (!vtoe_ring_size_valid(ring_size))
		throw_system_error(EINVAL, "ring size " + std::to_string(ring_size) + " is invalid",
				   "use a power of two from " + std::to_string(VTOE_RING_MIN) +
					   " (4 KiB) to " + std::to_string(VTOE_RING_MAX) + " (64 MiB)");
	if (!vtoe_ring_large_valid(ring_large, ring_size))
		throw_system_error(EINVAL, "largest ring size " + std::to_string(ring_large) + " is invalid",
				   "use 0 (rings never grow) or a power of two above the ring size, up to " +
					   std::to_string(VTOE_RING_MAX) + " (64 MiB)");

	// The large areas are sparse: a ring that never grows costs no memory for them.
	const uint64_t bytes = vtoe_region_bytes(ring_size, ring_large);
	memfd_ = sealed_memfd("vtoe-conn", bytes, VTOE_REGION_SEALS, "the connection region");
	void *base = mmap(nullptr, VTOE_REGION_DATA_OFFSET, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_.get(), 0);
	if (base == MAP_FAILED)
		throw_errno("cannot map the connection region", "check the memory limits (ulimit -v)");

	// The pages are fresh zeros; start the object's lifetime there and set what is not zero.
	region_ = new (base) vtoe_conn_region;
	region_->magic = VTOE_REGION_MAGIC;
	region_->abi = VTOE_ABI_VERSION;
	region_->ring_size = ring_size;
	region_->ring_large = ring_large;
	region_->data_offset = VTOE_REGION_DATA_OFFSET;
	region_->cid = cid;
	for (auto &ring : region_->ring) {
		// Each consumer starts empty with no doorbell byte pending, so it wants the first one.
		ring.rx_armed.store(1, std::memory_order_release);
	}

	for (int side = 0; side < kSides; side++) {
		int pair[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
			int err = errno;
			close();
			throw_system_error(err, "cannot create a doorbell socketpair", "raise the fd limit");
		}
		app_[side].reset(pair[0]);
		bell_[side].reset(pair[1]);
		struct stat st;
		if (fstat(pair[0], &st) != 0) {
			int err = errno;
			close();
			throw_system_error(err, "cannot identify a doorbell socketpair");
		}
		app_id_[side] = {st.st_dev, st.st_ino};
		// The app fd carries only the reset fuse and the filler that makes it unwritable
		// while its ring is full (VTOE_BELL_SNDBUF, vtoe_abi.h).
		int sndbuf = VTOE_BELL_SNDBUF;
		if (setsockopt(app_[side].get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) != 0) {
			int err = errno;
			close();
			throw_system_error(err, "cannot set a doorbell send buffer");
		}
		if (send(app_[side].get(), "!", VTOE_BELL_FUSE, MSG_DONTWAIT | MSG_NOSIGNAL) !=
		    VTOE_BELL_FUSE) {
			int err = errno;
			close();
			throw_system_error(err, "cannot arm a doorbell's reset fuse");
		}
	}
}

ShmConnection::~ShmConnection()
{
	close();
}

uint64_t ShmConnection::resident_bytes() const
{
	if (!region_)
		return 0; // unmapped, its memfd closed
	// Every area's pages exist once touched: a small area too, which a stream of small
	// messages keeps to its first page or two (vtoe_abi.h, "Elastic rings").  A memfd counts
	// the pages it holds in st_blocks (512-byte units), the header's among them.
	struct stat st;
	if (fstat(memfd_.get(), &st) != 0)
		return mapped_bytes();
	const uint64_t bytes = static_cast<uint64_t>(st.st_blocks) * 512;
	return bytes < mapped_bytes() ? bytes : mapped_bytes();
}

vtoe_conn_region &ShmConnection::mapping()
{
	region();
	if (!whole_) {
		void *base = mmap(nullptr, mapped_bytes(), PROT_READ | PROT_WRITE, MAP_SHARED, memfd_.get(), 0);
		if (base == MAP_FAILED)
			throw_errno("cannot map the connection region", "check the memory limits (ulimit -v)");
		whole_ = static_cast<vtoe_conn_region *>(base);
	}
	return *whole_;
}

const vtoe_conn_region &ShmConnection::region() const
{
	if (!region_)
		throw_system_error(EBADF, "the shm connection is closed");
	return *region_;
}

vtoe_conn_region &ShmConnection::region()
{
	return const_cast<vtoe_conn_region &>(static_cast<const ShmConnection *>(this)->region());
}

void ShmConnection::set_fill(uint32_t ring_auto, const std::array<uint32_t, kSides> &sndbuf,
			     const std::array<uint32_t, kSides> &rcvbuf)
{
	if (ring_auto > ring_large_)
		throw_system_error(EINVAL, "ring fill " + std::to_string(ring_auto) + " is above the large area",
				   "use at most " + std::to_string(ring_large_));
	region_->ring_auto = ring_auto;
	// Side s produces into ring[s]; its reader is the other side.
	for (int side = 0; side < kSides; side++) {
		region_->ring[side].sndbuf.store(sndbuf[side], std::memory_order_relaxed);
		region_->ring[side].rcvbuf.store(rcvbuf[1 - side], std::memory_order_relaxed);
	}
}

std::array<int, VTOE_FD__COUNT> ShmConnection::fds_for(int side) const
{
	check_side(side);
	region();
	if (released_[side])
		throw_system_error(EBADF, "side " + std::to_string(side) + " was already released",
				   "descriptors are handed out once, before releaseSide()");
	std::array<int, VTOE_FD__COUNT> fds;
	fds[VTOE_FD_REGION] = memfd_.get();
	fds[VTOE_FD_APP] = app_[side].get();
	fds[VTOE_FD_PEER_BELL] = bell_[1 - side].get();
	return fds;
}

std::array<unique_fd, 2> ShmConnection::take_agent_end(int app_side)
{
	check_side(app_side);
	const int agent_side = 1 - app_side;
	region();
	if (released_[agent_side])
		throw_system_error(EBADF, "side " + std::to_string(agent_side) + " was already released");
	released_[agent_side] = true;
	return {std::move(app_[agent_side]), std::move(bell_[app_side])};
}

void ShmConnection::restore_agent_end(int app_side, std::array<unique_fd, 2> fds)
{
	check_side(app_side);
	const int agent_side = 1 - app_side;
	app_[agent_side] = std::move(fds[0]);
	bell_[app_side] = std::move(fds[1]);
	released_[agent_side] = false;
}

void ShmConnection::release_side(int side)
{
	check_side(side);
	if (released_[side])
		return;
	released_[side] = true;
	app_[side].reset();
	if (!keep_bells_)
		bell_[1 - side].reset();
}

int ShmConnection::side_of_socket(int fd) const
{
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
		return -1;
	for (int side = 0; side < kSides; side++)
		if (app_id_[side].first == st.st_dev && app_id_[side].second == st.st_ino)
			return side;
	return -1;
}

void ShmConnection::bell_op(int side, uint32_t op)
{
	check_side(side);
	const int bell = bell_[1 - side].get();
	if (bell < 0)
		throw_system_error(EBADF, "the agent holds no doorbell for side " + std::to_string(side));
	switch (op) {
	case VTOE_BELL_RING:
		// EAGAIN: bytes are queued already, so the fd is readable anyway.
		(void)send(bell, "w", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		break;
	case VTOE_BELL_DRAIN:
		discard_pending(bell);
		break;
	case VTOE_BELL_SHUT_WR:
	case VTOE_BELL_SHUT_RDWR:
		shutdown(bell, op == VTOE_BELL_SHUT_WR ? SHUT_WR : SHUT_RDWR);
		break;
	default:
		throw_system_error(EINVAL, "unknown doorbell operation " + std::to_string(op));
	}
}

int ShmConnection::region_fd() const
{
	region();
	if (!memfd_)
		throw_system_error(EBADF, "the connection's region descriptor is closed");
	return memfd_.get();
}

int ShmConnection::peer_bell_fd(int side) const
{
	check_side(side);
	if (!bell_[1 - side])
		throw_system_error(EBADF, "the agent holds no copy of side " + std::to_string(side) +
						  "'s peer doorbell");
	return bell_[1 - side].get();
}

unique_fd ShmConnection::take_app(int side)
{
	check_side(side);
	region();
	if (released_[side])
		throw_system_error(EBADF, "side " + std::to_string(side) + " was already released");
	released_[side] = true;
	return std::move(app_[side]);
}

SideEnd ShmConnection::end_side(int side)
{
	check_side(side);
	vtoe_conn_region &reg = region();
	vtoe_ring_ctl &tx = reg.ring[side];
	vtoe_ring_ctl &rx = reg.ring[1 - side];
	const bool unread = rx.head.load(std::memory_order_acquire) !=
			    rx.tail.load(std::memory_order_acquire);
	if (tx.fin.load(std::memory_order_acquire) && rx.fin.load(std::memory_order_acquire))
		return SideEnd::both_done;
	// Set by the side's own close, which has drained the bell already (vtoe_conn_close).
	const bool closed_itself = rx.rd_shut.load(std::memory_order_acquire) != 0;
	if (tx.reset.load(std::memory_order_acquire) || unread) {
		tx.reset.store(1, std::memory_order_release);
		rx.rd_shut.store(1, std::memory_order_release);
		return SideEnd::reset;
	}
	// A process that died wrote no FIN; one that closed did, and this changes nothing.
	if (!tx.fin.load(std::memory_order_acquire)) {
		tx.fin_at.store(tx.head.load(std::memory_order_acquire), std::memory_order_relaxed);
		tx.fin.store(1, std::memory_order_release);
	}
	const int peer_bell = bell_[1 - side].get();
	if (peer_bell >= 0 && !closed_itself) {
		// The fuse and any filler go, so the peer's fd does not read ECONNRESET.  Before
		// rd_shut: the peer's first write after it puts a fuse back for its own reset.
		discard_pending(peer_bell);
	}
	// From now on the peer's writes find EPIPE, after the first (vtoe_ring.c).
	rx.rd_shut.store(1, std::memory_order_release);
	// The shut write side makes the peer's fd read POLLIN|POLLRDHUP, as after a FIN; after the
	// peer's own FIN both directions are done and it reads POLLHUP too (vtoe_fin_shut_fds).
	if (peer_bell >= 0)
		shutdown(peer_bell, rx.fin.load(std::memory_order_acquire) ? SHUT_RDWR : SHUT_WR);
	return SideEnd::fin;
}

DirCounters ShmConnection::counters(int ring_index) const
{
	check_side(ring_index);
	const vtoe_ring_ctl &ring = region().ring[ring_index];
	DirCounters c;
	c.head = ring.head.load(std::memory_order_acquire);
	c.wakes = ring.wakes.load(std::memory_order_relaxed);
	c.grows = ring.grows.load(std::memory_order_relaxed);
	c.tail = ring.tail.load(std::memory_order_acquire);
	c.fin = ring.fin.load(std::memory_order_acquire) != 0;
	c.reset = ring.reset.load(std::memory_order_acquire) != 0;
	c.rd_shut = ring.rd_shut.load(std::memory_order_acquire) != 0;
	c.tx_waiting = ring.tx_waiting.load(std::memory_order_acquire) != 0;
	return c;
}

uint32_t ShmConnection::cm_state(int side) const
{
	check_side(side);
	return region().cm_state[side].load(std::memory_order_acquire);
}

void ShmConnection::set_cm_state(int side, uint32_t code)
{
	check_side(side);
	region().cm_state[side].store(code, std::memory_order_release);
}

void ShmConnection::close()
{
	for (int side = 0; side < kSides; side++) {
		app_[side].reset();
		bell_[side].reset();
		released_[side] = true;
	}
	memfd_.reset();
	if (whole_) {
		munmap(whole_, mapped_bytes());
		whole_ = nullptr;
	}
	if (region_) {
		munmap(region_, VTOE_REGION_DATA_OFFSET);
		region_ = nullptr;
	}
}

} // namespace vtoe
