// KvCacheStorage: block addressing, sizing per dtype, copy-on-write copies, and the
// layout the writer (kv_store_token) and the attention kernels agree on.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <tuple>

#include "cache/kv_cache.h"
#include "common/kv_stored_value.h"
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
  for (KvDtype dt : kAllKvDtypes) {
    KvCacheStorage kv(small_config(dt));
    const size_t block_elems = 2 * (4 * 5 + (kv_dtype_scaled(dt) ? 4 * 4 : 0));  // + 4-byte scale per slot
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

namespace kvserve {
namespace {

// int8 / fp8: codes in the f16 layout's places, one f32 scale per slot after the head's
// elements; each element is within half a step of the input, the largest one exact.
TEST(KvStoreToken, ScaledTypesStoreCodesAndOneScalePerSlot) {
  constexpr int kBs = 8, kHd = 37;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  for (KvDtype dt : {KvDtype::Int8, KvDtype::Fp8}) {
    SCOPED_TRACE(kv_dtype_name(dt));
    const size_t bytes = size_t(kv_head_elems(dt, kBs, kHd));
    ASSERT_EQ(bytes, size_t(kBs * kHd + 4 * kBs));
    std::vector<char> kbuf(bytes, 0), vbuf(bytes, 0);
    for (int slot : {0, 3, 7}) {
      float k[kHd], v[kHd];
      for (int d = 0; d < kHd; ++d) {
        k[d] = nd(rng);
        v[d] = 0.01f * nd(rng);
      }
      k[5] = 9.0f;  // the largest |k|: stored as the largest code, exactly
      kv_store_token(kbuf.data(), vbuf.data(), dt, kBs, kHd, slot, k, v);
      for (const auto& [buf, x, is_k] : {std::tuple{&kbuf, k, true}, std::tuple{&vbuf, v, false}}) {
        float amax = 0;
        for (int d = 0; d < kHd; ++d) amax = std::max(amax, std::abs(x[d]));
        const float scale = amax / (dt == KvDtype::Int8 ? 127.0f : 448.0f);
        float stored_scale;
        std::memcpy(&stored_scale, buf->data() + kBs * kHd + 4 * slot, 4);
        EXPECT_EQ(stored_scale, scale);
        for (int d = 0; d < kHd; ++d) {
          const float got = stored_kv_value(buf->data(), dt, kBs, kHd, slot, d, is_k);
          // int8: half a step of the scale; fp8: half a step of 3 mantissa bits (relative
          // 1/16), or of the subnormal step 2^-9 scale near zero.
          const float tol = dt == KvDtype::Int8
                                ? 0.5f * scale * 1.0001f
                                : std::max(std::abs(x[d]) / 16.0f, 0x1p-10f * scale) * 1.0001f;
          EXPECT_NEAR(got, x[d], tol) << d;
        }
      }
      EXPECT_FLOAT_EQ(stored_kv_value(kbuf.data(), dt, kBs, kHd, slot, 5, true), 9.0f);
    }
    // An all-zero token: scale 0, codes 0, values 0 (no division by zero).
    float z[kHd] = {};
    kv_store_token(kbuf.data(), vbuf.data(), dt, kBs, kHd, 1, z, z);
    for (int d = 0; d < kHd; ++d) EXPECT_EQ(stored_kv_value(kbuf.data(), dt, kBs, kHd, 1, d, true), 0.0f);
  }
}

TEST(KvCacheStorage, ScaledTypesHoldTwiceTheTokensOfF16) {
  KvCacheConfig c;
  c.n_layers = 30;
  c.n_kv_heads = 3;
  c.head_dim = 64;
  c.block_size = 16;
  c.n_blocks = 1;
  c.dtype = KvDtype::F16;
  const size_t f16 = KvCacheStorage::bytes_per_block(c);
  for (KvDtype dt : {KvDtype::Int8, KvDtype::Fp8}) {
    c.dtype = dt;
    // Half of f16's, plus 4 bytes of scale per 64 one-byte elements.
    EXPECT_EQ(KvCacheStorage::bytes_per_block(c), f16 / 2 + 2 * 30 * 3 * 16 * 4);
  }
  c.dtype = KvDtype::BF16;
  EXPECT_EQ(KvCacheStorage::bytes_per_block(c), f16);
}

}  // namespace
}  // namespace kvserve
