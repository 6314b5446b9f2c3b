// EMG fast path: conditioning (band-pass, notch, envelope, decimation) + online synergies (NNLS
// activations, slow-path W updates on their own thread), driven block by block as the
// processing thread would. Reports per-block latency p50/p99/max (µs) and, for the 256-channel
// case, how many times real time one core sustains. BM_EmgWire_64ch4kHz runs the whole live
// pipeline (synthetic 64-channel source paced at 4 kHz in 4-sample blocks -> emg_condition ->
// online_synergies K 8 -> publisher PUB on loopback -> a subscriber thread here) and reports
// frame received -> activations received by the subscriber, p50/p99/max (µs), over every
// published envelope sample (100 Hz).
//
//   bench/bm_emg --benchmark_counters_tabular=true [--benchmark_format=json]
//   bench/bm_emg --benchmark_filter=Wire --benchmark_format=json   (about 20 s)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/net/publisher.h"
#include "engine/runtime/clock.h"
#include "engine/runtime/config.h"
#include "engine/runtime/pipeline.h"
#include "engine/runtime/registry.h"
#include "engine/sim/emg_sim.h"
#include "messages.pb.h"
#include "plugins/emg/synergy_stage.h"

namespace rtnmf {
namespace {

struct Chain {
  std::unique_ptr<Stage> condition, nmf;
  StreamSpec in, out;
  Frame frame;
  Eigen::MatrixXf emg;  // channels × samples, replayed in a loop
  Eigen::Index pos = 0;
  int block = 4;

  void feed() {
    if (pos + block > emg.cols()) pos = 0;
    frame.set_shape(in.rows, block);
    std::copy(emg.col(pos).data(), emg.col(pos).data() + in.rows * block, frame.data());
    pos += block;
  }
  void step() {
    feed();
    condition->process(frame);
    nmf->process(frame);
  }
};

// 8 synergies, notch on, calibration on the first 2 s, then online updates every 50 blocks.
std::unique_ptr<Chain> make_chain(int channels, double fs, int block, int synergies, RunMode mode) {
  auto ch = std::make_unique<Chain>();
  ch->block = block;
  sim::EmgSimConfig sc;
  sc.channels = channels;
  sc.synergies = synergies;
  sc.sample_rate_hz = fs;
  sc.duration_s = 6;
  sc.seed = 3;
  ch->emg = sim::simulate_emg(sc).emg;
  v1::StageConfig cond;
  cond.set_type("emg_condition");
  cond.mutable_emg()->set_notch_hz(50);
  v1::StageConfig nmf;
  nmf.set_type("online_synergies");
  nmf.set_name("nmf");
  nmf.mutable_nmf()->set_rank(synergies);
  nmf.mutable_nmf()->set_calibration_s(2);
  nmf.mutable_nmf()->set_update_every(50);
  ch->condition = Registry::instance().make_stage(cond);
  ch->nmf = Registry::instance().make_stage(nmf);
  StageContext ctx;
  ctx.stream_id = "bench";
  ctx.mode = mode;
  ctx.model_lag_frames = 50;
  ch->in = StreamSpec::make("bench", channels, block, fs);
  StreamSpec mid = ch->condition->start(ch->in, ctx);
  ch->out = ch->nmf->start(mid, ctx);
  std::vector<std::uint32_t> caps;
  for (const LaneSpec& l : ch->out.lanes) caps.push_back(l.size);
  caps[0] = std::max<std::uint32_t>(caps[0], channels * block);
  ch->frame.allocate(caps);
  // Warm up past calibration (2 s of data) so the model is in use when timing starts.
  auto* stage = dynamic_cast<emg::SynergyStage*>(ch->nmf.get());
  const Eigen::Index warm_blocks = static_cast<Eigen::Index>(3 * fs / block);
  for (Eigen::Index i = 0; i < warm_blocks || stage->components() == 0; ++i) ch->step();
  return ch;
}

void report_latency(benchmark::State& state, std::vector<std::int64_t>& ns) {
  if (ns.empty()) return;
  std::sort(ns.begin(), ns.end());
  auto q = [&](double p) {
    return static_cast<double>(
               ns[std::min(ns.size() - 1, static_cast<std::size_t>(p * ns.size()))]) /
           1e3;
  };
  state.counters["p50_us"] = q(0.50);
  state.counters["p99_us"] = q(0.99);
  state.counters["p999_us"] = q(0.999);
  state.counters["max_us"] = static_cast<double>(ns.back()) / 1e3;
}

// Blocks of 4 samples, 64 channels at 4 kHz, 8 synergies (DESIGN.md §5: p99 < 50 µs). Live mode:
// the slow path updates W concurrently and the fast path never waits for it.
void BM_EmgBlock_Process64ch4kHz(benchmark::State& state) {
  auto ch = make_chain(64, 4000, 4, 8, RunMode::kLive);
  std::vector<std::int64_t> ns;
  ns.reserve(1 << 22);
  for (auto _ : state) {
    ch->feed();
    const std::int64_t t0 = now_ns();
    ch->condition->process(ch->frame);
    ch->nmf->process(ch->frame);
    ns.push_back(now_ns() - t0);
    benchmark::DoNotOptimize(ch->frame.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["envelope_samples_per_block"] = 0.1;
  report_latency(state, ns);
  ch->condition->stop();
  ch->nmf->stop();
}
BENCHMARK(BM_EmgBlock_Process64ch4kHz)->Iterations(200000)->UseRealTime();

// Baseline: the conditioning stage alone (what the synergy stage adds is the difference).
void BM_EmgBlock_ConditionOnly64ch4kHz(benchmark::State& state) {
  auto ch = make_chain(64, 4000, 4, 8, RunMode::kLive);
  std::vector<std::int64_t> ns;
  ns.reserve(1 << 22);
  for (auto _ : state) {
    ch->feed();
    const std::int64_t t0 = now_ns();
    ch->condition->process(ch->frame);
    ns.push_back(now_ns() - t0);
    benchmark::DoNotOptimize(ch->frame.data());
  }
  state.SetItemsProcessed(state.iterations());
  report_latency(state, ns);
  ch->condition->stop();
  ch->nmf->stop();
}
BENCHMARK(BM_EmgBlock_ConditionOnly64ch4kHz)->Iterations(200000)->UseRealTime();

// 256 channels at 2 kHz in 4-sample blocks, 8 synergies: real-time factor on one core
// (samples processed per second / 2000; >= 1 means sustained). Replay mode: the fast path also
// waits for every scheduled model update, as a replay would.
void BM_EmgStream_256ch2kHz(benchmark::State& state) {
  const RunMode mode = state.range(0) ? RunMode::kReplay : RunMode::kLive;
  auto ch = make_chain(256, 2000, 4, 8, mode);
  std::vector<std::int64_t> ns;
  ns.reserve(1 << 20);
  const std::int64_t start = now_ns();
  for (auto _ : state) {
    ch->feed();
    const std::int64_t t0 = now_ns();
    ch->condition->process(ch->frame);
    ch->nmf->process(ch->frame);
    ns.push_back(now_ns() - t0);
  }
  const double wall_s = static_cast<double>(now_ns() - start) / 1e9;
  state.SetItemsProcessed(state.iterations());
  state.counters["realtime_factor"] = state.iterations() * 4.0 / 2000.0 / wall_s;
  report_latency(state, ns);
  ch->condition->stop();
  ch->nmf->stop();
}
BENCHMARK(BM_EmgStream_256ch2kHz)->Arg(0)->Arg(1)->Iterations(50000)->UseRealTime();

// Received -> activations on the ZMQ wire (DESIGN.md §5: p99 < 200 µs for EMG), live mode
// (DROP_OLDEST; drops and seq gaps reported). The source's t_received is taken when it hands
// the block over; latency = subscriber receipt - t_received, both CLOCK_MONOTONIC. Only blocks
// that complete an envelope sample (1 in 10 at 4 kHz / 100 Hz) publish activations.
void BM_EmgWire_64ch4kHz(benchmark::State& state) {  // (and other sizes, see the Args)
  const double seconds = static_cast<double>(state.range(0));
  // range(1): spin_us of the processing thread and the publisher (0: their defaults: no spin on
  // machines under 4 cores). range(4): SCHED_FIFO priority for the frame-carrying threads, all
  // pinned to CPU 1, and the subscriber with them (0: normal scheduling).
  const std::string spin =
      state.range(1) > 0 ? " spin_us: " + std::to_string(state.range(1)) + " " : " ";
  const int rt = static_cast<int>(state.range(4));
  const std::string text = (rt > 0 ? "realtime_priority: " + std::to_string(rt) +
                                         "\nrealtime_cpus: 1\n"
                                   : std::string()) +
                           R"(
publisher { endpoint: "tcp://127.0.0.1:*" control_endpoint: "none")" +
                           spin + R"(}
stream { id: "emg" overload: DROP_OLDEST model_lag_frames: 50)" +
                           spin + R"(
  source { pacing: REALTIME synthetic { kind: EMG channels: )" +
                           std::to_string(state.range(2)) + R"( block_samples: 4 rate_hz: )" +
                           std::to_string(state.range(3)) + R"( components: 8 seed: 3 } }
  stage { type: "emg_condition" name: "condition" emg { notch_hz: 50 } }
  stage { type: "online_synergies" name: "nmf"
          nmf { rank: 8 calibration_s: 2 update_every: 50 forgetting: 0.999 } }
})";
  const std::uint64_t per_env = static_cast<std::uint64_t>(state.range(3) / 100 / 4);
  for (auto _ : state) {
    Pipeline pipeline(parse_pipeline(text, "<bm_emg wire>"), text);
    pipeline.start();
    std::vector<std::int64_t> ns;
    ns.reserve(static_cast<std::size_t>(seconds * 100 * 1.2) + 16);
    std::atomic<bool> done{false};
    std::uint64_t gaps = 0, empty = 0;
    const std::int64_t t_start = now_ns();
    const std::int64_t t_measure = t_start + 4'000'000'000;  // past calibration (2 s) + warm-up
    std::thread subscriber([&] {
      std::uint64_t next = 0;
      bool have = false;
      receive_activations(
          pipeline.endpoint(), "act/emg", pipeline.realtime_priority(), pipeline.realtime_cpus(),
          done, [&](const v1::Activations& act, std::int64_t now) {
            if (now < t_measure) return;
            if (have && act.seq() >= next + per_env) gaps += (act.seq() + 1 - next) / per_env - 1;
            next = act.seq() + 1;
            have = true;
            if (act.values_size() == 0) ++empty;
            ns.push_back(now - act.t_received_ns());
          });
    });
    const std::int64_t t_end = t_start + static_cast<std::int64_t>((4 + seconds) * 1e9);
    while (now_ns() < t_end) sleep_until_ns(std::min(t_end, now_ns() + 50'000'000));
    pipeline.request_stop();
    pipeline.wait(10'000'000'000);
    pipeline.join();
    done = true;
    subscriber.join();
    const v1::Stats st = pipeline.stats();
    state.counters["messages"] = static_cast<double>(ns.size());
    state.counters["uncalibrated"] = static_cast<double>(empty);
    state.counters["seq_gaps"] = static_cast<double>(gaps);
    state.counters["frames_dropped"] = static_cast<double>(st.streams(0).frames_dropped());
    state.counters["realtime_priority"] = pipeline.realtime_priority();
    state.counters["send_failed"] = static_cast<double>(st.messages_send_failed());
    report_latency(state, ns);
  }
}
// Args: seconds, spin_us (0: default), channels, sample rate, real-time priority (0: off).
// 256 channels at 2 kHz: drops on a live stream (frames_dropped) show whether one processing
// thread keeps up.
BENCHMARK(BM_EmgWire_64ch4kHz)
    ->Args({15, 0, 64, 4000, 0})
    ->Args({15, 0, 64, 4000, 80})
    ->Args({15, 0, 256, 2000, 0})
    ->Args({15, 0, 256, 2000, 80})
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kSecond);

}  // namespace
}  // namespace rtnmf

BENCHMARK_MAIN();
