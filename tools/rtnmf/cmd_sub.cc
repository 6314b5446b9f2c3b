// `rtnmf sub ENDPOINT [TOPIC]`: prints what a pipeline publishes.
#include <cstdio>
#include <map>
#include <zmq.hpp>

#include "engine/runtime/clock.h"
#include "engine/runtime/latency_histogram.h"
#include "messages.pb.h"
#include "tools/rtnmf/command.h"

namespace rtnmf::cli {
namespace {

struct TopicStats {
  std::uint64_t messages = 0;
  std::uint64_t gaps = 0;
  std::uint64_t next_seq = 0;
  bool have_seq = false;
  LatencyHistogram latency;
  HistogramWindow window;
  std::uint64_t prev_messages = 0;
};

int sub_cmd(const std::vector<std::string>& args) {
  ArgParser p(args, {"summary"});
  p.check_known({"summary", "count", "seconds"});
  if (p.positionals().empty() || p.positionals().size() > 2)
    throw UsageError("expected ENDPOINT [TOPIC]");
  const std::string endpoint = p.positionals()[0];
  const std::string topic = p.positionals().size() > 1 ? p.positionals()[1] : "";
  const bool summary = p.has("summary");
  const auto count = static_cast<std::uint64_t>(p.get_int("count", 0));
  const double seconds = p.get_double("seconds", 0);

  zmq::context_t ctx(1);
  zmq::socket_t sub(ctx, zmq::socket_type::sub);
  sub.set(zmq::sockopt::rcvtimeo, 200);
  sub.set(zmq::sockopt::subscribe, topic);
  try {
    sub.connect(endpoint);
  } catch (const zmq::error_t& e) {
    throw UsageError("cannot connect to " + endpoint + ": " + e.what());
  }
  std::fprintf(stderr, "subscribed to %s%s%s\n", endpoint.c_str(), topic.empty() ? "" : " topic ",
               topic.c_str());
  std::map<std::string, TopicStats> stats;
  const std::int64_t t0 = now_ns();
  std::int64_t next_summary = t0 + 1'000'000'000;
  std::uint64_t total = 0;
  v1::Activations act;
  v1::Stats st;
  v1::ModelSnapshot model;
  v1::Event event;
  for (;;) {
    if (count && total >= count) break;
    const std::int64_t now = now_ns();
    if (seconds > 0 && now - t0 >= static_cast<std::int64_t>(seconds * 1e9)) break;
    if (summary && now >= next_summary) {
      for (auto& [name, ts] : stats) {
        LatencyHistogram::Summary w = ts.window.update(ts.latency);
        std::printf("%-16s %7llu msg/s", name.c_str(),
                    static_cast<unsigned long long>(ts.messages - ts.prev_messages));
        if (w.count)
          std::printf("  latency p50 %.0f us p99 %.0f us max %.0f us", w.p50_ns / 1e3,
                      w.p99_ns / 1e3, w.max_ns / 1e3);
        std::printf("  seq gaps %llu\n", static_cast<unsigned long long>(ts.gaps));
        ts.prev_messages = ts.messages;
      }
      std::fflush(stdout);
      next_summary += 1'000'000'000;
    }
    zmq::message_t t, body;
    if (!sub.recv(t, zmq::recv_flags::none)) continue;
    if (!t.more()) continue;
    if (!sub.recv(body, zmq::recv_flags::none)) continue;
    zmq::message_t raw;  // large activations: values follow as float32 (values_in_next_part)
    if (body.more() && !sub.recv(raw, zmq::recv_flags::none)) continue;
    const std::int64_t t_recv = now_ns();
    ++total;
    std::string name = t.to_string();
    TopicStats& ts = stats[name];
    ++ts.messages;
    if (name.rfind("act/", 0) == 0) {
      if (!act.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
        std::printf("%s: malformed Activations (%zu bytes)\n", name.c_str(), body.size());
        continue;
      }
      // Gaps in message_seq are lost messages; seq itself may skip frames that published nothing.
      if (ts.have_seq && act.message_seq() > ts.next_seq)
        ts.gaps += act.message_seq() - ts.next_seq;
      ts.next_seq = act.message_seq() + 1;
      ts.have_seq = true;
      const std::int64_t lat = t_recv - act.t_received_ns();
      ts.latency.record(lat);
      if (!summary) {
        const float* values = act.values().data();
        int n = act.values_size();
        if (act.values_in_next_part()) {
          values = static_cast<const float*>(raw.data());
          n = static_cast<int>(raw.size() / sizeof(float));
        }
        std::printf("%s seq %llu latency %.0f us model %llu values[%d]:", name.c_str(),
                    static_cast<unsigned long long>(act.seq()), lat / 1e3,
                    static_cast<unsigned long long>(act.model_version()), n);
        for (int i = 0; i < std::min(n, 6); ++i) std::printf(" %.3g", values[i]);
        if (n > 6) std::printf(" ...");
        std::printf("\n");
      }
    } else if (name == "stats") {
      if (!summary && st.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
        for (const auto& s : st.streams())
          std::printf("stats %s: in %llu processed %llu dropped %llu rejected %llu fps %.1f\n",
                      s.stream_id().c_str(), static_cast<unsigned long long>(s.frames_in()),
                      static_cast<unsigned long long>(s.frames_processed()),
                      static_cast<unsigned long long>(s.frames_dropped()),
                      static_cast<unsigned long long>(s.frames_rejected()),
                      s.frames_per_second());
      }
    } else if (name.rfind("model/", 0) == 0) {
      if (!summary && model.ParseFromArray(body.data(), static_cast<int>(body.size())))
        std::printf("%s version %llu effective at frame %llu: %u rows x %u components\n",
                    name.c_str(), static_cast<unsigned long long>(model.version()),
                    static_cast<unsigned long long>(model.effective_seq()), model.rows(),
                    model.components());
    } else if (name.rfind("event/", 0) == 0) {
      if (!summary && event.ParseFromArray(body.data(), static_cast<int>(body.size())))
        std::printf("%s seq %llu %s component %u value %.3g\n", name.c_str(),
                    static_cast<unsigned long long>(event.seq()), event.kind().c_str(),
                    event.component(), event.value());
    } else if (!summary) {
      std::printf("%s (%zu bytes)\n", name.c_str(), body.size());
    }
    if (!summary) std::fflush(stdout);
  }
  return 0;
}

const char* kUsage = R"(usage: rtnmf sub ENDPOINT [TOPIC] [--summary] [--count N] [--seconds S]

Subscribes to a running pipeline (e.g. tcp://127.0.0.1:5555) and prints one line per message:
act/<stream> activations with seq, latency (rtnmf receipt -> here) and the first values; stats;
model/<stream> snapshots; event/<stream> triggers. TOPIC is a prefix filter (e.g. act/cam0).
  --summary    one line per topic per second: rate, latency p50/p99/max, seq gaps (lost
               messages, from Activations.message_seq)
  --count N    exit after N messages
  --seconds S  exit after S seconds)";

CommandRegistration reg({"sub", "subscribe to a pipeline's messages and print them", kUsage,
                         sub_cmd});

}  // namespace
}  // namespace rtnmf::cli
