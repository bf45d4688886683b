// SmolLM2-135M-Instruct (Q4_1, tied Q8_0 embedding) answers a hand-written ChatML prompt
// with coherent English, decoding greedily token by token through the paged cache.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "cache/kv_cache.h"
#include "common/test_paths.h"
#include "model/cpu_runner.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {
namespace {

TEST(SmolLM2, AnswersCapitalOfFrance) {
  const std::string path = test::smollm2_path();
  if (!test::file_exists(path)) KVSERVE_MISSING_ASSET(path << " (run scripts/fetch_model.sh)");
  auto model = Model::load(path);
  ASSERT_TRUE(model) << model.error().message;
  const ModelConfig& c = (*model)->config();
  EXPECT_EQ(c.n_layers, 30);
  EXPECT_EQ(c.dim, 576);
  EXPECT_EQ(c.n_heads, 9);
  EXPECT_EQ(c.n_kv_heads, 3);
  EXPECT_TRUE(c.tied_output);
  auto tok = Tokenizer::from_gguf((*model)->gguf());
  ASSERT_TRUE(tok) << tok.error().message;

  const std::string prompt =
      "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
  const std::vector<int32_t> ids = (*tok)->encode(prompt, /*add_special=*/true, /*parse_special=*/true);
  ASSERT_GT(ids.size(), 10u);

  RunnerOptions opt;
  opt.max_batch_tokens = 64;
  opt.max_seqs = 1;
  CpuRunner runner(**model, opt);
  const int max_new = 32, block_size = 16;
  const int n_blocks = int(ids.size() + max_new + block_size - 1) / block_size;
  KvCacheStorage kv(runner.kv_config(n_blocks, block_size));
  std::vector<int32_t> table;
  for (int b = n_blocks - 1; b >= 0; --b) table.push_back(b);

  std::vector<int32_t> out;
  std::vector<int32_t> step = ids;
  int32_t n_past = 0;
  for (int i = 0; i < max_new; ++i) {
    SeqSlice s;
    s.n_past = n_past;
    s.tokens = step;
    s.block_table = table;
    const float* logits = runner.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)}, kv);
    n_past += int32_t(step.size());
    const int32_t next = int32_t(std::max_element(logits, logits + runner.n_vocab()) - logits);
    if ((*tok)->is_eog(next)) break;
    out.push_back(next);
    step = {next};
  }
  const std::string text = (*tok)->decode(out, /*skip_special=*/true, /*sequence_start=*/false);
  std::printf("SmolLM2 answer: %s\n", text.c_str());
  EXPECT_NE(text.find("Paris"), std::string::npos) << text;
  // Coherent English: mostly letters and spaces, several words.
  int letters = 0, spaces = 0;
  for (unsigned char ch : text) {
    letters += std::isalpha(ch) != 0;
    spaces += ch == ' ';
  }
  EXPECT_GE(spaces, 3) << text;
  EXPECT_GT(letters, int(text.size()) / 2) << text;
}

}  // namespace
}  // namespace kvserve
