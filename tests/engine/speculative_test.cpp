// Speculative decoding in the engine. The property: speculation changes how many
// forwards run, never what comes out. The verification samples the target at every
// draft position exactly as plain decoding would (same sampler, same RNG stream), so
// greedy and seeded sampled outputs alike must equal a run without speculation token for
// token, batched, preempted, chunked, with or without the prefix cache. Every test also
// checks that drafts were really proposed and accepted, and that no block leaked.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "common/test_paths.h"
#include "kvserve/engine.h"
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
  c.n_threads = 1;
  return c;
}

// The proposer: a draft model file, "layerskip" or "layerskip:<layers>" (self-speculation),
// else (null) n-gram lookup.
EngineConfig spec_config(EngineConfig c = base_config(), int k = 4, const char* draft = nullptr,
                         std::vector<int> tree = {}) {
  c.speculative.tree = std::move(tree);
  const std::string d = draft ? draft : "";
  if (d.rfind("layerskip", 0) == 0) {
    c.speculative.method = SpecMethod::LayerSkip;
    if (d.size() > 10) c.speculative.skip_layers = d.substr(10);
  } else if (!d.empty()) {
    c.speculative.method = SpecMethod::Draft;
    c.speculative.draft_model = test::shared_path("models/" + d);
  } else {
    c.speculative.method = SpecMethod::Ngram;
  }
  c.speculative.num_tokens = k;
  c.speculative.adaptive = false;  // draft whenever the lookup finds something
  return c;
}

std::unique_ptr<Engine> make(const std::string& model, const EngineConfig& c) {
  const Loaded& l = load(model);
  auto e = Engine::create(c, l.model, l.tok);
  EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().message);
  return e.ok() ? std::move(*e) : nullptr;
}

struct Workload {
  std::vector<GenerateInput> inputs;
  std::vector<SamplingParams> params;
};

enum class Sampling { Greedy, T07, T10, TopP09, Penalties };

// Prompts that quote themselves (a random segment repeated two or three times, as in
// code edits and summaries) so the n-gram lookup has something to find; mixed lengths
// and max_tokens; ignore_eos keeps lengths independent of the text.
Workload spec_workload(int n, Sampling s, uint64_t seed = 7) {
  std::mt19937_64 rng(seed);
  Workload w;
  for (int i = 0; i < n; ++i) {
    GenerateInput in;
    in.token_ids.push_back(1);  // BOS
    std::vector<int32_t> seg;
    const int seg_len = 4 + int(rng() % 24);
    for (int j = 0; j < seg_len; ++j) seg.push_back(3 + int32_t(rng() % 300));
    const int reps = 1 + int(rng() % 3);
    for (int r = 0; r < reps; ++r) {
      in.token_ids.insert(in.token_ids.end(), seg.begin(), seg.end());
      in.token_ids.push_back(3 + int32_t(rng() % 300));
    }
    SamplingParams p;
    p.max_tokens = 1 + int(rng() % 60);
    p.ignore_eos = true;
    p.seed = 1000 + uint64_t(i);
    switch (s) {
      case Sampling::Greedy: p.temperature = 0.0f; break;
      case Sampling::T07: p.temperature = 0.7f; break;
      case Sampling::T10: p.temperature = 1.0f; break;
      case Sampling::TopP09: p.temperature = 0.8f, p.top_p = 0.9f; break;
      case Sampling::Penalties:
        p.temperature = 0.9f, p.top_k = 40, p.frequency_penalty = 0.5f, p.repetition_penalty = 1.1f;
        break;
    }
    w.inputs.push_back(std::move(in));
    w.params.push_back(p);
  }
  return w;
}

std::vector<GenerateOutput> run(Engine& e, const Workload& w, GenerateStats* stats = nullptr) {
  auto outs = generate(e, w.inputs, SamplingParams{}, stats, w.params);
  for (const auto& o : outs) EXPECT_TRUE(o.error.empty()) << o.error;
  EXPECT_FALSE(e.has_unfinished());
  EXPECT_EQ(e.stats().blocks_used, 0);  // rollbacks released every draft slot
  return outs;
}

void expect_same(const std::vector<GenerateOutput>& a, const std::vector<GenerateOutput>& b,
                 const char* what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].completions.size(), b[i].completions.size()) << what << ": prompt " << i;
    for (size_t c = 0; c < a[i].completions.size(); ++c) {
      EXPECT_EQ(a[i].completions[c].token_ids, b[i].completions[c].token_ids) << what << ": prompt " << i;
      EXPECT_EQ(a[i].completions[c].text, b[i].completions[c].text) << what << ": prompt " << i;
      EXPECT_EQ(a[i].completions[c].finish_reason, b[i].completions[c].finish_reason) << what;
    }
  }
}

// Speculation really happened: drafts were run and some of them kept.
void expect_speculated(const EngineStats& s, const char* what, bool accepts = true) {
  EXPECT_GT(s.spec_drafts, 10) << what;
  if (accepts) {
    EXPECT_GT(s.spec_accepted_tokens, 10) << what;
  }
  EXPECT_EQ(s.spec_draft_blocks_used, 0) << what;  // a draft model's cache released too
  EXPECT_LE(s.spec_accepted_tokens, s.spec_draft_tokens) << what;
  int64_t per_pos = 0;
  for (int64_t v : s.spec_accepted_per_pos) per_pos += v;
  EXPECT_EQ(per_pos, s.spec_accepted_tokens) << what;
}

struct Case {
  const char* model;
  Sampling sampling;
  const char* draft = nullptr;  // a draft model (same vocabulary), else n-gram lookup
  bool accepts = true;          // the drafts are good enough that some are kept
  std::vector<int> tree = {};   // --speculative-tree (empty: chains)
};

class SpeculativeIdentity : public ::testing::TestWithParam<Case> {};

TEST_P(SpeculativeIdentity, SameTokensBatchedSinglePreemptedChunkedCached) {
  const Case c = GetParam();
  const Workload w = spec_workload(40, c.sampling);
  auto plain = make(c.model, base_config());
  const auto ref = run(*plain, w);
  EXPECT_EQ(plain->stats().spec_drafts, 0);
  {
    auto e = make(c.model, spec_config(base_config(), 4, c.draft, c.tree));
    expect_same(run(*e, w), ref, "batched");
    expect_speculated(e->stats(), "batched", c.accepts);
    if (!c.tree.empty()) {  // trees really ran, and other paths than the first were kept
      EXPECT_GT(e->stats().spec_tree_drafts, 10);
      if (c.accepts) {
        EXPECT_GT(e->stats().spec_tree_other_path, 0);
      }
    }
  }
  {
    // One request at a time.
    EngineConfig cfg = spec_config(base_config(), 4, c.draft, c.tree);
    cfg.max_num_seqs = 1;
    auto e = make(c.model, cfg);
    expect_same(run(*e, w), ref, "single");
    expect_speculated(e->stats(), "single", c.accepts);
  }
  {
    // 12 blocks of 16 tokens: draft slots compete with other sequences, drafts are dropped
    // for lack of memory and sequences are preempted mid-generation.
    EngineConfig cfg = spec_config(base_config(), 4, c.draft, c.tree);
    cfg.num_kv_blocks = 12;
    auto e = make(c.model, cfg);
    GenerateStats st;
    expect_same(run(*e, w, &st), ref, "tiny cache");
    EXPECT_GT(st.preemptions, 5);
    expect_speculated(e->stats(), "tiny cache", c.accepts);
  }
  {
    EngineConfig cfg = spec_config(base_config(), 4, c.draft, c.tree);
    cfg.enable_prefix_caching = false;
    auto e = make(c.model, cfg);
    expect_same(run(*e, w), ref, "no prefix cache");
  }
  {
    // Small budget and chunks: drafts are cut to what the step has left.
    EngineConfig cfg = spec_config(base_config(), 6, c.draft, c.tree);
    // (A tree must fit the budget whole: it then runs only when the step has room, else
    // its first path runs as a chain.)
    cfg.max_num_batched_tokens = c.tree.empty() ? 24 : 48;
    cfg.max_chunk_tokens = 5;
    auto e = make(c.model, cfg);
    expect_same(run(*e, w), ref, "chunked");
    expect_speculated(e->stats(), "chunked", c.accepts);
  }
  {
    EngineConfig cfg = spec_config(base_config(), std::max(2, int(c.tree.size())), c.draft, c.tree);
    cfg.speculative.adaptive = true;
    auto e = make(c.model, cfg);
    expect_same(run(*e, w), ref, "adaptive");
  }
}

std::string case_name(const ::testing::TestParamInfo<Case>& i) {
  static const char* const kNames[] = {"greedy", "t07", "t10", "topp09", "penalties"};
  auto clean = [](std::string m) {
    m = m.substr(0, m.find('.'));
    for (char& ch : m)
      if (!isalnum(uint8_t(ch))) ch = '_';
    return m;
  };
  std::string tree;
  for (int b : i.param.tree) tree += (tree.empty() ? "_tree" : "x") + std::to_string(b);
  return clean(i.param.model) + "_" + kNames[int(i.param.sampling)] +
         (i.param.draft ? "_draft_" + clean(i.param.draft) : std::string()) + tree;
}

INSTANTIATE_TEST_SUITE_P(
    Models, SpeculativeIdentity,
    ::testing::Values(Case{"stories260K.gguf", Sampling::Greedy},
                      Case{"synth-3m-q4_0.gguf", Sampling::Greedy},
                      Case{"synth-3m-f32.gguf", Sampling::Greedy}, Case{"stories260K.gguf", Sampling::T07},
                      Case{"stories260K.gguf", Sampling::T10}, Case{"stories260K.gguf", Sampling::TopP09},
                      Case{"synth-3m-q4_k_m.gguf", Sampling::Greedy},
                      Case{"stories260K.gguf", Sampling::Penalties},
                      // Draft models: a near twin (high acceptance), a
                      // stranger (mostly rejected), the model itself.
                      Case{"synth-3m-q8_0.gguf", Sampling::Greedy, "synth-3m-q4_0.gguf"},
                      Case{"stories260K.gguf", Sampling::Greedy, "synth-3m-q4_0.gguf", false},
                      Case{"stories260K.gguf", Sampling::Greedy, "stories260K.gguf"},
                      // Self-speculation: default and explicit skipped layers.
                      Case{"stories260K.gguf", Sampling::Greedy, "layerskip"},
                      Case{"synth-3m-q4_0.gguf", Sampling::Greedy, "layerskip:1"},
                      // Token trees: n-gram continuations, a draft model's runners-up.
                      Case{"stories260K.gguf", Sampling::Greedy, nullptr, true, {3, 2}},
                      Case{"synth-3m-q4_0.gguf", Sampling::Greedy, nullptr, true, {4}},
                      Case{"stories260K.gguf", Sampling::T07, nullptr, true, {2, 2, 2}},
                      Case{"synth-3m-q8_0.gguf", Sampling::Greedy, "synth-3m-q4_0.gguf", true, {3, 2}},
                      Case{"stories260K.gguf", Sampling::TopP09, "layerskip", true, {2, 2}}),
    case_name);

TEST(Speculative, LogprobsStopStringsAndBestOfUnchanged) {
  const std::string model = "stories260K.gguf";
  const Loaded& l = load(model);
  Workload w;
  const char* prompts[] = {"Once upon a time, there was a little girl named Lily. Once upon a time",
                           "The cat sat on the mat. The cat sat on the", "Tom and Sam went to the park. Tom"};
  for (int i = 0; i < 3; ++i) {
    for (int v = 0; v < 3; ++v) {
      GenerateInput in;
      in.token_ids = l.tok->encode(prompts[i], true, true);
      SamplingParams p;
      p.max_tokens = 48;
      p.seed = uint64_t(i * 10 + v);
      if (v == 0) {
        p.temperature = 0.0f;
        p.logprobs = 3;
      } else if (v == 1) {
        p.temperature = 0.8f;
        p.stop = {"park", "."};
        p.include_stop_str_in_output = i == 1;
      } else {
        p.temperature = 1.0f;
        p.n = 2;
        p.best_of = 3;
        p.logprobs = 1;
      }
      w.inputs.push_back(std::move(in));
      w.params.push_back(p);
    }
  }
  auto plain = make(model, base_config());
  const auto ref = run(*plain, w);
  auto e = make(model, spec_config());
  const auto got = run(*e, w);
  expect_same(got, ref, "logprobs / stop / best_of");
  for (size_t i = 0; i < ref.size(); ++i)
    for (size_t c = 0; c < ref[i].completions.size(); ++c) {
      const auto& a = got[i].completions[c];
      const auto& b = ref[i].completions[c];
      ASSERT_EQ(a.logprobs.size(), b.logprobs.size()) << i;
      for (size_t t = 0; t < a.logprobs.size(); ++t) {
        EXPECT_EQ(a.logprobs[t].token, b.logprobs[t].token);
        EXPECT_EQ(a.logprobs[t].logprob, b.logprobs[t].logprob);
        ASSERT_EQ(a.logprobs[t].top.size(), b.logprobs[t].top.size());
      }
      EXPECT_EQ(a.cumulative_logprob, b.cumulative_logprob) << i;
    }
  EXPECT_GT(e->stats().spec_accepted_tokens, 0);
}

TEST(Speculative, StepsYieldSeveralTokensAndFewerSteps) {
  const std::string model = "stories260K.gguf";
  const Loaded& l = load(model);
  SamplingParams p;
  p.temperature = 0.0f;
  p.max_tokens = 120;
  p.ignore_eos = true;
  const auto prompt = l.tok->encode("Once upon a time, there was a little girl named Lily.", true, true);
  auto count = [&](const EngineConfig& cfg, std::vector<int32_t>& tokens, std::string& text, int& multi) {
    auto e = make(model, cfg);
    EXPECT_TRUE(e->add_request("a", prompt, p).ok());
    int steps = 0;
    multi = 0;
    while (e->has_unfinished()) {
      ++steps;
      for (const RequestOutput& d : e->step()) {
        tokens.insert(tokens.end(), d.token_ids.begin(), d.token_ids.end());
        text += d.text;
        multi += d.token_ids.size() > 1;
      }
    }
    return steps;
  };
  std::vector<int32_t> t_plain, t_spec;
  std::string s_plain, s_spec;
  int m_plain = 0, m_spec = 0;
  const int steps_plain = count(base_config(), t_plain, s_plain, m_plain);
  const int steps_spec = count(spec_config(), t_spec, s_spec, m_spec);
  EXPECT_EQ(t_spec, t_plain);
  EXPECT_EQ(s_spec, s_plain);
  EXPECT_EQ(m_plain, 0);
  EXPECT_GT(m_spec, 0);  // one delta carried several accepted tokens
  EXPECT_LT(steps_spec, steps_plain);
  EXPECT_EQ(int(t_spec.size()), p.max_tokens);  // max_tokens is exact with drafts too
}

TEST(Speculative, RequestCanOptOut) {
  const Workload w0 = spec_workload(12, Sampling::Greedy);
  Workload w = w0;
  for (SamplingParams& p : w.params) p.speculative = false;
  auto e = make("stories260K.gguf", spec_config());
  auto plain = make("stories260K.gguf", base_config());
  expect_same(run(*e, w), run(*plain, w), "opted out");
  EXPECT_EQ(e->stats().spec_drafts, 0);
  run(*e, w0);
  EXPECT_GT(e->stats().spec_drafts, 0);
}

TEST(Speculative, BadSettingsAreClearErrors) {
  const Loaded& l = load("stories260K.gguf");
  for (auto [k, lo, hi] :
       {std::tuple{0, 2, 4}, std::tuple{17, 2, 4}, std::tuple{4, 3, 2}, std::tuple{4, 0, 2}}) {
    EngineConfig c = spec_config(base_config(), k);
    c.speculative.ngram_min = lo;
    c.speculative.ngram_max = hi;
    auto e = Engine::create(c, l.model, l.tok);
    ASSERT_FALSE(e.ok()) << k << " " << lo << " " << hi;
    EXPECT_NE(e.error().message.find(k < 1 || k > 16 ? "--num-speculative-tokens" : "--ngram-min"),
              std::string::npos)
        << e.error().message;
  }
}

TEST(Speculative, BadTreesAreClearErrors) {
  const Loaded& l = load("stories260K.gguf");
  struct Bad {
    int k;
    std::vector<int> tree;
    int budget;
    const char* message;
  };
  for (const Bad& b :
       {Bad{4, {0, 2}, 512, "branches 1 to 8"}, Bad{4, {9}, 512, "branches 1 to 8"},
        Bad{2, {2, 2, 2}, 512, "deeper than --num-speculative-tokens"}, Bad{8, {4, 4, 4, 2}, 512, "64 paths"},
        Bad{4, {3, 2}, 16, "more than the step's token budget"}}) {
    EngineConfig c = spec_config(base_config(), b.k, nullptr, b.tree);
    c.max_num_batched_tokens = b.budget;
    auto e = Engine::create(c, l.model, l.tok);
    ASSERT_FALSE(e.ok()) << b.message;
    EXPECT_NE(e.error().message.find(b.message), std::string::npos) << e.error().message;
  }
  // A tree that just fits the budget is fine: 3 + 6 + 6 + 6 nodes and the root.
  EngineConfig c = spec_config(base_config(), 4, nullptr, {3, 2});
  c.max_num_batched_tokens = 22;
  EXPECT_TRUE(Engine::create(c, l.model, l.tok).ok());
}

// Sampled requests drafted by a model: the tokens are the target's own draws only in
// law (rejection sampling draws differently), so the check is statistical: the joint
// distribution of three generated tokens under speculation must match plain decoding's
// (two-sample chi-square, p > 0.01, fixed seeds). The draft is a stranger to the target
// (q far from p), so acceptance and the residual draw max(0, p - q) both run often. The
// same test must reject the draft model's own distribution (it has the power to fail).
std::map<std::vector<int32_t>, int> histogram(const std::string& model, const EngineConfig& c,
                                              float temperature, float top_p, int n, uint64_t seed0,
                                              EngineStats* stats = nullptr) {
  const Loaded& l = load(model);
  Workload w;
  const auto prompt = l.tok->encode("Once upon a time, there was a little", true, true);
  for (int i = 0; i < n; ++i) {
    GenerateInput in;
    in.token_ids = prompt;
    SamplingParams p;
    p.temperature = temperature;
    p.top_p = top_p;
    p.max_tokens = 3;
    p.ignore_eos = true;
    p.seed = seed0 + uint64_t(i);
    w.inputs.push_back(std::move(in));
    w.params.push_back(p);
  }
  auto e = make(model, c);
  std::map<std::vector<int32_t>, int> h;
  for (const auto& o : run(*e, w)) ++h[o.completions.at(0).token_ids];
  if (stats) *stats = e->stats();
  return h;
}

// Two-sample chi-square statistic over categories with at least 10 observations in all
// (the rest pooled into one), and whether it stays below the p = 0.01 critical value
// (Wilson-Hilferty approximation).
bool same_distribution(const std::map<std::vector<int32_t>, int>& a,
                       const std::map<std::vector<int32_t>, int>& b, double* stat_out, int* df_out) {
  std::map<std::vector<int32_t>, std::pair<int, int>> both;
  for (const auto& [k, v] : a) both[k].first += v;
  for (const auto& [k, v] : b) both[k].second += v;
  double stat = 0.0;
  int cats = 0, pa = 0, pb = 0;
  auto add = [&](int x, int y) {
    if (x + y == 0) return;
    stat += double(x - y) * double(x - y) / double(x + y);
    ++cats;
  };
  for (const auto& [k, v] : both) {
    if (v.first + v.second >= 10) {
      add(v.first, v.second);
    } else {
      pa += v.first;
      pb += v.second;
    }
  }
  add(pa, pb);
  const int df = std::max(1, cats - 1);
  const double z = 2.3263;  // one-sided 1 %
  const double crit = df * std::pow(1.0 - 2.0 / (9.0 * df) + z * std::sqrt(2.0 / (9.0 * df)), 3.0);
  *stat_out = stat;
  *df_out = df;
  return stat < crit;
}

TEST(SpeculativeDraft, SampledOutputFollowsTheTargetDistribution) {
  struct Pair {
    const char* target;
    const char* draft;
    float temperature, top_p;
  };
  // A near twin (q close to p: mostly accepted), at temperature 1 and 0.7 with top-p, and
  // a stranger (q far from p: mostly residual draws).
  for (const Pair& pr : {Pair{"synth-3m-q8_0.gguf", "synth-3m-q4_0.gguf", 1.0f, 1.0f},
                         Pair{"synth-3m-q8_0.gguf", "synth-3m-q4_0.gguf", 0.7f, 0.9f},
                         Pair{"stories260K.gguf", "synth-3m-q4_0.gguf", 1.0f, 1.0f},
                         Pair{"stories260K.gguf", "layerskip", 0.8f, 1.0f}}) {
    SCOPED_TRACE(::testing::Message() << pr.target << " drafted by " << pr.draft << ", temperature "
                                      << pr.temperature << ", top_p " << pr.top_p);
    constexpr int kN = 2000;
    const auto plain = histogram(pr.target, base_config(), pr.temperature, pr.top_p, kN, 1);
    EngineStats st;
    const auto spec = histogram(pr.target, spec_config(base_config(), 2, pr.draft), pr.temperature, pr.top_p,
                                kN, 100000, &st);
    // Both branches of the rule ran: acceptances and residual draws.
    EXPECT_GT(st.spec_accepted_tokens, 20);
    EXPECT_GT(st.spec_draft_tokens - st.spec_accepted_tokens, 20);
    double stat = 0;
    int df = 0;
    EXPECT_TRUE(same_distribution(plain, spec, &stat, &df)) << "chi2 " << stat << " df " << df;
    if (std::string(pr.target) == "stories260K.gguf" && std::string(pr.draft) != "layerskip") {
      // Power: the draft model's own law is told apart from the target's.
      const auto q = histogram(pr.draft, base_config(), pr.temperature, pr.top_p, kN, 200000);
      EXPECT_FALSE(same_distribution(plain, q, &stat, &df)) << "chi2 " << stat << " df " << df;
    }
  }
}

// Token trees under sampling: a tree's nodes are deterministic guesses and the target is
// sampled as plain decoding would, so the law of the output is the target's. Checked as
// above with other seeds than the reference run's, for n-gram trees (their branches come
// from the continuations earlier requests produced) and a draft model's runners-up.
TEST(SpeculativeTree, SampledOutputFollowsTheTargetDistribution) {
  struct Pair {
    const char* target;
    const char* draft;  // null: n-gram
    float temperature, top_p;
  };
  for (const Pair& pr :
       {Pair{"stories260K.gguf", nullptr, 1.0f, 1.0f}, Pair{"stories260K.gguf", nullptr, 1.2f, 0.9f},
        Pair{"synth-3m-q8_0.gguf", "synth-3m-q4_0.gguf", 1.0f, 1.0f},
        Pair{"synth-3m-q8_0.gguf", "synth-3m-q4_0.gguf", 0.7f, 0.9f}}) {
    SCOPED_TRACE(::testing::Message() << pr.target << " drafted by " << (pr.draft ? pr.draft : "ngram")
                                      << ", temperature " << pr.temperature << ", top_p " << pr.top_p);
    constexpr int kN = 2000;
    const auto plain = histogram(pr.target, base_config(), pr.temperature, pr.top_p, kN, 1);
    EngineStats st;
    const auto spec = histogram(pr.target, spec_config(base_config(), 2, pr.draft, {3, 2}), pr.temperature,
                                pr.top_p, kN, 100000, &st);
    EXPECT_GT(st.spec_tree_drafts, 100);
    EXPECT_GT(st.spec_tree_other_path, 20);  // branches beside the first path were kept
    EXPECT_GT(st.spec_accepted_tokens, 20);
    EXPECT_GT(st.spec_draft_tokens - st.spec_accepted_tokens, 20);
    double stat = 0;
    int df = 0;
    EXPECT_TRUE(same_distribution(plain, spec, &stat, &df)) << "chi2 " << stat << " df " << df;
  }
}

// Aborts mid-speculation (a draft model's cache holding drafts, forks of n = 2 sharing
// blocks) release every block of both caches.
TEST(SpeculativeDraft, AbortMidSpeculationReleasesBothCaches) {
  for (const char* draft : {"synth-3m-q4_0.gguf", "layerskip", static_cast<const char*>(nullptr)}) {
    SCOPED_TRACE(draft ? draft : "ngram");
    auto e = make("stories260K.gguf", spec_config(base_config(), 4, draft));
    const Loaded& l = load("stories260K.gguf");
    const auto prompt =
        l.tok->encode("Once upon a time, there was a little girl. Once upon a time", true, true);
    for (int i = 0; i < 8; ++i) {
      SamplingParams p;
      p.temperature = i % 2 ? 0.8f : 0.0f;
      p.n = i % 3 == 0 ? 2 : 1;
      p.seed = uint64_t(i);
      p.max_tokens = 200;
      p.ignore_eos = true;
      ASSERT_TRUE(e->add_request("r" + std::to_string(i), prompt, p).ok());
    }
    for (int s = 0; s < 12; ++s) e->step();
    EXPECT_GT(e->stats().spec_drafts, 0);
    if (draft) {
      EXPECT_GT(e->stats().spec_draft_blocks_used, 0);
    }
    for (int i = 0; i < 8; ++i) EXPECT_TRUE(e->abort("r" + std::to_string(i)));
    while (e->has_unfinished()) e->step();
    EXPECT_EQ(e->stats().blocks_used, 0);
    EXPECT_EQ(e->stats().spec_draft_blocks_used, 0);
  }
}

TEST(SpeculativeLayerSkip, BadLayerListsAreClearErrors) {
  const Loaded& l = load("stories260K.gguf");  // 5 layers
  for (auto [list, what] :
       {std::pair{"7", "outside the model's layers 0-4"}, std::pair{"0-4", "skips every one"},
        std::pair{"2-x", "is not a layer or a range"}, std::pair{"3-1", "is not a layer"}}) {
    EngineConfig c = spec_config(base_config(), 4, (std::string("layerskip:") + list).c_str());
    auto e = Engine::create(c, l.model, l.tok);
    ASSERT_FALSE(e.ok()) << list;
    EXPECT_NE(e.error().message.find(what), std::string::npos) << e.error().message;
  }
}

TEST(SpeculativeDraft, AnotherVocabularyOrAMissingFileIsAClearError) {
  const Loaded& l = load("stories260K.gguf");
  EngineConfig c = spec_config(base_config(), 4, "llama-2-tiny-random.gguf");
  auto e = Engine::create(c, l.model, l.tok);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("vocabulary"), std::string::npos) << e.error().message;
  c.speculative.draft_model = "/nonexistent/draft.gguf";
  e = Engine::create(c, l.model, l.tok);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("loading the draft model"), std::string::npos) << e.error().message;
  c.speculative.draft_model.clear();
  e = Engine::create(c, l.model, l.tok);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("--speculative-model"), std::string::npos) << e.error().message;
}

}  // namespace
}  // namespace kvserve
