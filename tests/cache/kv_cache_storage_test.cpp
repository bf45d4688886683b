// KvCacheStorage: block addressing, sizing per dtype, copy-on-write copies, and the
// layout the writer (kv_store_token) and the attention kernels agree on.
#include <gtest/gtest.h>

#include <cstring>
#include <set>

#include "cache/kv_cache.h"
#include "core/half.h"
#include "kernels/cpu/attention.h"

namespace kvserve {
namespace {

KvCacheConfig small_config(KvDtype dtype = KvDtype::F32) {
  KvCacheConfig c;
  c.n_layers = 3;
  c.n_kv_heads = 2;
  c.head_dim = 5;
  c.block_size = 4;
  c.n_blocks = 6;
  c.dtype = dtype;
  return c;
}

TEST(KvCacheStorage, BytesPerBlockCountsKAndVOfEveryLayer) {
  EXPECT_EQ(KvCacheStorage::bytes_per_block(small_config()), size_t(2 * 3 * 2 * 4 * 5 * 4));
  // f16 (the default) halves a block: the same budget holds twice the tokens.
  EXPECT_EQ(KvCacheStorage::bytes_per_block(small_config(KvDtype::F16)), size_t(2 * 3 * 2 * 4 * 5 * 2));
  EXPECT_EQ(KvCacheConfig{}.dtype, KvDtype::F16);
}

TEST(KvCacheStorage, BlocksAreDisjointAndStrided) {
  for (KvDtype dt : {KvDtype::F32, KvDtype::F16}) {
    KvCacheStorage kv(small_config(dt));
    const size_t block_elems = 2 * 4 * 5;
    ASSERT_EQ(kv.block_elems(), block_elems);
    const ptrdiff_t block_bytes = ptrdiff_t(block_elems * kv_dtype_size(dt));
    std::set<const void*> seen;
    for (int l = 0; l < 3; ++l)
      for (int b = 0; b < 6; ++b) {
        EXPECT_TRUE(seen.insert(kv.k_block(l, b)).second);
        EXPECT_TRUE(seen.insert(kv.v_block(l, b)).second);
        // Within a layer, physical blocks are evenly strided (the attention kernel relies on it).
        const char* k0 = static_cast<const char*>(kv.k_block(l, 0));
        const char* v0 = static_cast<const char*>(kv.v_block(l, 0));
        EXPECT_EQ(static_cast<const char*>(kv.k_block(l, b)) - k0, b * block_bytes);
        EXPECT_EQ(static_cast<const char*>(kv.v_block(l, b)) - v0, b * block_bytes);
      }
    // Every byte is writable.
    for (int l = 0; l < 3; ++l)
      for (int b = 0; b < 6; ++b) {
        std::memset(kv.k_block(l, b), l * 16 + b, size_t(block_bytes));
        std::memset(kv.v_block(l, b), l * 16 + b, size_t(block_bytes));
      }
    EXPECT_EQ(static_cast<const unsigned char*>(kv.k_block(2, 5))[block_bytes - 1], 37);
  }
}

TEST(KvCacheStorage, CopyBlockCopiesEveryLayerAndNothingElse) {
  KvCacheStorage kv(small_config());
  const size_t block_floats = 2 * 4 * 5;
  auto kf = [&](int l, int b) { return static_cast<float*>(kv.k_block(l, b)); };
  auto vf = [&](int l, int b) { return static_cast<float*>(kv.v_block(l, b)); };
  for (int l = 0; l < 3; ++l)
    for (int b = 0; b < 6; ++b)
      for (size_t i = 0; i < block_floats; ++i) {
        kf(l, b)[i] = float(l * 1000 + b * 100 + int(i));
        vf(l, b)[i] = -float(l * 1000 + b * 100 + int(i));
      }
  kv.copy_block(1, 4);
  for (int l = 0; l < 3; ++l)
    for (size_t i = 0; i < block_floats; ++i) {
      EXPECT_EQ(kf(l, 4)[i], float(l * 1000 + 100 + int(i)));
      EXPECT_EQ(vf(l, 4)[i], -float(l * 1000 + 100 + int(i)));
      EXPECT_EQ(kf(l, 1)[i], float(l * 1000 + 100 + int(i)));  // source intact
      EXPECT_EQ(kf(l, 3)[i], float(l * 1000 + 300 + int(i)));  // neighbours intact
      EXPECT_EQ(kf(l, 5)[i], float(l * 1000 + 500 + int(i)));
    }
}

TEST(KvCacheStorage, CopyBlockCopiesF16Blocks) {
  KvCacheStorage kv(small_config(KvDtype::F16));
  const size_t bytes = kv.block_elems() * 2;
  for (int l = 0; l < 3; ++l) {
    std::memset(kv.k_block(l, 2), 0x11 + l, bytes);
    std::memset(kv.v_block(l, 2), 0x22 + l, bytes);
  }
  kv.copy_block(2, 0);
  for (int l = 0; l < 3; ++l) {
    EXPECT_EQ(0, std::memcmp(kv.k_block(l, 0), kv.k_block(l, 2), bytes));
    EXPECT_EQ(0, std::memcmp(kv.v_block(l, 0), kv.v_block(l, 2), bytes));
    EXPECT_EQ(static_cast<const unsigned char*>(kv.k_block(l, 1))[0], 0);  // untouched
  }
}

// The writer's layout: K of a head is [head_dim][block_size] (transposed), V is
// [block_size][head_dim]; f16 values are rounded to nearest even, like fp32_to_fp16.
TEST(KvStoreToken, WritesTransposedKAndRowMajorV) {
  constexpr int kBs = 16, kHd = 37;  // odd head_dim: vector body and scalar tail
  for (KvDtype dt : {KvDtype::F32, KvDtype::F16}) {
    std::vector<char> kbuf(size_t(kBs * kHd) * kv_dtype_size(dt), 0), vbuf(kbuf.size(), 0);
    for (int slot : {0, 5, 15}) {
      float k[kHd], v[kHd];
      for (int d = 0; d < kHd; ++d) {
        k[d] = 0.1f * float(d) + float(slot) + 1.0f / 3.0f;
        v[d] = -0.37f * float(d * slot) - 1e-3f;
      }
      kv_store_token(kbuf.data(), vbuf.data(), dt, kBs, kHd, slot, k, v);
      for (int d = 0; d < kHd; ++d) {
        const size_t ki = size_t(d * kBs + slot), vi = size_t(slot * kHd + d);
        if (dt == KvDtype::F32) {
          EXPECT_EQ(reinterpret_cast<const float*>(kbuf.data())[ki], k[d]);
          EXPECT_EQ(reinterpret_cast<const float*>(vbuf.data())[vi], v[d]);
        } else {
          EXPECT_EQ(reinterpret_cast<const uint16_t*>(kbuf.data())[ki], fp32_to_fp16(k[d])) << d;
          EXPECT_EQ(reinterpret_cast<const uint16_t*>(vbuf.data())[vi], fp32_to_fp16(v[d])) << d;
        }
      }
    }
    // Slots not written stay zero.
    const size_t es = kv_dtype_size(dt);
    for (int d = 0; d < kHd; ++d)
      for (int s : {1, 14}) {
        uint32_t kz = 0, vz = 0;
        std::memcpy(&kz, kbuf.data() + size_t(d * kBs + s) * es, es);
        std::memcpy(&vz, vbuf.data() + size_t(s * kHd + d) * es, es);
        EXPECT_EQ(kz, 0u);
        EXPECT_EQ(vz, 0u);
      }
  }
}

TEST(KvStoreToken, F16RoundsToNearestEvenIncludingTies) {
  // 1 + 2^-11 is a tie between 1 and 1 + 2^-10: nearest even is 1.0 (0x3c00); 1 + 3 * 2^-11
  // rounds up to 1 + 2^-9 (0x3c02); 65520 overflows to inf; 2^-25 * 1.5 is a subnormal.
  const float in[4] = {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 65520.0f, 0x1.8p-25f};
  const uint16_t want[4] = {0x3c00, 0x3c02, 0x7c00, 0x0001};
  std::vector<uint16_t> k(4), v(4);
  kv_store_token(k.data(), v.data(), KvDtype::F16, 1, 4, 0, in, in);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(k[size_t(i)], want[i]) << i;
    EXPECT_EQ(v[size_t(i)], want[i]) << i;
  }
}

}  // namespace
}  // namespace kvserve
