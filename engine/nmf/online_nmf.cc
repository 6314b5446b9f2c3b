// Online NMF (Mairal et al. 2010). See online_nmf.h.
#include "engine/nmf/online_nmf.h"

#include "engine/nmf/batch_nmf.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <string>

namespace rtnmf::nmf {

OnlineNmf::OnlineNmf(Eigen::Index features, Eigen::Index k, const OnlineNmfOptions& options)
    : options_(options),
      w_(Eigen::MatrixXf::Zero(features, k)),
      a_(Eigen::MatrixXf::Zero(k, k)),
      b_(Eigen::MatrixXf::Zero(features, k)),
      scratch_(Eigen::VectorXf::Zero(features)),
      solver_(k, options.activations) {
  if (features < 1 || k < 1)
    throw std::invalid_argument("OnlineNmf: features and rank must be at least 1");
  if (!(options.forgetting > 0.f && options.forgetting <= 1.f))
    throw std::invalid_argument("OnlineNmf: forgetting must be in (0, 1]");
}

void OnlineNmf::initialize_random(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  for (Eigen::Index j = 0; j < w_.cols(); ++j) {
    for (Eigen::Index i = 0; i < w_.rows(); ++i) w_(i, j) = u(rng);
    w_.col(j) /= w_.col(j).norm();
  }
  reset_statistics();
  refresh_gram();
}

double OnlineNmf::initialize_from_data(const Eigen::Ref<const Eigen::MatrixXf>& x,
                                       int iterations, std::uint64_t seed, int threads) {
  if (x.rows() != w_.rows())
    throw std::invalid_argument("OnlineNmf::initialize_from_data: X has " +
                                std::to_string(x.rows()) + " rows, expected " +
                                std::to_string(w_.rows()));
  if (x.cols() < 1) throw std::invalid_argument("OnlineNmf::initialize_from_data: X is empty");
  if (iterations < 0)
    throw std::invalid_argument("OnlineNmf::initialize_from_data: iterations must be >= 0");
  BatchNmfOptions o;
  o.rank = w_.cols();
  o.init = NmfInit::kRandom;
  o.seed = seed;
  o.max_iter = iterations;
  o.max_inner_sweeps = 1;
  o.threads = std::max(1, threads);
  o.normalize = Normalization::kL2;
  NmfResult r = fit_nmf(x, o);
  w_ = r.w;
  reset_statistics();
  accumulate_batch(x, r.h);
  refresh_gram();
  return r.relative_error;
}

void OnlineNmf::set_dictionary(const Eigen::Ref<const Eigen::MatrixXf>& w) {
  if (w.rows() != w_.rows())
    throw std::invalid_argument("OnlineNmf::set_dictionary: W has " + std::to_string(w.rows()) +
                                " rows, expected " + std::to_string(w_.rows()));
  if (w.cols() != w_.cols()) {
    a_.setZero(w.cols(), w.cols());
    b_.setZero(w.rows(), w.cols());
    samples_ = 0;
  }
  w_ = w;
  refresh_gram();
}

void OnlineNmf::set_model(const Eigen::Ref<const Eigen::MatrixXf>& w,
                          const Eigen::Ref<const Eigen::MatrixXf>& gram) {
  if (w.rows() != w_.rows() || w.cols() != w_.cols())
    throw std::invalid_argument("OnlineNmf::set_model: shape differs from the current model");
  w_ = w;
  solver_.set_dictionary(w_, gram);
}

void OnlineNmf::refresh_gram() { solver_.set_dictionary(w_); }

void OnlineNmf::reset_statistics() {
  a_.setZero();
  b_.setZero();
  samples_ = 0;
  since_update_ = 0;
}

NnlsResult OnlineNmf::activations(const Eigen::Ref<const Eigen::VectorXf>& x,
                                  Eigen::Ref<Eigen::VectorXf> h) {
  return solver_.solve(x, h, true);
}

float OnlineNmf::decay_for(std::int64_t t) const {
  float d = options_.forgetting;
  if (options_.warmup_power > 0.f && t > 1)
    d *= std::pow(1.f - 1.f / static_cast<float>(t), options_.warmup_power);
  return d;
}

void OnlineNmf::accumulate(const Eigen::Ref<const Eigen::VectorXf>& x,
                           const Eigen::Ref<const Eigen::VectorXf>& h) {
  const float lambda = decay_for(samples_ + 1);
  if (lambda != 1.f) {
    a_ *= lambda;
    b_ *= lambda;
  }
  a_.noalias() += h * h.transpose();
  b_.noalias() += x * h.transpose();
  ++samples_;
}

void OnlineNmf::accumulate_batch(const Eigen::Ref<const Eigen::MatrixXf>& x,
                                 const Eigen::Ref<const Eigen::MatrixXf>& h) {
  if (x.rows() != w_.rows() || h.rows() != w_.cols() || x.cols() != h.cols())
    throw std::invalid_argument("OnlineNmf::accumulate_batch: shapes of X and H do not match");
  float decay = std::pow(options_.forgetting, static_cast<float>(x.cols()));
  if (options_.warmup_power > 0.f && samples_ > 0) {
    // (1 − 1/t)^ρ over the batch's samples telescopes to (t0 / t1)^ρ.
    decay *= std::pow(static_cast<float>(samples_) / static_cast<float>(samples_ + x.cols()),
                      options_.warmup_power);
  }
  if (decay != 1.f) {
    a_ *= decay;
    b_ *= decay;
  }
  a_.noalias() += h * h.transpose();
  b_.noalias() += x * h.transpose();
  samples_ += x.cols();
}

void OnlineNmf::update_dictionary() {
  since_update_ = 0;
  if (frozen_ || samples_ == 0) return;
  const float l1 = options_.l1_w, l2 = options_.l2_w;
  for (int sweep = 0; sweep < options_.dictionary_sweeps; ++sweep) {
    for (Eigen::Index k = 0; k < w_.cols(); ++k) {
      const float akk = a_(k, k);
      // A component without statistics yet keeps its initial column.
      if (!(akk > 1e-12f)) continue;
      scratch_.noalias() = w_ * a_.col(k);
      // w_k ← max(0, (B_k − W A_k + A_kk w_k − l1) / (A_kk + l2))
      w_.col(k) = ((b_.col(k) - scratch_ + akk * w_.col(k)).array() - l1).max(0.f) / (akk + l2);
      if (options_.unit_ball) {
        const float n = w_.col(k).norm();
        if (n > 1.f) w_.col(k) /= n;
      }
    }
  }
  refresh_gram();
}

NnlsResult OnlineNmf::partial_fit(const Eigen::Ref<const Eigen::VectorXf>& x,
                                  Eigen::Ref<Eigen::VectorXf> h) {
  NnlsResult r = activations(x, h);
  accumulate(x, h);
  if (++since_update_ >= options_.update_every) update_dictionary();
  return r;
}

void OnlineNmf::partial_fit_batch(const Eigen::Ref<const Eigen::MatrixXf>& x,
                                  Eigen::Ref<Eigen::MatrixXf> h) {
  if (x.rows() != w_.rows() || h.rows() != w_.cols() || x.cols() != h.cols())
    throw std::invalid_argument("OnlineNmf::partial_fit_batch: shapes of X and H do not match");
  // One product for the whole batch instead of a matrix-vector product per sample.
  batch_wtx_.resize(w_.cols(), x.cols());
  batch_wtx_.noalias() = w_.transpose() * x;
  for (Eigen::Index j = 0; j < x.cols(); ++j) solver_.solve_gram(batch_wtx_.col(j), h.col(j), true);
  accumulate_batch(x, h);
  update_dictionary();
}

Eigen::Index OnlineNmf::add_component(const Eigen::Ref<const Eigen::VectorXf>& w) {
  if (w.size() != w_.rows())
    throw std::invalid_argument("OnlineNmf::add_component: column has " +
                                std::to_string(w.size()) + " entries, expected " +
                                std::to_string(w_.rows()));
  const Eigen::Index k = w_.cols();
  w_.conservativeResize(Eigen::NoChange, k + 1);
  w_.col(k) = w.cwiseMax(0.f);
  b_.conservativeResize(Eigen::NoChange, k + 1);
  b_.col(k).setZero();
  a_.conservativeResize(k + 1, k + 1);
  a_.row(k).setZero();
  a_.col(k).setZero();
  refresh_gram();
  return k;
}

void OnlineNmf::retire_component(Eigen::Index k) {
  const Eigen::Index n = w_.cols();
  if (k < 0 || k >= n)
    throw std::invalid_argument("OnlineNmf::retire_component: no component " + std::to_string(k));
  if (n == 1) throw std::invalid_argument("OnlineNmf::retire_component: cannot retire the last");
  const Eigen::Index tail = n - k - 1;
  w_.middleCols(k, tail) = w_.rightCols(tail).eval();
  b_.middleCols(k, tail) = b_.rightCols(tail).eval();
  a_.middleCols(k, tail) = a_.rightCols(tail).eval();
  a_.middleRows(k, tail) = a_.bottomRows(tail).eval();
  w_.conservativeResize(Eigen::NoChange, n - 1);
  b_.conservativeResize(Eigen::NoChange, n - 1);
  a_.conservativeResize(n - 1, n - 1);
  refresh_gram();
}

}  // namespace rtnmf::nmf
