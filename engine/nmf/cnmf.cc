// Online CNMF: the fast-path tracker and the slow-path updater.
#include "engine/nmf/cnmf.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "engine/nmf/cnmf_internal.h"

namespace rtnmf::nmf {

// ---------------------------------------------------------------- fast path

void CnmfTracker::init(const CnmfOptions& options, int nb) {
  options_ = options;
  kmax_ = std::max(1, options.max_components);
  nb_ = nb;
  const Eigen::Index n = kmax_ + nb_;
  rhs_ = Eigen::VectorXf::Zero(n);
  x_ = Eigen::VectorXf::Zero(n);
  scratch_ = Eigen::VectorXf::Zero(n);
  baseline_ = Eigen::VectorXf::Zero(kmax_);
  baseline_scale_ = Eigen::VectorXf::Zero(kmax_);
  y_in_ = Eigen::VectorXf::Zero(kmax_);
  c_out_ = Eigen::VectorXf::Zero(kmax_);
  s_out_ = Eigen::VectorXf::Zero(kmax_);
  ids_.clear();
  ids_.reserve(static_cast<std::size_t>(kmax_));
  oasis_.init(kmax_);
  out_.raw = Eigen::VectorXf::Zero(kmax_);
  out_.denoised = Eigen::VectorXf::Zero(kmax_);
  out_.spikes = Eigen::VectorXf::Zero(kmax_);
  out_.activation = Eigen::VectorXf::Zero(kmax_);
  out_.background = Eigen::VectorXf::Zero(std::max(nb_, 0));
  model_ = nullptr;
  t_ = 0;
}

void CnmfTracker::set_model(const CnmfModel* model) {
  const int K = model->k();
  if (K > kmax_) throw std::length_error("cnmf: model has more components than max_components");
  if (model->nb() != nb_) throw std::length_error("cnmf: background rank changed");
  // Follow components by id. Ids ascend in both models and removed components only shift later
  // ones down, so moving state forward in place (from j >= i to i) never overwrites live state.
  const std::size_t old_k = ids_.size();
  std::size_t j = 0;
  const Eigen::Index bg_from = static_cast<Eigen::Index>(old_k);
  // Background warm start first (it sits after the neurons and K may grow).
  for (int b = 0; b < nb_; ++b) scratch_(b) = x_(bg_from + b);
  for (int i = 0; i < K; ++i) {
    const std::uint64_t id = model->ids[static_cast<std::size_t>(i)];
    while (j < old_k && ids_[j] < id) ++j;
    const float g = model->g(i), s_min = model->s_min(i);
    if (j < old_k && ids_[j] == id) {
      const int from = static_cast<int>(j);
      x_(i) = x_(from);
      baseline_(i) = baseline_(from);
      oasis_.move(from, i);
      if (oasis_.g(i) != g) oasis_.reset_trace(i, g, s_min, 0.0f);
      else oasis_.set_params(i, g, s_min, 0.0f);
    } else {
      x_(i) = 0;
      baseline_(i) = model->baseline(i);
      oasis_.reset_trace(i, g, s_min, 0.0f);
    }
    baseline_scale_(i) = std::max(model->noise(i), 1e-6f);
    // i <= j: entries below j are no longer read. Capacity was reserved in init().
    if (static_cast<std::size_t>(i) < ids_.size()) ids_[static_cast<std::size_t>(i)] = id;
    else ids_.push_back(id);
  }
  ids_.resize(static_cast<std::size_t>(K));
  for (int b = 0; b < nb_; ++b) x_(K + b) = scratch_(b);
  model_ = model;
}

void CnmfTracker::process(const float* frame) {
  const CnmfModel& m = *model_;
  const int K = m.k(), n = K + nb_;
  const Eigen::Index P = static_cast<Eigen::Index>(m.height) * m.width;
  Eigen::Map<const Eigen::VectorXf> y(frame, P);
  rhs_.head(K).noalias() = m.footprints.transpose() * y;
  if (nb_ > 0) rhs_.segment(K, nb_).noalias() = m.background.transpose() * y;
  // Warm-started HALS on the Gram of [A b], walking only its non-zeros (symmetric: column i is
  // row i).
  const float* gv = m.gram_sparse.valuePtr();
  const int* gi = m.gram_sparse.innerIndexPtr();
  const int* gp = m.gram_sparse.outerIndexPtr();
  for (int sweep = 0; sweep < options_.fast_iterations; ++sweep) {
    float change = 0, norm = 0;
    for (int i = 0; i < n; ++i) {
      float d = 0, dot = 0;
      for (int q = gp[i]; q < gp[i + 1]; ++q) {
        const int j = gi[q];
        dot += gv[q] * x_(j);
        if (j == i) d = gv[q];
      }
      if (d <= 0) continue;
      const float old = x_(i);
      const float v = std::max(0.0f, old + (rhs_(i) - dot) / d);
      x_(i) = v;
      change += d * (v - old) * (v - old);
      norm += d * v * v;
    }
    if (change <= options_.fast_tolerance * options_.fast_tolerance * norm) break;
  }
  // Baseline: a running 30th percentile (stochastic quantile tracker, ~10 s memory at 30 Hz),
  // reported as that plus 0.52 noise sd (the 30th percentile of Gaussian noise is -0.52 sd).
  for (int i = 0; i < K; ++i) {
    const float c = x_(i);
    const float step = baseline_scale_(i) * 0.005f;
    const float level = baseline_(i) - 0.52f * baseline_scale_(i);
    baseline_(i) += step * (c < level ? -0.7f : 0.3f);
    out_.activation(i) = c;
    y_in_(i) = c - baseline_(i);
    out_.raw(i) = y_in_(i);
  }
  for (int b = 0; b < nb_; ++b) out_.background(b) = x_(K + b);
  oasis_.update_first(K, y_in_, c_out_, s_out_);
  out_.denoised.head(K) = c_out_.head(K);
  out_.spikes.head(K) = s_out_.head(K);
  ++t_;
}

}  // namespace rtnmf::nmf
