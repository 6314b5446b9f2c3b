// Fit metrics and Hungarian matching. See metrics.h.
#include "engine/nmf/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace rtnmf::nmf {

namespace {

std::string shape(const char* name, Eigen::Index r, Eigen::Index c) {
  return std::string(name) + " is " + std::to_string(r) + "x" + std::to_string(c);
}

void check_shapes(const Eigen::Ref<const Eigen::MatrixXf>& x,
                  const Eigen::Ref<const Eigen::MatrixXf>& w,
                  const Eigen::Ref<const Eigen::MatrixXf>& h) {
  if (w.rows() != x.rows() || h.cols() != x.cols() || w.cols() != h.rows())
    throw std::invalid_argument("shape mismatch: " + shape("X", x.rows(), x.cols()) + ", " +
                                shape("W", w.rows(), w.cols()) + ", " +
                                shape("H", h.rows(), h.cols()));
}

// ‖X − W H‖² accumulated in double over blocks of samples (bounded memory).
double residual_squared(const Eigen::Ref<const Eigen::MatrixXf>& x,
                        const Eigen::Ref<const Eigen::MatrixXf>& w,
                        const Eigen::Ref<const Eigen::MatrixXf>& h) {
  check_shapes(x, w, h);
  constexpr Eigen::Index kBlock = 1024;
  double total = 0.0;
  Eigen::MatrixXf r;
  for (Eigen::Index j0 = 0; j0 < x.cols(); j0 += kBlock) {
    const Eigen::Index n = std::min(kBlock, x.cols() - j0);
    r = x.middleCols(j0, n);
    r.noalias() -= w * h.middleCols(j0, n);
    total += r.cast<double>().squaredNorm();
  }
  return total;
}

}  // namespace

double relative_error(const Eigen::Ref<const Eigen::MatrixXf>& x,
                      const Eigen::Ref<const Eigen::MatrixXf>& w,
                      const Eigen::Ref<const Eigen::MatrixXf>& h) {
  const double res = residual_squared(x, w, h);
  const double norm = x.cast<double>().squaredNorm();
  if (norm == 0.0) return res == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(res / norm);
}

double vaf(const Eigen::Ref<const Eigen::MatrixXf>& x, const Eigen::Ref<const Eigen::MatrixXf>& w,
           const Eigen::Ref<const Eigen::MatrixXf>& h) {
  const double res = residual_squared(x, w, h);
  const double norm = x.cast<double>().squaredNorm();
  return norm == 0.0 ? (res == 0.0 ? 1.0 : -std::numeric_limits<double>::infinity())
                     : 1.0 - res / norm;
}

double r_squared(const Eigen::Ref<const Eigen::MatrixXf>& x,
                 const Eigen::Ref<const Eigen::MatrixXf>& w,
                 const Eigen::Ref<const Eigen::MatrixXf>& h) {
  const double res = residual_squared(x, w, h);
  Eigen::MatrixXd xd = x.cast<double>();
  Eigen::VectorXd mean = xd.rowwise().mean();
  const double tot = (xd.colwise() - mean).squaredNorm();
  return tot == 0.0 ? (res == 0.0 ? 1.0 : -std::numeric_limits<double>::infinity())
                    : 1.0 - res / tot;
}

Eigen::MatrixXd cosine_similarity(const Eigen::Ref<const Eigen::MatrixXf>& a,
                                  const Eigen::Ref<const Eigen::MatrixXf>& b) {
  if (a.rows() != b.rows())
    throw std::invalid_argument("cosine_similarity: " + shape("a", a.rows(), a.cols()) + ", " +
                                shape("b", b.rows(), b.cols()));
  Eigen::MatrixXd ad = a.cast<double>(), bd = b.cast<double>();
  for (Eigen::Index j = 0; j < ad.cols(); ++j) {
    const double n = ad.col(j).norm();
    if (n > 0) ad.col(j) /= n;
  }
  for (Eigen::Index j = 0; j < bd.cols(); ++j) {
    const double n = bd.col(j).norm();
    if (n > 0) bd.col(j) /= n;
  }
  Eigen::MatrixXd s = ad.transpose() * bd;
  return s;
}

std::vector<int> hungarian(const Eigen::Ref<const Eigen::MatrixXd>& cost) {
  const Eigen::Index rows = cost.rows(), cols = cost.cols();
  if (rows == 0 || cols == 0) return std::vector<int>(static_cast<size_t>(rows), -1);
  // The potentials algorithm needs n ≤ m: solve the transpose otherwise.
  const bool transposed = rows > cols;
  Eigen::MatrixXd a = transposed ? Eigen::MatrixXd(cost.transpose()) : Eigen::MatrixXd(cost);
  const int n = static_cast<int>(a.rows()), m = static_cast<int>(a.cols());
  const double inf = std::numeric_limits<double>::infinity();
  // 1-based arrays: p[j] is the row matched to column j (0 = none); u, v the dual potentials.
  std::vector<double> u(n + 1, 0.0), v(m + 1, 0.0), minv(m + 1);
  std::vector<int> p(m + 1, 0), way(m + 1, 0);
  std::vector<char> used(m + 1);
  for (int i = 1; i <= n; ++i) {
    p[0] = i;
    int j0 = 0;
    std::fill(minv.begin(), minv.end(), inf);
    std::fill(used.begin(), used.end(), 0);
    do {
      used[j0] = 1;
      const int i0 = p[j0];
      double delta = inf;
      int j1 = 0;
      for (int j = 1; j <= m; ++j) {
        if (used[j]) continue;
        const double cur = a(i0 - 1, j - 1) - u[i0] - v[j];
        if (cur < minv[j]) {
          minv[j] = cur;
          way[j] = j0;
        }
        if (minv[j] < delta) {
          delta = minv[j];
          j1 = j;
        }
      }
      for (int j = 0; j <= m; ++j) {
        if (used[j]) {
          u[p[j]] += delta;
          v[j] -= delta;
        } else {
          minv[j] -= delta;
        }
      }
      j0 = j1;
    } while (p[j0] != 0);
    do {
      const int j1 = way[j0];
      p[j0] = p[j1];
      j0 = j1;
    } while (j0 != 0);
  }
  std::vector<int> assign(static_cast<size_t>(rows), -1);
  for (int j = 1; j <= m; ++j) {
    if (p[j] == 0) continue;
    if (transposed) {
      assign[static_cast<size_t>(j - 1)] = p[j] - 1;
    } else {
      assign[static_cast<size_t>(p[j] - 1)] = j - 1;
    }
  }
  return assign;
}

FactorMatch match_factors(const Eigen::Ref<const Eigen::MatrixXf>& reference,
                          const Eigen::Ref<const Eigen::MatrixXf>& estimate) {
  Eigen::MatrixXd sim = cosine_similarity(reference, estimate);
  std::vector<int> assign = hungarian(-sim);
  FactorMatch m;
  m.min_similarity = std::numeric_limits<double>::infinity();
  for (int i = 0; i < static_cast<int>(assign.size()); ++i) {
    if (assign[i] < 0) continue;
    FactorPair p{i, assign[i], sim(i, assign[i])};
    m.pairs.push_back(p);
    m.mean_similarity += p.similarity;
    m.min_similarity = std::min(m.min_similarity, p.similarity);
  }
  if (m.pairs.empty()) {
    m.min_similarity = 0.0;
  } else {
    m.mean_similarity /= static_cast<double>(m.pairs.size());
  }
  return m;
}

}  // namespace rtnmf::nmf
