#include "plugins/imaging/motion_correct_stage.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "engine/runtime/registry.h"

namespace rtnmf::imaging {

StreamSpec MotionCorrectStage::do_start(const StreamSpec& in, const StageContext& /*ctx*/) {
  if (!in.is_imaging()) throw ConfigError(where() + "needs an imaging stream (height x width)");
  const v1::ImagingStageParams& p = config().imaging();
  height_ = in.height;
  width_ = in.width;
  dsp::RegistrationOptions o;
  o.max_shift = p.max_shift();
  if (p.registration_window()) o.max_window = p.registration_window();
  try {
    reg_.init(height_, width_, o);
  } catch (const std::exception& e) {
    throw ConfigError(where() + e.what());
  }
  template_frames_ = p.template_frames() ? p.template_frames() : 30;
  const double tau_s = p.template_tau_s() > 0 ? p.template_tau_s() : 10.0;
  const double rate = in.sample_rate_hz > 0 ? in.sample_rate_hz : 30.0;
  alpha_ = static_cast<float>(1.0 / std::max(1.0, tau_s * rate));
  if (p.bidi_phase() != 0 && p.bidi_phase_auto())
    throw ConfigError(where() + "bidi_phase and bidi_phase_auto: set one (a fixed offset, or estimated)");
  if (std::abs(p.bidi_phase()) >= static_cast<int>(width_))
    throw ConfigError(where() + "bidi_phase " + std::to_string(p.bidi_phase()) + " is not smaller than the frame width " +
                      std::to_string(width_));
  bidi_.store(p.bidi_phase(), std::memory_order_relaxed);
  bidi_auto_ = p.bidi_phase_auto();
  if (bidi_auto_) bidi_sum_.assign(static_cast<std::size_t>(height_) * width_, 0.0f);
  // A negative ratio turns the outlier test off; 0 is the default.
  outlier_ratio_ = p.outlier_peak_ratio() < 0 ? 0.0f : p.outlier_peak_ratio() > 0 ? p.outlier_peak_ratio() : 0.3f;
  if (outlier_ratio_ >= 1) {
    char v[32];
    std::snprintf(v, sizeof v, "%g", static_cast<double>(p.outlier_peak_ratio()));
    throw ConfigError(where() + "outlier_peak_ratio " + v + " is not below 1 (a fraction of the median peak; negative: off)");
  }
  outlier_jump_ = p.outlier_jump_px() > 0 ? p.outlier_jump_px() : 3.0f;
  peaks_.clear();
  prev_ = dsp::Shift{};
  held_.store(0, std::memory_order_relaxed);
  n_ = 0;
  template_n_ = 0;
  since_template_ = 0;
  marked_.store(0, std::memory_order_relaxed);
  StreamSpec out = in;
  shifts_lane_ = out.add_lane("shifts", 2);
  out.record_lane(shifts_lane_, "/motion/shifts", false);
  quality_lane_ = out.add_lane("motion_quality", 2);
  out.record_lane(quality_lane_, "/motion/quality", false);
  return out;
}

void MotionCorrectStage::do_process(Frame& frame) {
  float* data = frame.data();
  const std::uint64_t n = n_++;
  if (bidi_auto_ && n < template_frames_) {
    // The offset from the mean of the raw frames so far (one dim frame is mostly noise), after
    // frames 1, 2, 4, 8, 16 and the last template frame; fixed from then on.
    const std::size_t P = bidi_sum_.size();
    for (std::size_t i = 0; i < P; ++i) bidi_sum_[i] += data[i];
    // The estimate is a normalised correlation: the sum serves as well as the mean.
    const std::uint64_t m = n + 1;
    if ((m & (m - 1)) == 0 || m == template_frames_)
      bidi_.store(dsp::estimate_bidi_phase(bidi_sum_.data(), height_, width_, kBidiMaxOffset), std::memory_order_relaxed);
  }
  if (const int bidi = bidi_.load(std::memory_order_relaxed)) dsp::correct_bidi_phase(data, height_, width_, bidi);
  dsp::Shift s;
  bool held = false;
  // A frame the source marked (stimulation light, a shutter) is registered but stays out of the
  // template and of the outlier test's peak history.
  const bool marked = (frame.header.flags & kFrameMarkedBad) != 0;
  if (marked) marked_.fetch_add(1, std::memory_order_relaxed);
  if (template_n_ < template_frames_) {
    if (!marked)
      s = reg_.start_template(data, template_n_++, template_frames_);
    else if (template_n_ > 0)
      s = reg_.correct(data, 0.0f);  // against the template so far, not blended
  } else {
    s = reg_.estimate(data);
    held = is_outlier(s);
    if (held) {
      const float peak = s.peak;
      s = prev_;
      s.peak = peak;
      held_.fetch_add(1, std::memory_order_relaxed);
    } else if (!marked) {
      peaks_.push(s.peak);
    }
    reg_.apply_and_blend(data, s, held || marked ? 0.0f : alpha_);
    if (++since_template_ % 32 == 0) reg_.refresh_template();
  }
  if (!marked) prev_ = s;  // the outlier test's jump is from the last trusted frame
  Lane& lane = frame.lane(shifts_lane_);
  lane.data[0] = s.dy;
  lane.data[1] = s.dx;
  lane.size = 2;
  Lane& q = frame.lane(quality_lane_);
  q.data[0] = s.peak;
  q.data[1] = held ? 1.0f : marked ? 2.0f : 0.0f;
  q.size = 2;
  last_shift_.store(std::hypot(s.dy, s.dx), std::memory_order_relaxed);
}

bool MotionCorrectStage::is_outlier(const dsp::Shift& s) {
  if (outlier_ratio_ <= 0 || peaks_.size() < kPeakMin) return false;
  if (std::max(std::fabs(s.dy - prev_.dy), std::fabs(s.dx - prev_.dx)) <= outlier_jump_) return false;
  return s.peak < outlier_ratio_ * peaks_.median();
}

void MotionCorrectStage::report(std::vector<std::pair<std::string, double>>& scalars) const {
  scalars.emplace_back("shift_px", last_shift_.load(std::memory_order_relaxed));
  scalars.emplace_back("bidi_phase_px", bidi_.load(std::memory_order_relaxed));
  scalars.emplace_back("outliers_held", static_cast<double>(held_.load(std::memory_order_relaxed)));
  scalars.emplace_back("frames_marked_bad", static_cast<double>(marked_.load(std::memory_order_relaxed)));
}

void MotionCorrectStage::write_results(io::h5::File& file) {
  if (!file.exists("/motion/shifts")) return;  // not recorded
  file.set_attr("/motion/shifts", "bidi_phase_px", static_cast<std::int64_t>(bidi_.load(std::memory_order_relaxed)));
  file.set_attr("/motion/shifts", "bidi_phase_estimated", static_cast<std::int64_t>(bidi_auto_ ? 1 : 0));
  if (!file.exists("/motion/quality")) return;
  file.set_attr("/motion/quality", "columns", std::string("peak,held"));
  file.set_attr("/motion/quality", "held_values", std::string("1: outlier, shift held; 2: marked bad by the source"));
  file.set_attr("/motion/quality", "frames_marked_bad", static_cast<std::int64_t>(marked_.load(std::memory_order_relaxed)));
  file.set_attr("/motion/quality", "outliers_held", static_cast<std::int64_t>(held_.load(std::memory_order_relaxed)));
  file.set_attr("/motion/quality", "outlier_peak_ratio", static_cast<double>(outlier_ratio_));
  file.set_attr("/motion/quality", "outlier_jump_px", static_cast<double>(outlier_jump_));
}

RTNMF_REGISTER_STAGE("motion_correct", "rigid FFT phase-correlation motion correction",
                     MotionCorrectStage);

}  // namespace rtnmf::imaging
