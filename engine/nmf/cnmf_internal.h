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

// HALS sweeps for non-negative X (K x T) minimising ½‖Y − A X‖² given G = AᵀA and R = AᵀY.
// Rows listed in `free_sign` (e.g. none) are not clipped. Does not allocate beyond a K-vector.
void hals_rows(const Eigen::MatrixXf& gram, const Eigen::MatrixXf& aty, Eigen::MatrixXf& x,
               int sweeps);

// Footprint HALS on fixed supports: for each neuron k, on its support,
// a_k ← max(0, a_k + (YC_k − (A_all CC)_k) / CC_kk), where A_all = [A b] and YC_k holds
// Σ_t y_t[support] c_kt. Background columns (dense) are updated likewise on all pixels and then
// smoothed with a Gaussian of `bg_sigma` (0 = none). values/bg are updated in place.
void hals_shapes(const std::vector<Support>& supports, std::vector<Eigen::VectorXf>& values,
                 Eigen::MatrixXf& bg, const std::vector<Eigen::VectorXf>& yc,
                 const Eigen::MatrixXf& yc_bg, const Eigen::MatrixXf& cc, int h, int w,
                 float bg_sigma, int sweeps);

// Robust baseline of a trace: the mean of the values below its median+(noise) — a simple mode
// estimate. Allocates.
float trace_baseline(Eigen::Ref<const Eigen::VectorXf> c, float noise_sd);

// Default AR(1) coefficient for an indicator decay time at a frame rate.
float default_g(double frame_rate_hz, float decay_time_s);

}  // namespace rtnmf::nmf::detail
