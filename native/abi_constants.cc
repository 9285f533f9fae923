// abiConstants(): every constant of vtoe_abi.h under its C name, with values taken from the
// header itself, so a test can check that src/abi.ts mirrors the header exactly.
#include <napi.h>

#include "bindings.h"
#include "vtoe_abi.h"

// A new enumerator changes its __COUNT and fails here: add it to the table and to src/abi.ts.
static_assert(VTOE_EV__COUNT == 15, "vtoe_event changed: update abi_constants.cc and src/abi.ts");
static_assert(VTOE_FB__COUNT == 10, "vtoe_fallback_reason changed: update abi_constants.cc, src/abi.ts");
static_assert(VTOE_OP__COUNT == 13, "vtoe_ctl_op changed: update abi_constants.cc and src/abi.ts");
static_assert(VTOE_FD__COUNT == 3, "vtoe_rep_fd changed: update abi_constants.cc and src/abi.ts");
static_assert(VTOE_FABRIC_VERBS == 3, "vtoe_fabric changed: update abi_constants.cc and src/abi.ts");

namespace vtoe {

namespace {

struct NamedConstant {
	const char *name;
	double value;
};

#define VTOE_CONSTANT(name) {#name, static_cast<double>(name)}

const NamedConstant kConstants[] = {
	VTOE_CONSTANT(VTOE_ABI_VERSION),
	VTOE_CONSTANT(VTOE_CTL_MAGIC),
	VTOE_CONSTANT(VTOE_REGION_MAGIC),
	VTOE_CONSTANT(VTOE_CACHELINE),
	VTOE_CONSTANT(VTOE_RING_MIN),
	VTOE_CONSTANT(VTOE_RING_MAX),
	VTOE_CONSTANT(VTOE_REGION_DATA_OFFSET),
	VTOE_CONSTANT(VTOE_CLOSE_RESET),
	VTOE_CONSTANT(VTOE_CLOSE_ABORTED),
	VTOE_CONSTANT(VTOE_BELL_RING),
	VTOE_CONSTANT(VTOE_BELL_DRAIN),
	VTOE_CONSTANT(VTOE_BELL_SHUT_WR),
	VTOE_CONSTANT(VTOE_BELL_SHUT_RDWR),
	VTOE_CONSTANT(VTOE_BELL_REPLY),
	VTOE_CONSTANT(VTOE_ATTACH_BELL),

	VTOE_CONSTANT(VTOE_EV_ACK),
	VTOE_CONSTANT(VTOE_EV_ADDRESS_RESOLVED),
	VTOE_CONSTANT(VTOE_EV_ADDRESS_ERROR),
	VTOE_CONSTANT(VTOE_EV_ROUTE_RESOLVED),
	VTOE_CONSTANT(VTOE_EV_ROUTE_ERROR),
	VTOE_CONSTANT(VTOE_EV_CONNECT_REQUEST),
	VTOE_CONSTANT(VTOE_EV_CONNECT_RESPONSE),
	VTOE_CONSTANT(VTOE_EV_CONNECT_ERROR),
	VTOE_CONSTANT(VTOE_EV_UNREACHABLE),
	VTOE_CONSTANT(VTOE_EV_CONNECT_REJECTED),
	VTOE_CONSTANT(VTOE_EV_CONNECT_ESTABLISHED),
	VTOE_CONSTANT(VTOE_EV_DISCONNECTED),
	VTOE_CONSTANT(VTOE_EV_DEVICE_REMOVAL),
	VTOE_CONSTANT(VTOE_EV_FALLBACK),
	VTOE_CONSTANT(VTOE_EV_ERROR),
	VTOE_CONSTANT(VTOE_EV__COUNT),

	VTOE_CONSTANT(VTOE_FB_NONE),
	VTOE_CONSTANT(VTOE_FB_POLICY),
	VTOE_CONSTANT(VTOE_FB_PEER_NOT_OFFLOADED),
	VTOE_CONSTANT(VTOE_FB_NO_FABRIC),
	VTOE_CONSTANT(VTOE_FB_RESOURCES),
	VTOE_CONSTANT(VTOE_FB_RENDEZVOUS),
	VTOE_CONSTANT(VTOE_FB_ADDRESS_FAMILY),
	VTOE_CONSTANT(VTOE_FB_SHORT_LIVED),
	VTOE_CONSTANT(VTOE_FB_UNVERIFIED),
	VTOE_CONSTANT(VTOE_FB_PROCESS_LIMIT),
	VTOE_CONSTANT(VTOE_FB__COUNT),

	VTOE_CONSTANT(VTOE_FABRIC_NONE),
	VTOE_CONSTANT(VTOE_FABRIC_SHM),
	VTOE_CONSTANT(VTOE_FABRIC_TCP),
	VTOE_CONSTANT(VTOE_FABRIC_VERBS),

	VTOE_CONSTANT(VTOE_OP_HELLO),
	VTOE_CONSTANT(VTOE_OP_OPEN),
	VTOE_CONSTANT(VTOE_OP_LISTEN),
	VTOE_CONSTANT(VTOE_OP_CONNECT),
	VTOE_CONSTANT(VTOE_OP_ESTABLISH),
	VTOE_CONSTANT(VTOE_OP_ACCEPT),
	VTOE_CONSTANT(VTOE_OP_SHUTDOWN),
	VTOE_CONSTANT(VTOE_OP_CLOSE),
	VTOE_CONSTANT(VTOE_OP_FALLBACK),
	VTOE_CONSTANT(VTOE_OP_PEER_RESET),
	VTOE_CONSTANT(VTOE_OP_ATTACH),
	VTOE_CONSTANT(VTOE_OP_BELL),
	VTOE_CONSTANT(VTOE_OP__COUNT),

	VTOE_CONSTANT(VTOE_FD_REGION),
	VTOE_CONSTANT(VTOE_FD_APP),
	VTOE_CONSTANT(VTOE_FD_PEER_BELL),
	VTOE_CONSTANT(VTOE_FD__COUNT),

	// Layout facts the TypeScript side relies on.
	{"sizeof(struct vtoe_ctl_req)", sizeof(vtoe_ctl_req)},
	{"sizeof(struct vtoe_ctl_rep)", sizeof(vtoe_ctl_rep)},
};

#undef VTOE_CONSTANT

} // namespace

Napi::Value abi_constants(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	Napi::Object table = Napi::Object::New(env);
	for (const NamedConstant &c : kConstants)
		table.Set(c.name, Napi::Number::New(env, c.value));
	return table;
}

} // namespace vtoe
