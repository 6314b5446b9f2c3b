// Scoring of estimated synergies / assemblies against a simulation's truth: one-to-one matching
// of columns by cosine similarity (Hungarian, nmf::match_factors) and the correlation of each
// matched pair's activations (best lag within a window, since the envelope filter delays them).
#pragma once

#include <Eigen/Core>
#include <string>
#include <vector>

namespace rtnmf::sim {

struct SynergyScore {
  std::vector<int> estimate_of;  // per truth column: matched estimate column (-1: none)
  std::vector<double> cosine;    // per truth column
  double mean_cosine = 0, min_cosine = 0;
  std::vector<double> activation_corr;  // per truth column (empty without activations)
  std::vector<int> activation_lag;      // best lag (estimate behind truth), samples
  double mean_activation_corr = 0;
};

// Matches `estimate` (features × Ke) to `truth` (features × Kt). When both activation matrices
// are non-empty (K × T, same rate), also correlates matched rows over their common length, at
// the lag in [0, max_lag] that maximises the correlation. Allocates. Throws
// std::invalid_argument when the feature counts differ.
SynergyScore score_synergies(const Eigen::Ref<const Eigen::MatrixXf>& truth,
                             const Eigen::Ref<const Eigen::MatrixXf>& estimate,
                             const Eigen::Ref<const Eigen::MatrixXf>& truth_activations,
                             const Eigen::Ref<const Eigen::MatrixXf>& estimate_activations,
                             int max_lag = 20);

// Pearson correlation of a and b (0 when either is constant). Does not allocate.
double pearson(const Eigen::Ref<const Eigen::VectorXf>& a,
               const Eigen::Ref<const Eigen::VectorXf>& b);

// One JSON object with the score (matched pairs, cosines, correlations). Allocates.
std::string score_json(const SynergyScore& s);

}  // namespace rtnmf::sim
