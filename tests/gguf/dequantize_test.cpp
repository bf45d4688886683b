// dequantize_row against real llama.cpp-quantized files: synth-3m-<type>.gguf hold the
// same random weights as synth-3m-f32.gguf, so dequantizing each tensor must land
// within the type's quantization error of the f32 weights. A wrong bit layout gives
// errors of order 100%, far above every bound here.
#include "gguf/dequantize.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "common/test_paths.h"
#include "core/half.h"
#include "gguf/gguf_file.h"
#include "gguf/quant_blocks.h"

namespace kvserve {
namespace {

std::vector<float> dequantize_tensor(const GgufTensor& t) {
  std::vector<float> out(size_t(t.n_elements));
  dequantize_row(t.type, t.data, out.data(), t.n_elements);
  return out;
}

// sqrt(sum (a-b)^2 / sum b^2)
double relative_rms_error(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += double(a[i] - b[i]) * double(a[i] - b[i]);
    den += double(b[i]) * double(b[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Largest relative RMS error allowed per stored tensor type. Measured worst tensors of
// these files: f16 0.02%, bf16 0.17%, q8_0 0.54%, q6_k 1.8%, q5_k 3.6%, q4_k 7.2%,
// q4_1 7.8%, q4_0 8.7%; the bounds leave about 1.3-1.5x room.
double error_bound(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return 0.0;
    case GgmlType::F16: return 1e-3;
    case GgmlType::BF16: return 5e-3;
    case GgmlType::Q8_0: return 0.008;
    case GgmlType::Q6_K: return 0.025;
    case GgmlType::Q5_K: return 0.045;
    case GgmlType::Q4_K: return 0.10;
    case GgmlType::Q4_0: return 0.12;
    case GgmlType::Q4_1: return 0.11;
    default: return 0.0;  // not expected in these files
  }
}

class SynthDequantize : public ::testing::TestWithParam<std::string> {};

TEST_P(SynthDequantize, MatchesF32Weights) {
  auto ref = GgufFile::open(test::shared_path("models/synth-3m-f32.gguf"));
  ASSERT_TRUE(ref) << ref.error().message;
  auto q = GgufFile::open(test::shared_path("models/synth-3m-" + GetParam() + ".gguf"));
  ASSERT_TRUE(q) << q.error().message;
  ASSERT_EQ((*q)->tensors().size(), (*ref)->tensors().size());

  std::map<GgmlType, int> seen;
  std::map<GgmlType, double> worst;
  for (const GgufTensor& t : (*q)->tensors()) {
    const GgufTensor* r = (*ref)->tensor(t.name);
    ASSERT_NE(r, nullptr) << t.name;
    ASSERT_EQ(r->type, GgmlType::F32);
    ASSERT_EQ(t.shape, r->shape) << t.name;
    const std::vector<float> got = dequantize_tensor(t);
    const std::vector<float> want = dequantize_tensor(*r);
    const double err = relative_rms_error(got, want);
    ++seen[t.type];
    worst[t.type] = std::max(worst[t.type], err);
    if (t.type == GgmlType::F32) {
      EXPECT_EQ(got, want) << t.name;
    } else {
      EXPECT_LE(err, error_bound(t.type)) << t.name << " (" << ggml_type_name(t.type) << ")";
      // Quantization is lossy: an exact match would mean we read the wrong tensor.
      EXPECT_GT(err, 0.0) << t.name;
    }
  }
  for (auto [type, count] : seen)
    std::printf("  %s: %d tensors, worst relative RMS error %.5f\n", ggml_type_name(type), count,
                worst[type]);
  EXPECT_GE(seen.size(), 2u);  // weights of the quantized type plus f32 norms
}

INSTANTIATE_TEST_SUITE_P(Shared, SynthDequantize,
                         ::testing::Values("f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k_m", "q5_k_m",
                                           "q6_k"));

TEST(SynthDequantize, KQuantFilesUseTheExpectedTypes) {
  auto q4km = GgufFile::open(test::shared_path("models/synth-3m-q4_k_m.gguf"));
  ASSERT_TRUE(q4km) << q4km.error().message;
  bool has_q4k = false, has_q6k = false;
  for (const auto& t : (*q4km)->tensors()) {
    has_q4k |= t.type == GgmlType::Q4_K;
    has_q6k |= t.type == GgmlType::Q6_K;
  }
  EXPECT_TRUE(has_q4k);
  EXPECT_TRUE(has_q6k);
}

// Hand-built blocks with known values, one per format, checking element placement.
TEST(Dequantize, Q4_0HandBuilt) {
  BlockQ4_0 b{};
  b.d = fp32_to_fp16(0.5f);
  for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(j | ((15 - j) << 4));
  float y[32];
  dequantize_row(GgmlType::Q4_0, &b, y, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.5f * float(j - 8));
    EXPECT_EQ(y[j + 16], 0.5f * float(7 - j));
  }
}

TEST(Dequantize, Q4_1HandBuilt) {
  BlockQ4_1 b{};
  b.d = fp32_to_fp16(0.25f);
  b.m = fp32_to_fp16(-1.0f);
  for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(j | (3 << 4));
  float y[32];
  dequantize_row(GgmlType::Q4_1, &b, y, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.25f * float(j) - 1.0f);
    EXPECT_EQ(y[j + 16], 0.25f * 3 - 1.0f);
  }
}

TEST(Dequantize, Q5_0AndQ5_1HighBits) {
  BlockQ5_0 b{};
  b.d = fp32_to_fp16(1.0f);
  // Elements 0 and 17 get their 5th bit; everything else has low bits 0.
  b.qh[0] = 0x01;
  b.qh[2] = 0x02;
  float y[32];
  dequantize_row(GgmlType::Q5_0, &b, y, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], (j == 0 || j == 17) ? 0.0f : -16.0f) << j;

  BlockQ5_1 c{};
  c.d = fp32_to_fp16(2.0f);
  c.m = fp32_to_fp16(1.0f);
  c.qh[3] = 0x80;   // element 31
  c.qs[15] = 0xF0;  // element 31 low bits 15
  dequantize_row(GgmlType::Q5_1, &c, y, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], j == 31 ? 2.0f * 31 + 1 : 1.0f) << j;
}

TEST(Dequantize, Q8_0AndQ8_1) {
  BlockQ8_0 b{};
  b.d = fp32_to_fp16(0.125f);
  for (int j = 0; j < 32; ++j) b.qs[j] = int8_t(j * 8 - 128);
  float y[32];
  dequantize_row(GgmlType::Q8_0, &b, y, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], 0.125f * float(j * 8 - 128));
  BlockQ8_1 c{};
  c.d = fp32_to_fp16(-2.0f);
  c.s = fp32_to_fp16(1234.0f);  // not used by dequantization
  for (int j = 0; j < 32; ++j) c.qs[j] = int8_t(j - 16);
  dequantize_row(GgmlType::Q8_1, &c, y, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], -2.0f * float(j - 16));
}

TEST(Dequantize, Q2_KPlanesAndScales) {
  BlockQ2_K b{};
  b.d = fp32_to_fp16(1.0f);
  b.dmin = fp32_to_fp16(0.5f);
  for (int s = 0; s < 16; ++s) b.scales[s] = uint8_t((s % 15 + 1) | ((s % 3) << 4));
  // Element e: half h = e / 128, plane p = (e % 128) / 32, byte l = e % 32.
  std::vector<int> q(256);
  for (int e = 0; e < 256; ++e) {
    q[e] = (e * 7 + 3) % 4;
    b.qs[32 * (e / 128) + e % 32] |= uint8_t(q[e] << (2 * ((e % 128) / 32)));
  }
  float y[256];
  dequantize_row(GgmlType::Q2_K, &b, y, 256);
  for (int e = 0; e < 256; ++e) {
    const int s = e / 16;
    const float want = float(s % 15 + 1) * float(q[e]) - 0.5f * float(s % 3);
    EXPECT_EQ(y[e], want) << e;
  }
}

TEST(Dequantize, Q3_KScalesAndHighBits) {
  BlockQ3_K b{};
  b.d = fp32_to_fp16(0.5f);
  int scale[16];
  for (int s = 0; s < 16; ++s) {
    scale[s] = (s * 5) % 64 - 32;  // signed 6-bit
    const int u = scale[s] + 32;
    if (s < 8)
      b.scales[s] |= uint8_t(u & 0xF);
    else
      b.scales[s - 8] |= uint8_t((u & 0xF) << 4);
    b.scales[8 + s % 4] |= uint8_t((u >> 4) << (2 * (s / 4)));
  }
  int8_t unpacked[16];
  unpack_scales_q3_k(b.scales, unpacked);
  for (int s = 0; s < 16; ++s) EXPECT_EQ(unpacked[s], scale[s]);
  std::vector<int> q(256);
  for (int e = 0; e < 256; ++e) {
    q[e] = (e * 3 + 1) % 8 - 4;  // -4..3
    const int u = q[e] + 4;      // low 2 bits + high bit (set when q >= 0)
    const int plane = (e % 128) / 32, half = e / 128, l = e % 32;
    b.qs[32 * half + l] |= uint8_t((u & 3) << (2 * plane));
    if (u & 4) b.hmask[l] |= uint8_t(1 << (half * 4 + plane));
  }
  float y[256];
  dequantize_row(GgmlType::Q3_K, &b, y, 256);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], 0.5f * float(scale[e / 16]) * float(q[e])) << e;
}

// Packs 8 six-bit scales and mins the Q4_K / Q5_K way.
void pack_scale_min_k4(const int* sc, const int* mn, uint8_t* out) {
  for (int j = 0; j < 12; ++j) out[j] = 0;
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      out[j] = uint8_t(sc[j]);
      out[j + 4] = uint8_t(mn[j]);
    } else {
      out[j + 4] = uint8_t((sc[j] & 0xF) | ((mn[j] & 0xF) << 4));
      out[j - 4] |= uint8_t((sc[j] >> 4) << 6);
      out[j] |= uint8_t((mn[j] >> 4) << 6);
    }
  }
}

TEST(Dequantize, Q4_KAndQ5_K) {
  int sc[8], mn[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = (j * 9 + 5) % 64;
    mn[j] = (j * 13 + 60) % 64;
  }
  BlockQ4_K b{};
  b.d = fp32_to_fp16(0.25f);
  b.dmin = fp32_to_fp16(0.125f);
  pack_scale_min_k4(sc, mn, b.scales);
  for (int j = 0; j < 8; ++j) {
    uint8_t s, m;
    unpack_scale_min_k4(j, b.scales, &s, &m);
    EXPECT_EQ(s, sc[j]);
    EXPECT_EQ(m, mn[j]);
  }
  BlockQ5_K c{};
  c.d = b.d;
  c.dmin = b.dmin;
  std::memcpy(c.scales, b.scales, 12);
  std::vector<int> q(256);
  for (int e = 0; e < 256; ++e) {
    q[e] = (e * 11 + 7) % 32;
    // Sub-block s = e / 32 sits in chunk s / 2, nibble s % 2.
    const int s = e / 32, l = e % 32;
    b.qs[32 * (s / 2) + l] |= uint8_t((q[e] & 0xF) << (4 * (s % 2)));
    c.qs[32 * (s / 2) + l] |= uint8_t((q[e] & 0xF) << (4 * (s % 2)));
    c.qh[l] |= uint8_t((q[e] >> 4) << s);
  }
  float y[256];
  dequantize_row(GgmlType::Q4_K, &b, y, 256);
  for (int e = 0; e < 256; ++e) {
    const int s = e / 32;
    EXPECT_EQ(y[e], 0.25f * float(sc[s]) * float(q[e] & 0xF) - 0.125f * float(mn[s])) << e;
  }
  dequantize_row(GgmlType::Q5_K, &c, y, 256);
  for (int e = 0; e < 256; ++e) {
    const int s = e / 32;
    EXPECT_EQ(y[e], 0.25f * float(sc[s]) * float(q[e]) - 0.125f * float(mn[s])) << e;
  }
}

TEST(Dequantize, Q6_K) {
  BlockQ6_K b{};
  b.d = fp32_to_fp16(0.5f);
  for (int s = 0; s < 16; ++s) b.scales[s] = int8_t(s * 17 - 120);
  std::vector<int> q(256);
  for (int e = 0; e < 256; ++e) {
    q[e] = (e * 29 + 5) % 64;  // stored unsigned; value is q - 32
    const int half = e / 128, k = e % 128, plane = k / 32, l = k % 32;
    if (plane < 2)
      b.ql[64 * half + k] |= uint8_t(q[e] & 0xF);
    else
      b.ql[64 * half + k - 64] |= uint8_t((q[e] & 0xF) << 4);
    b.qh[32 * half + l] |= uint8_t((q[e] >> 4) << (2 * plane));
  }
  float y[256];
  dequantize_row(GgmlType::Q6_K, &b, y, 256);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], 0.5f * float(b.scales[e / 16]) * float(q[e] - 32)) << e;
}

TEST(Dequantize, Q8_KAndFloats) {
  BlockQ8_K b{};
  b.d = 0.01f;
  for (int j = 0; j < 256; ++j) b.qs[j] = int8_t(j - 128);
  float y[256];
  dequantize_row(GgmlType::Q8_K, &b, y, 256);
  for (int j = 0; j < 256; ++j) EXPECT_EQ(y[j], 0.01f * float(j - 128));

  const uint16_t h[4] = {0x3c00, 0xc000, 0x0001, 0x7bff};  // 1, -2, 2^-24, 65504
  dequantize_row(GgmlType::F16, h, y, 4);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], -2.0f);
  EXPECT_EQ(y[2], std::ldexp(1.0f, -24));
  EXPECT_EQ(y[3], 65504.0f);
  const uint16_t bf[2] = {0x3f80, 0xc040};  // 1, -3
  dequantize_row(GgmlType::BF16, bf, y, 2);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], -3.0f);
}

}  // namespace
}  // namespace kvserve
