// The separable Gaussian used for seeding and new-neuron detection against the direct
// definition (replicated borders, taps from -r to r): the filter's borders go through a padded
// copy of their neighbourhood and its interior through tap-major loops; both must give the
// definition's values to float rounding (the compiler may fuse multiply-adds differently in the
// two translation units, so not bit for bit).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "engine/nmf/cnmf.h"

namespace rtnmf::nmf {
namespace {

std::vector<float> reference_gaussian(const std::vector<float>& in, int h, int w, float sigma) {
  const int r = std::min(31, std::max(1, static_cast<int>(std::ceil(3 * sigma))));
  std::vector<float> k(2 * r + 1);
  float sum = 0;
  for (int i = -r; i <= r; ++i) sum += k[i + r] = std::exp(-0.5f * i * i / (sigma * sigma));
  for (float& v : k) v /= sum;
  std::vector<float> rows(in.size()), out(in.size());
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      float acc = 0;
      for (int i = -r; i <= r; ++i) acc += k[i + r] * in[y * w + std::clamp(x + i, 0, w - 1)];
      rows[y * w + x] = acc;
    }
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      float acc = 0;
      for (int i = -r; i <= r; ++i) acc += k[i + r] * rows[std::clamp(y + i, 0, h - 1) * w + x];
      out[y * w + x] = acc;
    }
  return out;
}

TEST(CnmfFilters, GaussianEqualsTheClampedDefinitionForEveryShapeAndWidth) {
  std::mt19937 rng(7);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  for (float sigma : {1.0f, 2.5f, 4.0f, 11.0f}) {
    for (int w : {1, 3, 8, 17, 49, 50, 130}) {
      const int h = 1 + w % 7 + 5;
      std::vector<float> in(static_cast<std::size_t>(h) * w);
      for (float& v : in) v = noise(rng) + 3.0f;
      std::vector<float> out(in.size()), tmp(in.size());
      detail::gaussian_filter(in.data(), out.data(), tmp.data(), h, w, sigma);
      const std::vector<float> want = reference_gaussian(in, h, w, sigma);
      for (std::size_t i = 0; i < in.size(); ++i)
        ASSERT_NEAR(out[i], want[i], 2e-6f * std::fabs(want[i]))
            << "sigma " << sigma << " w " << w << " pixel " << i;
    }
  }
}

}  // namespace
}  // namespace rtnmf::nmf
