// Live EMG over ZeroMQ end to end: an acquisition program PUSHes `rtnmf.v1.Frame` blocks (16
// channels x 4 samples at 2 kHz) into the zmq source; emg_condition and online_synergies run on
// them; the activations leave on the publisher's PUB socket. Every good block is processed and
// every envelope sample's activations are published; malformed blocks mid-stream (wrong channel
// count, NaN, truncated payload) are rejected, counted and named, and the stream goes on.
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "engine/nmf/metrics.h"
#include "engine/runtime/config.h"
#include "engine/runtime/pipeline.h"
#include "engine/sim/emg_sim.h"
#include "frame.pb.h"
#include "messages.pb.h"
#include "plugins/emg/synergy_stage.h"
#include "tests/runtime/test_util.h"
#include "tests/support/scratch.h"

namespace rtnmf {
namespace {

// A block as acquisition software would send it: float32, sample-major (interleaved).
std::string block_bytes(std::uint64_t seq, std::uint32_t channels, const float* samples,
                        std::size_t count) {
  v1::Frame f;
  f.set_stream_id("emg");
  f.set_seq(seq);
  f.add_shape(channels);
  f.add_shape(static_cast<std::uint32_t>(count / channels));
  f.set_dtype(v1::DTYPE_FLOAT32);
  f.set_sample_rate_hz(2000);
  f.set_interleaved(true);
  f.set_payload(std::string(reinterpret_cast<const char*>(samples), count * sizeof(float)));
  return f.SerializeAsString();
}

TEST(EmgIngest, LiveBlocksOverZeroMqReachOnlineSynergiesAndEveryEnvelopeSampleIsPublished) {
  constexpr int kChannels = 16, kBlock = 4;
  sim::EmgSimConfig c;
  c.channels = kChannels;
  c.synergies = 3;
  c.duration_s = 24;
  c.seed = 8;
  const sim::EmgSimulation s = sim::simulate_emg(c);
  const std::int64_t blocks = s.emg.cols() / kBlock;        // 12000
  const std::int64_t envelope_samples = s.emg.cols() / 20;  // 2 kHz -> 100 Hz: 2400

  const std::string endpoint = "ipc://" + rtnmf::test::scratch_path("emg-ingest.sock");
  const std::string text = R"(
publisher { endpoint: "tcp://127.0.0.1:*" control_endpoint: "none" stats_interval_s: 0.02 }
stream { id: "emg" overload: BLOCK queue_depth: 64 model_lag_frames: 20
  source { zmq { endpoint: ")" +
                           endpoint + R"(" socket: PULL bind: true
                 shape: 16 shape: 4 blocks: true dtype: DTYPE_FLOAT32 rate_hz: 2000 } }
  stage { type: "emg_condition" name: "condition"
          emg { notch_hz: 50 envelope_hz: 6 envelope_rate_hz: 100 } }
  stage { type: "online_synergies" name: "nmf" nmf { calibration_s: 8 update_every: 50 } }
})";
  Pipeline p(parse_pipeline(text, "emg-ingest.pbtxt"));
  p.start();

  zmq::context_t ctx(1);
  zmq::socket_t sub(ctx, zmq::socket_type::sub);
  sub.set(zmq::sockopt::rcvhwm, 0);
  sub.set(zmq::sockopt::rcvtimeo, 200);
  sub.set(zmq::sockopt::subscribe, "act/emg");
  sub.set(zmq::sockopt::subscribe, "stats");
  sub.connect(p.endpoint());
  // A stats message proves the subscription reached the publisher (PUB drops before that).
  ASSERT_TRUE(test::wait_for(
      [&] {
        zmq::message_t t, b;
        if (!sub.recv(t) || !t.more() || !sub.recv(b)) return false;
        return t.to_string() == "stats";
      },
      20));

  // Bad blocks go in after the calibration window (block 5000 = 10 s), numbered in sequence so
  // that none counts as lost upstream.
  std::vector<float> nan_block(s.emg.data() + 5000 * kBlock * kChannels,
                               s.emg.data() + 5001 * kBlock * kChannels);
  nan_block[17] = std::nanf("");
  std::thread sender([&] {
    zmq::socket_t push(ctx, zmq::socket_type::push);
    // Closing the socket must not discard blocks still queued in it: on a loaded CI machine the
    // pipeline can be seconds behind the sender when the last block is sent, and a 2 s linger
    // once dropped the stream's tail (the last envelope sample never came).
    push.set(zmq::sockopt::linger, 60'000);
    push.connect(endpoint);
    std::uint64_t seq = 0;
    for (std::int64_t b = 0; b < blocks; ++b) {
      if (b == 5000) {
        // 15 channels: a wrong channel count mid-stream.
        push.send(zmq::buffer(block_bytes(seq++, 15, nan_block.data(), 15 * kBlock)),
                  zmq::send_flags::none);
        push.send(zmq::buffer(block_bytes(seq++, kChannels, nan_block.data(), nan_block.size())),
                  zmq::send_flags::none);
        std::string cut = block_bytes(seq++, kChannels, nan_block.data(), nan_block.size());
        v1::Frame f;
        f.ParseFromString(cut);
        f.set_payload(f.payload().substr(0, 100));
        push.send(zmq::buffer(f.SerializeAsString()), zmq::send_flags::none);
      }
      const float* x = s.emg.data() + b * kBlock * kChannels;
      push.send(zmq::buffer(block_bytes(seq++, kChannels, x, kBlock * kChannels)),
                zmq::send_flags::none);
    }
  });

  std::vector<std::uint64_t> seqs, message_seqs;
  std::int64_t with_values = 0, negative = 0, wrong_size = 0;
  double last_stats_vaf = -1;
  const std::int64_t deadline = now_ns() + 120'000'000'000;
  while (static_cast<std::int64_t>(seqs.size()) < envelope_samples && now_ns() < deadline) {
    zmq::message_t t, b;
    if (!sub.recv(t)) continue;
    ASSERT_TRUE(t.more());
    ASSERT_TRUE(sub.recv(b));
    if (t.to_string() == "stats") {
      v1::Stats st;
      ASSERT_TRUE(st.ParseFromArray(b.data(), static_cast<int>(b.size())));
      const auto& sc = st.streams(0).scalars();
      if (auto it = sc.find("nmf.vaf"); it != sc.end()) last_stats_vaf = it->second;
      continue;
    }
    if (t.to_string() != "act/emg") continue;
    v1::Activations a;
    ASSERT_TRUE(a.ParseFromArray(b.data(), static_cast<int>(b.size())));
    seqs.push_back(a.seq());
    message_seqs.push_back(a.message_seq());
    if (a.values_size() > 0) {
      ++with_values;
      if (a.values_size() != 3) ++wrong_size;
      for (float v : a.values()) negative += v < 0;
    }
  }
  // The stream may end between two stats messages (every 20 ms): read on until one carries the
  // VAF of the calibrated model (the pipeline keeps publishing stats until it is stopped).
  const std::int64_t stats_deadline = now_ns() + 10'000'000'000;
  while (!(last_stats_vaf > 0) && now_ns() < stats_deadline) {
    zmq::message_t t, b;
    if (!sub.recv(t) || !t.more() || !sub.recv(b) || t.to_string() != "stats") continue;
    v1::Stats st;
    ASSERT_TRUE(st.ParseFromArray(b.data(), static_cast<int>(b.size())));
    const auto& sc = st.streams(0).scalars();
    if (auto it = sc.find("nmf.vaf"); it != sc.end()) last_stats_vaf = it->second;
  }
  sender.join();
  p.request_stop();
  ASSERT_TRUE(p.wait(20'000'000'000));
  p.join();

  // Every envelope sample's activations arrived, in order, once. If not, say where they went:
  // never processed (lost before the pipeline), not sent (publisher), or sent and not received.
  const v1::Stats end = p.stats();
  std::string where = "frames processed " + std::to_string(end.streams(0).frames_processed()) +
                      ", publisher send failures " + std::to_string(end.messages_send_failed()) +
                      ", results not published " +
                      std::to_string(end.streams(0).publish_dropped());
  for (std::size_t i = 1; i < message_seqs.size(); ++i)
    if (message_seqs[i] != message_seqs[i - 1] + 1)
      where += ", message_seq gap after " + std::to_string(message_seqs[i - 1]);
  if (!seqs.empty()) where += ", last block seq " + std::to_string(seqs.back());
  ASSERT_EQ(static_cast<std::int64_t>(seqs.size()), envelope_samples) << where;
  for (std::size_t i = 1; i < seqs.size(); ++i) ASSERT_LT(seqs[i - 1], seqs[i]) << i;
  // Calibrated after 8 s (+ the model lag): the rest carry K = 3 non-negative activations.
  EXPECT_GT(with_values, envelope_samples - 900);
  EXPECT_EQ(wrong_size, 0);
  EXPECT_EQ(negative, 0);

  // The sliding-window VAF is published in `stats` (at 0.02 s intervals: seen after calibration).
  EXPECT_GT(last_stats_vaf, 0.85);

  const v1::Stats& st = end;
  EXPECT_EQ(st.messages_send_failed(), 0u);
  EXPECT_EQ(st.streams(0).frames_processed(), static_cast<std::uint64_t>(blocks));
  EXPECT_EQ(st.streams(0).frames_rejected(), 3u);
  EXPECT_EQ(st.streams(0).frames_lost_upstream(), 0u);
  EXPECT_EQ(st.streams(0).frames_dropped(), 0u);
  const std::vector<std::string> why = p.rejections(0);
  ASSERT_EQ(why.size(), 3u);
  const std::string pre = "zmq ingest " + endpoint + ": ";
  EXPECT_EQ(why[0], pre + "frame seq 5000: shape 15x4, expected 16x4");
  EXPECT_EQ(why[1], pre + "frame seq 5001: 1 NaN/Inf samples");
  EXPECT_EQ(why[2], pre + "frame seq 5002: payload has 100 bytes, expected 256");

  // The synergies learnt from the live stream are the planted ones.
  emg::SynergyStage* nmf = nullptr;
  for (Stage* stage : p.stages(0))
    if (auto* x = dynamic_cast<emg::SynergyStage*>(stage)) nmf = x;
  ASSERT_NE(nmf, nullptr);
  ASSERT_EQ(nmf->components(), 3);
  EXPECT_GE(nmf::match_factors(s.synergies, nmf->synergies()).mean_similarity, 0.95);
}

}  // namespace
}  // namespace rtnmf
