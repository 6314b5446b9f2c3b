#include "engine/nmf/oasis.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>

namespace rtnmf::nmf {
namespace {

struct OfflinePool {
  float v, w, gl;  // value at start, weight, g^len
  std::int64_t start;
  std::int32_t len;
};

// Merges pool b into the earlier pool a (a's spike at b.start would be below s_min).
template <typename Pool>
void merge_into(Pool& a, const Pool& b) {
  const float gl = a.gl;
  const float w = a.w + gl * gl * b.w;
  a.v = (a.w * a.v + gl * b.w * b.v) / w;
  a.w = w;
  a.gl *= b.gl;
  if (a.gl < 1e-30f) a.gl = 0.0f;  // stay out of denormals on long silent pools
  a.len += b.len;
}

// g^(len - 1) from g^len.
inline float end_factor(float gl, std::int32_t len, float g) {
  return g > 0 ? gl / g : (len == 1 ? 1.0f : 0.0f);
}

// Autocovariance of y at lags 0..max_lag (mean removed). Allocates.
Eigen::VectorXd autocov(Eigen::Ref<const Eigen::VectorXf> y, int max_lag) {
  const Eigen::Index n = y.size();
  const double mean = y.cast<double>().mean();
  Eigen::VectorXd yc = y.cast<double>().array() - mean;
  Eigen::VectorXd a(max_lag + 1);
  for (int k = 0; k <= max_lag; ++k) {
    a(k) = k < n ? yc.head(n - k).dot(yc.tail(n - k)) / static_cast<double>(n) : 0.0;
  }
  return a;
}

}  // namespace

void oasis_ar1(Eigen::Ref<const Eigen::VectorXf> y, float g, float s_min, Eigen::Ref<Eigen::VectorXf> c,
               Eigen::Ref<Eigen::VectorXf> s) {
  const Eigen::Index n = y.size();
  std::vector<OfflinePool> pools;
  pools.reserve(static_cast<std::size_t>(n));
  for (Eigen::Index t = 0; t < n; ++t) {
    pools.push_back({y(t), 1.0f, g, t, 1});
    while (pools.size() > 1) {
      OfflinePool& a = pools[pools.size() - 2];
      const OfflinePool& b = pools.back();
      if (b.v >= a.gl * a.v + s_min) break;
      merge_into(a, b);
      pools.pop_back();
    }
  }
  for (const OfflinePool& p : pools) {
    float v = std::max(p.v, 0.0f);
    for (std::int32_t k = 0; k < p.len; ++k) {
      c(p.start + k) = v;
      v *= g;
    }
  }
  for (Eigen::Index t = 0; t < n; ++t) s(t) = t == 0 ? c(0) : c(t) - g * c(t - 1);
}

float estimate_noise_sd(Eigen::Ref<const Eigen::VectorXf> y) {
  if (y.size() < 3) return 0.0f;
  std::vector<float> d(static_cast<std::size_t>(y.size() - 1));
  for (Eigen::Index t = 1; t < y.size(); ++t) d[static_cast<std::size_t>(t - 1)] = y(t) - y(t - 1);
  auto med = [](std::vector<float>& v) {
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
  };
  const float m = med(d);
  for (float& x : d) x = std::fabs(x - m);
  // MAD of N(0, 2 sigma^2) differences: 0.6745 * sqrt(2) sigma.
  return med(d) / (0.6745f * std::sqrt(2.0f));
}

float estimate_ar1(Eigen::Ref<const Eigen::VectorXf> y, float noise_sd, int max_lag, int min_lag) {
  Eigen::VectorXd a = autocov(y, max_lag);
  Eigen::VectorXd prev = a;
  prev(0) -= static_cast<double>(noise_sd) * noise_sd;  // remove white noise from lag 0
  double num = 0, den = 0;
  for (int k = std::max(1, min_lag); k <= max_lag; ++k) {
    num += a(k) * prev(k - 1);
    den += prev(k - 1) * prev(k - 1);
  }
  const double g = den > 0 ? num / den : 0.0;
  return static_cast<float>(std::clamp(g, 0.0, 0.995));
}

Eigen::Vector2f estimate_ar2(Eigen::Ref<const Eigen::VectorXf> y, float noise_sd, int max_lag) {
  max_lag = std::max(max_lag, 3);
  Eigen::VectorXd a = autocov(y, max_lag);
  Eigen::VectorXd prev = a;
  prev(0) -= static_cast<double>(noise_sd) * noise_sd;
  Eigen::MatrixXd m(max_lag, 2);
  Eigen::VectorXd rhs(max_lag);
  for (int k = 1; k <= max_lag; ++k) {
    m(k - 1, 0) = prev(k - 1);
    m(k - 1, 1) = prev(std::abs(k - 2));
    rhs(k - 1) = a(k);
  }
  Eigen::Vector2d g = m.colPivHouseholderQr().solve(rhs);
  // Keep the process stable (roots inside the unit circle).
  if (!(std::abs(g(1)) < 1.0 && g(0) + g(1) < 1.0 && g(1) - g(0) < 1.0)) {
    return {estimate_ar1(y, noise_sd, max_lag), 0.0f};
  }
  return g.cast<float>();
}

void OnlineOasis::init(int k, int max_pools) {
  k_ = k;
  max_pools_ = std::max(max_pools, 2);
  t_ = 0;
  pools_.assign(static_cast<std::size_t>(k) * max_pools_, Pool{});
  head_.assign(static_cast<std::size_t>(k), 0);
  count_.assign(static_cast<std::size_t>(k), 0);
  g_.assign(static_cast<std::size_t>(k), 0.9f);
  s_min_.assign(static_cast<std::size_t>(k), 0.0f);
  baseline_.assign(static_cast<std::size_t>(k), 0.0f);
}

void OnlineOasis::reset(int i) {
  head_[static_cast<std::size_t>(i)] = 0;
  count_[static_cast<std::size_t>(i)] = 0;
}

void OnlineOasis::set_params(int i, float g, float s_min, float baseline) {
  const std::size_t u = static_cast<std::size_t>(i);
  if (g != g_[u]) reset(i);
  g_[u] = g;
  s_min_[u] = s_min;
  baseline_[u] = baseline;
}

void OnlineOasis::resize(int k) {
  const int old = k_;
  std::vector<Pool> pools(static_cast<std::size_t>(k) * max_pools_);
  for (int i = 0; i < std::min(k, old); ++i) {
    std::copy_n(pools_.begin() + static_cast<std::ptrdiff_t>(i) * max_pools_, max_pools_,
                pools.begin() + static_cast<std::ptrdiff_t>(i) * max_pools_);
  }
  pools_.swap(pools);
  head_.resize(static_cast<std::size_t>(k), 0);
  count_.resize(static_cast<std::size_t>(k), 0);
  g_.resize(static_cast<std::size_t>(k), 0.9f);
  s_min_.resize(static_cast<std::size_t>(k), 0.0f);
  baseline_.resize(static_cast<std::size_t>(k), 0.0f);
  for (int i = old; i < k; ++i) reset(i);
  k_ = k;
}

void OnlineOasis::move(int from, int to) {
  if (from == to) return;
  std::copy_n(pools_.begin() + static_cast<std::ptrdiff_t>(from) * max_pools_, max_pools_,
              pools_.begin() + static_cast<std::ptrdiff_t>(to) * max_pools_);
  const auto f = static_cast<std::size_t>(from), t = static_cast<std::size_t>(to);
  head_[t] = head_[f];
  count_[t] = count_[f];
  g_[t] = g_[f];
  s_min_[t] = s_min_[f];
  baseline_[t] = baseline_[f];
}

void OnlineOasis::update_first(int n, Eigen::Ref<const Eigen::VectorXf> y,
                               Eigen::Ref<Eigen::VectorXf> c, Eigen::Ref<Eigen::VectorXf> s) {
  for (int i = 0; i < std::min(n, k_); ++i) {
    const std::size_t u = static_cast<std::size_t>(i);
    const float g = g_[u];
    int& head = head_[u];
    int& count = count_[u];
    if (count == max_pools_) {  // freeze the oldest pool
      head = (head + 1) % max_pools_;
      --count;
    }
    Pool& fresh = pool(i, (head + count) % max_pools_);
    fresh.v = y(i) - baseline_[u];
    fresh.w = 1.0f;
    fresh.gl = g;
    fresh.start = t_;
    fresh.len = 1;
    ++count;
    bool merged = false;
    while (count > 1) {
      Pool& b = pool(i, (head + count - 1) % max_pools_);
      Pool& a = pool(i, (head + count - 2) % max_pools_);
      if (b.v >= a.gl * a.v + s_min_[u]) break;
      merge_into(a, b);
      --count;
      merged = true;
    }
    const Pool& last = pool(i, (head + count - 1) % max_pools_);
    const float v = std::max(last.v, 0.0f);
    const float ct = v * end_factor(last.gl, last.len, g);
    c(i) = ct;
    if (merged || count < 2) {
      s(i) = merged ? 0.0f : ct;
    } else {
      const Pool& prev = pool(i, (head + count - 2) % max_pools_);
      const float c_prev = std::max(prev.v, 0.0f) * end_factor(prev.gl, prev.len, g);
      s(i) = std::max(ct - g * c_prev, 0.0f);
    }
  }
  ++t_;
}

}  // namespace rtnmf::nmf
