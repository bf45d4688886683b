// AsyncEngine: requests from several threads stream the same tokens the offline API
// produces; aborts from another thread free the blocks; shutdown finishes every caller.
#include "engine/async_engine.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "common/test_paths.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {
namespace {

std::unique_ptr<Engine> make_engine() {
  EngineConfig c;
  c.model_path = test::shared_path("models/stories260K.gguf");
  c.num_kv_blocks = 256;
  c.n_threads = 1;
  auto e = Engine::create(c);
  EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().message);
  return std::move(*e);
}

// Collects one request's stream and lets a test wait for its end.
struct Sink {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int32_t> tokens;
  std::string text;
  bool done = false;
  bool aborted = false;
  int deltas = 0;
  AsyncEngine::Callback callback() {
    return [this](const RequestOutput& o) {
      std::lock_guard<std::mutex> lk(mu);
      tokens.insert(tokens.end(), o.token_ids.begin(), o.token_ids.end());
      text += o.text;
      ++deltas;
      if (o.finished) {
        done = true;
        aborted = o.aborted;
        cv.notify_all();
      }
    };
  }
  bool wait(int ms = 30000) {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_for(lk, std::chrono::milliseconds(ms), [&] { return done; });
  }
};

SamplingParams greedy(int max_tokens) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

TEST(AsyncEngine, ConcurrentSubmittersGetTheOfflineResults) {
  const std::vector<std::string> prompts = {
      "Once upon a time", "The cat", "Lily had a big red ball", "One day", "Tom and Sue went to the park",
      "The sun was"};
  // Offline reference.
  std::vector<std::vector<int32_t>> want;
  std::vector<std::string> want_text;
  {
    auto e = make_engine();
    for (const auto& p : prompts) {
      GenerateInput in;
      in.prompt = p;
      auto out = generate(*e, std::span(&in, 1), greedy(20 + int(p.size())));
      want.push_back(out[0].completions[0].token_ids);
      want_text.push_back(out[0].completions[0].text);
    }
  }
  AsyncEngine ae(make_engine());
  std::vector<Sink> sinks(prompts.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < prompts.size(); ++i)
    threads.emplace_back([&, i] {
      auto st = ae.add_request(std::string("r").append(std::to_string(i)), prompts[i],
                               greedy(20 + int(prompts[i].size())), sinks[i].callback());
      EXPECT_TRUE(st.ok());
    });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(sinks[i].wait());
    EXPECT_FALSE(sinks[i].aborted);
    EXPECT_EQ(sinks[i].tokens, want[i]) << prompts[i];
    EXPECT_EQ(sinks[i].text, want_text[i]);
  }
  EXPECT_EQ(ae.num_active(), 0);
}

TEST(AsyncEngine, ValidationIsSynchronous) {
  AsyncEngine ae(make_engine());
  Sink s;
  SamplingParams bad = greedy(4);
  bad.temperature = -1;
  EXPECT_FALSE(ae.add_request("x", "Once", bad, s.callback()).ok());
  EXPECT_FALSE(ae.add_request("x", "Once", greedy(100000), s.callback()).ok());  // beyond the context
  ASSERT_TRUE(ae.add_request("x", "Once", greedy(300), s.callback()).ok());
  EXPECT_FALSE(ae.add_request("x", "Once", greedy(4), s.callback()).ok());  // duplicate while active
  ae.abort("x");
  ASSERT_TRUE(s.wait());
}

TEST(AsyncEngine, AbortFromAnotherThreadFreesBlocks) {
  AsyncEngine ae(make_engine());
  Sink s;
  std::atomic<bool> first{false};
  auto inner = s.callback();
  ASSERT_TRUE(ae.add_request("long", "Once upon a time", greedy(400), [&](const RequestOutput& o) {
                  inner(o);
                  first = true;
                }).ok());
  while (!first) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::thread t([&] { EXPECT_TRUE(ae.abort("long")); });
  t.join();
  ASSERT_TRUE(s.wait());
  EXPECT_TRUE(s.aborted);
  EXPECT_LT(int(s.tokens.size()), 400);
  // Blocks are freed before the step that reports the abort, and stats follow that step.
  for (int i = 0; i < 1000 && ae.stats().blocks_used != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(ae.stats().blocks_used, 0);
  EXPECT_FALSE(ae.abort("long"));
}

TEST(AsyncEngine, ShutdownFinishesEveryCaller) {
  std::vector<Sink> sinks(4);
  {
    AsyncEngine ae(make_engine());
    for (size_t i = 0; i < sinks.size(); ++i)
      ASSERT_TRUE(ae.add_request(std::string("s").append(std::to_string(i)), "Once upon a time", greedy(400),
                                 sinks[i].callback())
                      .ok());
  }
  for (auto& s : sinks) {
    EXPECT_TRUE(s.done);
    EXPECT_TRUE(s.aborted);
  }
}

}  // namespace
}  // namespace kvserve
