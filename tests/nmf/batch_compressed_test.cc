// Compressed HALS (Compression::kOn / kAuto): planted factors recovered, final error no worse than
// the exact solver's, deterministic, exact objective non-increasing while polishing, and the
// automatic choice of path.
#include <gtest/gtest.h>

#include "engine/nmf/batch_nmf.h"
#include "engine/nmf/metrics.h"
#include "tests/nmf/nmf_test_data.h"

namespace rtnmf::nmf {
namespace {

BatchNmfOptions compressed(Eigen::Index k) {
  BatchNmfOptions o;
  o.rank = k;
  o.seed = 5;
  o.compress = Compression::kOn;
  return o;
}

Eigen::MatrixXf noisy(const testdata::Planted& p, float relative_sigma, std::uint64_t seed) {
  return (p.x + testdata::gaussian(p.x.rows(), p.x.cols(),
                                   relative_sigma * static_cast<float>(p.x.mean()), seed))
      .cwiseMax(0.f);
}

TEST(BatchNmfCompressed, RecoversPlantedFactorsWithoutNoise) {
  testdata::Planted p = testdata::planted(200, 8, 1000, 101);
  BatchNmfOptions o = compressed(8);
  o.max_iter = 3000;
  o.tol = 1e-10;
  NmfResult r = fit_nmf(p.x, o);
  ASSERT_GT(r.compressed_iterations, 0);
  EXPECT_GE(match_factors(p.w, r.w).min_similarity, 0.999);
  EXPECT_GE(match_factors(p.h.transpose(), r.h.transpose()).min_similarity, 0.999);
  EXPECT_LT(r.relative_error, 1e-3);
}

TEST(BatchNmfCompressed, RecoversPlantedFactorsUnderNoise) {
  testdata::Planted p = testdata::planted(300, 10, 1500, 111);
  Eigen::MatrixXf x = noisy(p, 0.1f, 112);
  BatchNmfOptions o = compressed(10);
  o.max_iter = 1000;
  o.tol = 1e-6;
  NmfResult r = fit_nmf(x, o);
  ASSERT_GT(r.compressed_iterations, 0);
  EXPECT_GE(match_factors(p.w, r.w).min_similarity, 0.95);
  EXPECT_GE(match_factors(p.h.transpose(), r.h.transpose()).min_similarity, 0.95);
}

// The compressed phase only finds the starting point; the exact iterations after it answer to
// the same stopping rule as the exact solver, so the error must come out as low.
TEST(BatchNmfCompressed, EndsAtAnErrorNoWorseThanTheExactSolver) {
  testdata::Planted p = testdata::planted(400, 12, 2000, 121);
  const Eigen::MatrixXf wide = noisy(p, 0.2f, 122);
  const Eigen::MatrixXf tall = wide.transpose();  // the range finder's other branch
  for (const Eigen::MatrixXf* x : {&wide, &tall}) {
    const std::string what = x == &wide ? "wide" : "tall";
    BatchNmfOptions on = compressed(12);
    BatchNmfOptions off = on;
    off.compress = Compression::kOff;
    NmfResult a = fit_nmf(*x, on), b = fit_nmf(*x, off);
    ASSERT_GT(a.compressed_iterations, 0) << what;
    ASSERT_EQ(b.compressed_iterations, 0) << what;
    EXPECT_TRUE(a.converged) << what;
    EXPECT_LE(a.relative_error, b.relative_error * (1 + 1e-3)) << what;
    // And the reported error is the real ‖X − W H‖ / ‖X‖, not the compressed problem's.
    EXPECT_NEAR(a.relative_error, (*x - a.w * a.h).norm() / x->norm(), 1e-4) << what;
  }
}

TEST(BatchNmfCompressed, IsDeterministicForASeedAndThreadCount) {
  testdata::Planted p = testdata::planted(150, 6, 800, 131);
  Eigen::MatrixXf x = noisy(p, 0.1f, 132);
  for (NmfInit init : {NmfInit::kNndsvda, NmfInit::kRandom}) {
    BatchNmfOptions o = compressed(6);
    o.init = init;
    o.threads = 2;
    o.max_iter = 40;
    NmfResult a = fit_nmf(x, o), b = fit_nmf(x, o);
    ASSERT_GT(a.compressed_iterations, 0) << to_string(init);
    EXPECT_EQ(a.w, b.w) << to_string(init);
    EXPECT_EQ(a.h, b.h) << to_string(init);
    EXPECT_EQ(a.objective, b.objective) << to_string(init);
    o.seed = 6;
    NmfResult c = fit_nmf(x, o);
    EXPECT_NE(a.w, c.w) << to_string(init);
  }
}

TEST(BatchNmfCompressed, ObjectivesAreNonIncreasingInBothPhases) {
  testdata::Planted p = testdata::planted(200, 8, 1000, 141);
  Eigen::MatrixXf x = noisy(p, 0.3f, 142);
  BatchNmfOptions o = compressed(8);
  o.l1_h = 0.01f;
  o.l2_w = 0.02f;
  // A loose compressed stop would hand the polish a far-off point; here the compressed phase
  // runs a fixed count (tol 0) and the exact iterations must keep going down from there.
  o.tol = 0;
  o.max_iter = 25;
  NmfResult r = fit_nmf(x, o);
  ASSERT_EQ(r.compressed_iterations, 25);
  ASSERT_EQ(r.iterations, 25);
  ASSERT_EQ(r.compressed_objective.size(), 25u);
  // objective: initial point, end of the compressed phase, then one per exact iteration.
  ASSERT_EQ(r.objective.size(), 27u);
  for (size_t i = 1; i < r.compressed_objective.size(); ++i)
    EXPECT_LE(r.compressed_objective[i], r.compressed_objective[i - 1] * (1 + 1e-6))
        << "compressed iteration " << i;
  EXPECT_LT(r.objective[1], r.objective[0]);
  for (size_t i = 2; i < r.objective.size(); ++i)
    EXPECT_LE(r.objective[i], r.objective[i - 1] * (1 + 1e-6)) << "exact iteration " << i - 1;
  EXPECT_LT(r.objective.back(), r.objective[1]);
  // The exact objective is the real one: ½‖X − W H‖² + penalties at the end (unnormalised).
  BatchNmfOptions raw = o;
  raw.normalize = Normalization::kNone;
  NmfResult u = fit_nmf(x, raw);
  const double data = 0.5 * (x - u.w * u.h).cast<double>().squaredNorm();
  const double pen = o.l1_h * u.h.cast<double>().sum() +
                     0.5 * o.l2_w * u.w.cast<double>().squaredNorm();
  EXPECT_NEAR(u.objective.back(), data + pen, 1e-3 * (data + pen));
}

// K > 40 takes the L1-tiled HALS sweeps (hals_rows_tile) with a row tail (130 and 1000 are not
// multiples of the 64-row tile), in both phases and in the exact solver.
TEST(BatchNmfCompressed, RecoversPlantedFactorsAtAWideRank) {
  testdata::Planted p = testdata::planted(130, 44, 600, 171);
  for (Compression c : {Compression::kOn, Compression::kOff}) {
    BatchNmfOptions o = compressed(44);
    o.compress = c;
    o.max_iter = 1000;
    o.tol = 1e-8;
    NmfResult r = fit_nmf(p.x, o);
    EXPECT_GE(match_factors(p.w, r.w).min_similarity, 0.999) << to_string(c);
    EXPECT_GE(match_factors(p.h.transpose(), r.h.transpose()).min_similarity, 0.999)
        << to_string(c);
  }
  // Monotone on noisy data (noise-free, the objective's expansion ‖X‖² − 2⟨X, WH⟩ + ‖WH‖²
  // cancels to rounding near 0).
  Eigen::MatrixXf x = noisy(p, 0.2f, 172);
  for (Compression c : {Compression::kOn, Compression::kOff}) {
    BatchNmfOptions o = compressed(44);
    o.compress = c;
    o.tol = 0;
    o.max_iter = 30;
    NmfResult r = fit_nmf(x, o);
    for (size_t i = 2; i < r.objective.size(); ++i)
      EXPECT_LE(r.objective[i], r.objective[i - 1] * (1 + 1e-6)) << to_string(c) << " " << i;
    for (size_t i = 1; i < r.compressed_objective.size(); ++i)
      EXPECT_LE(r.compressed_objective[i], r.compressed_objective[i - 1] * (1 + 1e-6)) << i;
  }
}

TEST(BatchNmfCompressed, AutomaticChoiceCompressesOnlyLargeProblemsWithALowRank) {
  BatchNmfOptions o;
  o.compress = Compression::kAuto;
  o.rank = 100;
  EXPECT_TRUE(uses_compression(65536, 2000, o));   // compare.py's large case
  EXPECT_FALSE(uses_compression(3000, 3000, o));   // too small to pay
  EXPECT_FALSE(uses_compression(65536, 500, o));   // rank not ≪ min(M, N)
  o.rank = 20;
  EXPECT_FALSE(uses_compression(512, 20000, o));   // short X, thin rank: fused exact path
  o.rank = 6;
  EXPECT_FALSE(uses_compression(64, 200000, o));   // ditto
  EXPECT_TRUE(uses_compression(20000, 4096, o));
  o.loss = NmfLoss::kKullbackLeibler;
  EXPECT_FALSE(uses_compression(20000, 4096, o));  // Frobenius only
  o.loss = NmfLoss::kFrobenius;
  o.update_w = false;
  EXPECT_FALSE(uses_compression(20000, 4096, o));  // a frozen factor
  o.update_w = true;
  o.init = NmfInit::kGiven;
  EXPECT_FALSE(uses_compression(20000, 4096, o));  // a warm start
  o.init = NmfInit::kRandom;
  EXPECT_FALSE(uses_compression(20000, 4096, o));  // the range would cost extra passes
  o.init = NmfInit::kNndsvd;
  EXPECT_TRUE(uses_compression(20000, 4096, o));
  o.compress = Compression::kOff;
  EXPECT_FALSE(uses_compression(65536, 2000, o));
  o.compress = Compression::kOn;
  EXPECT_TRUE(uses_compression(40, 300, o));
  // fit_nmf follows it: a small problem runs exact unless asked.
  testdata::Planted p = testdata::planted(40, 4, 300, 151);
  BatchNmfOptions small;
  small.rank = 4;
  EXPECT_EQ(fit_nmf(p.x, small).compressed_iterations, 0);
  small.compress = Compression::kOn;
  EXPECT_GT(fit_nmf(p.x, small).compressed_iterations, 0);
}

TEST(BatchNmfCompressed, RejectsCompressionWhereItCannotRun) {
  BatchNmfOptions o = compressed(3);
  o.loss = NmfLoss::kKullbackLeibler;
  Eigen::MatrixXf x = testdata::uniform(20, 50, 161);
  try {
    fit_nmf(x, o);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "compress=on needs the Frobenius loss (got kl)");
  }
  o.loss = NmfLoss::kFrobenius;
  o.update_h = false;
  Eigen::MatrixXf h0 = testdata::uniform(3, 50, 162);
  EXPECT_THROW(fit_nmf(x, o, nullptr, &h0), std::invalid_argument);
  EXPECT_EQ(parse_compression("auto"), Compression::kAuto);
  EXPECT_EQ(to_string(parse_compression("on")), "on");
  EXPECT_THROW(parse_compression("yes"), std::invalid_argument);
}

}  // namespace
}  // namespace rtnmf::nmf
