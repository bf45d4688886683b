// Built-in filters, tests, methods and global functions of the chat-template interpreter:
// the part of Jinja2 (and of the Python str/list/dict methods it exposes) that Hugging
// Face chat templates use, plus transformers' raise_exception and strftime_now.
// Filters and tests live in filters.cpp, string behaviour in text.cpp, the rest in
// builtins.cpp.
#pragma once

#include <string>

#include "core/result.h"
#include "jinja/value.h"

namespace kvserve::jinja {

// `operand | name(args)`; Error names an unknown filter or a bad argument.
Result<Value> apply_filter(const std::string& name, const Value& operand, const CallArgs& args);
// `operand is name(args)`.
Result<bool> apply_test(const std::string& name, const Value& operand, const CallArgs& args);
// `obj.name(args)` for str, list and dict methods (`s.strip()`, `d.items()`, `l.append(x)`).
Result<Value> call_method(const Value& obj, const std::string& name, const CallArgs& args);
// The values a Python for loop would visit: list items, dict keys, string characters.
Result<Array> iterate(const Value& v);
// Python's `fmt % args` (the `format` filter and the string `%` operator): %s %r %d %i
// %f %e %g %x %o %c %% with flags, width, precision, and %(key)s for a mapping argument.
// An array argument is taken as the tuple of positional values.
Result<Value> percent_format(const std::string& fmt, const Value& args);
// range, namespace, dict, raise_exception, strftime_now.
void add_global_functions(Object& globals);

}  // namespace kvserve::jinja
