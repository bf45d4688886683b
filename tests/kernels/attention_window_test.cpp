// Sliding-window attention (PagedKvHead::window = W: the row at position p sees keys
// p - W < j <= p): every ISA's kernel against a naive double-precision reference; a row's
// bits the same decoded alone, in prefill chunks of any size, grouped with the other
// query heads of its KV head or not, and folded segment by segment by the caller; and
// the keys before every row's window never read (NaN there changes nothing).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "common/kv_stored_value.h"
#include "core/cpu_features.h"
#include "core/half.h"
#include "kernels/cpu/attention.h"

namespace kvserve {
namespace {

constexpr int64_t S = kAttentionSegmentKeys;
// Windows narrower than a chunk or a block, not a multiple of either, one segment, and
// wider than a segment.
const int64_t kWindows[] = {1, 7, 16, 100, 512, 600, 1000};

struct Kernel {
  const char* name;
  Isa isa;
  AttentionPagedFn fn;
};
const Kernel kKernels[] = {{"scalar", Isa::Scalar, attention_paged_scalar},
                           {"avx2", Isa::Avx2, attention_paged_for(Isa::Avx2)},
                           {"avx512", Isa::Avx512, attention_paged_for(Isa::Avx512)}};

bool have(const Kernel& k) {
  return int(k.isa) <= int(best_isa());
}

// One KV head's cache of n_pos tokens, written with kv_store_token into shuffled blocks
// (the unused ones NaN), and the queries of every position: [pos][n_group][hd].
struct Cache {
  int n_pos, hd, bs, n_group;
  KvDtype dtype;
  std::vector<float> keys, vals;  // [pos][hd], as the kernels see them (f16-rounded for f16)
  std::vector<float> q;
  std::vector<char> kpool, vpool;
  std::vector<int32_t> table;
  int32_t nan_block = 0;  // a physical block no position uses

  Cache(int n_pos_, int hd_, int bs_, int n_group_, KvDtype dt, uint32_t seed)
      : n_pos(n_pos_), hd(hd_), bs(bs_), n_group(n_group_), dtype(dt) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    keys.resize(size_t(n_pos) * size_t(hd));
    vals.resize(keys.size());
    q.resize(size_t(n_pos) * size_t(n_group) * size_t(hd));
    for (float& x : keys) x = nd(rng);
    for (float& x : vals) x = nd(rng);
    for (float& x : q) x = 1.5f * nd(rng);  // a sharp softmax exercises the running max
    const int n_logical = (n_pos + bs - 1) / bs;
    std::vector<int32_t> ids(size_t(2 * n_logical + 1));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    table.assign(ids.begin(), ids.begin() + n_logical);
    nan_block = ids.back();
    kpool.assign(ids.size() * block_bytes(), char(0xff));  // NaN in f32 and in f16
    vpool.assign(kpool.size(), char(0xff));
    for (int p = 0; p < n_pos; ++p)
      kv_store_token(kpool.data() + at(p), vpool.data() + at(p), dtype, bs, hd, p % bs,
                     keys.data() + size_t(p) * hd, vals.data() + size_t(p) * hd);
    for (int64_t p = 0; p < n_pos; ++p)  // what the kernels can see: the stored values
      for (int d = 0; d < hd; ++d) {
        keys[size_t(p * hd + d)] = stored_kv_value(kpool.data() + at(p), dtype, bs, hd, int(p % bs), d, true);
        vals[size_t(p * hd + d)] =
            stored_kv_value(vpool.data() + at(p), dtype, bs, hd, int(p % bs), d, false);
      }
  }

  size_t block_bytes() const { return size_t(kv_head_elems(dtype, bs, hd)) * kv_dtype_size(dtype); }
  size_t at(int64_t p) const { return size_t(table[size_t(p / bs)]) * block_bytes(); }  // p's block

  PagedKvHead head(int64_t window) const {
    PagedKvHead kv{kpool.data(), vpool.data(), kv_head_elems(dtype, bs, hd), table.data(), bs, dtype};
    kv.window = window;
    return kv;
  }
  int64_t stride() const { return int64_t(n_group) * hd; }
  float scale() const { return 1.0f / std::sqrt(float(hd)); }
  const float* q_at(int64_t p) const { return q.data() + p * stride(); }

  // NaN in every K and V slot before position `first`, and the blocks wholly before it
  // mapped to the NaN block: a kernel that reads any of them shows it.
  void poison_before(int64_t first) {
    const size_t es = kv_dtype_size(dtype);
    for (int64_t p = 0; p < first; ++p) {
      const int64_t slot = p % bs;
      for (int d = 0; d < hd; ++d) std::memset(kpool.data() + at(p) + size_t(d * bs + slot) * es, 0xff, es);
      std::memset(vpool.data() + at(p) + size_t(slot * hd) * es, 0xff, size_t(hd) * es);
      if (kv_dtype_scaled(dtype))  // and the slot's scales (NaN)
        for (char* pool : {kpool.data(), vpool.data()})
          std::memset(pool + at(p) + size_t(bs * hd + 4 * slot), 0xff, 4);
    }
    for (int64_t b = 0; (b + 1) * bs <= first; ++b) table[size_t(b)] = nan_block;
  }
};

// Naive reference: row (r, g) at position n_past + r is softmax(q K^T * scale) V over
// the keys j with p - window < j <= p, in double: [n_rows][n_group][hd].
std::vector<double> naive(const Cache& c, int64_t window, int64_t n_past, int n_rows) {
  std::vector<double> out(size_t(n_rows) * size_t(c.stride()), 0.0);
  for (int r = 0; r < n_rows; ++r)
    for (int g = 0; g < c.n_group; ++g) {
      const int64_t p = n_past + r, j0 = window > 0 ? std::max<int64_t>(0, p - window + 1) : 0;
      const float* q = c.q_at(p) + g * c.hd;
      std::vector<double> s;
      for (int64_t j = j0; j <= p; ++j) {
        double d = 0;
        for (int i = 0; i < c.hd; ++i) d += double(q[i]) * c.keys[size_t(j * c.hd + i)];
        s.push_back(d * c.scale());
      }
      const double mx = *std::max_element(s.begin(), s.end());
      double sum = 0;
      for (double& x : s) sum += (x = std::exp(x - mx));
      double* o = out.data() + r * c.stride() + g * c.hd;
      for (int64_t j = j0; j <= p; ++j)
        for (int i = 0; i < c.hd; ++i) o[i] += s[size_t(j - j0)] / sum * c.vals[size_t(j * c.hd + i)];
    }
  return out;
}

// Rows [n_past, n_past + n_rows) of the cache's queries, in one call.
std::vector<float> run(AttentionPagedFn fn, const Cache& c, int64_t window, int64_t n_past, int n_rows) {
  std::vector<float> out(size_t(n_rows) * size_t(c.stride()), -1.0f);
  fn(c.q_at(n_past), c.stride(), n_rows, c.n_group, n_past, c.head(window), c.hd, c.scale(), out.data(),
     c.stride());
  return out;
}

// Every kernel (and the dispatched attention_paged) against the reference: decode rows at
// and around segment boundaries, and prefill tiles crossing them, for every window.
TEST(AttentionWindow, EveryIsaMatchesNaiveReference) {
  struct Shape {
    int hd, bs, n_group;
  };
  // Head dims and groups that take each kernel: the fast AVX-512 and AVX2 ones (64), the
  // generic AVX2 one with the fast AVX-512 one (36, blocks of 5), the generic ones (264).
  for (const Shape sh : {Shape{64, 16, 4}, Shape{36, 5, 1}, Shape{264, 32, 1}})
    for (KvDtype dt : kAllKvDtypes) {
      const Cache c(1500, sh.hd, sh.bs, sh.n_group, dt, uint32_t(sh.hd + sh.bs));
      for (int64_t w : kWindows)
        for (const auto& [n_past, n_rows] : {std::pair{0, 1}, std::pair{511, 1}, std::pair{512, 1},
                                             std::pair{1499, 1}, std::pair{490, 40}, std::pair{1400, 100}}) {
          SCOPED_TRACE(::testing::Message()
                       << "hd " << sh.hd << " bs " << sh.bs << " group " << sh.n_group << " "
                       << kv_dtype_name(dt) << " window " << w << " n_past " << n_past << " rows " << n_rows);
          const std::vector<double> want = naive(c, w, n_past, n_rows);
          for (const Kernel& k : kKernels) {
            if (!have(k)) continue;
            const std::vector<float> got = run(k.fn, c, w, n_past, n_rows);
            for (size_t i = 0; i < got.size(); ++i)
              ASSERT_NEAR(got[i], want[i], 2e-5 * (1.0 + std::abs(want[i]))) << k.name << " at " << i;
          }
          const std::vector<float> got = run(attention_paged, c, w, n_past, n_rows);
          for (size_t i = 0; i < got.size(); ++i)
            ASSERT_NEAR(got[i], want[i], 2e-5 * (1.0 + std::abs(want[i]))) << "dispatched at " << i;
        }
    }
}

// A window at least as wide as every row's context is full causal attention, to the bit.
TEST(AttentionWindow, WindowWiderThanTheContextIsFullAttentionBitExact) {
  for (KvDtype dt : kAllKvDtypes) {
    const Cache c(700, 64, 16, 2, dt, 11);
    for (const Kernel& k : kKernels) {
      if (!have(k)) continue;
      EXPECT_EQ(run(k.fn, c, 700, 600, 100), run(k.fn, c, 0, 600, 100)) << k.name;
      EXPECT_EQ(run(k.fn, c, 100000, 0, 700), run(k.fn, c, 0, 0, 700)) << k.name;
    }
  }
}

// Rows [p0, p0 + n) decoded one at a time (chunks of 1), then in prefill chunks of each
// size; and each query head alone (n_group 1) against the grouped call: the same bits
// every time.
TEST(AttentionWindow, DecodeEqualsEveryChunkingAndGroupingBitExact) {
  struct Shape {
    int hd, bs, n_group;
  };
  for (const Shape sh : {Shape{64, 16, 3}, Shape{36, 5, 1}, Shape{48, 32, 4}})
    for (KvDtype dt : kAllKvDtypes) {
      const Cache c(1300, sh.hd, sh.bs, sh.n_group, dt, uint32_t(3 * sh.hd + sh.n_group));
      const int64_t st = c.stride();
      for (int64_t w : kWindows) {
        // Rows crossing the segment boundary at 1024 (windows reach back over 512).
        const int64_t p0 = w == 7 ? 0 : 1024 - 60;
        const int n = w == 7 ? 1300 : 130;
        for (const Kernel& k : kKernels) {
          if (!have(k)) continue;
          SCOPED_TRACE(::testing::Message() << k.name << " hd " << sh.hd << " bs " << sh.bs << " group "
                                            << sh.n_group << " " << kv_dtype_name(dt) << " window " << w);
          std::vector<float> alone(size_t(n * st));
          for (int r = 0; r < n; ++r)
            k.fn(c.q_at(p0 + r), st, 1, c.n_group, p0 + r, c.head(w), c.hd, c.scale(), alone.data() + r * st,
                 st);
          for (int chunk : {7, 32, 100, n}) {
            std::vector<float> y(alone.size(), -1.0f);
            for (int s = 0; s < n; s += chunk) {
              const int m = std::min(chunk, n - s);
              k.fn(c.q_at(p0 + s), st, m, c.n_group, p0 + s, c.head(w), c.hd, c.scale(), y.data() + s * st,
                   st);
            }
            for (int r = 0; r < n; ++r)
              ASSERT_EQ(0, std::memcmp(y.data() + r * st, alone.data() + r * st, sizeof(float) * size_t(st)))
                  << "chunk " << chunk << " row " << p0 + r;
          }
          if (c.n_group == 1) continue;
          std::vector<float> heads(alone.size(), -1.0f);
          for (int g = 0; g < c.n_group; ++g)
            k.fn(c.q_at(p0) + g * c.hd, st, n, 1, p0, c.head(w), c.hd, c.scale(), heads.data() + g * c.hd,
                 st);
          ASSERT_EQ(heads, alone) << "each query head alone";
        }
      }
    }
}

// Split-K by the caller: the segments of a row tile computed with attention_paged_partial
// (last first, as other threads might finish them) and folded in order with
// attention_merge give attention_paged's bits, whether the caller starts at
// attention_first_segment or at segment 0 (the segments before a row's window then give
// it exactly acc = 0, m = -inf, l = 0).
TEST(AttentionWindow, SegmentsFoldedByTheCallerEqualAttentionPaged) {
  for (KvDtype dt : kAllKvDtypes)
    for (int n_group : {1, 3}) {
      const Cache c(int(3 * S + 40), 64, 16, n_group, dt, uint32_t(n_group + 20));
      const int64_t st = c.stride();
      for (int64_t w : kWindows)
        for (const auto& [rows, n_past] :
             {std::pair{1, int(S - 1)}, std::pair{1, int(S)}, std::pair{1, int(2 * S + 9)},
              std::pair{1, int(3 * S + 39)}, std::pair{5, int(2 * S - 3)}, std::pair{32, int(S - 16)},
              std::pair{40, int(3 * S)}, std::pair{300, int(S + 100)}}) {
          SCOPED_TRACE(::testing::Message() << kv_dtype_name(dt) << " group " << n_group << " window " << w
                                            << " rows " << rows << " n_past " << n_past);
          const std::vector<float> want = run(attention_paged, c, w, n_past, rows);
          const int64_t n_keys = n_past + rows;
          const int n_seg = int((n_keys + S - 1) / S);
          const int n_flat = rows * n_group;
          for (const int first : {0, int(attention_first_segment(n_past, w))}) {
            std::vector<std::vector<float>> acc(size_t(n_seg), std::vector<float>(want.size(), 0.0f));
            std::vector<std::vector<float>> m(size_t(n_seg), std::vector<float>(size_t(n_flat), 0.0f));
            std::vector<std::vector<float>> l = m;
            for (int s = n_seg - 1; s >= first; --s) {
              const int r0 = int(std::max<int64_t>(0, s * S - n_past));  // rows that see none: skipped
              attention_paged_partial(c.q_at(n_past + r0), st, rows - r0, n_group, n_past + r0, c.head(w),
                                      c.hd, c.scale(), s * S, std::min(n_keys, (s + 1) * S),
                                      acc[size_t(s)].data() + r0 * st, st, m[size_t(s)].data() + r0 * n_group,
                                      l[size_t(s)].data() + r0 * n_group);
              for (int i = r0 * n_group; i < n_flat; ++i) {
                const int64_t p = n_past + i / n_group;
                if (attention_first_key(p, w) < (s + 1) * S) continue;
                // The segment is wholly before this row's window: the empty result.
                ASSERT_EQ(l[size_t(s)][size_t(i)], 0.0f) << "segment " << s << " row " << i;
                ASSERT_EQ(m[size_t(s)][size_t(i)], -INFINITY) << "segment " << s << " row " << i;
                const float* a = acc[size_t(s)].data() + (i / n_group) * st + (i % n_group) * c.hd;
                for (int d = 0; d < c.hd; ++d) ASSERT_EQ(a[d], 0.0f) << "segment " << s << " row " << i;
              }
              for (int i = 0; i < r0 * n_group; ++i) l[size_t(s)][size_t(i)] = 0.0f;
            }
            std::vector<float> got(want.size(), -1.0f);
            for (int i = 0; i < n_flat; ++i) {
              const int64_t off = (i / n_group) * st + (i % n_group) * c.hd;
              std::copy_n(acc[size_t(first)].data() + off, c.hd, got.data() + off);
              float mi = m[size_t(first)][size_t(i)], li = l[size_t(first)][size_t(i)];
              for (int s = first + 1; s < n_seg; ++s)
                if (l[size_t(s)][size_t(i)] > 0.0f)
                  attention_merge(got.data() + off, &mi, &li, acc[size_t(s)].data() + off,
                                  m[size_t(s)][size_t(i)], l[size_t(s)][size_t(i)], c.hd);
              attention_finish(got.data() + off, li, c.hd);
            }
            ASSERT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)))
                << "folded from segment " << first;
          }
        }
    }
}

// The keys before every row's window are never read: with NaN in all of their K and V
// slots and their whole blocks remapped to a NaN block, decode rows and prefill tiles
// give finite outputs with the clean cache's bits.
TEST(AttentionWindow, KeysBeforeEveryRowsWindowAreNotRead) {
  struct Shape {
    int hd, bs, n_group;
  };
  for (const Shape sh : {Shape{64, 16, 2}, Shape{36, 5, 1}, Shape{264, 32, 1}, Shape{48, 64, 4}})
    for (KvDtype dt : kAllKvDtypes) {
      const Cache clean(1500, sh.hd, sh.bs, sh.n_group, dt, uint32_t(sh.hd * 5 + sh.bs));
      for (int64_t w : {int64_t(1), int64_t(7), int64_t(16), int64_t(100), int64_t(600)})
        for (const auto& [n_past, n_rows] : {std::pair{int(w) + 3, 1}, std::pair{700, 1}, std::pair{1023, 1},
                                             std::pair{1499, 1}, std::pair{900, 50}, std::pair{1200, 33}}) {
          Cache poisoned = clean;
          poisoned.poison_before(attention_first_key(n_past, w));  // the tile's first row's window start
          for (const Kernel& k : kKernels) {
            if (!have(k)) continue;
            SCOPED_TRACE(::testing::Message()
                         << k.name << " hd " << sh.hd << " bs " << sh.bs << " " << kv_dtype_name(dt)
                         << " window " << w << " n_past " << n_past << " rows " << n_rows);
            const std::vector<float> got = run(k.fn, poisoned, w, n_past, n_rows);
            for (float x : got) ASSERT_TRUE(std::isfinite(x));
            ASSERT_EQ(got, run(k.fn, clean, w, n_past, n_rows));
          }
        }
    }
}

TEST(AttentionWindow, FirstKeyAndFirstSegment) {
  EXPECT_EQ(attention_first_key(1000, 0), 0);
  EXPECT_EQ(attention_first_key(5, 7), 0);
  EXPECT_EQ(attention_first_key(6, 7), 0);
  EXPECT_EQ(attention_first_key(7, 7), 1);  // keys 1..7: seven of them
  EXPECT_EQ(attention_first_key(1000, 1), 1000);
  EXPECT_EQ(attention_first_segment(1000, 0), 0);
  EXPECT_EQ(attention_first_segment(S + 99, 100), 1);
  EXPECT_EQ(attention_first_segment(S + 98, 100), 0);
  EXPECT_EQ(attention_first_segment(5 * S, 1), 5);
}

}  // namespace
}  // namespace kvserve
