// Where C++ meets JavaScript: SystemError becomes a JS Error with .code and .errno, and
// arguments from JS are read with checks that throw TypeError/RangeError naming the field.
#ifndef VTOE_NATIVE_JS_BOUNDARY_H
#define VTOE_NATIVE_JS_BOUNDARY_H

#include <napi.h>

#include <cerrno>
#include <cstdint>
#include <new>

#include "system_error.h"

namespace vtoe {

Napi::Error js_error(Napi::Env env, const SystemError &error);

// Runs `body`, turning C++ errors into JS ones (node-addon-api only converts Napi::Error).
template <typename Body>
auto at_js_boundary(Napi::Env env, Body &&body) -> decltype(body())
{
	try {
		return body();
	} catch (const SystemError &e) {
		throw js_error(env, e);
	} catch (const std::bad_alloc &) {
		throw js_error(env, SystemError(ENOMEM, "the agent is out of memory"));
	}
}

// An integer in [min, max] from `value`; `what` names it in the error.
double js_integer(const Napi::Value &value, const char *what, double min, double max);
uint32_t js_u32(const Napi::Value &value, const char *what);
// A BigInt that fits in 64 unsigned bits.
uint64_t js_u64_bigint(const Napi::Value &value, const char *what);

// The same for an optional property: `fallback` when absent or undefined.
uint32_t js_u32_property(const Napi::Object &object, const char *key, const char *what,
			 uint32_t fallback);

} // namespace vtoe

#endif
