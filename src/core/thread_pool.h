// A persistent pool of worker threads created once. `run(f)` calls f(tid, n_threads)
// on every thread (the caller is thread 0) and returns when all are done; it never
// allocates, so it is safe in the per-token loop. Workers spin briefly between jobs
// (kernels arrive back to back) and then sleep on an atomic wait.
//
// `run_dynamic(f)` / `parallel_chunks` are for work that threads claim themselves (an
// atomic counter): f runs on the caller and on each worker that wakes up before the
// caller has finished, and the caller does not wait for workers that never started. So
// when another process holds a core, the caller just does more of the work instead of
// waiting for a descheduled worker (static splits make 2 threads slower than 1 then).
#pragma once

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cstdint>
#include <memory>
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
             const_cast<void*>(static_cast<const void*>(&f)), true);
  }

  // f(tid, n_threads) on the caller (tid 0) and on the workers that join in time (each
  // at most once); f must claim its work dynamically, as no call is guaranteed but the
  // caller's.
  template <class F>
  void run_dynamic(F&& f) {
    using Fn = std::remove_reference_t<F>;
    dispatch([](void* ctx, int tid, int nth) { (*static_cast<Fn*>(ctx))(tid, nth); },
             const_cast<void*>(static_cast<const void*>(&f)), false);
  }

  // Splits [0, n) into contiguous pieces, a few per thread, claimed by whichever thread
  // is free (see parallel_chunks): f(begin, end, tid); a thread may run several or none.
  template <class F>
  void parallel_for(int64_t n, F&& f) {
    const int64_t pieces = int64_t(kPiecesPerThread) * n_threads_;
    parallel_chunks(n, std::max<int64_t>(1, (n + pieces - 1) / pieces), f);
  }

  // Splits [0, n) into one contiguous range per thread. Each thread works through its own
  // range front to back, in pieces that shrink towards its end (half of what is
  // left, at least `grain`), then takes pieces from the back of the other threads' ranges:
  // f(begin, end, tid). A thread's memory stream runs on across its pieces (the
  // prefetchers keep going), the threads meet within a grain of each other, and the range
  // of a thread that never starts (descheduled) is taken by the others. Piece bounds are
  // multiples of `grain` (but n).
  template <class F>
  void parallel_ranges(int64_t n, int64_t grain, F&& f) {
    if (n <= 0) return;
    assert(n < (int64_t(1) << 32) && "a range is packed into 32-bit bounds");
    grain = std::max<int64_t>(1, grain);
    if (n_threads_ == 1 || n <= grain) {
      f(int64_t(0), n, 0);
      return;
    }
    const int nth = n_threads_;
    for (int t = 0; t < nth; ++t) {
      const uint64_t b = uint64_t(n * t / nth / grain * grain);
      const uint64_t e = t + 1 == nth ? uint64_t(n) : uint64_t(n * (t + 1) / nth / grain * grain);
      ranges_[size_t(t)].v.store(e << 32 | b, std::memory_order_relaxed);
    }
    run_dynamic([&](int tid, int) {
      take_range(ranges_[size_t(tid)].v, grain, /*from_back=*/false, tid, f);
      for (int k = 1; k < nth; ++k)
        take_range(ranges_[size_t((tid + k) % nth)].v, grain, /*from_back=*/true, tid, f);
    });
  }

  // Hands out [0, n) in pieces of `chunk` (the last may be shorter) to whichever thread
  // asks first: f(begin, end, tid), in increasing order per thread.
  template <class F>
  void parallel_chunks(int64_t n, int64_t chunk, F&& f) {
    if (n <= 0) return;
    std::atomic<int64_t> next{0};
    run_dynamic([&](int tid, int) {
      for (int64_t b = next.fetch_add(chunk, std::memory_order_relaxed); b < n;
           b = next.fetch_add(chunk, std::memory_order_relaxed))
        f(b, std::min(n, b + chunk), tid);
    });
  }

 private:
  using Trampoline = void (*)(void*, int, int);
  void dispatch(Trampoline fn, void* ctx, bool all);
  void worker(int tid);
  void settle();

  // A range [begin, end) packed as end << 32 | begin, in a cache line of its own.
  struct alignas(64) RangeSlot {
    std::atomic<uint64_t> v{0};
  };

  // Takes pieces of *slot until it is empty: from the front (the owner) or the back.
  template <class F>
  static void take_range(std::atomic<uint64_t>& slot, int64_t grain, bool from_back, int tid, F& f) {
    uint64_t s = slot.load(std::memory_order_acquire);
    for (;;) {
      const int64_t b = int64_t(s & 0xffffffffu), e = int64_t(s >> 32);
      if (b >= e) return;
      const int64_t rem = e - b;
      int64_t take = std::max(grain, rem / 2 / grain * grain);
      if (take >= rem) take = rem;
      int64_t nb = b, ne = e;
      if (from_back) {
        ne = e - take;
        if (ne > b) ne = std::max(b, ne / grain * grain);  // keep piece bounds on the grain
      } else {
        nb = b + take;
      }
      const uint64_t next = from_back ? uint64_t(ne) << 32 | uint64_t(b) : uint64_t(e) << 32 | uint64_t(nb);
      if (!slot.compare_exchange_weak(s, next, std::memory_order_acq_rel, std::memory_order_acquire))
        continue;
      if (from_back)
        f(ne, e, tid);
      else
        f(b, nb, tid);
      s = slot.load(std::memory_order_acquire);
    }
  }

  // Job word: generation (high 32 bits), a "closed" bit and the number of workers
  // inside the job; workers join with a compare-exchange so none can enter a job the
  // caller has closed, nor a later one than it woke up for.
  static constexpr uint64_t kClosed = uint64_t(1) << 31;
  static constexpr int kPiecesPerThread = 4;

  int n_threads_;
  std::vector<std::thread> threads_;
  Trampoline fn_ = nullptr;
  void* ctx_ = nullptr;
  bool all_ = true;  // every thread must run the job (run) or only those in time
  std::atomic<uint32_t> generation_{0};
  std::atomic<uint64_t> job_{0};
  std::atomic<int> pending_{0};  // run(): workers yet to finish
  std::atomic<bool> stop_{false};
  std::unique_ptr<RangeSlot[]> ranges_;  // parallel_ranges: one per thread
};

}  // namespace kvserve
