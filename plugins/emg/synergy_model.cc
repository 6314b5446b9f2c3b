#include "plugins/emg/synergy_model.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

#include "engine/nmf/metrics.h"
#include "engine/nmf/rank_selection.h"

namespace rtnmf::emg {

void normalize_columns(Eigen::Ref<Eigen::MatrixXf> w, nmf::Normalization norm) {
  if (norm == nmf::Normalization::kNone) return;
  for (Eigen::Index j = 0; j < w.cols(); ++j) {
    const float n = norm == nmf::Normalization::kL1 ? w.col(j).sum() : w.col(j).norm();
    if (n > 0) w.col(j) /= n;
  }
}

namespace {

void permute(Eigen::MatrixXf& w, Eigen::MatrixXf* h, const std::vector<int>& order) {
  Eigen::MatrixXf w2(w.rows(), w.cols());
  for (std::size_t j = 0; j < order.size(); ++j) w2.col(j) = w.col(order[j]);
  w = w2;
  if (h && h->rows() == w.cols()) {
    Eigen::MatrixXf h2(h->rows(), h->cols());
    for (std::size_t j = 0; j < order.size(); ++j) h2.row(j) = h->row(order[j]);
    *h = h2;
  }
}

}  // namespace

void order_components(Eigen::MatrixXf& w, Eigen::MatrixXf* h) {
  const int k = static_cast<int>(w.cols());
  std::vector<int> order(k);
  std::iota(order.begin(), order.end(), 0);
  std::vector<Eigen::Index> peak(k);
  std::vector<float> peak_value(k);
  for (int j = 0; j < k; ++j) peak_value[j] = w.col(j).maxCoeff(&peak[j]);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    if (peak[a] != peak[b]) return peak[a] < peak[b];
    return peak_value[a] > peak_value[b];
  });
  permute(w, h, order);
}

std::vector<double> align_components(const Eigen::MatrixXf& reference, Eigen::MatrixXf& w,
                                     Eigen::MatrixXf* h) {
  const nmf::FactorMatch m = nmf::match_factors(reference, w);
  std::vector<double> cosine(reference.cols(), 0.0);
  std::vector<int> order;
  std::vector<bool> used(w.cols(), false);
  std::vector<int> est_of(reference.cols(), -1);
  for (const nmf::FactorPair& p : m.pairs) {
    est_of[p.reference] = p.estimate;
    cosine[p.reference] = p.similarity;
  }
  for (int r = 0; r < reference.cols(); ++r) {
    if (est_of[r] >= 0) {
      order.push_back(est_of[r]);
      used[est_of[r]] = true;
    }
  }
  // Unmatched new components: canonical order after the matched ones.
  Eigen::MatrixXf rest(w.rows(), 0);
  std::vector<int> rest_idx;
  for (int j = 0; j < w.cols(); ++j)
    if (!used[j]) rest_idx.push_back(j);
  if (!rest_idx.empty()) {
    Eigen::MatrixXf wr(w.rows(), static_cast<Eigen::Index>(rest_idx.size()));
    for (std::size_t i = 0; i < rest_idx.size(); ++i) wr.col(i) = w.col(rest_idx[i]);
    std::vector<int> idx(rest_idx.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::vector<Eigen::Index> peak(idx.size());
    for (std::size_t i = 0; i < idx.size(); ++i) wr.col(i).maxCoeff(&peak[i]);
    std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return peak[a] < peak[b]; });
    for (int i : idx) order.push_back(rest_idx[i]);
  }
  permute(w, h, order);
  return cosine;
}

int choose_rank(const std::vector<double>& vaf_by_rank, double threshold, double gain,
                int max_rank) {
  const int n = static_cast<int>(vaf_by_rank.size());
  const int top = std::min(n, max_rank);
  for (int k = 1; k <= top; ++k) {
    if (vaf_by_rank[k - 1] < threshold) continue;
    if (gain <= 0 || k == n || vaf_by_rank[k] - vaf_by_rank[k - 1] < gain) return k;
  }
  return std::max(0, top);
}

Calibration calibrate_synergies(const Eigen::Ref<const Eigen::MatrixXf>& x,
                                const CalibrationOptions& options) {
  if (x.cols() == 0 || x.rows() == 0) {
    throw std::invalid_argument("calibration window is empty");
  }
  nmf::validate_nonnegative(x);
  const int channels = static_cast<int>(x.rows());
  const Eigen::MatrixXf* prev = options.previous;
  if (prev && prev->rows() != channels) {
    throw std::invalid_argument("previous synergies have " + std::to_string(prev->rows()) +
                                " channels, the data " + std::to_string(channels));
  }
  nmf::BatchNmfOptions o;
  o.seed = options.seed;
  o.max_iter = options.max_iter;
  o.normalize = options.normalize;
  o.threads = 1;  // deterministic and off the fast path's core
  Calibration cal;
  auto fit = [&](int k) {
    o.rank = k;
    if (prev && prev->cols() == k) {
      o.init = nmf::NmfInit::kGiven;
      Eigen::MatrixXf w0 = *prev;
      // Zero columns would stay zero under multiplicative-style updates; lift them a little.
      w0.array() += 1e-3f * w0.maxCoeff();
      return nmf::fit_nmf(x, o, &w0, nullptr);
    }
    // NNDSVDA start, and the rank selection's random starts (same seeds) as replicates: the
    // lowest objective wins. NNDSVDA alone lands in a poor local minimum on some recordings
    // (simulated seed 11: objective 33.8 vs 29.9, matched cosine 0.84 vs 0.99).
    o.init = nmf::NmfInit::kNndsvda;
    nmf::NmfResult best_run = nmf::fit_nmf(x, o);
    for (int r = 0; r < options.rank_runs; ++r) {
      o.init = nmf::NmfInit::kRandom;
      o.seed =
          options.seed + 1000003ULL * static_cast<std::uint64_t>(k) + static_cast<std::uint64_t>(r);
      nmf::NmfResult run = nmf::fit_nmf(x, o);
      if (run.objective.back() < best_run.objective.back()) best_run = std::move(run);
    }
    o.seed = options.seed;
    return best_run;
  };
  nmf::NmfResult best;
  if (options.rank > 0 || prev) {
    const int k = options.rank > 0 ? options.rank : static_cast<int>(prev->cols());
    if (k > channels) {
      throw std::invalid_argument("rank " + std::to_string(k) + " exceeds the " +
                                  std::to_string(channels) + " channels");
    }
    best = fit(k);
    cal.rank = k;
    cal.vaf = nmf::vaf(x, best.w, best.h);
    cal.vaf_by_rank.assign(k, 0.0);
    cal.vaf_by_rank[k - 1] = cal.vaf;
  } else {
    if (options.rank_runs < 1) throw std::invalid_argument("rank_runs must be at least 1");
    const int max_k = std::min(std::max(1, options.max_rank), channels);
    const bool knee = options.vaf_gain > 0;
    // Ranks one at a time (select_rank seeds every K on its own, so this equals one call over
    // the whole range), stopping as soon as the rule is decided.
    nmf::RankSelectionOptions ro;
    ro.runs = options.rank_runs;
    ro.seed = options.seed;
    ro.vaf_threshold = options.vaf_threshold;
    ro.nmf.max_iter = options.max_iter;
    ro.nmf.normalize = options.normalize;
    ro.nmf.threads = 1;
    const int last_k = std::min(knee ? max_k + 1 : max_k, channels);
    // select_rank's consensus matrix is samples² (and its clustering twice that in doubles):
    // long windows go in as an evenly strided subset of at most kRankSamples samples (envelopes
    // are smooth, so VAF on the subset estimates VAF on the whole); the final fit uses all.
    constexpr Eigen::Index kRankSamples = 2000;
    const Eigen::Index stride = (x.cols() + kRankSamples - 1) / kRankSamples;
    Eigen::MatrixXf subset;
    if (stride > 1) {
      subset.resize(x.rows(), (x.cols() + stride - 1) / stride);
      for (Eigen::Index t = 0; t < subset.cols(); ++t) subset.col(t) = x.col(t * stride);
    }
    for (int k = 1; k <= last_k; ++k) {
      ro.min_rank = ro.max_rank = k;
      const nmf::RankSelection rs =
          stride > 1 ? nmf::select_rank(subset, ro) : nmf::select_rank(x, ro);
      cal.vaf_by_rank.push_back(rs.rows.front().vaf);
      cal.cophenetic_by_rank.push_back(rs.rows.front().cophenetic);
      if (cal.rank_by_threshold == 0 && rs.recommended_by_vaf == k) cal.rank_by_threshold = k;
      const int decided =
          choose_rank(cal.vaf_by_rank, options.vaf_threshold, options.vaf_gain, max_k);
      // Decided once a K < k qualifies (its gain is known), or k itself qualifies without a
      // knee, or the range is exhausted.
      if ((decided < k && cal.vaf_by_rank[decided - 1] >= options.vaf_threshold) ||
          (!knee && cal.vaf_by_rank.back() >= options.vaf_threshold)) {
        break;
      }
    }
    cal.rank = choose_rank(cal.vaf_by_rank, options.vaf_threshold, options.vaf_gain, max_k);
    best = fit(cal.rank);
    cal.vaf = nmf::vaf(x, best.w, best.h);
  }
  cal.synergies = std::move(best.w);
  cal.activations = std::move(best.h);
  if (prev) {
    cal.matched_cosine = align_components(*prev, cal.synergies, &cal.activations);
    double s = 0;
    for (double c : cal.matched_cosine) s += c;
    cal.mean_matched_cosine = cal.matched_cosine.empty() ? 0 : s / cal.matched_cosine.size();
  } else {
    order_components(cal.synergies, &cal.activations);
  }
  return cal;
}

void OnlineSynergyUpdater::init(const Eigen::MatrixXf& w, double forgetting,
                                nmf::Normalization norm, const Eigen::MatrixXf* x,
                                const Eigen::MatrixXf* h) {
  norm_ = norm;
  nmf::OnlineNmfOptions o;
  o.forgetting = static_cast<float>(forgetting);
  o.warmup_power = 0.f;  // the statistics start from the calibration fit, not a random W
  o.unit_ball = false;   // columns are re-normalised exactly after each update instead
  o.dictionary_sweeps = 1;
  learner_ = std::make_unique<nmf::OnlineNmf>(w.rows(), w.cols(), o);
  learner_->set_dictionary(w);
  w_ = w;
  samples_ = 0;
  if (x && h) {
    for (Eigen::Index t = 0; t < x->cols(); ++t) accumulate(x->col(t).data(), h->col(t).data());
  }
}

void OnlineSynergyUpdater::accumulate(const float* x, const float* h) {
  const Eigen::Index k = learner_->rank();
  learner_->accumulate(Eigen::Map<const Eigen::VectorXf>(x, learner_->features()),
                       Eigen::Map<const Eigen::VectorXf>(h, k));
  ++samples_;
}

void OnlineSynergyUpdater::update(Eigen::MatrixXf& w, int sweeps) {
  for (int s = 0; s < sweeps; ++s) {
    learner_->update_dictionary();
    w_ = learner_->dictionary();
    normalize_columns(w_, norm_);
    learner_->set_dictionary(w_);
  }
  w = w_;
}

}  // namespace rtnmf::emg
