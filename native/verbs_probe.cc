#include "verbs_probe.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <infiniband/verbs.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "system_error.h"

namespace vtoe {
namespace {

// The exported (default-versioned) symbols.  ibv_query_port in verbs.h is a macro over an inline
// that calls the context's query_port op, or else the exported compat ibv_query_port; we do the
// same by hand so nothing here needs the library at link time.
struct Verbs {
	void *handle = nullptr;
	ibv_device **(*get_device_list)(int *) = nullptr;
	void (*free_device_list)(ibv_device **) = nullptr;
	const char *(*get_device_name)(ibv_device *) = nullptr;
	__be64 (*get_device_guid)(ibv_device *) = nullptr;
	ibv_context *(*open_device)(ibv_device *) = nullptr;
	int (*close_device)(ibv_context *) = nullptr;
	int (*query_device)(ibv_context *, ibv_device_attr *) = nullptr;
	int (*query_port_compat)(ibv_context *, uint8_t, _compat_ibv_port_attr *) = nullptr;
	int (*query_gid)(ibv_context *, uint8_t, int, ibv_gid *) = nullptr;
	ibv_pd *(*alloc_pd)(ibv_context *) = nullptr;
	int (*dealloc_pd)(ibv_pd *) = nullptr;
};

template <typename Fn> bool resolve(void *handle, const char *name, Fn &fn, std::string &missing)
{
	fn = reinterpret_cast<Fn>(dlsym(handle, name));
	if (!fn) {
		if (!missing.empty())
			missing += ", ";
		missing += name;
	}
	return fn != nullptr;
}

int query_port(const Verbs &v, ibv_context *ctx, uint8_t port, ibv_port_attr *attr)
{
	std::memset(attr, 0, sizeof(*attr));
	verbs_context *vctx = verbs_get_ctx_op(ctx, query_port);
	if (vctx)
		return vctx->query_port(ctx, port, attr, sizeof(*attr));
	return v.query_port_compat(ctx, port, reinterpret_cast<_compat_ibv_port_attr *>(attr));
}

// verbs calls return an errno value or -1 with errno set, depending on the provider.
int verbs_err(int rc)
{
	if (rc > 0)
		return rc;
	return errno ? errno : EIO;
}

std::string port_state(int state)
{
	switch (state) {
	case IBV_PORT_NOP: return "NOP";
	case IBV_PORT_DOWN: return "DOWN";
	case IBV_PORT_INIT: return "INIT";
	case IBV_PORT_ARMED: return "ARMED";
	case IBV_PORT_ACTIVE: return "ACTIVE";
	case IBV_PORT_ACTIVE_DEFER: return "ACTIVE_DEFER";
	default: return "UNKNOWN(" + std::to_string(state) + ")";
	}
}

std::string link_layer(int layer)
{
	switch (layer) {
	case IBV_LINK_LAYER_UNSPECIFIED: return "Unspecified";
	case IBV_LINK_LAYER_INFINIBAND: return "InfiniBand";
	case IBV_LINK_LAYER_ETHERNET: return "Ethernet";
	default: return "UNKNOWN(" + std::to_string(layer) + ")";
	}
}

std::string transport(int t)
{
	switch (t) {
	case IBV_TRANSPORT_IB: return "InfiniBand";
	case IBV_TRANSPORT_IWARP: return "iWARP";
	case IBV_TRANSPORT_USNIC: return "usNIC";
	case IBV_TRANSPORT_USNIC_UDP: return "usNIC UDP";
	case IBV_TRANSPORT_UNSPECIFIED: return "Unspecified";
	default: return "";
	}
}

unsigned mtu_bytes(int mtu)
{
	switch (mtu) {
	case IBV_MTU_256: return 256;
	case IBV_MTU_512: return 512;
	case IBV_MTU_1024: return 1024;
	case IBV_MTU_2048: return 2048;
	case IBV_MTU_4096: return 4096;
	default: return 0;
	}
}

void probe_device(const Verbs &v, ibv_device *dev, VerbsDevice &out)
{
	const char *name = v.get_device_name(dev);
	out.name = name ? name : "";
	uint64_t guid = be64toh(v.get_device_guid(dev));
	char buf[17];
	std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(guid));
	out.guid = buf;
	out.transport = transport(dev->transport_type);

	errno = 0;
	ibv_context *ctx = v.open_device(dev);
	if (!ctx) {
		out.open_error = errno_name(errno ? errno : EIO);
		return;
	}
	out.can_open = true;

	errno = 0;
	ibv_pd *pd = v.alloc_pd(ctx);
	if (pd) {
		out.can_alloc_pd = true;
		v.dealloc_pd(pd);
	} else {
		out.alloc_pd_error = errno_name(errno ? errno : EIO);
	}

	ibv_device_attr dattr;
	std::memset(&dattr, 0, sizeof dattr);
	unsigned nports = 1;
	errno = 0;
	if (v.query_device(ctx, &dattr) == 0 && dattr.phys_port_cnt > 0)
		nports = dattr.phys_port_cnt;

	for (unsigned p = 1; p <= nports; ++p) {
		VerbsPort port;
		port.port = p;
		ibv_port_attr attr;
		errno = 0;
		int rc = query_port(v, ctx, static_cast<uint8_t>(p), &attr);
		if (rc != 0) {
			port.state = "UNKNOWN";
			port.link_layer = "UNKNOWN";
			port.active_mtu = 0;
			port.error = errno_name(verbs_err(rc));
			out.ports.push_back(port);
			continue;
		}
		port.state = port_state(attr.state);
		port.link_layer = link_layer(attr.link_layer);
		port.active_mtu = mtu_bytes(attr.active_mtu);
		for (int i = 0; i < attr.gid_tbl_len; ++i) {
			ibv_gid gid;
			if (v.query_gid(ctx, static_cast<uint8_t>(p), i, &gid) != 0)
				continue;
			bool zero = true;
			for (unsigned char b : gid.raw)
				zero = zero && b == 0;
			if (zero)
				continue;
			char text[INET6_ADDRSTRLEN];
			if (!inet_ntop(AF_INET6, gid.raw, text, sizeof text))
				continue;
			port.gids.push_back({i, text});
		}
		out.ports.push_back(port);
	}
	v.close_device(ctx);
}

} // namespace

VerbsProbe probe_verbs()
{
	VerbsProbe result;
	// Kept open for the life of the process: providers register themselves on load and
	// libibverbs does not support being unloaded and reloaded cleanly.
	static Verbs v;
	static std::string load_error;
	static bool tried = false;
	if (!tried) {
		tried = true;
		v.handle = dlopen("libibverbs.so.1", RTLD_NOW);
		if (!v.handle) {
			const char *e = dlerror();
			load_error = e ? e : "dlopen(libibverbs.so.1) failed";
		} else {
			std::string missing;
			resolve(v.handle, "ibv_get_device_list", v.get_device_list, missing);
			resolve(v.handle, "ibv_free_device_list", v.free_device_list, missing);
			resolve(v.handle, "ibv_get_device_name", v.get_device_name, missing);
			resolve(v.handle, "ibv_get_device_guid", v.get_device_guid, missing);
			resolve(v.handle, "ibv_open_device", v.open_device, missing);
			resolve(v.handle, "ibv_close_device", v.close_device, missing);
			resolve(v.handle, "ibv_query_device", v.query_device, missing);
			resolve(v.handle, "ibv_query_port", v.query_port_compat, missing);
			resolve(v.handle, "ibv_query_gid", v.query_gid, missing);
			resolve(v.handle, "ibv_alloc_pd", v.alloc_pd, missing);
			resolve(v.handle, "ibv_dealloc_pd", v.dealloc_pd, missing);
			if (!missing.empty()) {
				load_error = "libibverbs.so.1 lacks " + missing;
				v.handle = nullptr; // not dlclose()d: see above
			}
		}
	}
	if (!v.handle) {
		result.library_error = load_error;
		return result;
	}
	result.library_loaded = true;

	int n = 0;
	errno = 0;
	ibv_device **list = v.get_device_list(&n);
	if (!list) {
		int err = errno ? errno : EIO;
		// No kernel RDMA support (no /sys/class/infiniband) reads as "no devices".
		if (err == ENOSYS || err == ENOENT)
			return result;
		throw_system_error(err, "ibv_get_device_list",
				   "check that rdma-core's providers (ibverbs-providers) are installed");
	}
	try {
		for (int i = 0; i < n && list[i]; ++i) {
			VerbsDevice dev;
			probe_device(v, list[i], dev);
			result.devices.push_back(std::move(dev));
		}
	} catch (...) {
		v.free_device_list(list);
		throw;
	}
	v.free_device_list(list);
	return result;
}

} // namespace vtoe
