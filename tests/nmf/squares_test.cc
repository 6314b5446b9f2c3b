// The frame's squared norm the tracker's fit residual uses: alone or during the stage's copy of
// the frame into the slow path's ring, the same value bit for bit, close to the exact sum; the
// copy equal to memcpy for every alignment and length and writing nothing beyond.
#include "engine/nmf/squares.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

namespace rtnmf::nmf {
namespace {

TEST(Squares, CopyAndSumMatchMemcpyAndTheSumAloneForEveryAlignmentAndLength) {
  std::vector<float> src(300);
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<float>(i) * 0.37f - 20.0f;
  alignas(32) float dst[400];
  for (std::size_t off : {0u, 1u, 3u, 8u, 9u}) {  // 32-byte aligned (0, 8) and not
    for (std::size_t n : {0u, 5u, 31u, 32u, 33u, 96u, 257u}) {
      std::fill(dst, dst + 400, -7.0f);
      const double s = copy_sum_squares(dst + off, src.data() + 1, n);  // source misaligned too
      EXPECT_EQ(std::memcmp(dst + off, src.data() + 1, n * sizeof(float)), 0) << "offset " << off << " length " << n;
      for (std::size_t i = 0; i < off; ++i) EXPECT_EQ(dst[i], -7.0f);
      for (std::size_t i = off + n; i < 400; ++i) ASSERT_EQ(dst[i], -7.0f) << i;
      EXPECT_EQ(s, sum_squares(src.data() + 1, n)) << "offset " << off << " length " << n;
      double exact = 0;
      for (std::size_t i = 1; i <= n; ++i) exact += static_cast<double>(src[i]) * src[i];
      EXPECT_NEAR(s, exact, 1e-6 * exact + 1e-9) << "length " << n;
    }
  }
}

}  // namespace
}  // namespace rtnmf::nmf
