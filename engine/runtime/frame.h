// Frames: the unit that flows through a stream. Sized once in start(), reused forever.
#pragma once

#include <Eigen/Core>
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace rtnmf {

// A named output lane of a frame (lane 0 is always "values": the samples that flow from stage to
// stage; stages may add lanes such as "spikes" or "shifts").
struct LaneSpec {
  std::string name;
  std::uint32_t size = 0;  // floats (the capacity: a frame may fill less)
  // Result-file recording (rtnmf replay --out): the HDF5 dataset this lane is streamed to, empty
  // for none. component_major: stored size × T (one column per time step, e.g. /traces K × T);
  // otherwise T × size (e.g. /motion/shifts T × 2). For lane 0 each column of the frame's
  // rows × cols matrix is one time step (a block may carry 0, 1 or more); other lanes carry one
  // time step per frame. Trailing components never filled are trimmed at the end.
  std::string dataset;
  bool component_major = true;
  // > 0: like lane 0, this lane carries one time step per column of the frame (header.cols steps
  // of `column_width` floats, column-major), e.g. a per-sample VAF next to the activations.
  std::uint32_t column_width = 0;
};

// Shape of the frames of one stream at one point of the pipeline.
// Samples are a column-major rows × cols matrix: an imaging frame is pixels × 1 (pixel index =
// row·width + column, with `height`/`width` recording the image shape); a multichannel block is
// channels × samples (so one sample of all channels is contiguous).
struct StreamSpec {
  std::string stream_id;
  std::uint32_t rows = 0;
  std::uint32_t cols = 1;
  std::uint32_t height = 0;  // imaging only (0 for blocks)
  std::uint32_t width = 0;
  double sample_rate_hz = 0;  // frames/s (imaging) or samples/s per channel (blocks)
  std::vector<LaneSpec> lanes;  // lanes[0] is "values" of size rows*cols

  bool is_imaging() const { return height > 0 && width > 0; }
  // Index of the lane called `name`, or -1.
  int lane_index(const std::string& name) const;
  // Adds a lane or returns the index of the existing one with the larger size. Allocates.
  int add_lane(const std::string& name, std::uint32_t size);
  // Marks lane i for recording to `dataset` (see LaneSpec).
  void record_lane(int i, std::string dataset, bool component_major = true) {
    lanes[static_cast<size_t>(i)].dataset = std::move(dataset);
    lanes[static_cast<size_t>(i)].component_major = component_major;
  }
  // A spec with one "values" lane of rows*cols.
  static StreamSpec make(std::string stream_id, std::uint32_t rows, std::uint32_t cols,
                         double sample_rate_hz);
};

struct FrameHeader {
  std::uint64_t seq = 0;
  std::int64_t t_acquired_ns = 0;
  std::int64_t t_received_ns = 0;
  std::int64_t t_processed_ns = 0;
  std::uint64_t model_version = 0;
  std::uint32_t rows = 0;  // current shape of lane 0
  std::uint32_t cols = 0;
  std::uint32_t flags = 0;  // kFrame* bits, set by the source
};

// The source says this frame is not to be trusted (the rig's stimulation light, a shutter, PMT
// gating: a user's bad-frame list or the rig's own mark on the wire). Motion correction leaves it
// out of its template, dF/F baselines do not move on it, and online CNMF excludes it as it does
// frames its model cannot explain.
constexpr std::uint32_t kFrameMarkedBad = 1u;

// An imaging pipeline uses 9: values, shifts, motion_quality, spikes, raw_traces, dff,
// background, fit_quality and a trigger's event.
constexpr int kMaxLanes = 10;

struct Lane {
  float* data = nullptr;
  std::uint32_t size = 0;
  std::uint32_t capacity = 0;
};

// One frame: header plus float lanes carved out of one preallocated block. Not copyable; owned by
// a FramePool and passed by handle.
class Frame {
 public:
  using Matrix = Eigen::Map<Eigen::MatrixXf, Eigen::Aligned32>;
  using Vector = Eigen::Map<Eigen::VectorXf, Eigen::Aligned32>;

  Frame() = default;
  Frame(const Frame&) = delete;
  Frame& operator=(const Frame&) = delete;
  Frame(Frame&&) = default;
  Frame& operator=(Frame&&) = default;

  // Allocates storage for the given lane capacities (floats each). Not for the hot path.
  void allocate(const std::vector<std::uint32_t>& lane_capacities);

  FrameHeader header;

  // Lane 0 as a rows × cols matrix (header.rows × header.cols). Does not allocate.
  Matrix values() { return Matrix(lanes_[0].data, header.rows, header.cols); }
  Vector values_flat() { return Vector(lanes_[0].data, lanes_[0].size); }
  float* data() { return lanes_[0].data; }
  const float* data() const { return lanes_[0].data; }
  // Sets the shape of lane 0. Does not allocate; the caller guarantees rows*cols <= capacity
  // (checked in debug builds).
  void set_shape(std::uint32_t rows, std::uint32_t cols);

  Lane& lane(int i) { return lanes_[i]; }
  const Lane& lane(int i) const { return lanes_[i]; }
  Vector lane_vector(int i) { return Vector(lanes_[i].data, lanes_[i].size); }
  int lane_count() const { return lane_count_; }

  std::uint32_t index() const { return index_; }  // handle within its pool
  void set_index(std::uint32_t i) { index_ = i; }

 private:
  std::array<Lane, kMaxLanes> lanes_{};
  int lane_count_ = 0;
  std::uint32_t index_ = 0;
  std::unique_ptr<float[], void (*)(float*)> storage_{nullptr, [](float*) {}};
};

// A fixed set of frames allocated up front. Frames are referred to by index (a handle), so queues
// carry 4-byte handles, never pixels.
class FramePool {
 public:
  // Allocates `count` frames with the given lane capacities.
  FramePool(std::uint32_t count, const std::vector<std::uint32_t>& lane_capacities);
  Frame& operator[](std::uint32_t handle) { return frames_[handle]; }
  std::uint32_t size() const { return static_cast<std::uint32_t>(frames_.size()); }

 private:
  std::vector<Frame> frames_;
};

}  // namespace rtnmf
