// Micro-benchmarks of the numerical core: per-frame NNLS (the fast path) and batch HALS.
//
// NNLS cases, K = 4, 8, 32, 128, 500:
//   Dense  — synergy-like dictionary: every feature loads on every component (max(64, 2K) features,
//            uniform + 0.2, so the columns are strongly correlated: cosines ~0.8).
//   Sparse — imaging footprints: 512×512 pixels, K localised 15×15 squares at random places
//            (Eigen::SparseMatrix<float>), mostly non-overlapping.
// Frames come from slowly drifting activations (AR(1), ρ = 0.95) plus noise, cycling through 16
// precomputed frames, so "Warm" (start from the previous frame's h) is realistic. "Cold" starts
// from 0. Counters: iters = sweeps or pivots per frame; rel_err = ‖x − W h‖/‖x‖ averaged (the
// accuracy next to the speed; HALS stops at tol 1e-4, BPP is exact); items = frames.
//
// Batch: ten HALS iterations (from given factors, no init) at 512 × 20,000 (K 20) and
// 64 × 200,000 (K 6) with 1 and 2 threads; a whole fit at 16,384 × 2,048 (K 50), exact HALS
// beside compressed HALS + exact polish.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "engine/nmf/batch_nmf.h"
#include "engine/nmf/nnls.h"

namespace {

using rtnmf::nmf::NnlsMethod;
using rtnmf::nmf::NnlsOptions;
using rtnmf::nmf::NnlsSolver;

constexpr int kFrames = 16;

struct Problem {
  Eigen::MatrixXf dense;
  Eigen::SparseMatrix<float> sparse;
  Eigen::MatrixXf frames;  // features × kFrames
};

Eigen::MatrixXf drifting_activations(int k, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(0.f, 1.f);
  Eigen::MatrixXf h(k, kFrames);
  for (int i = 0; i < k; ++i) h(i, 0) = u(rng) < 0.3f ? u(rng) : 0.f;
  for (int t = 1; t < kFrames; ++t)
    for (int i = 0; i < k; ++i) h(i, t) = std::max(0.f, 0.95f * h(i, t - 1) + 0.05f * (u(rng) - 0.4f));
  return h;
}

const Problem& dense_problem(int k) {
  static std::map<int, Problem> cache;
  auto it = cache.find(k);
  if (it != cache.end()) return it->second;
  std::mt19937_64 rng(1000 + k);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  const int m = std::max(64, 2 * k);
  Problem p;
  p.dense.resize(m, k);
  for (int j = 0; j < k; ++j)
    for (int i = 0; i < m; ++i) p.dense(i, j) = u(rng) + 0.2f;
  Eigen::MatrixXf h = drifting_activations(k, rng);
  p.frames = p.dense * h;
  for (int t = 0; t < kFrames; ++t)
    for (int i = 0; i < m; ++i) p.frames(i, t) = std::max(0.f, p.frames(i, t) + 0.05f * (u(rng) - 0.5f));
  return cache.emplace(k, std::move(p)).first->second;
}

const Problem& sparse_problem(int k) {
  static std::map<int, Problem> cache;
  auto it = cache.find(k);
  if (it != cache.end()) return it->second;
  std::mt19937_64 rng(2000 + k);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  constexpr int kSide = 512, kFoot = 15;
  std::vector<Eigen::Triplet<float>> trip;
  for (int j = 0; j < k; ++j) {
    const int r0 = static_cast<int>(u(rng) * (kSide - kFoot));
    const int c0 = static_cast<int>(u(rng) * (kSide - kFoot));
    for (int dc = 0; dc < kFoot; ++dc)
      for (int dr = 0; dr < kFoot; ++dr)
        trip.emplace_back((c0 + dc) * kSide + r0 + dr, j, 0.5f + u(rng));
  }
  Problem p;
  p.sparse.resize(kSide * kSide, k);
  p.sparse.setFromTriplets(trip.begin(), trip.end());
  p.sparse.makeCompressed();
  Eigen::MatrixXf h = drifting_activations(k, rng);
  p.frames = p.sparse * h;
  std::normal_distribution<float> noise(0.f, 0.002f);
  for (int t = 0; t < kFrames; ++t)
    for (int i = 0; i < p.frames.rows(); ++i) p.frames(i, t) = std::max(0.f, p.frames(i, t) + noise(rng));
  return cache.emplace(k, std::move(p)).first->second;
}

template <bool kSparse>
void run_nnls(benchmark::State& state, NnlsMethod method, bool warm) {
  const int k = static_cast<int>(state.range(0));
  const Problem& p = kSparse ? sparse_problem(k) : dense_problem(k);
  NnlsOptions o;
  o.method = method;
  NnlsSolver solver(k, o);
  if constexpr (kSparse) {
    solver.set_dictionary(p.sparse);
  } else {
    solver.set_dictionary(p.dense);
  }
  Eigen::VectorXf h = Eigen::VectorXf::Zero(k);
  std::int64_t iters = 0, frames = 0;
  int t = 0;
  for (auto _ : state) {
    rtnmf::nmf::NnlsResult r = solver.solve(p.frames.col(t), h, warm);
    benchmark::DoNotOptimize(h.data());
    iters += r.iterations;
    ++frames;
    t = (t + 1) % kFrames;
  }
  // Accuracy on the frames, outside the timed loop.
  double rel = 0;
  Eigen::VectorXf hh = Eigen::VectorXf::Zero(k);
  for (int f = 0; f < kFrames; ++f) {
    solver.solve(p.frames.col(f), hh, warm);
    Eigen::VectorXf r = p.frames.col(f);
    if constexpr (kSparse) {
      r -= p.sparse * hh;
    } else {
      r -= p.dense * hh;
    }
    rel += r.norm() / p.frames.col(f).norm();
  }
  state.counters["iters"] = static_cast<double>(iters) / std::max<std::int64_t>(frames, 1);
  state.counters["rel_err"] = rel / kFrames;
  state.counters["max_cos"] = rtnmf::nmf::max_normalized_correlation(solver.gram());
  state.counters["row_sum"] = rtnmf::nmf::mean_normalized_row_sum(solver.gram());
  state.counters["bpp"] = solver.resolved_method() == NnlsMethod::kBpp ? 1 : 0;
  state.SetItemsProcessed(frames);
}

#define RTNMF_NNLS_BENCH(name, sparse, method, warm)                                \
  void BM_Nnls_##name(benchmark::State& s) { run_nnls<sparse>(s, method, warm); } \
  BENCHMARK(BM_Nnls_##name)->Arg(4)->Arg(8)->Arg(32)->Arg(128)->Arg(500)->Unit(benchmark::kMicrosecond)

RTNMF_NNLS_BENCH(HalsDenseWarm, false, NnlsMethod::kHals, true);
RTNMF_NNLS_BENCH(HalsDenseCold, false, NnlsMethod::kHals, false);
RTNMF_NNLS_BENCH(BppDenseWarm, false, NnlsMethod::kBpp, true);
RTNMF_NNLS_BENCH(BppDenseCold, false, NnlsMethod::kBpp, false);
RTNMF_NNLS_BENCH(AutoDenseWarm, false, NnlsMethod::kAuto, true);
RTNMF_NNLS_BENCH(HalsSparseWarm, true, NnlsMethod::kHals, true);
RTNMF_NNLS_BENCH(HalsSparseCold, true, NnlsMethod::kHals, false);
RTNMF_NNLS_BENCH(BppSparseWarm, true, NnlsMethod::kBpp, true);
RTNMF_NNLS_BENCH(BppSparseCold, true, NnlsMethod::kBpp, false);
RTNMF_NNLS_BENCH(AutoSparseWarm, true, NnlsMethod::kAuto, true);

// Ten HALS iterations from given factors. Args: features, samples, K, threads.
void BM_BatchHals_TenIterations(benchmark::State& state) {
  const Eigen::Index m = state.range(0), n = state.range(1), k = state.range(2);
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  Eigen::MatrixXf w(m, k), h(k, n);
  for (Eigen::Index j = 0; j < k; ++j)
    for (Eigen::Index i = 0; i < m; ++i) w(i, j) = u(rng);
  for (Eigen::Index j = 0; j < n; ++j)
    for (Eigen::Index i = 0; i < k; ++i) h(i, j) = u(rng);
  Eigen::MatrixXf x = w * h;
  for (Eigen::Index j = 0; j < n; ++j)
    for (Eigen::Index i = 0; i < m; ++i) x(i, j) += 0.1f * u(rng);
  Eigen::MatrixXf w0 = Eigen::MatrixXf::Constant(m, k, 0.5f) + 0.1f * w;
  Eigen::MatrixXf h0 = Eigen::MatrixXf::Constant(k, n, 0.5f);
  rtnmf::nmf::BatchNmfOptions o;
  o.rank = k;
  o.init = rtnmf::nmf::NmfInit::kGiven;
  o.max_iter = 10;
  o.tol = 0;
  o.normalize = rtnmf::nmf::Normalization::kNone;
  o.threads = static_cast<int>(state.range(3));
  double err = 0;
  for (auto _ : state) {
    rtnmf::nmf::NmfResult r = rtnmf::nmf::fit_nmf(x, o, &w0, &h0);
    err = r.relative_error;
    benchmark::DoNotOptimize(r.w.data());
  }
  state.counters["rel_err"] = err;
  state.SetItemsProcessed(state.iterations() * 10);  // items = HALS iterations
}
BENCHMARK(BM_BatchHals_TenIterations)
    ->Args({512, 20000, 20, 1})
    ->Args({512, 20000, 20, 2})
    ->Args({64, 200000, 6, 1})
    ->Args({64, 200000, 6, 2})
    ->Unit(benchmark::kMillisecond);

// A whole fit (NNDSVDa, tol 1e-4) on a large X with a low rank, exact HALS beside compressed
// HALS + exact polish (Compression kOff / kOn), error and iteration counts next to the time.
// Data: W 10 % dense, H 40 % dense, noise 10 % of the RMS, clipped at 0.
// Args: features, samples, K, compress (0 off, 1 on).
void BM_BatchNmf_FitLarge(benchmark::State& state) {
  const Eigen::Index m = state.range(0), n = state.range(1), k = state.range(2);
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::normal_distribution<float> noise(0.f, 1.f);
  Eigen::MatrixXf w(m, k), h(k, n);
  for (Eigen::Index j = 0; j < k; ++j)
    for (Eigen::Index i = 0; i < m; ++i) w(i, j) = u(rng) < 0.1f ? u(rng) : 0.f;
  for (Eigen::Index j = 0; j < n; ++j)
    for (Eigen::Index i = 0; i < k; ++i) h(i, j) = u(rng) < 0.4f ? u(rng) : 0.f;
  Eigen::MatrixXf x = w * h;
  const float sigma = 0.1f * std::sqrt(x.squaredNorm() / static_cast<float>(x.size()));
  for (Eigen::Index j = 0; j < n; ++j)
    for (Eigen::Index i = 0; i < m; ++i) x(i, j) = std::max(0.f, x(i, j) + sigma * noise(rng));
  rtnmf::nmf::BatchNmfOptions o;
  o.rank = k;
  o.compress = state.range(3) ? rtnmf::nmf::Compression::kOn : rtnmf::nmf::Compression::kOff;
  o.threads = 2;
  rtnmf::nmf::NmfResult r;
  for (auto _ : state) {
    r = rtnmf::nmf::fit_nmf(x, o);
    benchmark::DoNotOptimize(r.w.data());
  }
  state.counters["rel_err"] = r.relative_error;
  state.counters["exact_it"] = r.iterations;
  state.counters["compressed_it"] = r.compressed_iterations;
}
BENCHMARK(BM_BatchNmf_FitLarge)
    ->Args({16384, 2048, 50, 0})
    ->Args({16384, 2048, 50, 1})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1)
    ->Repetitions(3);

}  // namespace

BENCHMARK_MAIN();
