#include "jinja/text.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <vector>

#include "jinja/builtins.h"

namespace kvserve::jinja {
namespace text {

const Value* arg(const CallArgs& a, size_t index, std::string_view name) {
  if (index < a.positional.size()) return &a.positional[index];
  return a.kw(name);
}

int64_t as_int_or(const Value* v, int64_t dflt) {
  if (!v || (!v->is_int() && !v->is_bool() && !v->is_float())) return dflt;
  return v->is_bool() ? v->as_bool() : v->is_int() ? v->as_int() : static_cast<int64_t>(v->as_float());
}

bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::string strip(const std::string& s, const Value* chars, bool left, bool right) {
  auto in_set = [&](char c) {
    if (!chars || chars->is_none() || chars->is_undefined()) return is_ws(c);
    return chars->to_output().find(c) != std::string::npos;
  };
  size_t b = 0, e = s.size();
  if (left)
    while (b < e && in_set(s[b])) ++b;
  if (right)
    while (e > b && in_set(s[e - 1])) --e;
  return s.substr(b, e - b);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
// Python str.title(): a letter after a non-letter is upper-cased, other letters lower-cased.
std::string title(std::string s) {
  bool prev_alpha = false;
  for (char& c : s) {
    bool alpha = std::isalpha(static_cast<unsigned char>(c));
    if (alpha) c = static_cast<char>(prev_alpha ? std::tolower(c) : std::toupper(c));
    prev_alpha = alpha || (static_cast<unsigned char>(c) >= 0x80);
  }
  return s;
}
std::string capitalize(std::string s) {
  s = lower(std::move(s));
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

std::string replace(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  if (from.empty()) {  // Python inserts `to` around every character
    std::string out;
    int64_t n = 0;
    for (const std::string& ch : utf8_chars(s)) {
      if (count < 0 || n < count) {
        out += to;
        ++n;
      }
      out += ch;
    }
    if (count < 0 || n < count) out += to;
    return out;
  }
  std::string out;
  size_t pos = 0;
  int64_t n = 0;
  while (count < 0 || n < count) {
    size_t hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += to;
    pos = hit + from.size();
    ++n;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

Array split(const std::string& s, const Value* sep, int64_t maxsplit) {
  Array out;
  if (!sep || sep->is_none() || sep->is_undefined()) {
    size_t i = 0;
    while (true) {
      while (i < s.size() && is_ws(s[i])) ++i;
      if (i >= s.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        size_t e = s.size();
        while (e > i && is_ws(s[e - 1])) --e;
        out.push_back(Value(s.substr(i, e - i)));
        break;
      }
      size_t j = i;
      while (j < s.size() && !is_ws(s[j])) ++j;
      out.push_back(Value(s.substr(i, j - i)));
      i = j;
    }
    return out;
  }
  std::string d = sep->to_output();
  size_t pos = 0;
  while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
    size_t hit = s.find(d, pos);
    if (hit == std::string::npos) break;
    out.push_back(Value(s.substr(pos, hit - pos)));
    pos = hit + d.size();
  }
  out.push_back(Value(s.substr(pos)));
  return out;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string indent(const std::string& in, const std::string& pad, bool first, bool blank) {
  std::vector<std::string> lines;  // str.splitlines() of in + "\n"
  std::string s = in + "\n";
  size_t pos = 0;
  while (pos < s.size()) {
    size_t nl = s.find('\n', pos);
    lines.push_back(s.substr(pos, nl - pos));
    pos = nl + 1;
  }
  std::string rv = lines[0];
  for (size_t i = 1; i < lines.size(); ++i) {
    rv += "\n";
    if (blank || !lines[i].empty()) rv += pad;
    rv += lines[i];
  }
  return first ? pad + rv : rv;
}

Result<Value> string_method(const std::string& s, const std::string& name, const CallArgs& a) {
  if (name == "strip") return Value(strip(s, arg(a, 0, "chars"), true, true));
  if (name == "lstrip") return Value(strip(s, arg(a, 0, "chars"), true, false));
  if (name == "rstrip") return Value(strip(s, arg(a, 0, "chars"), false, true));
  if (name == "upper") return Value(upper(s));
  if (name == "lower") return Value(lower(s));
  if (name == "title") return Value(title(s));
  if (name == "capitalize") return Value(capitalize(s));
  if (name == "split") return Value(split(s, arg(a, 0, "sep"), as_int_or(arg(a, 1, "maxsplit"), -1)));
  if (name == "splitlines") {
    Array out;
    size_t pos = 0;
    while (pos < s.size()) {
      size_t nl = s.find('\n', pos);
      if (nl == std::string::npos) nl = s.size();
      out.push_back(Value(s.substr(pos, nl - pos)));
      pos = nl + 1;
    }
    return Value(std::move(out));
  }
  if (name == "startswith" || name == "endswith") {
    const Value* p = arg(a, 0, "prefix");
    if (!p) return Error{name + " needs an argument"};
    Array options = p->is_array() ? p->array() : Array{*p};
    for (const Value& o : options) {
      if (!o.is_string()) return Error{name + " expects strings"};
      const std::string& x = o.as_string();
      bool hit =
          x.size() <= s.size() && (name == "startswith" ? s.compare(0, x.size(), x) == 0
                                                        : s.compare(s.size() - x.size(), x.size(), x) == 0);
      if (hit) return Value(true);
    }
    return Value(false);
  }
  if (name == "replace") {
    const Value* from = arg(a, 0, "old");
    const Value* to = arg(a, 1, "new");
    if (!from || !to) return Error{"replace needs two arguments"};
    return Value(replace(s, from->to_output(), to->to_output(), as_int_or(arg(a, 2, "count"), -1)));
  }
  if (name == "find" || name == "rfind" || name == "count") {
    const Value* sub = arg(a, 0, "sub");
    if (!sub || !sub->is_string()) return Error{name + " needs a string argument"};
    const std::string& x = sub->as_string();
    if (name == "count") {
      if (x.empty()) return Value(static_cast<int64_t>(utf8_length(s) + 1));
      int64_t n = 0;
      for (size_t p = s.find(x); p != std::string::npos; p = s.find(x, p + x.size())) ++n;
      return Value(n);
    }
    size_t p = name == "find" ? s.find(x) : s.rfind(x);
    // Python counts code points; convert the byte offset.
    return Value(p == std::string::npos ? int64_t{-1} : static_cast<int64_t>(utf8_length(s.substr(0, p))));
  }
  if (name == "join") {
    const Value* seq = arg(a, 0, "iterable");
    if (!seq) return Error{"join needs an argument"};
    auto items = iterate(*seq);
    if (!items) return items.error();
    std::string out;
    for (size_t i = 0; i < items->size(); ++i) out += (i ? s : "") + (*items)[i].to_output();
    return Value(std::move(out));
  }
  if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isalnum") {
    if (s.empty()) return Value(false);
    int (*pred)(int) = name == "isdigit"   ? ::isdigit
                       : name == "isalpha" ? ::isalpha
                       : name == "isspace" ? ::isspace
                                           : ::isalnum;
    return Value(
        std::all_of(s.begin(), s.end(), [&](char c) { return pred(static_cast<unsigned char>(c)) != 0; }));
  }
  return Error{"'str' object has no attribute '" + name + "'"};
}

}  // namespace text

namespace {

// One %-conversion: flags, width and precision already parsed.
Result<std::string> format_one(char conv, const std::string& flags, int width, int precision,
                               const Value& v) {
  std::string body;
  bool numeric = false;
  switch (conv) {
    case 's': body = v.to_output(); break;
    case 'r': body = v.is_string() ? v.repr() : v.to_output(); break;
    case 'c':
      if (v.is_string())
        body = v.as_string();
      else if (v.is_int())
        body = std::string(1, static_cast<char>(v.as_int()));
      else
        return Error{"%c requires an int or a char"};
      break;
    default: {
      if (!v.is_number() && !v.is_bool())
        return Error{std::string("%") + conv + " format: a real number is required, not " + v.type_name()};
      numeric = true;
      double f = v.is_bool() ? v.as_bool() : v.as_float();
      std::string spec = "%";
      for (char c : flags)
        if (c == '+' || c == ' ' || c == '#') spec += c;
      char buf[512];
      if (conv == 'd' || conv == 'i' || conv == 'x' || conv == 'X' || conv == 'o') {
        long long i = v.is_int() ? v.as_int() : static_cast<long long>(f);
        spec += conv == 'i' ? std::string("lld") : std::string("ll") + conv;
        std::snprintf(buf, sizeof buf, spec.c_str(), i);
      } else if (conv == 'f' || conv == 'F' || conv == 'e' || conv == 'E' || conv == 'g' || conv == 'G') {
        spec += "." + std::to_string(precision < 0 ? 6 : std::min(precision, 100)) + conv;
        std::snprintf(buf, sizeof buf, spec.c_str(), f);
      } else {
        return Error{std::string("unsupported format character '") + conv + "'"};
      }
      body = buf;
    }
  }
  if (!numeric && precision >= 0 && conv != 'c') {
    std::vector<std::string> chars = utf8_chars(body);
    if (static_cast<size_t>(precision) < chars.size()) {
      body.clear();
      for (int i = 0; i < precision; ++i) body += chars[i];
    }
  }
  size_t len = utf8_length(body);
  if (width > 0 && len < static_cast<size_t>(width)) {
    size_t pad = std::min<size_t>(width - len, 4096);
    if (flags.find('-') != std::string::npos) {
      body.append(pad, ' ');
    } else if (numeric && flags.find('0') != std::string::npos) {
      size_t sign = (!body.empty() && (body[0] == '-' || body[0] == '+' || body[0] == ' ')) ? 1 : 0;
      body.insert(sign, pad, '0');
    } else {
      body.insert(0, pad, ' ');
    }
  }
  return body;
}

}  // namespace

Result<Value> percent_format(const std::string& fmt, const Value& args) {
  Array positional = args.is_array() ? args.array() : Array{args};
  size_t next = 0;
  std::string out;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (++i >= fmt.size()) return Error{"incomplete format"};
    if (fmt[i] == '%') {
      out += '%';
      continue;
    }
    const Value* value = nullptr;
    if (fmt[i] == '(') {  // %(key)s
      size_t close = fmt.find(')', i);
      if (close == std::string::npos) return Error{"incomplete format key"};
      if (!args.is_object()) return Error{"format requires a mapping"};
      value = args.object().find(fmt.substr(i + 1, close - i - 1));
      if (!value) return Error{"format: missing key '" + fmt.substr(i + 1, close - i - 1) + "'"};
      i = close + 1;
    }
    std::string flags;
    while (i < fmt.size() && std::string("-+ #0").find(fmt[i]) != std::string::npos) flags += fmt[i++];
    int width = 0, precision = -1;
    while (i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i])))
      width = std::min(width * 10 + (fmt[i++] - '0'), 100000);
    if (i < fmt.size() && fmt[i] == '.') {
      precision = 0;
      ++i;
      while (i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i])))
        precision = std::min(precision * 10 + (fmt[i++] - '0'), 100000);
    }
    if (i >= fmt.size()) return Error{"incomplete format"};
    if (!value) {
      if (next >= positional.size()) return Error{"not enough arguments for format string"};
      value = &positional[next++];
    }
    auto piece = format_one(fmt[i], flags, width, precision, *value);
    if (!piece) return piece.error();
    out += *piece;
  }
  if (!args.is_object() && next < positional.size())
    return Error{"not all arguments converted during string formatting"};
  return Value(std::move(out));
}

}  // namespace kvserve::jinja
