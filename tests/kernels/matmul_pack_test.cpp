// The packed layout (matmul_pack.h) keeps every row recoverable: dequantize_packed_row
// on the packed copy equals dequantize_row on the file's row, bit for bit, for every
// packed type. Packing and unpacking are scalar, so this runs on any CPU.
#include "kernels/cpu/matmul_pack.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "gguf/dequantize.h"
#include "matmul_test_util.h"

namespace kvserve {
namespace {

class PackedRowTest : public ::testing::TestWithParam<GgmlType> {};

TEST_P(PackedRowTest, EqualsFileRow) {
  const GgmlType t = GetParam();
  const int64_t n_out = 48;  // three 16-row groups
  const int64_t n_in = 512;  // two super-blocks / sixteen 32-blocks
  std::mt19937 rng(1234 + int(t));
  const std::vector<uint8_t> w = test::random_weights(t, n_out, n_in, rng);
  WeightView wv{t, w.data(), n_in, n_out};
  ASSERT_EQ(matmul_packed_bytes(wv), w.size());
  std::unique_ptr<uint8_t, decltype(&std::free)> packed(
      static_cast<uint8_t*>(std::aligned_alloc(64, (w.size() + 63) / 64 * 64)), &std::free);
  matmul_pack(wv, packed.get());
  // A packed copy that is not the file's bytes shuffled would make this test vacuous.
  ASSERT_NE(std::memcmp(packed.get(), w.data(), w.size()), 0);
  wv.packed = packed.get();

  const size_t row_bytes = ggml_row_bytes(t, n_in);
  std::vector<float> want(static_cast<size_t>(n_in)), got(static_cast<size_t>(n_in));
  for (int64_t r = 0; r < n_out; ++r) {
    dequantize_row(t, w.data() + size_t(r) * row_bytes, want.data(), n_in);
    std::fill(got.begin(), got.end(), -1e30f);
    dequantize_packed_row(wv, r, got.data());
    ASSERT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
        << ggml_type_name(t) << " row " << r;
  }
}

INSTANTIATE_TEST_SUITE_P(AllPackedTypes, PackedRowTest,
                         ::testing::Values(GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                                           GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K),
                         [](const auto& info) { return std::string(ggml_type_name(info.param)); });

}  // namespace
}  // namespace kvserve
