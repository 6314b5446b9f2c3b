#include "engine/runtime/result_file_sink.h"

#include <gtest/gtest.h>

#include <cstdio>

#include "engine/io/h5.h"
#include "engine/runtime/config.h"
#include "engine/runtime/registry.h"

namespace rtnmf {
namespace {

// Emits K = 3 "components" per frame in lane 0 (value = seq * 10 + k, but only 2 of 4 capacity
// slots filled) and a time-major 2-wide lane "shifts" (seq, -seq).
class RecordingStage : public Stage {
 public:
  using Stage::Stage;

 protected:
  StreamSpec do_start(const StreamSpec& in, const StageContext&) override {
    StreamSpec out = in;
    out.rows = 4;
    out.cols = 1;
    out.lanes[0].size = std::max<std::uint32_t>(in.lanes[0].size, 4);
    out.record_lane(0, "/traces", true);
    int s = out.add_lane("shifts", 2);
    out.record_lane(s, "/motion/shifts", false);
    shifts_ = s;
    return out;
  }
  void do_process(Frame& f) override {
    const float seq = static_cast<float>(f.header.seq);
    f.set_shape(2, 1);  // only two components found so far
    f.data()[0] = seq * 10;
    f.data()[1] = seq * 10 + 1;
    f.lane(shifts_).data[0] = seq;
    f.lane(shifts_).data[1] = -seq;
    f.lane(shifts_).size = 2;
  }

 private:
  int shifts_ = 1;
};
RTNMF_REGISTER_STAGE("test_recording", "test only", RecordingStage);

TEST(ResultFileSink, StreamsLanesAsComponentByTimeAndTimeByWidthDatasets) {
  const std::string path = ::testing::TempDir() + "/rtnmf_result_test.h5";
  const int kFrames = 5000;  // more than one transpose block
  Pipeline p(parse_pipeline(R"(
publisher { disabled: true }
stream { id: "r" overload: BLOCK
  source { pacing: MAX max_frames: 5000 synthetic { kind: EMG channels: 4 block_samples: 1 } }
  stage { type: "test_recording" } })",
                            "r.pbtxt"));
  auto sink = std::make_unique<ResultFileSink>(path);
  ResultFileSink* rs = sink.get();
  p.add_sink("r", std::move(sink));
  p.start();
  ASSERT_TRUE(p.wait(60'000'000'000));
  p.join();
  ASSERT_TRUE(p.errors().empty());
  io::h5::File& f = rs->file();
  // Components never filled (2 of capacity 4) are trimmed: 2 × T.
  EXPECT_EQ(f.dims("/traces"), (io::h5::Dims{2, kFrames}));
  std::vector<float> traces = f.read<float>("/traces");
  for (int t = 0; t < kFrames; ++t) {
    ASSERT_EQ(traces[t], t * 10.f);
    ASSERT_EQ(traces[kFrames + t], t * 10.f + 1);
  }
  EXPECT_EQ(f.dims("/motion/shifts"), (io::h5::Dims{kFrames, 2}));
  std::vector<float> shifts = f.read<float>("/motion/shifts");
  EXPECT_EQ(shifts[2 * 4321], 4321.f);
  EXPECT_EQ(shifts[2 * 4321 + 1], -4321.f);
  EXPECT_EQ(f.dims("/timing/latency_ns"), (io::h5::Dims{kFrames}));
  std::vector<std::int64_t> lat = f.read<std::int64_t>("/timing/latency_ns");
  for (auto l : lat) ASSERT_GE(l, 0);
  std::remove(path.c_str());
}

TEST(ResultFileSink, UnwritablePathFailsBeforeAnythingStarts) {
  EXPECT_THROW(ResultFileSink("/nonexistent/dir/out.h5"), std::runtime_error);
}

}  // namespace
}  // namespace rtnmf
