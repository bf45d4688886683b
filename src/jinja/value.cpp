#include "jinja/value.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <unordered_set>

namespace kvserve::jinja {

const Value* Object::find(std::string_view key) const {
  for (const auto& [k, v] : items_)
    if (k == key) return &v;
  return nullptr;
}

Value* Object::find(std::string_view key) {
  for (auto& [k, v] : items_)
    if (k == key) return &v;
  return nullptr;
}

void Object::set(std::string key, Value v) {
  if (Value* existing = find(key)) {
    *existing = std::move(v);
    return;
  }
  items_.emplace_back(std::move(key), std::move(v));
}

bool Object::erase(std::string_view key) {
  for (auto it = items_.begin(); it != items_.end(); ++it) {
    if (it->first == key) {
      items_.erase(it);
      return true;
    }
  }
  return false;
}

const Value* CallArgs::kw(std::string_view name) const {
  for (const auto& [k, v] : keyword)
    if (k == name) return &v;
  return nullptr;
}

Value Value::function(std::string name, NativeFn fn, bool taint_aware) {
  Value v;
  v.kind_ = Kind::Callable;
  v.fn_ = std::make_shared<Fn>(Fn{std::move(name), std::move(fn), taint_aware});
  return v;
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool: return b_;
    case Kind::Int: return i_ != 0;
    case Kind::Float: return f_ != 0;
    case Kind::String: return !s_.empty();
    case Kind::Array: return !a_->empty();
    case Kind::Object: return o_->size() != 0;
    case Kind::Callable: return true;
  }
  return false;
}

const char* Value::type_name() const {
  switch (kind_) {
    case Kind::Undefined: return "undefined";
    case Kind::None: return "NoneType";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::Array: return "list";
    case Kind::Object: return "dict";
    case Kind::Callable: return "function";
  }
  return "?";
}

std::string format_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  if (v == 0) return std::signbit(v) ? "-0.0" : "0.0";
  // Shortest digit string that reads back as the same double (what Python's repr does).
  char buf[64];
  for (int prec = 1; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*e", prec - 1, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s = buf;
  bool neg = s[0] == '-';
  if (neg) s.erase(0, 1);
  size_t epos = s.find('e');
  int exp = std::atoi(s.c_str() + epos + 1);
  std::string digits;
  for (size_t i = 0; i < epos; ++i)
    if (s[i] != '.') digits += s[i];
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string out = neg ? "-" : "";
  if (exp >= -4 && exp < 16) {
    if (exp >= 0) {
      std::string ip = digits.substr(0, std::min<size_t>(digits.size(), exp + 1));
      ip.append(exp + 1 > static_cast<int>(ip.size()) ? exp + 1 - ip.size() : 0, '0');
      std::string fp = static_cast<int>(digits.size()) > exp + 1 ? digits.substr(exp + 1) : "0";
      out += ip + "." + fp;
    } else {
      out += "0." + std::string(-exp - 1, '0') + digits;
    }
  } else {
    out += digits[0];
    if (digits.size() > 1) {
      out += '.';
      out.append(digits, 1, std::string::npos);
    }
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += eb;
  }
  return out;
}

static std::string repr_string(const std::string& s) {
  char q = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
  std::string out(1, q);
  for (char c : s) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c == q) out += '\\';
        out += c;
    }
  }
  out += q;
  return out;
}

// Containers can hold themselves (`l.append(l)`) or share children exponentially
// (`[x, x]` nested); walks over data are therefore bounded in depth and in work.
constexpr int kMaxDataDepth = 64;
constexpr size_t kMaxTextBytes = 32u << 20;  // repr / JSON text beyond this is cut off
constexpr int64_t kMaxCompareNodes = 1'000'000;

static void repr_at(const Value& v, int depth, std::string& out) {
  if (out.size() > kMaxTextBytes) return;
  switch (v.kind()) {
    case Kind::String: out += repr_string(v.as_string()); return;
    case Kind::Array: {
      if (depth > kMaxDataDepth) {
        out += "[...]";
        return;
      }
      out += '[';
      const Array& a = v.array();
      for (size_t i = 0; i < a.size() && out.size() <= kMaxTextBytes; ++i) {
        if (i) out += ", ";
        repr_at(a[i], depth + 1, out);
      }
      out += ']';
      return;
    }
    case Kind::Object: {
      if (depth > kMaxDataDepth) {
        out += "{...}";
        return;
      }
      out += '{';
      bool first = true;
      for (const auto& [k, x] : v.object().items()) {
        if (out.size() > kMaxTextBytes) break;
        if (!first) out += ", ";
        out += repr_string(k) + ": ";
        repr_at(x, depth + 1, out);
        first = false;
      }
      out += '}';
      return;
    }
    case Kind::Undefined: out += "Undefined"; return;
    default: out += v.to_output(); return;
  }
}

std::string Value::repr() const {
  std::string out;
  repr_at(*this, 0, out);
  return out;
}

std::string Value::to_output() const {
  switch (kind_) {
    case Kind::Undefined: return "";
    case Kind::None: return "None";
    case Kind::Bool: return b_ ? "True" : "False";
    case Kind::Int: return std::to_string(i_);
    case Kind::Float: return format_float(f_);
    case Kind::String: return s_;
    case Kind::Callable: return "<function " + fn_->name + ">";
    default: return repr();
  }
}

static bool numeric_like(const Value& v) {
  return v.is_number() || v.is_bool();
}
static double num(const Value& v) {
  return v.is_bool() ? (v.as_bool() ? 1.0 : 0.0) : v.as_float();
}

// `budget` counts visited nodes; an exhausted budget compares unequal.
static bool equals_at(const Value& a, const Value& b, int depth, int64_t& budget) {
  if (--budget < 0) return false;
  if (numeric_like(a) && numeric_like(b)) {
    if (a.is_float() || b.is_float()) return num(a) == num(b);
    int64_t x = a.is_bool() ? a.as_bool() : a.as_int();
    int64_t y = b.is_bool() ? b.as_bool() : b.as_int();
    return x == y;
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Kind::Undefined:
    case Kind::None: return true;
    case Kind::String: return a.as_string() == b.as_string();
    case Kind::Array: {
      const Array &x = a.array(), &y = b.array();
      if (x.size() != y.size()) return false;
      if (&x == &y) return true;
      if (depth > kMaxDataDepth) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!equals_at(x[i], y[i], depth + 1, budget)) return false;
      return true;
    }
    case Kind::Object: {
      const Object &x = a.object(), &y = b.object();
      if (x.size() != y.size()) return false;
      if (&x == &y) return true;
      if (depth > kMaxDataDepth) return false;
      for (const auto& [k, v] : x.items()) {
        const Value* w = y.find(k);
        if (!w || !equals_at(v, *w, depth + 1, budget)) return false;
      }
      return true;
    }
    case Kind::Callable: return &a.callable() == &b.callable();
    default: return false;
  }
}

bool reaches(const Value& v, const void* container) {
  std::vector<const Value*> stack{&v};
  std::unordered_set<const void*> seen;
  while (!stack.empty()) {
    const Value* x = stack.back();
    stack.pop_back();
    const void* addr = x->is_array()    ? static_cast<const void*>(&x->array())
                       : x->is_object() ? static_cast<const void*>(&x->object())
                                        : nullptr;
    if (!addr) continue;
    if (addr == container) return true;
    if (!seen.insert(addr).second) continue;
    if (x->is_array())
      for (const Value& c : x->array()) stack.push_back(&c);
    else
      for (const auto& kv : x->object().items()) stack.push_back(&kv.second);
  }
  return false;
}

bool equals(const Value& a, const Value& b) {
  int64_t budget = kMaxCompareNodes;
  return equals_at(a, b, 0, budget);
}

static Result<bool> less_than_at(const Value& a, const Value& b, int depth) {
  if (numeric_like(a) && numeric_like(b)) {
    if (a.is_int() && b.is_int()) return a.as_int() < b.as_int();
    return num(a) < num(b);
  }
  if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();
  if (a.is_array() && b.is_array()) {
    const Array &x = a.array(), &y = b.array();
    if (&x == &y) return false;
    if (depth > kMaxDataDepth) return Error{"comparison nested too deeply"};
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (equals(x[i], y[i])) continue;
      return less_than_at(x[i], y[i], depth + 1);
    }
    return x.size() < y.size();
  }
  return Error{std::string("'<' not supported between instances of '") + a.type_name() + "' and '" +
               b.type_name() + "'"};
}

Result<bool> less_than(const Value& a, const Value& b) {
  return less_than_at(a, b, 0);
}

// Decodes one UTF-8 sequence at s[i]; invalid bytes decode as themselves (length 1).
static uint32_t decode_utf8(std::string_view s, size_t i, size_t* len) {
  unsigned char c = s[i];
  int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || i + n > s.size()) {
    *len = 1;
    return c;
  }
  uint32_t cp = n == 1 ? c : c & (0x7f >> n);
  for (int k = 1; k < n; ++k) {
    unsigned char cc = s[i + k];
    if ((cc & 0xc0) != 0x80) {
      *len = 1;
      return c;
    }
    cp = (cp << 6) | (cc & 0x3f);
  }
  *len = n;
  return cp;
}

std::vector<std::string> utf8_chars(std::string_view s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    size_t n;
    decode_utf8(s, i, &n);
    out.emplace_back(s.substr(i, n));
    i += n;
  }
  return out;
}

size_t utf8_length(std::string_view s) {
  size_t count = 0;
  for (size_t i = 0; i < s.size();) {
    size_t n;
    decode_utf8(s, i, &n);
    i += n;
    ++count;
  }
  return count;
}

static void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  char buf[16];
  for (size_t i = 0; i < s.size();) {
    unsigned char c = s[i];
    switch (c) {
      case '"':
        out += "\\\"";
        ++i;
        continue;
      case '\\':
        out += "\\\\";
        ++i;
        continue;
      case '\n':
        out += "\\n";
        ++i;
        continue;
      case '\r':
        out += "\\r";
        ++i;
        continue;
      case '\t':
        out += "\\t";
        ++i;
        continue;
      case '\b':
        out += "\\b";
        ++i;
        continue;
      case '\f':
        out += "\\f";
        ++i;
        continue;
      default: break;
    }
    if (c < 0x20 || (ensure_ascii && c == 0x7f)) {
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
      ++i;
    } else if (c >= 0x80 && ensure_ascii) {
      size_t n;
      uint32_t cp = decode_utf8(s, i, &n);
      if (cp >= 0x10000) {
        cp -= 0x10000;
        std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
      } else {
        std::snprintf(buf, sizeof buf, "\\u%04x", cp);
      }
      out += buf;
      i += n;
    } else {
      out += static_cast<char>(c);
      ++i;
    }
  }
  out += '"';
}

static void json_value(std::string& out, const Value& v, const JsonOptions& o, int depth) {
  if (out.size() > kMaxTextBytes) return;
  auto newline = [&](int d) {
    if (o.indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(o.indent) * d, ' ');
  };
  const std::string& item_sep = o.item_sep.empty() ? (o.indent < 0 ? ", " : ",") : o.item_sep;
  const std::string& key_sep = o.key_sep.empty() ? ": " : o.key_sep;
  switch (v.kind()) {
    case Kind::Undefined:
    case Kind::None: out += "null"; return;
    case Kind::Bool: out += v.as_bool() ? "true" : "false"; return;
    case Kind::Int: out += std::to_string(v.as_int()); return;
    case Kind::Float: {
      double f = v.as_float();
      out += std::isnan(f) ? "NaN" : std::isinf(f) ? (f < 0 ? "-Infinity" : "Infinity") : format_float(f);
      return;
    }
    case Kind::String: json_string(out, v.as_string(), o.ensure_ascii); return;
    case Kind::Callable: json_string(out, v.to_output(), o.ensure_ascii); return;
    case Kind::Array: {
      const Array& a = v.array();
      if (depth > kMaxDataDepth) {
        out += "null";  // a self-containing list; Python raises "Circular reference detected"
        return;
      }
      if (a.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < a.size(); ++i) {
        if (i) out += item_sep;
        newline(depth + 1);
        json_value(out, a[i], o, depth + 1);
      }
      newline(depth);
      out += ']';
      return;
    }
    case Kind::Object: {
      if (depth > kMaxDataDepth) {
        out += "null";
        return;
      }
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& kv : v.object().items()) items.push_back(&kv);
      if (items.empty()) {
        out += "{}";
        return;
      }
      if (o.sort_keys)
        std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
      out += '{';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += item_sep;
        newline(depth + 1);
        json_string(out, items[i]->first, o.ensure_ascii);
        out += key_sep;
        json_value(out, items[i]->second, o, depth + 1);
      }
      newline(depth);
      out += '}';
      return;
    }
  }
}

std::string to_json(const Value& v, const JsonOptions& opt) {
  std::string out;
  json_value(out, v, opt, 0);
  return out;
}

}  // namespace kvserve::jinja
