// Streaming detokenization: pieces are buffered until they end on a UTF-8 boundary, so
// a character split across tokens (byte-fallback or byte-level BPE) is never emitted
// half-way; bytes that can never form a character become U+FFFD.
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace kvserve {

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tok, bool skip_special, bool sequence_start)
    : tok_(tok), skip_special_(skip_special), strip_space_(sequence_start && tok.strips_prefix_space()) {}

std::string StreamingDetokenizer::push(int32_t id) {
  tok_.decode_append(id, skip_special_, strip_space_, pending_);
  const size_t keep = utf8::incomplete_tail(pending_);
  std::string out;
  utf8::sanitize(std::string_view(pending_).substr(0, pending_.size() - keep), out);
  pending_.erase(0, pending_.size() - keep);
  return out;
}

std::string StreamingDetokenizer::flush() {
  std::string out;
  utf8::sanitize(pending_, out);
  pending_.clear();
  return out;
}

}  // namespace kvserve
