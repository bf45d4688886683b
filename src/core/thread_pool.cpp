#include "core/thread_pool.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>

namespace kvserve {
namespace {
constexpr int kSpinIterations = 1 << 16;

// Spin first (workers usually finish within microseconds of us); if a thread has been
// descheduled (more runnable threads than cores), yield the core to it instead of
// burning our time slice.
template <class Done>
void spin_until(Done done) {
  for (int i = 0; !done(); ++i) {
    if (i < kSpinIterations / 16)
      _mm_pause();
    else
      std::this_thread::yield();
  }
}
}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = int(std::max(1u, std::thread::hardware_concurrency()));
  n_threads_ = n_threads;
  ranges_ = std::make_unique<RangeSlot[]>(size_t(n_threads));
  threads_.reserve(size_t(n_threads - 1));
  for (int t = 1; t < n_threads; ++t) threads_.emplace_back([this, t] { worker(t); });
  if (n_threads > 1 && unsigned(n_threads) <= std::thread::hardware_concurrency()) settle();
}

void ThreadPool::settle() {
  // A new thread starts on its creator's core, and the scheduler spreads runnable threads
  // only at its next balancing tick (milliseconds); until then a spinning caller and a
  // worker share one core, and a short run (a benchmark, the first request) sees one
  // thread's speed, or a worker that joins dynamic jobs too late to take any. So the
  // threads pass a few barriers together, spinning without yielding: on one core each
  // takes a time slice, and the scheduler moves a thread to an idle core meanwhile. A
  // deadline keeps this short when the cores are busy with other work anyway.
  constexpr int kRounds = 32;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
  std::atomic<int> arrived{0};
  std::atomic<bool> late{false};
  run([&](int, int nth) {
    for (int r = 1; r <= kRounds && !late.load(std::memory_order_relaxed); ++r) {
      arrived.fetch_add(1, std::memory_order_acq_rel);
      for (int i = 0; arrived.load(std::memory_order_acquire) < r * nth; ++i) {
        _mm_pause();
        if ((i & 1023) == 1023 && std::chrono::steady_clock::now() > deadline) {
          late.store(true, std::memory_order_relaxed);
          break;
        }
        if (late.load(std::memory_order_relaxed)) break;
      }
    }
  });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadPool::dispatch(Trampoline fn, void* ctx, bool all) {
  if (n_threads_ == 1) {
    fn(ctx, 0, 1);
    return;
  }
  fn_ = fn;
  ctx_ = ctx;
  all_ = all;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  const uint32_t gen = generation_.load(std::memory_order_relaxed) + 1;
  job_.store(uint64_t(gen) << 32, std::memory_order_relaxed);
  generation_.store(gen, std::memory_order_release);
  generation_.notify_all();
  fn(ctx, 0, n_threads_);
  if (all) {
    spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; });
  } else {
    // Late workers stay out; wait only for those inside.
    job_.fetch_or(kClosed, std::memory_order_acq_rel);
    spin_until([&] { return (job_.load(std::memory_order_acquire) & (kClosed - 1)) == 0; });
  }
}

void ThreadPool::worker(int tid) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t g = generation_.load(std::memory_order_acquire);
    for (int i = 0; g == seen && i < kSpinIterations; ++i) {
      if (i < kSpinIterations / 16)
        _mm_pause();
      else
        std::this_thread::yield();  // let a runnable thread have the core meanwhile
      g = generation_.load(std::memory_order_acquire);
    }
    while (g == seen) {
      generation_.wait(seen, std::memory_order_acquire);
      g = generation_.load(std::memory_order_acquire);
    }
    seen = g;
    if (stop_.load(std::memory_order_acquire)) return;
    // Join job g unless it is closed or already over (the caller has moved on).
    uint64_t j = job_.load(std::memory_order_acquire);
    bool joined = false;
    while (uint32_t(j >> 32) == g && !(j & kClosed)) {
      if (job_.compare_exchange_weak(j, j + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
        joined = true;
        break;
      }
    }
    if (!joined) continue;
    const bool all = all_;
    fn_(ctx_, tid, n_threads_);
    if (all)
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    else
      job_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace kvserve
