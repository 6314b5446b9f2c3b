#include "plugins/imaging/dff_stage.h"

#include <algorithm>
#include <cmath>

#include "engine/runtime/registry.h"

namespace rtnmf::imaging {

StreamSpec DffStage::do_start(const StreamSpec& in, const StageContext& /*ctx*/) {
  const v1::ImagingStageParams& p = config().imaging();
  const double rate = in.sample_rate_hz > 0 ? in.sample_rate_hz : 30.0;
  const double tau = (p.baseline_s() > 0 ? p.baseline_s() : 20.0) * rate;  // frames
  up_ = static_cast<float>(1.0 - std::exp(-1.0 / std::max(1.0, tau)));
  down_ = static_cast<float>(1.0 - std::exp(-1.0 / std::max(1.0, tau / 20.0)));
  floor_ = p.baseline_floor() > 0 ? p.baseline_floor() : 1.0f;
  subtract_only_ = p.subtract_only();
  baseline_.assign(static_cast<std::size_t>(in.rows) * in.cols, 0.0f);
  first_ = true;
  return in;
}

void DffStage::do_process(Frame& frame) {
  const std::size_t n = std::min<std::size_t>(baseline_.size(),
                                              static_cast<std::size_t>(frame.header.rows) * frame.header.cols);
  float* x = frame.data();
  // A frame the source marked bad (stimulation light) is reported against the baseline but does
  // not move it.
  const bool marked = (frame.header.flags & kFrameMarkedBad) != 0;
  if (first_ && !marked) {
    std::copy(x, x + n, baseline_.begin());
    first_ = false;
  }
  for (std::size_t i = 0; i < n; ++i) {
    float& b = baseline_[i];
    const float v = x[i];
    if (!marked) b += (v < b ? down_ : up_) * (v - b);
    const float d = v - b;
    x[i] = subtract_only_ ? std::max(d, 0.0f) : std::max(d / std::max(b, floor_), 0.0f);
  }
}

RTNMF_REGISTER_STAGE("dff", "running-baseline dF/F with max(x, 0)", DffStage);

}  // namespace rtnmf::imaging
