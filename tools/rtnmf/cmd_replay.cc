// `rtnmf replay INPUT --pipeline NAME|FILE --out RESULT.h5`: a recorded stream through the same
// engine as live mode, never dropping a frame, with results written to HDF5.
#include <cstdio>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "engine/runtime/replay.h"
#include "tools/rtnmf/command.h"
#include "tools/rtnmf/runner.h"

namespace rtnmf::cli {
namespace {

int replay_cmd(const std::vector<std::string>& args) {
  ArgParser p(args, {"quiet", "no-publish"});
  p.check_known({"pipeline", "out", "speed", "set", "quiet", "endpoint", "no-publish",
                 "rt-priority", "rt-cpus", "passes"});
  if (p.positionals().empty()) throw UsageError("expected one INPUT file");
  if (p.positionals().size() > 1) {
    // Most often a pattern the shell expanded: the files of one recording.
    throw UsageError("expected one INPUT, got " + std::to_string(p.positionals().size()) + " (" +
                     p.positionals()[0] + ", " + p.positionals()[1] +
                     (p.positionals().size() > 2 ? ", ...)" : ")") +
                     "; a recording split over files is one INPUT: its directory, or the pattern in quotes "
                     "so that the shell leaves it, e.g. 'dir/file_*.tif'");
  }
  if (!p.has("pipeline")) throw UsageError("--pipeline NAME|FILE is required");
  ReplayRequest req;
  req.pipeline = p.get("pipeline");
  req.input = p.positionals()[0];
  req.out = p.get("out");
  req.speed = p.get("speed", "max");
  req.overrides = p.get_all("set");
  req.publish = !p.has("no-publish");
  req.endpoint = p.get("endpoint");
  req.adjust = [&p](v1::PipelineConfig& cfg) { apply_realtime_args(p, cfg); };
  const long long passes = p.get_int("passes", 1);
  if (passes != 1 && passes != 2) throw UsageError("--passes must be 1 or 2, not " + p.get("passes"));
  const bool quiet = p.has("quiet");
  const auto runner = [quiet](Pipeline& pipeline) {
    RunOptions opt;
    opt.live_summary = !quiet;
    opt.progress_bar = !quiet;
    opt.extra = [&pipeline] {
      std::string extra;
      v1::Stats st = pipeline.stats();
      // The component count itself is on the line already (run_pipeline); the count of
      // components past the result rows is not.
      for (const auto& [k, v] : st.streams(0).scalars())
        if (k.ends_with(".unrecorded_components"))
          extra += "unrecorded " + std::to_string(static_cast<long long>(v)) + " ";
      return extra;
    };
    return run_pipeline(pipeline, opt);
  };
  // The first pass's scratch file goes whatever happens after it is created.
  struct Scratch {
    std::string path;
    ~Scratch() {
      std::error_code ec;
      if (!path.empty()) std::filesystem::remove(path, ec);
    }
  } scratch;
  if (passes == 2) {
    if (req.out.empty()) throw UsageError("--passes 2 needs --out");
    int stages = 0;
    const v1::PipelineConfig cfg = replay_config(req, nullptr);
    for (const v1::StreamConfig& st : cfg.stream())
      for (const v1::StageConfig& sg : st.stage()) stages += sg.type() == "online_cnmf";
    if (stages == 0) throw UsageError("--passes 2 needs a pipeline with an online_cnmf stage");
    // First pass: the same replay into a scratch file, not published; its footprints then seed
    // every online_cnmf stage of the second (init_from, no_new_components: the first pass
    // searched the whole movie already), whose traces therefore cover the neurons the first pass
    // found only online from frame 0 on, as a second epoch of CaImAn's OnACID does.
    const std::string first_pass = (std::filesystem::temp_directory_path() /
                                    ("rtnmf_replay_pass1_" + std::to_string(::getpid()) + ".h5")).string();
    scratch.path = first_pass;
    ReplayRequest one = req;
    one.out = first_pass;
    one.publish = false;
    one.speed = "max";  // a scratch pass: replays give the same result at any speed
    if (!quiet) std::fprintf(stderr, "pass 1 of 2 (its footprints seed pass 2)\n");
    ReplayResult r1 = replay_to_file(one, runner);
    if (r1.rc != 0) {
      // Its errors are in the summary above. What it accepted (the frames before a damaged one)
      // is kept: its result becomes the output.
      std::filesystem::copy_file(first_pass, req.out, std::filesystem::copy_options::overwrite_existing);
      std::fprintf(stderr, "rtnmf replay: pass 1 ended with an error; no second pass, its results kept\n");
      print_result_file(req.out, r1.frames_written);
      return r1.rc;
    }
    req.adjust = [&p, first_pass](v1::PipelineConfig& cfg) {
      apply_realtime_args(p, cfg);
      for (v1::StreamConfig& st : *cfg.mutable_stream())
        for (v1::StageConfig& sg : *st.mutable_stage())
          if (sg.type() == "online_cnmf") {
            sg.mutable_imaging()->set_init_from(first_pass);
            sg.mutable_imaging()->set_no_new_components(true);
          }
    };
    if (!quiet) std::fprintf(stderr, "pass 2 of 2\n");
  }
  ReplayResult r = replay_to_file(req, runner);
  if (!r.out.empty()) print_result_file(r.out, r.frames_written);
  return r.rc;
}

const char* kUsage = R"(usage: rtnmf replay INPUT --pipeline NAME|FILE [--out RESULT.h5]
                    [--speed max|realtime|FACTOR] [--set STAGE.PARAM=VALUE ...] [--quiet]
                    [--rt-priority P] [--rt-cpus LIST] [--passes 1|2]

Replays a recorded file through a pipeline exactly as in live mode (same stages, activations
published over ZeroMQ), except that no frame is ever dropped (overload BLOCK) and model updates
take effect at fixed frames, so two replays give bit-identical results at any speed.
INPUT fills the `path` of the pipeline's source (a TIFF/HDF5/raw movie, EDF/BDF/CSV, ...).
A movie split over files is one input: a directory, or a quoted pattern ('run1_*.tif', in name
order); --set source.channel=N / source.plane=N pick a channel / plane of multi-channel or
volumetric TIFFs; --set source.bad_frames=FILE marks frames not to be trusted (stimulation
light: 0-based indices and ranges 300-307, or suite2p's bad_frames.npy), which motion correction
keeps out of its template and online CNMF excludes.
  --pipeline   built-in name (see below) or a *.pbtxt file
  --out        HDF5 result file (datasets depend on the pipeline; /timing/latency_ns always);
               default: the pipeline's `output`, none if empty
  --speed      max (default), realtime, or a factor of real time (e.g. 4)
  --set        override a parameter, e.g. --set nmf.init_from=previous.h5
  --no-publish do not open ZeroMQ sockets
  --rt-priority, --rt-cpus  SCHED_FIFO priority / CPU pinning for the frame-carrying threads (as
               for rtnmf run); paced replays then keep their latency while slow-path updates run
  --passes 2   replay twice (needs --out): the first pass's footprints seed the second's
               initialisation (init_from, no new neurons), so neurons found only online in the
               first pass have traces from frame 0 in the file written; only the second pass is
               published. If the first pass stops on a damaged frame, its results are the output.
A progress bar (frames, frames/s, ETA, components) is shown on a terminal.)";

CommandRegistration reg({"replay", "replay a recorded file through a pipeline, results to HDF5",
                         kUsage, replay_cmd});

}  // namespace
}  // namespace rtnmf::cli
