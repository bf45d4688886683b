// Runs the built `kvserve bench` subcommands (the kvserve binary sits one directory
// above this test binary) on a small shared model and checks their JSON for internal
// consistency: counts as asked, rates that agree with the times reported.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "common/test_paths.h"

namespace {

namespace fs = std::filesystem;

std::string kvserve_bin() {
  return (fs::read_symlink("/proc/self/exe").parent_path().parent_path() / "kvserve").string();
}

// Runs `kvserve <args> --json <tmp>` and returns the parsed JSON (null on failure).
nlohmann::json run_json(const std::string& args, int* rc = nullptr) {
  const std::string out =
      (fs::temp_directory_path() / ("bench_cli_" + std::to_string(getpid()) + ".json")).string();
  fs::remove(out);
  const std::string cmd = kvserve_bin() + " " + args + " --json " + out + " > /dev/null 2>&1";
  const int r = std::system(cmd.c_str());
  if (rc) *rc = r;
  std::ifstream in(out);
  if (!in) return nullptr;
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  fs::remove(out);
  return j;
}

class BenchCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kvserve_bin())) KVSERVE_MISSING_ASSET("the kvserve binary at " << kvserve_bin());
    model_ = kvserve::test::shared_path("models/synth-3m-q8_0.gguf");
    if (!fs::exists(model_)) KVSERVE_MISSING_ASSET(model_);
  }
  std::string model_;
};

TEST_F(BenchCli, LatencyReportsConsistentRates) {
  int rc = 0;
  auto j = run_json("bench latency -m " + model_ + " -p 48 -n 16 -t 1 -r 2 -q", &rc);
  ASSERT_EQ(rc, 0);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["mode"], "latency");
  EXPECT_EQ(j["prompt_tokens"], 48);
  EXPECT_EQ(j["gen_tokens"], 16);
  const auto& smp = j["samples"];
  ASSERT_EQ(smp["prompt_tokens_per_s"].size(), size_t(2));
  ASSERT_EQ(smp["gen_tokens_per_s"].size(), size_t(2));
  double pp_sum = 0;
  for (size_t i = 0; i < 2; ++i) {
    const double pp = smp["prompt_tokens_per_s"][i], tg = smp["gen_tokens_per_s"][i];
    const double ttft = smp["ttft_ms"][i], tpot = smp["tpot_ms"][i];
    EXPECT_GT(pp, 0);
    EXPECT_GT(tg, 0);
    // Each run's rate and time describe the same interval.
    EXPECT_NEAR(48 * 1000.0 / ttft, pp, 1e-6 * pp);
    EXPECT_NEAR(1000.0 / tpot, tg, 1e-6 * tg);
    pp_sum += pp;
  }
  EXPECT_NEAR(double(j["prompt_tokens_per_s"]["mean"]), pp_sum / 2, 1e-9 * pp_sum);
}

TEST_F(BenchCli, LatencyRejectsBadArguments) {
  int rc = 0;
  auto j = run_json("bench latency -m " + model_ + " -p 0 -q", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_TRUE(j.is_null());
  j = run_json("bench latency -m /nonexistent.gguf -q", &rc);
  EXPECT_NE(rc, 0);
}

// With --speculative-method, latency also runs one request through the engine without and
// with speculation (the bench fails if the greedy outputs differ) and reports both rates.
TEST_F(BenchCli, LatencyWithSpeculationReportsTheSpeedup) {
  int rc = 0;
  auto j = run_json("bench latency -m " + kvserve::test::shared_path("models/stories260K.gguf") +
                        " -p 32 -n 48 -t 1 -r 2 -q --speculative-method ngram --speculative-tree 2"
                        // the adaptive off-switch times steps: under load it may drop every draft
                        " --no-speculative-adaptive",
                    &rc);
  ASSERT_EQ(rc, 0);
  ASSERT_TRUE(j.is_object());
  const auto& sp = j["speculative"];
  ASSERT_TRUE(sp.is_object());
  EXPECT_EQ(sp["method"], "ngram");
  const double with = sp["gen_tokens_per_s"]["mean"], without = sp["gen_tokens_per_s_without"]["mean"];
  EXPECT_GT(without, 0);
  EXPECT_NEAR(double(sp["speedup"]), with / without, 1e-9 * with / without);
  EXPECT_GT(double(sp["acceptance_rate"]), 0);
  EXPECT_LT(int(sp["decode_steps"]), int(sp["decode_steps_without"]));  // drafts were kept
  EXPECT_EQ(int(sp["decode_steps_without"]), 47);                       // one token per plain step
  // Speculative flags are checked like the engine's; --prompt-file needs a method.
  j = run_json("bench latency -m " + model_ + " -q --speculative-method ngram --speculative-tree 0", &rc);
  EXPECT_NE(rc, 0);
  j = run_json("bench latency -m " + model_ + " -q --prompt-file /dev/null", &rc);
  EXPECT_NE(rc, 0);
}

TEST_F(BenchCli, ThroughputGeneratesExactlyOutputLen) {
  int rc = 0;
  auto j = run_json(
      "bench throughput -m " + model_ + " --num-prompts 6 -c 3 --input-len 20 --output-len 7 -t 1 -q", &rc);
  ASSERT_EQ(rc, 0);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["output_tokens"], 6 * 7);
  EXPECT_EQ(j["prompt_tokens"], 6 * 20);
  EXPECT_EQ(j["preemptions"], 0);
  const double el = j["elapsed_s"];
  ASSERT_GT(el, 0);
  EXPECT_NEAR(double(j["total_tokens_per_s"]), (6 * 20 + 6 * 7) / el, 1e-6 * (6 * 27) / el);
  EXPECT_NEAR(double(j["requests_per_s"]), 6 / el, 1e-6 * 6 / el);
}

// With --speculative-method the same workload runs without speculation first: the JSON
// carries both rates, their ratio, and the acceptance; identical greedy outputs are
// checked by the bench itself (it fails otherwise). Texts from --prompts-file.
TEST_F(BenchCli, ThroughputWithSpeculationReportsTheSpeedup) {
  const std::string prompts =
      (fs::temp_directory_path() / ("bench_cli_prompts_" + std::to_string(getpid()) + ".txt")).string();
  {
    std::ofstream f(prompts);
    f << "Once upon a time, there was a little girl. Once upon a time\n---\nThe cat sat on the mat. The "
         "cat\n";
  }
  int rc = 0;
  auto j = run_json("bench throughput -m " + kvserve::test::shared_path("models/stories260K.gguf") +
                        " --prompts-file " + prompts +
                        " --num-prompts 4 -c 2 --output-len 40 -t 1 -q --speculative-method ngram "
                        "--no-speculative-adaptive",
                    &rc);
  fs::remove(prompts);
  ASSERT_EQ(rc, 0);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["workload"], prompts);
  const auto& sp = j["speculative"];
  ASSERT_TRUE(sp.is_object());
  EXPECT_EQ(sp["method"], "ngram");
  EXPECT_GT(double(sp["output_tokens_per_s_without"]), 0);
  EXPECT_NEAR(double(sp["speedup"]),
              double(j["output_tokens_per_s"]) / double(sp["output_tokens_per_s_without"]), 1e-9);
  EXPECT_GT(double(sp["acceptance_rate"]), 0);
  EXPECT_LT(int(j["steps"]), int(sp["steps_without"]));  // drafts were kept: fewer steps
  // A method that does not exist is refused.
  j = run_json("bench throughput -m " + model_ + " -q --speculative-method medusa", &rc);
  EXPECT_NE(rc, 0);
}

TEST_F(BenchCli, RooflineMeasuresMachineAndPlacesModel) {
  int rc = 0;
  auto j = run_json("bench roofline --buffer-mib 64 --thread-counts 1 -m " + model_ + " -p 32 -n 8 -t 1 -r 2",
                    &rc);
  ASSERT_EQ(rc, 0);
  ASSERT_TRUE(j.is_object());
  ASSERT_EQ(j["machine"].size(), size_t(1));
  const auto& m = j["machine"][0];
  EXPECT_GT(double(m["read_gb_per_s"]), 0.5);  // any machine streams faster than this
  EXPECT_GT(double(m["f32_gflops"]), 1.0);
  const auto& mo = j["model"];
  EXPECT_GT(double(mo["weight_bytes_per_decode_token"]), 1e5);  // synth-3m: a few MB of weights
  EXPECT_GT(double(mo["decode_fraction_of_bandwidth"]), 0.0);
  EXPECT_GT(double(mo["prefill_fraction_of_f32_peak"]), 0.0);
  // The bound is the speed at which decode would read all weights at full bandwidth.
  EXPECT_NEAR(double(mo["decode_bandwidth_bound_tokens_per_s"]) * double(mo["weight_bytes_per_decode_token"]),
              double(m["read_gb_per_s"]) * 1e9, 1e-3 * double(m["read_gb_per_s"]) * 1e9);
  // One bandwidth probe per measured run, and each run's fraction is its own decode
  // bandwidth over its own probe.
  const auto& probes = mo["run_probe_gb_per_s"];
  const auto& paired = mo["decode_fraction_of_bandwidth_paired"];
  const auto& tg = mo["latency"]["samples"]["gen_tokens_per_s"];
  ASSERT_EQ(probes.size(), size_t(2));
  ASSERT_EQ(paired.size(), size_t(2));
  ASSERT_EQ(tg.size(), size_t(2));
  for (size_t r = 0; r < 2; ++r) {
    EXPECT_GT(double(probes[r]), 0.5);
    EXPECT_NEAR(double(paired[r]),
                double(mo["weight_bytes_per_decode_token"]) * double(tg[r]) / 1e9 / double(probes[r]),
                1e-9 * double(paired[r]));
  }
  EXPECT_EQ(double(mo["decode_fraction_of_bandwidth_paired_median"]),
            std::max(double(paired[0]), double(paired[1])));  // the upper median of two
  // The same against the probe over a buffer the size of the weights.
  EXPECT_NEAR(double(mo["working_set_probe_bytes"]), double(mo["weight_bytes_per_decode_token"]),
              64 * 64 * 4);
  const auto& ws_probes = mo["run_working_set_probe_gb_per_s"];
  const auto& ws_paired = mo["decode_fraction_of_working_set_bandwidth_paired"];
  ASSERT_EQ(ws_probes.size(), size_t(2));
  ASSERT_EQ(ws_paired.size(), size_t(2));
  for (size_t r = 0; r < 2; ++r)
    EXPECT_NEAR(double(ws_paired[r]),
                double(mo["weight_bytes_per_decode_token"]) * double(tg[r]) / 1e9 / double(ws_probes[r]),
                1e-9 * double(ws_paired[r]));
}

}  // namespace
