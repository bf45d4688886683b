#include "jinja/taint.h"

#include <algorithm>
#include <memory>
#include <unordered_set>

namespace kvserve::jinja {

namespace {

std::shared_ptr<const TextRanges> whole(size_t n) {
  if (n == 0) return nullptr;
  return std::make_shared<const TextRanges>(TextRanges{{0, uint32_t(n)}});
}

// Containers are shared (reference semantics), so a walk visits each one once: a list
// holding itself through others, or the same list many times, costs its size, no more.
bool is_tainted(const Value& v, std::unordered_set<const void*>& seen) {
  switch (v.kind()) {
    case Kind::String: return v.taint() != nullptr;
    case Kind::Array:
      if (!seen.insert(&v.array()).second) return false;
      for (const Value& x : v.array())
        if (is_tainted(x, seen)) return true;
      return false;
    case Kind::Object:
      if (!seen.insert(&v.object()).second) return false;
      if (v.object().untrusted_keys()) return true;
      for (const auto& [k, x] : v.object().items())
        if (is_tainted(x, seen)) return true;
      return false;
    default: return false;
  }
}

void mark(Value& v, std::unordered_set<const void*>& seen) {
  switch (v.kind()) {
    case Kind::String: v.set_taint(whole(v.as_string().size())); return;
    case Kind::Array:
      if (!seen.insert(&v.array()).second) return;
      for (Value& x : v.array()) mark(x, seen);
      return;
    case Kind::Object: {
      Object& o = v.object();
      if (!seen.insert(&o).second) return;
      o.set_untrusted_keys();
      for (const auto& item : o.items())
        if (Value* x = o.find(item.first)) mark(*x, seen);
      return;
    }
    default: return;
  }
}

}  // namespace

Value untrusted(std::string s) {
  const size_t n = s.size();
  return Value(std::move(s), whole(n));
}

void mark_untrusted(Value& v) {
  if (v.is_string()) return v.set_taint(whole(v.as_string().size()));
  std::unordered_set<const void*> seen;
  mark(v, seen);
}

bool is_tainted(const Value& v) {
  if (v.is_string()) return v.taint() != nullptr;
  if (!v.is_array() && !v.is_object()) return false;
  std::unordered_set<const void*> seen;
  return is_tainted(v, seen);
}

Value output_of(const Value& v) {
  if (v.is_string()) return v;
  std::string s = v.to_output();
  const size_t n = s.size();
  return is_tainted(v) ? Value(std::move(s), whole(n)) : Value(std::move(s));
}

void RenderedText::append(const std::string& s, const TextRanges* marks) {
  if (marks) append_ranges(untrusted, *marks, uint32_t(text.size()));
  text += s;
}

void RenderedText::append(const Value& v) {
  if (v.is_string()) return append(v.as_string(), v.taint());
  const Value o = output_of(v);
  append(o.as_string(), o.taint());
}

Value RenderedText::take_value() {
  if (untrusted.empty()) return Value(std::move(text));
  return Value(std::move(text), std::make_shared<const TextRanges>(std::move(untrusted)));
}

Value concat(const Value& a, const Value& b) {
  RenderedText r;
  r.append(a);
  r.append(b);
  return r.take_value();
}

Value substring(const Value& s, size_t begin, size_t end) {
  const std::string& str = s.as_string();
  end = std::min(end, str.size());
  begin = std::min(begin, end);
  std::string out = str.substr(begin, end - begin);
  if (!s.taint()) return Value(std::move(out));
  auto t = std::make_shared<TextRanges>();
  for (const TextRange& r : *s.taint()) {
    const size_t b = std::max<size_t>(r.begin, begin), e = std::min<size_t>(r.end, end);
    if (b < e) t->push_back({uint32_t(b - begin), uint32_t(e - begin)});
  }
  return Value(std::move(out), std::move(t));
}

void taint_result(Value& result, bool inputs_tainted) {
  if (inputs_tainted) mark_untrusted(result);
}

bool args_tainted(const CallArgs& a) {
  for (const Value& v : a.positional)
    if (is_tainted(v)) return true;
  for (const auto& [k, v] : a.keyword)
    if (is_tainted(v)) return true;
  return false;
}

}  // namespace kvserve::jinja
