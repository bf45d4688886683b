// Parser of the chat-template interpreter: tokens -> syntax tree. Errors name the line
// and column of the offending token.
#pragma once

#include <memory>
#include <string_view>

#include "core/result.h"
#include "jinja/ast.h"
#include "jinja/lexer.h"

namespace kvserve::jinja {

Result<std::shared_ptr<const Template>> parse_template(std::string_view source, const LexOptions& opt = {});

}  // namespace kvserve::jinja
