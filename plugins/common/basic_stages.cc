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

namespace rtnmf {
namespace {

// Closed-loop trigger on one component of the activations (lane 0), or of a named lane of an
// earlier stage (trigger.lane, e.g. "dff"): adds lane "event" = [fired, component, value]; the
// publisher sends fired frames as Events on event/<stream>.
// Rising edge through `threshold`, then silent for `refractory_ms` (stream time, from the
// frame rate, so replays trigger at the same frames).
class TriggerStage : public Stage {
 public:
  using Stage::Stage;

 protected:
  StreamSpec do_start(const StreamSpec& in, const StageContext&) override {
    const v1::TriggerParams& p = config().trigger();
    component_ = p.component();
    threshold_ = p.threshold();
    source_lane_ = -1;
    if (!p.lane().empty()) {
      source_lane_ = in.lane_index(p.lane());
      if (source_lane_ <= 0) {
        std::string msg = where();
        msg.append("trigger.lane '").append(p.lane()).append("' is not made by the stages before it (");
        if (in.lanes.size() <= 1) msg.append("they make no lanes");
        for (std::size_t i = 1; i < in.lanes.size(); ++i) msg.append(i == 1 ? "lanes: " : ", ").append(in.lanes[i].name);
        msg.append(")");
        throw ConfigError(msg);
      }
      if (component_ >= in.lanes[static_cast<std::size_t>(source_lane_)].size)
        throw ConfigError(where() + "trigger.component " + std::to_string(component_) +
                          " is out of range (lane '" + p.lane() + "' has " +
                          std::to_string(in.lanes[static_cast<std::size_t>(source_lane_)].size) + " entries)");
    } else if (component_ >= in.rows) {
      throw ConfigError(where() + "trigger.component " + std::to_string(component_) +
                        " is out of range (the stream has " + std::to_string(in.rows) +
                        " components per time step)");
    }
    const double refractory_ms = p.refractory_ms() > 0 ? p.refractory_ms() : 100.0;
    // Frames per second: imaging = sample rate; blocks = samples/s over samples per block.
    const double fps = in.is_imaging() ? in.sample_rate_hz
                                       : in.sample_rate_hz / std::max<std::uint32_t>(1, in.cols);
    refractory_frames_ = fps > 0 ? static_cast<std::uint64_t>(refractory_ms * 1e-3 * fps) : 0;
    StreamSpec out = in;
    lane_ = out.add_lane("event", 3);
    return out;
  }
  void do_process(Frame& f) override {
    float* e = f.lane(lane_).data;
    f.lane(lane_).size = 3;
    e[0] = 0;
    e[1] = static_cast<float>(component_);
    e[2] = 0;
    float v = 0;
    if (source_lane_ > 0) {
      const Lane& src = f.lane(source_lane_);
      if (component_ >= src.size) {  // not (yet) a component of this frame's model
        ++n_;
        return;
      }
      v = src.data[component_];
    } else {
      // Use the last time step of the block.
      if (f.header.cols == 0 || component_ >= f.header.rows) {
        ++n_;
        return;
      }
      v = f.data()[static_cast<size_t>(f.header.cols - 1) * f.header.rows + component_];
    }
    e[2] = v;
    const bool above = v >= threshold_;
    if (above && !was_above_ && (n_ >= next_allowed_)) {
      e[0] = 1;
      next_allowed_ = n_ + refractory_frames_;
    }
    was_above_ = above;
    ++n_;
  }

 private:
  std::uint32_t component_ = 0;
  float threshold_ = 0;
  std::uint64_t refractory_frames_ = 0;
  std::uint64_t n_ = 0, next_allowed_ = 0;
  bool was_above_ = false;
  int lane_ = 1;
  int source_lane_ = -1;  // trigger.lane's index, -1 = the values
};

}  // namespace

RTNMF_REGISTER_STAGE("trigger", "closed-loop Event when a component crosses a threshold",
                     TriggerStage);

}  // namespace rtnmf
