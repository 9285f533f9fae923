// JsHandlers: the JavaScript callbacks of a native event source (an object of functions such as
// { onOpen, onMessage, onClose }), called from libuv callbacks on the loop thread through
// MakeCallback, so async hooks, process.nextTick and microtasks behave as for any Node callback.
// A handler that throws does not stop the source: the error is kept (lastError) and counted.
#ifndef VTOE_NATIVE_JS_HANDLERS_H
#define VTOE_NATIVE_JS_HANDLERS_H

#include <napi.h>

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>

namespace vtoe {

class JsHandlers {
public:
	// Throws TypeError unless `handlers` is an object with a function under every name.
	JsHandlers(const Napi::Value &handlers, std::initializer_list<const char *> names,
		   const char *resource, const Napi::Object &owner);

	// Calls handlers[name](...args); the caller holds a HandleScope.
	void call(const char *name, std::initializer_list<napi_value> args);

	uint64_t errors() const { return errors_; }
	Napi::Value last_error(Napi::Env env) const;

private:
	Napi::ObjectReference handlers_;
	std::map<std::string, Napi::FunctionReference> functions_;
	std::unique_ptr<Napi::AsyncContext> context_;
	Napi::Reference<Napi::Value> last_error_;
	uint64_t errors_ = 0;
};

} // namespace vtoe

#endif
