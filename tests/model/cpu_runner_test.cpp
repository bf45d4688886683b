// The CPU runner behind the Runner interface the engine uses: it owns its KV storage,
// sizes blocks as its cache does, copies a block's K/V on request (copy-on-write), and
// computes the same logits over its own storage as over a caller's.
#include <gtest/gtest.h>

#include <vector>

#include "model_test_util.h"

namespace kvserve {
namespace {

TEST(CpuRunner, OwnsItsKvCopiesBlocksAndMatchesExternalStorage) {
  auto model = Model::load(test::shared_path("models/stories260K.gguf"));
  ASSERT_TRUE(model) << model.error().message;
  RunnerOptions opt;
  opt.max_batch_tokens = 16;
  opt.max_seqs = 1;
  CpuRunner cpu(**model, opt);
  Runner& runner = cpu;
  EXPECT_STREQ(runner.device(), "cpu");
  EXPECT_EQ(runner.kv_bytes_per_block(4, KvDtype::F16),
            KvCacheStorage::bytes_per_block(cpu.kv_config(1, 4, KvDtype::F16)));
  EXPECT_FALSE(runner.allocate_kv(0, 4, KvDtype::F16));
  ASSERT_TRUE(runner.allocate_kv(8, 4, KvDtype::F16));
  KvCacheStorage external(cpu.kv_config(8, 4, KvDtype::F16));
  const int V = runner.n_vocab();

  // Six prompt tokens in blocks 3 and 5, in both caches.
  const std::vector<int32_t> prompt = {1, 403, 261, 378, 299, 316}, next = {42};
  const std::vector<int32_t> table = {3, 5}, copied = {3, 6};
  SeqSlice s;
  s.tokens = prompt;
  s.block_table = table;
  const LogitsView own = runner.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)});
  ASSERT_EQ(own.rows, 1);
  ASSERT_EQ(own.n_vocab, V);
  const std::vector<float> want(own.row(0), own.row(0) + V);
  const float* ext = cpu.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)}, external);
  for (int v = 0; v < V; ++v) ASSERT_EQ(want[size_t(v)], ext[v]) << v;

  // Block 5 (positions 4, 5) copied to 6: decoding through {3, 6} must read what was in
  // 5, in every layer, so its logits equal decoding through {3, 5} in the other cache.
  runner.copy_kv_block(5, 6);
  s.n_past = 6;
  s.tokens = next;
  s.block_table = table;
  const float* through_5 = cpu.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)}, external);
  const std::vector<float> a(through_5, through_5 + V);
  s.block_table = copied;
  const LogitsView b = runner.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)});
  for (int v = 0; v < V; ++v) ASSERT_EQ(a[size_t(v)], b.row(0)[v]) << v;
  EXPECT_EQ(runner.stats().steps, 4);
}

}  // namespace
}  // namespace kvserve
