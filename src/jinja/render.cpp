#include "jinja/render.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <memory>

#include "jinja/builtins.h"

namespace kvserve::jinja {
namespace {

enum class Flow { Normal, Break, Continue };

Error located(int line, const Error& e) {
  if (e.message.rfind("template ", 0) == 0) return e;  // already located deeper down
  return Error{"template error at line " + std::to_string(line) + ": " + e.message};
}

Error type_error(const char* op, const Value& a, const Value& b) {
  return Error{std::string("unsupported operand type(s) for ") + op + ": '" + a.type_name() + "' and '" +
               b.type_name() + "'"};
}

// Python's floor division and modulo on integers.
int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}
int64_t floor_mod(int64_t a, int64_t b) {
  int64_t r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}

Result<Value> arithmetic(const std::string& op, const Value& a, const Value& b) {
  auto numeric = [](const Value& v) { return v.is_number() || v.is_bool(); };
  auto as_i = [](const Value& v) { return v.is_bool() ? int64_t{v.as_bool()} : v.as_int(); };
  auto as_f = [](const Value& v) { return v.is_bool() ? double{v.as_bool() ? 1.0 : 0.0} : v.as_float(); };
  if (op == "+") {
    if (a.is_string() && (b.is_string() || b.is_undefined())) return Value(a.as_string() + b.to_output());
    if (a.is_undefined() && b.is_string()) return b;
    if (a.is_array() && b.is_array()) {
      Array r = a.array();
      r.insert(r.end(), b.array().begin(), b.array().end());
      return Value(std::move(r));
    }
  }
  if (op == "*" && (a.is_string() || a.is_array() || b.is_string() || b.is_array())) {
    const Value& seq = (a.is_string() || a.is_array()) ? a : b;
    const Value& n = (a.is_string() || a.is_array()) ? b : a;
    if (!n.is_int() && !n.is_bool()) return type_error("*", a, b);
    int64_t count = std::max<int64_t>(0, as_i(n));
    size_t unit = seq.is_string() ? seq.as_string().size() : seq.array().size();
    if (unit != 0 && static_cast<uint64_t>(count) > (64u << 20) / unit)
      return Error{"repetition result too large"};
    if (seq.is_string()) {
      std::string r;
      for (int64_t i = 0; i < count; ++i) r += seq.as_string();
      return Value(std::move(r));
    }
    Array r;
    for (int64_t i = 0; i < count; ++i) r.insert(r.end(), seq.array().begin(), seq.array().end());
    return Value(std::move(r));
  }
  if (!numeric(a) || !numeric(b)) return type_error(op.c_str(), a, b);
  bool ints = !a.is_float() && !b.is_float();
  if (ints) {
    int64_t x = as_i(a), y = as_i(b), r = 0;
    if (op == "+" && !__builtin_add_overflow(x, y, &r)) return Value(r);
    if (op == "-" && !__builtin_sub_overflow(x, y, &r)) return Value(r);
    if (op == "*" && !__builtin_mul_overflow(x, y, &r)) return Value(r);
    if (op == "//" || op == "%") {
      if (y == 0) return Error{"integer division or modulo by zero"};
      if (x == std::numeric_limits<int64_t>::min() && y == -1) return Error{"integer overflow"};
      return Value(op == "//" ? floor_div(x, y) : floor_mod(x, y));
    }
    if (op == "**" && y >= 0) {
      int64_t p = 1;
      for (int64_t i = 0; i < y; ++i)
        if (__builtin_mul_overflow(p, x, &p)) return Error{"integer overflow"};
      return Value(p);
    }
    if (op == "+" || op == "-" || op == "*") return Error{"integer overflow"};
  }
  double x = as_f(a), y = as_f(b);
  if (op == "+") return Value(x + y);
  if (op == "-") return Value(x - y);
  if (op == "*") return Value(x * y);
  if (op == "**") return Value(std::pow(x, y));
  if (y == 0) return Error{"division by zero"};
  if (op == "/") return Value(x / y);
  if (op == "//") return Value(std::floor(x / y));
  if (op == "%") {
    double r = std::fmod(x, y);
    return Value((r != 0 && ((r < 0) != (y < 0))) ? r + y : r);
  }
  return Error{"unknown operator " + op};
}

Result<bool> contains(const Value& container, const Value& item) {
  if (container.is_string()) {
    if (!item.is_string())
      return Error{std::string("'in <string>' requires string as left operand, not ") + item.type_name()};
    return container.as_string().find(item.as_string()) != std::string::npos;
  }
  if (container.is_array()) {
    for (const Value& v : container.array())
      if (equals(v, item)) return true;
    return false;
  }
  if (container.is_object()) return item.is_string() && container.object().find(item.as_string()) != nullptr;
  if (container.is_undefined() || container.is_none()) return false;
  return Error{std::string("argument of type '") + container.type_name() + "' is not iterable"};
}

// Python subscript: list/str index (negative from the end) or dict key; misses are undefined.
Value subscript(const Value& obj, const Value& key) {
  if (obj.is_object()) {
    const Value* v = obj.object().find(key.is_string() ? key.as_string() : key.to_output());
    return v ? *v : Value();
  }
  if ((obj.is_array() || obj.is_string()) && (key.is_int() || key.is_bool())) {
    int64_t i = key.is_bool() ? key.as_bool() : key.as_int();
    if (obj.is_array()) {
      int64_t n = static_cast<int64_t>(obj.array().size());
      if (i < 0) i += n;
      return i >= 0 && i < n ? obj.array()[i] : Value();
    }
    std::vector<std::string> chars = utf8_chars(obj.as_string());
    int64_t n = static_cast<int64_t>(chars.size());
    if (i < 0) i += n;
    return i >= 0 && i < n ? Value(chars[i]) : Value();
  }
  return Value();
}

Result<Value> slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  auto get = [](const Value& v, int64_t dflt) -> Result<int64_t> {
    if (v.is_undefined() || v.is_none()) return dflt;
    if (v.is_int()) return v.as_int();
    return Error{"slice indices must be integers or None"};
  };
  auto st = get(step, 1);
  if (!st) return st.error();
  if (*st == 0) return Error{"slice step cannot be zero"};
  std::vector<std::string> chars;
  int64_t n;
  if (obj.is_string()) {
    chars = utf8_chars(obj.as_string());
    n = static_cast<int64_t>(chars.size());
  } else if (obj.is_array()) {
    n = static_cast<int64_t>(obj.array().size());
  } else {
    return Value();  // like Jinja's getitem: a failed subscript is undefined, not an error
  }
  // CPython's PySlice_AdjustIndices.
  auto clamp = [&](Result<int64_t> r, bool is_start) -> int64_t {
    int64_t v = *r;
    if (v < 0) {
      v += n;
      if (v < 0) v = *st < 0 ? -1 : 0;
    } else if (v >= n) {
      v = *st < 0 ? n - 1 : n;
    }
    (void)is_start;
    return v;
  };
  auto b = get(start, *st < 0 ? n - 1 : 0);
  auto e = get(stop, *st < 0 ? -n - 1 : n);
  if (!b) return b.error();
  if (!e) return e.error();
  int64_t lo = clamp(b, true), hi = clamp(e, false);
  if (start.is_undefined() || start.is_none()) lo = *st < 0 ? n - 1 : 0;
  if (stop.is_undefined() || stop.is_none()) hi = *st < 0 ? -1 : n;
  std::string s;
  Array a;
  for (int64_t i = lo; *st > 0 ? i < hi : i > hi; i += *st) {
    if (obj.is_string())
      s += chars[i];
    else
      a.push_back(obj.array()[i]);
  }
  return obj.is_string() ? Value(std::move(s)) : Value(std::move(a));
}

class Renderer {
 public:
  Renderer(const RenderLimits& limits, RenderedText& out) : limits_(limits), out_(&out) {}

  Result<std::string> run(const Template& tmpl, const Object& context) {
    Object globals;
    add_global_functions(globals);
    for (const auto& [k, v] : context.items()) globals.set(k, v);
    frames_.push_back(std::move(globals));
    frames_.emplace_back();  // template-level `set`s
    // Without request data (taint.h) there are no marks to keep: skip the checks.
    for (const auto& [k, v] : context.items()) track_ = track_ || is_tainted(v);
    auto r = exec(tmpl.body);
    if (!r) return r.error();
    return std::string();
  }

 private:
  // ---- variables ----
  const Value* lookup(const std::string& name) const {
    for (size_t i = frames_.size(); i-- > 0;) {
      if (i < floor_ && i > 1) continue;  // frames of a macro's caller are not visible inside it
      if (const Value* v = frames_[i].find(name)) return v;
    }
    return nullptr;
  }

  // ---- output ----
  Status write(const std::string& s, const TextRanges* untrusted = nullptr) {
    if (out_->text.size() + s.size() > limits_.max_output_bytes)
      return Error{"template output exceeds " + std::to_string(limits_.max_output_bytes) + " bytes"};
    out_->append(s, untrusted);
    return ok_status();
  }
  // What {{ v }} prints, with the bytes that came from request data marked.
  Status write(const Value& v) {
    const Value o = output_of(v);
    return write(o.as_string(), o.taint());
  }

  // ---- statements ----
  Result<Flow> exec(const Body& body) {
    for (const StmtPtr& s : body) {
      auto r = exec(*s);
      if (!r) return located(s->line, r.error());
      if (*r != Flow::Normal) return r;
    }
    return Flow::Normal;
  }

  Result<Flow> exec(const Stmt& s) {
    switch (s.kind) {
      case StmtKind::Text: {
        auto w = write(s.text);
        if (!w) return w.error();
        return Flow::Normal;
      }
      case StmtKind::Output: {
        auto v = eval(*s.expr);
        if (!v) return v.error();
        auto w = write(*v);
        if (!w) return w.error();
        return Flow::Normal;
      }
      case StmtKind::If:
        for (size_t i = 0; i < s.conds.size(); ++i) {
          auto c = eval(*s.conds[i]);
          if (!c) return c.error();
          if (c->truthy()) return exec(s.bodies[i]);
        }
        return exec(s.else_body);
      case StmtKind::For: return exec_for(s);
      case StmtKind::Set: return exec_set(s);
      case StmtKind::Macro: {
        auto fn = make_macro(s);
        if (!fn) return fn.error();
        frames_.back().set(s.text, std::move(*fn));
        return Flow::Normal;
      }
      case StmtKind::CallBlock: {
        caller_ = &s.body;
        auto v = eval(*s.expr);
        caller_ = nullptr;
        if (!v) return v.error();
        auto w = write(*v);
        if (!w) return w.error();
        return Flow::Normal;
      }
      case StmtKind::FilterBlock: {
        Flow flow = Flow::Normal;
        auto body = capture_scoped(s.body, &flow);
        if (!body) return body.error();
        if (flow != Flow::Normal) return flow;  // break/continue leave the loop body, as in Jinja
        auto v = eval_filter(*s.expr, std::move(*body));
        if (!v) return v.error();
        auto w = write(*v);
        if (!w) return w.error();
        return Flow::Normal;
      }
      case StmtKind::Generation: return exec(s.body);
      case StmtKind::Break: return Flow::Break;
      case StmtKind::Continue: return Flow::Continue;
    }
    return Flow::Normal;
  }

  // Renders `body` into a string of its own (macro bodies, filter blocks, block sets).
  // `flow` (optional) receives a break/continue that ended the body early.
  // The marks of request data go with the text (a string Value).
  Result<Value> capture(const Body& body, Flow* flow = nullptr) {
    RenderedText buf;
    RenderedText* saved = out_;
    out_ = &buf;
    auto r = exec(body);
    out_ = saved;
    if (!r) return r.error();
    if (flow) *flow = *r;
    return buf.take_value();
  }

  Status assign_targets(Object& frame, const std::vector<std::string>& targets, const Value& v) {
    if (targets.size() == 1) {
      frame.set(targets[0], v);
      return ok_status();
    }
    if (!v.is_array() && !v.is_string())
      return Error{std::string("cannot unpack non-iterable ") + v.type_name() + " object"};
    auto items = iterate(v);
    if (!items) return items.error();
    if (items->size() != targets.size())
      return Error{"cannot unpack " + std::to_string(items->size()) + " values into " +
                   std::to_string(targets.size()) + " variables"};
    for (size_t i = 0; i < targets.size(); ++i) frame.set(targets[i], (*items)[i]);
    return ok_status();
  }

  Result<Flow> exec_set(const Stmt& s) {
    Value v;
    if (s.expr) {
      auto r = eval(*s.expr);
      if (!r) return r.error();
      v = std::move(*r);
    } else {
      Flow flow = Flow::Normal;
      auto r = capture_scoped(s.body, &flow);
      if (!r) return r.error();
      if (flow != Flow::Normal) return flow;  // the assignment never happens
      v = std::move(*r);
    }
    if (s.cond) {  // {% set ns.attr = v %}
      auto ns = eval(*s.cond);
      if (!ns) return ns.error();
      if (!ns->is_object()) return Error{"cannot assign attribute '" + s.text + "' on a " + ns->type_name()};
      if (reaches(v, &ns->object())) return Error{"cannot store a namespace inside itself"};
      ns->object().set(s.text, std::move(v));
      return Flow::Normal;
    }
    auto st = assign_targets(frames_.back(), s.targets, v);
    if (!st) return st.error();
    return Flow::Normal;
  }

  Result<Flow> exec_for(const Stmt& s) {
    auto seq = eval(*s.expr);
    if (!seq) return seq.error();
    auto all = iterate(*seq);
    if (!all) return all.error();
    Array items;
    if (s.cond) {  // the inline filter runs before loop.length etc. are known
      for (const Value& v : *all) {
        if (!count_iteration()) return loop_limit_error();
        frames_.emplace_back();
        auto st = assign_targets(frames_.back(), s.targets, v);
        Result<Value> c = st ? eval(*s.cond) : Result<Value>(st.error());
        frames_.pop_back();
        if (!c) return c.error();
        if (c->truthy()) items.push_back(v);
      }
    } else {
      items = std::move(*all);
    }
    const int64_t n = static_cast<int64_t>(items.size());
    bool completed = false;
    for (int64_t i = 0; i < n; ++i) {
      if (!count_iteration()) return loop_limit_error();
      Object loop;
      loop.set("index", Value(i + 1));
      loop.set("index0", Value(i));
      loop.set("revindex", Value(n - i));
      loop.set("revindex0", Value(n - i - 1));
      loop.set("first", Value(i == 0));
      loop.set("last", Value(i == n - 1));
      loop.set("length", Value(n));
      loop.set("depth", Value(1));
      loop.set("depth0", Value(0));
      loop.set("previtem", i > 0 ? items[i - 1] : Value());
      loop.set("nextitem", i + 1 < n ? items[i + 1] : Value());
      loop.set("cycle", Value::function("cycle", [i](const CallArgs& a) -> Result<Value> {
                 if (a.positional.empty()) return Error{"no items for cycling given"};
                 return a.positional[i % a.positional.size()];
               }));
      frames_.emplace_back();
      frames_.back().set("loop", Value(std::move(loop)));
      auto st = assign_targets(frames_.back(), s.targets, items[i]);
      Result<Flow> r = st ? exec(s.body) : Result<Flow>(st.error());
      frames_.pop_back();
      if (!r) return r.error();
      if (*r == Flow::Normal) completed = true;
      if (*r == Flow::Break) break;
    }
    // Jinja runs `else` unless some iteration reached the end of the body: an empty loop,
    // or one whose iterations all ended in break/continue.
    if (!completed) return exec(s.else_body);
    return Flow::Normal;
  }

  bool count_iteration() {
    if (++iterations_ > limits_.max_loop_iterations) return false;
    if ((iterations_ & 1023) == 0 && std::chrono::steady_clock::now() > deadline_) timed_out_ = true;
    return !timed_out_;
  }
  Error loop_limit_error() const {
    if (timed_out_)
      return Error{"template rendering took longer than " + std::to_string(limits_.max_render_ms) + " ms"};
    return Error{"template exceeded " + std::to_string(limits_.max_loop_iterations) + " loop iterations"};
  }

  // Block set, filter and call bodies assign in a scope of their own, as in Jinja.
  Result<Value> capture_scoped(const Body& body, Flow* flow = nullptr) {
    frames_.emplace_back();
    auto r = capture(body, flow);
    frames_.pop_back();
    return r;
  }

  // A macro sees the variables of the loops and macros around its definition (a closure).
  // The Renderer owns the captured frames, so a macro stored in a namespace it captured
  // cannot form an ownership cycle.
  Result<Value> make_macro(const Stmt& s) {
    const Stmt* m = &s;
    const std::vector<Object>* closure = &kNoClosure;
    size_t first = std::max<size_t>(2, floor_);
    if (frames_.size() > first) {
      if (closures_.size() >= kMaxClosures) return Error{"too many macro definitions"};
      closures_.push_back(std::make_unique<std::vector<Object>>(frames_.begin() + first, frames_.end()));
      closure = closures_.back().get();
    }
    return Value::function(
        s.text,
        [this, m, closure](const CallArgs& a) -> Result<Value> { return call_macro(*m, *closure, a); },
        /*taint_aware=*/true);
  }

  Result<Value> call_macro(const Stmt& m, const std::vector<Object>& closure, const CallArgs& a) {
    if (std::chrono::steady_clock::now() > deadline_) timed_out_ = true;
    if (timed_out_) return loop_limit_error();
    if (call_depth_ >= limits_.max_call_depth)
      return Error{"maximum macro recursion depth (" + std::to_string(limits_.max_call_depth) + ") exceeded"};
    Object frame;
    const Body* caller = caller_;
    caller_ = nullptr;
    if (a.positional.size() > m.params.size())
      return Error{"macro '" + m.text + "' takes " + std::to_string(m.params.size()) + " arguments"};
    for (size_t i = 0; i < m.params.size(); ++i) {
      const MacroParam& p = m.params[i];
      if (i < a.positional.size()) {
        frame.set(p.name, a.positional[i]);
      } else if (const Value* kv = a.kw(p.name)) {
        frame.set(p.name, *kv);
      } else if (p.default_value) {
        auto d = eval(*p.default_value);
        if (!d) return d.error();
        frame.set(p.name, std::move(*d));
      } else {
        frame.set(p.name, Value());
      }
    }
    if (caller) {
      size_t caller_floor = floor_, caller_frames = frames_.size();
      frame.set("caller", Value::function(
                              "caller",
                              [this, caller, caller_floor, caller_frames](const CallArgs&) -> Result<Value> {
                                // The caller body sees the frames of the template that wrote {% call %}.
                                std::vector<Object> saved(frames_.begin() + caller_frames, frames_.end());
                                frames_.resize(caller_frames);
                                size_t saved_floor = floor_;
                                floor_ = caller_floor;
                                auto r = capture_scoped(*caller);
                                floor_ = saved_floor;
                                for (auto& f : saved) frames_.push_back(std::move(f));
                                if (!r) return r.error();
                                return std::move(*r);
                              },
                              /*taint_aware=*/true));
    }
    size_t saved_floor = floor_, base = frames_.size();
    frames_.insert(frames_.end(), closure.begin(), closure.end());
    frames_.push_back(std::move(frame));
    floor_ = base;
    ++call_depth_;
    auto r = capture(m.body);
    --call_depth_;
    frames_.resize(base);
    floor_ = saved_floor;
    if (!r) return r.error();
    return std::move(*r);
  }

  // ---- expressions ----
  Result<CallArgs> eval_args(const Expr& e) {
    CallArgs args;
    for (const ExprPtr& x : e.items) {
      auto v = eval(*x);
      if (!v) return v.error();
      args.positional.push_back(std::move(*v));
    }
    for (const auto& [k, x] : e.kwargs) {
      auto v = eval(*x);
      if (!v) return v.error();
      args.keyword.emplace_back(k, std::move(*v));
    }
    return args;
  }

  Result<Value> eval_filter(const Expr& e, Value body) {
    Value operand;
    if (e.a) {
      auto v = e.a->kind == ExprKind::Filter ? eval_filter(*e.a, std::move(body)) : eval(*e.a);
      if (!v) return v.error();
      operand = std::move(*v);
    } else {
      operand = std::move(body);
    }
    auto args = eval_args(e);
    if (!args) return args.error();
    auto r = apply_filter(e.name, operand, *args);
    if (track_ && r && e.name != "join")  // join keeps the marks exactly; the others err on untrusted
      taint_result(*r, is_tainted(operand) || args_tainted(*args));
    return r;
  }

  // Functions that do not track request data's marks (all but macros) give a wholly
  // untrusted result when an input (the receiver of a method included) held any.
  Result<Value> eval_call(const Expr& e) {
    auto args = eval_args(e);
    if (!args) return args.error();
    const bool tainted_args = track_ && args_tainted(*args);
    auto called = [&](const Value& fn) -> Result<Value> {
      auto r = fn.callable()(*args);
      if (track_ && r && !fn.callable_taint_aware()) taint_result(*r, tainted_args);
      return r;
    };
    if (e.a->kind == ExprKind::Attr) {
      auto obj = eval(*e.a->a);
      if (!obj) return obj.error();
      const Value* field = obj->is_object() ? obj->object().find(e.a->name) : nullptr;
      if (field && field->is_callable()) return called(*field);
      auto r = call_method(*obj, e.a->name, *args);
      if (track_ && r) taint_result(*r, tainted_args || is_tainted(*obj));
      return r;
    }
    auto fn = eval(*e.a);
    if (!fn) return fn.error();
    if (!fn->is_callable()) {
      std::string what = e.a->kind == ExprKind::Name ? "'" + e.a->name + "'" : "value";
      return Error{what + " is not callable (" + fn->type_name() + ")"};
    }
    return called(*fn);
  }

  Result<Value> eval(const Expr& e) {
    switch (e.kind) {
      case ExprKind::Literal: return e.value;
      case ExprKind::Name: {
        const Value* v = lookup(e.name);
        return v ? *v : Value();
      }
      case ExprKind::List:
      case ExprKind::Tuple: {
        Array a;
        for (const ExprPtr& x : e.items) {
          auto v = eval(*x);
          if (!v) return v.error();
          a.push_back(std::move(*v));
        }
        return Value(std::move(a));
      }
      case ExprKind::Dict: {
        Object o;
        for (size_t i = 0; i + 1 < e.items.size(); i += 2) {
          auto k = eval(*e.items[i]);
          if (!k) return k.error();
          auto v = eval(*e.items[i + 1]);
          if (!v) return v.error();
          if (is_tainted(*k)) o.set_untrusted_keys();
          o.set(k->is_string() ? k->as_string() : k->to_output(), std::move(*v));
        }
        return Value(std::move(o));
      }
      case ExprKind::Attr: {
        auto obj = eval(*e.a);
        if (!obj) return obj.error();
        return subscript(*obj, Value(e.name));
      }
      case ExprKind::Index: {
        auto obj = eval(*e.a);
        if (!obj) return obj.error();
        auto key = eval(*e.b);
        if (!key) return key.error();
        Value r = subscript(*obj, *key);
        if (track_ && obj->is_string()) taint_result(r, is_tainted(*obj));  // a character of request data
        return r;
      }
      case ExprKind::Slice: {
        auto obj = eval(*e.a);
        if (!obj) return obj.error();
        Value bounds[3];
        const Expr* parts[3] = {e.b.get(), e.c.get(), e.items.empty() ? nullptr : e.items[0].get()};
        for (int i = 0; i < 3; ++i) {
          if (!parts[i]) continue;
          auto v = eval(*parts[i]);
          if (!v) return v.error();
          bounds[i] = std::move(*v);
        }
        auto r = slice(*obj, bounds[0], bounds[1], bounds[2]);
        if (track_ && r && obj->is_string()) taint_result(*r, is_tainted(*obj));
        return r;
      }
      case ExprKind::Unary: {
        auto v = eval(*e.a);
        if (!v) return v.error();
        if (e.name == "not") return Value(!v->truthy());
        if (e.name == "-") return arithmetic("-", Value(0), *v);
        return arithmetic("+", Value(0), *v);
      }
      case ExprKind::Binary: return eval_binary(e);
      case ExprKind::Compare: return eval_chain(e);
      case ExprKind::Cond: {
        auto c = eval(*e.a);
        if (!c) return c.error();
        if (c->truthy()) return eval(*e.b);
        return e.c ? eval(*e.c) : Result<Value>(Value());
      }
      case ExprKind::Call: {
        auto r = eval_call(e);
        if (!r) return located(e.line, r.error());
        return r;
      }
      case ExprKind::Filter: {
        auto r = eval_filter(e, Value());
        if (!r) return located(e.line, r.error());
        return r;
      }
      case ExprKind::Test: {
        auto v = eval(*e.a);
        if (!v) return v.error();
        auto args = eval_args(e);
        if (!args) return args.error();
        auto t = apply_test(e.name, *v, *args);
        if (!t) return located(e.line, t.error());
        return Value(*t != e.negated);
      }
    }
    return Value();
  }

  static bool is_comparison(const std::string& op) {
    return op == "==" || op == "!=" || op == "<" || op == ">" || op == "<=" || op == ">=" || op == "in" ||
           op == "not in";
  }

  static Result<bool> compare(const std::string& op, const Value& a, const Value& b) {
    if (op == "==") return equals(a, b);
    if (op == "!=") return !equals(a, b);
    if (op == "in" || op == "not in") {
      auto c = contains(b, a);
      if (!c) return c.error();
      return *c == (op == "in");
    }
    bool swap = op == ">" || op == "<=";
    auto lt = swap ? less_than(b, a) : less_than(a, b);
    if (!lt) return lt.error();
    return (op == "<" || op == ">") ? *lt : !*lt;
  }

  Result<Value> eval_chain(const Expr& e) {
    auto left = eval(*e.items[0]);
    if (!left) return left.error();
    for (size_t i = 0; i < e.ops.size(); ++i) {
      auto right = eval(*e.items[i + 1]);
      if (!right) return right.error();
      auto c = compare(e.ops[i], *left, *right);
      if (!c) return located(e.line, c.error());
      if (!*c) return Value(false);
      left = std::move(right);
    }
    return Value(true);
  }

  Result<Value> eval_binary(const Expr& e) {
    auto a = eval(*e.a);
    if (!a) return a.error();
    const std::string& op = e.name;
    if (op == "and") return a->truthy() ? eval(*e.b) : a;
    if (op == "or") return a->truthy() ? a : eval(*e.b);
    auto b = eval(*e.b);
    if (!b) return b.error();
    if (op == "~" || op == "+" || op == "*") {
      // Bound intermediate values, not only the output: `{% set s = s ~ s %}` in a loop
      // doubles memory per iteration, and `[x] * n` builds n values at once (about 100
      // bytes each). Strings are bounded by the output limit, lists by max_list_length.
      auto size_of = [](const Value& v) -> uint64_t {
        return v.is_string() ? v.as_string().size() : v.is_array() ? v.array().size() : 0;
      };
      uint64_t n = 0;
      bool list = a->is_array() || b->is_array();
      if (op == "*") {
        const bool a_seq = a->is_string() || a->is_array();
        const Value& seq = a_seq ? *a : *b;
        const Value& k = a_seq ? *b : *a;
        const int64_t count = k.is_int() ? k.as_int() : k.is_bool() ? int64_t{k.as_bool()} : 0;
        if (count > 0 && __builtin_mul_overflow(size_of(seq), uint64_t(count), &n)) n = UINT64_MAX;
      } else {
        n = size_of(*a) + size_of(*b);
        list = list && op == "+";
      }
      if (list ? n > uint64_t(limits_.max_list_length) : n > limits_.max_output_bytes)
        return located(e.line, Error{list ? "list grew too large" : "string grew too large"});
    }
    if (op == "~") return concat(*a, *b);
    if (op == "+" && a->is_string() && (b->is_string() || b->is_undefined())) return concat(*a, *b);
    if (is_comparison(op)) {
      auto c = compare(op, *a, *b);
      if (!c) return located(e.line, c.error());
      return Value(*c);
    }
    if (op == "%" && a->is_string()) {  // Python string formatting: '%s=%d' % (k, v)
      auto r = percent_format(a->as_string(), *b);
      if (!r) return located(e.line, r.error());
      if (track_) taint_result(*r, is_tainted(*a) || is_tainted(*b));
      return r;
    }
    auto r = arithmetic(op, *a, *b);
    if (!r) return located(e.line, r.error());
    if (track_ && r->is_string()) taint_result(*r, is_tainted(*a) || is_tainted(*b));  // s * n
    return r;
  }

  RenderLimits limits_;
  RenderedText* out_;
  std::vector<Object> frames_;  // [0] globals + context, [1] template level, then loops/macros
  size_t floor_ = 0;            // first frame of the innermost macro call
  const Body* caller_ = nullptr;
  int call_depth_ = 0;
  int64_t iterations_ = 0;
  static constexpr size_t kMaxClosures = 10000;
  static inline const std::vector<Object> kNoClosure{};
  std::vector<std::unique_ptr<std::vector<Object>>> closures_;
  std::chrono::steady_clock::time_point deadline_ =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(limits_.max_render_ms);
  bool timed_out_ = false;
  bool track_ = false;  // the context holds request data
};

}  // namespace

Result<RenderedText> render_text(const Template& tmpl, const Object& context, const RenderLimits& limits) {
  RenderedText out;
  Renderer r(limits, out);
  auto st = r.run(tmpl, context);
  if (!st) return st.error();
  return out;
}

Result<std::string> render(const Template& tmpl, const Object& context, const RenderLimits& limits) {
  auto r = render_text(tmpl, context, limits);
  if (!r) return r.error();
  return std::move(r->text);
}

}  // namespace kvserve::jinja
