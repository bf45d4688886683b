// Dynamic value of the chat-template interpreter (a Jinja2 subset). Arrays, objects and
// callables have reference semantics like Python lists/dicts, so `list.append(x)` and
// `{% set ns.x = ... %}` mutate the shared object; everything else is copied.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"
#include "core/text_range.h"

namespace kvserve::jinja {

class Value;
using Array = std::vector<Value>;

class Object;
struct CallArgs;

using NativeFn = std::function<Result<Value>(const CallArgs&)>;

enum class Kind : uint8_t { Undefined, None, Bool, Int, Float, String, Array, Object, Callable };

class Value {
 public:
  Value() = default;  // undefined
  static Value none() {
    Value v;
    v.kind_ = Kind::None;
    return v;
  }
  Value(bool b) : kind_(Kind::Bool), b_(b) {}
  Value(int v) : kind_(Kind::Int), i_(v) {}
  Value(int64_t v) : kind_(Kind::Int), i_(v) {}
  Value(double v) : kind_(Kind::Float), f_(v) {}
  Value(std::string s) : kind_(Kind::String), s_(std::move(s)) {}
  Value(std::string s, std::shared_ptr<const TextRanges> taint) : kind_(Kind::String), s_(std::move(s)) {
    set_taint(std::move(taint));
  }
  Value(const char* s) : kind_(Kind::String), s_(s) {}
  Value(Array a) : kind_(Kind::Array), a_(std::make_shared<Array>(std::move(a))) {}
  Value(Object o);  // defined below Object
  // taint_aware: the function keeps request data's marks itself (macros: their output is
  // rendered); others' results are marked wholly untrusted when an input is (taint.h).
  static Value function(std::string name, NativeFn fn, bool taint_aware = false);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_int() const { return kind_ == Kind::Int; }
  bool is_float() const { return kind_ == Kind::Float; }
  bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_array() const { return kind_ == Kind::Array; }
  bool is_object() const { return kind_ == Kind::Object; }
  bool is_callable() const { return kind_ == Kind::Callable; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return i_; }
  double as_float() const { return kind_ == Kind::Int ? static_cast<double>(i_) : f_; }
  const std::string& as_string() const { return s_; }
  Array& array() const { return *a_; }
  Object& object() const { return *o_; }
  const NativeFn& callable() const { return fn_->fn; }
  const std::string& callable_name() const { return fn_->name; }
  bool callable_taint_aware() const { return fn_->taint_aware; }

  // A string's bytes that came from request data (jinja/taint.h); null: none.
  const TextRanges* taint() const { return taint_.get(); }
  void set_taint(std::shared_ptr<const TextRanges> t) { taint_ = t && !t->empty() ? std::move(t) : nullptr; }

  // Python truthiness; undefined is falsy.
  bool truthy() const;
  // What `{{ v }}` prints: str() of the Python value, "" for undefined.
  std::string to_output() const;
  // Python repr(), used inside containers ("['a', 1]").
  std::string repr() const;
  const char* type_name() const;

 private:
  struct Fn {
    std::string name;
    NativeFn fn;
    bool taint_aware = false;
  };
  Kind kind_ = Kind::Undefined;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::string s_;
  std::shared_ptr<Array> a_;
  std::shared_ptr<Object> o_;
  std::shared_ptr<Fn> fn_;
  std::shared_ptr<const TextRanges> taint_;
};

// Object and CallArgs hold Values, so they follow Value's definition (a pair or vector
// of an incomplete type is not portable).
// Insertion-ordered mapping (Python dicts keep insertion order; templates iterate them).
// Chat-template objects are small, so lookup is a linear scan.
class Object {
 public:
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  void set(std::string key, Value v);
  bool erase(std::string_view key);
  size_t size() const { return items_.size(); }
  // Keys from request data (taint.h): they print as untrusted text.
  bool untrusted_keys() const { return untrusted_keys_; }
  void set_untrusted_keys() { untrusted_keys_ = true; }
  const std::vector<std::pair<std::string, Value>>& items() const { return items_; }

 private:
  std::vector<std::pair<std::string, Value>> items_;
  bool untrusted_keys_ = false;
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
  const Value* kw(std::string_view name) const;
};

inline Value::Value(Object o) : kind_(Kind::Object), o_(std::make_shared<Object>(std::move(o))) {}

// Whether `container` (an Array or Object address) is reachable from `v`. Mutations use it
// to refuse reference cycles, which shared ownership could never free.
bool reaches(const Value& v, const void* container);

// Python ==: numbers compare by value (True == 1), containers element-wise.
bool equals(const Value& a, const Value& b);
// Python <, defined for numbers, strings and arrays; Error otherwise.
Result<bool> less_than(const Value& a, const Value& b);
// Python repr() of a float (shortest round-trip digits, "1.0", "1e+20").
std::string format_float(double v);

struct JsonOptions {
  int indent = -1;  // < 0: single line
  bool sort_keys = false;
  bool ensure_ascii = false;
  std::string item_sep;  // empty: Python's default for the indent mode
  std::string key_sep;
};
// json.dumps as transformers' tojson calls it (ensure_ascii=False by default).
std::string to_json(const Value& v, const JsonOptions& opt = {});

// UTF-8 helpers: Python indexes strings by code point.
std::vector<std::string> utf8_chars(std::string_view s);
size_t utf8_length(std::string_view s);

}  // namespace kvserve::jinja
