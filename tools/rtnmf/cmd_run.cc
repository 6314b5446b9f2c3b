// `rtnmf run PIPELINE.pbtxt` and `rtnmf demo`.
#include <cstdio>

#include "engine/runtime/config.h"
#include "engine/runtime/pipeline.h"
#include "engine/runtime/replay.h"
#include "engine/runtime/result_file_sink.h"
#include "tools/rtnmf/command.h"
#include "tools/rtnmf/runner.h"

namespace rtnmf::cli {
namespace {

// The embedded default: a synthetic 256×256 two-photon stream at 30 Hz with 30 planted neurons,
// found and tracked by online CNMF, and a synthetic 16-channel surface-EMG stream at 2 kHz (4
// planted synergies), conditioned and factorized into synergies online; both paced in real time
// and published on loopback.
const char* kDemoPipeline = R"pb(
name: "demo"
stream {
  id: "cam0"
  overload: DROP_OLDEST
  model_lag_frames: 10
  source {
    pacing: REALTIME
    synthetic { kind: IMAGING height: 256 width: 256 rate_hz: 30 components: 30 seed: 1 }
  }
  stage { type: "online_cnmf" name: "cnmf" imaging { neuron_radius: 3 init_frames: 150 update_every: 60 } }
}
stream {
  id: "emg0"
  overload: DROP_OLDEST
  model_lag_frames: 20
  source {
    pacing: REALTIME
    synthetic { kind: EMG channels: 16 block_samples: 4 rate_hz: 2000 components: 4 seed: 2 }
  }
  stage { type: "emg_condition" name: "condition" emg { notch_hz: 50 envelope_hz: 6 envelope_rate_hz: 100 } }
  stage { type: "online_synergies" name: "nmf" nmf { vaf_threshold: 0.9 calibration_s: 3 update_every: 50 } }
}
publisher { endpoint: "tcp://127.0.0.1:5555" control_endpoint: "tcp://127.0.0.1:5556" }
)pb";

BuiltinPipelineRegistration demo_pipeline("demo", "synthetic imaging + EMG streams, rectified",
                                          kDemoPipeline);

int run_cmd(const std::vector<std::string>& args, bool demo) {
  ArgParser p(args, {"quiet"});
  p.check_known({"seconds", "set", "quiet", "endpoint", "rt-priority", "rt-cpus", "out"});
  std::string target;
  if (demo) {
    target = "demo";
  } else {
    if (p.positionals().size() != 1) throw UsageError("expected one PIPELINE argument");
    target = p.positionals()[0];
  }
  std::string text;
  v1::PipelineConfig cfg = load_pipeline_arg(target, p.get_all("set"), &text);
  if (p.has("endpoint")) cfg.mutable_publisher()->set_endpoint(p.get("endpoint"));
  if (apply_realtime_args(p, cfg)) validate_pipeline(cfg, "", target + " (after --rt-cpus)");
  Pipeline pipeline(cfg, text);
  // Results of a live run: --out, else the pipeline's `output`, else none.
  const std::string out = p.has("out") ? p.get("out") : cfg.output();
  ResultFileSink* sink = out.empty() ? nullptr : attach_result_file(pipeline, cfg, out);
  RunOptions opt;
  opt.seconds = p.get_double("seconds", 0);
  opt.live_summary = !p.has("quiet");
  if (demo)
    std::fprintf(stderr,
                 "rtnmf demo: synthetic 256x256 two-photon movie at 30 Hz -> online CNMF (cam0; "
                 "neurons appear after 5 s of initialisation) and 16-channel EMG at 2 kHz -> "
                 "conditioning -> online synergies (emg0; calibrated on the first 3 s).\n"
                 "Watch it from another terminal: rtnmf sub %s --summary\n",
                 cfg.publisher().endpoint().c_str());
  const int rc = run_pipeline(pipeline, opt);
  if (sink) {
    print_result_file(out, finish_result_file(pipeline, *sink, text, "live: " + target));
  }
  return rc;
}

const char* kRunUsage = R"(usage: rtnmf run PIPELINE [--seconds N] [--set NAME.PARAM=VALUE ...] [--out RESULT.h5]
                 [--quiet]

Runs a pipeline until its sources end, Ctrl-C, or --seconds N. PIPELINE is a text-format
PipelineConfig file (*.pbtxt, schema: proto/config.proto) or a built-in name (rtnmf run demo).
Prints one summary line per second (frames/s, latency p50/p99, drops) and a final report.

  --seconds N         stop after N seconds (graceful: BLOCK streams drain, DROP_OLDEST count)
  --out RESULT.h5     record the first stream's results as `rtnmf replay` does (default: the
                      pipeline's `output`; none if empty). /timing/seq gives each row's frame
                      number, so frames a live stream dropped show as gaps
  --set N.P=V         override a parameter: stage or source name, then field (repeatable)
  --endpoint E        publish on E instead of the configured endpoint
  --rt-priority P     SCHED_FIFO priority 1-98 for the threads that carry frames (source,
                      processing, publisher, ZeroMQ I/O); slow-path updates keep normal
                      scheduling. Needs root or CAP_SYS_NICE (refused: a warning, normal run)
  --rt-cpus LIST      pin those threads to these CPUs, e.g. 1 (one CPU: no cross-CPU wake-ups)
  --quiet             no per-second line)";

const char* kDemoUsage = R"(usage: rtnmf demo [--seconds N] [--endpoint tcp://127.0.0.1:5555]
                  [--rt-priority P] [--rt-cpus LIST]

Runs the embedded demo pipeline: a synthetic 256x256 two-photon stream at 30 Hz (30 planted
neurons) through online CNMF, and a synthetic 16-channel EMG stream at 2 kHz (4 planted
synergies) through conditioning and online synergy extraction, published over ZeroMQ on
loopback, with a live one-line-per-second summary (frames/s, latency p50/p99, drops, components,
VAF) until Ctrl-C or --seconds N. In another terminal:
  rtnmf sub tcp://127.0.0.1:5555 --summary)";

CommandRegistration run_reg({"run", "run a pipeline file (*.pbtxt)", kRunUsage,
                             [](const std::vector<std::string>& a) { return run_cmd(a, false); }});
CommandRegistration demo_reg({"demo", "live demo: online CNMF and EMG synergies on synthetic streams",
                              kDemoUsage,
                              [](const std::vector<std::string>& a) { return run_cmd(a, true); }});

}  // namespace
}  // namespace rtnmf::cli
