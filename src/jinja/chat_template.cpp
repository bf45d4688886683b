#include "jinja/chat_template.h"

#include <cassert>
#include <fstream>
#include <sstream>

#include "jinja/parser.h"

namespace kvserve {

const char* ChatTemplate::chatml_source() {
  return "{%- for message in messages %}"
         "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
         "{%- endfor %}"
         "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";
}

// Google's template for Gemma 3 (google/gemma-3-*-it on Hugging Face). Gemma
// base GGUFs (e.g. Gemma-3-270M) carry no template, yet their vocabulary has these turn
// markers and none of ChatML's, so ChatML would be spelled out as plain text.
const char* ChatTemplate::gemma_source() {
  return R"jinja({{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
)jinja";
}

Result<ChatTemplate> ChatTemplate::parse(std::string source, Origin origin) {
  auto tmpl = jinja::parse_template(source);
  if (!tmpl) return tmpl.error();
  ChatTemplate t;
  t.source_ = std::move(source);
  t.origin_ = origin;
  t.tmpl_ = std::move(*tmpl);
  return t;
}

ChatTemplate ChatTemplate::chatml() {
  auto t = parse(chatml_source(), Origin::BuiltinChatML);
  assert(t && "the built-in ChatML template must parse");
  return std::move(*t);
}

Result<ChatTemplate> ChatTemplate::resolve(const std::string& override_path,
                                           const std::optional<std::string>& model_template,
                                           std::string_view architecture) {
  if (!override_path.empty()) {
    std::ifstream in(override_path, std::ios::binary);
    if (!in) return Error{"cannot open chat template file '" + override_path + "'"};
    std::stringstream ss;
    ss << in.rdbuf();
    auto t = parse(ss.str(), Origin::File);
    if (!t) return Error{"chat template '" + override_path + "': " + t.error().message};
    return t;
  }
  if (model_template && !model_template->empty()) {
    auto t = parse(*model_template, Origin::Model);
    if (!t) return Error{"model chat template (tokenizer.chat_template): " + t.error().message};
    return t;
  }
  if (architecture.starts_with("gemma")) {
    auto t = parse(gemma_source(), Origin::BuiltinGemma);
    assert(t && "the built-in Gemma template must parse");
    return t;
  }
  return chatml();
}

const char* ChatTemplate::origin_name() const {
  switch (origin_) {
    case Origin::BuiltinChatML: return "built-in ChatML";
    case Origin::BuiltinGemma: return "built-in Gemma";
    case Origin::Model: return "model (tokenizer.chat_template)";
    case Origin::File: return "file (--chat-template)";
  }
  return "?";
}

jinja::Value json_to_value(const nlohmann::ordered_json& j) {
  using jinja::Value;
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return Value::none();
    case nlohmann::ordered_json::value_t::boolean: return Value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      return u <= static_cast<uint64_t>(INT64_MAX) ? Value(static_cast<int64_t>(u))
                                                   : Value(static_cast<double>(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return Value(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      jinja::Array a;
      for (const auto& x : j) a.push_back(json_to_value(x));
      return Value(std::move(a));
    }
    case nlohmann::ordered_json::value_t::object: {
      // ordered_json keeps the request's key order, as Python's json.loads does.
      jinja::Object o;
      for (const auto& [k, v] : j.items()) o.set(k, json_to_value(v));
      return Value(std::move(o));
    }
    default: return Value();
  }
}

Result<std::string> ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                         const std::string& bos_token, const std::string& eos_token,
                                         const nlohmann::ordered_json& extra) const {
  auto r = render_prompt(messages, add_generation_prompt, bos_token, eos_token, extra);
  if (!r) return r.error();
  return std::move(r->text);
}

Result<jinja::RenderedText> ChatTemplate::render_prompt(const std::vector<ChatMessage>& messages,
                                                        bool add_generation_prompt,
                                                        const std::string& bos_token,
                                                        const std::string& eos_token,
                                                        const nlohmann::ordered_json& extra) const {
  jinja::Array msgs;
  for (const ChatMessage& m : messages) {
    jinja::Object o;
    o.set("role", jinja::Value(m.role));
    o.set("content", jinja::Value(m.content));
    msgs.push_back(jinja::Value(std::move(o)));
  }
  return render_value(jinja::Value(std::move(msgs)), add_generation_prompt, bos_token, eos_token, extra);
}

Result<std::string> ChatTemplate::render_json(const nlohmann::ordered_json& messages,
                                              bool add_generation_prompt, const std::string& bos_token,
                                              const std::string& eos_token,
                                              const nlohmann::ordered_json& extra) const {
  auto r = render_json_prompt(messages, add_generation_prompt, bos_token, eos_token, extra);
  if (!r) return r.error();
  return std::move(r->text);
}

Result<jinja::RenderedText> ChatTemplate::render_json_prompt(const nlohmann::ordered_json& messages,
                                                             bool add_generation_prompt,
                                                             const std::string& bos_token,
                                                             const std::string& eos_token,
                                                             const nlohmann::ordered_json& extra) const {
  if (!messages.is_array()) return Error{"messages must be an array"};
  return render_value(json_to_value(messages), add_generation_prompt, bos_token, eos_token, extra);
}

Result<jinja::RenderedText> ChatTemplate::render_value(jinja::Value messages, bool add_generation_prompt,
                                                       const std::string& bos_token,
                                                       const std::string& eos_token,
                                                       const nlohmann::ordered_json& extra) const {
  // Everything the request supplied is untrusted (jinja/taint.h): the messages, and the
  // extra variables (tools, documents...). The template's own text, bos_token and
  // eos_token are the model's.
  jinja::Object ctx;
  if (extra.is_object())
    for (const auto& [k, v] : extra.items()) {
      jinja::Value x = json_to_value(v);
      jinja::mark_untrusted(x);
      ctx.set(k, std::move(x));
    }
  jinja::mark_untrusted(messages);
  ctx.set("messages", std::move(messages));
  ctx.set("add_generation_prompt", jinja::Value(add_generation_prompt));
  ctx.set("bos_token", jinja::Value(bos_token));
  ctx.set("eos_token", jinja::Value(eos_token));
  return jinja::render_text(*tmpl_, ctx, limits_);
}

}  // namespace kvserve
