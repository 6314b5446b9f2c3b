// OASIS deconvolution of calcium traces (Friedrich, Zhou & Paninski 2017), AR(1), offline and
// online, plus the estimators of its parameters.
//
// Model: a fluorescence trace y (baseline removed) is a denoised calcium trace c plus noise, with
// c_t = g c_{t-1} + s_t and spikes s_t >= 0 (AR(1); g = exp(-dt / tau_decay)). OASIS solves
//   min_c  1/2 ||c - y||^2   s.t.  s_t = c_t - g c_{t-1} >= s_min or s_t = 0
// by pooling adjacent frames whose spike would be too small (pool-adjacent-violators). With
// s_min = 0 the solution is exact; s_min > 0 is the thresholded variant that suppresses tiny
// spikes. Pools: c_t = v g^(t - start) inside a pool.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <vector>

namespace rtnmf::nmf {

// Offline OASIS-AR(1) of y into c (denoised) and s (spikes, s_0 = c_0). Allocates (pool list).
// Any thread. y, c, s have the same length; c and s may not alias y.
void oasis_ar1(Eigen::Ref<const Eigen::VectorXf> y, float g, float s_min, Eigen::Ref<Eigen::VectorXf> c,
               Eigen::Ref<Eigen::VectorXf> s);

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

// Online OASIS-AR(1) for K traces, one frame at a time, with bounded memory: each trace keeps at
// most `max_pools` pools in a ring; older pools are frozen (never merged into again), so memory
// does not grow with stream length. The estimate for frame t is exact for the frames kept.
class OnlineOasis {
 public:
  // Sizes the pools for K traces. Allocates. Not for the hot path.
  void init(int k, int max_pools = 256);
  // Sets the AR coefficient, minimal spike and baseline of trace i (resets its pools when g
  // changes). Does not allocate. Slow path or between frames.
  void set_params(int i, float g, float s_min, float baseline);
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
  void reset_trace(int i, float g, float s_min, float baseline) {
    set_params(i, g, s_min, baseline);
    reset(i);
  }
  int size() const { return k_; }
  float g(int i) const { return g_[static_cast<std::size_t>(i)]; }
  float baseline(int i) const { return baseline_[static_cast<std::size_t>(i)]; }

 private:
  struct Pool {
    float v = 0;   // value at the pool start
    float w = 0;   // weight
    float gl = 0;  // g^len
    std::int64_t start = 0;
    std::int32_t len = 0;
  };
  Pool& pool(int i, int j) { return pools_[static_cast<std::size_t>(i) * max_pools_ + j]; }
  void reset(int i);

  int k_ = 0, max_pools_ = 0;
  std::int64_t t_ = 0;
  std::vector<Pool> pools_;           // K x max_pools ring buffers
  std::vector<int> head_, count_;     // ring position of the oldest pool, pools in use
  std::vector<float> g_, s_min_, baseline_;
};

}  // namespace rtnmf::nmf
