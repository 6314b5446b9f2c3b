// A list of frame indices from a file: the frames a lab marks as not to be trusted (stimulation
// light, a shutter), as suite2p's bad_frames.npy.
//
//   FILE        format
//   *.npy       NumPy array (1-d, or one row / column) of 0-based frame indices (suite2p's
//               bad_frames.npy), any integer or float dtype; a bool array is a mask over frames
//   other       text: 0-based indices and inclusive ranges, `120` or `300-307`, separated by
//               whitespace or commas; `#` starts a comment to the end of the line
//
// Errors throw std::runtime_error naming the file and where:
//   "stim.txt: line 3: 'x1' is not a frame index or range (N or A-B)"
//   "stim.txt: line 5: range 40-30 ends before it starts"
//   "bad_frames.npy: element 4: -2 is not a frame index (a whole number >= 0)"
// Allocates; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rtnmf::io {

// The file's frames, sorted and without duplicates (an empty file gives an empty list).
std::vector<std::uint64_t> read_frame_list(const std::string& path);

// Walks a sorted list alongside a stream's frame indices (which only grow): contains(t) says
// whether t is listed. No allocation; one thread.
class FrameListCursor {
 public:
  explicit FrameListCursor(const std::vector<std::uint64_t>* list = nullptr) : list_(list) {}
  bool contains(std::uint64_t t) {
    if (!list_) return false;
    while (next_ < list_->size() && (*list_)[next_] < t) ++next_;
    return next_ < list_->size() && (*list_)[next_] == t;
  }

 private:
  const std::vector<std::uint64_t>* list_;
  std::size_t next_ = 0;
};

}  // namespace rtnmf::io
