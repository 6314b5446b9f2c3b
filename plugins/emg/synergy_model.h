// Numerics of the online synergy / assembly stage, free of the runtime so they can be tested on
// their own: calibration by batch NMF with the rank chosen by VAF, a stable component order,
// alignment to an earlier session's synergies (warm start), and the online W update with
// forgetting (Mairal et al. 2010 sufficient statistics, block-coordinate descent).
//
// Letters: X envelopes (channels × T), W synergies (channels × K, unit ℓ1 or ℓ2 columns), H
// activations (K × T), A = Σ ρ^(t−s) h hᵀ (K × K), B = Σ ρ^(t−s) x hᵀ (channels × K).
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/nmf/batch_nmf.h"
#include "engine/nmf/online_nmf.h"

namespace rtnmf::emg {

// Rank choice (rank 0, no previous synergies): the numerical core's rank selection
// (nmf::select_rank: `rank_runs` seeded fits per K, VAF of the best, cophenetic stability) is
// run for K = 1, 2, ... and K is the smallest whose VAF >= vaf_threshold AND whose next rank adds
// less than vaf_gain (the "VAF ≥ 90 % and the curve has levelled off" criterion of the synergy
// literature, e.g. Torres-Oviedo & Ting 2006, Cheung et al. 2005). The threshold alone picks one
// synergy too few whenever K − 1 synergies already pass it, which real recordings (and the
// simulator) routinely do. vaf_gain <= 0: the threshold alone (the core's recommended_by_vaf).
// Windows longer than 2000 samples are ranked on an evenly strided subset of 2000 (select_rank's
// consensus matrix is samples²); the final fit always uses the whole window.
struct CalibrationOptions {
  int rank = 0;      // fixed K; 0 = chosen by VAF threshold and gain (above)
  int max_rank = 8;  // upper bound of the search (K = max_rank + 1 is fitted for its gain)
  double vaf_threshold = 0.9;
  double vaf_gain = 0.015;  // the next rank must add less VAF than this (0: threshold alone)
  int rank_runs = 4;        // random-init fits per K in the rank selection
  nmf::Normalization normalize = nmf::Normalization::kL2;
  std::uint64_t seed = 0;
  int max_iter = 400;
  // Synergies of an earlier session (channels × K0), or nullptr. With it, K defaults to K0, the
  // fit starts from it, and the result keeps its component order.
  const Eigen::MatrixXf* previous = nullptr;
};

struct Calibration {
  Eigen::MatrixXf synergies;    // channels × K, normalised, in stable order
  Eigen::MatrixXf activations;  // K × T
  int rank = 0;
  double vaf = 0;                          // of the final fit at `rank` (best of NNDSVDA and
                                           // rank_runs random starts; given W with `previous`)
  std::vector<double> vaf_by_rank;         // [k - 1] for every rank tried (best of rank_runs fits)
  std::vector<double> cophenetic_by_rank;  // [k - 1] stability over the runs (empty: fixed K)
  int rank_by_threshold = 0;               // the threshold alone (0: not reached / fixed K)
  std::vector<double> matched_cosine;      // per previous component (empty without previous)
  double mean_matched_cosine = 0;
};

// Fits the calibration window. Allocates; runs batch NMF (rank_runs fits per K tried, then one
// at the chosen K): slow path or start-up only. Throws std::invalid_argument for empty/negative
// X or bad options.
Calibration calibrate_synergies(const Eigen::Ref<const Eigen::MatrixXf>& x,
                                const CalibrationOptions& options);

// The rank rule above on a VAF curve (vaf_by_rank[k − 1] for k = 1..n): the smallest k <=
// max_rank with vaf >= threshold and, when vaf_by_rank holds k + 1, a gain below `gain`; if no k
// qualifies, the largest k <= max_rank in the curve. Returns 0 for an empty curve.
int choose_rank(const std::vector<double>& vaf_by_rank, double threshold, double gain,
                int max_rank);

// Puts components in a canonical order: by the channel where each synergy peaks, then by the
// peak value (descending). Permutes h's rows to match when given. Allocates a little.
void order_components(Eigen::MatrixXf& w, Eigen::MatrixXf* h);

// Permutes w's columns (and h's rows) so that column j best matches reference column j
// (Hungarian on cosine); unmatched columns of w go last in canonical order. Returns the matched
// cosine per reference column (0 where none). Allocates.
std::vector<double> align_components(const Eigen::MatrixXf& reference, Eigen::MatrixXf& w,
                                     Eigen::MatrixXf* h);

// Scales columns of w to unit norm (ℓ1 or ℓ2); zero columns stay zero. Does not allocate.
void normalize_columns(Eigen::Ref<Eigen::MatrixXf> w, nmf::Normalization norm);

// Online W update from per-sample (x, h) pairs: nmf::OnlineNmf's sufficient statistics and
// block-coordinate descent, with the columns then re-normalised to unit ℓ1 or ℓ2 (OnlineNmf
// only bounds them by the unit ball) so that synergies compare across updates and sessions.
// Memory is O(channels × K), independent of the stream length.
class OnlineSynergyUpdater {
 public:
  // Sizes the statistics for `w` (channels × K) and seeds them from the calibration data (x, h)
  // when given, weighting older samples by `forgetting`. Allocates. Slow path / start-up.
  void init(const Eigen::MatrixXf& w, double forgetting, nmf::Normalization norm,
            const Eigen::MatrixXf* x = nullptr, const Eigen::MatrixXf* h = nullptr);
  // Folds one sample in: A = ρ A + h hᵀ, B = ρ B + x hᵀ. Does not allocate. Slow path.
  void accumulate(const float* x, const float* h);
  // Block-coordinate descent on W (warm: updates `w` in place), columns re-normalised.
  // Components whose A_jj is negligible keep their column. Does not allocate. Slow path.
  void update(Eigen::MatrixXf& w, int sweeps = 1);
  std::uint64_t samples() const { return samples_; }
  int rank() const { return learner_ ? static_cast<int>(learner_->rank()) : 0; }

 private:
  nmf::Normalization norm_ = nmf::Normalization::kL2;
  std::unique_ptr<nmf::OnlineNmf> learner_;
  Eigen::MatrixXf w_;
  std::uint64_t samples_ = 0;
};

}  // namespace rtnmf::emg
