#include "jinja/parser.h"

#include <algorithm>
#include <initializer_list>
#include <optional>

namespace kvserve::jinja {
namespace {

// Deeper nesting than this is refused (a recursive-descent parser would otherwise
// overflow the stack on input like "((((((...").
constexpr int kMaxNesting = 200;

class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

  Result<std::shared_ptr<const Template>> run() {
    auto tmpl = std::make_shared<Template>();
    std::string end;
    tmpl->body = body({}, &end);
    if (err_) return *err_;
    return std::shared_ptr<const Template>(std::move(tmpl));
  }

 private:
  const Token& cur() const { return t_[i_]; }
  const Token& peek(size_t k = 1) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  void advance() {
    if (i_ + 1 < t_.size()) ++i_;
  }
  bool is_op(const char* op) const { return cur().kind == Tok::Op && cur().text == op; }
  bool is_name(const char* n) const { return cur().kind == Tok::Name && cur().text == n; }
  bool accept_op(const char* op) {
    if (!is_op(op)) return false;
    advance();
    return true;
  }
  bool accept_name(const char* n) {
    if (!is_name(n)) return false;
    advance();
    return true;
  }

  static std::string describe(const Token& t) {
    switch (t.kind) {
      case Tok::Text: return "text";
      case Tok::VarBegin: return "'{{'";
      case Tok::VarEnd: return "'}}'";
      case Tok::BlockBegin: return "'{%'";
      case Tok::BlockEnd: return "'%}'";
      case Tok::Eof: return "end of template";
      case Tok::String: return "string";
      default: return "'" + t.text + "'";
    }
  }

  std::nullptr_t fail(const std::string& msg) {
    if (!err_)
      err_ = Error{"template syntax error at line " + std::to_string(cur().line) + ", column " +
                   std::to_string(cur().col) + ": " + msg};
    return nullptr;
  }
  bool expect(Tok kind, const char* what) {
    if (cur().kind == kind) {
      advance();
      return true;
    }
    fail(std::string("expected ") + what + ", got " + describe(cur()));
    return false;
  }
  bool expect_op(const char* op) {
    if (accept_op(op)) return true;
    fail(std::string("expected '") + op + "', got " + describe(cur()));
    return false;
  }

  ExprPtr node(ExprKind k) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = cur().line;
    return e;
  }
  StmtPtr stmt(StmtKind k, int line) {
    auto s = std::make_unique<Stmt>();
    s->kind = k;
    s->line = line;
    return s;
  }

  // ---- statements ----

  // Parses until `{% <one of ends>` (consumed up to the tag name, which goes to *end).
  Body body(std::initializer_list<const char*> ends, std::string* end) {
    Body out;
    while (!err_) {
      const Token& tok = cur();
      if (tok.kind == Tok::Eof) {
        if (ends.size() != 0)
          fail(std::string("unexpected end of template, expected '{% ") + *(ends.end() - 1) + " %}'");
        return out;
      }
      if (tok.kind == Tok::Text) {
        auto s = stmt(StmtKind::Text, tok.line);
        s->text = tok.text;
        advance();
        out.push_back(std::move(s));
      } else if (tok.kind == Tok::VarBegin) {
        auto s = stmt(StmtKind::Output, tok.line);
        advance();
        s->expr = tuple_expr();
        if (!s->expr || !expect(Tok::VarEnd, "'}}'")) return out;
        out.push_back(std::move(s));
      } else if (tok.kind == Tok::BlockBegin) {
        advance();
        if (cur().kind != Tok::Name) {
          fail("expected a tag name, got " + describe(cur()));
          return out;
        }
        for (const char* e : ends) {
          if (cur().text == e) {
            *end = e;
            advance();
            return out;
          }
        }
        StmtPtr s = statement();
        if (!s) return out;
        out.push_back(std::move(s));
      } else {
        fail("unexpected " + describe(tok));
        return out;
      }
    }
    return out;
  }

  bool end_tag() { return expect(Tok::BlockEnd, "'%}'"); }

  StmtPtr statement() {
    const Token tag = cur();
    const std::string& n = tag.text;
    advance();
    if (++depth_ > kMaxNesting) return fail("blocks nested too deeply");
    StmtPtr s;
    if (n == "if")
      s = if_stmt(tag.line);
    else if (n == "for")
      s = for_stmt(tag.line);
    else if (n == "set")
      s = set_stmt(tag.line);
    else if (n == "macro")
      s = macro_stmt(tag.line);
    else if (n == "call")
      s = call_stmt(tag.line);
    else if (n == "filter")
      s = filter_stmt(tag.line);
    else if (n == "generation")
      s = simple_block(StmtKind::Generation, tag.line, "endgeneration");
    else if (n == "break" || n == "continue") {
      if (loop_depth_ == 0) return fail("'" + n + "' outside of a loop");
      s = stmt(n == "break" ? StmtKind::Break : StmtKind::Continue, tag.line);
      if (!end_tag()) return nullptr;
    } else {
      i_--;
      return fail("unknown or unexpected tag '" + n + "'");
    }
    --depth_;
    return err_ ? nullptr : std::move(s);
  }

  StmtPtr if_stmt(int line) {
    auto s = stmt(StmtKind::If, line);
    std::string end = "elif";
    while (end == "elif") {
      ExprPtr c = expr();
      if (!c || !end_tag()) return nullptr;
      s->conds.push_back(std::move(c));
      s->bodies.push_back(body({"elif", "else", "endif"}, &end));
      if (err_) return nullptr;
    }
    if (end == "else") {
      if (!end_tag()) return nullptr;
      s->else_body = body({"endif"}, &end);
      if (err_) return nullptr;
    }
    return end_tag() ? std::move(s) : nullptr;
  }

  StmtPtr for_stmt(int line) {
    auto s = stmt(StmtKind::For, line);
    bool paren = accept_op("(");
    do {
      if (cur().kind != Tok::Name) return fail("expected a loop variable name");
      s->targets.push_back(cur().text);
      advance();
    } while (accept_op(","));
    if (paren && !expect_op(")")) return nullptr;
    if (!accept_name("in")) return fail("expected 'in' in for loop, got " + describe(cur()));
    s->expr = or_expr();  // no ternary here: a trailing `if` filters the loop
    if (!s->expr) return nullptr;
    if (accept_name("if")) {
      s->cond = expr();
      if (!s->cond) return nullptr;
    }
    if (is_name("recursive")) return fail("recursive loops are not supported");
    if (!end_tag()) return nullptr;
    std::string end;
    ++loop_depth_;
    s->body = body({"else", "endfor"}, &end);
    --loop_depth_;
    if (err_) return nullptr;
    if (end == "else") {
      if (!end_tag()) return nullptr;
      s->else_body = body({"endfor"}, &end);
      if (err_) return nullptr;
    }
    return end_tag() ? std::move(s) : nullptr;
  }

  StmtPtr set_stmt(int line) {
    auto s = stmt(StmtKind::Set, line);
    if (cur().kind != Tok::Name) return fail("expected a variable name after 'set'");
    if (peek().kind == Tok::Op && peek().text == ".") {
      s->cond = node(ExprKind::Name);
      s->cond->name = cur().text;
      advance();
      advance();
      if (cur().kind != Tok::Name) return fail("expected an attribute name");
      s->text = cur().text;
      advance();
    } else {
      bool paren = accept_op("(");
      do {
        if (cur().kind != Tok::Name) return fail("expected a variable name");
        s->targets.push_back(cur().text);
        advance();
      } while (accept_op(","));
      if (paren && !expect_op(")")) return nullptr;
    }
    if (accept_op("=")) {
      s->expr = tuple_expr();
      return s->expr && end_tag() ? std::move(s) : nullptr;
    }
    if (s->targets.size() != 1) return fail("a block 'set' assigns exactly one variable");
    if (!end_tag()) return nullptr;
    std::string end;
    s->body = body({"endset"}, &end);
    return !err_ && end_tag() ? std::move(s) : nullptr;
  }

  StmtPtr macro_stmt(int line) {
    auto s = stmt(StmtKind::Macro, line);
    if (cur().kind != Tok::Name) return fail("expected a macro name");
    s->text = cur().text;
    advance();
    if (!expect_op("(")) return nullptr;
    while (!is_op(")")) {
      if (cur().kind != Tok::Name) return fail("expected a parameter name");
      MacroParam p{cur().text, nullptr};
      advance();
      if (accept_op("=")) {
        p.default_value = expr();
        if (!p.default_value) return nullptr;
      }
      s->params.push_back(std::move(p));
      if (!accept_op(",")) break;
    }
    if (!expect_op(")") || !end_tag()) return nullptr;
    std::string end;
    int saved = loop_depth_;
    loop_depth_ = 0;
    s->body = body({"endmacro"}, &end);
    loop_depth_ = saved;
    if (!err_ && cur().kind == Tok::Name) advance();  // optional `{% endmacro name %}`
    return !err_ && end_tag() ? std::move(s) : nullptr;
  }

  StmtPtr call_stmt(int line) {
    auto s = stmt(StmtKind::CallBlock, line);
    if (is_op("(")) return fail("caller parameters are not supported");
    s->expr = expr();
    if (!s->expr) return nullptr;
    if (s->expr->kind != ExprKind::Call) return fail("'call' needs a macro call");
    if (!end_tag()) return nullptr;
    std::string end;
    s->body = body({"endcall"}, &end);
    return !err_ && end_tag() ? std::move(s) : nullptr;
  }

  StmtPtr filter_stmt(int line) {
    auto s = stmt(StmtKind::FilterBlock, line);
    ExprPtr chain;  // null operand: the rendered body goes there
    do {
      chain = filter_call(std::move(chain));
      if (!chain) return nullptr;
    } while (accept_op("|"));
    s->expr = std::move(chain);
    if (!end_tag()) return nullptr;
    std::string end;
    s->body = body({"endfilter"}, &end);
    return !err_ && end_tag() ? std::move(s) : nullptr;
  }

  StmtPtr simple_block(StmtKind k, int line, const char* end_name) {
    auto s = stmt(k, line);
    if (!end_tag()) return nullptr;
    std::string end;
    s->body = body({end_name}, &end);
    return !err_ && end_tag() ? std::move(s) : nullptr;
  }

  // ---- expressions ----

  struct DepthGuard {
    Parser* p;
    bool ok;
    explicit DepthGuard(Parser* parser) : p(parser), ok(++parser->depth_ <= kMaxNesting) {}
    ~DepthGuard() { --p->depth_; }
  };

  ExprPtr tuple_expr() {
    ExprPtr first = expr();
    if (!first || !is_op(",")) return first;
    auto t = node(ExprKind::Tuple);
    t->items.push_back(std::move(first));
    while (accept_op(",")) {
      if (cur().kind == Tok::VarEnd || cur().kind == Tok::BlockEnd) break;
      ExprPtr e = expr();
      if (!e) return nullptr;
      t->items.push_back(std::move(e));
    }
    return t;
  }

  ExprPtr expr() {
    DepthGuard g(this);
    if (!g.ok) return fail("expression nested too deeply");
    ExprPtr a = or_expr();
    while (a && is_name("if")) {
      auto c = node(ExprKind::Cond);
      advance();
      c->a = or_expr();
      if (!c->a) return nullptr;
      if (accept_name("else")) {
        c->c = expr();
        if (!c->c) return nullptr;
      }
      c->b = std::move(a);
      a = std::move(c);
    }
    return a;
  }

  ExprPtr binary(const std::string& op, ExprPtr l, ExprPtr r) {
    if (!l || !r) return nullptr;
    auto b = node(ExprKind::Binary);
    b->name = op;
    b->a = std::move(l);
    b->b = std::move(r);
    return b;
  }

  ExprPtr or_expr() {
    ExprPtr a = and_expr();
    while (a && accept_name("or")) a = binary("or", std::move(a), and_expr());
    return a;
  }
  ExprPtr and_expr() {
    ExprPtr a = not_expr();
    while (a && accept_name("and")) a = binary("and", std::move(a), not_expr());
    return a;
  }
  ExprPtr not_expr() {
    DepthGuard g(this);
    if (!g.ok) return fail("expression nested too deeply");
    if (!accept_name("not")) return compare();
    auto u = node(ExprKind::Unary);
    u->name = "not";
    u->a = not_expr();
    return u->a ? std::move(u) : nullptr;
  }
  ExprPtr compare() {
    ExprPtr first = math1();
    if (!first) return nullptr;
    auto chain = node(ExprKind::Compare);
    chain->items.push_back(std::move(first));
    while (true) {
      std::string op;
      if (cur().kind == Tok::Op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                    cur().text == "<=" || cur().text == ">" || cur().text == ">=")) {
        op = cur().text;
        advance();
      } else if (is_name("in")) {
        op = "in";
        advance();
      } else if (is_name("not") && peek().kind == Tok::Name && peek().text == "in") {
        op = "not in";
        advance();
        advance();
      } else {
        break;
      }
      ExprPtr next = math1();
      if (!next) return nullptr;
      chain->ops.push_back(std::move(op));
      chain->items.push_back(std::move(next));
    }
    if (chain->ops.empty()) return std::move(chain->items[0]);
    if (chain->ops.size() == 1)
      return binary(chain->ops[0], std::move(chain->items[0]), std::move(chain->items[1]));
    return chain;  // a < b < c means a < b and b < c, b evaluated once
  }
  ExprPtr math1() {
    ExprPtr a = concat();
    while (a && (is_op("+") || is_op("-"))) {
      std::string op = cur().text;
      advance();
      a = binary(op, std::move(a), concat());
    }
    return a;
  }
  ExprPtr concat() {
    ExprPtr a = math2();
    while (a && accept_op("~")) a = binary("~", std::move(a), math2());
    return a;
  }
  ExprPtr math2() {
    ExprPtr a = pow();
    while (a && (is_op("*") || is_op("/") || is_op("//") || is_op("%"))) {
      std::string op = cur().text;
      advance();
      a = binary(op, std::move(a), pow());
    }
    return a;
  }
  ExprPtr pow() {
    ExprPtr a = unary(true);
    while (a && accept_op("**")) a = binary("**", std::move(a), unary(true));
    return a;
  }
  ExprPtr unary(bool with_filter) {
    DepthGuard g(this);
    if (!g.ok) return fail("expression nested too deeply");
    ExprPtr a;
    if (is_op("-") || is_op("+")) {
      a = node(ExprKind::Unary);
      a->name = cur().text;
      advance();
      a->a = unary(false);
      if (!a->a) return nullptr;
    } else {
      a = primary();
    }
    a = postfix(std::move(a));
    return with_filter ? filters(std::move(a)) : std::move(a);
  }

  ExprPtr primary() {
    const Token& tok = cur();
    switch (tok.kind) {
      case Tok::Name: {
        const std::string& n = tok.text;
        auto e = node(ExprKind::Literal);
        if (n == "true" || n == "True")
          e->value = Value(true);
        else if (n == "false" || n == "False")
          e->value = Value(false);
        else if (n == "none" || n == "None")
          e->value = Value::none();
        else {
          e->kind = ExprKind::Name;
          e->name = n;
        }
        advance();
        return e;
      }
      case Tok::String: {
        std::string s;
        int line = tok.line;
        while (cur().kind == Tok::String) {  // adjacent literals concatenate
          s += cur().text;
          advance();
        }
        auto e = node(ExprKind::Literal);
        e->line = line;
        e->value = Value(std::move(s));
        return e;
      }
      case Tok::Int:
      case Tok::Float: {
        auto e = node(ExprKind::Literal);
        e->value = tok.kind == Tok::Int ? Value(tok.ival) : Value(tok.fval);
        advance();
        return e;
      }
      case Tok::Op:
        if (tok.text == "(") return paren();
        if (tok.text == "[") return list();
        if (tok.text == "{") return dict();
        [[fallthrough]];
      default: return fail("unexpected " + describe(tok) + " in expression");
    }
  }

  ExprPtr paren() {
    auto t = node(ExprKind::Tuple);
    advance();
    if (accept_op(")")) return t;
    ExprPtr first = expr();
    if (!first) return nullptr;
    if (accept_op(")")) return first;
    t->items.push_back(std::move(first));
    while (accept_op(",")) {
      if (is_op(")")) break;
      ExprPtr e = expr();
      if (!e) return nullptr;
      t->items.push_back(std::move(e));
    }
    return expect_op(")") ? std::move(t) : nullptr;
  }

  ExprPtr list() {
    auto l = node(ExprKind::List);
    advance();
    while (!is_op("]")) {
      ExprPtr e = expr();
      if (!e) return nullptr;
      l->items.push_back(std::move(e));
      if (!accept_op(",")) break;
    }
    return expect_op("]") ? std::move(l) : nullptr;
  }

  ExprPtr dict() {
    auto d = node(ExprKind::Dict);
    advance();
    while (!is_op("}")) {
      ExprPtr k = expr();
      if (!k || !expect_op(":")) return nullptr;
      ExprPtr v = expr();
      if (!v) return nullptr;
      d->items.push_back(std::move(k));
      d->items.push_back(std::move(v));
      if (!accept_op(",")) break;
    }
    return expect_op("}") ? std::move(d) : nullptr;
  }

  ExprPtr postfix(ExprPtr a) {
    while (a) {
      if (accept_op(".")) {
        if (cur().kind == Tok::Name) {
          auto e = node(ExprKind::Attr);
          e->name = cur().text;
          e->a = std::move(a);
          advance();
          a = std::move(e);
        } else if (cur().kind == Tok::Int) {  // `x.0` is x[0]
          auto e = node(ExprKind::Index);
          e->a = std::move(a);
          e->b = node(ExprKind::Literal);
          e->b->value = Value(cur().ival);
          advance();
          a = std::move(e);
        } else {
          return fail("expected an attribute name after '.'");
        }
      } else if (is_op("[")) {
        a = subscript(std::move(a));
      } else if (is_op("(")) {
        a = call(std::move(a));
      } else {
        break;
      }
    }
    return a;
  }

  ExprPtr subscript(ExprPtr a) {
    auto e = node(ExprKind::Index);
    advance();
    e->a = std::move(a);
    if (!is_op(":")) {
      e->b = expr();
      if (!e->b) return nullptr;
    }
    if (accept_op(":")) {
      e->kind = ExprKind::Slice;
      if (!is_op("]") && !is_op(":")) {
        e->c = expr();
        if (!e->c) return nullptr;
      }
      if (accept_op(":") && !is_op("]")) {
        e->items.push_back(expr());
        if (!e->items.back()) return nullptr;
      }
    }
    return expect_op("]") ? std::move(e) : nullptr;
  }

  // Parses `(args, kw=args)` into e->items / e->kwargs.
  bool call_args(Expr& e) {
    if (!expect_op("(")) return false;
    while (!is_op(")")) {
      if (cur().kind == Tok::Name && peek().kind == Tok::Op && peek().text == "=") {
        std::string k = cur().text;
        advance();
        advance();
        ExprPtr v = expr();
        if (!v) return false;
        e.kwargs.emplace_back(std::move(k), std::move(v));
      } else {
        if (!e.kwargs.empty()) {
          fail("positional argument after keyword argument");
          return false;
        }
        ExprPtr v = expr();
        if (!v) return false;
        e.items.push_back(std::move(v));
      }
      if (!accept_op(",")) break;
    }
    return expect_op(")");
  }

  ExprPtr call(ExprPtr callee) {
    auto e = node(ExprKind::Call);
    e->a = std::move(callee);
    return call_args(*e) ? std::move(e) : nullptr;
  }

  ExprPtr filter_call(ExprPtr operand) {
    if (cur().kind != Tok::Name) return fail("expected a filter name, got " + describe(cur()));
    auto f = node(ExprKind::Filter);
    f->name = cur().text;
    f->a = std::move(operand);
    advance();
    if (is_op("(") && !call_args(*f)) return nullptr;
    return f;
  }

  ExprPtr filters(ExprPtr a) {
    while (a) {
      if (accept_op("|")) {
        a = filter_call(std::move(a));
      } else if (accept_name("is")) {
        auto t = node(ExprKind::Test);
        t->negated = accept_name("not");
        if (cur().kind != Tok::Name) return fail("expected a test name, got " + describe(cur()));
        t->name = cur().text;
        t->a = std::move(a);
        advance();
        const Token& n = cur();
        if (is_op("(")) {
          if (!call_args(*t)) return nullptr;
        } else if (n.kind == Tok::String || n.kind == Tok::Int || n.kind == Tok::Float || is_op("[") ||
                   is_op("{") ||
                   (n.kind == Tok::Name && n.text != "else" && n.text != "or" && n.text != "and" &&
                    n.text != "if" && n.text != "is" && n.text != "in" && n.text != "not")) {
          ExprPtr arg = postfix(primary());  // `x is divisibleby 3`
          if (!arg) return nullptr;
          t->items.push_back(std::move(arg));
        }
        a = std::move(t);
      } else if (is_op("(")) {
        a = call(std::move(a));
      } else {
        break;
      }
    }
    return a;
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::optional<Error> err_;
};

}  // namespace

Result<std::shared_ptr<const Template>> parse_template(std::string_view source, const LexOptions& opt) {
  auto toks = lex(source, opt);
  if (!toks) return toks.error();
  return Parser(std::move(*toks)).run();
}

}  // namespace kvserve::jinja
