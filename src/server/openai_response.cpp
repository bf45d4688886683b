// OpenAI response schema. Field order and presence follow OpenAI's published objects
// (and vLLM's output where OpenAI is silent), so official clients parse them unchanged.
#include "server/openai_response.h"

#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <random>

namespace kvserve::server {

namespace {

using json = nlohmann::ordered_json;

// Pieces may carry partial UTF-8; display strings never do, but dump defensively.
std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string sse(const json& j) {
  return "data: " + dump(j) + "\n\n";
}

int64_t count_chars(std::string_view s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

json byte_list(std::string_view piece) {
  json b = json::array();
  for (unsigned char c : piece) b.push_back(int(c));
  return b;
}

json usage_json(const Usage& u) {
  return json{{"prompt_tokens", u.prompt_tokens},
              {"completion_tokens", u.completion_tokens},
              {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

// Completions format: parallel arrays; the first echoed prompt token has nulls.
json completion_logprobs(const std::vector<TokenLogprob>& lps, int64_t* offset) {
  json tokens = json::array(), token_lps = json::array(), tops = json::array(), offsets = json::array();
  for (const TokenLogprob& t : lps) {
    std::string disp = token_display(t.piece);
    tokens.push_back(disp);
    offsets.push_back(*offset);
    *offset += count_chars(disp);
    if (!t.has_logprob) {
      token_lps.push_back(nullptr);
      tops.push_back(nullptr);
      continue;
    }
    token_lps.push_back(t.logprob);
    json top = json::object();
    for (const auto& [piece, lp] : t.top) top[token_display(piece)] = lp;
    tops.push_back(std::move(top));
  }
  return json{
      {"tokens", tokens}, {"token_logprobs", token_lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

// Chat format: one object per token with bytes and alternatives.
json chat_logprobs(const std::vector<TokenLogprob>& lps) {
  json content = json::array();
  for (const TokenLogprob& t : lps) {
    json top = json::array();
    for (const auto& [piece, lp] : t.top)
      top.push_back(json{{"token", token_display(piece)}, {"logprob", lp}, {"bytes", byte_list(piece)}});
    content.push_back(json{{"token", token_display(t.piece)},
                           {"logprob", t.logprob},
                           {"bytes", byte_list(t.piece)},
                           {"top_logprobs", std::move(top)}});
  }
  return json{{"content", std::move(content)}, {"refusal", nullptr}};
}

json reason(std::string_view r) {
  return r.empty() ? json(nullptr) : json(std::string(r));
}

}  // namespace

std::string make_response_id(ApiKind kind) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}-{:016x}{:08x}", kind == ApiKind::Chat ? "chatcmpl" : "cmpl", rng(), uint32_t(rng()));
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    uint32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (int k = 1; k < len; ++k) {
      unsigned char d = s[i + k];
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

std::string token_display(std::string_view piece) {
  if (is_valid_utf8(piece)) return std::string(piece);
  std::string out = "bytes:";
  for (unsigned char c : piece) out += fmt::format("\\x{:02x}", c);
  return out;
}

std::string completion_body(const ResponseMeta& meta, const std::vector<ChoiceResult>& choices,
                            const Usage& usage) {
  json cs = json::array();
  for (const ChoiceResult& c : choices) {
    int64_t offset = 0;
    cs.push_back(json{{"index", c.index},
                      {"text", c.text},
                      {"logprobs", c.has_logprobs ? completion_logprobs(c.logprobs, &offset) : json(nullptr)},
                      {"finish_reason", reason(c.finish_reason)}});
  }
  return dump(json{{"id", meta.id},
                   {"object", "text_completion"},
                   {"created", meta.created},
                   {"model", meta.model},
                   {"choices", std::move(cs)},
                   {"usage", usage_json(usage)}});
}

std::string chat_body(const ResponseMeta& meta, const std::vector<ChoiceResult>& choices,
                      const Usage& usage) {
  json cs = json::array();
  for (const ChoiceResult& c : choices) {
    cs.push_back(json{{"index", c.index},
                      {"message", json{{"role", "assistant"}, {"content", c.text}}},
                      {"logprobs", c.has_logprobs ? chat_logprobs(c.logprobs) : json(nullptr)},
                      {"finish_reason", reason(c.finish_reason)}});
  }
  return dump(json{{"id", meta.id},
                   {"object", "chat.completion"},
                   {"created", meta.created},
                   {"model", meta.model},
                   {"choices", std::move(cs)},
                   {"usage", usage_json(usage)}});
}

std::string completion_chunk(const ResponseMeta& meta, int index, std::string_view text,
                             const std::vector<TokenLogprob>* logprobs, int64_t* text_offset,
                             std::string_view finish_reason, bool usage_null) {
  json choice{{"index", index},
              {"text", std::string(text)},
              {"logprobs", logprobs ? completion_logprobs(*logprobs, text_offset) : json(nullptr)},
              {"finish_reason", reason(finish_reason)}};
  json j{{"id", meta.id},
         {"object", "text_completion"},
         {"created", meta.created},
         {"model", meta.model},
         {"choices", json::array({std::move(choice)})}};
  if (usage_null) j["usage"] = nullptr;
  return sse(j);
}

std::string chat_chunk(const ResponseMeta& meta, int index, bool role_only, std::string_view text,
                       const std::vector<TokenLogprob>* logprobs, std::string_view finish_reason,
                       bool usage_null) {
  json delta = json::object();
  if (role_only) {
    delta["role"] = "assistant";
    delta["content"] = "";
  } else if (!text.empty() || finish_reason.empty()) {
    delta["content"] = std::string(text);
  }
  json choice{{"index", index},
              {"delta", std::move(delta)},
              {"logprobs", logprobs ? chat_logprobs(*logprobs) : json(nullptr)},
              {"finish_reason", reason(finish_reason)}};
  json j{{"id", meta.id},
         {"object", "chat.completion.chunk"},
         {"created", meta.created},
         {"model", meta.model},
         {"choices", json::array({std::move(choice)})}};
  if (usage_null) j["usage"] = nullptr;
  return sse(j);
}

std::string usage_chunk(const ResponseMeta& meta, ApiKind kind, const Usage& usage) {
  return sse(json{{"id", meta.id},
                  {"object", kind == ApiKind::Chat ? "chat.completion.chunk" : "text_completion"},
                  {"created", meta.created},
                  {"model", meta.model},
                  {"choices", json::array()},
                  {"usage", usage_json(usage)}});
}

std::string models_body(const std::vector<std::string>& names, int64_t created, int max_model_len,
                        const nlohmann::json& config) {
  json data = json::array();
  for (const std::string& n : names)
    data.push_back(json{{"id", n},
                        {"object", "model"},
                        {"created", created},
                        {"owned_by", "kvserve"},
                        {"root", n},
                        {"parent", nullptr},
                        {"max_model_len", max_model_len}});
  if (!config.is_null())
    for (json& m : data) m["kvserve_config"] = config;
  return dump(json{{"object", "list"}, {"data", std::move(data)}});
}

}  // namespace kvserve::server
