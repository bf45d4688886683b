// Speculation on a real model: SmolLM2-135M-Instruct answering input-grounded ChatML
// prompts must give token for token what plain decoding gives, for every proposer (n-gram
// chains and trees, the model drafting for itself, layer skip), batched, one at a time and
// on a cache so small that sequences are preempted mid-speculation.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "common/test_paths.h"
#include "kvserve/engine.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {
namespace {

const char* const kPrompts[] = {
    "<|im_start|>user\nRename the variable x to total in this function:\ndef add(a, b):\n    x = a + b\n"
    "    return x<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nCopy this sentence exactly: The quick brown fox jumps over the lazy dog, and the dog "
    "does not mind.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nDocument: Paris is the capital of France. It has about two million people.\n"
    "Question: What is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWrite a short poem about the sea.<|im_end|>\n<|im_start|>assistant\n",
};

struct Method {
  const char* name;
  SpecMethod method;
  std::vector<int> tree;
  std::string skip_layers;
  bool self_draft = false;
};

class SmolLM2Speculative : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = test::smollm2_path();
    if (!test::file_exists(path)) KVSERVE_MISSING_ASSET(path << " (run scripts/fetch_model.sh)");
    auto m = Model::load(path);
    ASSERT_TRUE(m) << m.error().message;
    auto t = Tokenizer::from_gguf((*m)->gguf());
    ASSERT_TRUE(t) << t.error().message;
    model_ = std::shared_ptr<const Model>(std::move(*m));
    tok_ = std::shared_ptr<const Tokenizer>(std::move(*t));
    for (const char* p : kPrompts)
      inputs_.push_back(GenerateInput{.prompt = p, .token_ids = {}, .priority = 0});
  }

  EngineConfig base() const {
    EngineConfig c;
    c.num_kv_blocks = 64;
    c.block_size = 16;
    c.max_num_seqs = 8;
    c.max_num_batched_tokens = 256;
    c.max_model_len = 256;
    c.n_threads = 2;
    return c;
  }

  std::vector<GenerateOutput> run(const EngineConfig& c, EngineStats* stats = nullptr,
                                  GenerateStats* gs = nullptr) {
    auto e = Engine::create(c, model_, tok_);
    EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().message);
    if (!e.ok()) return {};
    SamplingParams p;
    p.temperature = 0.0f;
    p.max_tokens = 40;
    p.ignore_eos = true;
    auto outs = generate(**e, inputs_, p, gs);
    EXPECT_EQ((*e)->stats().blocks_used, 0);
    if (stats) *stats = (*e)->stats();
    return outs;
  }

  std::shared_ptr<const Model> model_;
  std::shared_ptr<const Tokenizer> tok_;
  std::vector<GenerateInput> inputs_;
};

TEST_F(SmolLM2Speculative, EveryProposerGivesPlainDecodingsTokens) {
  const auto ref = run(base());
  ASSERT_EQ(ref.size(), std::size(kPrompts));
  for (const Method& m : {Method{"ngram", SpecMethod::Ngram, {}, "", false},
                          Method{"ngram tree 3,2", SpecMethod::Ngram, {3, 2}, "", false},
                          Method{"draft (itself)", SpecMethod::Draft, {}, "", true},
                          Method{"layerskip 4-7 tree 2", SpecMethod::LayerSkip, {2}, "4-7", false}}) {
    for (int variant = 0; variant < 3; ++variant) {
      EngineConfig c = base();
      c.speculative.method = m.method;
      c.speculative.num_tokens = 4;
      c.speculative.tree = m.tree;
      c.speculative.skip_layers = m.skip_layers;
      if (m.self_draft) c.speculative.draft_model = test::smollm2_path();
      c.speculative.adaptive = false;
      const char* what = variant == 0 ? "batched" : variant == 1 ? "single" : "tiny cache";
      if (variant == 1) c.max_num_seqs = 1;
      if (variant == 2) c.num_kv_blocks = 14;  // 4 sequences of ~60-110 tokens: preemption
      SCOPED_TRACE(std::string(m.name) + ", " + what);
      EngineStats st;
      GenerateStats gs;
      const auto outs = run(c, &st, &gs);
      ASSERT_EQ(outs.size(), ref.size());
      for (size_t i = 0; i < ref.size(); ++i)
        EXPECT_EQ(outs[i].completions.at(0).token_ids, ref[i].completions.at(0).token_ids) << "prompt " << i;
      EXPECT_GT(st.spec_accepted_tokens, 10);
      if (!m.tree.empty()) {
        EXPECT_GT(st.spec_tree_drafts, 0);
      }
      if (variant == 2) {
        EXPECT_GT(gs.preemptions, 0);
      }
    }
  }
}

}  // namespace
}  // namespace kvserve
