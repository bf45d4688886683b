#include "kernels/cpu/rope.h"

#include <cassert>
#include <cmath>
#include <numbers>

namespace kvserve {

std::vector<float> rope_inv_freq(int n_rot, float base, const RopeScaling& scaling,
                                 const float* freq_factors) {
  assert(n_rot > 0 && n_rot % 2 == 0);
  std::vector<float> inv(size_t(n_rot / 2));
  for (int i = 0; i < n_rot / 2; ++i) {
    double f = std::pow(double(base), -2.0 * i / n_rot);
    if (freq_factors) {
      f /= freq_factors[i];
    } else if (scaling.type == RopeScaling::Type::Llama3) {
      // Meta's Llama 3.1 rule: keep high frequencies, divide low ones by the factor, and
      // interpolate smoothly in between (by wavelength relative to the original context).
      const double low_wavelen = scaling.original_context / double(scaling.low_freq_factor);
      const double high_wavelen = scaling.original_context / double(scaling.high_freq_factor);
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f /= scaling.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (scaling.original_context / wavelen - scaling.low_freq_factor) /
                              (scaling.high_freq_factor - scaling.low_freq_factor);
        f = (1.0 - smooth) * f / scaling.factor + smooth * f;
      }
    }
    if (scaling.type == RopeScaling::Type::Linear) f /= scaling.factor;
    inv[size_t(i)] = float(f);
  }
  return inv;
}

void rope_cos_sin(int64_t pos, const float* inv_freq, int n_rot, float* cs) {
  for (int i = 0; i < n_rot / 2; ++i) {
    const double theta = double(pos) * double(inv_freq[i]);
    cs[2 * i] = float(std::cos(theta));
    cs[2 * i + 1] = float(std::sin(theta));
  }
}

void rope_apply(float* x, int n_heads, int head_dim, int n_rot, const float* cs, RopeStyle style) {
  const int half = n_rot / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + int64_t(h) * head_dim;
    if (style == RopeStyle::Normal) {
      for (int i = 0; i < half; ++i) {
        const float c = cs[2 * i], s = cs[2 * i + 1];
        const float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * c - b * s;
        v[2 * i + 1] = a * s + b * c;
      }
    } else {
      for (int i = 0; i < half; ++i) {
        const float c = cs[2 * i], s = cs[2 * i + 1];
        const float a = v[i], b = v[i + half];
        v[i] = a * c - b * s;
        v[i + half] = a * s + b * c;
      }
    }
  }
}

}  // namespace kvserve
