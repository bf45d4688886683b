#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <thread>
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

TEST(ThreadPool, ParallelChunksCoverRangeExactlyOnceInOrder) {
  for (int n_threads : {1, 2, 3}) {
    ThreadPool pool(n_threads);
    for (int64_t n : {0, 1, 15, 16, 17, 100, 1001}) {
      for (int64_t chunk : {1, 16, 64}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::vector<int64_t> last(size_t(n_threads), -1);
        pool.parallel_chunks(n, chunk, [&](int64_t b, int64_t e, int tid) {
          ASSERT_LT(b, e);
          ASSERT_LE(e - b, chunk);
          ASSERT_EQ(b % chunk, 0);
          ASSERT_GT(b, last[size_t(tid)]);  // each thread's pieces come in order
          last[size_t(tid)] = b;
          for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << i;
      }
    }
  }
}

// Dynamic jobs mixed with static ones: a worker that missed a dynamic job must still
// take part, exactly once, in the next static one.
TEST(ThreadPool, RunDynamicCallsEachThreadAtMostOnceAndCallerAlways) {
  ThreadPool pool(3);
  for (int rep = 0; rep < 2000; ++rep) {
    std::array<std::atomic<int>, 3> calls{};
    pool.run_dynamic([&](int tid, int nth) {
      ASSERT_EQ(nth, 3);
      calls[size_t(tid)].fetch_add(1);
    });
    ASSERT_EQ(calls[0].load(), 1);
    for (auto& c : calls) ASSERT_LE(c.load(), 1);
    std::array<std::atomic<int>, 3> all{};
    pool.run([&](int tid, int) { all[size_t(tid)].fetch_add(1); });
    for (auto& c : all) ASSERT_EQ(c.load(), 1) << "rep " << rep;
  }
}

// A thread that cannot run (here: sleeps) does not hold up dynamic work: the others
// take all the chunks.
TEST(ThreadPool, ParallelChunksDoNotWaitForABusyThread) {
  ThreadPool pool(2);
  std::atomic<int> by_worker{0};
  std::atomic<int> total{0};
  pool.parallel_chunks(64, 1, [&](int64_t, int64_t, int tid) {
    if (tid != 0) {
      by_worker.fetch_add(1);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    total.fetch_add(1);
  });
  EXPECT_EQ(total.load(), 64);
  EXPECT_LE(by_worker.load(), 1);  // the worker's one chunk took longer than all the rest
}

// parallel_ranges: every index exactly once, piece bounds on the grain (but n), each
// thread's own range taken front to back in growing-index order before any stealing.
TEST(ThreadPool, ParallelRangesCoverRangeExactlyOnceOnTheGrain) {
  for (int n_threads : {1, 2, 3, 4}) {
    ThreadPool pool(n_threads);
    for (int64_t n : {0, 1, 2, 15, 16, 17, 60, 100, 1001}) {
      for (int64_t grain : {1, 2, 16}) {
        for (int rep = 0; rep < 20; ++rep) {
          std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
          pool.parallel_ranges(n, grain, [&](int64_t b, int64_t e, int tid) {
            ASSERT_LT(b, e);
            ASSERT_GE(tid, 0);
            ASSERT_LT(tid, n_threads);
            ASSERT_EQ(b % grain, 0) << b;
            if (e != n) {
              ASSERT_EQ(e % grain, 0) << e;
            }
            for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
          });
          for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << "n " << n << " i " << i;
        }
      }
    }
  }
}

// A thread that cannot run (here: sleeps inside its first piece) does not hold up the
// rest of its range: the others take it from the back.
TEST(ThreadPool, ParallelRangesTakeTheRangeOfABusyThread) {
  ThreadPool pool(2);
  std::atomic<int64_t> by_worker{0};
  std::atomic<int64_t> total{0};
  pool.parallel_ranges(64, 1, [&](int64_t b, int64_t e, int tid) {
    if (tid != 0) {
      by_worker.fetch_add(e - b);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    total.fetch_add(e - b);
  });
  EXPECT_EQ(total.load(), 64);
  // The worker's first piece is half of its half at most; the caller did the rest.
  EXPECT_LE(by_worker.load(), 16);
}

}  // namespace
}  // namespace kvserve
