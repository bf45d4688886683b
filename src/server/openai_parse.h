// Parsing and validation of OpenAI `POST /v1/completions` and `POST /v1/chat/completions`
// bodies into ApiRequest. Pure functions: every bad input becomes an ApiError (HTTP 400,
// or 404 for an unknown model) whose message names the field, never an exception.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "server/openai_types.h"

namespace kvserve::server {

struct ParseLimits {
  std::vector<std::string> model_names;  // accepted "model" values; absent "model" = first
  int32_t n_vocab = 0;
  int max_model_len = 0;  // context length in tokens
  int max_n = 16;         // n and best_of at most this
  int max_logprobs = 20;  // completions logprobs / chat top_logprobs at most this
};

using ParseResult = std::variant<ApiRequest, ApiError>;

ParseResult parse_completion_request(std::string_view body, const ParseLimits& limits);
ParseResult parse_chat_request(std::string_view body, const ParseLimits& limits);

// Sets params.max_tokens once the prompt length is known: an explicit max_tokens must fit
// the context with the prompt; chat without one gets the rest of the context,
// completions 16 (capped by the context). Also rejects prompts that fill the context.
std::optional<ApiError> resolve_max_tokens(ApiRequest& req, int prompt_tokens, int max_model_len);

// {"error": {"message", "type", "param", "code"}}.
std::string error_body(const ApiError& err);

inline bool is_error(const ParseResult& r) {
  return r.index() == 1;
}

}  // namespace kvserve::server
