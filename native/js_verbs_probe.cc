// probeVerbs(): vtoe::probe_verbs as a plain JS object (see src/native.ts for its type).
#include <napi.h>

#include "bindings.h"
#include "js_boundary.h"
#include "verbs_probe.h"

namespace vtoe {

Napi::Value probe_verbs_js(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	VerbsProbe probe = at_js_boundary(env, [] { return probe_verbs(); });

	Napi::Object result = Napi::Object::New(env);
	Napi::Object library = Napi::Object::New(env);
	library.Set("loaded", Napi::Boolean::New(env, probe.library_loaded));
	if (!probe.library_loaded)
		library.Set("error", Napi::String::New(env, probe.library_error));
	result.Set("library", library);

	Napi::Array devices = Napi::Array::New(env, probe.devices.size());
	for (size_t i = 0; i < probe.devices.size(); ++i) {
		const VerbsDevice &d = probe.devices[i];
		Napi::Object dev = Napi::Object::New(env);
		dev.Set("name", d.name);
		dev.Set("guid", d.guid);
		if (!d.transport.empty())
			dev.Set("transport", d.transport);
		dev.Set("canOpen", Napi::Boolean::New(env, d.can_open));
		if (!d.can_open)
			dev.Set("openError", d.open_error);
		dev.Set("canAllocPd", Napi::Boolean::New(env, d.can_alloc_pd));
		if (d.can_open && !d.can_alloc_pd)
			dev.Set("allocPdError", d.alloc_pd_error);
		Napi::Array ports = Napi::Array::New(env, d.ports.size());
		for (size_t p = 0; p < d.ports.size(); ++p) {
			const VerbsPort &vp = d.ports[p];
			Napi::Object port = Napi::Object::New(env);
			port.Set("port", Napi::Number::New(env, vp.port));
			port.Set("state", vp.state);
			port.Set("linkLayer", vp.link_layer);
			port.Set("activeMtu", Napi::Number::New(env, vp.active_mtu));
			if (!vp.error.empty())
				port.Set("error", vp.error);
			Napi::Array gids = Napi::Array::New(env, vp.gids.size());
			for (size_t g = 0; g < vp.gids.size(); ++g) {
				Napi::Object gid = Napi::Object::New(env);
				gid.Set("index", Napi::Number::New(env, vp.gids[g].index));
				gid.Set("gid", vp.gids[g].gid);
				gids.Set(static_cast<uint32_t>(g), gid);
			}
			port.Set("gids", gids);
			ports.Set(static_cast<uint32_t>(p), port);
		}
		dev.Set("ports", ports);
		devices.Set(static_cast<uint32_t>(i), dev);
	}
	result.Set("devices", devices);
	return result;
}

} // namespace vtoe
