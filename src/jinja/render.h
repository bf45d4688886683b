// Evaluator of the chat-template interpreter: walks a parsed Template against a context
// object and produces the rendered text. Every failure (raise_exception, type errors,
// runaway loops or recursion, oversized output) is returned as an Error value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/result.h"
#include "jinja/ast.h"
#include "jinja/taint.h"
#include "jinja/value.h"

namespace kvserve::jinja {

// Guards against hostile or buggy templates (a template is user-supplied via --chat-template).
struct RenderLimits {
  size_t max_output_bytes = 16u << 20;      // also bounds every string a render builds
  int64_t max_list_length = 100'000;        // elements of a list built by + or *
  int64_t max_loop_iterations = 1'000'000;  // summed over all loops of one render
  int max_call_depth = 64;                  // nested macro calls
  int64_t max_render_ms = 5000;             // wall-clock budget, checked in loops and calls
};

// Renders `tmpl` with `context` variables on top of the built-in globals.
Result<std::string> render(const Template& tmpl, const Object& context, const RenderLimits& limits = {});
// Same, with the output's bytes that came from request data (taint.h).
Result<RenderedText> render_text(const Template& tmpl, const Object& context,
                                 const RenderLimits& limits = {});

}  // namespace kvserve::jinja
