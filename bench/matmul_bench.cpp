// matmul on SmolLM2-135M's shapes: GEMV (decode, 1 token) and GEMM (prefill, 32 and 128
// tokens) for the weight types it and its variants use, in the file layout (matmul/...)
// and, where the CPU has one, the layout packed at load (matmul_packed/...). Reports
// weight bytes read per second (the decode bound) and GFLOP/s (2 * n_in * n_out *
// n_tokens per call).
// Threads: KVSERVE_BENCH_THREADS (default 2; with 1, CPU time is reported). ISA: best, or
// KVSERVE_ISA=scalar|avx2.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>
#include <random>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_pack.h"
#include "kernels/matmul_test_util.h"

namespace kvserve {
namespace {

int bench_threads() {
  const char* e = std::getenv("KVSERVE_BENCH_THREADS");
  return e ? std::atoi(e) : 2;
}

ThreadPool& bench_pool() {
  static ThreadPool pool(bench_threads());
  return pool;
}

void BM_Matmul(benchmark::State& state, GgmlType type, int64_t n_in, int64_t n_out, bool packed) {
  const int64_t n_tokens = state.range(0);
  std::mt19937 rng(1);
  const auto w = test::random_weights(type, n_out, n_in, rng);
  const auto x = test::random_floats(size_t(n_in * n_tokens), rng);
  std::vector<float> y(size_t(n_out * n_tokens));
  WeightView view{type, w.data(), n_in, n_out};
  PackedWeights store;  // the layout the model loader uses (matmul_pack.h)
  if (packed && !store.pack(view, /*release_source=*/false)) {
    state.SkipWithError("no packed layout for this type / CPU");
    return;
  }
  ThreadPool& pool = bench_pool();
  for (auto _ : state) {
    matmul(view, x.data(), n_tokens, y.data(), pool);
    benchmark::DoNotOptimize(y.data());
  }
  const double iters = double(state.iterations());
  state.counters["GB/s"] =
      benchmark::Counter(double(w.size()) * iters, benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * double(n_in * n_out * n_tokens) * iters * 1e-9, benchmark::Counter::kIsRate);
  state.counters["tok/s"] = benchmark::Counter(double(n_tokens) * iters, benchmark::Counter::kIsRate);
}

void register_all() {
  const GgmlType types[] = {GgmlType::Q8_0, GgmlType::Q4_1, GgmlType::Q4_0, GgmlType::Q5_0,
                            GgmlType::F16,  GgmlType::Q4_K, GgmlType::Q6_K};
  const int64_t shapes[][2] = {{576, 1536}, {1536, 576}, {576, 49152}};
  for (GgmlType t : types)
    for (const auto& s : shapes) {
      if (s[0] % ggml_traits(t).block_size != 0) continue;  // Q4_K needs n_in % 256 == 0
      const std::string name = std::string("matmul/") + ggml_type_name(t) + "/" + std::to_string(s[0]) + "x" +
                               std::to_string(s[1]);
      for (bool packed : {false, true}) {
        if (packed && !matmul_packable(WeightView{t, &t, s[0], s[1]})) continue;
        const std::string full = packed ? "matmul_packed" + name.substr(6) : name;
        auto* b = benchmark::RegisterBenchmark(full.c_str(), BM_Matmul, t, s[0], s[1], packed);
        b->ArgName("tokens")->Arg(1)->Arg(8)->Arg(32)->Arg(128);
        // With one thread, CPU time is the fairer measure on a busy machine.
        if (bench_threads() != 1) b->UseRealTime();
      }
    }
}

}  // namespace
}  // namespace kvserve

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  kvserve::register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
