// `rtnmf replay INPUT --pipeline NAME|FILE --out RESULT.h5`: a recorded stream through the same
// engine as live mode, never dropping a frame, with results written to HDF5.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/reflection.h>

#include <cstdio>

#include "engine/io/h5.h"
#include "engine/runtime/config.h"
#include "engine/runtime/pipeline.h"
#include "engine/runtime/result_file_sink.h"
#include "tools/rtnmf/command.h"
#include "tools/rtnmf/runner.h"

namespace rtnmf::cli {
namespace {

namespace pb = google::protobuf;

// Sets the `path` field of the source's active kind (imaging_file, emg_file, raw, ...).
void set_source_path(v1::SourceConfig* src, const std::string& input) {
  const std::string kind = source_kind(*src);
  if (kind.empty()) throw UsageError("the pipeline's first stream has no source to replay into");
  const pb::FieldDescriptor* fd = src->GetDescriptor()->FindFieldByName(kind);
  pb::Message* m = src->GetReflection()->MutableMessage(src, fd);
  const pb::FieldDescriptor* path = m->GetDescriptor()->FindFieldByName("path");
  if (!path)
    throw UsageError("source kind '" + kind + "' does not read files; cannot replay " + input);
  m->GetReflection()->SetString(m, path, input);
}

int replay_cmd(const std::vector<std::string>& args) {
  ArgParser p(args, {"quiet", "no-publish"});
  p.check_known({"pipeline", "out", "speed", "set", "quiet", "endpoint", "no-publish"});
  if (p.positionals().size() != 1) throw UsageError("expected one INPUT file");
  if (!p.has("pipeline")) throw UsageError("--pipeline NAME|FILE is required");
  const std::string input = p.positionals()[0];
  std::string text;
  // Overrides apply after the input is set, so --set source.x=... can refine it.
  v1::PipelineConfig cfg = load_pipeline_arg(p.get("pipeline"), {}, &text);
  if (cfg.stream_size() == 0) throw UsageError("the pipeline has no stream");
  v1::StreamConfig* s0 = cfg.mutable_stream(0);
  set_source_path(s0->mutable_source(), input);
  for (const auto& o : p.get_all("set")) {
    apply_override(cfg, o);
    text += "\n# --set " + o;
  }
  const std::string speed = p.get("speed", "max");
  for (auto& s : *cfg.mutable_stream()) {
    s.set_overload(v1::BLOCK);  // a replay never drops
    v1::SourceConfig* src = s.mutable_source();
    if (speed == "max") {
      src->set_pacing(v1::MAX);
    } else if (speed == "realtime") {
      src->set_pacing(v1::REALTIME);
      src->set_speed(1.0);
    } else {
      double f = p.get_double("speed", 1.0);
      if (f <= 0) throw UsageError("--speed must be max, realtime or a factor > 0");
      src->set_pacing(v1::REALTIME);
      src->set_speed(f);
    }
  }
  if (p.has("endpoint")) cfg.mutable_publisher()->set_endpoint(p.get("endpoint"));
  if (p.has("no-publish")) cfg.mutable_publisher()->set_disabled(true);
  validate_pipeline(cfg, "", p.get("pipeline"));

  Pipeline pipeline(cfg, text);
  std::vector<ResultFileSink*> sinks;
  const std::string out = p.get("out");
  if (!out.empty()) {
    if (cfg.stream_size() > 1)
      std::fprintf(stderr, "note: several streams; datasets go under /<stream id>/\n");
    for (const auto& s : cfg.stream()) {
      auto sink = std::make_unique<ResultFileSink>(
          out, cfg.stream_size() > 1 ? "/" + s.id() : std::string());
      sinks.push_back(sink.get());
      pipeline.add_sink(s.id(), std::move(sink));
      if (cfg.stream_size() > 1) break;  // one file: the first stream only (stated above)
    }
  }
  RunOptions opt;
  opt.live_summary = !p.has("quiet");
  opt.progress_bar = !p.has("quiet");
  opt.extra = [&pipeline] {
    std::string extra;
    v1::Stats st = pipeline.stats();
    for (const auto& [k, v] : st.streams(0).scalars())
      if (k.find("components") != std::string::npos)
        extra += k + " " + std::to_string(static_cast<long long>(v)) + " ";
    return extra;
  };
  const int rc = run_pipeline(pipeline, opt);
  if (!sinks.empty()) {
    io::h5::File& f = sinks[0]->file();
    for (Stage* st : pipeline.stages(0)) st->write_results(f);
    const StreamSpec& in = pipeline.input_spec(0);
    f.set_attr("/", "rtnmf_version", RTNMF_VERSION);
    f.set_attr("/", "pipeline", text);
    f.set_attr("/", "input", input);
    f.set_attr("/", "frame_rate_hz", in.sample_rate_hz);
    f.set_attr("/", "frames", static_cast<std::int64_t>(sinks[0]->frames()));
    if (in.is_imaging()) {
      f.set_attr("/", "height", static_cast<std::int64_t>(in.height));
      f.set_attr("/", "width", static_cast<std::int64_t>(in.width));
    } else {
      f.set_attr("/", "channels", static_cast<std::int64_t>(in.rows));
    }
    f.flush();
    std::fprintf(stderr, "results: %s (%llu frames)\n", out.c_str(),
                 static_cast<unsigned long long>(sinks[0]->frames()));
  }
  return rc;
}

const char* kUsage = R"(usage: rtnmf replay INPUT --pipeline NAME|FILE [--out RESULT.h5]
                    [--speed max|realtime|FACTOR] [--set STAGE.PARAM=VALUE ...] [--quiet]

Replays a recorded file through a pipeline exactly as in live mode (same stages, activations
published over ZeroMQ), except that no frame is ever dropped (overload BLOCK) and model updates
take effect at fixed frames, so two replays give bit-identical results at any speed.
INPUT fills the `path` of the pipeline's source (a TIFF/HDF5/raw movie, EDF/BDF/CSV, ...).
  --pipeline   built-in name (see below) or a *.pbtxt file
  --out        HDF5 result file (datasets depend on the pipeline; /timing/latency_ns always)
  --speed      max (default), realtime, or a factor of real time (e.g. 4)
  --set        override a parameter, e.g. --set nmf.init_from=previous.h5
  --no-publish do not open ZeroMQ sockets
A progress bar (frames, frames/s, ETA, components) is shown on a terminal.)";

CommandRegistration reg({"replay", "replay a recorded file through a pipeline, results to HDF5",
                         kUsage, replay_cmd});

}  // namespace
}  // namespace rtnmf::cli
