// quantize_row round trips (quantize, then the llama.cpp-validated dequantize_row) on
// several input shapes with per-type error bounds, exact checks on values each format
// represents exactly, and comparisons with llama.cpp's own quantization of the same
// weights (synth-3m files).
#include "gguf/quantize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "common/test_paths.h"
#include "core/half.h"
#include "gguf/dequantize.h"
#include "gguf/gguf_file.h"
#include "gguf/quant_blocks.h"

namespace kvserve {
namespace {

std::vector<uint8_t> quantize(GgmlType t, const std::vector<float>& x) {
  std::vector<uint8_t> q(ggml_row_bytes(t, int64_t(x.size())));
  quantize_row(t, x.data(), q.data(), int64_t(x.size()));
  return q;
}

std::vector<float> round_trip(GgmlType t, const std::vector<float>& x) {
  const std::vector<uint8_t> q = quantize(t, x);
  std::vector<float> y(x.size());
  dequantize_row(t, q.data(), y.data(), int64_t(x.size()));
  return y;
}

double rms(const std::vector<float>& a) {
  double s = 0;
  for (float v : a) s += double(v) * v;
  return std::sqrt(s / double(a.size()));
}

double rms_error(const std::vector<float>& a, const std::vector<float>& b, size_t begin = 0,
                 size_t end = SIZE_MAX) {
  end = std::min(end, a.size());
  double s = 0;
  for (size_t i = begin; i < end; ++i) s += double(a[i] - b[i]) * double(a[i] - b[i]);
  return std::sqrt(s / double(end - begin));
}

std::vector<float> normal(size_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

struct TypeCase {
  GgmlType type;
  // Bound on RMS error / RMS of the input for N(0,1) data. Measured (4096 values):
  // see each line; bounds leave ~1.3x room.
  double normal_bound;
};

const TypeCase kCases[] = {
    {GgmlType::F16, 3e-4},     // 0.021%
    {GgmlType::BF16, 2.5e-3},  // 0.17%
    {GgmlType::Q8_0, 0.008},   // 0.54%
    {GgmlType::Q8_1, 0.008},   // 0.54%
    {GgmlType::Q8_K, 0.009},   // 0.68%: 256-value blocks have a larger max
    {GgmlType::Q6_K, 0.03},   {GgmlType::Q5_0, 0.06}, {GgmlType::Q5_1, 0.05},
    {GgmlType::Q5_K, 0.045},  {GgmlType::Q4_0, 0.12}, {GgmlType::Q4_1, 0.11},
    {GgmlType::Q4_K, 0.09},   {GgmlType::Q3_K, 0.22}, {GgmlType::Q2_K, 0.40},
};

class QuantizeRoundTrip : public ::testing::TestWithParam<TypeCase> {};

TEST_P(QuantizeRoundTrip, NormalData) {
  const TypeCase c = GetParam();
  for (uint32_t seed : {1u, 2u, 3u}) {
    const std::vector<float> x = normal(4096, seed);
    const double rel = rms_error(round_trip(c.type, x), x) / rms(x);
    EXPECT_LE(rel, c.normal_bound) << ggml_type_name(c.type) << " seed " << seed;
    EXPECT_GT(rel, 0.0);  // every format here is lossy on random floats
    std::printf("  %s normal: relative RMS error %.5f\n", ggml_type_name(c.type), rel);
  }
}

TEST_P(QuantizeRoundTrip, Ramp) {
  const TypeCase c = GetParam();
  std::vector<float> x(2048);
  for (size_t i = 0; i < x.size(); ++i) x[i] = -3.0f + 6.0f * float(i) / float(x.size() - 1);
  // A ramp is uniform within each block: no worse than Gaussian data.
  EXPECT_LE(rms_error(round_trip(c.type, x), x) / rms(x), c.normal_bound) << ggml_type_name(c.type);
}

TEST_P(QuantizeRoundTrip, ZerosStayExactlyZero) {
  const TypeCase c = GetParam();
  const std::vector<float> x(512, 0.0f);
  for (float v : round_trip(c.type, x)) ASSERT_EQ(v, 0.0f) << ggml_type_name(c.type);
}

TEST_P(QuantizeRoundTrip, Constants) {
  const TypeCase c = GetParam();
  // Magnitudes whose super-block scales stay normal fp16 numbers (Q6_K's d is
  // |x| / 4096, Q4_K's |x| / 945): below that, subnormal fp16 scales lose precision,
  // a limit of the formats themselves.
  for (float k : {1.0f, -0.37f, 1234.5f, 0.3f}) {
    const std::vector<float> x(512, k);
    // Only the fp16/bf16 rounding of one scale (or of the value) is lost.
    const double tol = (c.type == GgmlType::BF16 ? 4e-3 : 1e-3) * std::fabs(k);
    for (float v : round_trip(c.type, x)) ASSERT_NEAR(v, k, tol) << ggml_type_name(c.type) << " k=" << k;
  }
}

TEST_P(QuantizeRoundTrip, OutliersStayInTheirBlock) {
  const TypeCase c = GetParam();
  const int64_t bs = ggml_traits(c.type).block_size == 1 ? 256 : ggml_traits(c.type).block_size;
  std::vector<float> x = normal(size_t(bs) * 8, 7);
  // Outliers at 50 sigma in blocks 1 and 5, one of each sign.
  x[size_t(bs + 3)] = 50.0f;
  x[size_t(5 * bs + bs / 2)] = -50.0f;
  const std::vector<float> y = round_trip(c.type, x);
  // The outlier sets its block's scale, so it is itself reproduced closely ...
  EXPECT_NEAR(y[size_t(bs + 3)], 50.0f, 50.0 * c.normal_bound) << ggml_type_name(c.type);
  EXPECT_NEAR(y[size_t(5 * bs + bs / 2)], -50.0f, 50.0 * c.normal_bound) << ggml_type_name(c.type);
  // ... and blocks without an outlier keep the normal-data error.
  for (int64_t blk : {0, 2, 3, 4, 6, 7}) {
    const size_t b0 = size_t(blk * bs), b1 = size_t((blk + 1) * bs);
    std::vector<float> xb(x.begin() + long(b0), x.begin() + long(b1));
    EXPECT_LE(rms_error(y, x, b0, b1) / rms(xb), 1.6 * c.normal_bound)
        << ggml_type_name(c.type) << " block " << blk;
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, QuantizeRoundTrip, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(ggml_type_name(info.param.type)); });

// ---- Exact values --------------------------------------------------------------

TEST(QuantizeExact, HalfAndBf16RoundToNearestEven) {
  const std::vector<float> x = {1.0f + std::ldexp(1.0f, -11), 1.0f + 3 * std::ldexp(1.0f, -11), 65504.0f,
                                -0.0f};
  const std::vector<uint8_t> h = quantize(GgmlType::F16, x);
  uint16_t v[4];
  std::memcpy(v, h.data(), 8);
  EXPECT_EQ(v[0], 0x3c00);  // tie -> even (1.0)
  EXPECT_EQ(v[1], 0x3c02);  // tie -> even (1 + 2^-9)
  EXPECT_EQ(v[2], 0x7bff);
  EXPECT_EQ(v[3], 0x8000);
  const std::vector<float> xb = {1.0f + std::ldexp(1.0f, -8), 1.0f + 3 * std::ldexp(1.0f, -8)};
  const std::vector<uint8_t> b = quantize(GgmlType::BF16, xb);
  std::memcpy(v, b.data(), 4);
  EXPECT_EQ(v[0], 0x3f80);
  EXPECT_EQ(v[1], 0x3f82);
}

TEST(QuantizeExact, Q8_0AndQ8_1) {
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = 0.5f * float(j * 8 - 127);  // max |x| = 127 * 0.5
  x[31] = 0.5f * 127;
  const std::vector<uint8_t> q = quantize(GgmlType::Q8_0, x);
  BlockQ8_0 b;
  std::memcpy(&b, q.data(), sizeof(b));
  EXPECT_EQ(b.d, fp32_to_fp16(0.5f));
  for (int j = 0; j < 32; ++j) EXPECT_EQ(b.qs[j], j == 31 ? 127 : j * 8 - 127);
  EXPECT_EQ(round_trip(GgmlType::Q8_0, x), x);

  const std::vector<uint8_t> q1 = quantize(GgmlType::Q8_1, x);
  BlockQ8_1 c;
  std::memcpy(&c, q1.data(), sizeof(c));
  int sum = 0;
  for (int j = 0; j < 32; ++j) sum += c.qs[j];
  EXPECT_EQ(c.d, fp32_to_fp16(0.5f));
  EXPECT_EQ(c.s, fp32_to_fp16(0.5f * float(sum)));
}

TEST(QuantizeExact, Q8_KBsums) {
  const std::vector<float> x = normal(512, 11);
  const std::vector<uint8_t> q = quantize(GgmlType::Q8_K, x);
  for (int blk = 0; blk < 2; ++blk) {
    BlockQ8_K b;
    std::memcpy(&b, q.data() + blk * sizeof(BlockQ8_K), sizeof(b));
    float amax = 0;
    for (int j = 0; j < 256; ++j) amax = std::max(amax, std::fabs(x[size_t(blk * 256 + j)]));
    EXPECT_FLOAT_EQ(b.d, amax / 127.0f);
    int extreme = 0;
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += b.qs[16 * g + j];
      EXPECT_EQ(b.bsums[g], sum);
    }
    for (int j = 0; j < 256; ++j) extreme = std::max(extreme, std::abs(int(b.qs[j])));
    EXPECT_EQ(extreme, 127);
  }
}

TEST(QuantizeExact, LegacyBlocksReproduceTheirGrid) {
  std::vector<float> x(32);
  // Q4_0: levels 0.5 * (q - 8); the largest magnitude is -4 (q = 0).
  for (int j = 0; j < 32; ++j) x[j] = 0.5f * float((j * 5) % 16 - 8);
  EXPECT_EQ(round_trip(GgmlType::Q4_0, x), x);
  // Q5_0: levels 0.25 * (q - 16) with q = 0 present.
  for (int j = 0; j < 32; ++j) x[j] = 0.25f * float((j * 7) % 32 - 16);
  EXPECT_EQ(round_trip(GgmlType::Q5_0, x), x);
  // Q4_1 / Q5_1: min -1 and every level present.
  for (int j = 0; j < 32; ++j) x[j] = 0.25f * float((j * 3) % 16) - 1.0f;
  EXPECT_EQ(round_trip(GgmlType::Q4_1, x), x);
  for (int j = 0; j < 32; ++j) x[j] = 0.125f * float((j * 3) % 32) - 1.0f;
  EXPECT_EQ(round_trip(GgmlType::Q5_1, x), x);
}

// K-quant super-blocks whose values lie exactly on a grid with the largest scale code
// at the top of its range: the quantizer must find that grid and reproduce it.
TEST(QuantizeExact, Q4_KAndQ5_KFindExactGrid) {
  for (GgmlType t : {GgmlType::Q4_K, GgmlType::Q5_K}) {
    const int nmax = t == GgmlType::Q4_K ? 15 : 31;
    const int sc[8] = {63, 10, 33, 1, 48, 7, 20, 59};
    const int mc[8] = {5, 63, 0, 17, 30, 2, 44, 9};
    std::vector<float> x(256);
    for (int e = 0; e < 256; ++e) {
      const int s = e / 32, q = (e * 7 + 3) % (nmax + 1);  // every level in each sub-block
      x[size_t(e)] = 0.125f * float(sc[s]) * float(q) - 0.0625f * float(mc[s]);
    }
    const std::vector<uint8_t> q = quantize(t, x);
    // d, dmin and scales sit at the same offsets in both block types.
    uint16_t d, dmin;
    std::memcpy(&d, q.data(), 2);
    std::memcpy(&dmin, q.data() + 2, 2);
    EXPECT_EQ(fp16_to_fp32(d), 0.125f);
    EXPECT_EQ(fp16_to_fp32(dmin), 0.0625f);
    for (int j = 0; j < 8; ++j) {
      uint8_t s, m;
      unpack_scale_min_k4(j, q.data() + 4, &s, &m);
      EXPECT_EQ(s, sc[j]) << j;
      EXPECT_EQ(m, mc[j]) << j;
    }
    EXPECT_EQ(round_trip(t, x), x) << ggml_type_name(t);
  }
}

TEST(QuantizeExact, Q2_KFindsExactGrid) {
  std::vector<float> x(256);
  for (int e = 0; e < 256; ++e) {
    const int s = e / 16, q = (e * 3 + 1) % 4;
    x[size_t(e)] = 0.5f * float(s == 3 ? 15 : s % 15 + 1) * float(q) - 0.25f * float(s == 9 ? 15 : s % 7);
  }
  EXPECT_EQ(round_trip(GgmlType::Q2_K, x), x);
}

TEST(QuantizeExact, Q3_KAndQ6_KFindExactGrid) {
  std::vector<float> x(256);
  int codes[16];
  for (int s = 0; s < 16; ++s) codes[s] = s == 5 ? -32 : (s * 9) % 63 - 31;  // -32 sets d
  for (int e = 0; e < 256; ++e) x[size_t(e)] = 0.25f * float(codes[e / 16]) * float((e * 3 + 1) % 8 - 4);
  EXPECT_EQ(round_trip(GgmlType::Q3_K, x), x);

  for (int s = 0; s < 16; ++s) codes[s] = s == 2 ? -128 : (s * 37) % 255 - 127;
  // Level -32 (the largest magnitude) first in each sub-block, then assorted levels.
  for (int e = 0; e < 256; ++e)
    x[size_t(e)] = 0.0625f * float(codes[e / 16]) * float(e % 16 == 0 ? -32 : (e * 5 + 1) % 64 - 32);
  const std::vector<uint8_t> q = quantize(GgmlType::Q6_K, x);
  BlockQ6_K b;
  std::memcpy(&b, q.data(), sizeof(b));
  EXPECT_EQ(fp16_to_fp32(b.d), 0.0625f);
  for (int s = 0; s < 16; ++s) EXPECT_EQ(b.scales[s], codes[s]) << s;
  EXPECT_EQ(round_trip(GgmlType::Q6_K, x), x);
}

TEST(QuantizeExact, PackScaleMinK4InvertsUnpack) {
  uint8_t sc[8], mn[8], packed[12];
  for (int j = 0; j < 8; ++j) {
    sc[j] = uint8_t((j * 23 + 4) % 64);
    mn[j] = uint8_t(63 - (j * 11) % 64);
  }
  pack_scale_min_k4(sc, mn, packed);
  for (int j = 0; j < 8; ++j) {
    uint8_t s, m;
    unpack_scale_min_k4(j, packed, &s, &m);
    EXPECT_EQ(s, sc[j]);
    EXPECT_EQ(m, mn[j]);
  }
}

// ---- Against llama.cpp's quantization of the same weights ------------------------

// For the legacy formats our quantizer follows the same rounding rules as llama.cpp's
// reference quantizer, so the bytes agree (allowing a rare 1-ulp tie difference); for
// K-quants (different scale searches) our error must be close to llama.cpp's.
class AgainstLlamaCpp : public ::testing::TestWithParam<std::string> {};

TEST_P(AgainstLlamaCpp, ErrorNoWorseThanLlamaCpp) {
  auto ref = GgufFile::open(test::shared_path("models/synth-3m-f32.gguf"));
  ASSERT_TRUE(ref) << ref.error().message;
  auto file = GgufFile::open(test::shared_path("models/synth-3m-" + GetParam() + ".gguf"));
  ASSERT_TRUE(file) << file.error().message;
  int compared = 0;
  std::map<GgmlType, std::pair<double, double>> sq_err;  // ours, theirs
  for (const GgufTensor& t : (*file)->tensors()) {
    if (t.type == GgmlType::F32) continue;
    const GgufTensor* r = (*ref)->tensor(t.name);
    ASSERT_NE(r, nullptr);
    std::vector<float> x(size_t(r->n_elements));
    std::memcpy(x.data(), r->data, x.size() * 4);
    std::vector<float> theirs(x.size());
    dequantize_row(t.type, t.data, theirs.data(), t.n_elements);
    const std::vector<uint8_t> ours_q = quantize(t.type, x);
    std::vector<float> ours(x.size());
    dequantize_row(t.type, ours_q.data(), ours.data(), t.n_elements);
    const double e_ours = rms_error(ours, x), e_theirs = rms_error(theirs, x);
    if (t.type == GgmlType::Q8_0 || t.type == GgmlType::Q4_0 || t.type == GgmlType::Q4_1) {
      size_t differ = 0;
      for (size_t i = 0; i < ours_q.size(); ++i) differ += ours_q[i] != t.data[i];
      EXPECT_LE(double(differ), 1e-4 * double(ours_q.size())) << t.name;
    }
    // K-quants: a sensible search is within 10% of llama.cpp's error.
    EXPECT_LE(e_ours, 1.10 * e_theirs) << t.name << " (" << ggml_type_name(t.type) << ")";
    sq_err[t.type].first += e_ours * e_ours;
    sq_err[t.type].second += e_theirs * e_theirs;
    ++compared;
  }
  for (auto& [type, e] : sq_err)
    std::printf("  %s: error ours / llama.cpp's = %.4f\n", ggml_type_name(type),
                std::sqrt(e.first / e.second));
  EXPECT_GT(compared, 0);
}

INSTANTIATE_TEST_SUITE_P(Shared, AgainstLlamaCpp,
                         ::testing::Values("q8_0", "q4_0", "q4_1", "q4_k_m", "q5_k_m", "q6_k"));

}  // namespace
}  // namespace kvserve
