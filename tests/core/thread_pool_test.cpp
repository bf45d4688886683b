#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

namespace kvserve {
namespace {

TEST(ThreadPool, RunCallsEveryThreadOnce) {
  for (int n : {1, 2, 3, 5}) {
    ThreadPool pool(n);
    ASSERT_EQ(pool.size(), n);
    for (int rep = 0; rep < 200; ++rep) {
      std::vector<std::atomic<int>> calls(static_cast<size_t>(n));
      pool.run([&](int tid, int nth) {
        ASSERT_EQ(nth, n);
        calls[size_t(tid)].fetch_add(1);
      });
      for (int t = 0; t < n; ++t) ASSERT_EQ(calls[size_t(t)].load(), 1) << "thread " << t << " rep " << rep;
    }
  }
}

TEST(ThreadPool, ParallelForCoversRangeExactlyOnce) {
  ThreadPool pool(3);
  for (int64_t n : {0, 1, 2, 7, 100, 1001}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    pool.parallel_for(n, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << i;
  }
}

TEST(ThreadPool, ResultsVisibleToCallerAfterRun) {
  ThreadPool pool(2);
  std::vector<int64_t> out(1 << 16, 0);
  for (int rep = 0; rep < 50; ++rep) {
    pool.parallel_for(int64_t(out.size()), [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) out[size_t(i)] = i * rep;
    });
    for (size_t i = 0; i < out.size(); i += 997) ASSERT_EQ(out[i], int64_t(i) * rep);
  }
}

}  // namespace
}  // namespace kvserve
