// Rank selection for NMF: fit quality and stability across K, after Brunet et al. (2004).
//
// For every K in [min_rank, max_rank]: `runs` seeded fits (random init, seed + run), then
// - fit quality of the best run (lowest objective): relative error, VAF, R²;
// - stability: each run assigns every sample (column of X) to the component with the largest
//   activation (argmax of H's column); the consensus matrix C (samples × samples) is the fraction
//   of runs in which two samples share a component; its cophenetic correlation coefficient is the
//   Pearson correlation between the distances 1 − C and the cophenetic distances of an
//   average-linkage (UPGMA) hierarchical clustering of 1 − C. 1 means perfectly stable clusters.
// Recommendations:
// - by VAF (muscle synergies): the smallest K whose VAF ≥ vaf_threshold (default 0.9);
// - by stability (clustering-style data; `recommended_by_cophenetic`): the largest K whose score
//   cophenetic × dispersion is within `cophenetic_drop` of the best score over the range. The
//   cophenetic coefficient alone stays near 1 above the true rank on well-separated data
//   (between-cluster pairs dominate it), and below it runs often merge the same clusters every
//   time (a tie at 1); Kim & Park's dispersion falls as soon as a cluster is split differently
//   from run to run, and "largest stable K" is Brunet's "last K before the coefficient falls".
//
// All functions allocate and may be called from any thread. select_rank spreads the runs over
// `nmf.threads` std::threads (each run single-threaded): results do not depend on scheduling.
// Errors: std::invalid_argument for a bad range or options (message names the option).
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <vector>

#include "engine/nmf/batch_nmf.h"

namespace rtnmf::nmf {

struct RankSelectionOptions {
  Eigen::Index min_rank = 2;
  Eigen::Index max_rank = 10;
  int runs = 30;
  std::uint64_t seed = 0;
  BatchNmfOptions nmf;  // loss, penalties, iterations, threads; rank/init/seed set per run
  double vaf_threshold = 0.9;
  double cophenetic_drop = 0.01;  // tolerance on the stability score (see above)
  bool keep_consensus = false;  // keep each K's consensus matrix in the result (samples² each)
};

struct RankRow {
  Eigen::Index rank = 0;
  double relative_error = 0;  // best run
  double vaf = 0;             // best run
  double r_squared = 0;       // best run
  double cophenetic = 0;      // over all runs
  double dispersion = 0;      // Kim & Park's dispersion of C: mean 4 (C − 1/2)², 1 = crisp
  double best_objective = 0;
};

struct RankSelection {
  std::vector<RankRow> rows;
  Eigen::Index recommended_by_vaf = -1;  // −1: no K reached the threshold
  Eigen::Index recommended_by_cophenetic = -1;
  std::vector<Eigen::MatrixXf> consensus;  // per row, when keep_consensus
};

// Runs the whole selection. `progress(rank, runs_done)` is called from the calling thread after
// each K (may be empty).
RankSelection select_rank(const Eigen::Ref<const Eigen::MatrixXf>& x,
                          const RankSelectionOptions& options,
                          const std::function<void(const RankRow&)>& progress = {});

// Sample labels (argmax over each column of H; ties → lowest index).
std::vector<int> cluster_labels(const Eigen::Ref<const Eigen::MatrixXf>& h);

// Consensus over runs: entry (i, j) = fraction of label vectors in which i and j agree.
Eigen::MatrixXf consensus_matrix(const std::vector<std::vector<int>>& labels);

// One merge of the average-linkage clustering: clusters `a` and `b` (ids: 0..n−1 are samples,
// n + i is the cluster made by merge i, as in SciPy) joined at `height`, giving `size` samples.
struct Merge {
  int a = 0, b = 0;
  double height = 0;
  int size = 0;
};

// Average-linkage (UPGMA) clustering of a symmetric distance matrix by the nearest-neighbour
// chain algorithm, O(n²) time and memory. Merges are returned in increasing height.
std::vector<Merge> average_linkage(const Eigen::Ref<const Eigen::MatrixXd>& distance);

// Cophenetic distances (n × n) implied by a merge list over n samples.
Eigen::MatrixXd cophenetic_distances(const std::vector<Merge>& merges, int n);

// Cophenetic correlation of a consensus matrix (distance 1 − C). 1 when all distances are equal.
double cophenetic_correlation(const Eigen::Ref<const Eigen::MatrixXf>& consensus);

}  // namespace rtnmf::nmf
