// OASIS deconvolution of calcium traces (Friedrich, Zhou & Paninski 2017), AR(1) and AR(2),
// offline and online, plus the estimators of their parameters.
//
// Model: a fluorescence trace y (baseline removed) is a denoised calcium trace c plus noise, with
// c_t = g c_{t-1} + s_t and spikes s_t >= 0 (AR(1); g = exp(-dt / tau_decay)). OASIS solves
//   min_c  1/2 ||c - y||^2   s.t.  s_t = c_t - g c_{t-1} >= s_min or s_t = 0
// by pooling adjacent frames whose spike would be too small (pool-adjacent-violators). With
// s_min = 0 the solution is exact; s_min > 0 is the thresholded variant that suppresses tiny
// spikes. Pools: c_t = v g^(t - start) inside a pool.
//
// AR(2): c_t = g1 c_{t-1} + g2 c_{t-2} + s_t (g1 = r + d, g2 = -r d for rise and decay factors
// r = exp(-dt/tau_rise), d = exp(-dt/tau_decay)). Inside a pool that starts at t0 with value v and
// the value d0 = c_{t0-1} before it, c_{t0+k} = h_k v + g2 h_{k-1} d0, h the impulse response
// (h_-1 = 0, h_0 = 1, h_k = g1 h_{k-1} + g2 h_{k-2}). v = (Σ h_k y - g2 d0 Σ h_k h_{k-1}) / Σ h_k²
// is the best value of the pool given d0; a pool whose spike v - g1 c_{t0-1} - g2 c_{t0-2} is below
// s_min is merged into its predecessor. Each pool keeps Y0 = Σ h_k y_{t0+k} and
// Y1 = Σ h_{k-1} y_{t0+k}; since h_{m+k} = h_m h_k + g2 h_{m-1} h_{k-1}, a merge updates them in
// O(1) (no stored samples), so the online version needs no more memory than AR(1). The greedy
// merge is OASIS' (exact for AR(1); for AR(2) it matches the exact solution up to a small
// tolerance, see oasis_test.cc). h is tabulated up to a kernel length and taken as 0 beyond it.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <vector>

namespace rtnmf::nmf {

// Offline OASIS-AR(1) of y into c (denoised) and s (spikes, s_0 = c_0). Allocates (pool list).
// Any thread. y, c, s have the same length; c and s may not alias y.
void oasis_ar1(Eigen::Ref<const Eigen::VectorXf> y, float g, float s_min, Eigen::Ref<Eigen::VectorXf> c,
               Eigen::Ref<Eigen::VectorXf> s);

// Offline OASIS-AR(2) of y (see above); g2 = 0 is AR(1). Allocates. Any thread.
void oasis_ar2(Eigen::Ref<const Eigen::VectorXf> y, float g1, float g2, float s_min,
               Eigen::Ref<Eigen::VectorXf> c, Eigen::Ref<Eigen::VectorXf> s);

// AR(2) coefficients of a double-exponential indicator kernel (rise and decay time constants)
// at a frame rate: g1 = r + d, g2 = -r d. tau_rise <= 0 gives AR(1) (g2 = 0).
Eigen::Vector2f ar2_from_kinetics(double frame_rate_hz, double tau_rise_s, double tau_decay_s);

// AR(1) coefficient from the autocovariance of y: least squares of γ(k) ≈ g γ(k-1) over lags
// min_lag..max_lag, with the white noise removed from γ(0) (CaImAn's estimate_time_constant with
// p = 1). min_lag = 2 ignores the indicator's rise and sub-frame bursts, which bias lag 1 up.
// Clamped to [0, 0.995]. Allocates. Any thread.
float estimate_ar1(Eigen::Ref<const Eigen::VectorXf> y, float noise_sd, int max_lag = 5,
                   int min_lag = 1);

// AR(2) coefficients (g1, g2) by the same method with p = 2. Allocates. Any thread.
Eigen::Vector2f estimate_ar2(Eigen::Ref<const Eigen::VectorXf> y, float noise_sd, int max_lag = 5);

// Noise standard deviation of a trace from its first differences (median absolute deviation),
// robust to sparse calcium transients. Allocates. Any thread.
float estimate_noise_sd(Eigen::Ref<const Eigen::VectorXf> y);

// Online OASIS-AR(1)/AR(2) for K traces, one frame at a time, with bounded memory: each trace
// keeps at most `max_pools` pools in a ring; older pools are frozen (never merged into again), so
// memory does not grow with stream length. The estimate for frame t is that of the offline
// solution of the frames kept. AR(2) traces share impulse-response tables (one per distinct
// (g1, g2), at most `max_kernels`, each `kernel_length` long).
class OnlineOasis {
 public:
  // Sizes the pools for K traces. Allocates. Not for the hot path.
  void init(int k, int max_pools = 256, int max_kernels = 8, int kernel_length = 1024);
  // Sets the AR coefficients (g2 = 0: AR(1)), minimal spike and baseline of trace i (resets its
  // pools when g or g2 changes). Does not allocate: when all kernel tables hold other (g1, g2)
  // still in use, the nearest one is used. Slow path or between frames.
  void set_params(int i, float g, float s_min, float baseline, float g2 = 0.0f);
  // Adds one sample per trace: y (K) -> denoised c (K) and spike s (K) for this frame.
  // Does not allocate. Processing thread.
  void update(Eigen::Ref<const Eigen::VectorXf> y, Eigen::Ref<Eigen::VectorXf> c,
              Eigen::Ref<Eigen::VectorXf> s) {
    update_first(k_, y, c, s);
  }
  // Same for traces [0, n) only (n <= size(); the rest keep their state and miss this frame).
  void update_first(int n, Eigen::Ref<const Eigen::VectorXf> y, Eigen::Ref<Eigen::VectorXf> c,
                    Eigen::Ref<Eigen::VectorXf> s);
  // Resizes to K traces keeping the state of traces [0, min(K, old K)), new ones reset.
  // Allocates. Not for the hot path.
  void resize(int k);
  // Moves trace `from` to slot `to` (for component removal). Does not allocate.
  void move(int from, int to);
  // Resets trace i to no history with the given parameters. Does not allocate.
  void reset_trace(int i, float g, float s_min, float baseline, float g2 = 0.0f) {
    set_params(i, g, s_min, baseline, g2);
    reset(i);
  }
  // Reads each trace's last pool and, for AR(2), its kernel entries into the caches (what the
  // next update reads first). Changes nothing. Between frames.
  std::uint32_t warm() const;
  int size() const { return k_; }
  float g(int i) const { return g_[static_cast<std::size_t>(i)]; }
  float g2(int i) const { return g2_[static_cast<std::size_t>(i)]; }
  float baseline(int i) const { return baseline_[static_cast<std::size_t>(i)]; }

 private:
  struct Pool {
    float v = 0;   // value at the pool start
    float w = 0;   // weight (AR(1)); AR(2): Y0 = Σ h_k y
    float gl = 0;  // g^len (AR(1)); AR(2): Y1 = Σ h_{k-1} y
    float d = 0;   // AR(2): c just before the pool
    std::int64_t start = 0;
    std::int32_t len = 0;
  };
  Pool& pool(int i, int j) { return pools_[static_cast<std::size_t>(i) * max_pools_ + j]; }
  // Trace i's newest pool (its ring slot before head + count; the slot itself when it has none).
  const Pool& last_pool(int i) const {
    const std::size_t u = static_cast<std::size_t>(i);
    return pools_[u * max_pools_ + static_cast<std::size_t>((head_[u] + count_[u] + max_pools_ - 1) % max_pools_)];
  }
  void reset(int i);
  void update_ar1(int i, float y, float& c, float& s);
  void update_ar2(int i, float y, float& c, float& s);
  int find_kernel(float g1, float g2);

  int k_ = 0, max_pools_ = 0, max_kernels_ = 0, kernel_length_ = 0;
  std::int64_t t_ = 0;
  std::vector<Pool> pools_;           // K x max_pools ring buffers
  std::vector<int> head_, count_;     // ring position of the oldest pool, pools in use
  std::vector<float> g_, g2_, s_min_, baseline_;
  std::vector<int> kernel_;           // per trace: its AR(2) table (-1: AR(1))
  // AR(2) tables, max_kernels x (kernel_length + 2): h_{k-1} (from k = -1), Σ_{j<k} h_j², and
  // Σ_{j<k} h_j h_{j-1} (from k = 0).
  std::vector<float> kernel_g_;       // (g1, g2) of each table; NaN = free
  std::vector<float> h_, h00_, h01_;
};

}  // namespace rtnmf::nmf
