// Simulator ground truth is self-consistent and the scorer matches what it should.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <vector>

#include "engine/sim/calcium.h"
#include "engine/sim/score_imaging.h"
#include "tests/support/alloc_counter.h"

namespace rtnmf::sim {
namespace {

TEST(CalciumSimulator, MovieMeanFollowsTheModelAndRenderDoesNotAllocate) {
  CalciumSimOptions o;
  o.height = 48;
  o.width = 40;
  o.frames = 200;
  o.neurons = 10;
  o.seed = 3;
  CalciumSimulator sim(o);
  const CalciumTruth& t = sim.truth();
  ASSERT_EQ(t.footprints.rows(), 48 * 40);
  ASSERT_EQ(t.footprints.cols(), 10);
  ASSERT_EQ(t.traces.cols(), 200);
  EXPECT_GT(t.spikes.sum(), 10);
  EXPECT_GE(t.traces.minCoeff(), 0.0f);
  std::vector<float> frame(48 * 40);
  Eigen::VectorXd mean = Eigen::VectorXd::Zero(48 * 40);
  {
    rtnmf::test::AllocationGuard guard;
    for (std::uint32_t f = 0; f < 200; ++f) {
      sim.render(f, frame.data());
      mean += Eigen::Map<Eigen::VectorXf>(frame.data(), 48 * 40).cast<double>();
    }
    if (rtnmf::test::allocation_counting_available()) {
      EXPECT_EQ(guard.count(), 0u);
    }
  }
  mean /= 200;
  Eigen::VectorXf model = t.bg_spatial * t.bg_temporal.rowwise().mean() +
                          t.footprints * (t.f0 + t.traces.rowwise().mean());
  EXPECT_LT((mean.cast<float>() - model).norm() / model.norm(), 0.02);
  // Deterministic per frame, whatever the call order.
  std::vector<float> again(48 * 40);
  sim.render(5, frame.data());
  sim.render(100, again.data());
  sim.render(5, again.data());
  EXPECT_EQ(frame, again);
}

// The footprint shape knobs (held-out scoring uses real cells: sizes vary, GCaMP leaves the
// nucleus dark, outlines are not ellipses) do what they say, and their defaults leave the
// default movie unchanged (the outline harmonics are drawn only when asked for).
struct Outline {
  float centre_ratio;  // footprint value at the pixel nearest the centroid / its peak
  float radius_ratio;  // largest / smallest outline radius over 16 directions (value 0.5)
  float size;          // sqrt of the pixels above half the peak
};
std::vector<Outline> outlines(const CalciumSimOptions& o) {
  CalciumSimulator sim(o);
  const Eigen::SparseMatrix<float>& a = sim.truth().footprints;
  const int W = static_cast<int>(o.width), H = static_cast<int>(o.height);
  std::vector<Outline> out;
  for (Eigen::Index k = 0; k < a.cols(); ++k) {
    Eigen::VectorXf f = Eigen::VectorXf(a.col(k));
    double sy = 0, sx = 0, sw = 0;
    int above = 0;
    for (Eigen::Index p = 0; p < f.size(); ++p) {
      sy += f(p) * static_cast<double>(p / W), sx += f(p) * static_cast<double>(p % W), sw += f(p);
      above += f(p) >= 0.5f;
    }
    const double cy = sy / sw, cx = sx / sw;
    const float centre = f(static_cast<Eigen::Index>(std::lround(cy)) * W + std::lround(cx));
    float rmin = 1e9f, rmax = 0;
    for (int d = 0; d < 16; ++d) {
      const double th = 2 * M_PI * d / 16;
      float r = 0;
      for (float step = 0.25f; step < 30; step += 0.25f) {
        const long y = std::lround(cy + step * std::sin(th)), x = std::lround(cx + step * std::cos(th));
        if (y < 0 || x < 0 || y >= H || x >= W) break;
        if (f(y * W + x) >= 0.5f) r = step;
      }
      rmin = std::min(rmin, r), rmax = std::max(rmax, r);
    }
    out.push_back({centre / f.maxCoeff(), rmax / std::max(rmin, 0.25f), std::sqrt(static_cast<float>(above))});
  }
  return out;
}

TEST(CalciumSimulator, ShapeKnobsVarySizeNucleusAndOutline) {
  CalciumSimOptions o;
  o.height = 160;
  o.width = 160;
  o.frames = 2;
  o.neurons = 30;
  o.neuron_radius = 6;
  o.seed = 5;
  o.radius_jitter = 0;
  o.ellipticity = 0;
  o.nucleus = 0;
  auto median = [](std::vector<float> v) {
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
  };
  auto field = [](const std::vector<Outline>& v, float Outline::*m) {
    std::vector<float> r;
    for (const Outline& x : v) r.push_back(x.*m);
    return r;
  };
  const std::vector<Outline> round = outlines(o);
  EXPECT_GT(median(field(round, &Outline::centre_ratio)), 0.95f);
  EXPECT_LT(median(field(round, &Outline::radius_ratio)), 1.25f);  // pixels: ~1.18
  o.nucleus = 0.9f;
  EXPECT_LT(median(field(outlines(o), &Outline::centre_ratio)), 0.3f);  // dark nucleus
  o.nucleus = 0;
  o.irregularity = 0.3f;
  EXPECT_GT(median(field(outlines(o), &Outline::radius_ratio)), 1.5f);  // irregular outline (~2)
  o.irregularity = 0;
  o.radius_jitter = 0.35f;
  const std::vector<float> sizes = field(outlines(o), &Outline::size);
  const float lo = *std::min_element(sizes.begin(), sizes.end()), hi = *std::max_element(sizes.begin(), sizes.end());
  EXPECT_GT(hi / lo, 1.8f) << "sizes " << lo << " .. " << hi;
  const std::vector<float> same = field(round, &Outline::size);
  EXPECT_LT(*std::max_element(same.begin(), same.end()) / *std::min_element(same.begin(), same.end()), 1.2f);
}

TEST(CalciumSimulator, TruthFileRoundTrips) {
  CalciumSimOptions o;
  o.height = 32;
  o.width = 32;
  o.frames = 50;
  o.neurons = 5;
  o.motion_px = 1.0f;
  CalciumSimulator sim(o);
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("rtnmf_truth_" + std::to_string(::getpid()) + ".h5")).string();
  write_calcium_truth(path, sim.truth(), o);
  CalciumTruth back = read_calcium_truth(path);
  EXPECT_EQ(back.height, 32u);
  EXPECT_TRUE(back.traces.isApprox(sim.truth().traces));
  EXPECT_TRUE(back.shifts.isApprox(sim.truth().shifts));
  EXPECT_EQ(Eigen::MatrixXf(back.footprints), Eigen::MatrixXf(sim.truth().footprints));
  std::filesystem::remove(path);
}

TEST(ScoreImaging, PerfectResultScoresOneAndMissingOrSpuriousComponentsCount) {
  CalciumSimOptions o;
  o.height = 64;
  o.width = 64;
  o.frames = 300;
  o.neurons = 12;
  CalciumSimulator sim(o);
  const CalciumTruth& t = sim.truth();
  ImagingScore perfect = score_imaging(t.footprints, t.traces, t.spikes, t.footprints, t.traces, t.spikes);
  EXPECT_EQ(perfect.n_matched, 12);
  EXPECT_DOUBLE_EQ(perfect.f1, 1.0);
  EXPECT_NEAR(perfect.median_cosine, 1.0, 1e-6);
  EXPECT_NEAR(perfect.median_trace_corr, 1.0, 1e-6);
  EXPECT_NEAR(perfect.median_spike_f1, 1.0, 1e-6);

  // Found: columns in reverse order, the last 3 true neurons missing, 2 spurious blobs.
  const int kf = 9 + 2;
  Eigen::SparseMatrix<float> fa(t.footprints.rows(), kf);
  std::vector<Eigen::Triplet<float>> trip;
  for (int k = 0; k < 9; ++k)
    for (Eigen::SparseMatrix<float>::InnerIterator it(t.footprints, k); it; ++it)
      trip.emplace_back(static_cast<int>(it.row()), 8 - k, it.value());
  trip.emplace_back(0, 9, 1.0f);
  trip.emplace_back(1, 10, 1.0f);
  fa.setFromTriplets(trip.begin(), trip.end());
  Eigen::MatrixXf fc = Eigen::MatrixXf::Random(kf, 300);
  for (int k = 0; k < 9; ++k) fc.row(8 - k) = t.traces.row(k);
  ImagingScore s = score_imaging(t.footprints, t.traces, Eigen::MatrixXf(), fa, fc, Eigen::MatrixXf());
  EXPECT_EQ(s.n_matched, 9);
  EXPECT_NEAR(s.precision, 9.0 / 11.0, 1e-12);
  EXPECT_NEAR(s.recall, 9.0 / 12.0, 1e-12);
  for (const MatchedPair& p : s.pairs) EXPECT_EQ(p.found, 8 - p.truth);
  EXPECT_NE(s.to_json().find("\"f1\": "), std::string::npos);
}

TEST(ScoreImaging, SpikeF1AllowsASmallTimingErrorAndCountsSpuriousSpikes) {
  CalciumSimOptions o;
  o.height = 32;
  o.width = 32;
  o.frames = 400;
  o.neurons = 2;
  o.firing_rate_hz = 1.0f;
  o.burst_probability = 0;
  CalciumSimulator sim(o);
  const CalciumTruth& t = sim.truth();
  auto shifted = [&](int d) {
    Eigen::MatrixXf s = Eigen::MatrixXf::Zero(t.spikes.rows(), t.spikes.cols());
    for (Eigen::Index k = 0; k < s.rows(); ++k)
      for (Eigen::Index q = 0; q + d < s.cols(); ++q) s(k, q + d) = t.spikes(k, q);
    return s;
  };
  auto f1 = [&](const Eigen::MatrixXf& found, float rel = 0.0f) {
    ImagingScoreOptions so;
    so.spike_threshold = rel;
    return score_imaging(t.footprints, t.traces, t.spikes, t.footprints, t.traces, found, so).median_spike_f1;
  };
  EXPECT_NEAR(f1(shifted(2)), 1.0, 1e-9);  // within the 2-frame tolerance
  EXPECT_LT(f1(shifted(3)), 0.2);          // outside it
  // Small spurious values everywhere count as detections unless a relative threshold drops them.
  Eigen::MatrixXf noisy = shifted(1);
  noisy.array() += 0.01f;
  EXPECT_LT(f1(noisy), 0.2);
  EXPECT_NEAR(f1(noisy, 0.1f), 1.0, 1e-9);
}

TEST(ScoreImaging, AssignmentIsOptimalNotGreedy) {
  // Greedy would take (0,0)=0.1 then (1,1)=1.0; optimal is (0,1)+(1,0) = 0.4.
  Eigen::MatrixXd cost(2, 2);
  cost << 0.1, 0.2, 0.2, 1.0;
  std::vector<int> a = detail::min_cost_assignment(cost);
  EXPECT_EQ(a[0], 1);
  EXPECT_EQ(a[1], 0);
  Eigen::MatrixXd tall(3, 1);
  tall << 0.5, 0.1, 0.9;
  a = detail::min_cost_assignment(tall);
  EXPECT_EQ(a[0], -1);
  EXPECT_EQ(a[1], 0);
  EXPECT_EQ(a[2], -1);
}

}  // namespace
}  // namespace rtnmf::sim
