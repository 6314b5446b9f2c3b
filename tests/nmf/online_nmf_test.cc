// Online NMF: agreement with batch NMF, tracking with forgetting, frozen mode, fast path.
#include "engine/nmf/online_nmf.h"

#include <gtest/gtest.h>

#include "engine/nmf/batch_nmf.h"
#include "engine/nmf/metrics.h"
#include "tests/nmf/nmf_test_data.h"
#include "tests/support/alloc_counter.h"

namespace rtnmf::nmf {
namespace {

// EMG-like synergies: 16 muscles, 4 synergies with private muscles, sparse activations.
testdata::Planted synergy_stream(Eigen::Index samples, std::uint64_t seed) {
  testdata::Planted p = testdata::planted(16, 4, samples, seed);
  for (Eigen::Index k = 0; k < 4; ++k) p.w.col(k).normalize();
  p.x = (p.w * p.h + testdata::gaussian(16, samples, 0.01f, seed + 7)).cwiseMax(0.f);
  return p;
}

OnlineNmfOptions online_options(float forgetting) {
  OnlineNmfOptions o;
  o.forgetting = forgetting;
  o.activations.method = NnlsMethod::kBpp;
  return o;
}

TEST(OnlineNmf, ApproachesTheBatchSolutionOnStationaryData) {
  testdata::Planted p = synergy_stream(4000, 101);
  BatchNmfOptions bo;
  bo.rank = 4;
  bo.max_iter = 500;
  bo.tol = 1e-7;
  NmfResult batch = fit_nmf(p.x, bo);

  OnlineNmf online(16, 4, online_options(1.f));
  online.initialize_random(5);
  Eigen::VectorXf h = Eigen::VectorXf::Zero(4);
  for (Eigen::Index t = 0; t < p.x.cols(); ++t) {
    h.setZero();
    online.partial_fit(p.x.col(t), h);
  }
  FactorMatch m = match_factors(batch.w, online.dictionary());
  EXPECT_GE(m.min_similarity, 0.98);
  Eigen::MatrixXf h_all;
  solve_activations(p.x, online.dictionary(), h_all, 0.f, 0.f, 200, 1e-6);
  EXPECT_LE(relative_error(p.x, online.dictionary(), h_all), batch.relative_error * 1.05);
  EXPECT_EQ(online.samples_seen(), 4000);
}

struct Switch {
  Eigen::MatrixXf x;
  Eigen::MatrixXf w_before, w_after;
};

// Synergy 2 is replaced by a different muscle pattern half-way through the stream.
Switch switching_stream() {
  testdata::Planted first = synergy_stream(3000, 201);
  testdata::Planted second = synergy_stream(3000, 202);
  Switch s;
  s.w_before = first.w;
  s.w_after = first.w;
  Eigen::VectorXf changed = Eigen::VectorXf::Zero(16);
  changed.segment(8, 8) = testdata::uniform(8, 1, 203).col(0);
  s.w_after.col(2) = changed.normalized();
  s.x.resize(16, 6000);
  s.x.leftCols(3000) = first.x;
  s.x.rightCols(3000) =
      (s.w_after * second.h + testdata::gaussian(16, 3000, 0.01f, 204)).cwiseMax(0.f);
  return s;
}

double similarity_to_changed_synergy(const Eigen::MatrixXf& w, const Switch& s) {
  Eigen::MatrixXd sim = cosine_similarity(s.w_after.col(2), w);
  return sim.maxCoeff();
}

TEST(OnlineNmf, WithForgettingTracksASynergyThatSwitchesMidStream) {
  Switch s = switching_stream();
  auto run = [&](float forgetting, bool freeze_at_switch) {
    OnlineNmf online(16, 4, online_options(forgetting));
    online.initialize_random(9);
    Eigen::VectorXf h = Eigen::VectorXf::Zero(4);
    for (Eigen::Index t = 0; t < s.x.cols(); ++t) {
      if (t == 3000 && freeze_at_switch) online.set_frozen(true);
      online.partial_fit(s.x.col(t), h);
    }
    return online;
  };
  OnlineNmf tracking = run(0.995f, false);
  OnlineNmf no_forgetting = run(1.f, false);
  OnlineNmf frozen = run(0.995f, true);
  EXPECT_GE(similarity_to_changed_synergy(tracking.dictionary(), s), 0.98);
  EXPECT_GE(match_factors(s.w_after, tracking.dictionary()).min_similarity, 0.95);
  // Without forgetting the old synergy still weighs half of the statistics.
  EXPECT_LT(similarity_to_changed_synergy(no_forgetting.dictionary(), s),
            similarity_to_changed_synergy(tracking.dictionary(), s) - 0.02);
  // Frozen at the switch: the dictionary learnt before the switch stays as it was.
  EXPECT_GE(match_factors(s.w_before, frozen.dictionary()).min_similarity, 0.95);
  EXPECT_LT(similarity_to_changed_synergy(frozen.dictionary(), s), 0.9);
}

TEST(OnlineNmf, FrozenModeNeverChangesTheDictionary) {
  testdata::Planted p = synergy_stream(500, 301);
  OnlineNmf online(16, 4, online_options(0.99f));
  online.initialize_random(1);
  online.set_frozen(true);
  const Eigen::MatrixXf w0 = online.dictionary();
  Eigen::VectorXf h = Eigen::VectorXf::Zero(4);
  for (Eigen::Index t = 0; t < p.x.cols(); ++t) online.partial_fit(p.x.col(t), h);
  EXPECT_EQ(online.dictionary(), w0);
  EXPECT_GT(online.stats_a().trace(), 0.f);  // statistics keep accumulating
}

TEST(OnlineNmf, FastPathAndModelSwapDoNotAllocate) {
  if (!test::allocation_counting_available()) GTEST_SKIP() << "allocation counting unavailable";
  testdata::Planted p = synergy_stream(200, 401);
  OnlineNmf fast(16, 4, online_options(0.99f)), slow(16, 4, online_options(0.99f));
  fast.initialize_random(2);
  slow.initialize_random(2);
  Eigen::VectorXf h = Eigen::VectorXf::Zero(4);
  for (Eigen::Index t = 0; t < 100; ++t) {
    fast.activations(p.x.col(t), h);
    slow.accumulate(p.x.col(t), h);
  }
  slow.update_dictionary();
  const Eigen::MatrixXf w_new = slow.dictionary(), g_new = slow.gram();
  test::AllocationGuard guard;
  for (Eigen::Index t = 100; t < 200; ++t) {
    fast.activations(p.x.col(t), h);
    slow.accumulate(p.x.col(t), h);
    if (t == 150) fast.set_model(w_new, g_new);
  }
  EXPECT_EQ(guard.count(), 0u);
  EXPECT_EQ(fast.dictionary(), w_new);
}

TEST(OnlineNmf, AddsAndRetiresComponentsKeepingTheOthersStatistics) {
  testdata::Planted p = synergy_stream(300, 501);
  OnlineNmf online(16, 3, online_options(1.f));
  online.initialize_random(3);
  Eigen::VectorXf h = Eigen::VectorXf::Zero(3);
  for (Eigen::Index t = 0; t < 300; ++t) online.partial_fit(p.x.col(t), h);
  const Eigen::MatrixXf a_before = online.stats_a();
  const Eigen::MatrixXf w_before = online.dictionary();
  const Eigen::Index k = online.add_component(p.w.col(3));
  EXPECT_EQ(k, 3);
  EXPECT_EQ(online.rank(), 4);
  EXPECT_EQ(online.stats_a().topLeftCorner(3, 3), a_before);
  EXPECT_EQ(online.stats_a().row(3).squaredNorm(), 0.f);
  Eigen::VectorXf h4 = Eigen::VectorXf::Zero(4);
  online.partial_fit(p.x.col(0), h4);
  online.retire_component(1);
  EXPECT_EQ(online.rank(), 3);
  EXPECT_EQ(online.stats_a().rows(), 3);
  EXPECT_NEAR(online.component_energy()[0], online.stats_a()(0, 0), 0.f);
  EXPECT_THROW(online.retire_component(7), std::invalid_argument);
  (void)w_before;
}

TEST(OnlineNmf, MiniBatchesGiveTheSameActivationsAsSingleSamples) {
  testdata::Planted p = synergy_stream(256, 601);
  OnlineNmf batch(16, 4, online_options(1.f)), single(16, 4, online_options(1.f));
  batch.initialize_random(4);
  single.initialize_random(4);
  Eigen::MatrixXf hb = Eigen::MatrixXf::Zero(4, 256), hs = Eigen::MatrixXf::Zero(4, 256);
  batch.partial_fit_batch(p.x, hb);
  for (Eigen::Index t = 0; t < 256; ++t) single.activations(p.x.col(t), hs.col(t));
  EXPECT_LT((hb - hs).norm(), 1e-4f * hs.norm());
  EXPECT_EQ(batch.samples_seen(), 256);
  // The dictionary moved towards the data: the mini-batch fit explains it better than before.
  Eigen::MatrixXf h_after;
  solve_activations(p.x, batch.dictionary(), h_after);
  Eigen::MatrixXf h_before;
  solve_activations(p.x, single.dictionary(), h_before);
  EXPECT_LT(relative_error(p.x, batch.dictionary(), h_after),
            relative_error(p.x, single.dictionary(), h_before));
}

TEST(OnlineNmf, StartsFromABlockOfDataAndStreamsOn) {
  testdata::Planted p = synergy_stream(3000, 701);
  OnlineNmf online(16, 4, online_options(1.f));
  const double start_err = online.initialize_from_data(p.x.leftCols(200), 30, 3);
  EXPECT_EQ(online.samples_seen(), 200);
  EXPECT_LT(start_err, 0.1);
  // Unit columns, and the statistics are those of the start block: A = H Hᵀ is symmetric.
  EXPECT_LT((online.dictionary().colwise().norm().array() - 1.f).abs().maxCoeff(), 1e-4f);
  EXPECT_LT((online.stats_a() - online.stats_a().transpose()).norm(),
            1e-4f * online.stats_a().norm());
  EXPECT_GT(online.stats_a().trace(), 0.f);
  // Same seed, same start.
  OnlineNmf again(16, 4, online_options(1.f));
  again.initialize_from_data(p.x.leftCols(200), 30, 3);
  EXPECT_EQ(again.dictionary(), online.dictionary());

  Eigen::MatrixXf h = Eigen::MatrixXf::Zero(4, 3000);
  for (Eigen::Index j = 200; j < 3000; j += 256) {
    const Eigen::Index n = std::min<Eigen::Index>(256, 3000 - j);
    online.partial_fit_batch(p.x.middleCols(j, n), h.middleCols(j, n));
  }
  EXPECT_EQ(online.samples_seen(), 3000);
  EXPECT_GE(match_factors(p.w, online.dictionary()).min_similarity, 0.98);
  EXPECT_THROW(online.initialize_from_data(Eigen::MatrixXf::Ones(15, 10)), std::invalid_argument);
  EXPECT_THROW(online.initialize_from_data(p.x.leftCols(0)), std::invalid_argument);
}

}  // namespace
}  // namespace rtnmf::nmf
