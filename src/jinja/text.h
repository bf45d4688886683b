// Python string semantics shared by the interpreter's filters and str methods
// (strip with a character set, split with and without a separator, title, %-formatting),
// plus the call-argument helpers every built-in uses.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"
#include "jinja/value.h"

namespace kvserve::jinja::text {

// Positional argument `index`, else keyword argument `name`; null when neither was given.
const Value* arg(const CallArgs& a, size_t index, std::string_view name);
// A numeric argument as an integer, `dflt` when absent or not a number.
int64_t as_int_or(const Value* v, int64_t dflt);

bool is_ws(char c);
// str.strip/lstrip/rstrip; `chars` null, none or undefined means whitespace.
std::string strip(const std::string& s, const Value* chars, bool left, bool right);
std::string lower(std::string s);  // ASCII letters only
std::string upper(std::string s);
std::string title(std::string s);  // str.title()
std::string capitalize(std::string s);
// str.replace; count < 0 replaces all.
std::string replace(const std::string& s, const std::string& from, const std::string& to, int64_t count);
// str.split; `sep` null/none splits on whitespace runs; maxsplit < 0 is unlimited.
Array split(const std::string& s, const Value* sep, int64_t maxsplit);
std::string html_escape(const std::string& s);
// Jinja's indent filter: every line but the first (or all with `first`) gets `pad`.
std::string indent(const std::string& in, const std::string& pad, bool first, bool blank);
// `s.name(args)` for the supported str methods.
Result<Value> string_method(const std::string& s, const std::string& name, const CallArgs& a);

}  // namespace kvserve::jinja::text
