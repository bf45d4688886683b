// Methods of dicts and lists, iteration, method dispatch and the global functions.
#include "jinja/builtins.h"

#include <algorithm>
#include <ctime>

#include "jinja/taint.h"
#include "jinja/text.h"

namespace kvserve::jinja {
namespace {

using namespace text;

constexpr int64_t kMaxRange = 100'000;      // range() or a list longer than this is a runaway template
constexpr size_t kMaxIterBytes = 1u << 20;  // strings iterated character by character

Result<Value> object_method(Object& o, const std::string& name, const CallArgs& a) {
  if (name == "items") {
    Array out;
    for (const auto& [k, v] : o.items()) out.push_back(Value(Array{Value(k), v}));
    return Value(std::move(out));
  }
  if (name == "keys" || name == "values") {
    Array out;
    for (const auto& [k, v] : o.items()) out.push_back(name == "keys" ? Value(k) : v);
    return Value(std::move(out));
  }
  if (name == "get") {
    const Value* key = arg(a, 0, "key");
    if (!key) return Error{"get needs a key"};
    const Value* v = o.find(key->to_output());
    if (v) return *v;
    const Value* d = arg(a, 1, "default");
    return d ? *d : Value::none();
  }
  if (name == "update") {
    for (const Value& x : a.positional)
      if (reaches(x, &o)) return Error{"cannot insert a dict into itself"};
    for (const auto& kv : a.keyword)
      if (reaches(kv.second, &o)) return Error{"cannot insert a dict into itself"};
    if (const Value* other = arg(a, 0, "other"); other && other->is_object())
      for (const auto& [k, v] : other->object().items()) o.set(k, v);
    for (const auto& [k, v] : a.keyword) o.set(k, v);
    return Value::none();
  }
  return Error{"'dict' object has no attribute '" + name + "'"};
}

Result<Value> array_method(Array& arr, const std::string& name, const CallArgs& a) {
  if (name == "append") {
    if (a.positional.size() != 1) return Error{"append takes exactly one argument"};
    if (arr.size() >= static_cast<size_t>(kMaxRange)) return Error{"list grew too large"};
    if (reaches(a.positional[0], &arr)) return Error{"cannot append a list to itself"};
    arr.push_back(a.positional[0]);
    return Value::none();
  }
  if (name == "extend") {
    if (a.positional.size() != 1) return Error{"extend takes exactly one argument"};
    auto items = iterate(a.positional[0]);
    if (!items) return items.error();
    if (arr.size() + items->size() > static_cast<size_t>(kMaxRange)) return Error{"list grew too large"};
    arr.insert(arr.end(), items->begin(), items->end());
    return Value::none();
  }
  if (name == "pop") {
    if (arr.empty()) return Error{"pop from empty list"};
    int64_t n = static_cast<int64_t>(arr.size());
    int64_t i = as_int_or(arg(a, 0, "index"), -1);
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Error{"pop index out of range"};
    Value v = arr[i];
    arr.erase(arr.begin() + i);
    return v;
  }
  if (name == "count") {
    const Value* x = arg(a, 0, "value");
    if (!x) return Error{"count takes exactly one argument"};
    return Value(static_cast<int64_t>(
        std::count_if(arr.begin(), arr.end(), [&](const Value& y) { return equals(y, *x); })));
  }
  if (name == "index") {
    const Value* x = arg(a, 0, "value");
    for (size_t i = 0; x && i < arr.size(); ++i)
      if (equals(arr[i], *x)) return Value(static_cast<int64_t>(i));
    return Error{"value is not in list"};
  }
  return Error{"'list' object has no attribute '" + name + "'"};
}

}  // namespace

Result<Array> iterate(const Value& v) {
  switch (v.kind()) {
    case Kind::Array: return v.array();
    case Kind::Object: {
      Array keys;
      for (const auto& [k, x] : v.object().items())
        keys.push_back(v.object().untrusted_keys() ? untrusted(k) : Value(k));
      return keys;
    }
    case Kind::String: {
      // A character becomes a Value of about 100 bytes: iterating a long string (joins of
      // joins multiply lengths) would take gigabytes.
      if (v.as_string().size() > kMaxIterBytes)
        return Error{"string of " + std::to_string(v.as_string().size()) + " bytes is too long to iterate"};
      Array out;
      size_t at = 0;  // each character keeps its marks
      for (std::string& c : utf8_chars(v.as_string())) {
        out.push_back(substring(v, at, at + c.size()));
        at += c.size();
      }
      return out;
    }
    case Kind::Undefined:
    case Kind::None: return Array{};
    default: return Error{std::string("'") + v.type_name() + "' object is not iterable"};
  }
}

Result<Value> call_method(const Value& obj, const std::string& name, const CallArgs& args) {
  switch (obj.kind()) {
    case Kind::String: return text::string_method(obj.as_string(), name, args);
    case Kind::Object: return object_method(obj.object(), name, args);
    case Kind::Array: return array_method(obj.array(), name, args);
    case Kind::Undefined: return Value();  // lenient like attribute access on undefined
    default: return Error{std::string("'") + obj.type_name() + "' object has no attribute '" + name + "'"};
  }
}

void add_global_functions(Object& g) {
  g.set("range", Value::function("range", [](const CallArgs& a) -> Result<Value> {
          const auto& p = a.positional;
          if (p.empty() || p.size() > 3) return Error{"range expects 1 to 3 integer arguments"};
          for (const Value& x : p)
            if (!x.is_int()) return Error{"range expects integers"};
          int64_t start = p.size() == 1 ? 0 : p[0].as_int();
          int64_t stop = p.size() == 1 ? p[0].as_int() : p[1].as_int();
          int64_t step = p.size() == 3 ? p[2].as_int() : 1;
          if (step == 0) return Error{"range() arg 3 must not be zero"};
          Array out;
          for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
            if (static_cast<int64_t>(out.size()) >= kMaxRange) return Error{"range too large"};
            out.push_back(Value(i));
            if ((step > 0 && i > INT64_MAX - step) || (step < 0 && i < INT64_MIN - step)) break;
          }
          return Value(std::move(out));
        }));
  auto make_object = [](const CallArgs& a) -> Result<Value> {
    Object o;
    for (const Value& x : a.positional) {
      if (!x.is_object()) return Error{"expected a mapping argument"};
      for (const auto& [k, v] : x.object().items()) o.set(k, v);
    }
    for (const auto& [k, v] : a.keyword) o.set(k, v);
    return Value(std::move(o));
  };
  g.set("namespace", Value::function("namespace", make_object));
  g.set("dict", Value::function("dict", make_object));
  g.set("raise_exception", Value::function("raise_exception", [](const CallArgs& a) -> Result<Value> {
          return Error{a.positional.empty() ? std::string("raise_exception called")
                                            : a.positional[0].to_output()};
        }));
  g.set("strftime_now", Value::function("strftime_now", [](const CallArgs& a) -> Result<Value> {
          if (a.positional.empty() || !a.positional[0].is_string())
            return Error{"strftime_now expects a format"};
          std::time_t now = std::time(nullptr);
          std::tm tm{};
          localtime_r(&now, &tm);
          char buf[256];
          size_t n = std::strftime(buf, sizeof buf, a.positional[0].as_string().c_str(), &tm);
          return Value(std::string(buf, n));
        }));
}

}  // namespace kvserve::jinja
