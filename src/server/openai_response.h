// OpenAI response bodies: text_completion / chat.completion objects, their streaming
// chunks (`data: {...}\n\n` Server-Sent Events), /v1/models. Pure functions of plain data
// (openai_types.h) so the schema is unit-tested without a server.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "server/openai_types.h"

namespace kvserve::server {

struct ResponseMeta {
  std::string id;       // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;
};

// A fresh id with the API's prefix and 24 random hex digits.
std::string make_response_id(ApiKind kind);
int64_t unix_now();

bool is_valid_utf8(std::string_view s);
// The token's display text: its bytes when they are valid UTF-8, else OpenAI's
// "bytes:\xNN..." spelling.
std::string token_display(std::string_view piece);

// Non-streaming bodies. Choices are written in the order given.
std::string completion_body(const ResponseMeta& meta, const std::vector<ChoiceResult>& choices,
                            const Usage& usage);
std::string chat_body(const ResponseMeta& meta, const std::vector<ChoiceResult>& choices, const Usage& usage);

// Streaming. Each returns one complete SSE event ("data: ...\n\n").
// `text_offset` (completions only) is the running character offset of this choice,
// advanced by the tokens written. `finish_reason` empty = null. `usage_null` adds
// "usage": null, as OpenAI does on every chunk when include_usage is on.
std::string completion_chunk(const ResponseMeta& meta, int index, std::string_view text,
                             const std::vector<TokenLogprob>* logprobs, int64_t* text_offset,
                             std::string_view finish_reason, bool usage_null);
// `role_only`: the first chunk, {"role": "assistant", "content": ""}.
std::string chat_chunk(const ResponseMeta& meta, int index, bool role_only, std::string_view text,
                       const std::vector<TokenLogprob>* logprobs, std::string_view finish_reason,
                       bool usage_null);
// The last chunk before [DONE] when include_usage: empty choices plus usage.
std::string usage_chunk(const ResponseMeta& meta, ApiKind kind, const Usage& usage);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

std::string models_body(const std::vector<std::string>& names, int64_t created, int max_model_len,
                        const nlohmann::json& config = nullptr);

}  // namespace kvserve::server
