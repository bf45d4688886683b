// The filter and test tables of the chat-template interpreter.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <unordered_map>
#include <unordered_set>

#include "jinja/builtins.h"
#include "jinja/taint.h"
#include "jinja/text.h"

namespace kvserve::jinja {
namespace {

using namespace text;

constexpr size_t kMaxJoinBytes = 64u << 20;

// Dotted attribute path as used by map/selectattr/sort ("function.name", "0").
Value get_attribute(const Value& v, const std::string& path) {
  Value cur = v;
  size_t pos = 0;
  while (true) {
    size_t dot = path.find('.', pos);
    std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    if (cur.is_object()) {
      const Value* f = cur.object().find(part);
      cur = f ? *f : Value();
    } else if (cur.is_array() && !part.empty() && part.size() <= 9 &&
               std::all_of(part.begin(), part.end(), ::isdigit)) {
      const size_t i = std::stoul(part);  // at most 9 digits: cannot overflow
      cur = i < cur.array().size() ? cur.array()[i] : Value();
    } else {
      return Value();
    }
    if (dot == std::string::npos) return cur;
    pos = dot + 1;
  }
}

Result<Value> to_int(const Value& v, const Value* dflt) {
  Value fallback = dflt ? *dflt : Value(0);
  if (v.is_int()) return v;
  if (v.is_bool()) return Value(int64_t{v.as_bool()});
  if (v.is_float()) return std::isfinite(v.as_float()) ? Value(static_cast<int64_t>(v.as_float())) : fallback;
  if (v.is_string()) {
    std::string s = strip(v.as_string(), nullptr, true, true);
    if (s.empty()) return fallback;
    char* end = nullptr;
    errno = 0;
    long long i = std::strtoll(s.c_str(), &end, 10);
    if (*end == 0 && errno == 0) return Value(static_cast<int64_t>(i));
    double d = std::strtod(s.c_str(), &end);
    if (*end == 0 && std::isfinite(d) && std::fabs(d) < 9.2e18) return Value(static_cast<int64_t>(d));
  }
  return fallback;
}

Result<Value> to_float(const Value& v, const Value* dflt) {
  Value fallback = dflt ? *dflt : Value(0.0);
  if (v.is_number() || v.is_bool()) return Value(v.is_bool() ? (v.as_bool() ? 1.0 : 0.0) : v.as_float());
  if (v.is_string()) {
    std::string s = strip(v.as_string(), nullptr, true, true);
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && *end == 0) return Value(d);
  }
  return fallback;
}

// Sort / unique key: strings compare case-insensitively unless asked otherwise (Jinja's default).
Value sort_key(const Value& v, const Value* attribute, bool case_sensitive) {
  Value k = attribute && attribute->is_string() ? get_attribute(v, attribute->as_string()) : v;
  if (!case_sensitive && k.is_string()) return Value(lower(k.as_string()));
  return k;
}

Result<Value> select_like(const Value& seq, const CallArgs& a, bool by_attr, bool keep_if) {
  auto items = iterate(seq);
  if (!items) return items.error();
  size_t next = 0;
  std::string attr;
  if (by_attr) {
    const Value* at = arg(a, next++, "attribute");
    if (!at || !at->is_string()) return Error{"selectattr/rejectattr need an attribute name"};
    attr = at->as_string();
  }
  std::string test;
  CallArgs targs;
  if (next < a.positional.size()) {
    test = a.positional[next].to_output();
    targs.positional.assign(a.positional.begin() + next + 1, a.positional.end());
  }
  Array out;
  for (const Value& v : *items) {
    Value subject = by_attr ? get_attribute(v, attr) : v;
    bool pass;
    if (test.empty()) {
      pass = subject.truthy();
    } else {
      auto r = apply_test(test, subject, targs);
      if (!r) return r.error();
      pass = *r;
    }
    if (pass == keep_if) out.push_back(v);
  }
  return Value(std::move(out));
}

Result<Value> tojson(const Value& v, const CallArgs& a) {
  JsonOptions o;
  if (const Value* ind = arg(a, 0, "indent"); ind && !ind->is_none()) {
    if (ind->is_int())
      o.indent = static_cast<int>(std::clamp<int64_t>(ind->as_int(), 0, 64));
    else
      return Error{"tojson: indent must be an integer"};
  }
  if (const Value* s = a.kw("sort_keys")) o.sort_keys = s->truthy();
  if (const Value* e = a.kw("ensure_ascii")) o.ensure_ascii = e->truthy();
  if (const Value* sep = a.kw("separators"); sep && sep->is_array() && sep->array().size() == 2) {
    o.item_sep = sep->array()[0].to_output();
    o.key_sep = sep->array()[1].to_output();
  }
  return Value(to_json(v, o));
}

using FilterFn = std::function<Result<Value>(const Value&, const CallArgs&)>;

const std::unordered_map<std::string, FilterFn>& filters() {
  static const std::unordered_map<std::string, FilterFn> table = [] {
    std::unordered_map<std::string, FilterFn> f;
    f["trim"] = [](const Value& v, const CallArgs& a) -> Result<Value> {
      return Value(strip(v.to_output(), arg(a, 0, "chars"), true, true));
    };
    f["upper"] = [](const Value& v, const CallArgs&) -> Result<Value> { return Value(upper(v.to_output())); };
    f["lower"] = [](const Value& v, const CallArgs&) -> Result<Value> { return Value(lower(v.to_output())); };
    f["title"] = [](const Value& v, const CallArgs&) -> Result<Value> { return Value(title(v.to_output())); };
    f["capitalize"] = [](const Value& v, const CallArgs&) -> Result<Value> {
      return Value(capitalize(v.to_output()));
    };
    f["length"] = [](const Value& v, const CallArgs&) -> Result<Value> {
      if (v.is_string()) return Value(static_cast<int64_t>(utf8_length(v.as_string())));
      if (v.is_array()) return Value(static_cast<int64_t>(v.array().size()));
      if (v.is_object()) return Value(static_cast<int64_t>(v.object().size()));
      if (v.is_undefined()) return Value(0);
      return Error{std::string("object of type '") + v.type_name() + "' has no len()"};
    };
    f["count"] = f["length"];
    f["first"] = [](const Value& v, const CallArgs&) -> Result<Value> {
      auto items = iterate(v);
      if (!items) return items.error();
      return items->empty() ? Value() : items->front();
    };
    f["last"] = [](const Value& v, const CallArgs&) -> Result<Value> {
      auto items = iterate(v);
      if (!items) return items.error();
      return items->empty() ? Value() : items->back();
    };
    f["join"] = [](const Value& v, const CallArgs& a) -> Result<Value> {
      auto items = iterate(v);
      if (!items) return items.error();
      const Value* sep = arg(a, 0, "d");
      const Value* attr = arg(a, 1, "attribute");
      RenderedText out;  // request data's marks (taint.h) go with each piece: join is exact
      for (size_t i = 0; i < items->size(); ++i) {
        if (out.text.size() > kMaxJoinBytes) return Error{"join result too large"};
        if (i && sep) out.append(*sep);
        const Value& x = (*items)[i];
        out.append(attr && attr->is_string() ? get_attribute(x, attr->as_string()) : x);
      }
      return out.take_value();
    };
    f["default"] = [](const Value& v, const CallArgs& a) -> Result<Value> {
      const Value* d = arg(a, 0, "default_value");
      const Value* boolean = arg(a, 1, "boolean");
      bool use_default = v.is_undefined() || (boolean && boolean->truthy() && !v.truthy());
      if (!use_default) return v;
      return d ? *d : Value("");
    };
    f["d"] = f["default"];
    f["tojson"] = tojson;
    f["string"] = [](const Value& v, const CallArgs&) -> Result<Value> { return Value(v.to_output()); };
    f["int"] = [](const Value& v, const CallArgs& a) { return to_int(v, arg(a, 0, "default")); };
    f["float"] = [](const Value& v, const CallArgs& a) { return to_float(v, arg(a, 0, "default")); };
    f["list"] = [](const Value& v, const CallArgs&) -> Result<Value> {
      auto items = iterate(v);
      if (!items) return items.error();
      return Value(std::move(*items));
    };
    f["items"] = [](const Value& v, const CallArgs&) -> Result<Value> {
      if (v.is_undefined()) return Value(Array{});
      return call_method(v, "items", {});
    };
    f["dictsort"] = [](const Value& v, const CallArgs& a) -> Result<Value> {
      if (!v.is_object()) return Error{"dictsort expects a mapping"};
      const Value* cs = arg(a, 0, "case_sensitive");
      const Value* by = arg(a, 1, "by");
      const Value* rev = arg(a, 2, "reverse");
      bool by_value = by && by->to_output() == "value";
      std::vector<std::pair<std::string, Value>> items = v.object().items();
      Status err = ok_status();
      std::stable_sort(items.begin(), items.end(), [&](const auto& x, const auto& y) {
        Value kx = by_value ? x.second : Value(x.first), ky = by_value ? y.second : Value(y.first);
        kx = sort_key(kx, nullptr, cs && cs->truthy());
        ky = sort_key(ky, nullptr, cs && cs->truthy());
        auto lt = rev && rev->truthy() ? less_than(ky, kx) : less_than(kx, ky);
        if (!lt) err = lt.error();
        return lt && *lt;
      });
      if (!err) return err.error();
      Array out;
      for (auto& [k, x] : items) out.push_back(Value(Array{Value(k), x}));
      return Value(std::move(out));
    };
    f["replace"] = [](const Value& v, const CallArgs& a) -> Result<Value> {
      const Value* from = arg(a, 0, "old");
      const Value* to = arg(a, 1, "new");
      if (!from || !to) return Error{"replace needs two arguments"};
      return Value(
          replace(v.to_output(), from->to_output(), to->to_output(), as_int_or(arg(a, 2, "count"), -1)));
    };
    f["safe"] = [](const Value& v, const CallArgs&) -> Result<Value> { return v; };
    f["escape"] = [](const Value& v, const CallArgs&) -> Result<Value> {
      return Value(html_escape(v.to_output()));
    };
    f["e"] = f["escape"];
    f["selectattr"] = [](const Value& v, const CallArgs& a) { return select_like(v, a, true, true); };
    f["rejectattr"] = [](const Value& v, const CallArgs& a) { return select_like(v, a, true, false); };
    f["select"] = [](const Value& v, const CallArgs& a) { return select_like(v, a, false, true); };
    f["reject"] = [](const Value& v, const CallArgs& a) { return select_like(v, a, false, false); };
    f["map"] = [](const Value& v, const CallArgs& a) -> Result<Value> {
      auto items = iterate(v);
      if (!items) return items.error();
      Array out;
      if (const Value* attr = a.kw("attribute")) {
        const Value* dflt = a.kw("default");
        for (const Value& x : *items) {
          Value r = get_attribute(x, attr->to_output());
          out.push_back(r.is_undefined() && dflt ? *dflt : r);
        }
        return Value(std::move(out));
      }
      if (a.positional.empty()) return Error{"map needs a filter name or attribute="};
      CallArgs fargs;
      fargs.positional.assign(a.positional.begin() + 1, a.positional.end());
      fargs.keyword = a.keyword;
      for (const Value& x : *items) {
        auto r = apply_filter(a.positional[0].to_output(), x, fargs);
        if (!r) return r.error();
        out.push_back(std::move(*r));
      }
      return Value(std::move(out));
    };
    f["unique"] = [](const Value& v, const CallArgs& a) -> Result<Value> {
      auto items = iterate(v);
      if (!items) return items.error();
      const Value* cs = arg(a, 0, "case_sensitive");
      const Value* attr = arg(a, 1, "attribute");
      Array out;
      std::unordered_set<std::string> seen;  // by repr; 1 and 1.0 count as distinct here
      for (const Value& x : *items) {
        Value k = sort_key(x, attr, cs && cs->truthy());
        std::string key = std::string(k.type_name()) + ":" + k.repr();
        if (!seen.insert(std::move(key)).second) continue;
        out.push_back(x);
      }
      return Value(std::move(out));
    };
    f["reverse"] = [](const Value& v, const CallArgs&) -> Result<Value> {
      if (v.is_string()) {
        std::vector<std::string> chars = utf8_chars(v.as_string());
        std::string out;
        for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += *it;
        return Value(std::move(out));
      }
      auto items = iterate(v);
      if (!items) return items.error();
      std::reverse(items->begin(), items->end());
      return Value(std::move(*items));
    };
    f["sort"] = [](const Value& v, const CallArgs& a) -> Result<Value> {
      auto items = iterate(v);
      if (!items) return items.error();
      const Value* rev = arg(a, 0, "reverse");
      const Value* cs = arg(a, 1, "case_sensitive");
      const Value* attr = arg(a, 2, "attribute");
      bool reverse = rev && rev->truthy();
      Status err = ok_status();
      std::stable_sort(items->begin(), items->end(), [&](const Value& x, const Value& y) {
        Value kx = sort_key(x, attr, cs && cs->truthy()), ky = sort_key(y, attr, cs && cs->truthy());
        auto lt = reverse ? less_than(ky, kx) : less_than(kx, ky);
        if (!lt) err = lt.error();
        return lt && *lt;
      });
      if (!err) return err.error();
      return Value(std::move(*items));
    };
    f["round"] = [](const Value& v, const CallArgs& a) -> Result<Value> {
      if (!v.is_number() && !v.is_bool()) return Error{"round expects a number"};
      int64_t prec = as_int_or(arg(a, 0, "precision"), 0);
      const Value* method = arg(a, 1, "method");
      std::string m = method ? method->to_output() : "common";
      if (m == "common" && (v.is_int() || v.is_bool())) return v.is_bool() ? Value(int64_t{v.as_bool()}) : v;
      double scale = std::pow(10.0, static_cast<double>(std::clamp<int64_t>(prec, -300, 300)));
      double x = v.is_bool() ? v.as_bool() : v.as_float();
      // Python's round() rounds halves to even; nearbyint does that in the default FP mode.
      double r = m == "ceil"    ? std::ceil(x * scale)
                 : m == "floor" ? std::floor(x * scale)
                                : std::nearbyint(x * scale);
      return Value(r / scale);
    };
    f["abs"] = [](const Value& v, const CallArgs&) -> Result<Value> {
      if (v.is_int()) {
        if (v.as_int() == INT64_MIN) return Error{"integer overflow"};
        return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
      }
      if (v.is_float()) return Value(std::fabs(v.as_float()));
      if (v.is_bool()) return Value(int64_t{v.as_bool()});
      return Error{std::string("bad operand type for abs(): '") + v.type_name() + "'"};
    };
    f["indent"] = [](const Value& v, const CallArgs& a) -> Result<Value> {
      const Value* w = arg(a, 0, "width");
      std::string pad = !w               ? "    "
                        : w->is_string() ? w->as_string()
                                         : std::string(std::clamp<int64_t>(as_int_or(w, 4), 0, 256), ' ');
      const Value* first = arg(a, 1, "first");
      const Value* blank = arg(a, 2, "blank");
      return Value(indent(v.to_output(), pad, first && first->truthy(), blank && blank->truthy()));
    };
    f["wordcount"] = [](const Value& v, const CallArgs&) -> Result<Value> {
      std::string s = v.to_output();
      int64_t n = 0;
      bool in_word = false;
      for (char c : s) {
        bool w =
            std::isalnum(static_cast<unsigned char>(c)) || c == '_' || static_cast<unsigned char>(c) >= 0x80;
        if (w && !in_word) ++n;
        in_word = w;
      }
      return Value(n);
    };
    f["min"] = [](const Value& v, const CallArgs& a) -> Result<Value> {
      auto items = iterate(v);
      if (!items) return items.error();
      Value best;
      for (const Value& x : *items) {
        auto lt = best.is_undefined() ? Result<bool>(true)
                                      : less_than(sort_key(x, arg(a, 1, "attribute"), false),
                                                  sort_key(best, arg(a, 1, "attribute"), false));
        if (!lt) return lt.error();
        if (*lt) best = x;
      }
      return best;
    };
    f["max"] = [](const Value& v, const CallArgs& a) -> Result<Value> {
      auto items = iterate(v);
      if (!items) return items.error();
      Value best;
      for (const Value& x : *items) {
        auto lt = best.is_undefined() ? Result<bool>(true)
                                      : less_than(sort_key(best, arg(a, 1, "attribute"), false),
                                                  sort_key(x, arg(a, 1, "attribute"), false));
        if (!lt) return lt.error();
        if (*lt) best = x;
      }
      return best;
    };
    f["sum"] = [](const Value& v, const CallArgs& a) -> Result<Value> {
      auto items = iterate(v);
      if (!items) return items.error();
      const Value* attr = arg(a, 0, "attribute");
      Value total = arg(a, 1, "start") ? *arg(a, 1, "start") : Value(0);
      for (const Value& x : *items) {
        Value y = attr && attr->is_string() ? get_attribute(x, attr->as_string()) : x;
        if (!(y.is_number() || y.is_bool()) || !(total.is_number() || total.is_bool()))
          return Error{"sum expects numbers"};
        if (total.is_int() && y.is_int()) {
          int64_t r;
          if (__builtin_add_overflow(total.as_int(), y.as_int(), &r)) return Error{"integer overflow"};
          total = Value(r);
        } else {
          total = Value(total.as_float() + (y.is_bool() ? y.as_bool() : y.as_float()));
        }
      }
      return total;
    };
    f["format"] = [](const Value& v, const CallArgs& a) -> Result<Value> {
      if (!a.keyword.empty()) {
        if (!a.positional.empty()) return Error{"format: positional and keyword arguments cannot be mixed"};
        Object o;
        for (const auto& [k, x] : a.keyword) o.set(k, x);
        return percent_format(v.to_output(), Value(std::move(o)));
      }
      return percent_format(v.to_output(), Value(a.positional));
    };
    f["attr"] = [](const Value& v, const CallArgs& a) -> Result<Value> {
      const Value* name = arg(a, 0, "name");
      if (!name || !v.is_object()) return Value();
      const Value* r = v.object().find(name->to_output());
      return r ? *r : Value();
    };
    return f;
  }();
  return table;
}

using TestFn = std::function<Result<bool>(const Value&, const CallArgs&)>;

bool has_cased(const std::string& s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; });
}

Result<bool> compare_test(const Value& v, const CallArgs& a, const char* op) {
  const Value* other = arg(a, 0, "other");
  if (!other) return Error{std::string("test '") + op + "' needs an argument"};
  std::string o = op;
  if (o == "==") return equals(v, *other);
  if (o == "!=") return !equals(v, *other);
  bool swap = o == ">" || o == "<=";
  auto lt = swap ? less_than(*other, v) : less_than(v, *other);
  if (!lt) return lt.error();
  return (o == "<" || o == ">") ? *lt : !*lt;
}

const std::unordered_map<std::string, TestFn>& tests() {
  static const std::unordered_map<std::string, TestFn> table = [] {
    std::unordered_map<std::string, TestFn> t;
    auto simple = [&](const char* name, std::function<bool(const Value&)> fn) {
      t[name] = [fn](const Value& v, const CallArgs&) -> Result<bool> { return fn(v); };
    };
    simple("defined", [](const Value& v) { return !v.is_undefined(); });
    simple("undefined", [](const Value& v) { return v.is_undefined(); });
    simple("none", [](const Value& v) { return v.is_none(); });
    simple("boolean", [](const Value& v) { return v.is_bool(); });
    simple("true", [](const Value& v) { return v.is_bool() && v.as_bool(); });
    simple("false", [](const Value& v) { return v.is_bool() && !v.as_bool(); });
    simple("integer", [](const Value& v) { return v.is_int(); });
    simple("float", [](const Value& v) { return v.is_float(); });
    simple("number", [](const Value& v) { return v.is_number() || v.is_bool(); });
    simple("string", [](const Value& v) { return v.is_string(); });
    simple("mapping", [](const Value& v) { return v.is_object(); });
    // Jinja's Undefined iterates as empty, so it counts as iterable.
    simple("iterable",
           [](const Value& v) { return v.is_string() || v.is_array() || v.is_object() || v.is_undefined(); });
    simple("sequence", [](const Value& v) { return v.is_string() || v.is_array() || v.is_object(); });
    simple("callable", [](const Value& v) { return v.is_callable(); });
    simple("escaped", [](const Value&) { return false; });
    // str(value).islower() / isupper(): some cased letter, none of the other case.
    simple("lower",
           [](const Value& v) { return has_cased(v.to_output()) && lower(v.to_output()) == v.to_output(); });
    simple("upper",
           [](const Value& v) { return has_cased(v.to_output()) && upper(v.to_output()) == v.to_output(); });
    simple("odd", [](const Value& v) {
      return (v.is_int() && v.as_int() % 2 != 0) || (v.is_bool() && v.as_bool());
    });
    simple("even", [](const Value& v) {
      return (v.is_int() && v.as_int() % 2 == 0) || (v.is_bool() && !v.as_bool());
    });
    t["divisibleby"] = [](const Value& v, const CallArgs& a) -> Result<bool> {
      const Value* n = arg(a, 0, "num");
      auto as_i = [](const Value& x) { return x.is_bool() ? int64_t{x.as_bool()} : x.as_int(); };
      if (!n || !(n->is_int() || n->is_bool()) || !(v.is_int() || v.is_bool()))
        return Error{"divisibleby needs integers"};
      if (as_i(*n) == 0) return Error{"divisibleby: division by zero"};
      return as_i(*n) == -1 || as_i(v) % as_i(*n) == 0;
    };
    for (const char* name : {"eq", "equalto", "=="})
      t[name] = [](auto& v, auto& a) { return compare_test(v, a, "=="); };
    for (const char* name : {"ne", "!="}) t[name] = [](auto& v, auto& a) { return compare_test(v, a, "!="); };
    for (const char* name : {"lt", "lessthan", "<"})
      t[name] = [](auto& v, auto& a) { return compare_test(v, a, "<"); };
    for (const char* name : {"le", "<="}) t[name] = [](auto& v, auto& a) { return compare_test(v, a, "<="); };
    for (const char* name : {"gt", "greaterthan", ">"})
      t[name] = [](auto& v, auto& a) { return compare_test(v, a, ">"); };
    for (const char* name : {"ge", ">="}) t[name] = [](auto& v, auto& a) { return compare_test(v, a, ">="); };
    t["sameas"] = [](const Value& v, const CallArgs& a) -> Result<bool> {
      const Value* o = arg(a, 0, "other");
      if (!o) return Error{"sameas needs an argument"};
      if (v.kind() != o->kind()) return false;
      if (v.is_array()) return &v.array() == &o->array();
      if (v.is_object()) return &v.object() == &o->object();
      return equals(v, *o);
    };
    t["in"] = [](const Value& v, const CallArgs& a) -> Result<bool> {
      const Value* seq = arg(a, 0, "seq");
      if (!seq) return Error{"test 'in' needs an argument"};
      if (seq->is_string()) return v.is_string() && seq->as_string().find(v.as_string()) != std::string::npos;
      if (seq->is_object()) return v.is_string() && seq->object().find(v.as_string()) != nullptr;
      auto items = iterate(*seq);
      if (!items) return items.error();
      return std::any_of(items->begin(), items->end(), [&](const Value& x) { return equals(x, v); });
    };
    return t;
  }();
  return table;
}

}  // namespace

Result<Value> apply_filter(const std::string& name, const Value& operand, const CallArgs& args) {
  const auto& table = filters();
  auto it = table.find(name);
  if (it == table.end()) return Error{"unknown filter '" + name + "'"};
  return it->second(operand, args);
}

Result<bool> apply_test(const std::string& name, const Value& operand, const CallArgs& args) {
  const auto& table = tests();
  auto it = table.find(name);
  if (it == table.end()) return Error{"unknown test '" + name + "'"};
  return it->second(operand, args);
}

}  // namespace kvserve::jinja
