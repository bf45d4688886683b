// OpenAI request parsing. Each field is read through a typed getter that reports the
// field's name on a type or range error, so a client sees exactly what it got wrong.
#include "server/openai_parse.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

namespace kvserve::server {

namespace {

using json = nlohmann::json;

// Thrown inside this file only, turned into an ApiError at the entry points.
struct BadRequest {
  ApiError err;
};

[[noreturn]] void bad(std::string param, std::string message) {
  throw BadRequest{ApiError{400, std::move(message), "invalid_request_error", std::move(param), ""}};
}

const char* type_name(const json& v) {
  return v.type_name();
}

// A present, non-null field, or nullptr.
const json* field(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<int64_t> get_int(const json& obj, const char* key, int64_t lo, int64_t hi) {
  const json* v = field(obj, key);
  if (!v) return std::nullopt;
  int64_t x = 0;
  if (v->is_number_integer()) {
    if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
      bad(key, fmt::format("'{}' is out of range.", key));
    x = v->get<int64_t>();
  } else if (v->is_number_float()) {
    double d = v->get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9.0e15)
      bad(key, fmt::format("'{}' must be an integer, got {}.", key, d));
    x = static_cast<int64_t>(d);
  } else {
    bad(key, fmt::format("'{}' must be an integer, got {}.", key, type_name(*v)));
  }
  if (x < lo || x > hi) bad(key, fmt::format("'{}' must be in [{}, {}], got {}.", key, lo, hi, x));
  return x;
}

std::optional<double> get_number(const json& obj, const char* key) {
  const json* v = field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) bad(key, fmt::format("'{}' must be a number, got {}.", key, type_name(*v)));
  return v->get<double>();
}

std::optional<bool> get_bool(const json& obj, const char* key) {
  const json* v = field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) bad(key, fmt::format("'{}' must be a boolean, got {}.", key, type_name(*v)));
  return v->get<bool>();
}

std::optional<std::string> get_string(const json& obj, const char* key) {
  const json* v = field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) bad(key, fmt::format("'{}' must be a string, got {}.", key, type_name(*v)));
  return v->get<std::string>();
}

json parse_body(std::string_view body) {
  json j;
  try {
    // nlohmann's lexer rejects ill-formed UTF-8 and unpaired surrogate escapes, so every
    // string below is valid UTF-8.
    j = json::parse(body.begin(), body.end());
  } catch (const json::parse_error& e) {
    bad("", fmt::format("Invalid JSON body: {}", e.what()));
  }
  if (!j.is_object()) bad("", "The request body must be a JSON object.");
  return j;
}

std::string resolve_model(const json& j, const ParseLimits& limits) {
  auto model = get_string(j, "model");
  if (!model) return limits.model_names.empty() ? std::string() : limits.model_names.front();
  if (std::find(limits.model_names.begin(), limits.model_names.end(), *model) == limits.model_names.end())
    throw BadRequest{ApiError{404, fmt::format("The model `{}` does not exist.", *model),
                              "invalid_request_error", "model", "model_not_found"}};
  return *model;
}

float to_float(double d) {
  return static_cast<float>(d);
}

// Fields shared by both endpoints: sampling, stop, seed, penalties, streaming.
void parse_common(const json& j, const ParseLimits& limits, ApiRequest& req) {
  SamplingParams& p = req.params;
  const int64_t ctx = std::max(1, limits.max_model_len);
  if (auto v = get_int(j, "n", 1, limits.max_n)) p.n = int(*v);
  if (auto v = get_int(j, "max_tokens", 1, ctx)) {
    p.max_tokens = int(*v);
    req.max_tokens_given = true;
  }
  if (auto v = get_number(j, "temperature")) {
    if (!(*v >= 0.0 && *v <= 2.0))
      bad("temperature", fmt::format("'temperature' must be in [0, 2], got {}.", *v));
    p.temperature = to_float(*v);
  }
  if (auto v = get_number(j, "top_p")) {
    if (!(*v > 0.0 && *v <= 1.0)) bad("top_p", fmt::format("'top_p' must be in (0, 1], got {}.", *v));
    p.top_p = to_float(*v);
  }
  if (auto v = get_int(j, "top_k", -1, std::numeric_limits<int32_t>::max())) {
    if (*v == 0) bad("top_k", "'top_k' must be -1 (disable) or at least 1, got 0.");
    p.top_k = int(*v);
  }
  if (auto v = get_number(j, "min_p")) {
    if (!(*v >= 0.0 && *v <= 1.0)) bad("min_p", fmt::format("'min_p' must be in [0, 1], got {}.", *v));
    p.min_p = to_float(*v);
  }
  for (const char* key : {"presence_penalty", "frequency_penalty"}) {
    if (auto v = get_number(j, key)) {
      if (!(*v >= -2.0 && *v <= 2.0)) bad(key, fmt::format("'{}' must be in [-2, 2], got {}.", key, *v));
      (std::string_view(key) == "presence_penalty" ? p.presence_penalty : p.frequency_penalty) = to_float(*v);
    }
  }
  if (auto v = get_number(j, "repetition_penalty")) {
    if (!(*v > 0.0 && std::isfinite(*v)))
      bad("repetition_penalty", fmt::format("'repetition_penalty' must be positive, got {}.", *v));
    p.repetition_penalty = to_float(*v);
  }
  if (auto v = get_int(j, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()))
    p.seed = static_cast<uint64_t>(*v);
  if (const json* stop = field(j, "stop")) {
    auto add = [&](const json& s) {
      if (!s.is_string())
        bad("stop", fmt::format("'stop' must be a string or a list of strings, got {}.", type_name(s)));
      std::string str = s.get<std::string>();
      if (str.empty()) bad("stop", "'stop' strings must not be empty.");
      p.stop.push_back(std::move(str));
    };
    if (stop->is_array()) {
      if (stop->size() > 16) bad("stop", fmt::format("'stop' has at most 16 strings, got {}.", stop->size()));
      for (const json& s : *stop) add(s);
    } else {
      add(*stop);
    }
  }
  if (const json* ids = field(j, "stop_token_ids")) {
    if (!ids->is_array()) bad("stop_token_ids", "'stop_token_ids' must be a list of token ids.");
    for (const json& id : *ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= limits.n_vocab)
        bad("stop_token_ids",
            fmt::format("'stop_token_ids' entries must be token ids in [0, {}).", limits.n_vocab));
      p.stop_token_ids.push_back(int32_t(id.get<int64_t>()));
    }
  }
  if (const json* bias = field(j, "logit_bias")) {
    if (!bias->is_object()) bad("logit_bias", "'logit_bias' must be an object mapping token ids to biases.");
    for (auto it = bias->begin(); it != bias->end(); ++it) {
      const std::string& key = it.key();
      int64_t id = -1;
      bool digits = !key.empty() && key.size() <= 10 &&
                    std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (digits) id = std::stoll(key);
      if (!digits || id >= limits.n_vocab)
        bad("logit_bias",
            fmt::format("'logit_bias' key '{}' is not a token id in [0, {}).", key, limits.n_vocab));
      if (!it.value().is_number())
        bad("logit_bias", fmt::format("'logit_bias' value for token {} must be a number.", key));
      double b = it.value().get<double>();
      if (!(b >= -100.0 && b <= 100.0))
        bad("logit_bias",
            fmt::format("'logit_bias' value for token {} must be in [-100, 100], got {}.", key, b));
      p.logit_bias.emplace_back(int32_t(id), to_float(b));
    }
  }
  if (auto v = get_int(j, "min_tokens", 0, ctx)) p.min_tokens = int(*v);
  if (auto v = get_bool(j, "ignore_eos")) p.ignore_eos = *v;
  // kvserve extension: false keeps this request from speculating (same output, own pace).
  if (auto v = get_bool(j, "speculative")) p.speculative = *v;
  if (auto v = get_bool(j, "skip_special_tokens")) p.skip_special_tokens = *v;
  if (auto v = get_bool(j, "include_stop_str_in_output")) p.include_stop_str_in_output = *v;
  if (auto v = get_bool(j, "stream")) req.stream = *v;
  if (const json* opts = field(j, "stream_options")) {
    if (!opts->is_object()) bad("stream_options", "'stream_options' must be an object.");
    if (!req.stream) bad("stream_options", "'stream_options' is only allowed when 'stream' is true.");
    if (auto v = get_bool(*opts, "include_usage")) req.include_usage = *v;
  }
  if (auto v = get_string(j, "user")) req.user = *v;
}

// Cross-field checks after everything is read; SamplingParams::validate is the last word.
void finish(const ParseLimits& limits, ApiRequest& req) {
  SamplingParams& p = req.params;
  if (p.min_tokens > p.max_tokens && req.max_tokens_given)
    bad("min_tokens",
        fmt::format("'min_tokens' ({}) must not exceed 'max_tokens' ({}).", p.min_tokens, p.max_tokens));
  if (req.stream && p.best_of > p.n)
    bad("best_of", "'best_of' greater than 'n' is not supported when streaming.");
  // validate() checks min_tokens against max_tokens, which may still be the default here;
  // the final check happens after resolve_max_tokens.
  SamplingParams check = p;
  check.max_tokens = std::max(check.max_tokens, std::max(1, check.min_tokens));
  Status st = check.validate(limits.n_vocab);
  if (!st) bad("", st.error().message);
}

std::vector<int32_t> token_list(const json& arr, const ParseLimits& limits) {
  std::vector<int32_t> ids;
  ids.reserve(arr.size());
  for (const json& t : arr) {
    if (!t.is_number_integer())
      bad("prompt",
          "'prompt' must be a string, a list of strings, a list of token ids or a list of lists of ids.");
    int64_t id = t.get<int64_t>();
    if (id < 0 || id >= limits.n_vocab)
      bad("prompt",
          fmt::format("Token id {} in 'prompt' is out of vocabulary (size {}).", id, limits.n_vocab));
    ids.push_back(int32_t(id));
  }
  if (ids.empty()) bad("prompt", "'prompt' token lists must not be empty.");
  return ids;
}

std::vector<Prompt> parse_prompts(const json& j, const ParseLimits& limits) {
  const json* prompt = field(j, "prompt");
  if (!prompt) bad("prompt", "'prompt' is required.");
  std::vector<Prompt> out;
  if (prompt->is_string()) {
    out.push_back({prompt->get<std::string>()});
  } else if (prompt->is_array()) {
    if (prompt->empty()) bad("prompt", "'prompt' must not be an empty list.");
    if ((*prompt)[0].is_number()) {
      out.push_back({token_list(*prompt, limits)});
    } else {
      for (const json& item : *prompt) {
        if (item.is_string())
          out.push_back({item.get<std::string>()});
        else if (item.is_array())
          out.push_back({token_list(item, limits)});
        else
          bad("prompt", "'prompt' list entries must all be strings or all be token id lists.");
      }
    }
  } else {
    bad("prompt", fmt::format("'prompt' must be a string or a list, got {}.", type_name(*prompt)));
  }
  if (out.size() > 64) bad("prompt", fmt::format("At most 64 prompts per request, got {}.", out.size()));
  return out;
}

std::string message_content(const json& msg, const std::string& role) {
  const json* content = field(msg, "content");
  if (!content) {
    if (role == "assistant") return "";
    bad("messages", fmt::format("A '{}' message needs 'content'.", role));
  }
  if (content->is_string()) return content->get<std::string>();
  if (!content->is_array()) bad("messages", "Message 'content' must be a string or a list of content parts.");
  std::string text;
  for (const json& part : *content) {
    if (!part.is_object()) bad("messages", "Content parts must be objects.");
    auto type = get_string(part, "type");
    if (!type || *type != "text")
      bad("messages",
          fmt::format("Unsupported content part type '{}'; only 'text' is supported.", type.value_or("")));
    auto t = get_string(part, "text");
    if (!t) bad("messages", "A 'text' content part needs 'text'.");
    text += *t;
  }
  return text;
}

ParseResult guarded(std::string_view body, const ParseLimits& limits,
                    void (*fill)(const json&, const ParseLimits&, ApiRequest&)) {
  try {
    json j = parse_body(body);
    ApiRequest req;
    req.model = resolve_model(j, limits);
    fill(j, limits, req);
    return req;
  } catch (const BadRequest& e) {
    return e.err;
  } catch (const json::exception& e) {
    return ApiError{400, fmt::format("Invalid request: {}", e.what()), "invalid_request_error", "", ""};
  }
}

void fill_completion(const json& j, const ParseLimits& limits, ApiRequest& req) {
  req.kind = ApiKind::Completion;
  req.prompts = parse_prompts(j, limits);
  parse_common(j, limits, req);
  if (field(j, "suffix")) bad("suffix", "'suffix' is not supported.");
  if (auto v = get_int(j, "best_of", 1, limits.max_n)) {
    if (*v < req.params.n)
      bad("best_of", fmt::format("'best_of' ({}) must be at least 'n' ({}).", *v, req.params.n));
    req.params.best_of = int(*v);
  }
  if (auto v = get_int(j, "logprobs", 0, limits.max_logprobs)) req.params.logprobs = int(*v);
  if (auto v = get_bool(j, "echo")) req.echo = *v;
  if (req.echo && req.params.wants_logprobs()) req.params.prompt_logprobs = req.params.logprobs;
  finish(limits, req);
}

void fill_chat(const json& j, const ParseLimits& limits, ApiRequest& req) {
  req.kind = ApiKind::Chat;
  const json* msgs = field(j, "messages");
  if (!msgs || !msgs->is_array()) bad("messages", "'messages' must be a list of messages.");
  if (msgs->empty()) bad("messages", "'messages' must not be empty.");
  for (const json& m : *msgs) {
    if (!m.is_object()) bad("messages", "Each message must be an object.");
    auto role = get_string(m, "role");
    if (!role) bad("messages", "Each message needs a 'role'.");
    if (*role == "developer") *role = "system";
    if (*role != "system" && *role != "user" && *role != "assistant")
      bad("messages", fmt::format("Unsupported message role '{}'.", *role));
    req.messages.push_back({*role, message_content(m, *role)});
  }
  // max_completion_tokens is the newer name; it wins when both are given.
  parse_common(j, limits, req);
  if (auto v = get_int(j, "max_completion_tokens", 1, std::max(1, limits.max_model_len))) {
    req.params.max_tokens = int(*v);
    req.max_tokens_given = true;
  }
  bool logprobs = get_bool(j, "logprobs").value_or(false);
  auto top = get_int(j, "top_logprobs", 0, limits.max_logprobs);
  if (top && !logprobs) bad("top_logprobs", "'top_logprobs' requires 'logprobs' to be true.");
  if (logprobs) {
    req.top_logprobs = int(top.value_or(0));
    req.params.logprobs = req.top_logprobs;
  }
  if (auto v = get_bool(j, "add_generation_prompt")) req.add_generation_prompt = *v;
  finish(limits, req);
}

}  // namespace

ParseResult parse_completion_request(std::string_view body, const ParseLimits& limits) {
  return guarded(body, limits, fill_completion);
}

ParseResult parse_chat_request(std::string_view body, const ParseLimits& limits) {
  return guarded(body, limits, fill_chat);
}

std::optional<ApiError> resolve_max_tokens(ApiRequest& req, int prompt_tokens, int max_model_len) {
  const int room = max_model_len - prompt_tokens;
  if (room < 1)
    return ApiError{
        400,
        fmt::format("This model's maximum context length is {} tokens, but the prompt has {} tokens.",
                    max_model_len, prompt_tokens),
        "invalid_request_error", "prompt", "context_length_exceeded"};
  SamplingParams& p = req.params;
  if (req.max_tokens_given) {
    if (p.max_tokens > room)
      return ApiError{
          400,
          fmt::format("This model's maximum context length is {} tokens. However, you requested {} "
                      "tokens ({} in the prompt, {} for the completion). Please reduce the prompt "
                      "or max_tokens.",
                      max_model_len, prompt_tokens + p.max_tokens, prompt_tokens, p.max_tokens),
          "invalid_request_error", "max_tokens", "context_length_exceeded"};
  } else {
    p.max_tokens = req.kind == ApiKind::Chat ? room : std::min(16, room);
  }
  if (p.min_tokens > p.max_tokens)
    return ApiError{
        400, fmt::format("'min_tokens' ({}) must not exceed 'max_tokens' ({}).", p.min_tokens, p.max_tokens),
        "invalid_request_error", "min_tokens", ""};
  return std::nullopt;
}

std::string error_body(const ApiError& err) {
  json e = {{"message", err.message},
            {"type", err.type},
            {"param", err.param.empty() ? json(nullptr) : json(err.param)},
            {"code", err.code.empty() ? json(nullptr) : json(err.code)}};
  return json{{"error", e}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace kvserve::server
