#include "engine/runtime/result_file_sink.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "engine/io/h5.h"
#include "engine/runtime/config.h"
#include "engine/runtime/registry.h"
#include "engine/runtime/replay.h"

namespace rtnmf {
namespace {

// Emits "components" in lane 0 (value = seq * 10 + k): one until frame 2500, two from then on
// (a component found online), of 4 capacity slots; and a time-major 2-wide lane "shifts"
// (seq, -seq).
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
    f.set_shape(f.header.seq < 2500 ? 1 : 2, 1);  // the components found so far
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
  // Components never filled (2 of capacity 4) are trimmed: 2 × T, the second zero before it
  // appeared; the temporary file is gone.
  EXPECT_EQ(f.dims("/traces"), (io::h5::Dims{2, kFrames}));
  std::vector<float> traces = f.read<float>("/traces");
  for (int t = 0; t < kFrames; ++t) {
    ASSERT_EQ(traces[t], t * 10.f);
    ASSERT_EQ(traces[kFrames + t], t < 2500 ? 0.f : t * 10.f + 1) << t;
  }
  EXPECT_FALSE(std::ifstream(path + ".rows.tmp").good());
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
  try {
    ResultFileSink sink("/nonexistent/dir/out.h5");
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "h5: cannot create '/nonexistent/dir/out.h5' (No such file or directory)");
  }
  const std::string dir = ::testing::TempDir();
  try {
    ResultFileSink sink(dir);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "h5: cannot create '" + dir + "' (a directory)");
  }
}

// The replay flow `rtnmf replay` runs: the input fills the source's path, overrides apply after
// it, the stream is forced to BLOCK and paced as asked, and the result file gets every stage's
// datasets plus the attributes that say what produced it.
TEST(Replay, WritesTheStagesResultsAndTheAttributesOfTheRun) {
  const std::string dir = ::testing::TempDir();
  const std::string raw = dir + "/rtnmf_replay_in.bin";
  {
    std::ofstream f(raw, std::ios::binary);
    std::vector<std::uint16_t> frame(4 * 5);
    for (int i = 0; i < 6; ++i) {
      for (auto& v : frame) v = static_cast<std::uint16_t>(i);
      f.write(reinterpret_cast<const char*>(frame.data()), frame.size() * 2);
    }
  }
  const std::string pbtxt = dir + "/rtnmf_replay.pbtxt";
  std::ofstream(pbtxt) << R"(publisher { disabled: true }
stream { id: "m" overload: DROP_OLDEST
  source { raw { path: "set-by-replay" dtype: DTYPE_UINT16 shape: 4 shape: 5 rate_hz: 10 } }
  stage { type: "test_recording" } }
)";
  ReplayRequest req;
  req.pipeline = pbtxt;
  req.input = raw;
  req.out = dir + "/rtnmf_replay_out.h5";
  req.speed = "50";  // paced: 500 frames/s
  req.overrides = {"source.rate_hz=25"};
  req.publish = false;
  req.adjust = [](v1::PipelineConfig& cfg) { cfg.add_realtime_cpus(0); };
  ReplayResult r = replay_to_file(req);
  ASSERT_EQ(r.rc, 0);
  EXPECT_TRUE(r.errors.empty());
  EXPECT_EQ(r.frames_written, 6u);
  EXPECT_EQ(r.stats.streams(0).frames_processed(), 6u);
  EXPECT_NE(r.pipeline_text.find("# --set source.rate_hz=25"), std::string::npos);
  io::h5::File f = io::h5::File::open(req.out);
  EXPECT_EQ(f.dims("/traces"), (io::h5::Dims{1, 6}));  // one component before frame 2500
  EXPECT_EQ(f.read<float>("/traces")[5], 50.f);
  EXPECT_EQ(f.attr_string("/", "input"), raw);
  EXPECT_EQ(f.attr_string("/", "pipeline"), r.pipeline_text);
  EXPECT_EQ(f.attr_double("/", "frame_rate_hz"), 25.0);
  EXPECT_EQ(f.attr_int64("/", "frames"), 6);
  EXPECT_EQ(f.attr_int64("/", "height"), 4);
  EXPECT_EQ(f.attr_int64("/", "width"), 5);
  // What the replay ran: BLOCK whatever the file said, paced at 50× real time.
  std::string text;
  v1::PipelineConfig cfg = replay_config(req, &text);
  EXPECT_EQ(cfg.stream(0).overload(), v1::BLOCK);
  EXPECT_EQ(cfg.stream(0).source().pacing(), v1::REALTIME);
  EXPECT_EQ(cfg.stream(0).source().speed(), 50.0);
  EXPECT_EQ(cfg.stream(0).source().raw().path(), raw);
  ASSERT_EQ(cfg.realtime_cpus_size(), 1);  // the last adjustment was applied

  std::remove(raw.c_str());
  std::remove(req.out.c_str());
  std::remove(pbtxt.c_str());
}

TEST(Replay, BadSpeedAndUnknownPipelineAreClearErrors) {
  ReplayRequest req;
  req.pipeline = "no-such-pipeline";
  req.input = "x.bin";
  try {
    replay_config(req, nullptr);
    FAIL() << "expected an error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(
                  "no-such-pipeline: no such pipeline file or built-in pipeline (built-in: ", 0),
              0u)
        << e.what();
  }
  const std::string pbtxt = ::testing::TempDir() + "/rtnmf_replay_speed.pbtxt";
  std::ofstream(pbtxt) << R"(stream { id: "m"
  source { raw { path: "p" dtype: DTYPE_UINT16 shape: 4 rate_hz: 10 } } })";
  req.pipeline = pbtxt;
  req.speed = "fast";
  try {
    replay_config(req, nullptr);
    FAIL() << "expected an error";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "--speed fast: must be max, realtime or a factor > 0");
  }
  std::remove(pbtxt.c_str());
}

}  // namespace
}  // namespace rtnmf
