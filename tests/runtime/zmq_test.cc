// ZeroMQ end to end on loopback: publishing and ingest.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <string>
#include <utility>
#include <vector>
#include <zmq.hpp>

#include "engine/runtime/pacer.h"
#include "engine/runtime/pipeline.h"
#include "engine/runtime/registry.h"
#include "frame.pb.h"
#include "messages.pb.h"
#include "tests/runtime/test_util.h"
#include "tests/support/scratch.h"

namespace rtnmf {
namespace {

std::atomic<bool> g_gate_open{false};

// Emits max_frames small blocks at 2 kHz, but only once the test opens the gate (so a
// subscriber can join first: ZeroMQ PUB drops what is sent before a subscription arrives).
class GatedSource : public Source {
 public:
  StreamSpec open(const v1::SourceConfig& cfg, const std::string& id) override {
    max_ = cfg.max_frames();
    v1::SourceConfig paced = cfg;
    paced.set_pacing(v1::REALTIME);
    pacer_.init(paced, 2000, true);
    return StreamSpec::make(id, 3, 1, 2000);
  }
  ReadStatus read(Frame& f) override {
    if (!g_gate_open.load()) {
      sleep_until_ns(now_ns() + 1'000'000);
      return ReadStatus::kTimeout;
    }
    if (max_ && n_ >= max_) return ReadStatus::kEnd;
    pacer_.wait(n_);
    f.header.seq = n_;
    f.set_shape(3, 1);
    f.data()[0] = static_cast<float>(n_);
    f.data()[1] = 1;
    f.data()[2] = 2;
    ++n_;
    return ReadStatus::kFrame;
  }

 private:
  std::uint64_t n_ = 0, max_ = 0;
  Pacer pacer_;
};
RTNMF_REGISTER_SOURCE("test_gated", "test only", GatedSource);

// Emits no time step for odd frames (like a decimating EMG stage between envelope samples).
class OddFramesEmptyStage : public Stage {
 public:
  using Stage::Stage;

 protected:
  StreamSpec do_start(const StreamSpec& in, const StageContext&) override { return in; }
  void do_process(Frame& f) override {
    if (f.header.seq % 2) f.set_shape(f.header.rows, 0);
  }
};
RTNMF_REGISTER_STAGE("test_odd_empty", "test only", OddFramesEmptyStage);

// Runs a pipeline of test_gated frames to its end with a subscriber that joined before the first
// frame (the gate opens once a stats message has arrived), and returns every (topic, body) the
// subscriber received.
std::vector<std::pair<std::string, std::string>> run_gated(const std::string& text, const std::string& name) {
  g_gate_open = false;
  Pipeline p(parse_pipeline(text, name));
  p.start();
  zmq::context_t ctx(1);
  zmq::socket_t sub(ctx, zmq::socket_type::sub);
  sub.set(zmq::sockopt::rcvtimeo, 100);
  sub.set(zmq::sockopt::subscribe, "");
  sub.connect(p.endpoint());
  const bool joined = test::wait_for([&] {
    zmq::message_t t, b;
    if (!sub.recv(t) || !t.more() || !sub.recv(b)) return false;
    return t.to_string() == "stats";
  }, 20);
  EXPECT_TRUE(joined);
  g_gate_open = true;
  EXPECT_TRUE(p.wait(30'000'000'000));
  p.join();
  std::vector<std::pair<std::string, std::string>> got;
  for (;;) {
    zmq::message_t t, b;
    if (!sub.recv(t)) break;
    EXPECT_TRUE(t.more());
    if (!sub.recv(b)) break;
    got.emplace_back(t.to_string(), b.to_string());
  }
  return got;
}

TEST(ZmqLoopback, FramesWithNoTimeStepAreNotPublished) {
  const auto got = run_gated(R"(
publisher { endpoint: "tcp://127.0.0.1:*" control_endpoint: "none" stats_interval_s: 0.02 }
stream { id: "dec" overload: BLOCK
  source { max_frames: 200 plugin { values { key: "type" value: "test_gated" } } }
  stage { type: "test_odd_empty" } })",
                             "dec.pbtxt");
  std::vector<std::uint64_t> seqs, message_seqs;
  for (const auto& [topic, body] : got) {
    if (topic != "act/dec") continue;
    v1::Activations act;
    ASSERT_TRUE(act.ParseFromString(body));
    seqs.push_back(act.seq());
    message_seqs.push_back(act.message_seq());
  }
  ASSERT_EQ(seqs.size(), 100u);
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    ASSERT_EQ(seqs[i], 2 * i);        // frame seq skips the frames that published nothing
    ASSERT_EQ(message_seqs[i], i);    // the message counter does not: no message was lost
  }
}

// Adds the lanes the publisher sends beside the values: "spikes", "dff" and "fit_quality" (as the
// online CNMF stage does) and "shifts" / "motion_quality" (as motion correction does), each
// frame's entries derived from its seq.
class SpikesAndDffStage : public Stage {
 public:
  using Stage::Stage;

 protected:
  StreamSpec do_start(const StreamSpec& in, const StageContext&) override {
    StreamSpec out = in;
    spikes_ = out.add_lane("spikes", 3);
    dff_ = out.add_lane("dff", 3);
    shifts_ = out.add_lane("shifts", 2);
    quality_ = out.add_lane("motion_quality", 2);
    fit_ = out.add_lane("fit_quality", 2);
    return out;
  }
  void do_process(Frame& f) override {
    Lane& s = f.lane(spikes_);
    Lane& d = f.lane(dff_);
    for (int i = 0; i < 3; ++i) {
      s.data[i] = static_cast<float>(f.header.seq) + 0.25f * static_cast<float>(i);
      d.data[i] = 0.5f * static_cast<float>(f.header.seq) - static_cast<float>(i);
    }
    s.size = d.size = 3;
    // As the motion-correction stage: (dy, dx), (peak, held); every 7th frame held.
    Lane& sh = f.lane(shifts_);
    Lane& q = f.lane(quality_);
    sh.data[0] = 0.125f * static_cast<float>(f.header.seq);
    sh.data[1] = -1.5f;
    q.data[0] = 0.5f;
    q.data[1] = f.header.seq % 7 == 3 ? 1.0f : 0.0f;
    sh.size = q.size = 2;
    // As the online CNMF stage: (residual, excluded); every 5th frame excluded.
    Lane& fq = f.lane(fit_);
    fq.data[0] = 100.0f;
    fq.data[1] = f.header.seq % 5 == 2 ? 1.0f : 0.0f;
    fq.size = 2;
  }

 private:
  int spikes_ = -1, dff_ = -1, shifts_ = -1, quality_ = -1, fit_ = -1;
};
RTNMF_REGISTER_STAGE("test_spikes_dff", "test only", SpikesAndDffStage);

// ... and a trigger on the dff lane (trigger.lane) fires where that lane crosses its threshold.
TEST(ZmqLoopback, SpikesAndDffLanesArePublishedWithTheValues) {
  const auto got = run_gated(R"(
publisher { endpoint: "tcp://127.0.0.1:*" control_endpoint: "none" stats_interval_s: 0.02 }
stream { id: "lanes" overload: BLOCK
  source { max_frames: 50 plugin { values { key: "type" value: "test_gated" } } }
  stage { type: "test_spikes_dff" }
  stage { type: "trigger" trigger { lane: "dff" component: 1 threshold: 9.5 } } })",
                             "lanes.pbtxt");
  std::size_t n = 0;
  std::vector<v1::Event> events;
  for (const auto& [topic, body] : got) {
    if (topic == "event/lanes") {
      v1::Event ev;
      ASSERT_TRUE(ev.ParseFromString(body));
      events.push_back(ev);
      continue;
    }
    if (topic != "act/lanes") continue;
    v1::Activations act;
    ASSERT_TRUE(act.ParseFromString(body));
    ASSERT_EQ(act.values_size(), 3);
    ASSERT_EQ(act.spikes_size(), 3);
    ASSERT_EQ(act.dff_size(), 3);
    const float seq = static_cast<float>(act.seq());
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(act.spikes(i), seq + 0.25f * static_cast<float>(i));
      EXPECT_EQ(act.dff(i), 0.5f * seq - static_cast<float>(i));
    }
    ASSERT_TRUE(act.has_motion());
    EXPECT_EQ(act.motion().dy(), 0.125f * seq);
    EXPECT_EQ(act.motion().dx(), -1.5f);
    EXPECT_EQ(act.motion().peak(), 0.5f);
    EXPECT_EQ(act.motion().held(), act.seq() % 7 == 3);
    EXPECT_EQ(act.excluded(), act.seq() % 5 == 2);
    ++n;
  }
  EXPECT_EQ(n, 50u);
  // dff[1] = seq / 2 - 1 reaches 9.5 at seq 21: one event there, with that value.
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].seq(), 21u);
  EXPECT_EQ(events[0].component(), 1u);
  EXPECT_EQ(events[0].value(), 9.5f);
}

TEST(ZmqLoopback, EverySeqArrivesUnderBlockAtAModerateRate) {
  constexpr std::uint64_t kFrames = 2000;
  g_gate_open = false;
  std::string text = R"(
publisher { endpoint: "tcp://127.0.0.1:*" control_endpoint: "none" stats_interval_s: 0.02 }
stream { id: "lo" overload: BLOCK
  source { max_frames: )" + std::to_string(kFrames) + R"( plugin { values { key: "type" value: "test_gated" } } }
  stage { type: "passthrough" }
  stage { type: "trigger" trigger { component: 0 threshold: 1000.5 refractory_ms: 10 } } })";
  Pipeline p(parse_pipeline(text, "zmq.pbtxt"));
  p.start();
  ASSERT_EQ(p.endpoint().rfind("tcp://127.0.0.1:", 0), 0u);
  zmq::context_t ctx(1);
  zmq::socket_t sub(ctx, zmq::socket_type::sub);
  sub.set(zmq::sockopt::rcvtimeo, 100);
  sub.set(zmq::sockopt::subscribe, "");
  sub.connect(p.endpoint());
  // A stats message proves the subscription reached the publisher.
  bool joined = test::wait_for([&] {
    zmq::message_t t, b;
    if (!sub.recv(t) || !t.more() || !sub.recv(b)) return false;
    return t.to_string() == "stats";
  }, 20);
  ASSERT_TRUE(joined);
  g_gate_open = true;
  std::vector<std::uint64_t> seqs;
  std::vector<v1::Event> events;
  v1::Activations act;
  const std::int64_t deadline = now_ns() + 60'000'000'000;
  while (seqs.size() < kFrames && now_ns() < deadline) {
    zmq::message_t t, b;
    if (!sub.recv(t)) continue;
    ASSERT_TRUE(t.more());
    ASSERT_TRUE(sub.recv(b));
    if (t.to_string() == "event/lo") {
      v1::Event ev;
      ASSERT_TRUE(ev.ParseFromArray(b.data(), static_cast<int>(b.size())));
      events.push_back(ev);
      continue;
    }
    if (t.to_string() != "act/lo") continue;
    ASSERT_TRUE(act.ParseFromArray(b.data(), static_cast<int>(b.size())));
    ASSERT_EQ(act.values_size(), 3);
    EXPECT_EQ(act.values(0), static_cast<float>(act.seq()));
    EXPECT_GT(act.t_received_ns(), 0);
    EXPECT_GE(act.t_processed_ns(), act.t_received_ns());
    seqs.push_back(act.seq());
  }
  p.request_stop();
  ASSERT_TRUE(p.wait(10'000'000'000));
  p.join();
  ASSERT_EQ(seqs.size(), kFrames);
  for (std::uint64_t i = 0; i < kFrames; ++i) ASSERT_EQ(seqs[i], i);
  EXPECT_EQ(p.stats().messages_send_failed(), 0u);
  // values[0] = seq rises through 1000.5 once: one trigger, at the frame that crossed.
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].seq(), 1001u);
  EXPECT_EQ(events[0].component(), 0u);
  EXPECT_EQ(events[0].value(), 1001.f);
  EXPECT_EQ(events[0].kind(), "threshold");
}

TEST(ZmqLoopback, LargeOutputsTravelAsARawThirdFrame) {
  std::string text = R"(
publisher { endpoint: "tcp://127.0.0.1:*" control_endpoint: "none" }
stream { id: "img" overload: BLOCK
  source { pacing: REALTIME synthetic { kind: IMAGING height: 128 width: 96 rate_hz: 200 } }
  stage { type: "rectify" rectify { threshold: 90 } } })";
  Pipeline p(parse_pipeline(text, "big.pbtxt"));
  p.start();
  zmq::context_t ctx(1);
  zmq::socket_t sub(ctx, zmq::socket_type::sub);
  sub.set(zmq::sockopt::rcvtimeo, 100);
  sub.set(zmq::sockopt::subscribe, "act/img");
  sub.connect(p.endpoint());
  int got = 0;
  const std::int64_t deadline = now_ns() + 30'000'000'000;
  while (got < 5 && now_ns() < deadline) {
    zmq::message_t t, b, raw;
    if (!sub.recv(t)) continue;
    ASSERT_TRUE(t.more());
    ASSERT_TRUE(sub.recv(b));
    v1::Activations act;
    ASSERT_TRUE(act.ParseFromArray(b.data(), static_cast<int>(b.size())));
    ASSERT_TRUE(act.values_in_next_part());
    ASSERT_TRUE(b.more());
    ASSERT_TRUE(sub.recv(raw));
    EXPECT_FALSE(raw.more());
    EXPECT_EQ(act.values_size(), 0);
    EXPECT_EQ(act.value_count(), 128u * 96u);
    ASSERT_EQ(raw.size(), 128u * 96u * sizeof(float));
    const float* v = static_cast<const float*>(raw.data());
    float mx = 0;
    for (std::size_t i = 0; i < 128 * 96; ++i) {
      ASSERT_GE(v[i], 0.f);
      mx = std::max(mx, v[i]);
    }
    EXPECT_GT(mx, 0.f);  // the synthetic background (~100) minus 90 leaves positive pixels
    ++got;
  }
  p.request_stop();
  ASSERT_TRUE(p.wait(10'000'000'000));
  p.join();
  EXPECT_EQ(got, 5);
}

std::string frame_bytes(std::uint64_t seq, std::vector<std::uint32_t> shape,
                        const std::vector<float>& values, v1::DType dtype = v1::DTYPE_FLOAT32,
                        bool marked_bad = false) {
  v1::Frame f;
  f.set_marked_bad(marked_bad);
  f.set_stream_id("in");
  f.set_seq(seq);
  for (auto d : shape) f.add_shape(d);
  f.set_dtype(dtype);
  f.set_payload(std::string(reinterpret_cast<const char*>(values.data()),
                            values.size() * sizeof(float)));
  return f.SerializeAsString();
}

TEST(ZmqIngest, MalformedMessagesAreRejectedAndCountedAndTheStreamGoesOn) {
  const std::string endpoint = "ipc://" + rtnmf::test::scratch_path("ingest.sock");
  std::string text = R"(
publisher { disabled: true }
stream { id: "in" overload: BLOCK
  source { zmq { endpoint: ")" + endpoint + R"(" socket: PULL bind: true shape: 2 shape: 3 blocks: true dtype: DTYPE_FLOAT32 } }
})";
  Pipeline p(parse_pipeline(text, "ingest.pbtxt"));
  auto sink = std::make_unique<test::CollectSink>();
  test::CollectSink* out = sink.get();
  p.add_sink("in", std::move(sink));
  p.start();
  zmq::context_t ctx(1);
  zmq::socket_t push(ctx, zmq::socket_type::push);
  push.connect(endpoint);
  const std::vector<float> good{0, 1, 2, 10, 11, 12};  // channel-major: ch0 = 0 1 2, ch1 = 10 11 12
  std::vector<float> with_nan = good;
  with_nan[4] = std::nanf("");
  std::string truncated = frame_bytes(3, {2, 3}, good);
  {
    v1::Frame f;
    f.ParseFromString(truncated);
    f.set_payload(f.payload().substr(0, 10));
    truncated = f.SerializeAsString();
  }
  const std::vector<std::string> messages = {
      frame_bytes(0, {2, 3}, good),
      std::string("\xff\xff garbage \x01\x02", 13),
      frame_bytes(2, {3, 2}, good),
      truncated,
      frame_bytes(4, {2, 3}, with_nan),
      frame_bytes(5, {2, 3}, good, v1::DTYPE_FLOAT32, true),  // the rig's mark: its stimulation light
      frame_bytes(9, {2, 3}, good),  // seq 6..8 never sent: lost upstream
  };
  for (const auto& m : messages) push.send(zmq::buffer(m), zmq::send_flags::none);
  ASSERT_TRUE(test::wait_for([&] { return out->seqs().size() == 3; }, 20));
  p.request_stop();
  ASSERT_TRUE(p.wait(10'000'000'000));
  p.join();
  EXPECT_EQ(out->seqs(), (std::vector<std::uint64_t>{0, 5, 9}));
  EXPECT_EQ(out->marked(), (std::vector<std::uint64_t>{5}));
  // Blocks arrive channel-major and are stored one sample of all channels contiguous.
  std::vector<float> v = out->values();
  ASSERT_GE(v.size(), 6u);
  EXPECT_EQ(std::vector<float>(v.begin(), v.begin() + 6), (std::vector<float>{0, 10, 1, 11, 2, 12}));
  v1::Stats st = p.stats();
  EXPECT_EQ(st.streams(0).frames_rejected(), 4u);
  // Seq 1 (the garbage message carried no readable seq) and 6..8 were never seen.
  EXPECT_EQ(st.streams(0).frames_lost_upstream(), 4u);
  std::vector<std::string> why = p.rejections(0);
  ASSERT_EQ(why.size(), 4u);
  const std::string pre = "zmq ingest " + endpoint + ": ";
  EXPECT_EQ(why[0], pre + "message 2: not a rtnmf.v1.Frame (13 bytes)");
  EXPECT_EQ(why[1], pre + "frame seq 2: shape 3x2, expected 2x3");
  EXPECT_EQ(why[2], pre + "frame seq 3: payload has 10 bytes, expected 24");
  EXPECT_EQ(why[3], pre + "frame seq 4: 1 NaN/Inf samples");
}

}  // namespace
}  // namespace rtnmf
