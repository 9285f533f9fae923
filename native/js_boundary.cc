#include "js_boundary.h"

#include <cmath>
#include <string>

namespace vtoe {

Napi::Error js_error(Napi::Env env, const SystemError &error)
{
	Napi::Error js = Napi::Error::New(env, error.what());
	js.Set("code", Napi::String::New(env, error.code()));
	js.Set("errno", Napi::Number::New(env, error.err()));
	return js;
}

double js_integer(const Napi::Value &value, const char *what, double min, double max)
{
	if (!value.IsNumber())
		throw Napi::TypeError::New(value.Env(), std::string(what) + " must be a number");
	double number = value.As<Napi::Number>().DoubleValue();
	if (!std::isfinite(number) || std::trunc(number) != number || number < min || number > max)
		throw Napi::RangeError::New(value.Env(), std::string(what) + " must be an integer from " +
								 std::to_string(static_cast<int64_t>(min)) +
								 " to " +
								 std::to_string(static_cast<int64_t>(max)));
	return number;
}

uint32_t js_u32(const Napi::Value &value, const char *what)
{
	return static_cast<uint32_t>(js_integer(value, what, 0, UINT32_MAX));
}

uint64_t js_u64_bigint(const Napi::Value &value, const char *what)
{
	if (!value.IsBigInt())
		throw Napi::TypeError::New(value.Env(), std::string(what) + " must be a bigint");
	bool lossless = false;
	uint64_t number = value.As<Napi::BigInt>().Uint64Value(&lossless);
	if (!lossless)
		throw Napi::RangeError::New(value.Env(),
					    std::string(what) + " must fit in 64 unsigned bits");
	return number;
}

uint32_t js_u32_property(const Napi::Object &object, const char *key, const char *what,
			 uint32_t fallback)
{
	Napi::Value value = object.Get(key);
	if (value.IsUndefined())
		return fallback;
	return js_u32(value, what);
}

} // namespace vtoe
