// KvCacheStorage: block addressing, sizing and copy-on-write copies.
#include <gtest/gtest.h>

#include <set>

#include "cache/kv_cache.h"

namespace kvserve {
namespace {

KvCacheConfig small_config() {
  KvCacheConfig c;
  c.n_layers = 3;
  c.n_kv_heads = 2;
  c.head_dim = 5;
  c.block_size = 4;
  c.n_blocks = 6;
  return c;
}

TEST(KvCacheStorage, BytesPerBlockCountsKAndVOfEveryLayer) {
  EXPECT_EQ(KvCacheStorage::bytes_per_block(small_config()), size_t(2 * 3 * 2 * 4 * 5 * 4));
}

TEST(KvCacheStorage, BlocksAreDisjointAndStrided) {
  KvCacheStorage kv(small_config());
  const size_t block_floats = 2 * 4 * 5;
  std::set<const float*> seen;
  for (int l = 0; l < 3; ++l)
    for (int b = 0; b < 6; ++b) {
      EXPECT_TRUE(seen.insert(kv.k_block(l, b)).second);
      EXPECT_TRUE(seen.insert(kv.v_block(l, b)).second);
      // Within a layer, physical blocks are evenly strided (the attention kernel relies on it).
      EXPECT_EQ(kv.k_block(l, b) - kv.k_block(l, 0), ptrdiff_t(b * block_floats));
      EXPECT_EQ(kv.v_block(l, b) - kv.v_block(l, 0), ptrdiff_t(b * block_floats));
    }
  // Every slot is writable.
  for (int l = 0; l < 3; ++l)
    for (int b = 0; b < 6; ++b)
      for (size_t i = 0; i < block_floats; ++i)
        kv.k_block(l, b)[i] = kv.v_block(l, b)[i] = float(l * 100 + b);
  EXPECT_EQ(kv.k_block(2, 5)[block_floats - 1], 205.0f);
}

TEST(KvCacheStorage, CopyBlockCopiesEveryLayerAndNothingElse) {
  KvCacheStorage kv(small_config());
  const size_t block_floats = 2 * 4 * 5;
  for (int l = 0; l < 3; ++l)
    for (int b = 0; b < 6; ++b)
      for (size_t i = 0; i < block_floats; ++i) {
        kv.k_block(l, b)[i] = float(l * 1000 + b * 100 + int(i));
        kv.v_block(l, b)[i] = -float(l * 1000 + b * 100 + int(i));
      }
  kv.copy_block(1, 4);
  for (int l = 0; l < 3; ++l)
    for (size_t i = 0; i < block_floats; ++i) {
      EXPECT_EQ(kv.k_block(l, 4)[i], float(l * 1000 + 100 + int(i)));
      EXPECT_EQ(kv.v_block(l, 4)[i], -float(l * 1000 + 100 + int(i)));
      EXPECT_EQ(kv.k_block(l, 1)[i], float(l * 1000 + 100 + int(i)));  // source intact
      EXPECT_EQ(kv.k_block(l, 3)[i], float(l * 1000 + 300 + int(i)));  // neighbours intact
      EXPECT_EQ(kv.k_block(l, 5)[i], float(l * 1000 + 500 + int(i)));
    }
}

}  // namespace
}  // namespace kvserve
