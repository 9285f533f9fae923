// vtoe::probe_verbs: what `vtoe doctor` reports about the host's RDMA devices.  libibverbs is
// not linked: it is dlopen()ed at call time, so the addon loads on machines without rdma-core.
// Synchronous and quick, but it opens each device and may block briefly in the kernel: only the
// CLI calls it, never the agent's event loop.
#ifndef VTOE_NATIVE_VERBS_PROBE_H
#define VTOE_NATIVE_VERBS_PROBE_H

#include <cstdint>
#include <string>
#include <vector>

namespace vtoe {

struct VerbsGid {
	int index;
	std::string gid; // inet_ntop(AF_INET6) text
};

struct VerbsPort {
	unsigned port;
	std::string state;	// "ACTIVE", "DOWN", "INIT", "ARMED", "ACTIVE_DEFER", "NOP", "UNKNOWN(n)"
	std::string link_layer; // "InfiniBand", "Ethernet", "Unspecified", "UNKNOWN(n)"
	unsigned active_mtu;	// bytes, 0 if unknown
	std::vector<VerbsGid> gids; // non-zero entries only
	std::string error;	// errno name if the port could not be queried
};

struct VerbsDevice {
	std::string name;
	std::string guid;      // 16 hex digits
	std::string transport; // "InfiniBand", "iWARP", "usNIC", ... ("" if unknown)
	bool can_open = false;
	std::string open_error; // errno name when !can_open
	bool can_alloc_pd = false;
	std::string alloc_pd_error;
	std::vector<VerbsPort> ports;
};

struct VerbsProbe {
	bool library_loaded = false;
	std::string library_error; // dlerror() or what was missing
	std::vector<VerbsDevice> devices;
};

// Never throws for a missing library or device (those are results); throws SystemError only if
// ibv_get_device_list itself fails for a reason other than "no devices".
VerbsProbe probe_verbs();

} // namespace vtoe

#endif
