// vtoe_verbs, built without rdma-core's headers: loading it says what to install.
#include <napi.h>

namespace {

Napi::Object init(Napi::Env env, Napi::Object exports)
{
	Napi::Error e = Napi::Error::New(env, "vtoe was built without rdma-core's headers, so it has "
					      "no verbs fabric: apt-get install libibverbs-dev "
					      "librdmacm-dev, then npm rebuild");
	e.Set("code", Napi::String::New(env, "ENOSYS"));
	throw e;
}

} // namespace

NODE_API_MODULE(vtoe_verbs, init)
