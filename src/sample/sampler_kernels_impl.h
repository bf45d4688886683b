// The sampler's row kernels written once over GCC vector types; each
// sampler_kernels*.cpp instantiates them for one vector width under its ISA flags.
// Everything has internal linkage (see sampler_math.h for why).
#pragma once

#include <cstdint>
#include <cstring>

#include "sample/sampler_kernels.h"
#include "sample/sampler_math.h"

namespace kvserve::sampler_kernels_impl {
namespace {

// VF: W floats, VI: W int32 (the type vector comparisons yield: 0 or -1 per lane).
template <class VF, class VI>
struct Impl {
  static constexpr int32_t W = int32_t(sizeof(VF) / sizeof(float));
  static constexpr int32_t kBlock = SamplerKernels::kBlock;
  static constexpr int kWindows = SamplerKernels::kWindows;
  static_assert(kBlock % (2 * W) == 0);

  static VF load(const float* p) {
    VF v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(float* p, VF v) { std::memcpy(p, &v, sizeof v); }
  static VF splat(float x) { return VF{} + x; }

  // Lane-wise sampler_math::exp_nonpos (same constants, same steps).
  static VF exp(VF x) {
    const VF lo = splat(-87.0f);
    const VI tiny = x < lo;
    const VF xc = tiny ? lo : x;
    constexpr float kMagic = 12582912.0f;
    const VF t = xc * 1.44269504088896341f + kMagic;
    const VF n = t - kMagic;
    VI ni;
    std::memcpy(&ni, &t, sizeof ni);
    ni -= 0x4B400000;  // bits of kMagic
    VF r = xc - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    VF p = splat(1.0f / 720.0f);
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const VI bits = (ni + 127) << 23;
    VF scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return tiny ? VF{} : p * scale;
  }

  static double hsum(VF v) {
    float s = 0.0f;
    for (int32_t j = 0; j < W; ++j) s += v[j];
    return s;
  }
  static int32_t hsum(VI v) {
    int32_t s = 0;
    for (int32_t j = 0; j < W; ++j) s += v[j];
    return s;
  }
  static bool any(VI m) {
    for (int32_t j = 0; j < W; ++j)
      if (m[j]) return true;
    return false;
  }

  static float row_max(const float* x, int32_t n) {
    VF a = splat(sampler_math::kNegInf), b = a;
    int32_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
      const VF u = load(x + i), v = load(x + i + W);
      a = u > a ? u : a;
      b = v > b ? v : b;
    }
    a = b > a ? b : a;
    float m = sampler_math::kNegInf;
    for (int32_t j = 0; j < W; ++j) m = a[j] > m ? a[j] : m;
    for (; i < n; ++i) m = x[i] > m ? x[i] : m;
    return m;
  }

  static double sum_exp(const float* x, int32_t n, float m, float inv_t) {
    double s = 0.0;
    int32_t i = 0;
    for (; i + kBlock <= n; i += kBlock) {
      VF a{}, b{};
      for (int32_t k = i; k < i + kBlock; k += 2 * W) {
        a += exp((load(x + k) - m) * inv_t);
        b += exp((load(x + k + W) - m) * inv_t);
      }
      s += hsum(a + b);
    }
    for (; i < n; ++i) s += sampler_math::exp_nonpos((x[i] - m) * inv_t);
    return s;
  }

  static double exp_weights(const float* x, int32_t n, float m, float inv_t, float min_logit, float* w,
                            double* block_sums) {
    double total = 0.0;
    const VF lo = splat(min_logit);
    for (int32_t b = 0, k = 0; b < n; b += kBlock, ++k) {
      const int32_t e = b + kBlock <= n ? b + kBlock : n;
      VF acc{};
      int32_t i = b;
      for (; i + W <= e; i += W) {
        const VF l = load(x + i);
        const VF v = l >= lo ? exp((l - m) * inv_t) : VF{};
        store(w + i, v);
        acc += v;
      }
      double s = hsum(acc);
      for (; i < e; ++i) {
        w[i] = x[i] >= min_logit ? sampler_math::exp_nonpos((x[i] - m) * inv_t) : 0.0f;
        s += w[i];
      }
      block_sums[k] = s;
      total += s;
    }
    return total;
  }

  static double window_masses(const float* x, int32_t n, float m, float inv_t, const float* lo, double* mass,
                              int32_t* count, float* w) {
    double z = 0.0;
    for (int j = 0; j < kWindows; ++j) mass[j] = 0.0, count[j] = 0;
    VF lov[kWindows];
    for (int j = 0; j < kWindows; ++j) lov[j] = splat(lo[j]);
    int32_t i = 0;
    for (; i + kBlock <= n; i += kBlock) {
      VF zacc{}, macc[kWindows] = {};
      VI cacc[kWindows] = {};
      for (int32_t k = i; k < i + kBlock; k += W) {
        const VF l = load(x + k);
        const VF v = exp((l - m) * inv_t);
        store(w + k, v);
        zacc += v;
        for (int j = 0; j < kWindows; ++j) {
          const VI in = l >= lov[j];
          macc[j] += in ? v : VF{};
          cacc[j] -= in;  // in is -1 per selected lane
        }
      }
      z += hsum(zacc);
      for (int j = 0; j < kWindows; ++j) mass[j] += hsum(macc[j]), count[j] += hsum(cacc[j]);
    }
    for (; i < n; ++i) {
      const float v = w[i] = sampler_math::exp_nonpos((x[i] - m) * inv_t);
      z += v;
      for (int j = 0; j < kWindows; ++j)
        if (x[i] >= lo[j]) mass[j] += v, ++count[j];
    }
    return z;
  }

  static int32_t count_greater(const float* x, int32_t n, float v) {
    const VF vv = splat(v);
    VI c{};
    int32_t i = 0;
    for (; i + W <= n; i += W) c -= load(x + i) > vv;
    int32_t total = hsum(c);
    for (; i < n; ++i) total += x[i] > v ? 1 : 0;
    return total;
  }

  static int32_t first_greater(const float* x, int32_t n, int32_t from, float v) {
    const VF vv = splat(v);
    int32_t i = from;
    for (; i + 2 * W <= n; i += 2 * W)
      if (any((load(x + i) > vv) | (load(x + i + W) > vv))) break;
    for (; i < n; ++i)
      if (x[i] > v) return i;
    return n;
  }

  static int32_t select_at_least(const float* x, int32_t n, float v, int32_t* idx) {
    const VF vv = splat(v);
    int32_t c = 0, i = 0;
    for (; i + W <= n; i += W) {
      if (!any(load(x + i) >= vv)) continue;
      for (int32_t j = i; j < i + W; ++j) {  // branch-free append
        idx[c] = j;
        c += x[j] >= v ? 1 : 0;
      }
    }
    for (; i < n; ++i) {
      idx[c] = i;
      c += x[i] >= v ? 1 : 0;
    }
    return c;
  }

  static SamplerKernels table() {
    SamplerKernels k;
    k.row_max = &row_max;
    k.sum_exp = &sum_exp;
    k.exp_weights = &exp_weights;
    k.window_masses = &window_masses;
    k.select_at_least = &select_at_least;
    k.count_greater = &count_greater;
    k.first_greater = &first_greater;
    return k;
  }
};

}  // namespace
}  // namespace kvserve::sampler_kernels_impl
