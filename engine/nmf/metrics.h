// Fit metrics and factor matching, used by tests, tools and scoring.
//
// Letters: X data (features × samples), W factors (features × K), H activations (K × samples).
// All functions allocate temporaries (they are for offline use) unless stated; any thread; none
// throws except on mismatched shapes (std::invalid_argument naming both shapes).
#pragma once

#include <Eigen/Core>
#include <vector>

namespace rtnmf::nmf {

// ‖X − W H‖_F / ‖X‖_F (0 when X is zero and fits exactly). Computed block by block in double,
// without forming W H for all samples at once.
double relative_error(const Eigen::Ref<const Eigen::MatrixXf>& x,
                      const Eigen::Ref<const Eigen::MatrixXf>& w,
                      const Eigen::Ref<const Eigen::MatrixXf>& h);

// Variance accounted for, as in the muscle-synergy literature (uncentred):
// VAF = 1 − ‖X − W H‖² / ‖X‖².
double vaf(const Eigen::Ref<const Eigen::MatrixXf>& x, const Eigen::Ref<const Eigen::MatrixXf>& w,
           const Eigen::Ref<const Eigen::MatrixXf>& h);

// Coefficient of determination with each feature (row) centred on its own mean:
// R² = 1 − ‖X − W H‖² / Σ_i ‖X_i· − mean(X_i·)‖².
double r_squared(const Eigen::Ref<const Eigen::MatrixXf>& x,
                 const Eigen::Ref<const Eigen::MatrixXf>& w,
                 const Eigen::Ref<const Eigen::MatrixXf>& h);

// Cosine similarity between every column of a (n × Ka) and of b (n × Kb): a Ka × Kb matrix.
// A zero column has similarity 0 with everything.
Eigen::MatrixXd cosine_similarity(const Eigen::Ref<const Eigen::MatrixXf>& a,
                                  const Eigen::Ref<const Eigen::MatrixXf>& b);

// Minimum-cost assignment (Hungarian / Kuhn–Munkres with potentials, O(n² m)) on a rectangular
// cost matrix n × m: returns for every row its column, or -1 for the rows left unmatched when
// n > m. Exactly min(n, m) pairs are made and their total cost is minimal.
std::vector<int> hungarian(const Eigen::Ref<const Eigen::MatrixXd>& cost);

struct FactorPair {
  int reference = 0;  // column of the reference factors
  int estimate = 0;   // column of the estimated factors
  double similarity = 0.0;
};

struct FactorMatch {
  std::vector<FactorPair> pairs;  // sorted by reference index; min(Ka, Kb) pairs
  double mean_similarity = 0.0;
  double min_similarity = 0.0;
};

// Pairs the columns of `reference` and `estimate` (same number of rows) one-to-one so that the
// sum of cosine similarities is maximal (Hungarian on −similarity). Rectangular allowed.
FactorMatch match_factors(const Eigen::Ref<const Eigen::MatrixXf>& reference,
                          const Eigen::Ref<const Eigen::MatrixXf>& estimate);

}  // namespace rtnmf::nmf
