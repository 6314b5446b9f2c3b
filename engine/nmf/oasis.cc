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

// AR(2) impulse-response tables: h[k + 1] = h_k for k = -1..len-1, h00[l] = Σ_{j<l} h_j²,
// h01[l] = Σ_{j<l} h_j h_{j-1} for l = 0..len.
void fill_kernel(float g1, float g2, int len, float* h, float* h00, float* h01) {
  double hm1 = 0, h0 = 1, s00 = 0, s01 = 0;
  h[0] = 0;
  h00[0] = 0;
  h01[0] = 0;
  for (int k = 0; k < len; ++k) {
    h[k + 1] = static_cast<float>(h0);
    s00 += h0 * h0;
    s01 += h0 * hm1;
    h00[k + 1] = static_cast<float>(s00);
    h01[k + 1] = static_cast<float>(s01);
    const double next = g1 * h0 + g2 * hm1;
    hm1 = h0;
    h0 = std::fabs(next) < 1e-30 ? 0.0 : next;
  }
}

// Read access to one AR(2) table.
struct Ar2Kernel {
  const float* h;
  const float* h00;
  const float* h01;
  int len;
  float g1, g2;
  float hk(std::int64_t k) const { return k >= len ? 0.0f : h[k + 1]; }  // k >= -1
  float s00(std::int64_t l) const { return h00[std::min<std::int64_t>(l, len)]; }
  float s01(std::int64_t l) const { return h01[std::min<std::int64_t>(l, len)]; }
  // c at offset k (>= -1) of a pool: h_k v + g2 h_{k-1} d; k = -1 is d itself.
  template <typename Pool>
  float value(const Pool& p, std::int64_t k) const {
    return k < 0 ? p.d : hk(k) * p.v + g2 * hk(k - 1) * p.d;
  }
  // Best start value of a pool given its d (Y0 in w, Y1 in gl), c >= 0.
  template <typename Pool>
  void fit(Pool& p) const {
    p.v = std::max(0.0f, (p.w - g2 * p.d * s01(p.len)) / s00(p.len));
  }
  // Merges b into the earlier pool a.
  template <typename Pool>
  void merge(Pool& a, const Pool& b) const {
    const std::int64_t la = a.len;
    a.w += hk(la) * b.w + g2 * hk(la - 1) * b.gl;
    a.gl += hk(la - 1) * b.w + g2 * hk(la - 2) * b.gl;
    a.len += b.len;
    fit(a);
  }
  // Spike at the start of b given its predecessor a.
  template <typename Pool>
  float spike(const Pool& a, const Pool& b) const {
    const float c1 = value(a, a.len - 1), c2 = value(a, a.len - 2);
    return b.v - g1 * c1 - g2 * c2;
  }
  // A new one-frame pool after `prev` (nullptr: none).
  template <typename Pool>
  void start(Pool& p, const Pool* prev, float y, std::int64_t t) const {
    p.d = prev ? value(*prev, prev->len - 1) : 0.0f;
    p.w = y;
    p.gl = 0;
    p.len = 1;
    p.start = t;
    fit(p);
  }
};

struct Ar2Pool {
  float v = 0, w = 0, gl = 0, d = 0;
  std::int64_t start = 0;
  std::int32_t len = 0;
};

}  // namespace

Eigen::Vector2f ar2_from_kinetics(double frame_rate_hz, double tau_rise_s, double tau_decay_s) {
  if (frame_rate_hz <= 0 || tau_decay_s <= 0) return {0.9f, 0.0f};
  const double d = std::exp(-1.0 / (frame_rate_hz * tau_decay_s));
  const double r = tau_rise_s > 0 ? std::exp(-1.0 / (frame_rate_hz * tau_rise_s)) : 0.0;
  return {static_cast<float>(d + r), static_cast<float>(-d * r)};
}

void oasis_ar2(Eigen::Ref<const Eigen::VectorXf> y, float g1, float g2, float s_min,
               Eigen::Ref<Eigen::VectorXf> c, Eigen::Ref<Eigen::VectorXf> s) {
  if (g2 == 0.0f) {
    oasis_ar1(y, g1, s_min, c, s);
    return;
  }
  const Eigen::Index n = y.size();
  const int len = static_cast<int>(std::max<Eigen::Index>(n, 1));
  std::vector<float> h(static_cast<std::size_t>(len) + 1), h00(h.size()), h01(h.size());
  fill_kernel(g1, g2, len, h.data(), h00.data(), h01.data());
  const Ar2Kernel k{h.data(), h00.data(), h01.data(), len, g1, g2};
  std::vector<Ar2Pool> pools;
  pools.reserve(static_cast<std::size_t>(n));
  for (Eigen::Index t = 0; t < n; ++t) {
    Ar2Pool p;
    k.start(p, pools.empty() ? nullptr : &pools.back(), y(t), t);
    pools.push_back(p);
    while (pools.size() > 1 && k.spike(pools[pools.size() - 2], pools.back()) < s_min) {
      k.merge(pools[pools.size() - 2], pools.back());
      pools.pop_back();
    }
  }
  for (const Ar2Pool& p : pools)
    for (std::int32_t q = 0; q < p.len; ++q) c(p.start + q) = std::max(0.0f, k.value(p, q));
  for (Eigen::Index t = 0; t < n; ++t) {
    s(t) = c(t) - (t >= 1 ? g1 * c(t - 1) : 0.0f) - (t >= 2 ? g2 * c(t - 2) : 0.0f);
  }
}

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

void OnlineOasis::init(int k, int max_pools, int max_kernels, int kernel_length) {
  k_ = k;
  max_pools_ = std::max(max_pools, 2);
  max_kernels_ = std::max(max_kernels, 1);
  kernel_length_ = std::max(kernel_length, 4);
  t_ = 0;
  pools_.assign(static_cast<std::size_t>(k) * max_pools_, Pool{});
  head_.assign(static_cast<std::size_t>(k), 0);
  count_.assign(static_cast<std::size_t>(k), 0);
  g_.assign(static_cast<std::size_t>(k), 0.9f);
  g2_.assign(static_cast<std::size_t>(k), 0.0f);
  s_min_.assign(static_cast<std::size_t>(k), 0.0f);
  baseline_.assign(static_cast<std::size_t>(k), 0.0f);
  kernel_.assign(static_cast<std::size_t>(k), -1);
  kernel_g_.assign(2 * static_cast<std::size_t>(max_kernels_), std::nanf(""));
  const std::size_t table = static_cast<std::size_t>(max_kernels_) * (kernel_length_ + 2);
  h_.assign(table, 0.0f);
  h00_.assign(table, 0.0f);
  h01_.assign(table, 0.0f);
}

int OnlineOasis::find_kernel(float g1, float g2) {
  for (int q = 0; q < max_kernels_; ++q)
    if (kernel_g_[2 * q] == g1 && kernel_g_[2 * q + 1] == g2) return q;
  // A free table, or one no trace uses any more.
  int pick = -1;
  for (int q = 0; q < max_kernels_ && pick < 0; ++q) {
    if (std::isnan(kernel_g_[2 * q])) pick = q;
  }
  if (pick < 0) {
    for (int q = 0; q < max_kernels_ && pick < 0; ++q) {
      bool used = false;
      for (int i = 0; i < k_ && !used; ++i) used = kernel_[static_cast<std::size_t>(i)] == q;
      if (!used) pick = q;
    }
  }
  if (pick < 0) {  // all in use: the nearest (an approximation, documented)
    float best = INFINITY;
    for (int q = 0; q < max_kernels_; ++q) {
      const float e = std::fabs(kernel_g_[2 * q] - g1) + std::fabs(kernel_g_[2 * q + 1] - g2);
      if (e < best) {
        best = e;
        pick = q;
      }
    }
    return pick;
  }
  kernel_g_[2 * pick] = g1;
  kernel_g_[2 * pick + 1] = g2;
  const std::size_t off = static_cast<std::size_t>(pick) * (kernel_length_ + 2);
  fill_kernel(g1, g2, kernel_length_, h_.data() + off, h00_.data() + off, h01_.data() + off);
  return pick;
}

void OnlineOasis::reset(int i) {
  head_[static_cast<std::size_t>(i)] = 0;
  count_[static_cast<std::size_t>(i)] = 0;
}

void OnlineOasis::set_params(int i, float g, float s_min, float baseline, float g2) {
  const std::size_t u = static_cast<std::size_t>(i);
  if (g != g_[u] || g2 != g2_[u]) {
    reset(i);
    kernel_[u] = g2 != 0.0f ? find_kernel(g, g2) : -1;
  }
  g_[u] = g;
  g2_[u] = g2;
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
  g2_.resize(static_cast<std::size_t>(k), 0.0f);
  s_min_.resize(static_cast<std::size_t>(k), 0.0f);
  baseline_.resize(static_cast<std::size_t>(k), 0.0f);
  kernel_.resize(static_cast<std::size_t>(k), -1);
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
  g2_[t] = g2_[f];
  kernel_[t] = kernel_[f];
  s_min_[t] = s_min_[f];
  baseline_[t] = baseline_[f];
}

std::uint32_t OnlineOasis::warm() const {
  std::uint32_t acc = 0;
  for (int i = 0; i < k_; ++i) {
    const std::size_t u = static_cast<std::size_t>(i);
    const Pool& p = last_pool(i);
    acc += static_cast<std::uint32_t>(p.len);
    if (kernel_[u] >= 0) {
      const std::size_t off = static_cast<std::size_t>(kernel_[u]) * (kernel_length_ + 2) +
                              static_cast<std::size_t>(std::clamp(p.len, 0, kernel_length_));
      acc += static_cast<std::uint32_t>(h_[off] != 0.0f) + static_cast<std::uint32_t>(h00_[off] != 0.0f) +
             static_cast<std::uint32_t>(h01_[off] != 0.0f);
    }
  }
  return acc;
}

void OnlineOasis::update_first(int n, Eigen::Ref<const Eigen::VectorXf> y,
                               Eigen::Ref<Eigen::VectorXf> c, Eigen::Ref<Eigen::VectorXf> s) {
  // Each trace reads its last pool and, for AR(2), its kernel table at that pool's length:
  // scattered lines (the pools alone are K x max_pools x 32 bytes, 4 MB at 500 traces) that are
  // not in the caches at 30 Hz, each trace waiting on its own misses (~100 us per frame for 500
  // traces). Fetched ahead instead: the pools kPoolAhead traces on, the kernel entries
  // kKernelAhead on (their address needs the pool's length, which has arrived by then). The
  // results are the same; only the loads are earlier.
  constexpr int kPoolAhead = 16, kKernelAhead = 8;
  const int m = std::min(n, k_);
  for (int j = 0; j < std::min(m, kPoolAhead); ++j) __builtin_prefetch(&last_pool(j));
  for (int i = 0; i < m; ++i) {
    if (i + kPoolAhead < m) {
      const Pool* p = &last_pool(i + kPoolAhead);
      __builtin_prefetch(p);
      __builtin_prefetch(p + 1);  // the fresh pool's slot, written next
    }
    if (i + kKernelAhead < m) {
      const std::size_t v = static_cast<std::size_t>(i + kKernelAhead);
      if (kernel_[v] >= 0 && count_[v] > 0) {
        const std::int32_t len = last_pool(i + kKernelAhead).len;
        const std::size_t off = static_cast<std::size_t>(kernel_[v]) * (kernel_length_ + 2) +
                                static_cast<std::size_t>(std::clamp(len, 0, kernel_length_));
        __builtin_prefetch(h_.data() + off);
        __builtin_prefetch(h00_.data() + off);
        __builtin_prefetch(h01_.data() + off);
      }
    }
    const std::size_t u = static_cast<std::size_t>(i);
    const float yi = y(i) - baseline_[u];
    if (kernel_[u] >= 0) update_ar2(i, yi, c(i), s(i));
    else update_ar1(i, yi, c(i), s(i));
  }
  ++t_;
}

void OnlineOasis::update_ar1(int i, float y, float& c, float& s) {
  const std::size_t u = static_cast<std::size_t>(i);
  const float g = g_[u];
  int& head = head_[u];
  int& count = count_[u];
  if (count == max_pools_) {  // freeze the oldest pool
    head = (head + 1) % max_pools_;
    --count;
  }
  Pool& fresh = pool(i, (head + count) % max_pools_);
  fresh.v = y;
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
  c = ct;
  if (merged || count < 2) {
    s = merged ? 0.0f : ct;
  } else {
    const Pool& prev = pool(i, (head + count - 2) % max_pools_);
    const float c_prev = std::max(prev.v, 0.0f) * end_factor(prev.gl, prev.len, g);
    s = std::max(ct - g * c_prev, 0.0f);
  }
}

void OnlineOasis::update_ar2(int i, float y, float& c, float& s) {
  const std::size_t u = static_cast<std::size_t>(i);
  const std::size_t off = static_cast<std::size_t>(kernel_[u]) * (kernel_length_ + 2);
  const Ar2Kernel k{h_.data() + off, h00_.data() + off, h01_.data() + off, kernel_length_,
                    g_[u], g2_[u]};
  int& head = head_[u];
  int& count = count_[u];
  // The pool before the new one stays readable after a freeze (it is the oldest kept).
  if (count == max_pools_) {
    head = (head + 1) % max_pools_;
    --count;
  }
  Pool& fresh = pool(i, (head + count) % max_pools_);
  const Pool* prev = count > 0 ? &pool(i, (head + count - 1) % max_pools_) : nullptr;
  k.start(fresh, prev, y, t_);
  ++count;
  bool merged = false;
  float spike = 0;
  while (count > 1) {
    Pool& b = pool(i, (head + count - 1) % max_pools_);
    Pool& a = pool(i, (head + count - 2) % max_pools_);
    spike = k.spike(a, b);
    if (spike >= s_min_[u]) break;
    k.merge(a, b);
    --count;
    merged = true;
  }
  const Pool& last = pool(i, (head + count - 1) % max_pools_);
  c = std::max(0.0f, k.value(last, last.len - 1));
  if (merged) s = 0.0f;
  else s = count < 2 ? c : std::max(spike, 0.0f);
}

}  // namespace rtnmf::nmf
