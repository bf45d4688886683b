// UTF-8 helpers and the GPT-2 byte <-> unicode map used by byte-level BPE.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvserve::utf8 {

// Length of the sequence a lead byte announces (1 for continuation/invalid bytes).
inline size_t seq_len(unsigned char lead) {
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[lead >> 4];
}

// Length of the valid UTF-8 sequence at s[i] (1..4), or 0 when the bytes there do not
// start a well-formed sequence (bad lead, truncated, overlong, surrogate, > U+10FFFF).
size_t valid_len(std::string_view s, size_t i);

// Copies s into out, each byte that does not start a well-formed sequence replaced by
// U+FFFD. Returns true when s was already valid.
bool sanitize(std::string_view s, std::string& out);

// Bytes at the end of s that may begin a still-incomplete sequence (0..3): a streaming
// decoder holds them back until more bytes arrive.
size_t incomplete_tail(std::string_view s);

void append_codepoint(uint32_t cp, std::string& out);

// GPT-2's reversible byte -> printable-unicode map: byte b is written as the UTF-8 of
// codepoint byte_to_cp()[b]; the inverse maps those codepoints (< 0x144) back to bytes.
const std::array<uint16_t, 256>& byte_to_cp();
// -1 when cp is not in the map's image.
int cp_to_byte(uint32_t cp);

}  // namespace kvserve::utf8
