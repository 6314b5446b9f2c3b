// OASIS AR(1) against an exact offline solution, online against offline, parameter estimators.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <random>

#include "engine/nmf/oasis.h"
#include "tests/support/alloc_counter.h"

namespace rtnmf::nmf {
namespace {

// Exact solution of min ||c - y||^2 s.t. c = K s, s >= 0 (K_tj = g^(t-j)) by enumerating every
// support of s: the best feasible unconstrained least-squares fit over all supports.
Eigen::VectorXd brute_force(const Eigen::VectorXd& y, double g) {
  const int n = static_cast<int>(y.size());
  Eigen::MatrixXd k = Eigen::MatrixXd::Zero(n, n);
  for (int t = 0; t < n; ++t)
    for (int j = 0; j <= t; ++j) k(t, j) = std::pow(g, t - j);
  double best = y.squaredNorm();
  Eigen::VectorXd best_c = Eigen::VectorXd::Zero(n);
  for (int mask = 1; mask < (1 << n); ++mask) {
    std::vector<int> idx;
    for (int j = 0; j < n; ++j)
      if (mask & (1 << j)) idx.push_back(j);
    Eigen::MatrixXd ks(n, static_cast<int>(idx.size()));
    for (std::size_t q = 0; q < idx.size(); ++q) ks.col(static_cast<int>(q)) = k.col(idx[q]);
    Eigen::VectorXd s = ks.colPivHouseholderQr().solve(y);
    if (s.minCoeff() < -1e-12) continue;
    Eigen::VectorXd c = ks * s;
    const double obj = (c - y).squaredNorm();
    if (obj < best - 1e-12) {
      best = obj;
      best_c = c;
    }
  }
  return best_c;
}

TEST(Oasis, Ar1MatchesExhaustiveSearchOnShortTraces) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0, 1);
  for (float g : {0.5f, 0.8f, 0.95f}) {
    for (int trial = 0; trial < 6; ++trial) {
      const int n = 10;
      Eigen::VectorXf y(n);
      for (int t = 0; t < n; ++t) y(t) = nd(rng) + (t == 3 || t == 7 ? 3.0f : 0.0f);
      Eigen::VectorXf c(n), s(n);
      oasis_ar1(y, g, 0.0f, c, s);
      Eigen::VectorXd exact = brute_force(y.cast<double>(), g);
      EXPECT_LT((c.cast<double>() - exact).cwiseAbs().maxCoeff(), 1e-4) << "g " << g;
      EXPECT_GE(s.minCoeff(), -1e-5f);
    }
  }
}

TEST(Oasis, OnlineEstimateEqualsOfflineSolutionOfThePrefix) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0, 0.3f);
  const int n = 60;
  Eigen::VectorXf y(n);
  float cal = 0;
  for (int t = 0; t < n; ++t) {
    cal = 0.9f * cal + (t % 13 == 4 ? 2.0f : 0.0f);
    y(t) = cal + nd(rng);
  }
  OnlineOasis online;
  online.init(2, 1000);
  online.set_params(0, 0.9f, 0.0f, 0.0f);
  online.set_params(1, 0.9f, 0.0f, 1.0f);  // baseline 1: trace 1 is y + 1
  Eigen::VectorXf yt(2), ct(2), st(2);
  for (int t = 0; t < n; ++t) {
    yt << y(t), y(t) + 1.0f;
    online.update(yt, ct, st);
    Eigen::VectorXf c(t + 1), s(t + 1);
    oasis_ar1(y.head(t + 1), 0.9f, 0.0f, c, s);
    EXPECT_NEAR(ct(0), c(t), 1e-4f) << "t " << t;
    EXPECT_NEAR(ct(1), c(t), 1e-4f) << "t " << t;
    EXPECT_NEAR(st(0), std::max(s(t), 0.0f), 1e-4f) << "t " << t;
  }
}

TEST(Oasis, ThresholdedVariantFindsPlantedSpikes) {
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0, 0.2f);
  std::bernoulli_distribution spike(0.03);
  const int n = 3000;
  const float g = 0.93f;
  Eigen::VectorXf y(n), truth = Eigen::VectorXf::Zero(n);
  float cal = 0;
  for (int t = 0; t < n; ++t) {
    if (spike(rng)) truth(t) = 1.0f;
    cal = g * cal + truth(t);
    y(t) = cal + nd(rng);
  }
  Eigen::VectorXf c(n), s(n);
  oasis_ar1(y, g, 0.5f, c, s);
  int hit = 0, spurious = 0;
  for (int t = 0; t < n; ++t) {
    if (s(t) <= 0.3f) continue;
    bool near = false;
    for (int d = -1; d <= 1; ++d)
      if (t + d >= 0 && t + d < n && truth(t + d) > 0) near = true;
    near ? ++hit : ++spurious;
  }
  const int planted = static_cast<int>(truth.sum());
  EXPECT_GT(hit, 0.9 * planted);
  EXPECT_LT(spurious, 0.1 * planted);
  // Denoised trace close to the truth.
  Eigen::VectorXf clean(n);
  cal = 0;
  for (int t = 0; t < n; ++t) clean(t) = cal = g * cal + truth(t);
  EXPECT_LT((c - clean).norm() / clean.norm(), 0.25f);
}

TEST(Oasis, EstimatesDecayAndNoiseFromATrace) {
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0, 0.3f);
  std::bernoulli_distribution spike(0.02);
  const int n = 20000;
  Eigen::VectorXf y(n);
  float cal = 0;
  for (int t = 0; t < n; ++t) {
    cal = 0.95f * cal + (spike(rng) ? 1.0f : 0.0f);
    y(t) = cal + nd(rng);
  }
  const float sd = estimate_noise_sd(y);
  EXPECT_NEAR(sd, 0.3f, 0.04f);
  EXPECT_NEAR(estimate_ar1(y, sd), 0.95f, 0.02f);
  Eigen::Vector2f g2 = estimate_ar2(y, sd);
  EXPECT_NEAR(g2(0) + g2(1), 0.95f, 0.05f);  // an AR(1) process seen as AR(2)
}

TEST(Oasis, OnlineMemoryIsBoundedAndUpdateDoesNotAllocate) {
  OnlineOasis online;
  online.init(50, 8);
  for (int i = 0; i < 50; ++i) online.set_params(i, 0.9f, 0.1f, 0.0f);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0, 1);
  Eigen::VectorXf y(50), c(50), s(50);
  rtnmf::test::AllocationGuard guard;
  for (int t = 0; t < 20000; ++t) {
    for (int i = 0; i < 50; ++i) y(i) = nd(rng) + (t % 7 == 0 ? 5.0f : 0.0f);
    online.update(y, c, s);
    ASSERT_TRUE(c.allFinite());
    ASSERT_GE(c.minCoeff(), 0.0f);
  }
  if (rtnmf::test::allocation_counting_available()) {
    EXPECT_EQ(guard.count(), 0u);
  }
}

}  // namespace
}  // namespace rtnmf::nmf
