// Lexer of the chat-template interpreter: splits a template into text and tag tokens,
// applying Jinja's whitespace control (`{%-`, `-%}`, `{{-`, `-}}`, `{#-`, `-#}`, `{%+`) and
// the environment options transformers renders chat templates with (trim_blocks,
// lstrip_blocks; keep_trailing_newline off). Comments vanish; `{% raw %}` becomes text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace kvserve::jinja {

enum class Tok : uint8_t { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };

struct Token {
  Tok kind = Tok::Eof;
  std::string text;  // Text / Name / String (unescaped) / Op
  int64_t ival = 0;
  double fval = 0;
  int line = 1, col = 1;
};

struct LexOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
  bool keep_trailing_newline = false;
};

Result<std::vector<Token>> lex(std::string_view source, const LexOptions& opt = {});

}  // namespace kvserve::jinja
