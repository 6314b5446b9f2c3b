// NNLS solvers: exactness against brute force, warm starts, method choice, no allocation.
#include "engine/nmf/nnls.h"

#include <gtest/gtest.h>

#include <Eigen/Cholesky>
#include <limits>

#include "tests/nmf/nmf_test_data.h"
#include "tests/support/alloc_counter.h"

namespace rtnmf::nmf {
namespace {

// Exact NNLS by enumerating every passive set: the unique solution of a strictly convex problem
// is the one passive set whose unconstrained solution is ≥ 0 with a non-negative gradient outside.
Eigen::VectorXd brute_force_nnls(const Eigen::MatrixXd& g, const Eigen::VectorXd& b, double l1,
                                 double l2) {
  const int k = static_cast<int>(g.rows());
  Eigen::VectorXd best;
  double best_obj = std::numeric_limits<double>::infinity();
  for (int mask = 0; mask < (1 << k); ++mask) {
    std::vector<int> idx;
    for (int i = 0; i < k; ++i)
      if (mask & (1 << i)) idx.push_back(i);
    Eigen::VectorXd x = Eigen::VectorXd::Zero(k);
    if (!idx.empty()) {
      const int n = static_cast<int>(idx.size());
      Eigen::MatrixXd a(n, n);
      Eigen::VectorXd r(n);
      for (int i = 0; i < n; ++i) {
        r[i] = b[idx[i]] - l1;
        for (int j = 0; j < n; ++j) a(i, j) = g(idx[i], idx[j]) + (i == j ? l2 : 0.0);
      }
      Eigen::VectorXd xs = a.ldlt().solve(r);
      if ((xs.array() < 0).any()) continue;
      for (int i = 0; i < n; ++i) x[idx[i]] = xs[i];
    }
    Eigen::VectorXd grad = g * x - b + Eigen::VectorXd::Constant(k, l1) + l2 * x;
    bool kkt = true;
    for (int i = 0; i < k; ++i)
      if (!(mask & (1 << i)) && grad[i] < -1e-9) kkt = false;
    if (!kkt) continue;
    const double obj = 0.5 * x.dot(g * x) - b.dot(x) + l1 * x.sum() + 0.5 * l2 * x.squaredNorm();
    if (obj < best_obj) {
      best_obj = obj;
      best = x;
    }
  }
  return best;
}

struct Tiny {
  Eigen::MatrixXf w;
  Eigen::VectorXf x;
};

// Correlated non-negative columns (the hard case for coordinate descent) plus a random sample
// with some negative direction so that several activations are exactly 0 at the optimum.
Tiny tiny_problem(int k, std::uint64_t seed) {
  Tiny t;
  t.w = testdata::uniform(8, k, seed);
  t.x = testdata::uniform(8, 1, seed + 100).col(0) * 2.f - Eigen::VectorXf::Constant(8, 0.5f);
  t.x = t.x.cwiseMax(0.f);
  return t;
}

void expect_matches_brute_force(NnlsMethod method, bool warm_from_random) {
  int checked = 0;
  for (int k = 1; k <= 6; ++k) {
    for (std::uint64_t seed = 1; seed <= 12; ++seed) {
      Tiny t = tiny_problem(k, seed * 31 + k);
      const float l1 = seed % 3 == 0 ? 0.05f : 0.f;
      const float l2 = seed % 4 == 0 ? 0.1f : 0.f;
      NnlsOptions opt;
      opt.method = method;
      opt.max_iter = 20000;
      opt.tol = 1e-7f;
      opt.l1 = l1;
      opt.l2 = l2;
      NnlsSolver solver(k, opt);
      solver.set_dictionary(t.w);
      Eigen::VectorXf h = warm_from_random ? Eigen::VectorXf(testdata::uniform(k, 1, seed).col(0))
                                           : Eigen::VectorXf::Zero(k);
      NnlsResult r = solver.solve(t.x, h, warm_from_random);
      EXPECT_TRUE(r.converged) << "k=" << k << " seed=" << seed;
      Eigen::MatrixXd g = (t.w.transpose() * t.w).cast<double>();
      Eigen::VectorXd b = (t.w.transpose() * t.x).cast<double>();
      Eigen::VectorXd expect = brute_force_nnls(g, b, l1, l2);
      ASSERT_EQ(expect.size(), k);
      for (int i = 0; i < k; ++i) {
        EXPECT_NEAR(h[i], expect[i], 2e-3 * (1.0 + expect.cwiseAbs().maxCoeff()))
            << "k=" << k << " seed=" << seed << " i=" << i;
        if (expect[i] == 0.0 && method == NnlsMethod::kBpp) {
          EXPECT_EQ(h[i], 0.f);
        }
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 72);
}

TEST(Nnls, BlockPrincipalPivotingEqualsBruteForceEnumeration) {
  expect_matches_brute_force(NnlsMethod::kBpp, false);
}

TEST(Nnls, WarmStartedBlockPrincipalPivotingEqualsBruteForceEnumeration) {
  expect_matches_brute_force(NnlsMethod::kBpp, true);
}

TEST(Nnls, HalsEqualsBruteForceEnumeration) { expect_matches_brute_force(NnlsMethod::kHals, false); }

TEST(Nnls, WarmStartedHalsEqualsBruteForceEnumeration) {
  expect_matches_brute_force(NnlsMethod::kHals, true);
}

TEST(Nnls, SparseAndDenseDictionariesGiveTheSameActivations) {
  Eigen::MatrixXf w = testdata::sparse_uniform(200, 12, 0.1f, 7);
  Eigen::SparseMatrix<float> ws = w.sparseView();
  Eigen::VectorXf x = w * testdata::uniform(12, 1, 8).col(0);
  for (NnlsMethod m : {NnlsMethod::kHals, NnlsMethod::kBpp}) {
    NnlsOptions opt;
    opt.method = m;
    opt.tol = 1e-6f;
    NnlsSolver dense(12, opt), sparse(12, opt);
    dense.set_dictionary(w);
    sparse.set_dictionary(ws);
    Eigen::VectorXf hd = Eigen::VectorXf::Zero(12), hs = Eigen::VectorXf::Zero(12);
    dense.solve(x, hd, false);
    sparse.solve(x, hs, false);
    EXPECT_LT((hd - hs).norm(), 1e-4f * hd.norm());
    EXPECT_LT((w * hd - x).norm(), 1e-3f * x.norm()) << to_string(m);
  }
}

TEST(Nnls, AutoChoosesHalsForLocalisedAndBppForCorrelatedDictionaries) {
  // Localised footprints: each column covers its own block of pixels with a small overlap.
  Eigen::MatrixXf local = Eigen::MatrixXf::Zero(400, 20);
  for (int k = 0; k < 20; ++k) local.block(k * 20, k, 24 > 400 - k * 20 ? 20 : 24, 1).setOnes();
  // Dense synergies: every muscle contributes to every synergy.
  Eigen::MatrixXf dense = testdata::uniform(64, 8, 3) + Eigen::MatrixXf::Constant(64, 8, 0.2f);
  EXPECT_LT(mean_normalized_row_sum(local.transpose() * local), 1.f);
  EXPECT_GT(mean_normalized_row_sum(dense.transpose() * dense), 1.f);
  // One strongly overlapping pair among many localised footprints does not make HALS slow.
  local.col(1) = local.col(0);
  local(0, 1) = 0.f;
  EXPECT_GT(max_normalized_correlation(local.transpose() * local), 0.9f);
  EXPECT_LT(mean_normalized_row_sum(local.transpose() * local), 1.f);
  NnlsSolver a(20), b(8);
  a.set_dictionary(local);
  b.set_dictionary(dense);
  EXPECT_EQ(a.resolved_method(), NnlsMethod::kHals);
  EXPECT_EQ(b.resolved_method(), NnlsMethod::kBpp);
}

TEST(Nnls, WarmStartFromThePreviousFrameNeedsFewerSweeps) {
  Eigen::MatrixXf w = testdata::sparse_uniform(300, 32, 0.15f, 11);
  Eigen::VectorXf h0 = testdata::uniform(32, 1, 12).col(0);
  Eigen::VectorXf h1 = h0 + 0.01f * testdata::uniform(32, 1, 13).col(0);
  NnlsOptions opt;
  opt.method = NnlsMethod::kHals;
  opt.tol = 1e-5f;
  NnlsSolver s(32, opt);
  s.set_dictionary(w);
  Eigen::VectorXf h = Eigen::VectorXf::Zero(32);
  s.solve(w * h0, h, false);
  NnlsResult warm = s.solve(w * h1, h, true);
  Eigen::VectorXf cold_h = Eigen::VectorXf::Zero(32);
  NnlsResult cold = s.solve(w * h1, cold_h, false);
  EXPECT_TRUE(warm.converged);
  EXPECT_LT(warm.iterations, cold.iterations);
  EXPECT_LT((h - cold_h).norm(), 1e-3f * h.norm());
}

TEST(Nnls, PerFrameSolveDoesNotAllocate) {
  if (!test::allocation_counting_available()) GTEST_SKIP() << "allocation counting unavailable";
  for (int k : {4, 32, 128}) {
    Eigen::MatrixXf w = testdata::sparse_uniform(512, k, 0.2f, 21 + k);
    Eigen::SparseMatrix<float> ws = w.sparseView();
    Eigen::VectorXf x = w * testdata::uniform(k, 1, 5).col(0);
    for (NnlsMethod m : {NnlsMethod::kHals, NnlsMethod::kBpp}) {
      NnlsOptions opt;
      opt.method = m;
      opt.l1 = 0.01f;
      NnlsSolver dense(k, opt), sparse(k, opt);
      dense.set_dictionary(w);
      sparse.set_dictionary(ws);
      Eigen::VectorXf h = Eigen::VectorXf::Zero(k);
      Eigen::MatrixXf g = w.transpose() * w;
      Eigen::VectorXf b = w.transpose() * x;
      test::AllocationGuard guard;
      dense.solve(x, h, false);
      dense.solve(x, h, true);
      sparse.solve(x, h, false);
      sparse.solve_gram(b, h, true);
      dense.solve_gram(g, b, h, true);
      EXPECT_EQ(guard.count(), 0u) << "k=" << k << " " << to_string(m);
    }
  }
}

}  // namespace
}  // namespace rtnmf::nmf
