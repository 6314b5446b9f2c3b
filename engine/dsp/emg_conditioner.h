// EMG conditioning, causal and allocation-free per block:
//   band-pass (Butterworth) -> mains notch -> |x| -> envelope low-pass -> decimation
//   -> per-channel normalisation (calibration maximum, MVC-style, or a running percentile).
// Input blocks are channels × S (column-major); each block yields 0..ceil(S / decimation)
// envelope samples, because the decimation phase carries over from block to block.
// Also SpikeBinner: max(x - threshold, 0) summed over `bin` consecutive samples, for spike
// counts and ROI traces.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "engine/dsp/biquad.h"

namespace rtnmf::dsp {

struct EmgConditionerConfig {
  enum class Normalize { kNone, kCalibrationMax, kRunningPercentile };

  double sample_rate_hz = 0;
  int channels = 0;
  bool bandpass = true;
  double band_low_hz = 20;
  double band_high_hz = 450;
  int band_order = 2;   // prototype order N: 2N-order band-pass
  double notch_hz = 0;  // 0 = off
  double notch_bandwidth_hz = 2;
  int notch_harmonics = 1;
  double envelope_hz = 6;
  int envelope_order = 2;
  double envelope_rate_hz = 100;  // must divide sample_rate_hz
  Normalize normalize = Normalize::kNone;
  double calibration_s = 5;            // kCalibrationMax, learnt when calibration_max is empty
  std::vector<float> calibration_max;  // kCalibrationMax, one per channel (MVC values)
  double percentile = 95;              // kRunningPercentile, 0..100
  double percentile_window_s = 10;
};

class EmgConditioner {
 public:
  // Designs the filters and sizes all state. Allocates. Throws DesignError (filter edges) or
  // std::invalid_argument (channels, rates, normalisation) with a message naming the parameter.
  void configure(const EmgConditionerConfig& config);
  // Clears filter state, decimation phase and normalisation statistics. Does not allocate.
  void reset();

  // Conditions a channels × S block `in` and writes the envelope samples it completes into the
  // first columns of `out` (channels × at least max_output_cols(S)); returns how many. `out` may
  // alias `in` (outputs never overtake inputs). Does not allocate, lock or throw. Owning
  // (processing) thread only.
  std::int64_t process(const float* in, std::int64_t samples, float* out);
  std::int64_t process(Eigen::Ref<const Eigen::MatrixXf> in, Eigen::Ref<Eigen::MatrixXf> out);

  // Upper bound of output columns for an input of `samples` columns: ceil(samples / decimation).
  std::int64_t max_output_cols(std::int64_t samples) const {
    return (samples + decimation_ - 1) / decimation_;
  }
  int decimation() const { return decimation_; }
  double envelope_rate_hz() const { return config_.sample_rate_hz / decimation_; }
  int channels() const { return config_.channels; }
  const EmgConditionerConfig& config() const { return config_; }
  // Current per-channel divisor of the normalisation (1 for kNone). Owning thread.
  const std::vector<double>& divisor() const { return divisor_; }
  // True once the calibration window of kCalibrationMax has passed (or values were given).
  bool calibrated() const { return calibrated_; }
  // Band-pass, notch and envelope sections (for tests and reports).
  const BiquadCascade& bandpass_filter() const { return bandpass_; }
  const BiquadCascade& notch_filter() const { return notch_; }
  const BiquadCascade& envelope_filter() const { return envelope_; }

 private:
  void normalise(double* x);

  EmgConditionerConfig config_;
  BiquadCascade bandpass_, notch_, envelope_;
  bool use_bandpass_ = true, use_notch_ = false;
  int decimation_ = 1;
  int phase_ = 0;  // input samples since the last envelope sample
  std::vector<double> work_;
  std::vector<double> divisor_;
  // kCalibrationMax
  std::int64_t calibration_samples_ = 0, seen_ = 0;
  bool calibrated_ = false;
  std::vector<double> running_max_;
  // kRunningPercentile: per channel a ring of the last `window_` values (one every `stride_`
  // envelope samples) and the same values sorted.
  int stride_ = 1, stride_phase_ = 0;
  int window_ = 0, filled_ = 0, ring_pos_ = 0;
  std::vector<double> ring_, sorted_;
};

// max(x - threshold, 0), then sums of `bin` consecutive samples (bin 1 = no binning); the bin
// phase carries across blocks. For spike counts / ROI traces (neurons × samples).
class SpikeBinner {
 public:
  // Sizes the accumulator. Allocates. Throws std::invalid_argument for channels < 1 or bin < 1.
  void configure(int channels, int bin, float threshold);
  void reset();
  // Like EmgConditioner::process: writes completed bins into `out` (may alias `in`), returns how
  // many. Does not allocate. Owning thread only.
  std::int64_t process(const float* in, std::int64_t samples, float* out);
  std::int64_t max_output_cols(std::int64_t samples) const { return (samples + bin_ - 1) / bin_; }
  int bin() const { return bin_; }

 private:
  int channels_ = 0, bin_ = 1, phase_ = 0;
  float threshold_ = 0;
  std::vector<float> acc_;
};

}  // namespace rtnmf::dsp
