#include "jinja/lexer.h"

#include <algorithm>
#include <cctype>
#include <limits>

namespace kvserve::jinja {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
bool is_name_start(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
}
bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

class Lexer {
 public:
  Lexer(std::string source, const LexOptions& opt) : src_(std::move(source)), opt_(opt) {
    for (size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
  }

  Result<std::vector<Token>> run() {
    size_t pos = 0;
    while (pos < src_.size()) {
      size_t tag = find_tag(pos);
      std::string text = src_.substr(pos, tag - pos);
      if (tag == src_.size()) {
        emit_text(std::move(text), pos);
        break;
      }
      char type = src_[tag + 1];  // '{', '%' or '#'
      char ctl = tag + 2 < src_.size() ? src_[tag + 2] : 0;
      if (ctl == '-') {
        text.erase(std::find_if(text.rbegin(), text.rend(), [](char c) { return !is_space(c); }).base(),
                   text.end());
      } else if (type != '{' && ctl != '+' && opt_.lstrip_blocks) {
        // Jinja strips spaces/tabs before a block or comment tag when they are all the
        // tag has in front of it on its line.
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
        bool line_starting = pos == 0 || src_[pos - 1] == '\n';
        if ((l_pos > 0 || line_starting) && text.find_first_not_of(" \t", l_pos) == std::string::npos)
          text.resize(l_pos);
      }
      emit_text(std::move(text), pos);
      size_t body = tag + 2 + ((ctl == '-' || ctl == '+') ? 1 : 0);
      Result<size_t> next = type == '#' ? comment(tag, body) : tag_tokens(tag, body, type);
      if (!next) return next.error();
      pos = *next;
    }
    Token eof;
    eof.kind = Tok::Eof;
    locate(src_.size(), eof);
    out_.push_back(eof);
    return std::move(out_);
  }

 private:
  size_t find_tag(size_t pos) const {
    for (size_t i = pos; i + 1 < src_.size(); ++i) {
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return src_.size();
  }

  void locate(size_t offset, Token& t) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    t.line = static_cast<int>(it - line_starts_.begin()) + 1;
    size_t start = it == line_starts_.begin() ? 0 : *(it - 1);
    t.col = static_cast<int>(offset - start) + 1;
  }

  Error error_at(size_t offset, const std::string& msg) const {
    Token t;
    locate(offset, t);
    return Error{"template syntax error at line " + std::to_string(t.line) + ", column " +
                 std::to_string(t.col) + ": " + msg};
  }

  void emit_text(std::string text, size_t offset) {
    if (text.empty()) return;
    Token t;
    t.kind = Tok::Text;
    t.text = std::move(text);
    locate(offset, t);
    out_.push_back(std::move(t));
  }

  void emit(Tok kind, size_t offset, std::string text = {}) {
    Token t;
    t.kind = kind;
    t.text = std::move(text);
    locate(offset, t);
    out_.push_back(std::move(t));
  }

  // Position after a tag's closing delimiter, with `-` stripping and trim_blocks applied.
  size_t after_tag(size_t end, bool strip, bool block_like, bool plus) const {
    if (strip) {
      while (end < src_.size() && is_space(src_[end])) ++end;
    } else if (block_like && !plus && opt_.trim_blocks && end < src_.size() && src_[end] == '\n') {
      ++end;
    }
    return end;
  }

  Result<size_t> comment(size_t tag, size_t body) {
    size_t close = src_.find("#}", body);
    if (close == std::string::npos) return error_at(tag, "unterminated comment");
    bool strip = close > body && src_[close - 1] == '-';
    return after_tag(close + 2, strip, true, false);
  }

  Result<size_t> tag_tokens(size_t tag, size_t pos, char type) {
    const char close = type == '{' ? '}' : '%';
    const size_t first_token = out_.size() + 1;
    emit(type == '{' ? Tok::VarBegin : Tok::BlockBegin, tag);
    int depth = 0;
    while (true) {
      while (pos < src_.size() && is_space(src_[pos])) ++pos;
      if (pos >= src_.size()) return error_at(tag, std::string("unterminated tag, missing '") + close + "}'");
      char c = src_[pos];
      if (depth == 0) {
        bool strip = c == '-' || c == '+';
        size_t d = pos + (strip ? 1 : 0);
        if (d + 1 < src_.size() && src_[d] == close && src_[d + 1] == '}') {
          emit(type == '{' ? Tok::VarEnd : Tok::BlockEnd, pos);
          size_t end = after_tag(d + 2, c == '-', type == '%', c == '+');
          if (type == '%' && out_.size() == first_token + 2 && out_[first_token].kind == Tok::Name &&
              out_[first_token].text == "raw")  // Jinja applies no trim_blocks after `{% raw %}`
            return raw_block(tag, after_tag(d + 2, c == '-', false, false));
          return end;
        }
      }
      Result<size_t> next = token(pos, depth);
      if (!next) return next.error();
      pos = *next;
    }
  }

  // `{% raw %}...{% endraw %}`: the body is literal text.
  Result<size_t> raw_block(size_t tag, size_t body) {
    out_.resize(out_.size() - 3);  // drop BlockBegin, Name(raw), BlockEnd
    for (size_t i = src_.find("{%", body); i != std::string::npos; i = src_.find("{%", i + 2)) {
      size_t j = i + 2;
      bool strip_before = j < src_.size() && src_[j] == '-';
      bool keep_before = j < src_.size() && src_[j] == '+';
      if (strip_before || keep_before) ++j;
      while (j < src_.size() && is_space(src_[j])) ++j;
      if (src_.compare(j, 6, "endraw") != 0) continue;
      j += 6;
      while (j < src_.size() && is_space(src_[j])) ++j;
      bool strip_after = j < src_.size() && src_[j] == '-';
      bool plus = j < src_.size() && src_[j] == '+';
      if (strip_after || plus) ++j;
      if (src_.compare(j, 2, "%}") != 0) continue;
      std::string text = src_.substr(body, i - body);
      if (strip_before) {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if (opt_.lstrip_blocks && !keep_before) {
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
        bool line_starting = body == 0 || src_[body - 1] == '\n';
        if ((l_pos > 0 || line_starting) && text.find_first_not_of(" \t", l_pos) == std::string::npos)
          text.resize(l_pos);
      }
      emit_text(std::move(text), body);
      return after_tag(j + 2, strip_after, true, plus);
    }
    return error_at(tag, "unterminated raw block, missing '{% endraw %}'");
  }

  Result<size_t> token(size_t pos, int& depth) {
    char c = src_[pos];
    if (is_name_start(c)) {
      size_t e = pos;
      while (e < src_.size() && is_name_char(src_[e])) ++e;
      emit(Tok::Name, pos, src_.substr(pos, e - pos));
      return e;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) return number(pos);
    if (c == '\'' || c == '"') return string(pos);
    static const char* const kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<",
                                       ">",  "=",  "(",  ")",  "[",  "]",  "{", "}", ",", ".", ":", "|"};
    for (const char* op : kOps) {
      size_t n = std::char_traits<char>::length(op);
      if (src_.compare(pos, n, op) != 0) continue;
      if (n == 1 && (c == '(' || c == '[' || c == '{')) ++depth;
      if (n == 1 && (c == ')' || c == ']' || c == '}')) {
        if (depth == 0) return error_at(pos, std::string("unexpected '") + c + "'");
        --depth;
      }
      emit(Tok::Op, pos, op);
      return pos + n;
    }
    return error_at(pos, std::string("unexpected character '") + c + "'");
  }

  Result<size_t> number(size_t pos) {
    size_t e = pos;
    bool is_float = false;
    auto digits = [&] {
      while (e < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
    };
    digits();
    if (e + 1 < src_.size() && src_[e] == '.' && std::isdigit(static_cast<unsigned char>(src_[e + 1]))) {
      is_float = true;
      ++e;
      digits();
    }
    if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      size_t x = e + 1;
      if (x < src_.size() && (src_[x] == '+' || src_[x] == '-')) ++x;
      if (x < src_.size() && std::isdigit(static_cast<unsigned char>(src_[x]))) {
        is_float = true;
        e = x;
        digits();
      }
    }
    std::string text;
    for (size_t i = pos; i < e; ++i)
      if (src_[i] != '_') text += src_[i];
    Token t;
    locate(pos, t);
    if (is_float) {
      t.kind = Tok::Float;
      t.fval = std::strtod(text.c_str(), nullptr);
    } else {
      t.kind = Tok::Int;
      int64_t v = 0;
      for (char d : text) {
        if (v > (std::numeric_limits<int64_t>::max() - (d - '0')) / 10)
          return error_at(pos, "integer literal too large");
        v = v * 10 + (d - '0');
      }
      t.ival = v;
    }
    t.text = std::move(text);
    out_.push_back(std::move(t));
    return e;
  }

  Result<size_t> string(size_t pos) {
    char q = src_[pos];
    std::string val;
    size_t i = pos + 1;
    auto hex = [&](size_t at, int n, uint32_t* cp) {
      if (at + n > src_.size()) return false;
      uint32_t v = 0;
      for (int k = 0; k < n; ++k) {
        char h = src_[at + k];
        if (!std::isxdigit(static_cast<unsigned char>(h))) return false;
        v = v * 16 + (std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
      }
      *cp = v;
      return true;
    };
    while (true) {
      if (i >= src_.size()) return error_at(pos, "unterminated string literal");
      char c = src_[i];
      if (c == q) break;
      if (c != '\\' || i + 1 >= src_.size()) {
        val += c;
        ++i;
        continue;
      }
      char e = src_[i + 1];
      uint32_t cp = 0;
      i += 2;
      switch (e) {
        case 'n': val += '\n'; break;
        case 't': val += '\t'; break;
        case 'r': val += '\r'; break;
        case 'b': val += '\b'; break;
        case 'f': val += '\f'; break;
        case 'v': val += '\v'; break;
        case '0': val += '\0'; break;
        case '\\': val += '\\'; break;
        case '\'': val += '\''; break;
        case '"': val += '"'; break;
        case '\n': break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (!hex(i, n, &cp) || cp > 0x10ffff) return error_at(i - 2, "invalid escape in string literal");
          append_utf8(val, cp);
          i += n;
          break;
        }
        default: val += '\\'; val += e;
      }
    }
    emit(Tok::String, pos, std::move(val));
    return i + 1;
  }

  std::string src_;
  LexOptions opt_;
  std::vector<size_t> line_starts_;
  std::vector<Token> out_;
};

std::string normalize(std::string_view source, const LexOptions& opt) {
  std::string s;
  s.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      s += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      s += source[i];
    }
  }
  if (!opt.keep_trailing_newline && !s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

}  // namespace

Result<std::vector<Token>> lex(std::string_view source, const LexOptions& opt) {
  return Lexer(normalize(source, opt), opt).run();
}

}  // namespace kvserve::jinja
