// Tokenizer: special-token partitioning, BOS/EOS, and detokenization on top of a
// TokenizerModel (SPM or BPE).
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cassert>
#include <cctype>
#include <cstdint>

#include "tokenizer/tokenizer_model.h"
#include "tokenizer/unicode.h"

namespace kvserve {

namespace {

bool is_special_type(TokenType t) {
  return t == TokenType::kControl || t == TokenType::kUserDefined || t == TokenType::kUnknown;
}

// SPM byte tokens are spelled "<0xHH>".
bool looks_like_spm_byte(const std::string& text) {
  return text.size() == 6 && text.starts_with("<0x") && text.back() == '>';
}

// HH of "<0xHH>", or -1 when they are not two hex digits.
int spm_byte_value(const std::string& text) {
  auto hex = [](char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
  };
  const int hi = hex(text[3]), lo = hex(text[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// The bytes a token contributes when rendered (SPM byte tokens are validated first).
std::string render_piece(const Vocab& v, int32_t id) {
  const std::string& text = v.tokens[id];
  switch (v.types[id]) {
    case TokenType::kControl:
    case TokenType::kUnknown:
    case TokenType::kUserDefined: return text;
    case TokenType::kByte:
      if (v.is_spm() && looks_like_spm_byte(text))
        return std::string(1, static_cast<char>(spm_byte_value(text)));
      break;
    default: break;
  }
  std::string out;
  if (v.is_spm()) {
    // "▁" (U+2581) stands for a space.
    for (size_t i = 0; i < text.size(); ++i) {
      if (text.compare(i, 3, "\xE2\x96\x81") == 0) {
        out.push_back(' ');
        i += 2;
      } else {
        out.push_back(text[i]);
      }
    }
    return out;
  }
  // Byte-level BPE: each character stands for one byte; characters outside the byte
  // map (possible in hand-added tokens) pass through unchanged.
  for (size_t i = 0; i < text.size();) {
    size_t n = utf8::valid_len(text, i);
    if (n == 0) {
      out.push_back(text[i++]);
      continue;
    }
    uint32_t cp = static_cast<unsigned char>(text[i]);
    if (n == 2) cp = ((cp & 0x1F) << 6) | (static_cast<unsigned char>(text[i + 1]) & 0x3F);
    int b = n <= 2 ? utf8::cp_to_byte(cp) : -1;
    if (b >= 0)
      out.push_back(static_cast<char>(b));
    else
      out.append(text, i, n);
    i += n;
  }
  return out;
}

}  // namespace

Tokenizer::~Tokenizer() = default;

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_gguf(const GgufFile& file) {
  auto vocab = load_vocab(file);
  if (!vocab) return vocab.error();
  return from_vocab(std::move(*vocab));
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_vocab(Vocab vocab) {
  std::unique_ptr<Tokenizer> tok(new Tokenizer());
  tok->vocab_ = std::move(vocab);
  const Vocab& v = tok->vocab_;
  if (v.token_to_id.size() == 0 || v.rstrip.size() != v.tokens.size())
    return Error{"tokenizer: vocabulary not finalized (call finalize_vocab)"};
  if (v.is_spm()) {
    tok->model_ = make_spm_model(v);
  } else if (v.is_bpe()) {
    auto m = make_bpe_model(v);
    if (!m) return m.error();
    tok->model_ = std::move(*m);
  } else {
    return Error{"tokenizer: unsupported tokenizer model '" + v.model + "'"};
  }

  for (int32_t id = 0; id < v.size(); ++id)
    if (is_special_type(v.types[id])) tok->special_by_length_.push_back(id);
  std::stable_sort(tok->special_by_length_.begin(), tok->special_by_length_.end(),
                   [&](int32_t a, int32_t b) { return v.tokens[a].size() > v.tokens[b].size(); });

  for (int32_t id = 0; id < v.size(); ++id)
    if (v.is_spm() && v.types[id] == TokenType::kByte && looks_like_spm_byte(v.tokens[id]) &&
        spm_byte_value(v.tokens[id]) < 0)
      return Error{"tokenizer: byte token " + std::to_string(id) + " is '" + v.tokens[id] +
                   "', not <0x..> with two hex digits"};
  tok->pieces_.reserve(v.size());
  for (int32_t id = 0; id < v.size(); ++id) tok->pieces_.push_back(render_piece(v, id));
  return tok;
}

std::vector<Tokenizer::Fragment> Tokenizer::partition(std::string_view text, bool parse_special,
                                                      const TextRanges* plain) const {
  // Like llama.cpp: for each special token, longest text first, split every remaining
  // text fragment at each of its occurrences. User-defined tokens are always matched;
  // control and unknown ones only when parse_special.
  std::vector<Fragment> frags, next;
  if (!text.empty()) frags.push_back({-1, 0, static_cast<uint32_t>(text.size())});
  const auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  for (int32_t sp : special_by_length_) {
    const TokenType type = vocab_.types[sp];
    if (!parse_special && type != TokenType::kUserDefined) continue;
    const std::string& st = vocab_.tokens[sp];
    next.clear();
    bool found = false;
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      uint32_t off = f.offset, from = f.offset;
      const uint32_t end = f.offset + f.length;
      while (from < end) {
        const size_t m = std::string_view(text.data(), end).find(st, from);
        if (m == std::string_view::npos) break;
        // A control token only where every byte of it is the caller's own text.
        if (plain && type != TokenType::kUserDefined &&
            overlaps(*plain, uint32_t(m), uint32_t(m + st.size()))) {
          from = uint32_t(m) + 1;
          continue;
        }
        found = true;
        uint32_t left_len = static_cast<uint32_t>(m) - off;
        if (vocab_.lstrip[sp])
          while (left_len > 0 && is_space(text[off + left_len - 1])) --left_len;
        if (left_len > 0) next.push_back({-1, off, left_len});
        next.push_back({sp, 0, 0});
        off = static_cast<uint32_t>(m + st.size());
        if (vocab_.rstrip[sp])
          while (off < end && is_space(text[off])) ++off;
        from = off;
      }
      if (off < end) next.push_back({-1, off, end - off});
    }
    if (found) frags.swap(next);
  }
  return frags;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special,
                                       const TextRanges* plain) const {
  assert(text.size() <= UINT32_MAX && "fragment offsets are 32-bit");
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special && vocab_.add_bos && vocab_.bos_id >= 0) out.push_back(vocab_.bos_id);
  bool after_special = true;  // SPM: the first text fragment gets the dummy-prefix space
  for (const Fragment& f : partition(text, parse_special, plain)) {
    if (f.token >= 0) {
      out.push_back(f.token);
      after_special = true;
    } else {
      model_->encode(text.substr(f.offset, f.length), after_special, out);
      after_special = false;
    }
  }
  if (add_special && vocab_.add_eos && vocab_.eos_id >= 0) out.push_back(vocab_.eos_id);
  return out;
}

void Tokenizer::decode_append(int32_t id, bool skip_special, bool& strip_space, std::string& out) const {
  if (id < 0 || id >= n_vocab()) return;
  const TokenType type = vocab_.types[id];
  if (is_special_type(type)) {
    // Text after a special token was encoded with a dummy-prefix space (SPM).
    strip_space = strips_prefix_space();
    if (type == TokenType::kUserDefined || !skip_special) out += pieces_[id];
    return;
  }
  const std::string& p = pieces_[id];
  if (strip_space && !p.empty() && p[0] == ' ')
    out.append(p, 1);
  else
    out += p;
  strip_space = false;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special, bool sequence_start) const {
  std::string out;
  bool strip = sequence_start && strips_prefix_space();
  for (int32_t id : ids) decode_append(id, skip_special, strip, out);
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return {};
  return pieces_[id];
}

const std::string& Tokenizer::token_text(int32_t id) const {
  static const std::string empty;
  if (id < 0 || id >= n_vocab()) return empty;
  return vocab_.tokens[id];
}

bool Tokenizer::is_eog(int32_t id) const {
  return id >= 0 && std::binary_search(vocab_.eog_ids.begin(), vocab_.eog_ids.end(), id);
}

bool Tokenizer::is_control(int32_t id) const {
  return id >= 0 && id < n_vocab() && vocab_.types[id] == TokenType::kControl;
}

std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
  int32_t id = vocab_.find(text);
  if (id < 0) return std::nullopt;
  return id;
}

bool Tokenizer::strips_prefix_space() const {
  return vocab_.is_spm() && vocab_.add_space_prefix;
}

}  // namespace kvserve
