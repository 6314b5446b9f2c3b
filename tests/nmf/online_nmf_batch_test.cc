// Online NMF's mini-batch path: threads, the sparse-dictionary path and the sparse start, on
// footprint-like data (localised squares on a small image, the imaging case in miniature).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "engine/nmf/batch_nmf.h"
#include "engine/nmf/metrics.h"
#include "engine/nmf/online_nmf.h"
#include "tests/nmf/nmf_test_data.h"

namespace rtnmf::nmf {
namespace {

constexpr Eigen::Index kSide = 40, kPixels = kSide * kSide, kFoot = 6;

struct Footprints {
  Eigen::MatrixXf w;  // pixels × K, unit columns
  Eigen::MatrixXf x;  // pixels × samples
};

// K squares of kFoot × kFoot at seeded, pairwise distinct positions, values in [0.5, 1.5);
// activations uniform with probability 0.4; Gaussian noise (sigma × RMS of W H) clipped at 0.
Footprints footprint_stream(Eigen::Index k, Eigen::Index samples, float sigma,
                            std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> pos(0, static_cast<int>(kSide - kFoot));
  std::uniform_real_distribution<float> u(0.f, 1.f);
  Footprints f;
  f.w = Eigen::MatrixXf::Zero(kPixels, k);
  for (Eigen::Index c = 0; c < k; ++c) {
    const int r0 = pos(rng), c0 = pos(rng);
    for (int r = 0; r < kFoot; ++r)
      for (int q = 0; q < kFoot; ++q) f.w((r0 + r) * kSide + c0 + q, c) = 0.5f + u(rng);
    f.w.col(c).normalize();
  }
  const Eigen::MatrixXf h = testdata::sparse_uniform(k, samples, 0.4f, seed + 1);
  f.x = f.w * h;
  const float rms = std::sqrt(f.x.squaredNorm() / static_cast<float>(f.x.size()));
  f.x = (f.x + testdata::gaussian(kPixels, samples, sigma * rms, seed + 2)).cwiseMax(0.f);
  return f;
}

OnlineNmfOptions footprint_options(int threads) {
  OnlineNmfOptions o;
  o.activations.method = NnlsMethod::kAuto;
  o.activations.tol = 1e-3f;
  o.prune_w = 0.1f;
  o.threads = threads;
  o.parallel_min_work = 0;  // these small problems would otherwise run on one thread
  return o;
}

// The driver's protocol: sparse start on the first `start` samples, then mini-batches of `b`.
struct StreamRun {
  Eigen::MatrixXf start_w, w, h;
  double start_error = 0;
  bool sparse = false;
};

StreamRun run_stream(const Eigen::MatrixXf& x, Eigen::Index k, const OnlineNmfOptions& o,
               Eigen::Index start, Eigen::Index b, int rounds = 15) {
  OnlineNmf online(x.rows(), k, o);
  StreamRun r;
  r.start_error = online.initialize_from_data(x.leftCols(start), rounds, 7);
  r.start_w = online.dictionary();
  r.h = Eigen::MatrixXf::Zero(k, x.cols());
  for (Eigen::Index j = start; j < x.cols(); j += b) {
    const Eigen::Index n = std::min(b, x.cols() - j);
    online.partial_fit_batch(x.middleCols(j, n), r.h.middleCols(j, n));
  }
  r.w = online.dictionary();
  r.sparse = online.sparse_dictionary();
  EXPECT_EQ(online.samples_seen(), x.cols());
  return r;
}

double fit_error(const Eigen::MatrixXf& x, const Eigen::MatrixXf& w) {
  Eigen::MatrixXf h;
  solve_activations(x, w, h, 0.f, 0.f, 200, 1e-6);
  return relative_error(x, w, h);
}

TEST(OnlineNmfBatch, RecoversPlantedFootprintsFromAMiniBatchStreamWithASparseDictionary) {
  const Footprints f = footprint_stream(8, 1200, 0.05f, 11);
  const StreamRun r = run_stream(f.x, 8, footprint_options(2), 32, 128);
  EXPECT_GE(match_factors(f.w, r.w).min_similarity, 0.95);
  // Pruned to about the planted support (8 × 36 of 8 × 1,600 entries), so the sparse path ran.
  EXPECT_TRUE(r.sparse);
  EXPECT_LE((r.w.array() != 0.f).count(), 3 * 8 * kFoot * kFoot);
  EXPECT_LT(fit_error(f.x, r.w), 0.1);
  EXPECT_LT(r.start_error, 0.3);
}

TEST(OnlineNmfBatch, TwoThreadsAreDeterministicAndMatchOneThread) {
  const Footprints f = footprint_stream(8, 1000, 0.05f, 21);
  const StreamRun a = run_stream(f.x, 8, footprint_options(2), 32, 128);
  const StreamRun again = run_stream(f.x, 8, footprint_options(2), 32, 128);
  EXPECT_EQ(a.w, again.w);
  EXPECT_EQ(a.h, again.h);
  const StreamRun one = run_stream(f.x, 8, footprint_options(1), 32, 128);
  EXPECT_LT((a.w - one.w).norm(), 1e-4f * one.w.norm());
  EXPECT_LT((a.h - one.h).norm(), 1e-4f * one.h.norm());
}

TEST(OnlineNmfBatch, SparseDictionaryPathEqualsDensePath) {
  const Footprints f = footprint_stream(8, 1000, 0.05f, 31);
  OnlineNmfOptions sparse = footprint_options(2), dense = footprint_options(2);
  sparse.sparse_max_density = 1.f;  // supports, sparse Gram, sparse BCD and sparse Wᵀ X always
  sparse.sparse_product_max_density = 1.f;
  dense.sparse_max_density = 0.f;   // never
  const StreamRun s = run_stream(f.x, 8, sparse, 32, 128);
  const StreamRun d = run_stream(f.x, 8, dense, 32, 128);
  EXPECT_TRUE(s.sparse);
  EXPECT_FALSE(d.sparse);
  EXPECT_NEAR(s.start_error, d.start_error, 1e-4);
  EXPECT_LT((s.w - d.w).norm(), 1e-4f * d.w.norm());
  EXPECT_LT((s.h - d.h).norm(), 1e-4f * d.h.norm());
}

TEST(OnlineNmfBatch, SparseDictionaryUpdateEqualsDenseUpdateFromTheSameStatistics) {
  // One dictionary update from given statistics, without the start: the BCD step and the Gram
  // on the supports against the dense ones, unit ball and pruning included.
  const Footprints f = footprint_stream(6, 400, 0.05f, 41);
  OnlineNmfOptions sparse = footprint_options(1), dense = footprint_options(1);
  sparse.sparse_max_density = 1.f;
  sparse.sparse_product_max_density = 1.f;
  dense.sparse_max_density = 0.f;
  sparse.dictionary_sweeps = dense.dictionary_sweeps = 3;
  Eigen::MatrixXf w0 = f.w + 0.3f * testdata::uniform(kPixels, 6, 42).cwiseProduct(
                                        (testdata::uniform(kPixels, 6, 43).array() < 0.05f)
                                            .cast<float>()
                                            .matrix());
  OnlineNmf a(kPixels, 6, sparse), b(kPixels, 6, dense);
  a.set_dictionary(w0);
  b.set_dictionary(w0);
  EXPECT_TRUE(a.sparse_dictionary());
  EXPECT_FALSE(b.sparse_dictionary());
  EXPECT_LT((a.gram() - b.gram()).norm(), 1e-5f * b.gram().norm());
  Eigen::MatrixXf ha = Eigen::MatrixXf::Zero(6, 200), hb = ha;
  a.partial_fit_batch(f.x.leftCols(200), ha);
  b.partial_fit_batch(f.x.leftCols(200), hb);
  EXPECT_LT((ha - hb).norm(), 1e-5f * hb.norm());
  EXPECT_LT((a.dictionary() - b.dictionary()).norm(), 1e-5f * b.dictionary().norm());
  EXPECT_LT((a.gram() - b.gram()).norm(), 1e-5f * b.gram().norm());
  // The same entries pruned on both paths.
  EXPECT_EQ(((a.dictionary().array() != 0.f) != (b.dictionary().array() != 0.f)).count(), 0);
}

TEST(OnlineNmfBatch, SparseStartFallsBackToTheBatchStartOnDenseSynergies) {
  // Dense synergies: round 0 of the sparse start gives dense columns, so the start is the batch
  // HALS one, the same as without prune_w (the stream may still prune a column that turns
  // footprint-like; at 16 muscles that is ≤ 4 entries above a tenth of its largest).
  testdata::Planted p = testdata::planted(16, 4, 600, 51);
  p.x = (p.w * p.h + testdata::gaussian(16, 600, 0.01f, 52)).cwiseMax(0.f);
  OnlineNmfOptions with = footprint_options(1), without = footprint_options(1);
  without.prune_w = 0.f;
  with.activations.method = without.activations.method = NnlsMethod::kBpp;
  const StreamRun a = run_stream(p.x, 4, with, 100, 100, 30);
  const StreamRun b = run_stream(p.x, 4, without, 100, 100, 30);
  EXPECT_EQ(a.start_error, b.start_error);
  EXPECT_EQ(a.start_w, b.start_w);
  EXPECT_GE(match_factors(p.w, a.w).min_similarity, 0.95);
  EXPECT_GE(match_factors(p.w, b.w).min_similarity, 0.95);
}

// The mini-batch activations for K ≤ 32 run as one coordinate descent over the whole batch:
// converged to a tight tol it must give the exact NNLS solution of every column (BPP, per
// column), with and without an l1 penalty, on dense correlated synergies (the case where auto
// picks BPP for single samples).
TEST(OnlineNmfBatch, BatchCoordinateDescentActivationsMatchExactNnlsPerColumn) {
  for (const float l1 : {0.f, 0.05f}) {
    SCOPED_TRACE(l1);
    const Eigen::Index m = 64, k = 6, n = 300;
    Eigen::MatrixXf w = testdata::uniform(m, k, 61);
    for (Eigen::Index c = 0; c < k; ++c) w.col(c).normalize();
    const Eigen::MatrixXf x = (w * testdata::sparse_uniform(k, n, 0.5f, 62) +
                               testdata::gaussian(m, n, 0.05f, 63)).cwiseMax(0.f);
    OnlineNmfOptions o;
    o.activations.tol = 1e-6f;
    o.activations.max_iter = 5000;
    o.activations.l1 = l1;
    OnlineNmf online(m, k, o);
    online.set_dictionary(w);
    online.set_frozen(true);
    Eigen::MatrixXf h = Eigen::MatrixXf::Zero(k, n);
    online.partial_fit_batch(x, h);
    EXPECT_EQ(online.dictionary(), w);  // frozen: only the activations were computed

    NnlsOptions exact;
    exact.method = NnlsMethod::kBpp;
    exact.l1 = l1;
    NnlsSolver bpp(k, exact);
    bpp.set_dictionary(w);
    const Eigen::MatrixXf g = w.transpose() * w;
    Eigen::VectorXf he(k);
    double worst = 0;
    for (Eigen::Index j = 0; j < n; ++j) {
      he.setZero();
      bpp.solve(x.col(j), he, false);
      const Eigen::VectorXf b = w.transpose() * x.col(j);
      auto cost = [&](const Eigen::VectorXf& v) {
        return 0.5 * v.dot(g * v) - b.dot(v) + l1 * v.sum();
      };
      EXPECT_GE(h.col(j).minCoeff(), 0.f);
      EXPECT_LE(cost(h.col(j)), cost(he) + 1e-5 * std::max(1.0, std::abs(cost(he)))) << j;
      worst = std::max(worst, static_cast<double>((h.col(j) - he).norm() /
                                                  std::max(he.norm(), 1e-6f)));
    }
    EXPECT_LT(worst, 2e-3);
  }
}

}  // namespace
}  // namespace rtnmf::nmf
