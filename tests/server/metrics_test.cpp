// Prometheus exposition: names, types, label syntax, cumulative buckets, and that
// concurrent recording loses nothing.
#include "server/metrics.h"

#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <sstream>
#include <thread>

namespace kvserve::server {
namespace {

// name{labels} -> value, for every sample line; also checks each line's syntax.
std::map<std::string, std::string> samples(const std::string& text,
                                           std::map<std::string, std::string>* types) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  const std::regex sample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$)");
  const std::regex type(R"(^# TYPE (\S+) (counter|gauge|histogram)$)");
  while (std::getline(in, line)) {
    std::smatch m;
    if (line.rfind("# HELP ", 0) == 0) continue;
    if (std::regex_match(line, m, type)) {
      (*types)[m[1]] = m[2];
      continue;
    }
    EXPECT_TRUE(std::regex_match(line, m, sample)) << "bad line: " << line;
    out[m[1].str() + m[2].str()] = m[3];
  }
  EXPECT_EQ(text.back(), '\n');
  return out;
}

TEST(Metrics, HistogramBuckets) {
  Histogram h({0.1, 1.0});
  h.observe(0.05);
  h.observe(0.1);  // le is inclusive
  h.observe(0.5);
  h.observe(7.0);
  EXPECT_EQ(h.cumulative(), (std::vector<uint64_t>{2, 3, 4}));
  EXPECT_EQ(h.count(), 4u);
  EXPECT_DOUBLE_EQ(h.sum(), 7.65);
}

TEST(Metrics, OneTwoFive) {
  EXPECT_EQ(buckets_1_2_5(100), (std::vector<double>{1, 2, 5, 10, 20, 50, 100}));
}

TEST(Metrics, Exposition) {
  ServerMetrics m("my \"model\"", 100);
  m.time_to_first_token.observe(0.003);
  m.time_to_first_token.observe(0.2);
  m.request_prompt_tokens.observe(7);
  m.num_requests_running.set(3);
  m.kv_cache_usage_perc.set(0.25);
  m.prompt_tokens.inc(7);
  m.generation_tokens.inc(11);
  m.record_finish(FinishKind::Length);
  m.record_finish(FinishKind::Stop);
  m.record_finish(FinishKind::Stop);
  std::map<std::string, std::string> types;
  auto s = samples(m.render(), &types);
  const std::string L = R"(model_name="my \"model\"")";
  EXPECT_EQ(types["kvserve:time_to_first_token_seconds"], "histogram");
  EXPECT_EQ(types["kvserve:num_requests_running"], "gauge");
  EXPECT_EQ(types["kvserve:prompt_tokens_total"], "counter");
  for (const char* name : {"kvserve:inter_token_latency_seconds", "kvserve:e2e_request_latency_seconds",
                           "kvserve:request_queue_time_seconds", "kvserve:request_generation_tokens",
                           "kvserve:time_per_output_token_seconds"})
    EXPECT_EQ(types[name], "histogram") << name;
  for (const char* name : {"kvserve:num_requests_waiting", "kvserve:kv_cache_usage_perc"})
    EXPECT_EQ(types[name], "gauge") << name;
  for (const char* name : {"kvserve:prefix_cache_queries_total", "kvserve:prefix_cache_hits_total",
                           "kvserve:generation_tokens_total", "kvserve:engine_generation_tokens_total",
                           "kvserve:num_preemptions_total", "kvserve:request_success_total"})
    EXPECT_EQ(types[name], "counter") << name;
  EXPECT_EQ(s["kvserve:num_requests_running{" + L + "}"], "3");
  EXPECT_EQ(s["kvserve:kv_cache_usage_perc{" + L + "}"], "0.25");
  EXPECT_EQ(s["kvserve:prompt_tokens_total{" + L + "}"], "7");
  EXPECT_EQ(s["kvserve:generation_tokens_total{" + L + "}"], "11");
  EXPECT_EQ(s["kvserve:request_success_total{" + L + ",finished_reason=\"stop\"}"], "2");
  EXPECT_EQ(s["kvserve:request_success_total{" + L + ",finished_reason=\"length\"}"], "1");
  EXPECT_EQ(s["kvserve:request_success_total{" + L + ",finished_reason=\"abort\"}"], "0");
  const std::string ttft = "kvserve:time_to_first_token_seconds";
  EXPECT_EQ(s[ttft + "_bucket{" + L + ",le=\"0.001\"}"], "0");
  EXPECT_EQ(s[ttft + "_bucket{" + L + ",le=\"0.005\"}"], "1");
  EXPECT_EQ(s[ttft + "_bucket{" + L + ",le=\"0.25\"}"], "2");
  EXPECT_EQ(s[ttft + "_bucket{" + L + ",le=\"+Inf\"}"], "2");
  EXPECT_EQ(s[ttft + "_count{" + L + "}"], "2");
  EXPECT_DOUBLE_EQ(std::stod(s[ttft + "_sum{" + L + "}"]), 0.203);
  EXPECT_EQ(s["kvserve:request_prompt_tokens_bucket{" + L + ",le=\"10\"}"], "1");
  EXPECT_EQ(s["kvserve:request_prompt_tokens_bucket{" + L + ",le=\"5\"}"], "0");
  EXPECT_EQ(s.count("kvserve:kv_cache_capacity_tokens{" + L + "}"), 0u);  // shape not set: not rendered
  m.kv_cache_dtype = "int8";
  m.kv_cache_block_size = 16;
  m.kv_cache_blocks = 100;
  s = samples(m.render(), &types);
  EXPECT_EQ(types["kvserve:cache_config_info"], "gauge");
  EXPECT_EQ(
      s["kvserve:cache_config_info{" + L + ",cache_dtype=\"int8\",block_size=\"16\",num_blocks=\"100\"}"],
      "1");
  EXPECT_EQ(s["kvserve:kv_cache_capacity_tokens{" + L + "}"], "1600");
}

TEST(Metrics, ConcurrentRecording) {
  ServerMetrics m("m");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        m.inter_token_latency.observe(0.01);
        m.generation_tokens.inc();
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(m.inter_token_latency.count(), 40000u);
  EXPECT_EQ(m.inter_token_latency.cumulative().back(), 40000u);
  EXPECT_NEAR(m.inter_token_latency.sum(), 400.0, 1e-6);
  EXPECT_EQ(m.generation_tokens.value(), 40000u);
}

}  // namespace
}  // namespace kvserve::server
