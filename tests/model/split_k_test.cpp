// Split-K attention in the runner: in steps of few items (decode of a few sequences), a
// sequence's lone row tile past one segment of keys is split by KV head and key segment
// over the pool's threads. Logits must be bit-identical to a runner on one thread (never
// splits) and to other batchings, step by step.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <stdexcept>

#include "kernels/cpu/attention.h"
#include "model_test_util.h"

namespace kvserve {
namespace {

// synth-3m-q4_0 (2 KV heads) in a runner on `threads` threads, which may split, and in one
// on a single thread, which never does.
struct Runners {
  std::unique_ptr<Model> model;
  std::unique_ptr<CpuRunner> split, single;

  Runners(int max_batch_tokens, int max_seqs, int threads) {
    auto m = Model::load(test::shared_path("models/synth-3m-q4_0.gguf"));
    if (!m) throw std::runtime_error(m.error().message);
    model = std::move(*m);
    RunnerOptions opt;
    opt.max_batch_tokens = max_batch_tokens;
    opt.max_seqs = max_seqs;
    opt.n_threads = threads;
    split = std::make_unique<CpuRunner>(*model, opt);
    opt.n_threads = 1;
    single = std::make_unique<CpuRunner>(*model, opt);
  }
};

TEST(SplitK, LoneTileOverSeveralSegmentsEqualsUnsplitBitExact) {
  // Steps of 128 beside a companion; 2 KV heads on 3 threads.
  Runners runners(/*max_batch_tokens=*/256, /*max_seqs=*/2, /*threads=*/3);
  CpuRunner &split = *runners.split, &single = *runners.single;
  const int V = split.n_vocab();

  // Prompt of random tokens; steps: prefill chunks, lone decode tokens around the segment
  // boundaries, a lone chunk that crosses one.
  constexpr int64_t S = kAttentionSegmentKeys;
  std::mt19937 rng(5);
  std::vector<int32_t> tokens(size_t(2 * S + 40));
  for (auto& t : tokens) t = int32_t(rng() % uint32_t(V));
  std::vector<int> steps;
  int64_t at = 0;
  auto prefill_to = [&](int64_t end) {  // chunks of up to 128 (several tiles: not split)
    for (; at < end; at += steps.back()) steps.push_back(int(std::min<int64_t>(128, end - at)));
  };
  auto step = [&](int n) {
    steps.push_back(n);
    at += n;
  };
  prefill_to(S - 2);
  for (int i = 0; i < 4; ++i) step(1);  // keys S - 1 .. S + 2
  prefill_to(2 * S - 18);
  step(30);  // a lone 30-row tile across 2S
  for (int i = 0; i < 3; ++i) step(1);

  const int n_blocks = int(tokens.size() + 15) / 16;
  KvCacheStorage kv_split(split.kv_config(2 * n_blocks + 1, 16));
  KvCacheStorage kv_single(single.kv_config(2 * n_blocks + 1, 16));
  KvCacheStorage kv_pair(split.kv_config(4 * n_blocks + 2, 16));
  const auto table = test::scattered_table(n_blocks);
  std::vector<int32_t> other_table(static_cast<size_t>(n_blocks));  // the companion's blocks: the odd ids
  for (int b = 0; b < n_blocks; ++b) other_table[size_t(b)] = 2 * b + 1 + 2 * n_blocks;
  const std::vector<int32_t> other_tokens(tokens.rbegin(), tokens.rend());

  int64_t pos = 0;
  int lone_split_steps = 0;
  for (const int n : steps) {
    ASSERT_LE(size_t(pos + n), tokens.size());
    SeqSlice s;
    s.n_past = pos;
    s.tokens = std::span<const int32_t>(tokens.data() + pos, size_t(n));
    s.block_table = table;
    s.logits = LogitsMode::All;
    // A lone tile (decode or a short chunk) past one segment of keys must be split.
    const bool should_split = n <= 32 && pos + n > S;
    const int64_t split_before = split.stats().split_tiles;
    const float* a = split.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)}, kv_split);
    const std::vector<float> got(a, a + int64_t(n) * V);
    ASSERT_EQ(split.stats().split_tiles - split_before, should_split ? 1 : 0)
        << "step at " << pos << " n " << n;
    const float* b = single.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)}, kv_single);
    const std::vector<float> want(b, b + int64_t(n) * V);
    // The same slice beside a companion sequence (both lone tiles split, or neither).
    SeqSlice o = s;
    o.tokens = std::span<const int32_t>(other_tokens.data() + pos, size_t(n));
    o.block_table = other_table;
    o.logits = LogitsMode::None;
    const SeqSlice pair[] = {o, s};
    const int64_t pair_before = split.stats().split_tiles;
    const float* c = split.forward(ForwardBatch{pair}, kv_pair);
    ASSERT_EQ(split.stats().split_tiles - pair_before, should_split ? 2 : 0)
        << "pair at " << pos << " n " << n;
    for (int64_t i = 0; i < int64_t(n) * V; ++i) {
      ASSERT_EQ(got[size_t(i)], want[size_t(i)])
          << "vs one thread: step at " << pos << " n " << n << " row " << i / V;
      ASSERT_EQ(got[size_t(i)], c[i]) << "vs batched: step at " << pos << " n " << n << " row " << i / V;
    }
    if (should_split) ++lone_split_steps;
    pos += n;
  }
  EXPECT_EQ(lone_split_steps, 2 + 1 + 3);
  EXPECT_EQ(single.stats().split_tiles, 0);  // one thread never splits
}

// Decode of sequences of different lengths in one batch on two threads: each sequence's
// logits equal its own steps on one thread. Every step must split exactly the sequences
// whose context is past one segment.
void check_batched_decode(const std::vector<int64_t>& prompt) {
  const int n_seqs = int(prompt.size());
  Runners runners(/*max_batch_tokens=*/128, n_seqs, /*threads=*/2);
  CpuRunner &split = *runners.split, &single = *runners.single;
  const int V = split.n_vocab();
  constexpr int kDecode = 4;
  std::mt19937 rng(9);
  const int64_t longest = *std::max_element(prompt.begin(), prompt.end());
  const int n_blocks = int(longest + kDecode + 15) / 16;
  KvCacheStorage kv_batch(split.kv_config(n_seqs * n_blocks, 16));
  std::vector<std::unique_ptr<KvCacheStorage>> kv_alone;
  std::vector<std::vector<int32_t>> tokens(static_cast<size_t>(n_seqs)), tables(static_cast<size_t>(n_seqs));
  for (int q = 0; q < n_seqs; ++q) {
    tokens[size_t(q)].resize(size_t(prompt[size_t(q)] + kDecode));
    for (auto& t : tokens[size_t(q)]) t = int32_t(rng() % uint32_t(V));
    for (int b = 0; b < n_blocks; ++b)
      tables[size_t(q)].push_back(n_seqs * (n_blocks - 1 - b) + q);  // interleaved
    kv_alone.push_back(std::make_unique<KvCacheStorage>(single.kv_config(n_seqs * n_blocks, 16)));
  }
  auto slice = [&](int q, int64_t pos, int n, LogitsMode mode) {
    SeqSlice s;
    s.n_past = pos;
    s.tokens = std::span<const int32_t>(tokens[size_t(q)].data() + pos, size_t(n));
    s.block_table = tables[size_t(q)];
    s.logits = mode;
    return s;
  };
  // Prompts, in chunks of up to 128, into both caches.
  for (int q = 0; q < n_seqs; ++q)
    for (int64_t pos = 0; pos < prompt[size_t(q)]; pos += 128) {
      const SeqSlice s =
          slice(q, pos, int(std::min<int64_t>(128, prompt[size_t(q)] - pos)), LogitsMode::None);
      split.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)}, kv_batch);
      single.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)}, *kv_alone[size_t(q)]);
    }
  for (int step = 0; step < kDecode; ++step) {
    std::vector<SeqSlice> batch;
    for (int q = 0; q < n_seqs; ++q) batch.push_back(slice(q, prompt[size_t(q)] + step, 1, LogitsMode::Last));
    int64_t long_seqs = 0;
    for (int q = 0; q < n_seqs; ++q) long_seqs += prompt[size_t(q)] + step + 1 > kAttentionSegmentKeys;
    const int64_t split_before = split.stats().split_tiles;
    const float* lg = split.forward(ForwardBatch{batch}, kv_batch);
    const std::vector<float> got(lg, lg + int64_t(n_seqs) * V);
    ASSERT_EQ(split.stats().split_tiles - split_before, long_seqs) << "step " << step;
    for (int q = 0; q < n_seqs; ++q) {
      const float* want =
          single.forward(ForwardBatch{std::span<const SeqSlice>(&batch[size_t(q)], 1)}, *kv_alone[size_t(q)]);
      for (int v = 0; v < V; ++v)
        ASSERT_EQ(got[size_t(q * V + v)], want[v]) << "step " << step << " sequence " << q << " logit " << v;
    }
  }
}

// Three sequences (one below a segment, two above): few items, every long one split.
TEST(SplitK, BatchedDecodeOfLongAndShortSequencesEqualsAloneBitExact) {
  constexpr int64_t S = kAttentionSegmentKeys;
  check_batched_decode({S + 150, 100, 2 * S + 70});
}

// One long conversation among eight short ones: too many items for the few-items rule,
// but the long one's keys outweigh a quarter of a thread's share, so it is split.
TEST(SplitK, OneLongSequenceAmongManyShortIsSplitAndEqualsAloneBitExact) {
  constexpr int64_t S = kAttentionSegmentKeys;
  check_batched_decode({20, 35, 2 * S + 30, 20, 17, 40, 25, 30, 22});
}

}  // namespace
}  // namespace kvserve
