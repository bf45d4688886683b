// KvDtype is part of EngineConfig, so it is defined in the public include/kvserve/kv_dtype.h.
#pragma once

#include "kvserve/kv_dtype.h"
