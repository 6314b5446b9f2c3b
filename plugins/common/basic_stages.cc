// The two simplest stages: pass-through (for latency measurements) and max(x - t, 0).
#include <vector>

#include "engine/runtime/registry.h"

namespace rtnmf {
namespace {

// Leaves the frame as it is; optionally copies it `copies` times (to model per-stage work in
// latency benchmarks).
class PassthroughStage : public Stage {
 public:
  using Stage::Stage;

 protected:
  StreamSpec do_start(const StreamSpec& in, const StageContext&) override {
    copies_ = config().passthrough().copies();
    if (copies_ > 0) scratch_.resize(in.lanes[0].size);
    return in;
  }
  void do_process(Frame& f) override {
    for (std::uint32_t i = 0; i < copies_; ++i)
      std::copy(f.data(), f.data() + f.lane(0).size, scratch_.data());
  }

 private:
  std::uint32_t copies_ = 0;
  std::vector<float> scratch_;
};

// y = max(x - threshold, 0): the seeds' rectification for ROI, pixel and spike data.
class RectifyStage : public Stage {
 public:
  using Stage::Stage;

 protected:
  StreamSpec do_start(const StreamSpec& in, const StageContext&) override {
    threshold_ = config().rectify().threshold();
    return in;
  }
  void do_process(Frame& f) override {
    Frame::Vector v = f.values_flat();
    v = (v.array() - threshold_).max(0.f);
  }

 private:
  float threshold_ = 0;
};

}  // namespace

RTNMF_REGISTER_STAGE("passthrough", "leaves frames unchanged (latency measurements)",
                     PassthroughStage);
RTNMF_REGISTER_STAGE("rectify", "y = max(x - threshold, 0)", RectifyStage);

}  // namespace rtnmf
