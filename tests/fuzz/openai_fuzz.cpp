// libFuzzer target for OpenAI request bodies (untrusted HTTP input): any byte string
// given to parse_completion_request / parse_chat_request yields a request or a 4xx
// error with a message, never a crash or undefined behaviour (ASan + UBSan), and a
// request that parses satisfies what the engine relies on: token ids inside the
// vocabulary, n and best_of in range, finite sampling parameters in their ranges.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string_view>

#include "server/openai_parse.h"

using namespace kvserve;
using namespace kvserve::server;

namespace {

constexpr int32_t kVocab = 1000;
constexpr int kContext = 2048;

void check(const ParseResult& r, const ParseLimits& limits) {
  if (is_error(r)) {
    const ApiError& e = std::get<ApiError>(r);
    if (e.message.empty() || e.status < 400 || e.status > 499) std::abort();
    // The error body is JSON with an "error" object.
    const auto j = nlohmann::json::parse(error_body(e), nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("error")) std::abort();
    return;
  }
  ApiRequest req = std::get<ApiRequest>(r);
  for (const Prompt& p : req.prompts)
    if (!p.is_text())
      for (int32_t id : std::get<1>(p.value))
        if (id < 0 || id >= kVocab) std::abort();
  const SamplingParams& s = req.params;
  if (s.n < 1 || s.n > limits.max_n || s.effective_best_of() < s.n || s.effective_best_of() > limits.max_n)
    std::abort();
  for (float v :
       {s.temperature, s.top_p, s.min_p, s.repetition_penalty, s.presence_penalty, s.frequency_penalty})
    if (!std::isfinite(v)) std::abort();
  if (s.temperature < 0 || s.top_p <= 0 || s.top_p > 1 || s.min_p < 0 || s.min_p > 1) std::abort();
  for (const auto& [id, bias] : s.logit_bias)
    if (id < 0 || id >= kVocab || !std::isfinite(bias)) std::abort();
  for (int32_t id : s.stop_token_ids)
    if (id < 0 || id >= kVocab) std::abort();
  if (s.logprobs > limits.max_logprobs || s.prompt_logprobs > limits.max_logprobs) std::abort();
  for (int prompt_tokens : {0, 1, kContext - 1, kContext, kContext + 5}) {
    ApiRequest copy = req;
    if (auto err = resolve_max_tokens(copy, prompt_tokens, kContext)) {
      if (err->message.empty()) std::abort();
    } else if (copy.params.max_tokens < 1 || prompt_tokens + copy.params.max_tokens > kContext) {
      std::abort();  // an accepted request fits the context
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  ParseLimits limits;
  limits.model_names = {"m"};
  limits.n_vocab = kVocab;
  limits.max_model_len = kContext;
  check(parse_completion_request(body, limits), limits);
  check(parse_chat_request(body, limits), limits);
  return 0;
}
