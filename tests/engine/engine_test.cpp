// Engine over the real model runner (tiny shared models). The central property: greedy
// outputs do not depend on how requests are batched, chunked, cached or preempted.
#include "kvserve/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>

#include "common/test_paths.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {
namespace {

struct Loaded {
  std::shared_ptr<const Model> model;
  std::shared_ptr<const Tokenizer> tok;
};

const Loaded& load(const std::string& name) {
  static std::map<std::string, Loaded> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  auto m = Model::load(test::shared_path("models/" + name));
  EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error().message);
  auto t = Tokenizer::from_gguf((*m)->gguf());
  EXPECT_TRUE(t.ok());
  Loaded l{std::shared_ptr<const Model>(std::move(*m)), std::shared_ptr<const Tokenizer>(std::move(*t))};
  return cache.emplace(name, std::move(l)).first->second;
}

EngineConfig base_config() {
  EngineConfig c;
  c.num_kv_blocks = 512;
  c.block_size = 16;
  c.max_num_seqs = 64;
  c.max_num_batched_tokens = 512;
  c.n_threads = 1;  // a pool barrier per layer costs more than it saves on these tiny models
  return c;
}

std::unique_ptr<Engine> make(const std::string& model, const EngineConfig& c) {
  const Loaded& l = load(model);
  auto e = Engine::create(c, l.model, l.tok);
  EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().message);
  return std::move(*e);
}

struct Workload {
  std::vector<GenerateInput> inputs;
  std::vector<SamplingParams> params;
};

// 64 prompts of mixed lengths (1..120 tokens), some sharing long prefixes, each with its
// own max_tokens; ignore_eos keeps lengths independent of the text.
Workload mixed_workload(int n = 64, uint64_t seed = 42) {
  std::mt19937_64 rng(seed);
  Workload w;
  std::vector<int32_t> shared_prefix;
  for (int i = 0; i < 40; ++i) shared_prefix.push_back(3 + int32_t(rng() % 500));
  for (int i = 0; i < n; ++i) {
    GenerateInput in;
    in.token_ids.push_back(1);  // BOS
    if (i % 4 == 0) in.token_ids.insert(in.token_ids.end(), shared_prefix.begin(), shared_prefix.end());
    const int len = 1 + int(rng() % 120);
    while (int(in.token_ids.size()) < len) in.token_ids.push_back(3 + int32_t(rng() % 500));
    SamplingParams p;
    p.temperature = 0.0f;
    p.max_tokens = 1 + int(rng() % 48);
    p.ignore_eos = true;
    w.inputs.push_back(std::move(in));
    w.params.push_back(p);
  }
  return w;
}

std::vector<std::vector<int32_t>> run_together(Engine& e, const Workload& w, GenerateStats* stats = nullptr) {
  auto outs = generate(e, w.inputs, SamplingParams{}, stats, w.params);
  std::vector<std::vector<int32_t>> toks;
  for (const auto& o : outs) {
    EXPECT_TRUE(o.error.empty()) << o.error;
    toks.push_back(o.completions.at(0).token_ids);
  }
  EXPECT_FALSE(e.has_unfinished());
  EXPECT_EQ(e.stats().blocks_used, 0);  // every block released
  return toks;
}

std::vector<std::vector<int32_t>> run_alone(const std::string& model, const Workload& w) {
  EngineConfig c = base_config();
  c.enable_prefix_caching = false;
  auto e = make(model, c);
  std::vector<std::vector<int32_t>> toks;
  for (size_t i = 0; i < w.inputs.size(); ++i) {
    auto outs = generate(*e, std::span(&w.inputs[i], 1), w.params[i]);
    toks.push_back(outs.at(0).completions.at(0).token_ids);
    EXPECT_EQ(int(toks.back().size()), w.params[i].max_tokens);
  }
  return toks;
}

void expect_same(const std::vector<std::vector<int32_t>>& a, const std::vector<std::vector<int32_t>>& b,
                 const char* what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << what << ": prompt " << i;
}

class EngineEquivalence : public ::testing::TestWithParam<const char*> {};

TEST_P(EngineEquivalence, BatchedChunkedCachedAndPreemptedEqualAlone) {
  const std::string model = GetParam();
  const Workload w = mixed_workload();
  const auto alone = run_alone(model, w);
  {
    auto e = make(model, base_config());
    GenerateStats st;
    expect_same(run_together(*e, w, &st), alone, "together");
    EXPECT_GT(st.prefix_cache_hit_rate, 0.0);  // the shared prefixes were reused
  }
  {
    EngineConfig c = base_config();
    c.enable_prefix_caching = false;
    auto e = make(model, c);
    expect_same(run_together(*e, w), alone, "no prefix cache");
  }
  {
    // 12 blocks of 16 tokens: the longest request (168 tokens) needs 11, so only one or
    // two sequences fit at a time. (Same block size as the reference: attention sums
    // keys block by block, so another block size may round differently.)
    EngineConfig c = base_config();
    c.num_kv_blocks = 12;
    auto e = make(model, c);
    GenerateStats st;
    expect_same(run_together(*e, w, &st), alone, "tiny cache");
    EXPECT_GT(st.preemptions, 20);
  }
  for (int chunk : {1, 7, 64}) {
    EngineConfig c = base_config();
    c.max_chunk_tokens = chunk;
    c.max_num_batched_tokens = 96;
    auto e = make(model, c);
    expect_same(run_together(*e, w), alone, chunk == 1 ? "chunk 1" : chunk == 7 ? "chunk 7" : "chunk 64");
  }
}

// Quantized models too: every matmul and attention path of an ISA rounds each output the
// same way whatever the batch (tests/kernels/matmul_invariance_test.cpp), so greedy
// outputs must match exactly.
INSTANTIATE_TEST_SUITE_P(Models, EngineEquivalence,
                         ::testing::Values("stories260K.gguf", "synth-3m-f32.gguf", "synth-3m-f16.gguf",
                                           "synth-3m-q8_0.gguf", "synth-3m-q4_0.gguf", "synth-3m-q4_k_m.gguf",
                                           "synth-3m-q6_k.gguf"));

// Prompts past one 512-key attention segment on three threads: decode tiles are split by
// key segment over the pool (split-K) and every layer runs on the pool; greedy outputs
// must still equal each request alone on one thread (which never splits), batched and
// under preemption alike.
TEST(EngineLongContext, ThreeThreadsSplitKBatchedAndPreemptedEqualAlone) {
  const std::string model = "synth-3m-q4_0.gguf";
  std::mt19937_64 rng(11);
  Workload w;
  int longest = 0;
  for (int i = 0; i < 6; ++i) {
    GenerateInput in;
    in.token_ids.push_back(1);  // BOS
    const int len = 520 + int(rng() % 600);
    while (int(in.token_ids.size()) < len) in.token_ids.push_back(3 + int32_t(rng() % 500));
    SamplingParams p;
    p.temperature = 0.0f;
    p.max_tokens = 6 + int(rng() % 12);
    p.ignore_eos = true;
    longest = std::max(longest, len + p.max_tokens);
    w.inputs.push_back(std::move(in));
    w.params.push_back(p);
  }
  const auto alone = run_alone(model, w);
  {
    EngineConfig c = base_config();
    c.n_threads = 3;
    auto e = make(model, c);
    expect_same(run_together(*e, w), alone, "together, 3 threads");
    EXPECT_GT(e->stats().attention_split_tiles, 0);  // split-K really ran
  }
  {
    // Room for the longest request and a little more: the others wait or are preempted.
    EngineConfig c = base_config();
    c.n_threads = 3;
    c.num_kv_blocks = (longest + 15) / 16 + 8;
    auto e = make(model, c);
    GenerateStats st;
    expect_same(run_together(*e, w, &st), alone, "preempted, 3 threads");
    EXPECT_GT(st.preemptions, 0);
    EXPECT_GT(e->stats().attention_split_tiles, 0);
  }
}

TEST(Engine, GreedyStoryMatchesReference) {
  auto e = make("stories260K.gguf", base_config());
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 30;
  GenerateInput in;
  in.prompt = "Once upon a time";
  auto outs = generate(*e, std::span(&in, 1), p);
  ASSERT_EQ(outs.size(), 1u);
  EXPECT_EQ(
      outs[0].completions[0].text.rfind(", there was a little girl named Lily. She loved to play outside", 0),
      0u)
      << outs[0].completions[0].text;
  EXPECT_STREQ(outs[0].completions[0].finish_reason_name(), "length");
}

TEST(Engine, StopStringsAndStopTokensEndGeneration) {
  auto e = make("stories260K.gguf", base_config());
  GenerateInput in;
  in.prompt = "Once upon a time";
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 40;
  p.stop = {"Lily"};
  auto outs = generate(*e, std::span(&in, 1), p);
  EXPECT_EQ(outs[0].completions[0].text, ", there was a little girl named ");
  EXPECT_STREQ(outs[0].completions[0].finish_reason_name(), "stop");
  // The same continuation's 3rd token as a stop token id: generation ends right there.
  SamplingParams q;
  q.temperature = 0;
  q.max_tokens = 40;
  auto full = generate(*e, std::span(&in, 1), q)[0].completions[0].token_ids;
  q.stop_token_ids = {full[2]};
  auto cut = generate(*e, std::span(&in, 1), q)[0].completions[0];
  EXPECT_EQ(cut.token_ids, std::vector<int32_t>(full.begin(), full.begin() + 3));
  EXPECT_STREQ(cut.finish_reason_name(), "stop");
  EXPECT_EQ(e->stats().blocks_used, 0);
}

TEST(Engine, AbortInPrefillAndDecodeReleasesEverything) {
  EngineConfig c = base_config();
  c.max_num_batched_tokens = 16;
  auto e = make("stories260K.gguf", c);
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 100;
  p.ignore_eos = true;
  std::vector<int32_t> long_prompt(200, 5), short_prompt{1, 7, 8};
  ASSERT_TRUE(e->add_request("decoding", short_prompt, p).ok());
  ASSERT_TRUE(e->add_request("prefilling", long_prompt, p).ok());
  for (int i = 0; i < 4; ++i) e->step();
  EXPECT_EQ(e->stats().running, 2);
  EXPECT_GT(e->stats().blocks_used, 0);
  ASSERT_TRUE(e->abort("prefilling"));
  EXPECT_FALSE(e->abort("prefilling"));
  ASSERT_TRUE(e->abort("decoding"));
  EXPECT_EQ(e->stats().blocks_used, 0);
  EXPECT_EQ(e->stats().running, 0);
  const auto& outs = e->step();
  ASSERT_EQ(outs.size(), 2u);
  for (const auto& o : outs) {
    EXPECT_TRUE(o.finished && o.aborted);
    EXPECT_STREQ(o.finish_reason_name(), "abort");
  }
  EXPECT_FALSE(e->has_unfinished());
  // The ids are free again.
  EXPECT_TRUE(e->add_request("decoding", short_prompt, p).ok());
}

TEST(Engine, RandomAddsAbortsAndStepsKeepTheBooksStraight) {
  // Random requests (n, best_of, lengths, priorities, logprobs) added and aborted at
  // random points in a small cache: every completion reports exactly one final output,
  // abort included, and all memory comes back.
  EngineConfig c = base_config();
  c.num_kv_blocks = 20;
  c.max_num_seqs = 8;
  c.max_num_batched_tokens = 48;
  auto e = make("stories260K.gguf", c);
  std::mt19937_64 rng(7);
  std::map<std::string, int> expected_finals;  // id -> completions still owed a final output
  std::map<std::string, int> finals;           // "id/index" -> reported finished
  std::map<std::string, int> n_of;
  int added = 0;
  for (int step = 0; step < 3000 && (added < 60 || e->has_unfinished()); ++step) {
    if (added < 60 && rng() % 3 == 0) {
      SamplingParams p;
      p.temperature = rng() % 2 ? 0.0f : 1.0f;
      p.seed = rng();
      p.max_tokens = 1 + int(rng() % 30);
      p.ignore_eos = rng() % 2;
      p.n = 1 + int(rng() % 3);
      p.best_of = rng() % 3 == 0 ? p.n + 1 : 0;
      p.logprobs = rng() % 2 ? 1 : -1;
      std::vector<int32_t> prompt{1};
      const int len = int(rng() % 100);
      for (int i = 0; i < len; ++i) prompt.push_back(3 + int32_t(rng() % 40));  // shared prefixes likely
      const std::string id = "r" + std::to_string(added++);
      ASSERT_TRUE(e->add_request(id, prompt, p, int(rng() % 3)).ok());
      expected_finals[id] = p.n;
      n_of[id] = p.n;
    }
    if (!expected_finals.empty() && rng() % 15 == 0) {
      auto it = expected_finals.begin();
      std::advance(it, long(rng() % expected_finals.size()));
      e->abort(it->first);
    }
    for (const RequestOutput& o : e->step()) {
      ASSERT_TRUE(expected_finals.count(o.request_id)) << o.request_id;
      const std::string key = o.request_id + "/" + std::to_string(o.index);
      ASSERT_EQ(finals.count(key), 0u) << "output after the final one: " << key;
      ASSERT_LT(o.index, n_of[o.request_id]);
      if (o.finished) {
        finals[key] = 1;
        if (--expected_finals[o.request_id] == 0) expected_finals.erase(o.request_id);
      }
    }
  }
  EXPECT_TRUE(expected_finals.empty());
  EXPECT_FALSE(e->has_unfinished());
  EngineStats st = e->stats();
  EXPECT_EQ(st.blocks_used, 0);
  EXPECT_EQ(st.running + st.waiting, 0);
  EXPECT_GT(st.preemptions, 0);
}

TEST(Engine, RejectsRequestsThatCanNeverFit) {
  EngineConfig c = base_config();
  c.num_kv_blocks = 8;  // 128 tokens of cache
  auto e = make("stories260K.gguf", c);
  SamplingParams p;
  p.max_tokens = 100;
  auto st = e->add_request("big", std::vector<int32_t>(60, 5), p);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("could never complete"), std::string::npos) << st.error().message;
  p.max_tokens = 500;
  st = e->add_request("ctx", std::vector<int32_t>(20, 5), p);  // context 512
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("maximum context length"), std::string::npos);
  p.max_tokens = 10;
  EXPECT_TRUE(e->add_request("ok", std::vector<int32_t>(20, 5), p).ok());
  EXPECT_FALSE(e->add_request("ok", std::vector<int32_t>(20, 5), p).ok());  // duplicate id
}

TEST(Engine, ParallelSamplesShareThePromptAndCopyOnWrite) {
  // n = 4 sampled completions share the prompt's blocks, the partial last one included,
  // and write different tokens after it. Each completion's reported logprobs must equal
  // those of its tokens teacher-forced alone (prompt logprobs of prompt + completion):
  // a sibling writing into a block it should have copied would change them.
  auto e = make("stories260K.gguf", base_config());
  std::vector<int32_t> prompt{1};
  for (int i = 0; i < 37; ++i) prompt.push_back(3 + (i * 37) % 500);  // 38 tokens: partial last block
  SamplingParams p;
  p.temperature = 1.5f;
  p.seed = 1234;
  p.max_tokens = 24;
  p.ignore_eos = true;
  p.n = 4;
  p.logprobs = 0;
  GenerateInput in;
  in.token_ids = prompt;
  auto multi = generate(*e, std::span(&in, 1), p);
  ASSERT_EQ(multi[0].completions.size(), 4u);
  EXPECT_EQ(e->stats().blocks_used, 0);
  int distinct = 0;
  for (int i = 0; i < 4; ++i) {
    const auto& c = multi[0].completions[size_t(i)];
    ASSERT_EQ(c.token_ids.size(), 24u);
    ASSERT_EQ(c.logprobs.size(), 24u);
    if (i > 0) distinct += c.token_ids != multi[0].completions[0].token_ids;
    GenerateInput forced;
    forced.token_ids = prompt;
    forced.token_ids.insert(forced.token_ids.end(), c.token_ids.begin(), c.token_ids.end());
    SamplingParams q;
    q.temperature = 0;
    q.max_tokens = 1;
    q.prompt_logprobs = 0;
    auto ref = generate(*e, std::span(&forced, 1), q);
    const auto& pl = ref[0].prompt_logprobs;
    ASSERT_EQ(pl.size(), forced.token_ids.size() - 1);
    for (size_t t = 0; t < 24; ++t) {
      const LogprobsEntry& want = pl[prompt.size() - 1 + t];
      EXPECT_EQ(want.token, c.token_ids[t]);
      EXPECT_NEAR(c.logprobs[t].logprob, want.logprob, 1e-4) << "completion " << i << " token " << t;
    }
  }
  EXPECT_GT(distinct, 0);
}

TEST(Engine, ForkedSamplesSurvivePreemption) {
  // Seeded n = 3 / best_of = 3 requests give the same completions in a roomy cache and in
  // one so small that forks are preempted and recomputed: a recomputed fork keeps its
  // tokens and its RNG stream, and copy-on-write never lets siblings disturb each other.
  std::vector<GenerateInput> inputs(6);
  std::vector<SamplingParams> params(6);
  for (int i = 0; i < 6; ++i) {
    inputs[i].token_ids = {1};
    for (int k = 0; k < 20 + 7 * i; ++k) inputs[i].token_ids.push_back(3 + (k * 31 + i * 7) % 500);
    params[i].temperature = 0.8f;
    params[i].seed = uint64_t(100 + i);
    params[i].max_tokens = 30;
    params[i].ignore_eos = true;
    params[i].n = i % 2 ? 3 : 2;
    params[i].best_of = i % 3 == 0 ? 3 : 0;
  }
  std::vector<std::vector<GenerateOutput>> runs;
  int64_t preemptions = 0;
  for (int blocks : {512, 12}) {
    EngineConfig c = base_config();
    c.num_kv_blocks = blocks;
    auto e = make("stories260K.gguf", c);
    GenerateStats st;
    runs.push_back(generate(*e, inputs, SamplingParams{}, &st, params));
    preemptions = st.preemptions;
    EXPECT_EQ(e->stats().blocks_used, 0);
  }
  EXPECT_GT(preemptions, 5);
  for (size_t i = 0; i < inputs.size(); ++i) {
    ASSERT_EQ(runs[0][i].completions.size(), size_t(params[i].n));
    for (size_t k = 0; k < runs[0][i].completions.size(); ++k)
      EXPECT_EQ(runs[0][i].completions[k].token_ids, runs[1][i].completions[k].token_ids) << i << "/" << k;
  }
}

TEST(Engine, BestOfReturnsTheMostLikelyOfItsCandidates) {
  auto e = make("synth-3m-f32.gguf", base_config());
  GenerateInput in;
  in.token_ids = {1, 50, 60, 70};
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 99;
  p.max_tokens = 8;
  p.ignore_eos = true;
  p.n = 3;
  p.logprobs = 0;  // reports each completion's cumulative logprob
  auto all = generate(*e, std::span(&in, 1), p);
  size_t best = 0;
  for (size_t i = 1; i < 3; ++i)
    if (all[0].completions[i].cumulative_logprob > all[0].completions[best].cumulative_logprob) best = i;
  p.n = 1;
  p.best_of = 3;
  p.logprobs = -1;
  auto one = generate(*e, std::span(&in, 1), p);
  ASSERT_EQ(one[0].completions.size(), 1u);
  EXPECT_EQ(one[0].completions[0].token_ids, all[0].completions[best].token_ids);
  EXPECT_NEAR(one[0].completions[0].cumulative_logprob, all[0].completions[best].cumulative_logprob, 1e-3);
}

TEST(Engine, PromptLogprobsDoNotDependOnChunking) {
  std::vector<std::vector<LogprobsEntry>> got;
  for (int chunk : {0, 5}) {
    EngineConfig c = base_config();
    c.max_chunk_tokens = chunk;
    auto e = make("stories260K.gguf", c);
    GenerateInput in;
    in.prompt = "Once upon a time there was a dog";
    SamplingParams p;
    p.temperature = 0;
    p.max_tokens = 2;
    p.prompt_logprobs = 2;
    auto outs = generate(*e, std::span(&in, 1), p);
    const auto& pl = outs[0].prompt_logprobs;
    ASSERT_EQ(pl.size(), outs[0].prompt_token_ids.size() - 1);
    for (size_t i = 0; i < pl.size(); ++i) {
      EXPECT_EQ(pl[i].token, outs[0].prompt_token_ids[i + 1]);
      EXPECT_LE(pl[i].logprob, 0.0f);
      EXPECT_EQ(pl[i].top.size(), 2u);
    }
    got.push_back(pl);
  }
  for (size_t i = 0; i < got[0].size(); ++i) EXPECT_NEAR(got[0][i].logprob, got[1][i].logprob, 1e-4);
}

TEST(Engine, StreamedTextEqualsDecodedTokensAndStatsAreReported) {
  auto e = make("stories260K.gguf", base_config());
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 40;
  ASSERT_TRUE(e->add_request("s", "Once upon a time", p).ok());
  std::string text;
  std::vector<int32_t> toks;
  while (e->has_unfinished())
    for (const auto& d : e->step()) {
      text += d.text;
      toks.insert(toks.end(), d.token_ids.begin(), d.token_ids.end());
    }
  EXPECT_EQ(text, e->tokenizer().decode(toks, true));
  EngineStats s = e->stats();
  EXPECT_EQ(s.generated_tokens, int64_t(toks.size()));
  EXPECT_EQ(s.requests_finished, 1);
  EXPECT_EQ(s.blocks_used, 0);
  EXPECT_GT(s.blocks_cached, 0);  // the finished request's full blocks stay cached
}

TEST(Engine, FirstScheduledIsWhenTheRequestFirstGotAStep) {
  // One sequence at a time: the second request waits for the first to finish, so its
  // first_scheduled is after the first's final output, and the same on every output.
  EngineConfig c = base_config();
  c.max_num_seqs = 1;
  auto e = make("stories260K.gguf", c);
  SamplingParams p;
  p.max_tokens = 4;
  p.ignore_eos = true;
  const auto before = std::chrono::steady_clock::now();
  ASSERT_TRUE(e->add_request("a", std::vector<int32_t>{1, 5, 6, 7}, p).ok());
  ASSERT_TRUE(e->add_request("b", std::vector<int32_t>{1, 8, 9}, p).ok());
  std::map<std::string, std::chrono::steady_clock::time_point> first;
  std::chrono::steady_clock::time_point a_done{};
  while (e->has_unfinished()) {
    for (const RequestOutput& o : e->step()) {
      EXPECT_GE(o.first_scheduled, before);
      EXPECT_LE(o.first_scheduled, std::chrono::steady_clock::now());
      auto [it, fresh] = first.emplace(o.request_id, o.first_scheduled);
      if (!fresh) {
        EXPECT_EQ(it->second, o.first_scheduled);
      }
      if (o.request_id == "a" && o.finished) a_done = std::chrono::steady_clock::now();
    }
  }
  ASSERT_EQ(first.size(), 2u);
  EXPECT_LT(first["a"], first["b"]);
  EXPECT_GT(first["b"], a_done);  // "a" finished in an earlier step
}

}  // namespace
}  // namespace kvserve
