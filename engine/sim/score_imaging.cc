#include "engine/sim/score_imaging.h"

#include "engine/nmf/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace rtnmf::sim {
namespace detail {

std::vector<int> min_cost_assignment(const Eigen::MatrixXd& cost) {
  // One assignment solver for the whole project: the numerical core's Hungarian.
  return nmf::hungarian(cost);
}

double pearson(Eigen::Ref<const Eigen::VectorXf> a, Eigen::Ref<const Eigen::VectorXf> b) {
  const Eigen::VectorXd x = a.cast<double>().array() - a.cast<double>().mean();
  const Eigen::VectorXd y = b.cast<double>().array() - b.cast<double>().mean();
  const double den = x.norm() * y.norm();
  return den > 0 ? x.dot(y) / den : 0.0;
}

}  // namespace detail

namespace {

Eigen::SparseMatrix<float> masks(const Eigen::SparseMatrix<float>& a, float fraction,
                                 Eigen::VectorXd& area) {
  Eigen::SparseMatrix<float> m = a;
  area = Eigen::VectorXd::Zero(a.cols());
  for (Eigen::Index k = 0; k < m.outerSize(); ++k) {
    float mx = 0;
    for (Eigen::SparseMatrix<float>::InnerIterator it(m, k); it; ++it) mx = std::max(mx, it.value());
    for (Eigen::SparseMatrix<float>::InnerIterator it(m, k); it; ++it) {
      const bool on = mx > 0 && it.value() >= fraction * mx;
      it.valueRef() = on ? 1.0f : 0.0f;
      area(k) += on ? 1 : 0;
    }
  }
  m.prune(0.5f, 1.0f);
  return m;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double spike_f1(Eigen::Ref<const Eigen::VectorXf> truth, Eigen::Ref<const Eigen::VectorXf> found,
                const ImagingScoreOptions& o) {
  const Eigen::Index T = std::min(truth.size(), found.size());
  std::vector<Eigen::Index> ts, fs;
  const float mx = found.head(T).maxCoeff();
  for (Eigen::Index t = 0; t < T; ++t) {
    if (truth(t) > 0) ts.push_back(t);
    if (mx > 0 && found(t) > o.spike_threshold * mx) fs.push_back(t);
  }
  if (ts.empty() && fs.empty()) return 1.0;
  // Greedy in time order: each true spike takes the earliest unused detection within tolerance.
  std::size_t j = 0, hits = 0;
  for (Eigen::Index t : ts) {
    while (j < fs.size() && fs[j] < t - o.spike_tolerance) ++j;
    if (j < fs.size() && fs[j] <= t + o.spike_tolerance) {
      ++hits;
      ++j;
    }
  }
  return 2.0 * static_cast<double>(hits) / static_cast<double>(ts.size() + fs.size());
}

}  // namespace

ImagingScore score_imaging(const Eigen::SparseMatrix<float>& ta, const Eigen::MatrixXf& tc,
                           const Eigen::MatrixXf& tsp, const Eigen::SparseMatrix<float>& fa,
                           const Eigen::MatrixXf& fc, const Eigen::MatrixXf& fsp,
                           const ImagingScoreOptions& o) {
  if (ta.rows() != fa.rows()) {
    throw std::invalid_argument("score: truth footprints have " + std::to_string(ta.rows()) +
                                " pixels, result footprints " + std::to_string(fa.rows()));
  }
  ImagingScore s;
  s.n_truth = static_cast<int>(ta.cols());
  s.n_found = static_cast<int>(fa.cols());
  Eigen::VectorXd at, af;
  const Eigen::SparseMatrix<float> mt = masks(ta, o.mask_fraction, at);
  const Eigen::SparseMatrix<float> mf = masks(fa, o.mask_fraction, af);
  const Eigen::MatrixXd inter = Eigen::MatrixXf(Eigen::SparseMatrix<float>(mt.transpose()) * mf).cast<double>();
  const Eigen::MatrixXd dots = Eigen::MatrixXf(Eigen::SparseMatrix<float>(ta.transpose()) * fa).cast<double>();
  Eigen::VectorXd nt(ta.cols()), nf(fa.cols());
  for (Eigen::Index k = 0; k < ta.cols(); ++k) nt(k) = ta.col(k).norm();
  for (Eigen::Index k = 0; k < fa.cols(); ++k) nf(k) = fa.col(k).norm();
  Eigen::MatrixXd iou(ta.cols(), fa.cols());
  for (Eigen::Index i = 0; i < ta.cols(); ++i)
    for (Eigen::Index j = 0; j < fa.cols(); ++j) {
      const double uni = at(i) + af(j) - inter(i, j);
      iou(i, j) = uni > 0 ? inter(i, j) / uni : 0.0;
    }
  const Eigen::MatrixXd cost = 1.0 - iou.array();
  const std::vector<int> assign = detail::min_cost_assignment(cost);
  std::vector<double> cosines, corrs, sf1;
  const Eigen::Index T = std::min(tc.cols(), fc.cols());
  for (int i = 0; i < s.n_truth; ++i) {
    const int j = assign[static_cast<std::size_t>(i)];
    if (j < 0 || iou(i, j) < o.min_iou) continue;
    MatchedPair p;
    p.truth = i;
    p.found = j;
    p.iou = iou(i, j);
    p.cosine = nt(i) > 0 && nf(j) > 0 ? dots(i, j) / (nt(i) * nf(j)) : 0.0;
    if (T > 1 && i < tc.rows() && j < fc.rows()) {
      p.trace_corr = detail::pearson(tc.row(i).head(T).transpose(), fc.row(j).head(T).transpose());
    }
    if (tsp.size() > 0 && fsp.size() > 0 && i < tsp.rows() && j < fsp.rows()) {
      const Eigen::Index Ts = std::min(tsp.cols(), fsp.cols());
      p.spike_f1 = spike_f1(tsp.row(i).head(Ts).transpose(), fsp.row(j).head(Ts).transpose(), o);
      sf1.push_back(p.spike_f1);
    }
    cosines.push_back(p.cosine);
    corrs.push_back(p.trace_corr);
    s.pairs.push_back(p);
  }
  s.n_matched = static_cast<int>(s.pairs.size());
  s.precision = s.n_found ? static_cast<double>(s.n_matched) / s.n_found : 0.0;
  s.recall = s.n_truth ? static_cast<double>(s.n_matched) / s.n_truth : 0.0;
  s.f1 = s.precision + s.recall > 0 ? 2 * s.precision * s.recall / (s.precision + s.recall) : 0.0;
  s.median_cosine = median(cosines);
  s.median_trace_corr = median(corrs);
  s.median_spike_f1 = median(sf1);
  auto mean = [](const std::vector<double>& v) {
    double a = 0;
    for (double x : v) a += x;
    return v.empty() ? 0.0 : a / static_cast<double>(v.size());
  };
  s.mean_cosine = mean(cosines);
  s.mean_trace_corr = mean(corrs);
  return s;
}

std::string ImagingScore::to_json() const {
  std::ostringstream o;
  o.precision(6);
  o << "{\n  \"kind\": \"imaging\",\n  \"n_truth\": " << n_truth << ",\n  \"n_found\": " << n_found
    << ",\n  \"n_matched\": " << n_matched << ",\n  \"precision\": " << precision
    << ",\n  \"recall\": " << recall << ",\n  \"f1\": " << f1
    << ",\n  \"median_footprint_cosine\": " << median_cosine
    << ",\n  \"mean_footprint_cosine\": " << mean_cosine
    << ",\n  \"median_trace_correlation\": " << median_trace_corr
    << ",\n  \"mean_trace_correlation\": " << mean_trace_corr
    << ",\n  \"median_spike_f1\": " << median_spike_f1 << ",\n  \"pairs\": [";
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    const MatchedPair& p = pairs[i];
    o << (i ? ",\n" : "\n") << "    {\"truth\": " << p.truth << ", \"found\": " << p.found
      << ", \"iou\": " << p.iou << ", \"cosine\": " << p.cosine
      << ", \"trace_correlation\": " << p.trace_corr << ", \"spike_f1\": " << p.spike_f1 << "}";
  }
  o << (pairs.empty() ? "]\n}\n" : "\n  ]\n}\n");
  return o.str();
}

}  // namespace rtnmf::sim
