// Prometheus text exposition. Every series carries model_name like vLLM's, so
// dashboards written for vLLM work after replacing the `vllm:` prefix.
#include "server/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace kvserve::server {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe(double x) {
  // le semantics: x lands in the first bucket whose bound is >= x.
  size_t i = size_t(std::lower_bound(bounds_.begin(), bounds_.end(), x) - bounds_.begin());
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(x, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::cumulative() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t acc = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    acc += buckets_[i].load(std::memory_order_relaxed);
    out[i] = acc;
  }
  return out;
}

std::vector<double> buckets_1_2_5(double max) {
  std::vector<double> out;
  for (double base = 1; base <= max; base *= 10)
    for (double m : {1.0, 2.0, 5.0})
      if (base * m <= max) out.push_back(base * m);
  return out;
}

namespace {

const std::vector<double> kTtftBuckets = {0.001, 0.005, 0.01, 0.02,  0.04,  0.06,  0.08, 0.1,
                                          0.25,  0.5,   0.75, 1.0,   2.5,   5.0,   7.5,  10.0,
                                          20.0,  40.0,  80.0, 160.0, 640.0, 2560.0};
const std::vector<double> kTokenTimeBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1,
                                               0.15,  0.2,    0.3,   0.4,  0.5,   0.75, 1.0,   2.5,
                                               5.0,   7.5,    10.0,  20.0, 40.0,  80.0};
const std::vector<double> kRequestTimeBuckets = {0.01, 0.05, 0.1,   0.3,   0.5,   0.8,   1.0,    1.5,
                                                 2.0,  2.5,  5.0,   10.0,  15.0,  20.0,  30.0,   40.0,
                                                 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

std::string escape_label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  return fmt::format("{}", v);
}

struct Writer {
  std::string out;
  std::string labels;  // model_name="..."

  void header(std::string_view name, std::string_view type, std::string_view help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  void gauge(std::string_view name, std::string_view help, double v) {
    header(name, "gauge", help);
    out += fmt::format("{}{{{}}} {}\n", name, labels, number(v));
  }
  void counter(std::string_view name, std::string_view help, uint64_t v) {
    header(name, "counter", help);
    out += fmt::format("{}{{{}}} {}\n", name, labels, v);
  }
  void histogram(std::string_view name, std::string_view help, const Histogram& h) {
    header(name, "histogram", help);
    std::vector<uint64_t> cum = h.cumulative();
    for (size_t i = 0; i < h.bounds().size(); ++i)
      out += fmt::format("{}_bucket{{{},le=\"{}\"}} {}\n", name, labels, number(h.bounds()[i]), cum[i]);
    out += fmt::format("{}_bucket{{{},le=\"+Inf\"}} {}\n", name, labels, cum.back());
    out += fmt::format("{}_sum{{{}}} {}\n", name, labels, number(h.sum()));
    // The count matches the +Inf bucket so the family stays self-consistent.
    out += fmt::format("{}_count{{{}}} {}\n", name, labels, cum.back());
  }
};

}  // namespace

ServerMetrics::ServerMetrics(std::string name, int max_model_len)
    : model_name(std::move(name)),
      time_to_first_token(kTtftBuckets),
      inter_token_latency(kTokenTimeBuckets),
      time_per_output_token(kTokenTimeBuckets),
      e2e_request_latency(kRequestTimeBuckets),
      request_queue_time(kRequestTimeBuckets),
      request_prompt_tokens(buckets_1_2_5(std::max(1, max_model_len))),
      request_generation_tokens(buckets_1_2_5(std::max(1, max_model_len))) {}

std::string ServerMetrics::render() const {
  Writer w;
  w.labels = fmt::format("model_name=\"{}\"", escape_label(model_name));
  w.gauge("kvserve:num_requests_running", "Number of requests in model execution batches.",
          num_requests_running.value());
  w.gauge("kvserve:num_requests_waiting", "Number of requests waiting to be processed.",
          num_requests_waiting.value());
  w.gauge("kvserve:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
          kv_cache_usage_perc.value());
  if (!kv_cache_dtype.empty()) {
    const char* name = "kvserve:cache_config_info";
    w.header(name, "gauge", "The KV cache: element type, block size in tokens, and blocks.");
    w.out += fmt::format("{}{{{},cache_dtype=\"{}\",block_size=\"{}\",num_blocks=\"{}\"}} 1\n", name,
                         w.labels, kv_cache_dtype, kv_cache_block_size, kv_cache_blocks);
    w.gauge("kvserve:kv_cache_capacity_tokens", "Tokens the KV cache holds when full.",
            double(int64_t(kv_cache_blocks) * kv_cache_block_size));
  }
  w.counter("kvserve:prefix_cache_queries_total",
            "Prefix cache queries, in terms of number of queried tokens.", prefix_cache_queries.value());
  w.counter("kvserve:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.",
            prefix_cache_hits.value());
  w.counter("kvserve:num_preemptions_total", "Cumulative number of preemptions from the engine.",
            num_preemptions.value());
  w.counter("kvserve:prompt_tokens_total", "Number of prefill tokens processed.", prompt_tokens.value());
  w.counter("kvserve:generation_tokens_total", "Number of generation tokens processed.",
            generation_tokens.value());
  w.counter("kvserve:engine_generation_tokens_total",
            "Number of tokens the engine generated, including those of aborted requests that no client "
            "received.",
            engine_generation_tokens.value());
  {
    const char* name = "kvserve:request_success_total";
    w.header(name, "counter", "Count of successfully processed requests.");
    for (size_t i = 0; i < kFinishNames.size(); ++i)
      w.out += fmt::format("{}{{{},finished_reason=\"{}\"}} {}\n", name, w.labels, kFinishNames[i],
                           request_success[i].value());
  }
  if (const int positions = spec_positions.load(std::memory_order_relaxed); positions > 0) {
    w.counter("kvserve:spec_decode_num_drafts_total", "Number of speculative drafts run.",
              spec_drafts.value());
    w.counter("kvserve:spec_decode_num_draft_tokens_total", "Number of draft tokens proposed and verified.",
              spec_draft_tokens.value());
    w.counter("kvserve:spec_decode_num_accepted_tokens_total", "Number of draft tokens the target accepted.",
              spec_accepted_tokens.value());
    const char* name = "kvserve:spec_decode_num_accepted_tokens_per_pos_total";
    w.header(name, "counter", "Accepted draft tokens by position in the draft.");
    for (int i = 0; i < positions; ++i)
      w.out += fmt::format("{}{{{},position=\"{}\"}} {}\n", name, w.labels, i,
                           spec_accepted_per_pos[size_t(i)].value());
  }
  w.histogram("kvserve:request_prompt_tokens", "Number of prefill tokens processed.", request_prompt_tokens);
  w.histogram("kvserve:request_generation_tokens", "Number of generation tokens processed.",
              request_generation_tokens);
  w.histogram("kvserve:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
              time_to_first_token);
  w.histogram("kvserve:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
              inter_token_latency);
  w.histogram("kvserve:time_per_output_token_seconds",
              "Histogram of time per output token in seconds (per request mean).", time_per_output_token);
  w.histogram("kvserve:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.",
              e2e_request_latency);
  w.histogram("kvserve:request_queue_time_seconds",
              "Histogram of time spent in the WAITING phase for request.", request_queue_time);
  return w.out;
}

}  // namespace kvserve::server
