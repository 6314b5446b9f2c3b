// NNLS solvers: HALS coordinate descent and block principal pivoting. See nnls.h.
#include "engine/nmf/nnls.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

namespace rtnmf::nmf {

namespace {
// Kim & Park's backup rule: after this many full exchanges that do not reduce the number of
// infeasible variables, exchange one variable at a time (guarantees finite termination).
constexpr int kBppBackup = 3;
}  // namespace

NnlsMethod parse_nnls_method(const char* name) {
  if (std::strcmp(name, "auto") == 0) return NnlsMethod::kAuto;
  if (std::strcmp(name, "hals") == 0) return NnlsMethod::kHals;
  if (std::strcmp(name, "bpp") == 0) return NnlsMethod::kBpp;
  throw std::invalid_argument(std::string("unknown NNLS method '") + name +
                              "' (expected auto, hals or bpp)");
}

const char* to_string(NnlsMethod m) {
  switch (m) {
    case NnlsMethod::kAuto: return "auto";
    case NnlsMethod::kHals: return "hals";
    case NnlsMethod::kBpp: return "bpp";
  }
  return "?";
}

float max_normalized_correlation(const Eigen::Ref<const Eigen::MatrixXf>& gram) {
  const Eigen::Index k = gram.rows();
  float worst = 0.f;
  for (Eigen::Index j = 0; j < k; ++j) {
    const float gjj = gram(j, j);
    if (!(gjj > 0.f)) continue;
    for (Eigen::Index i = 0; i < j; ++i) {
      const float gii = gram(i, i);
      if (!(gii > 0.f)) continue;
      worst = std::max(worst, std::abs(gram(i, j)) / std::sqrt(gii * gjj));
    }
  }
  return worst;
}

float mean_normalized_row_sum(const Eigen::Ref<const Eigen::MatrixXf>& gram) {
  const Eigen::Index k = gram.rows();
  if (k <= 1) return 0.f;
  double total = 0.0;
  for (Eigen::Index j = 0; j < k; ++j) {
    const float gjj = gram(j, j);
    if (!(gjj > 0.f)) continue;
    for (Eigen::Index i = 0; i < j; ++i) {
      const float gii = gram(i, i);
      if (!(gii > 0.f)) continue;
      total += 2.0 * std::abs(gram(i, j)) / std::sqrt(static_cast<double>(gii) * gjj);
    }
  }
  return static_cast<float>(total / static_cast<double>(k));
}

NnlsMethod choose_nnls_method(const Eigen::Ref<const Eigen::MatrixXf>& gram,
                              float auto_max_row_sum) {
  return mean_normalized_row_sum(gram) < auto_max_row_sum ? NnlsMethod::kHals : NnlsMethod::kBpp;
}

NnlsSolver::NnlsSolver(Eigen::Index k, const NnlsOptions& options) : options_(options) {
  resize(k);
}

void NnlsSolver::resize(Eigen::Index k) {
  if (k < 0) throw std::invalid_argument("NnlsSolver: negative size");
  k_ = k;
  dict_ = Dict::kNone;
  gram_.setZero(k, k);
  wtx_.setZero(k);
  grad_.setZero(k);
  x_.setZero(k);
  y_.setZero(k);
  best_x_.setZero(k);
  rhs_.setZero(k);
  chol_.setZero(k, k);
  passive_index_.setZero(k);
  passive_.setConstant(k, false);
  resolved_ = options_.method == NnlsMethod::kAuto ? NnlsMethod::kHals : options_.method;
}

void NnlsSolver::set_options(const NnlsOptions& options) {
  options_ = options;
  if (options_.method != NnlsMethod::kAuto) {
    resolved_ = options_.method;
  } else if (dict_ != Dict::kNone) {
    resolved_ = choose_nnls_method(gram_, options_.auto_max_row_sum);
  }
}

void NnlsSolver::set_dictionary(const Eigen::Ref<const Eigen::MatrixXf>& w) {
  if (w.cols() == 0 || w.rows() == 0) throw std::invalid_argument("NnlsSolver: empty dictionary");
  if (w.cols() != k_) resize(w.cols());
  dense_w_ = w;
  gram_.noalias() = dense_w_.transpose() * dense_w_;
  dict_ = Dict::kDense;
  set_options(options_);
}

void NnlsSolver::set_dictionary(const Eigen::Ref<const Eigen::MatrixXf>& w,
                                const Eigen::Ref<const Eigen::MatrixXf>& gram) {
  if (w.cols() == 0 || w.rows() == 0) throw std::invalid_argument("NnlsSolver: empty dictionary");
  if (gram.rows() != w.cols() || gram.cols() != w.cols())
    throw std::invalid_argument("NnlsSolver: Gram is not K x K for the dictionary given");
  if (w.cols() != k_) resize(w.cols());
  dense_w_ = w;
  gram_ = gram;
  dict_ = Dict::kDense;
  set_options(options_);
}

void NnlsSolver::set_dictionary(const Eigen::SparseMatrix<float, Eigen::ColMajor>& w) {
  if (w.cols() == 0 || w.rows() == 0) throw std::invalid_argument("NnlsSolver: empty dictionary");
  if (w.cols() != k_) resize(w.cols());
  sparse_w_ = w;
  sparse_w_.makeCompressed();
  Eigen::SparseMatrix<float, Eigen::ColMajor> g = sparse_w_.transpose() * sparse_w_;
  gram_ = Eigen::MatrixXf(g);
  dict_ = Dict::kSparse;
  set_options(options_);
}

void NnlsSolver::set_gram(const Eigen::Ref<const Eigen::MatrixXf>& gram) {
  if (gram.rows() != gram.cols()) throw std::invalid_argument("NnlsSolver: Gram is not square");
  if (gram.cols() != k_) resize(gram.cols());
  gram_ = gram;
  dict_ = Dict::kGramOnly;
  set_options(options_);
}

NnlsResult NnlsSolver::solve(const Eigen::Ref<const Eigen::VectorXf>& x,
                             Eigen::Ref<Eigen::VectorXf> h, bool warm) {
  if (dict_ == Dict::kDense) {
    wtx_.noalias() = dense_w_.transpose() * x;
  } else if (dict_ == Dict::kSparse) {
    wtx_.noalias() = sparse_w_.transpose() * x;
  } else {
    throw std::logic_error("NnlsSolver::solve: no dictionary set (use set_dictionary)");
  }
  return solve_gram(wtx_, h, warm);
}

NnlsResult NnlsSolver::solve_gram(const Eigen::Ref<const Eigen::VectorXf>& b,
                                  Eigen::Ref<Eigen::VectorXf> h, bool warm) {
  if (!warm) h.setZero();
  if (resolved_ == NnlsMethod::kBpp) return bpp(gram_, b, h, warm);
  return hals(gram_, b, h, options_.max_iter);
}

NnlsResult NnlsSolver::solve_gram(const Eigen::Ref<const Eigen::MatrixXf>& gram,
                                  const Eigen::Ref<const Eigen::VectorXf>& b,
                                  Eigen::Ref<Eigen::VectorXf> h, bool warm) {
  if (!warm) h.setZero();
  NnlsMethod m = options_.method;
  if (m == NnlsMethod::kAuto) m = choose_nnls_method(gram, options_.auto_max_row_sum);
  if (m == NnlsMethod::kBpp) return bpp(gram, b, h, warm);
  return hals(gram, b, h, options_.max_iter);
}

NnlsResult NnlsSolver::hals(const Eigen::Ref<const Eigen::MatrixXf>& gram,
                            const Eigen::Ref<const Eigen::VectorXf>& b,
                            Eigen::Ref<Eigen::VectorXf> h, int max_sweeps) {
  const float l1 = options_.l1, l2 = options_.l2;
  const float tol2 = options_.tol * options_.tol;
  NnlsResult r;
  r.method = NnlsMethod::kHals;
  // Infeasible starts (negative entries) are projected first.
  h = h.cwiseMax(0.f);
  // grad = (G + l2 I) h − b + l1, kept exact by rank-one updates as coordinates move.
  grad_.noalias() = gram * h;
  grad_ += l2 * h - b;
  grad_.array() += l1;
  for (int sweep = 0; sweep < max_sweeps; ++sweep) {
    double step = 0.0, size = 0.0;
    for (Eigen::Index k = 0; k < k_; ++k) {
      const float d = gram(k, k) + l2;
      const float old = h[k];
      float next;
      if (d > 0.f) {
        next = std::max(0.f, old - grad_[k] / d);
      } else {
        next = 0.f;  // an all-zero dictionary column explains nothing
      }
      const float delta = next - old;
      if (delta != 0.f) {
        grad_ += delta * gram.col(k);
        grad_[k] += l2 * delta;
        h[k] = next;
      }
      step += static_cast<double>(d) * delta * delta;
      size += static_cast<double>(d) * next * next;
    }
    r.iterations = sweep + 1;
    if (step <= tol2 * size) {
      r.converged = true;
      break;
    }
  }
  return r;
}

bool NnlsSolver::solve_passive(const Eigen::Ref<const Eigen::MatrixXf>& gram,
                               const Eigen::Ref<const Eigen::VectorXf>& b, Eigen::Index n) {
  const float l1 = options_.l1, l2 = options_.l2;
  // Up-looking Cholesky A = UᵀU of A = G_FF + l2 I in the upper triangle of chol_: every inner
  // product runs over contiguous column segments, and nothing is allocated.
  for (int attempt = 0; attempt < 2; ++attempt) {
    float ridge = l2;
    if (attempt == 1) {
      // Singular passive block (e.g. duplicated dictionary columns): regularise slightly.
      float trace = 0.f;
      for (Eigen::Index i = 0; i < n; ++i) trace += gram(passive_index_[i], passive_index_[i]);
      ridge += 1e-6f * trace / static_cast<float>(std::max<Eigen::Index>(n, 1));
    }
    bool ok = true;
    for (Eigen::Index j = 0; j < n && ok; ++j) {
      const Eigen::Index gj = passive_index_[j];
      for (Eigen::Index i = 0; i < j; ++i) {
        const float a = gram(passive_index_[i], gj);
        chol_(i, j) = (a - chol_.col(i).head(i).dot(chol_.col(j).head(i))) / chol_(i, i);
      }
      const float ajj = gram(gj, gj) + ridge;
      const float s = ajj - chol_.col(j).head(j).squaredNorm();
      if (!(s > 1e-10f * std::max(ajj, 1e-30f))) {
        ok = false;
        break;
      }
      chol_(j, j) = std::sqrt(s);
    }
    if (!ok) continue;
    // Uᵀ z = b_F − l1, then U x_F = z.
    for (Eigen::Index i = 0; i < n; ++i) {
      const float r = b[passive_index_[i]] - l1 - chol_.col(i).head(i).dot(rhs_.head(i));
      rhs_[i] = r / chol_(i, i);
    }
    for (Eigen::Index j = n - 1; j >= 0; --j) {
      rhs_[j] /= chol_(j, j);
      rhs_.head(j) -= rhs_[j] * chol_.col(j).head(j);
    }
    x_.setZero();
    for (Eigen::Index i = 0; i < n; ++i) x_[passive_index_[i]] = rhs_[i];
    return true;
  }
  return false;
}

NnlsResult NnlsSolver::bpp(const Eigen::Ref<const Eigen::MatrixXf>& gram,
                           const Eigen::Ref<const Eigen::VectorXf>& b,
                           Eigen::Ref<Eigen::VectorXf> h, bool warm) {
  const float l1 = options_.l1, l2 = options_.l2;
  NnlsResult r;
  r.method = NnlsMethod::kBpp;
  for (Eigen::Index i = 0; i < k_; ++i) passive_[i] = warm && h[i] > 0.f;
  // Feasibility thresholds relative to the problem's scale, so round-off at the optimum does
  // not read as infeasibility.
  const float bscale = std::max(b.cwiseAbs().maxCoeff() + std::abs(l1), 1e-30f);
  Eigen::Index best_infeasible = k_ + 1;
  int backup = kBppBackup;
  x_ = h.cwiseMax(0.f);  // the fallback's start if the very first passive solve fails
  for (int it = 0; it < options_.max_iter; ++it) {
    Eigen::Index n = 0;
    for (Eigen::Index i = 0; i < k_; ++i)
      if (passive_[i]) passive_index_[n++] = static_cast<int>(i);
    if (!solve_passive(gram, b, n)) break;
    // y = (G + l2 I) x − b + l1: the gradient, whose passive entries are 0 by construction.
    y_.noalias() = gram * x_;
    y_ += l2 * x_ - b;
    y_.array() += l1;
    const float xscale = std::max(x_.cwiseAbs().maxCoeff(), 1e-30f);
    const float tol_x = 1e-6f * xscale, tol_y = 1e-6f * bscale;
    Eigen::Index infeasible = 0, last = -1;
    for (Eigen::Index i = 0; i < k_; ++i) {
      const bool bad = passive_[i] ? (x_[i] < -tol_x) : (y_[i] < -tol_y);
      if (bad) {
        ++infeasible;
        last = i;
      }
    }
    r.iterations = it + 1;
    if (infeasible == 0) {
      h = x_.cwiseMax(0.f);
      r.converged = true;
      return r;
    }
    if (infeasible < best_infeasible) {
      best_infeasible = infeasible;
      backup = kBppBackup;
    } else if (backup > 0) {
      --backup;
    } else {
      passive_[last] = !passive_[last];  // Murty's single exchange of the largest index
      continue;
    }
    for (Eigen::Index i = 0; i < k_; ++i) {
      const bool bad = passive_[i] ? (x_[i] < -tol_x) : (y_[i] < -tol_y);
      if (bad) passive_[i] = !passive_[i];
    }
  }
  // Pivoting did not settle (or the passive block was singular): finish with coordinate descent
  // from the projected last iterate, which always makes progress.
  h = x_.cwiseMax(0.f);
  NnlsResult fallback = hals(gram, b, h, std::max(options_.max_iter, 50));
  fallback.iterations += r.iterations;
  fallback.method = NnlsMethod::kBpp;
  return fallback;
}

}  // namespace rtnmf::nmf
