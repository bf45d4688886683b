// Syntax tree of the chat-template interpreter. One node struct per category (expression,
// statement) with a kind tag keeps the tree walk in one switch per category.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "jinja/value.h"

namespace kvserve::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind : uint8_t {
  Literal,  // value
  Name,     // name
  List,     // items
  Tuple,    // items (evaluates to an array)
  Dict,     // items as key, value pairs
  Attr,     // a.name
  Index,    // a[b]
  Slice,    // a[b:c:d]; null children are omitted bounds
  Unary,    // op a  ("not", "-", "+")
  Binary,   // a op b
  Compare,  // items[0] ops[0] items[1] ops[1] items[2]...: Python's chained comparison
  Cond,     // b if a else c
  Call,     // a(args, kwargs)
  Filter,   // a | name(args, kwargs)
  Test,     // a is [not] name(args)
};

struct Expr {
  ExprKind kind;
  int line = 0;
  Value value;       // Literal
  std::string name;  // Name, Attr, Filter, Test; operator for Unary/Binary
  ExprPtr a, b, c;
  std::vector<ExprPtr> items;                           // List, Tuple, Dict (k0, v0, k1, v1...), args
  std::vector<std::pair<std::string, ExprPtr>> kwargs;  // Call, Filter
  bool negated = false;                                 // Test
  std::vector<std::string> ops;                         // Compare
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

enum class StmtKind : uint8_t {
  Text,         // text
  Output,       // {{ expr }}
  If,           // conds[i] -> bodies[i]; else_body
  For,          // for targets in expr [if cond]: body; else_body
  Set,          // targets = expr, or ns.attr = expr (attr_target), or block set (body)
  Macro,        // name(params = defaults): body
  CallBlock,    // {% call expr %}body{% endcall %}: caller() renders body
  FilterBlock,  // {% filter expr %}body: expr is a Filter whose operand is the body
  Generation,   // {% generation %}body: markers only
  Break,
  Continue,
};

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // may be null
};

struct Stmt {
  StmtKind kind;
  int line = 0;
  std::string text;  // Text; Set: namespace attribute; Macro: name
  ExprPtr expr;      // Output, For iterable, Set value, CallBlock call, FilterBlock filter
  ExprPtr cond;      // For inline filter; Set: namespace object expression
  std::vector<ExprPtr> conds;
  std::vector<Body> bodies;  // If branches
  std::vector<std::string> targets;
  std::vector<MacroParam> params;
  Body body, else_body;
};

struct Template {
  Body body;
};

}  // namespace kvserve::jinja
