#include "tools/rtnmf/runner.h"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include "engine/runtime/clock.h"
#include "engine/runtime/config.h"
#include "engine/runtime/realtime.h"
#include "engine/runtime/replay.h"

namespace rtnmf::cli {

namespace {
volatile std::sig_atomic_t g_signals = 0;
extern "C" void on_signal(int) { g_signals = g_signals + 1; }

std::string fmt_us(double ns) {
  char b[32];
  if (ns >= 1e6)
    std::snprintf(b, sizeof b, "%.2f ms", ns / 1e6);
  else
    std::snprintf(b, sizeof b, "%.0f us", ns / 1e3);
  return b;
}
}  // namespace

bool apply_realtime_args(const ArgParser& p, v1::PipelineConfig& cfg) {
  if (p.has("rt-priority")) {
    const long long rt = p.get_int("rt-priority", 0);
    if (rt < 0 || rt > kMaxRealtimePriority)
      throw UsageError("--rt-priority must be between 0 (off) and " +
                       std::to_string(kMaxRealtimePriority));
    cfg.set_realtime_priority(static_cast<std::uint32_t>(rt));
  }
  if (p.has("rt-cpus")) {
    cfg.clear_realtime_cpus();
    std::stringstream ss(p.get("rt-cpus"));
    std::string item;
    while (std::getline(ss, item, ',')) {
      char* end = nullptr;
      const long v = std::strtol(item.c_str(), &end, 10);
      if (item.empty() || *end != '\0' || v < 0)
        throw UsageError("--rt-cpus: '" + item + "' is not a CPU number (expected e.g. 1 or 0,1)");
      cfg.add_realtime_cpus(static_cast<std::uint32_t>(v));
    }
  }
  return p.has("rt-priority") || p.has("rt-cpus");
}

v1::PipelineConfig load_pipeline_arg(const std::string& name_or_path,
                                     const std::vector<std::string>& overrides, std::string* text) {
  std::string origin;
  std::string body = pipeline_text_for(name_or_path, &origin);
  v1::PipelineConfig cfg = parse_pipeline(body, origin);
  for (const auto& o : overrides) apply_override(cfg, o);
  if (!overrides.empty()) validate_pipeline(cfg, "", origin + " (after --set)");
  if (text) {
    *text = body;
    for (const auto& o : overrides) *text += "\n# --set " + o;
  }
  return cfg;
}

int run_pipeline(Pipeline& pipeline, const RunOptions& opt) {
  g_signals = 0;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  pipeline.start();
  // The total for a progress bar is known once the sources are open.
  const std::uint64_t total_frames =
      opt.total_frames ? opt.total_frames : pipeline.expected_frames(0);
  const bool tty = isatty(STDERR_FILENO);
  if (!pipeline.endpoint().empty())
    std::fprintf(stderr, "publishing on %s (topics act/<stream>, model/, event/, stats)%s%s\n",
                 pipeline.endpoint().c_str(),
                 pipeline.control_endpoint().empty() ? "" : "; control on ",
                 pipeline.control_endpoint().c_str());
  const std::int64_t t0 = now_ns();
  std::int64_t next_line = t0 + 1'000'000'000;
  std::vector<HistogramWindow> windows(pipeline.stream_count());
  std::vector<std::uint64_t> prev_processed(pipeline.stream_count(), 0);
  std::int64_t prev_t = t0;
  bool stopping = false;
  int signals_seen = 0;
  for (;;) {
    if (pipeline.wait(50'000'000)) break;
    if (g_signals != signals_seen) {
      signals_seen = g_signals;
      if (signals_seen == 1) {
        std::fprintf(stderr, "\nstopping (Ctrl-C again to abort)...\n");
        pipeline.request_stop();
        stopping = true;
      } else {
        pipeline.abort();
      }
    }
    const std::int64_t now = now_ns();
    if (!stopping && opt.seconds > 0 && now - t0 >= static_cast<std::int64_t>(opt.seconds * 1e9)) {
      pipeline.request_stop();
      stopping = true;
    }
    if (now >= next_line && (opt.live_summary || opt.progress_bar)) {
      v1::Stats st = pipeline.stats();
      std::string line;
      const double dt = (now - prev_t) / 1e9;
      for (int i = 0; i < pipeline.stream_count(); ++i) {
        const auto& ss = st.streams(i);
        LatencyHistogram::Summary w = windows[i].update(pipeline.total_latency(i));
        double fps = (ss.frames_processed() - prev_processed[i]) / dt;
        prev_processed[i] = ss.frames_processed();
        char b[512];
        if (opt.progress_bar && total_frames) {
          double frac = static_cast<double>(ss.frames_processed()) / total_frames;
          double eta = fps > 0 ? (total_frames - ss.frames_processed()) / fps : 0;
          int filled = static_cast<int>(frac * 20);
          std::string bar(filled, '#');
          bar += std::string(20 - std::min(filled, 20), '.');
          std::snprintf(b, sizeof b, "[%s] %llu/%llu frames  %.0f frames/s  ETA %.0f s",
                        bar.c_str(), static_cast<unsigned long long>(ss.frames_processed()),
                        static_cast<unsigned long long>(total_frames), fps, eta);
        } else {
          std::snprintf(b, sizeof b,
                        "%s: %.0f frames/s  latency p50 %s p99 %s  dropped %llu  rejected %llu",
                        ss.stream_id().c_str(), fps, fmt_us(w.p50_ns).c_str(),
                        fmt_us(w.p99_ns).c_str(),
                        static_cast<unsigned long long>(ss.frames_dropped()),
                        static_cast<unsigned long long>(ss.frames_rejected()));
        }
        line += (i ? " | " : "") + std::string(b);
        // Model figures the stages report (components, VAF), when there are any.
        std::map<std::string, double> sorted(ss.scalars().begin(), ss.scalars().end());
        for (const auto& [k, v] : sorted) {
          char x[96];
          if (k.ends_with(".components"))
            std::snprintf(x, sizeof x, "  components %.0f", v);
          else if (k.ends_with(".neuron_radius"))  // the soma radius the model runs at (auto_radius)
            std::snprintf(x, sizeof x, "  radius %.1f px", v);
          else if (k.ends_with(".bidi_phase_px") && v != 0)  // bidirectional-scan offset corrected
            std::snprintf(x, sizeof x, "  bidi %.0f px", v);
          else if (k.ends_with(".outliers_held") && v != 0)  // frames motion correction could not register
            std::snprintf(x, sizeof x, "  outliers held %.0f", v);
          else if (k.ends_with(".frames_excluded") && v != 0)  // frames the CNMF model could not explain
            std::snprintf(x, sizeof x, "  excluded %.0f", v);
          else if (k.ends_with(".vaf"))
            std::snprintf(x, sizeof x, "  VAF %.1f%%", 100 * v);
          else
            continue;
          line += x;
        }
      }
      if (opt.extra) line += "  " + opt.extra();
      std::fprintf(stderr, tty && opt.progress_bar ? "\r%s" : "%s\n", line.c_str());
      std::fflush(stderr);
      prev_t = now;
      next_line += 1'000'000'000;
      if (next_line < now) next_line = now + 1'000'000'000;
    }
  }
  pipeline.join();
  if (tty && opt.progress_bar) std::fprintf(stderr, "\n");
  std::fprintf(stderr, "%s", pipeline.final_summary().c_str());
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  return pipeline.errors().empty() ? 0 : 1;
}

void print_result_file(const std::string& path, std::uint64_t frames) {
  std::fprintf(stderr, "results: %s (%llu frames)\n", path.c_str(), static_cast<unsigned long long>(frames));
}

}  // namespace rtnmf::cli
