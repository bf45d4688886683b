// Chat templates: turn an OpenAI-style message list into the prompt text a model was
// fine-tuned on, by rendering the model's Hugging Face Jinja template (GGUF metadata
// `tokenizer.chat_template`) with the project's own interpreter (server/jinja_*.h).
// Resolution order (see docs/chat_templates.md): --chat-template FILE, then the model's
// template, then a built-in default (Gemma's for Gemma models, else ChatML).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/result.h"
#include "server/jinja_ast.h"
#include "server/jinja_render.h"

namespace kvserve {

class GgufFile;

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
  // `override_path` non-empty: that file's template. Else the model's `tokenizer.chat_template`
  // if present, else Gemma's template for a gemma* architecture, else ChatML. `model` may be
  // null (no model metadata).
  static Result<ChatTemplate> resolve(const GgufFile* model, const std::string& override_path);

  // Renders the template with `messages`, `add_generation_prompt`, `bos_token`,
  // `eos_token` and every member of the `extra` object (e.g. "tools") as variables.
  // Template failures (including raise_exception) come back as Error values.
  Result<std::string> render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                             const std::string& bos_token, const std::string& eos_token,
                             const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;
  // Same, with messages as OpenAI JSON objects (tool_calls, content parts, names...).
  Result<std::string> render_json(
      const nlohmann::ordered_json& messages, bool add_generation_prompt, const std::string& bos_token,
      const std::string& eos_token,
      const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;

  const std::string& source() const { return source_; }
  Origin origin() const { return origin_; }
  const char* origin_name() const;
  void set_limits(const jinja::RenderLimits& limits) { limits_ = limits; }

 private:
  ChatTemplate() = default;
  Result<std::string> render_value(jinja::Value messages, bool add_generation_prompt,
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
