// Streams a stream's recorded lanes to an HDF5 result file (rtnmf replay --out).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/io/h5.h"
#include "engine/runtime/pipeline.h"

namespace rtnmf {

// Every lane whose LaneSpec names a dataset is appended per frame, plus /timing/latency_ns
// (frame received → activations ready, per frame) and /timing/seq. Component-major lanes
// (K × T, e.g. /traces) are streamed to a temporary file next to the result, each time step's
// filled values (the lane's size, which may grow: components appear) one after the other with
// their count, and transposed block by block at the end into K × T (zero where a component did
// not exist yet), so memory never grows with T and unfilled capacity costs no disk. `prefix` is
// prepended to dataset paths (for pipelines with several streams; "" for one).
class ResultFileSink : public ResultSink {
 public:
  // Checks that the result file can be created (its directory, or the file, writable), so a
  // bad path fails before the pipeline starts; the file is created (truncated) when the stream
  // begins, so a run that never starts leaves an earlier file at the path as it was. Throws
  // std::runtime_error naming the file.
  ResultFileSink(const std::string& path, std::string prefix = "");
  ~ResultFileSink() override;

  void begin(const StreamSpec& spec) override;
  void write(const Frame& frame) override;
  void end() override;

  // The result file, for Stage::write_results and attributes after the pipeline joined.
  io::h5::File& file();
  std::uint64_t frames() const { return frames_; }
  // "" or "/<stream id>": the group the datasets went under.
  const std::string& prefix() const { return prefix_; }

 private:
  struct Recorded {
    int lane;
    std::string dataset;
    bool component_major;
    bool per_column;           // lane 0 or a column_width lane: one time step per frame column
    std::uint32_t width;       // floats per time step (row length)
    std::uint32_t max_filled;  // components actually used (trim at the end)
    // Time-major lanes: T × width in the result. Component-major: the filled values of each
    // time step, flat, and their count per time step (temp file).
    std::unique_ptr<io::h5::Appendable<float>> rows;
    std::unique_ptr<io::h5::Appendable<std::int64_t>> counts;
    // Component-major: values and counts not yet appended (one HDF5 append per lane every
    // kPendingValues values or kPendingCounts time steps instead of two per time step).
    std::vector<float> pending_values;
    std::vector<std::int64_t> pending_counts;
    std::vector<float> row;
  };
  std::string path_;
  std::string tmp_path_;
  std::string prefix_;
  std::unique_ptr<io::h5::File> file_;
  std::unique_ptr<io::h5::File> tmp_;
  std::vector<Recorded> recorded_;
  std::unique_ptr<io::h5::Appendable<std::int64_t>> latency_;
  std::unique_ptr<io::h5::Appendable<std::int64_t>> seq_;
  std::uint64_t frames_ = 0;
  static constexpr std::size_t kPendingValues = 65536, kPendingCounts = 4096;
  static void flush_pending(Recorded& r);
};

}  // namespace rtnmf
