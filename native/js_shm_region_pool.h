// The ShmRegionPool behind a JS argument, for ShmConnection's constructor.
#ifndef VTOE_NATIVE_JS_SHM_REGION_POOL_H
#define VTOE_NATIVE_JS_SHM_REGION_POOL_H

#include <napi.h>

#include "shm_region_pool.h"

namespace vtoe {

// nullptr for undefined; throws TypeError for anything but a ShmRegionPool.
ShmRegionPool *shm_region_pool_of(const Napi::Value &value);

} // namespace vtoe

#endif
