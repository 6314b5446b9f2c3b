// Stage "motion_correct": online rigid registration of imaging frames to a running template by
// FFT phase correlation with a sub-pixel peak (engine/dsp/registration.h: a binned whole-frame
// estimate refined on a full-resolution crop for large frames). The first `template_frames`
// frames are registered to frame 0 and averaged into the template; afterwards the template
// follows the corrected frames with time constant template_tau_s and its spectra are refreshed
// every 32 frames. The template lives inside the registration in reduced form only (binned window
// and crop), and frames are corrected in place, so a frame costs no full-frame copies. Lane "shifts" (dy, dx: the frame's displacement from the template, pixels) is
// recorded as /motion/shifts (T x 2), lane "motion_quality" (the correlation peak, 1 if the frame
// was held, 2 if the source marked it bad) as /motion/quality (T x 2). Marked frames
// (kFrameMarkedBad: stimulation light) are registered but stay out of the template. A frame whose peak is weak and whose estimate jumps is an
// outlier (a blank or garbled frame): it keeps the previous frame's shift and stays out of the
// template. Deterministic (FFTW_ESTIMATE plans, fixed schedule).
// Optionally the odd lines of bidirectionally scanned frames are first moved back into line
// (bidi_phase, or bidi_phase_auto: measured on the mean of the first template_frames raw
// frames, refined as they come; dsp::estimate_bidi_phase / correct_bidi_phase).
#pragma once

#include <atomic>
#include <vector>

#include "engine/dsp/registration.h"
#include "engine/io/h5.h"
#include "engine/nmf/window_median.h"
#include "engine/runtime/stage.h"

namespace rtnmf::imaging {

class MotionCorrectStage : public Stage {
 public:
  explicit MotionCorrectStage(const v1::StageConfig& config) : Stage(config) {}

  // Publisher thread: the last shift magnitude and the bidirectional-scan offset (pixels).
  void report(std::vector<std::pair<std::string, double>>& scalars) const override;
  // The bidirectional-scan offset applied (bidi_phase_px) and whether it was estimated, as
  // attributes of /motion/shifts.
  void write_results(io::h5::File& file) override;

 protected:
  // Plans and buffers for the stream's frame shape. Throws ConfigError for non-imaging streams.
  StreamSpec do_start(const StreamSpec& in, const StageContext& ctx) override;
  // Estimates, applies and records the shift. Does not allocate.
  void do_process(Frame& frame) override;
  // Reads the registration's template and buffers before the next frame (Stage::warm).
  void do_warm() override { warm_sink_ = reg_.warm(); }

 private:
  dsp::RigidRegistration reg_;
  std::uint32_t height_ = 0, width_ = 0, template_frames_ = 30;
  float alpha_ = 0;  // running-template weight per frame
  int shifts_lane_ = -1;
  std::uint64_t n_ = 0;
  // Frames in the template's start so far (marked frames are not), and frames registered since.
  std::uint32_t template_n_ = 0;
  std::uint64_t since_template_ = 0;
  std::atomic<float> last_shift_{0};
  // Bidirectional-scan line offset corrected in every frame: bidi_phase, or with bidi_phase_auto
  // estimated on the raw frames so far (their sum, bidi_sum_, H x W, allocated at start) after
  // frames 1, 2, 4, 8, 16 and template_frames, then fixed.
  bool bidi_auto_ = false;
  std::atomic<int> bidi_{0};
  std::vector<float> bidi_sum_;
  static constexpr int kBidiMaxOffset = 10;
  // Outlier test, after the template frames: a frame whose correlation peak is below
  // outlier_ratio_ times the median peak of the last kPeakWindow frames not held, and whose
  // estimate jumps more than outlier_jump_ px (either axis) from the shift applied to the frame
  // before, keeps that shift and is not blended into the template.
  bool is_outlier(const dsp::Shift& s);
  static constexpr int kPeakWindow = 100, kPeakMin = 20;
  nmf::WindowMedian<kPeakWindow> peaks_;
  float outlier_ratio_ = 0.3f, outlier_jump_ = 3.0f;
  dsp::Shift prev_{};  // the shift applied to the previous frame
  int quality_lane_ = -1;
  volatile std::uint32_t warm_sink_ = 0;
  std::atomic<std::uint64_t> held_{0};
  std::atomic<std::uint64_t> marked_{0};  // frames the source marked bad (kFrameMarkedBad)
};

}  // namespace rtnmf::imaging
