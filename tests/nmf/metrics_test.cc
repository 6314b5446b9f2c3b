// Metrics and Hungarian matching.
#include "engine/nmf/metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "tests/nmf/nmf_test_data.h"

namespace rtnmf::nmf {
namespace {

// Minimum total cost over every injective assignment of the smaller side (brute force).
double brute_force_assignment(const Eigen::MatrixXd& c) {
  const bool t = c.rows() > c.cols();
  Eigen::MatrixXd a = t ? Eigen::MatrixXd(c.transpose()) : c;
  std::vector<int> cols(static_cast<size_t>(a.cols()));
  std::iota(cols.begin(), cols.end(), 0);
  double best = 1e300;
  do {
    double s = 0;
    for (Eigen::Index i = 0; i < a.rows(); ++i) s += a(i, cols[static_cast<size_t>(i)]);
    best = std::min(best, s);
  } while (std::next_permutation(cols.begin(), cols.end()));
  return best;
}

TEST(Hungarian, FindsTheMinimumCostAssignmentOnRectangularMatrices) {
  for (int rows = 1; rows <= 6; ++rows) {
    for (int cols = 1; cols <= 6; ++cols) {
      Eigen::MatrixXd c = testdata::uniform(rows, cols, rows * 10 + cols).cast<double>();
      std::vector<int> a = hungarian(c);
      ASSERT_EQ(a.size(), static_cast<size_t>(rows));
      double total = 0;
      std::vector<int> used;
      for (int i = 0; i < rows; ++i) {
        if (a[i] < 0) continue;
        total += c(i, a[i]);
        used.push_back(a[i]);
      }
      std::sort(used.begin(), used.end());
      EXPECT_EQ(std::adjacent_find(used.begin(), used.end()), used.end());
      EXPECT_EQ(used.size(), static_cast<size_t>(std::min(rows, cols)));
      EXPECT_NEAR(total, brute_force_assignment(c), 1e-12) << rows << "x" << cols;
    }
  }
}

TEST(MatchFactors, PairsPermutedAndScaledFactorsWithSimilarityOne) {
  Eigen::MatrixXf w = testdata::uniform(20, 5, 1);
  std::vector<int> perm = {3, 0, 4, 1, 2};
  Eigen::MatrixXf est(20, 6);
  for (int k = 0; k < 5; ++k) est.col(perm[k]) = (k + 1.5f) * w.col(k);
  est.col(5) = testdata::uniform(20, 1, 2).col(0);  // an extra, unmatched factor
  FactorMatch m = match_factors(w, est);
  ASSERT_EQ(m.pairs.size(), 5u);
  for (const FactorPair& p : m.pairs) {
    EXPECT_EQ(p.estimate, perm[p.reference]);
    EXPECT_NEAR(p.similarity, 1.0, 1e-6);
  }
  EXPECT_NEAR(m.min_similarity, 1.0, 1e-6);
}

TEST(Metrics, RelativeErrorVafAndRSquaredAgreeWithTheirDefinitions) {
  Eigen::MatrixXf w = testdata::uniform(10, 3, 5), h = testdata::uniform(3, 2500, 6);
  Eigen::MatrixXf x = w * h + 0.1f * testdata::uniform(10, 2500, 7);
  Eigen::MatrixXd r = (x - w * h).cast<double>();
  const double rel = r.norm() / x.cast<double>().norm();
  EXPECT_NEAR(relative_error(x, w, h), rel, 1e-6);
  EXPECT_NEAR(vaf(x, w, h), 1 - rel * rel, 1e-6);
  Eigen::MatrixXd xd = x.cast<double>();
  Eigen::MatrixXd centred = xd.colwise() - xd.rowwise().mean();
  EXPECT_NEAR(r_squared(x, w, h), 1 - r.squaredNorm() / centred.squaredNorm(), 1e-6);
  EXPECT_NEAR(relative_error(x, w, Eigen::MatrixXf::Zero(3, 2500)), 1.0, 1e-12);
  EXPECT_THROW(vaf(x, w, Eigen::MatrixXf::Zero(2, 2500)), std::invalid_argument);
}

}  // namespace
}  // namespace rtnmf::nmf
