// JavaScript class ShmRegionPool over vtoe::ShmRegionPool, and how ShmConnection finds one.
#include "js_shm_region_pool.h"

#include <memory>

#include "bindings.h"
#include "js_boundary.h"

namespace vtoe {

namespace {

// Marks the pool's JS objects, so that an argument is checked before it is unwrapped.
constexpr napi_type_tag kPoolTag = {0x7674'6f65'706f'6f6cULL, 0x7265'6769'6f6e'7321ULL};

class JsShmRegionPool : public Napi::ObjectWrap<JsShmRegionPool> {
public:
	static Napi::Function define(Napi::Env env)
	{
		return DefineClass(env, "ShmRegionPool",
				   {
					   InstanceMethod<&JsShmRegionPool::close>("close"),
					   InstanceAccessor<&JsShmRegionPool::ready>("ready"),
					   InstanceAccessor<&JsShmRegionPool::taken>("taken"),
					   InstanceAccessor<&JsShmRegionPool::failures>("failures"),
				   });
	}

	// new ShmRegionPool(ringSize: number, ringLarge: number, depth: number)
	explicit JsShmRegionPool(const Napi::CallbackInfo &info) : ObjectWrap(info)
	{
		Napi::Env env = info.Env();
		auto ring_size = static_cast<uint32_t>(js_integer(info[0], "ringSize", 0, UINT32_MAX));
		auto ring_large = static_cast<uint32_t>(js_integer(info[1], "ringLarge", 0, UINT32_MAX));
		auto depth = static_cast<size_t>(js_integer(info[2], "depth", 1, 64));
		pool_ = at_js_boundary(env, [&] {
			return std::make_unique<ShmRegionPool>(ring_size, ring_large, depth);
		});
		info.This().As<Napi::Object>().TypeTag(&kPoolTag);
		// The thread must not outlive the environment (a worker's exit, the process's); the
		// hook goes with the object if that is collected first.
		env_ = env;
		napi_add_env_cleanup_hook(env_, stop_at_exit, this);
	}

	~JsShmRegionPool() override
	{
		if (env_)
			napi_remove_env_cleanup_hook(env_, stop_at_exit, this);
	}

	ShmRegionPool *pool() { return pool_.get(); }

private:
	static void stop_at_exit(void *self) { static_cast<JsShmRegionPool *>(self)->pool_->stop(); }

	void close(const Napi::CallbackInfo &) { pool_->stop(); }

	Napi::Value ready(const Napi::CallbackInfo &info)
	{
		return Napi::Number::New(info.Env(), static_cast<double>(pool_->ready()));
	}

	Napi::Value taken(const Napi::CallbackInfo &info)
	{
		return Napi::Number::New(info.Env(), static_cast<double>(pool_->taken()));
	}

	Napi::Value failures(const Napi::CallbackInfo &info)
	{
		return Napi::Number::New(info.Env(), static_cast<double>(pool_->failures()));
	}

	napi_env env_ = nullptr;
	std::unique_ptr<ShmRegionPool> pool_;
};

} // namespace

ShmRegionPool *shm_region_pool_of(const Napi::Value &value)
{
	if (value.IsUndefined())
		return nullptr;
	if (!value.IsObject() || !value.As<Napi::Object>().CheckTypeTag(&kPoolTag))
		throw Napi::TypeError::New(value.Env(), "pool must be a ShmRegionPool");
	return JsShmRegionPool::Unwrap(value.As<Napi::Object>())->pool();
}

Napi::Function define_shm_region_pool(Napi::Env env)
{
	return JsShmRegionPool::define(env);
}

} // namespace vtoe
