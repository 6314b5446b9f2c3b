// `rtnmf bench latency`: synthetic source → N pass-through stages → ZMQ PUB → a subscriber on
// loopback; prints JSON with frames/s and latency from t_received to receipt.
#include <algorithm>
#include <cstdio>
#include <thread>

#include "engine/net/publisher.h"
#include "engine/runtime/clock.h"
#include "engine/runtime/config.h"
#include "engine/runtime/pipeline.h"
#include "engine/runtime/realtime.h"
#include "messages.pb.h"
#include "tools/rtnmf/command.h"
#include "tools/rtnmf/runner.h"

namespace rtnmf::cli {
namespace {

struct Received {
  std::vector<std::int64_t> latency_ns;
  std::vector<std::int64_t> wire_ns;  // t_processed -> receipt: publisher + ZeroMQ + transport
  std::uint64_t messages = 0;
  std::uint64_t gaps = 0;
};

double percentile(std::vector<std::int64_t>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  return static_cast<double>(v[i]);
}

int bench_latency(const std::vector<std::string>& args) {
  ArgParser p(args, {});
  p.check_known({"kind", "stages", "rate", "seconds", "height", "width", "channels", "block",
                 "warmup", "spin-us", "rt-priority", "rt-cpus"});
  const std::string kind = p.get("kind", "emg");
  if (kind != "emg" && kind != "imaging") throw UsageError("--kind must be emg or imaging");
  const long long stages = p.get_int("stages", 2);
  const double seconds = p.get_double("seconds", 10);
  const double warmup = p.get_double("warmup", 1);
  const bool emg = kind == "emg";
  const double rate = p.get_double("rate", emg ? 1000 : 30);
  const long long spin = p.get_int("spin-us", default_spin_us());
  std::string src;
  if (emg) {
    src = "synthetic { kind: EMG channels: " + std::to_string(p.get_int("channels", 64)) +
          " block_samples: " + std::to_string(p.get_int("block", 1)) +
          " rate_hz: " + std::to_string(rate) + " }";
  } else {
    src = "synthetic { kind: IMAGING height: " + std::to_string(p.get_int("height", 512)) +
          " width: " + std::to_string(p.get_int("width", 512)) +
          " rate_hz: " + std::to_string(rate) + " }";
  }
  std::string text = "publisher { endpoint: \"tcp://127.0.0.1:*\" control_endpoint: \"none\" "
                     "spin_us: " + std::to_string(spin) + " }\nstream { id: \"bench\" overload: "
                     "DROP_OLDEST spin_us: " + std::to_string(spin) +
                     " source { pacing: REALTIME " + src + " }\n";
  for (long long i = 0; i < stages; ++i)
    text += "  stage { type: \"passthrough\" name: \"pass" + std::to_string(i) + "\" }\n";
  text += "}\n";
  v1::PipelineConfig cfg = parse_pipeline(text, "<bench latency>");
  if (apply_realtime_args(p, cfg)) validate_pipeline(cfg, "", "<bench latency>");
  Pipeline pipeline(cfg, text);
  pipeline.start();

  Received rx;
  std::atomic<bool> done{false};
  const std::int64_t t_start = now_ns();
  const std::int64_t t_measure = t_start + static_cast<std::int64_t>(warmup * 1e9);
  std::int64_t t_first = 0, t_last = 0;
  std::thread subscriber([&] {
    // The subscriber stands for the experiment's own closed-loop process: same scheduling.
    std::uint64_t next = 0;
    bool have = false;
    rx.latency_ns.reserve(static_cast<size_t>(rate * seconds * 1.2) + 16);
    receive_activations(pipeline.endpoint(), "act/", pipeline.realtime_priority(),
                        pipeline.realtime_cpus(), done,
                        [&](const v1::Activations& act, std::int64_t now) {
                          if (now < t_measure) return;
                          if (have && act.seq() > next) rx.gaps += act.seq() - next;
                          next = act.seq() + 1;
                          if (!have) t_first = now;
                          have = true;
                          t_last = now;
                          ++rx.messages;
                          rx.latency_ns.push_back(now - act.t_received_ns());
                          rx.wire_ns.push_back(now - act.t_processed_ns());
                        });
  });
  const std::int64_t t_end = t_start + static_cast<std::int64_t>((warmup + seconds) * 1e9);
  while (now_ns() < t_end) sleep_until_ns(std::min(t_end, now_ns() + 50'000'000));
  pipeline.request_stop();
  pipeline.wait(10'000'000'000);
  pipeline.join();
  done = true;
  subscriber.join();
  v1::Stats st = pipeline.stats();
  std::string cpus;
  for (unsigned c : pipeline.realtime_cpus()) {
    if (!cpus.empty()) cpus += ',';
    cpus += std::to_string(c);
  }
  const auto& ss = st.streams(0);
  const double span = t_last > t_first ? (t_last - t_first) / 1e9 : 0;
  std::vector<std::int64_t>& l = rx.latency_ns;
  const double p50 = percentile(l, 0.5), p99 = percentile(l, 0.99),
               p999 = percentile(l, 0.999), mx = l.empty() ? 0 : static_cast<double>(l.back());
  const auto& proc = ss.latency(0);
  const double w50 = percentile(rx.wire_ns, 0.5), w99 = percentile(rx.wire_ns, 0.99);
  std::printf(
      "{\"benchmark\": \"latency\", \"kind\": \"%s\", \"stages\": %lld, \"rate_hz\": %.1f, "
      "\"frame_shape\": [%u, %u], \"seconds\": %.1f, \"realtime_priority\": %d, "
      "\"realtime_cpus\": \"%s\", \"spin_us\": %lld, \"hardware_threads\": %u,\n"
      " \"received\": %llu, \"frames_per_second\": %.2f, \"seq_gaps\": %llu, "
      "\"pipeline_dropped\": %llu, \"discarded_at_stop\": %llu, \"send_failed\": %llu,\n"
      " \"latency_us\": {\"p50\": %.1f, \"p99\": %.1f, \"p999\": %.1f, \"max\": %.1f},\n"
      " \"processing_latency_us\": {\"p50\": %.1f, \"p99\": %.1f, \"max\": %.1f},\n"
      " \"processed_to_receipt_us\": {\"p50\": %.1f, \"p99\": %.1f},\n"
      " \"what\": \"latency = subscriber receipt - t_received (source handed the frame to the "
      "pipeline), same machine, CLOCK_MONOTONIC\"}\n",
      kind.c_str(), stages, rate, pipeline.input_spec(0).rows, pipeline.input_spec(0).cols,
      seconds, pipeline.realtime_priority(), cpus.c_str(), spin, std::thread::hardware_concurrency(),
      static_cast<unsigned long long>(rx.messages),
      span > 0 ? (rx.messages - 1) / span : 0.0, static_cast<unsigned long long>(rx.gaps),
      static_cast<unsigned long long>(ss.frames_dropped()),
      static_cast<unsigned long long>(ss.frames_discarded_at_stop()),
      static_cast<unsigned long long>(st.messages_send_failed()), p50 / 1e3, p99 / 1e3,
      p999 / 1e3, mx / 1e3, proc.p50_us(), proc.p99_us(), proc.max_us(), w50 / 1e3, w99 / 1e3);
  return 0;
}

const char* kUsage = R"(usage: rtnmf bench latency [--kind emg|imaging] [--stages N] [--rate HZ]
                          [--seconds S] [--warmup S] [--channels C --block B] [--height H --width W]
                          [--rt-priority P] [--rt-cpus LIST] [--spin-us US]

End-to-end latency on loopback: a synthetic source paced in real time -> N pass-through stages ->
ZeroMQ PUB -> a subscriber in this process. Prints JSON: frames/s, latency p50/p99/p99.9/max
from t_received (frame handed to the pipeline) to receipt by the subscriber, seq gaps and drops.
Defaults: emg = 64 channels, 1-sample blocks at 1 kHz; imaging = 512x512 at 30 Hz; 2 stages.
  --rt-priority  SCHED_FIFO priority for the frame-carrying threads and the subscriber
                 (pipeline realtime_priority; 0 = normal scheduling, the default)
  --rt-cpus      pin them to these CPUs, e.g. 1 (pipeline realtime_cpus)
  --spin-us      consumer spin before sleeping (default: 50 with >= 4 cores, else 0))";

CommandRegistration reg({"bench", "end-to-end latency benchmark (JSON)", kUsage,
                         [](const std::vector<std::string>& a) {
                           if (a.empty() || a[0] != "latency")
                             throw UsageError("expected 'latency' (rtnmf bench latency ...)");
                           return bench_latency({a.begin() + 1, a.end()});
                         }});

}  // namespace
}  // namespace rtnmf::cli
