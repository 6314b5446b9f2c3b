// Helpers shared by the CNMF initialisation and the slow-path updater. Internal.
#pragma once

#include <Eigen/Core>
#include <Eigen/SparseCore>
#include <cstdint>
#include <vector>

#include "engine/nmf/cnmf.h"

namespace rtnmf::nmf::detail {

using Support = std::vector<std::int32_t>;

// Pixels of the square of half-side `radius` around (cy, cx), clipped to the frame, sorted.
Support square_support(int cy, int cx, int radius, int h, int w);

// Sparse P x K matrix from per-column (support, values) pairs. Allocates.
Eigen::SparseMatrix<float> assemble(int p, const std::vector<Support>& supports,
                                    const std::vector<Eigen::VectorXf>& values);

// x −= A c for one frame (x P long, c K long), on the footprints' pixels only, neuron by neuron.
// Does not allocate.
void subtract_footprints(const Eigen::SparseMatrix<float>& a, Eigen::Ref<const Eigen::VectorXf> c,
                         float* x);

// AᵀA (K x K, dense) of a sparse P x K A whose columns overlap little (footprints).
Eigen::MatrixXf footprint_gram(const Eigen::SparseMatrix<float>& a);

// HALS sweeps for non-negative X (K x T) minimising ½‖Y − A X‖² given G = AᵀA and R = AᵀY.
// Rows listed in `free_sign` (e.g. none) are not clipped. Does not allocate beyond a K-vector.
void hals_rows(const Eigen::MatrixXf& gram, const Eigen::MatrixXf& aty, Eigen::MatrixXf& x,
               int sweeps);

// Footprint HALS on fixed supports: for each neuron k, on its support,
// a_k ← max(0, a_k + (YC_k − (A_all CC)_k) / CC_kk), where A_all = [A b] and YC_k holds
// Σ_t y_t[support] c_kt. Background columns (dense) are updated likewise on all pixels and then
// smoothed with a Gaussian of `bg_sigma` (0 = none) on `threads` threads. values/bg are updated
// in place.
void hals_shapes(const std::vector<Support>& supports, std::vector<Eigen::VectorXf>& values,
                 Eigen::MatrixXf& bg, const std::vector<Eigen::VectorXf>& yc,
                 const Eigen::MatrixXf& yc_bg, const Eigen::MatrixXf& cc, int h, int w,
                 float bg_sigma, int sweeps, int threads = 1);

// Robust baseline of a trace: the mean of the values below its median+(noise) — a simple mode
// estimate. Allocates.
float trace_baseline(Eigen::Ref<const Eigen::VectorXf> c, float noise_sd);

// Median (reorders v). Noise sd of a sequence from the MAD of its first differences.
float median_of(std::vector<float>& v);
float diff_noise(const std::vector<float>& x, std::vector<float>& scratch);

// The same two statistics for 8 sequences at once, branch-free (a sorting network over 8 lanes
// in place of nth_element's data-dependent branches: per pixel ~10x cheaper at n = 60, ~2x at
// n = 300, padded to 512). `x` holds
// n rows of 8 (row i: the i-th element of each sequence), 2 <= n <= kLaneMaxN. Writes each
// lane's median_of (if `median`) and diff_noise (if `noise`); the values equal theirs, being the
// same order statistics. `work` holds kLaneMaxN rows of 8. Does not allocate.
inline constexpr int kLanes = 8;
inline constexpr int kLaneMaxN = 512;
void median_and_noise8(const float* x, int n, float* work, float* median, float* noise);

// Footprint consistency (CaImAn's spatial-correlation test): Pearson correlation between a
// footprint `a` on `support` and the data yb (P x T, background removed) averaged over the frames
// in which trace c is highest; `relative`: that average minus the average over all frames (what
// the activity adds; used for neurons found online and at the one-photon initialisation, where
// the residual's static part or the neighbours' resting levels and what is left of the background
// inside the support square otherwise dominate the average). Allocates.
float space_correlation(const Eigen::MatrixXf& yb, const Support& support, const Eigen::VectorXf& a,
                        Eigen::Ref<const Eigen::VectorXf> c, float baseline, float noise, bool relative = false);

// Keeps the entries of a patch image `a` (side columns, row-major) >= frac * max that are
// 4-connected to seed_index; zeroes the rest.
void keep_connected(Eigen::VectorXf& a, int side, int seed_index, float frac);

// Footprint size test, CaImAn's remove_small_large_neurons with bounds taken from the soma
// radius: the pixels of `values` >= 0.2 of its maximum must cover at least a disc of half the
// expected radius (smaller is noise or a border artefact) and at most the disc inscribed in the
// support square, pi/4 of `support_pixels` (the support is sized for the largest soma expected;
// a footprint filling it is diffuse background or neuropil, not a soma). Does not allocate.
enum class SomaSize { kTooSmall, kPlausible, kTooLarge };
SomaSize soma_size(const Eigen::VectorXf& values, std::size_t support_pixels, const CnmfOptions& o);

// Half-side of a neuron's fixed support square.
int support_radius(const CnmfOptions& o);

struct Seed {
  Support support;         // the square around the seed
  Eigen::VectorXf values;  // unit-norm footprint on it
  Eigen::VectorXf trace;   // smoothed high-passed trace at the seed (T)
  float pnr = 0, corr = 0;
  int row = -1, col = -1;  // the seed pixel
};

// Greedy seeds on a background-free movie: `s` (P x T, overwritten: high-passed, smoothed,
// peeled) drives detection (local maxima of peak-to-noise x local correlation, strongest first,
// thresholds min_pnr/min_corr); footprints are the covariance of `y` (P x T, unfiltered) with the
// seed trace, cut at 20% of the peak and connected. At most max_seeds. Allocates.
std::vector<Seed> find_seeds(Eigen::MatrixXf& s, Eigen::Ref<const Eigen::MatrixXf> y,
                             const CnmfOptions& options, int max_seeds);

// Default AR(1) coefficient for an indicator decay time at a frame rate.
float default_g(double frame_rate_hz, float decay_time_s);

}  // namespace rtnmf::nmf::detail
