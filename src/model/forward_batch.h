// What the model runner executes in one step: a batch of sequences, each contributing
// a run of new tokens (a prefill chunk or a single decode token) at known positions,
// with the block table that maps its positions to KV-cache blocks. Built by the engine
// from the scheduler's decisions; read by the runner; nothing here owns memory.
#pragma once

#include <cstdint>
#include <span>

namespace kvserve {

enum class LogitsMode : uint8_t {
  None,  // a prefill chunk that is not the prompt's last: no logits needed
  Last,  // logits of the last new token only (next-token sampling)
  All,   // logits of every new token (prompt logprobs, speculative verification)
};

struct SeqSlice {
  int32_t n_past = 0;                    // tokens already in the cache = position of tokens[0]
  std::span<const int32_t> tokens;       // new tokens, at positions n_past .. n_past + size - 1
  std::span<const int32_t> block_table;  // physical block ids covering [0, n_past + tokens.size())
  LogitsMode logits = LogitsMode::Last;
};

struct ForwardBatch {
  std::span<const SeqSlice> seqs;
};

// Logits rows are produced in batch order: for each sequence, 0 (None), 1 (Last) or
// tokens.size() (All) rows of n_vocab floats.
inline int64_t logits_rows(const SeqSlice& s) {
  return s.logits == LogitsMode::None ? 0 : s.logits == LogitsMode::Last ? 1 : int64_t(s.tokens.size());
}

}  // namespace kvserve
