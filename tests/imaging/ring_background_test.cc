// CNMF-E ring background: the ring predicts a structured, high-rank background from the pixels
// around each pixel; online CNMF with it recovers a one-photon-like movie's traces far better than
// with the low-rank background alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <random>

#include "engine/nmf/cnmf.h"
#include "engine/nmf/cnmf_driver.h"
#include "engine/nmf/ring_background.h"
#include "engine/sim/calcium.h"
#include "engine/sim/score_imaging.h"
#include "tests/support/alloc_counter.h"
#include "tests/support/calcium_1p.h"

namespace rtnmf::nmf {
namespace {

TEST(RingBackground, OffsetsLieOnTheRing) {
  const auto offs = ring_offsets(10, 24);
  EXPECT_EQ(offs.size(), 24u);
  for (const auto& o : offs) {
    const double r = std::hypot(o.first, o.second);
    EXPECT_NEAR(r, 10.0, 0.75);
  }
  EXPECT_EQ(default_ring_radius(7.0f), 12);
}

TEST(RingBackground, PredictsAStructuredHighRankBackgroundFromTheRing) {
  // 16 local components (blobs of 12 px) with independent fluctuations: rank 16, smooth.
  sim::CalciumSimOptions so;
  so.height = 64;
  so.width = 64;
  so.frames = 400;
  so.neurons = 1;
  so.background = 200;
  so.background_components = 16;
  so.background_scale_px = 12;
  so.neuropil = 0.5f;
  sim::CalciumSimulator simulator(so);
  const sim::CalciumTruth& tr = simulator.truth();
  const Eigen::MatrixXf bg = tr.bg_spatial * tr.bg_temporal;  // P x T, noise-free
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0, 2.0f);
  Eigen::MatrixXf x = bg;
  for (Eigen::Index i = 0; i < x.size(); ++i) x(i) += nd(rng);
  const RingBackground rb = fit_ring_background(x.leftCols(300), 64, 64, 9);
  // Held-out frames: the ring predicts each pixel's fluctuation from its ring.
  Eigen::VectorXf out(64 * 64), scratch(64 * 64);
  double err = 0, var = 0;
  const Eigen::VectorXf mean = bg.rowwise().mean();
  for (Eigen::Index t = 300; t < 400; ++t) {
    Eigen::VectorXf xt = x.col(t);
    ring_background_frame(rb, xt.data(), out.data(), scratch.data());
    err += (out - bg.col(t)).squaredNorm();
    var += (bg.col(t) - mean).squaredNorm();
  }
  std::printf("ring background: unexplained fluctuation %.3f\n", err / var);
  EXPECT_LT(err / var, 0.15);
  // Each row of W weighs only pixels at the ring radius.
  for (int k = 0; k < rb.w.outerSize(); k += 97) {
    const int py = k / 64, px = k % 64;
    for (Eigen::SparseMatrix<float, Eigen::RowMajor>::InnerIterator it(rb.w, k); it; ++it) {
      const int qy = static_cast<int>(it.col()) / 64, qx = static_cast<int>(it.col()) % 64;
      EXPECT_NEAR(std::hypot(qy - py, qx - px), 9.0, 0.75);
    }
  }
}

struct OnePhotonOutcome {
  sim::ImagingScore score;
  int k = 0;
};

OnePhotonOutcome run_one_photon(bool ring, std::uint64_t seed) {
  sim::CalciumSimOptions so;
  so.height = 96;
  so.width = 96;
  so.frames = 900;
  so.neurons = 20;
  so.seed = seed;
  so = sim::one_photon_options(so);
  sim::CalciumSimulator simulator(so);
  const CnmfOptions o = rtnmf::test::calcium_1p_options(so.height, so.width, ring);
  CnmfRunOptions ro;
  CnmfRunResult r = run_cnmf_online([&](std::uint32_t t, float* out) { simulator.render(t, out); },
                                    so.frames, o, ro);
  const Eigen::Index T = so.frames - ro.init_frames;
  OnePhotonOutcome out;
  out.k = r.model.k();
  out.score = sim::score_imaging(simulator.truth().footprints,
                                 simulator.truth().traces.rightCols(T),
                                 simulator.truth().spikes.rightCols(T), r.model.footprints,
                                 r.denoised.rightCols(T), r.spikes.rightCols(T));
  return out;
}

TEST(RingBackground, OnePhotonTracesAreFarBetterWithTheRingThanWithTheLowRankBackground) {
  const OnePhotonOutcome with = run_one_photon(true, 4);
  const OnePhotonOutcome without = run_one_photon(false, 4);
  for (const auto* o : {&with, &without}) {
    std::printf("[1p %s] K %d F1 %.3f precision %.3f recall %.3f cosine %.3f trace corr %.3f\n",
                o == &with ? "ring" : "low-rank", o->k, o->score.f1, o->score.precision,
                o->score.recall, o->score.median_cosine, o->score.median_trace_corr);
  }
  // Measured at the time of writing (ring radius 1.75 soma radii): ring F1 0.974, cosine 0.992,
  // trace correlation 0.979; low-rank F1 0.757, cosine 0.953, trace correlation 0.629. (With the
  // ring at CNMF-E's 1.5 diameters the ring's trace correlation was 0.882.)
  EXPECT_GE(with.score.f1, 0.9) << with.score.to_json();
  EXPECT_GE(with.score.median_trace_corr, 0.95) << with.score.to_json();
  EXPECT_GE(with.score.median_cosine, 0.95) << with.score.to_json();
  // Without the ring the structured background leaks into the traces.
  EXPECT_GT(with.score.median_trace_corr, without.score.median_trace_corr + 0.1);
  EXPECT_GT(with.score.median_cosine, without.score.median_cosine);
  EXPECT_GT(with.score.f1, without.score.f1 + 0.05);
}

// End to end on one-photon movies with the calcium-1p settings, over four seeds (about 2 s each).
// Measured at the time of writing (seeds 1-4): F1 1.000 / 0.950 / 1.000 / 0.974, footprint cosine
// 0.995 / 0.994 / 0.993 / 0.992, median trace correlation 0.972 / 0.964 / 0.959 / 0.979 (mean F1
// 0.981, cosine 0.994, correlation 0.968): the targets (F1 >= 0.9, trace correlation
// >= 0.95, cosine >= 0.9) on every seed. With the ring at CNMF-E's 1.5 soma diameters (21 px
// here instead of 12) the correlations were 0.923 / 0.960 / 0.917 / 0.882: activity of neurons
// not (yet) in the model reached the traces of neighbours up to two ring radii away through the
// ring-filtered footprints, and with the found footprints and the simulator's true background
// the traces correlate 0.998, so the background model was the limit, not the footprints. Before
// the initialisation refined its components on the movie without the ring background (ring at 1.5
// diameters): F1 0.865 / 0.842 / 0.824 / 0.919, trace correlation 0.860 / 0.867 / 0.809 / 0.927.
// Session 14 (the fast path's baseline falls faster while most recent frames are below it, for
// bleaching): trace correlation 0.972 / 0.960 / 0.950 / 0.979 (seed 3 at the target).
TEST(RingBackground, OnePhotonMoviesEndToEndAcrossSeeds) {
  double f1 = 0, corr = 0, cosine = 0;
  const int seeds = 4;
  for (int seed = 1; seed <= seeds; ++seed) {
    const OnePhotonOutcome r = run_one_photon(true, static_cast<std::uint64_t>(seed));
    std::printf("[1p seed %d] K %d F1 %.3f precision %.3f recall %.3f cosine %.3f trace corr %.3f\n",
                seed, r.k, r.score.f1, r.score.precision, r.score.recall, r.score.median_cosine,
                r.score.median_trace_corr);
    EXPECT_GE(r.score.f1, 0.9) << "seed " << seed << " " << r.score.to_json();
    EXPECT_GE(r.score.median_cosine, 0.95) << "seed " << seed << " " << r.score.to_json();
    EXPECT_GE(r.score.median_trace_corr, 0.95) << "seed " << seed << " " << r.score.to_json();
    f1 += r.score.f1 / seeds;
    corr += r.score.median_trace_corr / seeds;
    cosine += r.score.median_cosine / seeds;
  }
  std::printf("[1p mean over %d seeds] F1 %.3f cosine %.3f trace corr %.3f\n", seeds, f1, cosine, corr);
  EXPECT_GE(f1, 0.95);
  EXPECT_GE(cosine, 0.98);
  EXPECT_GE(corr, 0.955);
}

// dF/F with the ring background under bleaching (tau 20 s over 40 s): F0's background term is
// the ring's estimate under each footprint, which dims with the movie (the constant b0 alone
// would not), so dF/F follows the true calcium better than the fading denoised trace.
TEST(RingBackground, DffFollowsBleachingThroughTheRingBackground) {
  sim::CalciumSimOptions so;
  so.height = 96;
  so.width = 96;
  so.frames = 1200;
  so.neurons = 20;
  so.seed = 2;
  so = sim::one_photon_options(so);
  so.bleaching_tau_s = 20.0f;
  sim::CalciumSimulator simulator(so);
  const CnmfOptions o = rtnmf::test::calcium_1p_options(so.height, so.width, true);
  const Eigen::Index P = static_cast<Eigen::Index>(so.height) * so.width, T0 = 300, T = so.frames - T0;
  Eigen::MatrixXf first(P, T0);
  for (Eigen::Index t = 0; t < T0; ++t) simulator.render(static_cast<std::uint32_t>(t), first.col(t).data());
  const CnmfInitResult init = cnmf_initialize(first, o);
  ASSERT_TRUE(init.model.ring.active());
  CnmfTracker tracker;
  tracker.init(o, 0);
  tracker.set_model(&init.model);
  Eigen::MatrixXf den(init.model.k(), T), dff(init.model.k(), T);
  Eigen::VectorXf y(P);
  for (Eigen::Index t = 0; t < T; ++t) {
    simulator.render(static_cast<std::uint32_t>(T0 + t), y.data());
    tracker.process(y.data());
    den.col(t) = tracker.output().denoised.head(init.model.k());
    dff.col(t) = tracker.output().dff.head(init.model.k());
  }
  const auto& truth = simulator.truth();
  const Eigen::MatrixXf none = Eigen::MatrixXf::Zero(init.model.k(), T);
  const sim::ImagingScore sc = sim::score_imaging(truth.footprints, truth.traces.rightCols(T),
                                                  truth.spikes.rightCols(T), init.model.footprints, den, none);
  const sim::ImagingScore sd = sim::score_imaging(truth.footprints, truth.traces.rightCols(T),
                                                  truth.spikes.rightCols(T), init.model.footprints, dff, none);
  std::printf("[1p bleaching] F1 %.3f median trace corr: denoised %.3f, dF/F %.3f\n", sc.f1,
              sc.median_trace_corr, sd.median_trace_corr);
  EXPECT_GT(sd.median_trace_corr, sc.median_trace_corr + 0.02) << sd.to_json() << sc.to_json();
}

TEST(RingBackground, FastPathWithTheRingDoesNotAllocate) {
  sim::CalciumSimOptions so;
  so.height = 48;
  so.width = 48;
  so.frames = 260;
  so.neurons = 6;
  so = sim::one_photon_options(so);
  so.background_scale_px = 10;
  sim::CalciumSimulator simulator(so);
  CnmfOptions o;
  o.height = so.height;
  o.width = so.width;
  o.neuron_radius = 7;
  o.ring_radius = 10;
  Eigen::MatrixXf first(48 * 48, 200);
  for (int t = 0; t < 200; ++t) simulator.render(static_cast<std::uint32_t>(t), first.col(t).data());
  CnmfInitResult init = cnmf_initialize(first, o);
  ASSERT_TRUE(init.model.ring.active());
  ASSERT_EQ(init.model.nb(), 0);
  CnmfTracker tracker;
  tracker.init(o, 0);
  tracker.set_model(&init.model);
  Eigen::VectorXf y(48 * 48);
  rtnmf::test::AllocationGuard guard;
  for (int t = 200; t < 260; ++t) {
    simulator.render(static_cast<std::uint32_t>(t), y.data());
    tracker.process(y.data());
  }
  if (rtnmf::test::allocation_counting_available()) {
    EXPECT_EQ(guard.count(), 0u);
  }
  EXPECT_TRUE(tracker.output().denoised.head(init.model.k()).allFinite());
}

}  // namespace
}  // namespace rtnmf::nmf
