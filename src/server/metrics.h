// Prometheus metrics with vLLM-style names under `kvserve:`, rendered in the text
// exposition format (version 0.0.4) for GET /metrics. Recording is lock-free (relaxed
// atomics), so request threads record on their hot path without contention; rendering
// reads the atomics and may see a histogram's count and sum a few events apart.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kvserve::server {

class Counter {
 public:
  void inc(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  // For totals mirrored from the engine's own monotonic counters.
  void set(uint64_t v) { v_.store(v, std::memory_order_relaxed); }
  uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void set(double v) { v_.store(v, std::memory_order_relaxed); }
  double value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0.0};
};

// Fixed upper bounds (ascending); an implicit +Inf bucket follows them.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double x);
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum() const { return sum_.load(std::memory_order_relaxed); }
  const std::vector<double>& bounds() const { return bounds_; }
  // Cumulative counts per bound, then +Inf (= count at the time of reading).
  std::vector<uint64_t> cumulative() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // [bounds_.size() + 1], non-cumulative
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0.0};
};

// Finish reasons counted by kvserve:request_success_total.
enum class FinishKind { Stop = 0, Length = 1, Abort = 2 };
inline constexpr std::array<std::string_view, 3> kFinishNames = {"stop", "length", "abort"};

struct ServerMetrics {
  explicit ServerMetrics(std::string model_name, int max_model_len = 4096);

  std::string model_name;
  // The KV cache's shape, set once before serving (kv_cache_dtype empty: not rendered).
  std::string kv_cache_dtype;
  int kv_cache_block_size = 0;
  int kv_cache_blocks = 0;

  Histogram time_to_first_token;    // seconds, arrival -> first token sent
  Histogram inter_token_latency;    // seconds between consecutive tokens of a request
  Histogram time_per_output_token;  // seconds, per request: (e2e - ttft) / (tokens - 1)
  Histogram e2e_request_latency;    // seconds, arrival -> finish
  Histogram request_queue_time;     // seconds, arrival -> first scheduled
  Histogram request_prompt_tokens;  // tokens
  Histogram request_generation_tokens;

  Gauge num_requests_running;
  Gauge num_requests_waiting;
  Gauge kv_cache_usage_perc;  // fraction in [0, 1], as vLLM reports it

  Counter prefix_cache_queries;  // tokens looked up in the prefix cache
  Counter prefix_cache_hits;     // of those, tokens found
  Counter prompt_tokens;
  Counter generation_tokens;         // tokens delivered to requests
  Counter engine_generation_tokens;  // tokens the engine sampled, aborted requests' included
  Counter num_preemptions;
  std::array<Counter, 3> request_success;  // by FinishKind
  // Speculative decoding, mirrored from the engine; rendered only when it speculates.
  Counter spec_drafts;
  Counter spec_draft_tokens;
  Counter spec_accepted_tokens;
  std::array<Counter, 16> spec_accepted_per_pos;  // by draft position
  std::atomic<int> spec_positions{0};             // 0 = not speculating

  void record_finish(FinishKind kind) { request_success[size_t(kind)].inc(); }

  // The whole exposition, every family with # HELP and # TYPE.
  std::string render() const;
};

// Bucket helpers: vLLM's 1-2-5 series up to `max` (token-count histograms).
std::vector<double> buckets_1_2_5(double max);

}  // namespace kvserve::server
