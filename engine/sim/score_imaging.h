// Scores a calcium-imaging result against simulator ground truth: one-to-one matching of
// footprints (Hungarian on mask overlap), precision / recall / F1, footprint cosine, trace
// correlation and spike-detection F1 of matched pairs.
#pragma once

#include <Eigen/Core>
#include <Eigen/SparseCore>
#include <string>
#include <vector>

namespace rtnmf::sim {

struct ImagingScoreOptions {
  // A footprint's mask: pixels >= mask_fraction * its maximum.
  float mask_fraction = 0.2f;
  // Minimum Jaccard index (intersection over union of masks) for a match (CaImAn: 0.3).
  double min_iou = 0.3;
  // Spike matching: a detected spike within this many frames of a true one is a hit.
  int spike_tolerance = 2;
  // A frame counts as a detected spike when s > spike_threshold * max(s of that component).
  // Default 0: every spike the result reports counts (rtnmf thresholds its spikes at a multiple
  // of each trace's noise); a relative threshold is for results that report every small s.
  float spike_threshold = 0.0f;
};

struct MatchedPair {
  int truth = 0, found = 0;
  double iou = 0, cosine = 0, trace_corr = 0, spike_f1 = 0;
};

struct ImagingScore {
  int n_truth = 0, n_found = 0, n_matched = 0;
  double precision = 0, recall = 0, f1 = 0;
  double median_cosine = 0, median_trace_corr = 0, median_spike_f1 = 0;
  double mean_cosine = 0, mean_trace_corr = 0;
  std::vector<MatchedPair> pairs;  // sorted by truth index
  // A JSON object with the figures above and the pairs. Allocates.
  std::string to_json() const;
};

// Matches found components to true ones and computes the figures. Traces are compared over the
// frames both have (K x T each; empty spike matrices skip the spike figures). Allocates; any
// thread. Throws std::invalid_argument when the footprints' pixel counts differ.
ImagingScore score_imaging(const Eigen::SparseMatrix<float>& truth_footprints,
                           const Eigen::MatrixXf& truth_traces, const Eigen::MatrixXf& truth_spikes,
                           const Eigen::SparseMatrix<float>& found_footprints,
                           const Eigen::MatrixXf& found_traces, const Eigen::MatrixXf& found_spikes,
                           const ImagingScoreOptions& options = {});

namespace detail {
// Minimum-cost one-to-one assignment on a rectangular cost matrix (Hungarian with potentials):
// returns, for each row, its column or -1. Delegates to nmf::hungarian (engine/nmf/metrics.h).
// Allocates.
std::vector<int> min_cost_assignment(const Eigen::MatrixXd& cost);
// Pearson correlation of two equally long vectors (0 when either is constant).
double pearson(Eigen::Ref<const Eigen::VectorXf> a, Eigen::Ref<const Eigen::VectorXf> b);
}  // namespace detail

}  // namespace rtnmf::sim
