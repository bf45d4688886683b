// Result / Error / Status are part of the public API; the definition lives in
// include/kvserve/result.h so public headers need nothing from src/.
#pragma once

#include "kvserve/result.h"
