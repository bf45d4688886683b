// Ends generation and cuts the streamed text: stop strings are matched on the
// detokenized text across token boundaries; stop token ids, EOS and max_tokens end it by
// token. Text that might be the start of a stop string is held back until it is known
// not to be, so a stream never emits text that later turns out to belong to a stop string.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvserve/finish_reason.h"
#include "kvserve/sampling_params.h"

namespace kvserve {

class StopMatcher {
 public:
  // eos_token_ids end generation unless params.ignore_eos.
  explicit StopMatcher(const SamplingParams& params, std::span<const int32_t> eos_token_ids = {});

  struct Result {
    std::string text;  // safe to emit now
    bool stopped = false;
  };

  // Pure text matching: appends new_text to the pending text. If a stop string appears,
  // returns the text before it (plus the stop string if include_stop_str_in_output) and
  // stopped = true; later calls return nothing. Otherwise returns all pending text except
  // a suffix that could still begin a stop string.
  Result push(std::string_view new_text);

  // Releases held-back text when generation ends for another reason.
  std::string flush();

  struct TokenResult {
    std::string text;  // safe to emit now
    FinishReason finish = FinishReason::None;
  };

  // One generated token and its newly detokenized text. Applies, in order: stop token ids
  // and EOS (the token's own text is emitted only for a stop token id with
  // include_stop_str_in_output; EOS text never), stop strings (not before min_tokens
  // tokens, as in vLLM), then max_tokens. On any finish the held-back text is released.
  TokenResult push_token(int32_t token, std::string_view new_text);

  bool stopped() const { return stopped_; }
  int32_t n_tokens() const { return n_tokens_; }
  // What stopped generation, for vLLM's stop_reason: the stop string, or the stop token id
  // (-1 when none, or when the stop was EOS or length).
  const std::string& stop_string() const { return stop_string_; }
  int32_t stop_token() const { return stop_token_; }

 private:
  size_t held_back_len() const;

  std::vector<std::string> stops_;
  std::vector<int32_t> stop_ids_;
  std::vector<int32_t> eos_;
  bool include_stop_ = false;
  int32_t max_tokens_ = 0;
  int32_t min_tokens_ = 0;

  std::string pending_;  // received but not yet emitted
  bool stopped_ = false;
  int32_t n_tokens_ = 0;
  std::string stop_string_;
  int32_t stop_token_ = -1;
};

}  // namespace kvserve
