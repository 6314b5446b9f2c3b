#include "engine/dsp/emg_conditioner.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/dsp/butterworth.h"

namespace rtnmf::dsp {
namespace {

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

void EmgConditioner::configure(const EmgConditionerConfig& config) {
  config_ = config;
  const double fs = config.sample_rate_hz;
  if (config.channels < 1) {
    throw std::invalid_argument("channels must be >= 1, got " + std::to_string(config.channels));
  }
  if (!(fs > 0) || !std::isfinite(fs)) {
    throw std::invalid_argument("sample_rate_hz must be positive, got " + num(fs));
  }
  const double ratio = fs / config.envelope_rate_hz;
  if (!(config.envelope_rate_hz > 0) || std::abs(ratio - std::round(ratio)) > 1e-6 ||
      std::round(ratio) < 1) {
    throw std::invalid_argument("envelope_rate_hz " + num(config.envelope_rate_hz) +
                                " must divide the sample rate " + num(fs) + " Hz");
  }
  decimation_ = static_cast<int>(std::round(ratio));
  const int nc = config.channels;

  use_bandpass_ = config.bandpass;
  if (use_bandpass_) {
    bandpass_.configure(
        butterworth_bandpass(config.band_order, config.band_low_hz, config.band_high_hz, fs), nc);
  } else {
    bandpass_.configure({}, nc);
  }
  std::vector<BiquadCoeffs> notches;
  use_notch_ = config.notch_hz > 0;
  if (use_notch_) {
    for (int h = 1; h <= std::max(1, config.notch_harmonics); ++h) {
      const double f = config.notch_hz * h;
      if (f + config.notch_bandwidth_hz >= 0.5 * fs) break;
      for (const BiquadCoeffs& c : notch(f, config.notch_bandwidth_hz, fs)) notches.push_back(c);
    }
  }
  notch_.configure(std::move(notches), nc);
  envelope_.configure(butterworth_lowpass(config.envelope_order, config.envelope_hz, fs), nc);

  work_.assign(nc, 0.0);
  divisor_.assign(nc, 1.0);
  running_max_.assign(nc, 0.0);
  ring_.clear();
  sorted_.clear();
  using N = EmgConditionerConfig::Normalize;
  const double env_rate = envelope_rate_hz();
  if (config.normalize == N::kCalibrationMax) {
    if (!config.calibration_max.empty()) {
      if (static_cast<int>(config.calibration_max.size()) != nc) {
        throw std::invalid_argument("calibration_max has " +
                                    std::to_string(config.calibration_max.size()) + " values for " +
                                    std::to_string(nc) + " channels");
      }
      for (int c = 0; c < nc; ++c) {
        const double m = config.calibration_max[c];
        if (!(m > 0) || !std::isfinite(m)) {
          throw std::invalid_argument("calibration_max[" + std::to_string(c) +
                                      "] must be positive, got " + num(m));
        }
        divisor_[c] = m;
      }
    } else if (!(config.calibration_s > 0)) {
      throw std::invalid_argument("calibration_s must be positive, got " +
                                  num(config.calibration_s));
    }
    calibration_samples_ = std::max<std::int64_t>(1, std::llround(config.calibration_s * env_rate));
  } else if (config.normalize == N::kRunningPercentile) {
    if (!(config.percentile >= 0 && config.percentile <= 100)) {
      throw std::invalid_argument("percentile must lie in [0, 100], got " + num(config.percentile));
    }
    if (!(config.percentile_window_s > 0)) {
      throw std::invalid_argument("percentile_window_s must be positive, got " +
                                  num(config.percentile_window_s));
    }
    // Keep the sorted window short: at most ~10 values per second of window.
    stride_ = std::max(1, static_cast<int>(std::lround(env_rate / 10.0)));
    window_ =
        std::max(1, static_cast<int>(std::lround(config.percentile_window_s * env_rate / stride_)));
    ring_.assign(static_cast<std::size_t>(window_) * nc, 0.0);
    sorted_.assign(static_cast<std::size_t>(window_) * nc, 0.0);
  }
  reset();
}

void EmgConditioner::reset() {
  bandpass_.reset();
  notch_.reset();
  envelope_.reset();
  phase_ = 0;
  seen_ = 0;
  std::fill(running_max_.begin(), running_max_.end(), 0.0);
  using N = EmgConditionerConfig::Normalize;
  calibrated_ = config_.normalize != N::kCalibrationMax || !config_.calibration_max.empty();
  if (config_.normalize == N::kCalibrationMax && config_.calibration_max.empty()) {
    std::fill(divisor_.begin(), divisor_.end(), 1.0);
  }
  if (config_.normalize == N::kRunningPercentile) std::fill(divisor_.begin(), divisor_.end(), 1.0);
  stride_phase_ = 0;
  filled_ = 0;
  ring_pos_ = 0;
}

void EmgConditioner::normalise(double* x) {
  const int nc = config_.channels;
  using N = EmgConditionerConfig::Normalize;
  constexpr double kTiny = 1e-30;
  switch (config_.normalize) {
    case N::kNone:
      return;
    case N::kCalibrationMax:
      if (!calibrated_) {
        // Causal: divide by the maximum seen so far; freeze it when the window ends.
        for (int c = 0; c < nc; ++c) {
          running_max_[c] = std::max(running_max_[c], x[c]);
          divisor_[c] = running_max_[c] > kTiny ? running_max_[c] : 1.0;
        }
        if (++seen_ >= calibration_samples_) calibrated_ = true;
      }
      break;
    case N::kRunningPercentile:
      if (stride_phase_ == 0) {
        const int w = window_;
        const bool full = filled_ == w;
        const int n_after = full ? w : filled_ + 1;
        const int rank = static_cast<int>(std::floor(config_.percentile / 100.0 * (n_after - 1)));
        for (int c = 0; c < nc; ++c) {
          double* ring = ring_.data() + static_cast<std::size_t>(c) * w;
          double* sorted = sorted_.data() + static_cast<std::size_t>(c) * w;
          int n = filled_;
          if (full) {
            // Remove the oldest value from the sorted window.
            const double old = ring[ring_pos_];
            double* pos = std::lower_bound(sorted, sorted + n, old);
            std::copy(pos + 1, sorted + n, pos);
            --n;
          }
          const double v = x[c];
          double* pos = std::upper_bound(sorted, sorted + n, v);
          std::copy_backward(pos, sorted + n, sorted + n + 1);
          *pos = v;
          ring[ring_pos_] = v;
          const double q = sorted[rank];
          divisor_[c] = q > kTiny ? q : 1.0;
        }
        ring_pos_ = (ring_pos_ + 1) % w;
        if (!full) ++filled_;
      }
      stride_phase_ = (stride_phase_ + 1) % stride_;
      break;
  }
  for (int c = 0; c < nc; ++c) x[c] /= divisor_[c];
}

std::int64_t EmgConditioner::process(const float* in, std::int64_t samples, float* out) {
  const int nc = config_.channels;
  double* __restrict w = work_.data();
  std::int64_t n_out = 0;
  for (std::int64_t t = 0; t < samples; ++t) {
    const float* x = in + t * nc;
    for (int c = 0; c < nc; ++c) w[c] = x[c];
    if (use_bandpass_) bandpass_.process_sample(w);
    if (use_notch_) notch_.process_sample(w);
    for (int c = 0; c < nc; ++c) w[c] = std::abs(w[c]);
    envelope_.process_sample(w);
    if (++phase_ == decimation_) {
      phase_ = 0;
      // The low-pass of |x| can ring slightly below zero; NMF needs non-negative data.
      for (int c = 0; c < nc; ++c) w[c] = std::max(w[c], 0.0);
      normalise(w);
      float* y = out + n_out * nc;
      for (int c = 0; c < nc; ++c) y[c] = static_cast<float>(w[c]);
      ++n_out;
    }
  }
  return n_out;
}

std::int64_t EmgConditioner::process(Eigen::Ref<const Eigen::MatrixXf> in,
                                     Eigen::Ref<Eigen::MatrixXf> out) {
  // Contiguous columns are required (outer stride == rows), which Frame maps always have.
  eigen_assert(in.outerStride() == in.rows() && out.outerStride() == out.rows());
  eigen_assert(in.rows() == config_.channels && out.rows() == config_.channels);
  return process(in.data(), in.cols(), out.data());
}

void SpikeBinner::configure(int channels, int bin, float threshold) {
  if (channels < 1) {
    throw std::invalid_argument("channels must be >= 1, got " + std::to_string(channels));
  }
  if (bin < 1) throw std::invalid_argument("bin must be >= 1, got " + std::to_string(bin));
  channels_ = channels;
  bin_ = bin;
  threshold_ = threshold;
  acc_.assign(channels, 0.0f);
  reset();
}

void SpikeBinner::reset() {
  phase_ = 0;
  std::fill(acc_.begin(), acc_.end(), 0.0f);
}

std::int64_t SpikeBinner::process(const float* in, std::int64_t samples, float* out) {
  const int nc = channels_;
  float* __restrict acc = acc_.data();
  std::int64_t n_out = 0;
  for (std::int64_t t = 0; t < samples; ++t) {
    const float* x = in + t * nc;
    for (int c = 0; c < nc; ++c) acc[c] += std::max(x[c] - threshold_, 0.0f);
    if (++phase_ == bin_) {
      phase_ = 0;
      float* y = out + n_out * nc;
      for (int c = 0; c < nc; ++c) {
        y[c] = acc[c];
        acc[c] = 0.0f;
      }
      ++n_out;
    }
  }
  return n_out;
}

}  // namespace rtnmf::dsp
