// libFuzzer target for chat templates, which come from model files and --chat-template:
// any byte string given to ChatTemplate::parse yields a template or an Error, and a
// template renders (with messages, tools and the generation prompt) to text or an Error,
// never a crash, hang or undefined behaviour (built with ASan + UBSan). Rendering runs
// under tight size and iteration limits (not the wall-clock one, which would make a run
// depend on the machine), so that a runaway template is an Error within them.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "jinja/chat_template.h"

using namespace kvserve;

namespace {

volatile size_t g_sink;

const nlohmann::ordered_json& messages() {
  static const auto m = nlohmann::ordered_json::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi <b>there</b> \u00fc"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function",
      "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "42"},
    {"role": "user", "content": [{"type": "text", "text": "and?"}]}
  ])");
  return m;
}

const nlohmann::ordered_json& extra() {
  static const auto e = nlohmann::ordered_json::parse(R"({"tools": [{"type": "function", "function":
    {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}}]})");
  return e;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto t = ChatTemplate::parse(std::string(reinterpret_cast<const char*>(data), size));
  if (!t) {
    if (t.error().message.empty()) std::abort();  // every error must say what is wrong
    return 0;
  }
  jinja::RenderLimits limits;
  limits.max_output_bytes = 1 << 18;
  limits.max_loop_iterations = 20000;
  limits.max_render_ms = 1000000;  // off: a wall-clock limit would make runs differ between machines
  t->set_limits(limits);
  for (const bool gen : {false, true}) {
    auto r = t->render_json(messages(), gen, "<s>", "</s>", extra());
    if (!r && r.error().message.empty()) std::abort();
    if (r) g_sink = g_sink + r->size();
  }
  auto plain = t->render({{"user", "hello"}}, true, "<s>", "</s>");
  if (plain) g_sink = g_sink + plain->size();
  return 0;
}
