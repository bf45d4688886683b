// A persistent pool of worker threads created once. `run(f)` calls f(tid, n_threads)
// on every thread (the caller is thread 0) and returns when all are done; it never
// allocates, so it is safe in the per-token loop. Workers spin briefly between jobs
// (kernels arrive back to back) and then sleep on an atomic wait.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace kvserve {

class ThreadPool {
 public:
  // n_threads <= 0 means one per hardware thread.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  template <class F>
  void run(F&& f) {
    using Fn = std::remove_reference_t<F>;
    dispatch([](void* ctx, int tid, int nth) { (*static_cast<Fn*>(ctx))(tid, nth); },
             const_cast<void*>(static_cast<const void*>(&f)));
  }

  // Splits [0, n) into contiguous chunks, one per thread: f(begin, end, tid).
  template <class F>
  void parallel_for(int64_t n, F&& f) {
    run([&](int tid, int nth) {
      const int64_t chunk = (n + nth - 1) / nth;
      const int64_t b = std::min<int64_t>(n, chunk * tid);
      const int64_t e = std::min<int64_t>(n, b + chunk);
      if (b < e) f(b, e, tid);
    });
  }

 private:
  using Trampoline = void (*)(void*, int, int);
  void dispatch(Trampoline fn, void* ctx);
  void worker(int tid);

  int n_threads_;
  std::vector<std::thread> threads_;
  Trampoline fn_ = nullptr;
  void* ctx_ = nullptr;
  std::atomic<uint32_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace kvserve
