#include "js_handlers.h"

namespace vtoe {

JsHandlers::JsHandlers(const Napi::Value &handlers, std::initializer_list<const char *> names,
		       const char *resource, const Napi::Object &owner)
{
	Napi::Env env = handlers.Env();
	if (!handlers.IsObject())
		throw Napi::TypeError::New(env, "handlers must be an object");
	Napi::Object object = handlers.As<Napi::Object>();
	for (const char *name : names) {
		Napi::Value fn = object.Get(name);
		if (!fn.IsFunction())
			throw Napi::TypeError::New(env, std::string("handlers.") + name + " must be a function");
		functions_[name] = Napi::Persistent(fn.As<Napi::Function>());
	}
	handlers_ = Napi::Persistent(object);
	context_ = std::make_unique<Napi::AsyncContext>(env, resource, owner);
}

void JsHandlers::call(const char *name, std::initializer_list<napi_value> args)
{
	try {
		functions_.at(name).MakeCallback(handlers_.Value(), args, *context_);
	} catch (const Napi::Error &e) {
		errors_++;
		last_error_ = Napi::Persistent(e.Value().As<Napi::Value>());
	}
}

Napi::Value JsHandlers::last_error(Napi::Env env) const
{
	if (last_error_.IsEmpty())
		return env.Undefined();
	return last_error_.Value();
}

} // namespace vtoe
