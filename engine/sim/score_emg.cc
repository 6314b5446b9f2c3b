#include "engine/sim/score_emg.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "engine/nmf/metrics.h"

namespace rtnmf::sim {

double pearson(const Eigen::Ref<const Eigen::VectorXf>& a,
               const Eigen::Ref<const Eigen::VectorXf>& b) {
  const Eigen::Index n = std::min(a.size(), b.size());
  if (n < 2) return 0;
  double ma = 0, mb = 0;
  for (Eigen::Index i = 0; i < n; ++i) {
    ma += a[i];
    mb += b[i];
  }
  ma /= n;
  mb /= n;
  double sab = 0, saa = 0, sbb = 0;
  for (Eigen::Index i = 0; i < n; ++i) {
    const double da = a[i] - ma, db = b[i] - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  if (saa <= 0 || sbb <= 0) return 0;
  return sab / std::sqrt(saa * sbb);
}

SynergyScore score_synergies(const Eigen::Ref<const Eigen::MatrixXf>& truth,
                             const Eigen::Ref<const Eigen::MatrixXf>& estimate,
                             const Eigen::Ref<const Eigen::MatrixXf>& truth_activations,
                             const Eigen::Ref<const Eigen::MatrixXf>& estimate_activations,
                             int max_lag) {
  if (truth.rows() != estimate.rows()) {
    throw std::invalid_argument("truth has " + std::to_string(truth.rows()) +
                                " channels, the estimate " + std::to_string(estimate.rows()));
  }
  SynergyScore s;
  const int kt = static_cast<int>(truth.cols());
  s.estimate_of.assign(kt, -1);
  s.cosine.assign(kt, 0.0);
  const nmf::FactorMatch m = nmf::match_factors(truth, estimate);
  for (const nmf::FactorPair& p : m.pairs) {
    s.estimate_of[p.reference] = p.estimate;
    s.cosine[p.reference] = p.similarity;
  }
  double sum = 0, mn = kt ? 1.0 : 0.0;
  for (double c : s.cosine) {
    sum += c;
    mn = std::min(mn, c);
  }
  s.mean_cosine = kt ? sum / kt : 0;
  s.min_cosine = mn;
  if (truth_activations.size() > 0 && estimate_activations.size() > 0) {
    const Eigen::Index t = std::min(truth_activations.cols(), estimate_activations.cols());
    double csum = 0;
    for (int k = 0; k < kt; ++k) {
      double best = 0;
      int best_lag = 0;
      const int e = s.estimate_of[k];
      if (e >= 0 && e < estimate_activations.rows() && k < truth_activations.rows()) {
        best = -2;
        for (int lag = 0; lag <= max_lag && lag < t - 1; ++lag) {
          const Eigen::VectorXf a = truth_activations.row(k).segment(0, t - lag).transpose();
          const Eigen::VectorXf b = estimate_activations.row(e).segment(lag, t - lag).transpose();
          const double r = pearson(a, b);
          if (r > best) {
            best = r;
            best_lag = lag;
          }
        }
      }
      s.activation_corr.push_back(best);
      s.activation_lag.push_back(best_lag);
      csum += best;
    }
    s.mean_activation_corr = kt ? csum / kt : 0;
  }
  return s;
}

std::string score_json(const SynergyScore& s) {
  std::string out = "{\"components\": [";
  char buf[256];
  for (std::size_t k = 0; k < s.cosine.size(); ++k) {
    std::snprintf(buf, sizeof buf, "%s{\"truth\": %zu, \"estimate\": %d, \"cosine\": %.6f",
                  k ? ", " : "", k, s.estimate_of[k], s.cosine[k]);
    out += buf;
    if (k < s.activation_corr.size()) {
      std::snprintf(buf, sizeof buf, ", \"activation_corr\": %.6f, \"lag\": %d",
                    s.activation_corr[k], s.activation_lag[k]);
      out += buf;
    }
    out += "}";
  }
  std::snprintf(buf, sizeof buf, "], \"mean_cosine\": %.6f, \"min_cosine\": %.6f", s.mean_cosine,
                s.min_cosine);
  out += buf;
  if (!s.activation_corr.empty()) {
    std::snprintf(buf, sizeof buf, ", \"mean_activation_corr\": %.6f", s.mean_activation_corr);
    out += buf;
  }
  return out + "}";
}

}  // namespace rtnmf::sim
