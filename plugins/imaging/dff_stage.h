// Stage "dff": running-baseline dF/F with max(·, 0) for ROI or pixel streams (the rectification
// the seeds use). Per element the baseline b follows the signal down quickly and up slowly (an
// asymmetric exponential filter with time constant baseline_s upwards, baseline_s / 20
// downwards), which tracks the resting level under sparse transients and bleaching.
// Output y = max((x - b) / max(b, baseline_floor), 0), or max(x - b, 0) with subtract_only.
// The baseline starts at the first frame's values; frames the source marked bad
// (kFrameMarkedBad) do not move it.
#pragma once

#include <vector>

#include "engine/runtime/stage.h"

namespace rtnmf::imaging {

class DffStage : public Stage {
 public:
  explicit DffStage(const v1::StageConfig& config) : Stage(config) {}

 protected:
  StreamSpec do_start(const StreamSpec& in, const StageContext& ctx) override;
  // In place on lane 0. Does not allocate.
  void do_process(Frame& frame) override;

 private:
  std::vector<float> baseline_;
  float up_ = 0, down_ = 0, floor_ = 1;
  bool subtract_only_ = false;
  bool first_ = true;
};

}  // namespace rtnmf::imaging
