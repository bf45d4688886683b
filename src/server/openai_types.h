// The server's internal view of OpenAI API requests and results: what the protocol
// parser (openai_parse.h) produces and the response builders (openai_response.h) consume.
// Plain data, no JSON and no engine types, so both sides stay pure and unit-testable.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "kvserve/sampling_params.h"

namespace kvserve::server {

// An OpenAI-style error: {"error": {"message", "type", "param", "code"}} with `status`.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // empty = null
  std::string code;   // empty = null
};

// One prompt of /v1/completions: text to tokenize, or token ids given directly.
struct Prompt {
  std::variant<std::string, std::vector<int32_t>> value;
  bool is_text() const { return value.index() == 0; }
  const std::string& text() const { return std::get<0>(value); }
  const std::vector<int32_t>& ids() const { return std::get<1>(value); }
};

struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant"
  std::string content;
};

enum class ApiKind { Completion, Chat };

// A parsed and validated request. Sampling fields live in `params`; fields that depend
// on the prompt length (default max_tokens for chat, the context check) are settled by
// the server after tokenization, see resolve_max_tokens().
struct ApiRequest {
  ApiKind kind = ApiKind::Completion;
  std::string model;
  std::vector<Prompt> prompts;        // completions: one or more prompts
  std::vector<ChatMessage> messages;  // chat
  SamplingParams params;
  bool max_tokens_given = false;  // false: completions default 16, chat fills the context
  bool echo = false;              // completions: prepend the prompt to the text
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  int top_logprobs = 0;        // chat: alternatives per position (params.logprobs >= 0 when on)
  bool add_generation_prompt = true;
  std::string user;
};

// One generated (or echoed prompt) token with its log-probability and alternatives.
struct TokenLogprob {
  std::string piece;  // the token's bytes (may be a partial UTF-8 sequence)
  float logprob = 0.0f;
  bool has_logprob = true;                         // false for the first prompt token under echo (no context)
  std::vector<std::pair<std::string, float>> top;  // (piece, logprob), most likely first
};

// The final state of one choice (non-streaming responses).
struct ChoiceResult {
  int index = 0;
  std::string text;
  std::string finish_reason;  // "stop" | "length" | "abort"
  bool has_logprobs = false;
  std::vector<TokenLogprob> logprobs;  // per output token (completions echo: prompt first)
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

}  // namespace kvserve::server
