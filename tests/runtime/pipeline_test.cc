#include "engine/runtime/pipeline.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "engine/runtime/model_exchange.h"
#include "engine/runtime/realtime.h"
#include "engine/runtime/registry.h"
#include "tests/runtime/test_util.h"
#include "tests/support/alloc_counter.h"

namespace rtnmf {
namespace {

using test::CollectSink;

// Records the processing thread's allocation count at frame 100 and at every later frame, so a
// test can check steady state allocates nothing.
std::atomic<std::uint64_t> g_allocs_at_100{0};
std::atomic<std::uint64_t> g_allocs_last{0};
std::atomic<std::uint64_t> g_frames_seen{0};

class AllocProbeStage : public Stage {
 public:
  using Stage::Stage;

 protected:
  StreamSpec do_start(const StreamSpec& in, const StageContext&) override {
    n_ = 0;
    return in;
  }
  void do_process(Frame&) override {
    if (n_ == 100) g_allocs_at_100.store(test::thread_allocations());
    if (n_ >= 100) g_allocs_last.store(test::thread_allocations());
    ++n_;
    g_frames_seen.store(n_);
  }

 private:
  std::uint64_t n_ = 0;
};
RTNMF_REGISTER_STAGE("test_alloc_probe", "test only", AllocProbeStage);

// A stage with a slow path: a model (the mean of the frames seen so far) is recomputed on a
// separate thread every `update_every` frames and swapped in through ModelExchange. The output
// depends on the model, so any difference in swap timing shows up in the output.
struct MeanModel {
  Eigen::VectorXf mean;
  double weight = 0;
};

class DummyModelStage : public Stage {
 public:
  using Stage::Stage;
  ~DummyModelStage() override { do_stop(); }

 protected:
  StreamSpec do_start(const StreamSpec& in, const StageContext& ctx) override {
    MeanModel initial;
    initial.mean = Eigen::VectorXf::Zero(in.rows * in.cols);
    const std::uint32_t lag = ctx.model_lag_frames ? ctx.model_lag_frames : 3;
    exchange_.init(initial, ctx.mode, lag, 7);
    to_slow_ = std::make_unique<FrameChannel>(
        32, std::vector<std::uint32_t>{in.rows * in.cols},
        ctx.mode == RunMode::kReplay ? OverloadPolicy::kBlock : OverloadPolicy::kDropOldest, 0);
    n_ = 0;
    slow_ = std::thread([this] { slow_loop(); });
    return in;
  }

  void do_process(Frame& f) override {
    const MeanModel& m = exchange_.acquire(n_);
    Frame::Vector v = f.values_flat();
    Frame* copy = to_slow_->acquire();
    if (copy) {
      std::copy(v.data(), v.data() + v.size(), copy->data());
      copy->header.seq = n_;
      to_slow_->push(copy);
    }
    v.array() -= m.mean.array();
    f.header.model_version = exchange_.version();
    ++n_;
  }

  void do_stop() override {
    if (!slow_.joinable()) return;
    to_slow_->close();
    exchange_.stop();
    slow_.join();
  }

 private:
  void slow_loop() {
    std::mt19937 jitter(static_cast<unsigned>(now_ns()));
    Eigen::VectorXd sum = Eigen::VectorXd::Zero(exchange_.back().mean.size());
    double count = 0;
    for (;;) {
      Frame* f = to_slow_->pop(10'000'000);
      if (!f) {
        if (to_slow_->closed_and_drained() || exchange_.stopping()) return;
        continue;
      }
      const std::uint64_t n = f->header.seq;
      sum += f->values_flat().cast<double>();
      count += 1;
      to_slow_->release(f);
      if (exchange_.is_update_frame(n)) {
        // Random slowness: the output must not depend on it in replay mode.
        if (jitter() % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(jitter() % 300));
        MeanModel& m = exchange_.back();
        m.mean = (sum / count).cast<float>();
        m.weight = count;
        if (!exchange_.publish(n)) return;
      }
    }
  }

  ModelExchange<MeanModel> exchange_;
  std::unique_ptr<FrameChannel> to_slow_;
  std::thread slow_;
  std::uint64_t n_ = 0;
};
RTNMF_REGISTER_STAGE("test_dummy_model", "test only", DummyModelStage);

v1::PipelineConfig parse(const std::string& text) { return parse_pipeline(text, "test.pbtxt"); }

std::string emg_stream(const std::string& extra_source, const std::string& stages,
                       const std::string& stream_extra = "") {
  return R"(
publisher { disabled: true }
stream {
  id: "s0"
  )" + stream_extra + R"(
  source { )" + extra_source + R"(
    synthetic { kind: EMG channels: 8 block_samples: 4 rate_hz: 4000 components: 3 seed: 7 } }
  )" + stages + R"(
})";
}

TEST(Pipeline, ProcessesEveryFrameInOrderUnderBlock) {
  Pipeline p(parse(emg_stream("pacing: MAX max_frames: 20000", R"(stage { type: "rectify" })",
                              "overload: BLOCK queue_depth: 4")));
  test::CollectSink* out = test::run_collecting(p, "s0", 60);
  ASSERT_NE(out, nullptr) << "the pipeline did not end";
  std::vector<std::uint64_t> seqs = out->seqs();
  ASSERT_EQ(seqs.size(), 20000u);
  for (std::uint64_t i = 0; i < seqs.size(); ++i) ASSERT_EQ(seqs[i], i);
  for (float v : out->values()) ASSERT_GE(v, 0.f);  // rectified
  v1::Stats st = p.stats();
  EXPECT_EQ(st.streams(0).frames_processed(), 20000u);
  EXPECT_EQ(st.streams(0).frames_dropped(), 0u);
  EXPECT_TRUE(out->ended());
}

TEST(Pipeline, StoppingMidStreamLeavesNoThreadHanging) {
  // An endless real-time source on two streams; stop after a few frames.
  std::string text = R"(
publisher { disabled: true }
stream { id: "a" source { pacing: REALTIME
  synthetic { kind: EMG channels: 4 block_samples: 4 rate_hz: 4000 } } stage { type: "passthrough" } }
stream { id: "b" source { pacing: REALTIME
  synthetic { kind: IMAGING height: 32 width: 32 rate_hz: 200 } } stage { type: "rectify" } }
)";
  Pipeline p(parse(text));
  p.start();
  ASSERT_TRUE(test::wait_for([&] {
    v1::Stats st = p.stats();
    return st.streams(0).frames_processed() > 10 && st.streams(1).frames_processed() > 3;
  }, 30));
  p.request_stop();
  EXPECT_TRUE(p.wait(10'000'000'000));
  p.join();  // returns only if every thread ended
  v1::Stats st = p.stats();
  for (const auto& s : st.streams())
    EXPECT_EQ(s.frames_in(),
              s.frames_processed() + s.frames_dropped() + s.frames_discarded_at_stop());
}

// Counts Stage::warm() calls, and calls that came with no frame processed since the last one.
std::atomic<std::uint64_t> g_warms{0}, g_warm_repeats{0}, g_warm_frames{0};

class WarmCounterStage : public Stage {
 public:
  using Stage::Stage;

 protected:
  StreamSpec do_start(const StreamSpec& in, const StageContext&) override { return in; }
  void do_process(Frame&) override {
    g_warm_frames.fetch_add(1);
    fresh_ = true;
  }
  void do_warm() override {
    g_warms.fetch_add(1);
    if (!fresh_) g_warm_repeats.fetch_add(1);
    fresh_ = false;
  }

 private:
  bool fresh_ = false;
};
RTNMF_REGISTER_STAGE("test_warm_counter", "test only", WarmCounterStage);

std::uint64_t warms_for(const std::string& source) {
  g_warms = g_warm_repeats = g_warm_frames = 0;
  Pipeline p(parse(R"(
publisher { disabled: true }
stream { id: "img" overload: BLOCK source { )" + source + R"( } stage { type: "test_warm_counter" } })"));
  p.start();
  EXPECT_TRUE(p.wait(60'000'000'000));
  p.join();
  return g_warms.load();
}

// Frames at a slow steady rate (imaging at 100 Hz here) find the stages warmed shortly before
// each is due, once per frame; as fast as they go (a replay at max speed), never: the next frame
// is always there.
TEST(Pipeline, StagesAreWarmedBetweenSlowSteadyFramesOnly) {
  const std::uint64_t paced =
      warms_for("pacing: REALTIME max_frames: 40 synthetic { kind: IMAGING height: 16 width: 16 rate_hz: 100 }");
  EXPECT_EQ(g_warm_frames.load(), 40u);
  EXPECT_GE(paced, 20u);  // 38 when no frame comes late (the first two set the interval)
  EXPECT_LE(paced, 39u);
  EXPECT_EQ(g_warm_repeats.load(), 0u) << "warmed twice without a frame between";
  const std::uint64_t max_speed =
      warms_for("pacing: MAX max_frames: 2000 synthetic { kind: IMAGING height: 16 width: 16 rate_hz: 100 }");
  EXPECT_EQ(g_warm_frames.load(), 2000u);
  EXPECT_LE(max_speed, 2u);  // only if this machine stalled 5 ms between two frames
}

TEST(Pipeline, SteadyStateProcessingAllocatesNothing) {
  if (!test::allocation_counting_available()) GTEST_SKIP() << "sanitizer build owns malloc";
  g_allocs_at_100 = 0;
  g_allocs_last = 0;
  Pipeline p(parse(emg_stream("pacing: MAX max_frames: 5000",
                              R"(stage { type: "rectify" } stage { type: "passthrough" passthrough { copies: 2 } } stage { type: "test_alloc_probe" })",
                              "overload: BLOCK")));
  p.add_sink("s0", std::make_unique<CollectSink>());
  p.start();
  ASSERT_TRUE(p.wait(60'000'000'000));
  p.join();
  ASSERT_GT(g_frames_seen.load(), 4000u);
  EXPECT_EQ(g_allocs_last.load() - g_allocs_at_100.load(), 0u)
      << "the processing thread allocated in steady state";
}

std::vector<float> replay_with_dummy_model(const std::string& pacing) {
  std::string text = R"(
publisher { disabled: true }
stream {
  id: "r"
  overload: BLOCK
  model_lag_frames: 4
  source { )" + pacing + R"( max_frames: 600
    synthetic { kind: EMG channels: 6 block_samples: 2 rate_hz: 4000 components: 2 seed: 3 } }
  stage { type: "test_dummy_model" }
})";
  Pipeline p(parse(text));
  auto sink = std::make_unique<CollectSink>();
  CollectSink* out = sink.get();
  p.add_sink("r", std::move(sink));
  p.start();
  EXPECT_TRUE(p.wait(120'000'000'000));
  p.join();
  EXPECT_EQ(out->seqs().size(), 600u);
  return out->values();
}

TEST(Pipeline, ReplaysWithASlowPathModelAreBitIdenticalAtAnySpeed) {
  std::vector<float> fast = replay_with_dummy_model("pacing: MAX");
  std::vector<float> slow = replay_with_dummy_model("pacing: REALTIME speed: 2");
  ASSERT_EQ(fast.size(), slow.size());
  ASSERT_FALSE(fast.empty());
  EXPECT_EQ(0, std::memcmp(fast.data(), slow.data(), fast.size() * sizeof(float)));
  // And the model did change the output (so the comparison means something).
  std::vector<float> again = replay_with_dummy_model("pacing: MAX");
  EXPECT_EQ(0, std::memcmp(fast.data(), again.data(), fast.size() * sizeof(float)));
}

TEST(Pipeline, RawFileTruncatedAtTheEndKeepsEarlierFramesAndNamesTheFrame) {
  const std::string path = ::testing::TempDir() + "/rtnmf_raw_trunc.bin";
  {
    std::ofstream f(path, std::ios::binary);
    std::vector<std::uint16_t> frame(4 * 5);
    for (int i = 0; i < 3; ++i) {
      for (auto& v : frame) v = static_cast<std::uint16_t>(i + 1);
      f.write(reinterpret_cast<const char*>(frame.data()), frame.size() * 2);
    }
    f.write(reinterpret_cast<const char*>(frame.data()), 7);  // a partial fourth frame
  }
  std::string text = R"(
publisher { disabled: true }
stream { id: "raw" source { raw { path: ")" + path + R"(" dtype: DTYPE_UINT16 shape: 4 shape: 5 rate_hz: 10 } } })";
  Pipeline p(parse(text));
  test::CollectSink* out = test::run_collecting(p, "raw", 30);
  ASSERT_NE(out, nullptr) << "the pipeline did not end";
  EXPECT_EQ(out->seqs(), (std::vector<std::uint64_t>{0, 1, 2}));
  ASSERT_EQ(p.errors().size(), 1u);
  EXPECT_EQ(p.errors()[0],
            "stream 'raw': " + path + ": frame 3: truncated (7 of 40 bytes)");
  std::remove(path.c_str());
}

// Records the scheduling policy of the thread that processes frames, and of a thread the stage
// starts in start() (standing for a slow-path worker), so a test can check which run real-time.
std::atomic<int> g_process_policy{-1};
std::atomic<int> g_slow_policy{-1};
std::atomic<int> g_process_cpus{-1};    // CPUs the processing thread may run on
std::atomic<bool> g_process_on_cpu0{false};
std::atomic<int> g_slow_cpus_given{-1};       // StageContext::slow_cpus.size()
std::atomic<bool> g_slow_cpus_has_cpu0{true};

class SchedProbeStage : public Stage {
 public:
  using Stage::Stage;
  ~SchedProbeStage() override {
    if (slow_.joinable()) slow_.join();
  }

 protected:
  StreamSpec do_start(const StreamSpec& in, const StageContext& ctx) override {
    slow_ = std::thread([] { g_slow_policy.store(sched_getscheduler(0)); });
    g_slow_cpus_given.store(static_cast<int>(ctx.slow_cpus.size()));
    g_slow_cpus_has_cpu0.store(std::find(ctx.slow_cpus.begin(), ctx.slow_cpus.end(), 0u) !=
                               ctx.slow_cpus.end());
    return in;
  }
  void do_process(Frame&) override {
    g_process_policy.store(sched_getscheduler(0));
    cpu_set_t set;
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof set, &set);
    g_process_cpus.store(CPU_COUNT(&set));
    g_process_on_cpu0.store(CPU_ISSET(0, &set));
  }

 private:
  std::thread slow_;
};
RTNMF_REGISTER_STAGE("test_sched_probe", "test only", SchedProbeStage);

TEST(Pipeline, RealtimePriorityAppliesToFrameThreadsOnlyAndIsRefusedCleanly) {
  const std::string why = realtime_refusal(10);
  Pipeline p(parse_pipeline(R"(
realtime_priority: 10
realtime_cpus: 0
publisher { endpoint: "tcp://127.0.0.1:*" control_endpoint: "none" }
stream { id: "rt" overload: BLOCK
  source { pacing: MAX max_frames: 500 synthetic { kind: EMG channels: 8 block_samples: 4 } }
  stage { type: "test_sched_probe" } })",
                            "rt.pbtxt"));
  test::CollectSink* out = test::run_collecting(p, "rt", 30);
  ASSERT_NE(out, nullptr) << "the pipeline did not end";
  EXPECT_TRUE(p.errors().empty());
  EXPECT_EQ(out->seqs().size(), 500u);
  // Slow-path threads keep normal scheduling whatever the frame threads run at.
  EXPECT_EQ(g_slow_policy.load(), SCHED_OTHER);
  if (why.empty()) {
    EXPECT_EQ(p.realtime_priority(), 10);
    EXPECT_EQ(g_process_policy.load(), SCHED_FIFO);
  } else {  // not permitted here: the pipeline said so and ran normally
    EXPECT_EQ(p.realtime_priority(), 0);
    EXPECT_EQ(g_process_policy.load(), SCHED_OTHER);
  }
  EXPECT_EQ(g_process_cpus.load(), 1);  // pinned to CPU 0 alone
  EXPECT_TRUE(g_process_on_cpu0.load());
  // Stages are told to keep their slow paths on the other CPUs.
  EXPECT_FALSE(g_slow_cpus_has_cpu0.load());
  EXPECT_EQ(g_slow_cpus_given.load(), static_cast<int>(cpus_outside({0}).size()));
  if (std::thread::hardware_concurrency() >= 2) {
    EXPECT_GE(g_slow_cpus_given.load(), 1);
  }
  EXPECT_EQ(sched_getscheduler(0), SCHED_OTHER);  // the caller's thread is left alone
}

// Logs the processing thread's calls: 'p' for process(), 'a' for after_frame() when the frame
// process() had is still that frame ('x' if the pool had handed it on: its seq or first value
// changed), and whether the pipeline promised that (StageContext::frame_valid_until_after_frame).
std::string g_call_log;
bool g_frame_promised = false;

class AfterFrameProbeStage : public Stage {
 public:
  using Stage::Stage;

 protected:
  StreamSpec do_start(const StreamSpec& in, const StageContext& ctx) override {
    g_call_log.reserve(4096);
    g_frame_promised = ctx.frame_valid_until_after_frame;
    return in;
  }
  void do_process(Frame& f) override {
    g_call_log.push_back('p');
    frame_ = &f;
    seq_ = f.header.seq;
    first_ = f.data()[0];
  }
  void do_after_frame() override {
    // Time for a source waiting on the pool to take and refill the frame, had it been released.
    std::this_thread::sleep_for(std::chrono::microseconds(100));
    g_call_log.push_back(frame_->header.seq == seq_ && frame_->data()[0] == first_ ? 'a' : 'x');
  }

 private:
  const Frame* frame_ = nullptr;
  std::uint64_t seq_ = 0;
  float first_ = 0;
};
RTNMF_REGISTER_STAGE("test_after_frame_probe", "test only", AfterFrameProbeStage);

TEST(Pipeline, AfterFrameRunsOncePerFrameAfterTheFrameIsProcessedWhileItIsStillThere) {
  g_call_log.clear();
  Pipeline p(parse_pipeline(R"(
publisher { disabled: true }
stream { id: "af" overload: BLOCK queue_depth: 2
  source { pacing: MAX max_frames: 300 synthetic { kind: EMG channels: 4 block_samples: 2 } }
  stage { type: "test_after_frame_probe" } })",
                            "af.pbtxt"));
  test::CollectSink* out = test::run_collecting(p, "af", 30);
  ASSERT_NE(out, nullptr) << "the pipeline did not end";
  EXPECT_EQ(out->seqs().size(), 300u);
  std::string want;
  for (int i = 0; i < 300; ++i) want += "pa";
  EXPECT_EQ(g_call_log, want);
  EXPECT_TRUE(g_frame_promised);
}

TEST(Pipeline, RealtimeCpuThatDoesNotExistIsAConfigError) {
  const unsigned n = std::thread::hardware_concurrency();
  try {
    parse_pipeline("stream { id: \"a\" source { synthetic { } } }\nrealtime_cpus: " +
                       std::to_string(n),
                   "rt.pbtxt");
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "rt.pbtxt:2: realtime_cpus: CPU " + std::to_string(n) +
                                         " does not exist (this machine has " +
                                         std::to_string(n) + ", numbered from 0)");
  }
}

TEST(Pipeline, RealtimePriorityOutOfRangeIsAConfigError) {
  try {
    parse_pipeline("realtime_priority: 99\nstream { id: \"a\" source { synthetic { } } }",
                   "rt.pbtxt");
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "rt.pbtxt:1: realtime_priority: must be between 1 and 98 (or 0 for normal "
                 "scheduling)");
  }
}

}  // namespace
}  // namespace rtnmf

namespace rtnmf {
namespace {

// Starts a pipeline that must not start: the ConfigError's text ("" if it started), and the
// pipeline left not started.
std::string start_error(Pipeline& p) {
  try {
    p.start();
  } catch (const ConfigError& e) {
    EXPECT_FALSE(p.started());
    return e.what();
  }
  return "";
}

// trigger.lane names a lane an earlier stage makes; any other name fails the start and says
// which lanes there are.
TEST(Pipeline, ATriggerOnALaneNoStageMakesFailsWithTheLanesThereAre) {
  Pipeline p(parse_pipeline(R"(
publisher { disabled: true }
stream { id: "s0" source { synthetic { kind: EMG channels: 8 block_samples: 4 } }
  stage { type: "trigger" trigger { lane: "dff" component: 0 } } })",
                            "t.pbtxt"));
  EXPECT_EQ(start_error(p),
            "stream 's0': stage 'trigger' (trigger): trigger.lane 'dff' is not made by the stages "
            "before it (they make no lanes)");
  // A trigger makes the lane "event": the second one's error lists it.
  Pipeline q(parse_pipeline(R"(
publisher { disabled: true }
stream { id: "s0" source { synthetic { kind: EMG channels: 8 block_samples: 4 } }
  stage { type: "trigger" name: "first" trigger { component: 0 } }
  stage { type: "trigger" name: "second" trigger { lane: "dff" component: 0 } } })",
                            "t.pbtxt"));
  EXPECT_EQ(start_error(q),
            "stream 's0': stage 'second' (trigger): trigger.lane 'dff' is not made by the stages "
            "before it (lanes: event)");
}

TEST(Pipeline, AStageThatCannotStartFailsStartWithItsNameAndLeavesNothingRunning) {
  Pipeline p(parse_pipeline(R"(
publisher { disabled: true }
stream { id: "s0" source { synthetic { kind: EMG channels: 8 block_samples: 4 } }
  stage { type: "test_dummy_model" }
  stage { type: "trigger" trigger { component: 9 } } })",
                            "t.pbtxt"));
  EXPECT_EQ(start_error(p),
            "stream 's0': stage 'trigger' (trigger): trigger.component 9 is out of range "
            "(the stream has 8 components per time step)");
  // The dummy model's slow-path thread was stopped: destroying the pipeline must not hang or
  // terminate on a joinable thread.
}

}  // namespace
}  // namespace rtnmf
