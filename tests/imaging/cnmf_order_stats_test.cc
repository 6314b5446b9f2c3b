// The branch-free order statistics the CNMF screening uses give exactly median_of's and
// diff_noise's values (they replace them per pixel, so detections and replays must not change).
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "engine/nmf/cnmf_internal.h"

namespace rtnmf::nmf::detail {
namespace {

TEST(CnmfOrderStats, LaneMediansAndNoiseEqualTheScalarOnesForEveryLength) {
  std::mt19937 rng(7);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  std::uniform_int_distribution<int> coin(0, 9);
  std::vector<float> work(static_cast<std::size_t>(kLaneMaxN) * kLanes);
  for (int n : {2, 3, 4, 5, 10, 31, 59, 60, 61, 64, 65, 100, 127, 128, 300, 511, 512}) {
    // Lanes of different kinds: noise, noise with transients, repeated values (ties), a constant.
    std::vector<float> x(static_cast<std::size_t>(n) * kLanes);
    for (int i = 0; i < n; ++i)
      for (int l = 0; l < kLanes; ++l) {
        float v = noise(rng);
        if (l % 4 == 1 && coin(rng) == 0) v += 20.0f;
        if (l % 4 == 2) v = static_cast<float>(static_cast<int>(3 * v));
        if (l % 4 == 3) v = 1.5f;
        x[static_cast<std::size_t>(i * kLanes + l)] = v;
      }
    float med[kLanes], sd[kLanes];
    median_and_noise8(x.data(), n, work.data(), med, sd);
    for (int l = 0; l < kLanes; ++l) {
      std::vector<float> seq(static_cast<std::size_t>(n)), scratch;
      for (int i = 0; i < n; ++i) seq[static_cast<std::size_t>(i)] = x[static_cast<std::size_t>(i * kLanes + l)];
      const float want_sd = diff_noise(seq, scratch);
      const float want_med = median_of(seq);
      EXPECT_EQ(med[l], want_med) << "n=" << n << " lane " << l;
      EXPECT_EQ(sd[l], want_sd) << "n=" << n << " lane " << l;
    }
  }
}

}  // namespace
}  // namespace rtnmf::nmf::detail
