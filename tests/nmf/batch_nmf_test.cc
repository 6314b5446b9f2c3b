// Batch NMF: recovery of planted factors, monotone objectives, KKT, determinism, init options.
#include "engine/nmf/batch_nmf.h"

#include <gtest/gtest.h>

#include "engine/nmf/metrics.h"
#include "tests/nmf/nmf_test_data.h"

namespace rtnmf::nmf {
namespace {

BatchNmfOptions options(Eigen::Index k) {
  BatchNmfOptions o;
  o.rank = k;
  o.seed = 3;
  return o;
}

TEST(BatchNmf, RecoversPlantedFactorsWithoutNoise) {
  testdata::Planted p = testdata::planted(40, 5, 300, 11);
  BatchNmfOptions o = options(5);
  o.max_iter = 3000;
  o.tol = 1e-10;
  NmfResult r = fit_nmf(p.x, o);
  FactorMatch mw = match_factors(p.w, r.w);
  FactorMatch mh = match_factors(p.h.transpose(), r.h.transpose());
  EXPECT_GE(mw.min_similarity, 0.999);
  EXPECT_GE(mh.min_similarity, 0.999);
  EXPECT_LT(r.relative_error, 1e-3);
}

TEST(BatchNmf, RecoversPlantedFactorsUnderNoise) {
  testdata::Planted p = testdata::planted(60, 6, 800, 21);
  Eigen::MatrixXf noisy =
      (p.x + testdata::gaussian(60, 800, 0.05f * static_cast<float>(p.x.mean()), 22))
          .cwiseMax(0.f);
  for (NmfLoss loss : {NmfLoss::kFrobenius, NmfLoss::kKullbackLeibler}) {
    BatchNmfOptions o = options(6);
    o.loss = loss;
    o.max_iter = 1000;
    o.tol = 1e-7;
    NmfResult r = fit_nmf(noisy, o);
    EXPECT_GE(match_factors(p.w, r.w).min_similarity, 0.95) << to_string(loss);
    EXPECT_GE(match_factors(p.h.transpose(), r.h.transpose()).min_similarity, 0.95)
        << to_string(loss);
  }
}

void expect_non_increasing(const std::vector<double>& f, const std::string& what) {
  ASSERT_GE(f.size(), 3u) << what;
  for (size_t i = 1; i < f.size(); ++i)
    EXPECT_LE(f[i], f[i - 1] * (1 + 1e-6) + 1e-9) << what << " at iteration " << i;
  EXPECT_LT(f.back(), f.front()) << what;
}

TEST(BatchNmf, ObjectiveIsNonIncreasingForHalsAndMultiplicativeUpdates) {
  Eigen::MatrixXf x = testdata::uniform(30, 200, 5) + 0.1f * testdata::uniform(30, 200, 6);
  for (NmfLoss loss : {NmfLoss::kFrobenius, NmfLoss::kKullbackLeibler, NmfLoss::kBeta}) {
    for (NmfInit init : {NmfInit::kRandom, NmfInit::kNndsvda}) {
      BatchNmfOptions o = options(4);
      o.loss = loss;
      o.beta = 0.5f;  // Itakura-Saito side: exercises the γ(β) < 1 exponent
      o.init = init;
      o.max_iter = 60;
      o.tol = 0;
      o.l1_h = 0.01f;
      o.l2_w = 0.02f;
      NmfResult r = fit_nmf(x, o);
      expect_non_increasing(r.objective, to_string(loss) + "/" + to_string(init));
      EXPECT_EQ(r.iterations, 60);
    }
  }
}

TEST(BatchNmf, SatisfiesKktConditionsAtConvergence) {
  testdata::Planted p = testdata::planted(30, 4, 200, 31);
  Eigen::MatrixXf x = (p.x + testdata::gaussian(30, 200, 0.02f, 32)).cwiseMax(0.f);
  BatchNmfOptions o = options(4);
  o.max_iter = 5000;
  o.tol = 1e-12;
  o.l1_h = 0.05f;
  o.normalize = Normalization::kNone;  // the penalty is not scale-invariant
  NmfResult r = fit_nmf(x, o);
  // Gradients of 1/2‖X − WH‖² + l1_h ΣH.
  Eigen::MatrixXf res = r.w * r.h - x;
  Eigen::MatrixXf gw = res * r.h.transpose();
  Eigen::MatrixXf gh = r.w.transpose() * res;
  gh.array() += o.l1_h;
  const float scale_w = (x * r.h.transpose()).cwiseAbs().maxCoeff();
  const float scale_h = (r.w.transpose() * x).cwiseAbs().maxCoeff();
  // KKT: W ≥ 0, ∇W ≥ 0, W ∘ ∇W = 0 (to tolerance), same for H.
  EXPECT_GE(r.w.minCoeff(), 0.f);
  EXPECT_GE(r.h.minCoeff(), 0.f);
  EXPECT_GE(gw.minCoeff(), -1e-3f * scale_h);
  EXPECT_GE(gh.minCoeff(), -1e-3f * scale_h);
  EXPECT_LE(r.w.cwiseProduct(gw).cwiseAbs().maxCoeff(), 5e-4f * scale_w * r.w.maxCoeff());
  EXPECT_LE(r.h.cwiseProduct(gh).cwiseAbs().maxCoeff(), 5e-4f * scale_h * r.h.maxCoeff());
}

TEST(BatchNmf, IsDeterministicForASeedAndThreadCount) {
  Eigen::MatrixXf x = testdata::uniform(50, 700, 41);
  for (NmfInit init : {NmfInit::kRandom, NmfInit::kNndsvd}) {
    BatchNmfOptions o = options(5);
    o.init = init;
    o.threads = 2;
    o.max_iter = 30;
    NmfResult a = fit_nmf(x, o), b = fit_nmf(x, o);
    EXPECT_EQ(a.w, b.w);
    EXPECT_EQ(a.h, b.h);
    o.seed = 4;
    NmfResult c = fit_nmf(x, o);
    if (init == NmfInit::kRandom) {
      EXPECT_NE(a.w, c.w);
    }
  }
}

TEST(BatchNmf, NormalisesFactorColumnsWithoutChangingTheProduct) {
  Eigen::MatrixXf x = testdata::uniform(20, 100, 51);
  for (Normalization n : {Normalization::kL1, Normalization::kL2}) {
    BatchNmfOptions o = options(3);
    o.normalize = n;
    o.max_iter = 20;
    NmfResult r = fit_nmf(x, o);
    for (Eigen::Index k = 0; k < 3; ++k) {
      const float norm = n == Normalization::kL1 ? r.w.col(k).lpNorm<1>() : r.w.col(k).norm();
      EXPECT_NEAR(norm, 1.f, 1e-5f);
    }
    BatchNmfOptions raw = o;
    raw.normalize = Normalization::kNone;
    NmfResult u = fit_nmf(x, raw);
    EXPECT_LT((u.w * u.h - r.w * r.h).norm(), 1e-4f * x.norm());
  }
}

TEST(BatchNmf, WarmStartFromGivenFactorsContinuesWhereItStopped) {
  testdata::Planted p = testdata::planted(30, 4, 300, 61);
  p.x = (p.x + testdata::gaussian(30, 300, 0.05f, 63)).cwiseMax(0.f);
  BatchNmfOptions o = options(4);
  o.init = NmfInit::kRandom;
  o.max_iter = 2000;
  o.tol = 1e-7;
  NmfResult full = fit_nmf(p.x, o);
  ASSERT_TRUE(full.converged);
  // Given W only: H is solved against it, so the run starts at (or below) the earlier optimum,
  // far below where a fresh start begins.
  BatchNmfOptions g = o;
  g.init = NmfInit::kGiven;
  NmfResult warm = fit_nmf(p.x, g, &full.w, nullptr);
  EXPECT_LE(warm.objective.front(), full.objective.back() * (1 + 1e-3));
  EXPECT_LT(warm.objective.front(), 0.5 * full.objective.front());
  EXPECT_LE(warm.relative_error, full.relative_error + 1e-5);
  // Frozen W: only H moves.
  BatchNmfOptions frozen = g;
  frozen.update_w = false;
  frozen.normalize = Normalization::kNone;
  Eigen::MatrixXf w0 = testdata::uniform(30, 4, 62);
  NmfResult f = fit_nmf(p.x, frozen, &w0, nullptr);
  EXPECT_EQ(f.w, w0);
}

TEST(BatchNmf, RejectsBadInputNamingTheEntry) {
  Eigen::MatrixXf x = Eigen::MatrixXf::Ones(3, 4);
  x(1, 2) = -0.5f;
  BatchNmfOptions o = options(2);
  try {
    fit_nmf(x, o);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()),
              "X[2, 3] (row 2, column 3, 1-based) is negative (-0.500000)");
  }
  x(1, 2) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(fit_nmf(x, o), std::invalid_argument);
  o.rank = 0;
  EXPECT_THROW(fit_nmf(Eigen::MatrixXf::Ones(3, 4), o), std::invalid_argument);
  Eigen::MatrixXf wrong = Eigen::MatrixXf::Ones(2, 2);
  o.rank = 2;
  EXPECT_THROW(fit_nmf(Eigen::MatrixXf::Ones(3, 4), o, &wrong), std::invalid_argument);
}

TEST(BatchNmf, SolvesActivationsForAFixedDictionary) {
  testdata::Planted p = testdata::planted(40, 5, 100, 71);
  Eigen::MatrixXf h;
  solve_activations(p.x, p.w, h, 0.f, 0.f, 500, 1e-6, 2);
  EXPECT_LT((h - p.h).norm(), 1e-3f * p.h.norm());
}

}  // namespace
}  // namespace rtnmf::nmf
