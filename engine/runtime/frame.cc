#include "engine/runtime/frame.h"

#include <cassert>
#include <cstdlib>
#include <new>
#include <stdexcept>

namespace rtnmf {

int StreamSpec::lane_index(const std::string& name) const {
  for (size_t i = 0; i < lanes.size(); ++i)
    if (lanes[i].name == name) return static_cast<int>(i);
  return -1;
}

int StreamSpec::add_lane(const std::string& name, std::uint32_t size) {
  int i = lane_index(name);
  if (i >= 0) {
    if (lanes[i].size < size) lanes[i].size = size;
    return i;
  }
  if (lanes.size() >= static_cast<size_t>(kMaxLanes))
    throw std::runtime_error("stream " + stream_id + ": too many lanes (max " +
                             std::to_string(kMaxLanes) + ") adding '" + name + "'");
  lanes.push_back({name, size, "", true});
  return static_cast<int>(lanes.size() - 1);
}

StreamSpec StreamSpec::make(std::string stream_id, std::uint32_t rows, std::uint32_t cols,
                            double sample_rate_hz) {
  StreamSpec s;
  s.stream_id = std::move(stream_id);
  s.rows = rows;
  s.cols = cols;
  s.sample_rate_hz = sample_rate_hz;
  s.lanes.push_back({"values", rows * cols, "", true});
  return s;
}

void Frame::allocate(const std::vector<std::uint32_t>& lane_capacities) {
  if (lane_capacities.empty() || lane_capacities.size() > static_cast<size_t>(kMaxLanes))
    throw std::invalid_argument("Frame::allocate: 1.." + std::to_string(kMaxLanes) + " lanes");
  // Each lane starts on a 64-byte boundary (16 floats) so Eigen maps are aligned.
  size_t total = 0;
  for (auto c : lane_capacities) total += (static_cast<size_t>(c) + 15) / 16 * 16;
  void* p = nullptr;
  if (posix_memalign(&p, 64, std::max<size_t>(total, 16) * sizeof(float)) != 0)
    throw std::bad_alloc();
  storage_ = std::unique_ptr<float[], void (*)(float*)>(static_cast<float*>(p),
                                                        [](float* q) { std::free(q); });
  std::fill_n(storage_.get(), std::max<size_t>(total, 16), 0.0f);
  size_t off = 0;
  lane_count_ = static_cast<int>(lane_capacities.size());
  for (int i = 0; i < lane_count_; ++i) {
    lanes_[i].data = storage_.get() + off;
    lanes_[i].capacity = lane_capacities[i];
    lanes_[i].size = lane_capacities[i];
    off += (static_cast<size_t>(lane_capacities[i]) + 15) / 16 * 16;
  }
  header.rows = lane_capacities[0];
  header.cols = 1;
}

void Frame::set_shape(std::uint32_t rows, std::uint32_t cols) {
  assert(static_cast<std::uint64_t>(rows) * cols <= lanes_[0].capacity);
  header.rows = rows;
  header.cols = cols;
  lanes_[0].size = rows * cols;
}

FramePool::FramePool(std::uint32_t count, const std::vector<std::uint32_t>& lane_capacities) {
  frames_.resize(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    frames_[i].allocate(lane_capacities);
    frames_[i].set_index(i);
  }
}

}  // namespace rtnmf
