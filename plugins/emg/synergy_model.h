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

struct CalibrationOptions {
  int rank = 0;      // fixed K; 0 = the smallest K with VAF >= vaf_threshold
  int max_rank = 8;  // upper bound of the VAF search
  double vaf_threshold = 0.9;
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
  double vaf = 0;
  std::vector<double> vaf_by_rank;     // [k - 1] for every rank tried
  std::vector<double> matched_cosine;  // per previous component (empty without previous)
  double mean_matched_cosine = 0;
};

// Fits the calibration window. Allocates; runs batch NMF (up to max_rank fits): slow path or
// start-up only. Throws std::invalid_argument for empty/negative X or bad options.
Calibration calibrate_synergies(const Eigen::Ref<const Eigen::MatrixXf>& x,
                                const CalibrationOptions& options);

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
