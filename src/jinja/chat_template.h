// Chat templates: turn an OpenAI-style message list into the prompt text a model was
// fine-tuned on, by rendering the model's Hugging Face Jinja template (GGUF metadata
// `tokenizer.chat_template`) with the project's own interpreter (jinja/*.h).
// Resolution order (see docs/chat_templates.md): --chat-template FILE, then the model's
// template, then a built-in default (Gemma's for Gemma models, else ChatML). The caller
// reads the model's metadata; this layer takes strings, so it builds and is fuzzed
// without the GGUF reader.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "jinja/ast.h"
#include "jinja/render.h"

namespace kvserve {

struct ChatMessage {
  std::string role;
  std::string content;
};

class ChatTemplate {
 public:
  enum class Origin { BuiltinChatML, BuiltinGemma, Model, File };

  // The built-in template for models without one (ChatML, no default system message).
  static const char* chatml_source();
  // Google's Gemma 3 template, for Gemma models without one (see resolve()).
  static const char* gemma_source();

  static Result<ChatTemplate> parse(std::string source, Origin origin = Origin::File);
  static ChatTemplate chatml();
  // `override_path` non-empty: that file's template. Else `model_template` (the model's
  // `tokenizer.chat_template`) if present and non-empty, else Gemma's template for a gemma*
  // `architecture` (`general.architecture`), else ChatML. No model: nullopt and "".
  static Result<ChatTemplate> resolve(const std::string& override_path,
                                      const std::optional<std::string>& model_template,
                                      std::string_view architecture);

  // Renders the template with `messages`, `add_generation_prompt`, `bos_token`,
  // `eos_token` and every member of the `extra` object (e.g. "tools") as variables.
  // Template failures (including raise_exception) come back as Error values.
  Result<std::string> render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                             const std::string& bos_token, const std::string& eos_token,
                             const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;
  // The same prompt with the bytes that came from the request (message fields, tools...)
  // marked (jinja/taint.h): the tokenizer reads control tokens only outside them.
  Result<jinja::RenderedText> render_prompt(
      const std::vector<ChatMessage>& messages, bool add_generation_prompt, const std::string& bos_token,
      const std::string& eos_token,
      const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;
  // Same, with messages as OpenAI JSON objects (tool_calls, content parts, names...).
  Result<std::string> render_json(
      const nlohmann::ordered_json& messages, bool add_generation_prompt, const std::string& bos_token,
      const std::string& eos_token,
      const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;

  Result<jinja::RenderedText> render_json_prompt(
      const nlohmann::ordered_json& messages, bool add_generation_prompt, const std::string& bos_token,
      const std::string& eos_token,
      const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;

  const std::string& source() const { return source_; }
  Origin origin() const { return origin_; }
  const char* origin_name() const;
  void set_limits(const jinja::RenderLimits& limits) { limits_ = limits; }

 private:
  ChatTemplate() = default;
  Result<jinja::RenderedText> render_value(jinja::Value messages, bool add_generation_prompt,
                                           const std::string& bos_token, const std::string& eos_token,
                                           const nlohmann::ordered_json& extra) const;

  std::string source_;
  Origin origin_ = Origin::BuiltinChatML;
  std::shared_ptr<const jinja::Template> tmpl_;
  jinja::RenderLimits limits_;
};

// JSON -> interpreter value. ordered_json keeps key order, so `tojson` reproduces the
// request's tool schemas as transformers would (nlohmann::json converts implicitly).
jinja::Value json_to_value(const nlohmann::ordered_json& j);

}  // namespace kvserve
