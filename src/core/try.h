// KVSERVE_TRY: the one way to unwrap a Result inside a function that returns one.
#pragma once

#include <utility>

#include "core/result.h"

// Assigns a Result's value to `target`, or returns its error from the enclosing function
// (which returns a Result or Status).
#define KVSERVE_TRY(target, expr)                   \
  do {                                              \
    auto kvserve_try_ = (expr);                     \
    if (!kvserve_try_) return kvserve_try_.error(); \
    target = std::move(*kvserve_try_);              \
  } while (0)
