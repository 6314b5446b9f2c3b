// Stages "emg_condition" (band-pass -> notch -> |x| -> envelope -> decimation -> normalisation)
// and "spike_bin" (max(x - threshold, 0), summed over `bin` samples). Both shrink the block:
// S input samples give 0..ceil(S / decimation) output samples, so most 4-sample blocks at 4 kHz
// leave the stage with 0 columns and the next stages must do nothing for them.
#include <cmath>
#include <string>

#include "engine/dsp/butterworth.h"
#include "engine/dsp/emg_conditioner.h"
#include "engine/runtime/registry.h"

namespace rtnmf::emg {
namespace {

double or_default(double v, double def) { return v > 0 ? v : def; }

// Output spec: rows unchanged, cols = the most samples one input block can yield, rate reduced.
StreamSpec shrink(const StreamSpec& in, std::uint32_t cols, double rate) {
  StreamSpec out = in;
  out.cols = cols;
  out.sample_rate_hz = rate;
  out.height = out.width = 0;
  if (out.lanes.empty()) {
    out.lanes.emplace_back();
    out.lanes[0].name = "values";
  }
  // Lane 0 keeps its capacity (>= rows * cols): conditioning works in place.
  return out;
}

class EmgConditionStage : public Stage {
 public:
  using Stage::Stage;

 protected:
  StreamSpec do_start(const StreamSpec& in, const StageContext&) override {
    if (in.is_imaging())
      throw ConfigError(where() + "needs multichannel blocks, got imaging frames");
    const v1::EmgStageParams& p = config().emg();
    dsp::EmgConditionerConfig c;
    c.channels = static_cast<int>(in.rows);
    c.sample_rate_hz = in.sample_rate_hz;
    c.bandpass = !p.no_bandpass();
    c.band_low_hz = or_default(p.band_low_hz(), 20);
    // The default upper edge adapts to low rates (1 kHz rigs): 450 Hz or 0.45 x rate.
    c.band_high_hz =
        p.band_high_hz() > 0 ? p.band_high_hz() : std::min(450.0, 0.45 * in.sample_rate_hz);
    c.band_order = p.band_order() ? static_cast<int>(p.band_order()) : 2;
    c.notch_hz = p.notch_hz();
    c.notch_bandwidth_hz = or_default(p.notch_bandwidth_hz(), 2);
    c.notch_harmonics = p.notch_harmonics() ? static_cast<int>(p.notch_harmonics()) : 1;
    c.envelope_hz = or_default(p.envelope_hz(), 6);
    c.envelope_order = p.envelope_order() ? static_cast<int>(p.envelope_order()) : 2;
    c.envelope_rate_hz = or_default(p.envelope_rate_hz(), 100);
    switch (p.normalize()) {
      case v1::EmgStageParams::CALIBRATION_MAX:
        c.normalize = dsp::EmgConditionerConfig::Normalize::kCalibrationMax;
        break;
      case v1::EmgStageParams::RUNNING_PERCENTILE:
        c.normalize = dsp::EmgConditionerConfig::Normalize::kRunningPercentile;
        break;
      default:
        c.normalize = dsp::EmgConditionerConfig::Normalize::kNone;
    }
    c.calibration_s = or_default(p.calibration_s(), 5);
    c.calibration_max.assign(p.calibration_max().begin(), p.calibration_max().end());
    c.percentile = p.percentile() > 0 ? p.percentile() : 95;
    c.percentile_window_s = or_default(p.percentile_window_s(), 10);
    try {
      cond_.configure(c);
    } catch (const std::exception& e) {
      throw ConfigError(where() + e.what());
    }
    return shrink(in, static_cast<std::uint32_t>(cond_.max_output_cols(in.cols)),
                  cond_.envelope_rate_hz());
  }

  void do_process(Frame& frame) override {
    const std::int64_t n = cond_.process(frame.data(), frame.header.cols, frame.data());
    frame.set_shape(frame.header.rows, static_cast<std::uint32_t>(n));
  }

 private:
  dsp::EmgConditioner cond_;
};

class SpikeBinStage : public Stage {
 public:
  using Stage::Stage;

 protected:
  StreamSpec do_start(const StreamSpec& in, const StageContext&) override {
    if (in.is_imaging())
      throw ConfigError(where() + "needs neurons x samples blocks, got imaging frames");
    const v1::EmgStageParams& p = config().emg();
    const int bin = p.bin() ? static_cast<int>(p.bin()) : 1;
    try {
      binner_.configure(static_cast<int>(in.rows), bin, p.threshold());
    } catch (const std::exception& e) {
      throw ConfigError(where() + e.what());
    }
    return shrink(in, static_cast<std::uint32_t>(binner_.max_output_cols(in.cols)),
                  in.sample_rate_hz / bin);
  }

  void do_process(Frame& frame) override {
    const std::int64_t n = binner_.process(frame.data(), frame.header.cols, frame.data());
    frame.set_shape(frame.header.rows, static_cast<std::uint32_t>(n));
  }

 private:
  dsp::SpikeBinner binner_;
};

}  // namespace

RTNMF_REGISTER_STAGE("emg_condition",
                     "EMG band-pass, notch, rectification, envelope, decimation, normalisation",
                     EmgConditionStage);
RTNMF_REGISTER_STAGE("spike_bin", "spike counts / ROI traces: max(x - threshold, 0), binned",
                     SpikeBinStage);

}  // namespace rtnmf::emg
