#include "tokenizer/unicode.h"

namespace kvserve::utf8 {

size_t valid_len(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const size_t left = s.size() - i;
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0;  // continuation byte or overlong 2-byte lead
  const auto cont = [&](size_t k) { return k < left && (b(k) & 0xC0) == 0x80; };
  if (c < 0xE0) return cont(1) ? 2 : 0;
  if (c < 0xF0) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(1) >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (c < 0xF5) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;   // overlong
    if (c == 0xF4 && b(1) >= 0x90) return 0;  // > U+10FFFF
    return 4;
  }
  return 0;
}

bool sanitize(std::string_view s, std::string& out) {
  out.clear();
  out.reserve(s.size());
  bool valid = true;
  size_t i = 0;
  while (i < s.size()) {
    // ASCII fast path
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      out.push_back(s[i++]);
      continue;
    }
    size_t n = valid_len(s, i);
    if (n == 0) {
      out.append("\xEF\xBF\xBD");
      valid = false;
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  return valid;
}

size_t incomplete_tail(std::string_view s) {
  // Look back at most 3 bytes for a lead byte whose sequence runs past the end.
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation: keep looking for the lead
    if (c >= 0xC2 && c < 0xF5 && seq_len(c) > back) return back;
    return 0;
  }
  return 0;
}

void append_codepoint(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {

// Printable Latin-1 bytes map to themselves; the other 68 bytes (controls, space, DEL,
// NBSP, soft hyphen...) map, in byte order, to U+0100 onwards.
struct ByteMap {
  std::array<uint16_t, 256> fwd{};
  std::array<int16_t, 0x144> inv{};
  ByteMap() {
    inv.fill(-1);
    uint16_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      fwd[b] = printable ? static_cast<uint16_t>(b) : next++;
      inv[fwd[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

}  // namespace

const std::array<uint16_t, 256>& byte_to_cp() {
  return byte_map().fwd;
}

int cp_to_byte(uint32_t cp) {
  return cp < 0x144 ? byte_map().inv[cp] : -1;
}

}  // namespace kvserve::utf8
