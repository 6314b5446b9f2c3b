// Synergy numerics without the runtime: VAF rank rule, stable order, warm start alignment, and
// online tracking of a synergy switch (with forgetting) versus a frozen model.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/dsp/emg_conditioner.h"
#include "engine/nmf/metrics.h"
#include "engine/nmf/nnls.h"
#include "engine/sim/emg_sim.h"
#include "plugins/emg/synergy_model.h"
#include "tests/emg/emg_test_util.h"
#include "tests/support/alloc_counter.h"

namespace rtnmf::emg {
namespace {

using rtnmf::test::condition;

sim::EmgSimulation simulate(int channels, int k, double seconds, std::uint64_t seed,
                            double switch_at = -1) {
  sim::EmgSimConfig c;
  c.channels = channels;
  c.synergies = k;
  c.duration_s = seconds;
  c.seed = seed;
  c.switch_at_s = switch_at;
  return sim::simulate_emg(c);
}

TEST(SynergyCalibration, VafRulePicksThePlantedRank) {
  // Default options, the stage's default 10 s calibration window, two seeds per planted rank.
  // The simulated envelopes are field-typical: not exactly rank K (the planted rank explains
  // 94-97 %), and for K >= 4 rank K - 1 already passes 90 %, so the threshold alone would pick
  // too few; the gain criterion (the next rank adds < 1.5 %) picks K.
  int threshold_alone_wrong = 0;
  for (int planted : {2, 3, 4}) {
    for (std::uint64_t seed : {20u + planted, 120u + planted}) {
      sim::EmgSimulation s = simulate(16, planted, 12, seed);
      Eigen::MatrixXf env = condition(s.emg, 2000).rightCols(1000);
      Calibration c = calibrate_synergies(env, CalibrationOptions{});
      std::string vafs;
      for (double v : c.vaf_by_rank) vafs += std::to_string(v) + " ";
      EXPECT_EQ(c.rank, planted) << "seed " << seed << ", VAF by rank: " << vafs;
      EXPECT_GE(c.vaf, 0.9) << vafs;
      EXPECT_LT(c.vaf, 0.985) << "the simulator should not be exactly low-rank: " << vafs;
      EXPECT_GE(nmf::match_factors(s.synergies, c.synergies).mean_similarity, 0.95) << vafs;
      ASSERT_EQ(c.cophenetic_by_rank.size(), c.vaf_by_rank.size());
      if (c.rank_by_threshold != planted) ++threshold_alone_wrong;
    }
  }
  EXPECT_GT(threshold_alone_wrong, 0) << "the threshold alone is right everywhere: the gain "
                                         "criterion is untested";
}

TEST(SynergyCalibration, LongWindowsAreRankedOnAStridedSubsetAndFittedWhole) {
  // 40 s at 100 Hz = 3800 samples: select_rank sees every 2nd sample (its consensus matrix is
  // samples²); the final fit, its activations and VAF cover the whole window.
  sim::EmgSimulation s = simulate(16, 4, 40, 24);
  Eigen::MatrixXf env = condition(s.emg, 2000).rightCols(3800);
  Calibration c = calibrate_synergies(env, CalibrationOptions{});
  EXPECT_EQ(c.rank, 4);
  EXPECT_EQ(c.activations.cols(), 3800);
  EXPECT_NEAR(c.vaf, nmf::vaf(env, c.synergies, c.activations), 1e-6);
  EXPECT_GE(nmf::match_factors(s.synergies, c.synergies).mean_similarity, 0.95);
}

TEST(SynergyCalibration, RankRuleNeedsTheThresholdAndALevelledCurve) {
  const std::vector<double> curve = {0.70, 0.85, 0.92, 0.96, 0.97, 0.975};
  EXPECT_EQ(choose_rank(curve, 0.9, 0.015, 8), 4);  // 3 passes 90 % but 4 still adds 4 %
  EXPECT_EQ(choose_rank(curve, 0.9, 0.0, 8), 3);    // threshold alone
  EXPECT_EQ(choose_rank(curve, 0.965, 0.015, 8), 5);
  EXPECT_EQ(choose_rank(curve, 0.9, 0.015, 3), 3);   // capped: the largest K allowed
  EXPECT_EQ(choose_rank(curve, 0.99, 0.015, 8), 6);  // never reached: the largest K tried
  EXPECT_EQ(choose_rank({0.95}, 0.9, 0.015, 8), 1);  // no next rank to compare with
  EXPECT_EQ(choose_rank({}, 0.9, 0.015, 8), 0);
}

TEST(SynergyCalibration, FixedRankAndCanonicalOrder) {
  sim::EmgSimulation s = simulate(12, 3, 30, 4);
  Eigen::MatrixXf env = condition(s.emg, 2000).rightCols(2800);
  CalibrationOptions o;
  o.rank = 3;
  Calibration c = calibrate_synergies(env, o);
  ASSERT_EQ(c.synergies.cols(), 3);
  ASSERT_EQ(c.activations.rows(), 3);
  Eigen::Index p0, p1, p2;
  c.synergies.col(0).maxCoeff(&p0);
  c.synergies.col(1).maxCoeff(&p1);
  c.synergies.col(2).maxCoeff(&p2);
  EXPECT_LE(p0, p1);
  EXPECT_LE(p1, p2);
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(c.synergies.col(j).norm(), 1.0f, 1e-4f);
  // W H still fits after ordering (rows of H follow the columns of W).
  EXPECT_GT(nmf::vaf(env, c.synergies, c.activations), 0.9);
}

TEST(SynergyCalibration, WarmStartKeepsTheOldSessionsOrder) {
  // The old session's synergies come in an order of their own (here: the planted synergies
  // scrambled). A warm-started calibration of a new recording must come out in that order and
  // report its matched cosine; a cold calibration comes out in canonical order instead.
  sim::EmgSimulation day2 = simulate(16, 4, 30, 9);
  Eigen::MatrixXf env2 = condition(day2.emg, 2000).rightCols(2800);
  Eigen::MatrixXf old(16, 4);
  const int perm[4] = {2, 0, 3, 1};
  for (int j = 0; j < 4; ++j) old.col(j) = day2.synergies.col(perm[j]);
  CalibrationOptions o;
  o.rank = 4;
  CalibrationOptions warm;
  warm.previous = &old;  // rank 0: K comes from the old synergies
  Calibration cal2 = calibrate_synergies(env2, warm);
  ASSERT_EQ(cal2.rank, 4);
  ASSERT_EQ(cal2.matched_cosine.size(), 4u);
  for (int j = 0; j < 4; ++j) {
    const float cos =
        cal2.synergies.col(j).dot(old.col(j)) / (cal2.synergies.col(j).norm() * old.col(j).norm());
    EXPECT_GT(cos, 0.95) << "component " << j;
    EXPECT_NEAR(cal2.matched_cosine[j], cos, 1e-4);
  }
  EXPECT_GT(cal2.mean_matched_cosine, 0.95);
  Calibration cold = calibrate_synergies(env2, o);
  int same = 0;
  for (int j = 0; j < 4; ++j) {
    const float cos =
        cold.synergies.col(j).dot(old.col(j)) / (cold.synergies.col(j).norm() * old.col(j).norm());
    if (cos > 0.95) ++same;
  }
  EXPECT_LT(same, 4);
}

// Streams envelopes through NNLS + the online updater as the stage's fast and slow paths would:
// calibration on the first `cal` samples, then per sample activations with the current W and
// an update every `every` samples (frozen: never).
Eigen::MatrixXf stream(const Eigen::MatrixXf& env, int cal, int k, double forgetting, bool frozen,
                       int every) {
  CalibrationOptions o;
  o.rank = k;
  Calibration c = calibrate_synergies(env.leftCols(cal), o);
  Eigen::MatrixXf w = c.synergies;
  OnlineSynergyUpdater up;
  const Eigen::MatrixXf xc = env.leftCols(cal);
  up.init(w, forgetting, nmf::Normalization::kL2, &xc, &c.activations);
  nmf::NnlsOptions no;
  no.method = nmf::NnlsMethod::kBpp;
  nmf::NnlsSolver solver(k, no);
  solver.set_dictionary(w);
  Eigen::VectorXf h = Eigen::VectorXf::Zero(k);
  for (Eigen::Index t = cal; t < env.cols(); ++t) {
    solver.solve(env.col(t), h, true);
    if (frozen) continue;
    up.accumulate(env.col(t).data(), h.data());
    if ((t + 1) % every == 0) {
      up.update(w, 1);
      solver.set_dictionary(w);
    }
  }
  return w;
}

TEST(OnlineSynergies, ASwitchMidStreamIsTrackedWithForgettingAndIgnoredWhenFrozen) {
  // 90 s at 2 kHz: synergy 0 is replaced by a new one at 45 s.
  sim::EmgSimulation s = simulate(16, 3, 90, 31, 45.0);
  ASSERT_GT(s.synergies_after.size(), 0);
  const float old_new = s.synergies.col(0).dot(s.synergies_after.col(0));
  ASSERT_LT(old_new, 0.7f);
  Eigen::MatrixXf env = condition(s.emg, 2000);
  const int cal = 2000;  // 20 s at 100 Hz
  Eigen::MatrixXf tracked = stream(env, cal, 3, 0.995, false, 5);
  Eigen::MatrixXf frozen = stream(env, cal, 3, 0.995, true, 5);
  const nmf::FactorMatch after_tracked = nmf::match_factors(s.synergies_after, tracked);
  const nmf::FactorMatch after_frozen = nmf::match_factors(s.synergies_after, frozen);
  const nmf::FactorMatch before_frozen = nmf::match_factors(s.synergies, frozen);
  EXPECT_GT(after_tracked.min_similarity, 0.9);
  EXPECT_GT(before_frozen.min_similarity, 0.95);
  // Frozen keeps the old synergy 0, so the new one is matched poorly.
  EXPECT_LT(after_frozen.min_similarity, 0.85);
  // And with forgetting 1 (no forgetting) tracking is much slower than with 0.995.
  Eigen::MatrixXf sluggish = stream(env, cal, 3, 1.0, false, 5);
  EXPECT_LT(nmf::match_factors(s.synergies_after, sluggish).min_similarity,
            after_tracked.min_similarity);
}

TEST(OnlineSynergies, UpdateAndAccumulateDoNotAllocate) {
  Eigen::MatrixXf w = Eigen::MatrixXf::Random(8, 3).cwiseAbs();
  OnlineSynergyUpdater up;
  up.init(w, 0.99, nmf::Normalization::kL2);
  Eigen::VectorXf x = Eigen::VectorXf::Ones(8), h = Eigen::VectorXf::Ones(3);
  {
    test::AllocationGuard guard;
    for (int i = 0; i < 100; ++i) {
      up.accumulate(x.data(), h.data());
      up.update(w, 2);
    }
    if (test::allocation_counting_available()) {
      EXPECT_EQ(guard.count(), 0u);
    }
  }
  EXPECT_EQ(up.samples(), 100u);
  EXPECT_GE(w.minCoeff(), 0.0f);
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(w.col(j).norm(), 1.0f, 1e-5f);
}

}  // namespace
}  // namespace rtnmf::emg
