#include "engine/runtime/replay.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/reflection.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>

#include "engine/io/h5.h"
#include "engine/io/movie.h"
#include "engine/runtime/config.h"
#include "engine/runtime/result_file_sink.h"

namespace rtnmf {
namespace {

namespace pb = google::protobuf;

// Sets the `path` field of the source's active kind (imaging_file, emg_file, raw, ...).
void set_source_path(v1::SourceConfig* src, const std::string& input) {
  const std::string kind = source_kind(*src);
  if (kind.empty()) throw ConfigError("the pipeline's first stream has no source to replay into");
  const pb::FieldDescriptor* fd = src->GetDescriptor()->FindFieldByName(kind);
  pb::Message* m = src->GetReflection()->MutableMessage(src, fd);
  const pb::FieldDescriptor* path = m->GetDescriptor()->FindFieldByName("path");
  if (!path)
    throw ConfigError("source kind '" + kind + "' does not read files; cannot replay " + input);
  m->GetReflection()->SetString(m, path, input);
}

// The `path` field of the source's active kind, or "" when it has none.
std::string source_path(const v1::SourceConfig& src) {
  const std::string kind = source_kind(src);
  if (kind.empty()) return "";
  const pb::FieldDescriptor* fd = src.GetDescriptor()->FindFieldByName(kind);
  if (!fd || fd->type() != pb::FieldDescriptor::TYPE_MESSAGE) return "";
  const pb::Message& m = src.GetReflection()->GetMessage(src, fd);
  const pb::FieldDescriptor* path = m.GetDescriptor()->FindFieldByName("path");
  return path && path->type() == pb::FieldDescriptor::TYPE_STRING ? m.GetReflection()->GetString(m, path) : "";
}

void set_pacing(v1::SourceConfig* src, const std::string& speed) {
  if (speed == "max") {
    src->set_pacing(v1::MAX);
    return;
  }
  double f = 1.0;
  if (speed != "realtime") {
    char* end = nullptr;
    f = std::strtod(speed.c_str(), &end);
    if (speed.empty() || *end != '\0' || !(f > 0))
      throw ConfigError("--speed " + speed + ": must be max, realtime or a factor > 0");
  }
  src->set_pacing(v1::REALTIME);
  src->set_speed(f);
}

}  // namespace

std::string pipeline_text_for(const std::string& name_or_path, std::string* origin) {
  std::string body = builtin_pipeline(name_or_path);
  if (!body.empty()) {
    if (origin) *origin = "<builtin:" + name_or_path + ">";
    return body;
  }
  std::ifstream in(name_or_path);
  if (!in) {
    std::string known;
    for (auto& [n, _] : builtin_pipelines()) known += (known.empty() ? "" : ", ") + n;
    throw ConfigError(name_or_path + ": no such pipeline file or built-in pipeline (built-in: " +
                      known + ")");
  }
  std::stringstream ss;
  ss << in.rdbuf();
  if (origin) *origin = name_or_path;
  return ss.str();
}

v1::PipelineConfig replay_config(const ReplayRequest& request, std::string* text) {
  std::string origin;
  std::string body = pipeline_text_for(request.pipeline, &origin);
  v1::PipelineConfig cfg = parse_pipeline(body, origin);
  if (cfg.stream_size() == 0) throw ConfigError(origin + ": the pipeline has no stream");
  set_source_path(cfg.mutable_stream(0)->mutable_source(), request.input);
  // Overrides apply after the input is set, so --set source.x=... can refine it.
  for (const auto& o : request.overrides) {
    apply_override(cfg, o);
    body += "\n# --set " + o;
  }
  for (auto& s : *cfg.mutable_stream()) {
    s.set_overload(v1::BLOCK);  // a replay never drops
    set_pacing(s.mutable_source(), request.speed);
  }
  if (!request.endpoint.empty()) cfg.mutable_publisher()->set_endpoint(request.endpoint);
  if (!request.publish) cfg.mutable_publisher()->set_disabled(true);
  if (request.adjust) request.adjust(cfg);
  validate_pipeline(cfg, "", origin + (request.overrides.empty() ? "" : " (after --set)"));
  if (text) *text = body;
  return cfg;
}

ResultFileSink* attach_result_file(Pipeline& pipeline, const v1::PipelineConfig& cfg,
                                   const std::string& path) {
  // The file is created (truncated) when the stream starts: never over what a stream reads.
  for (const v1::StreamConfig& st : cfg.stream()) {
    const std::string input = source_path(st.source());
    if (!input.empty() && io::movie_spec_includes(input, path))
      throw ConfigError("result file " + path + " is part of the input " + input + "; write the result elsewhere");
  }
  const bool several = cfg.stream_size() > 1;
  if (several)
    std::fprintf(stderr, "note: several streams; datasets of stream '%s' go under /%s/\n",
                 cfg.stream(0).id().c_str(), cfg.stream(0).id().c_str());
  auto sink = std::make_unique<ResultFileSink>(path, several ? "/" + cfg.stream(0).id() : "");
  ResultFileSink* ptr = sink.get();
  pipeline.add_sink(cfg.stream(0).id(), std::move(sink));
  return ptr;
}

std::uint64_t finish_result_file(Pipeline& pipeline, ResultFileSink& sink,
                                 const std::string& pipeline_text, const std::string& input) {
  io::h5::File& f = sink.file();
  // Stages write their results at the root and find the streamed datasets there (/traces, whose
  // rows they complete and split); with several streams the file keeps stream 0's under its
  // group, so they are at the root only while the stages write.
  const std::string& group = sink.prefix();
  if (!group.empty())
    for (const std::string& name : f.list(group)) f.move(group + "/" + name, "/" + name);
  for (Stage* st : pipeline.stages(0)) st->write_results(f);
  if (!group.empty())
    for (const std::string& name : f.list("/"))
      if ("/" + name != group) f.move("/" + name, group + "/" + name);
  const StreamSpec& in = pipeline.input_spec(0);
  f.set_attr("/", "rtnmf_version", RTNMF_VERSION);
  f.set_attr("/", "pipeline", pipeline_text);
  f.set_attr("/", "input", input);
  f.set_attr("/", "frame_rate_hz", in.sample_rate_hz);
  f.set_attr("/", "frames", static_cast<std::int64_t>(sink.frames()));
  if (in.is_imaging()) {
    f.set_attr("/", "height", static_cast<std::int64_t>(in.height));
    f.set_attr("/", "width", static_cast<std::int64_t>(in.width));
  } else {
    f.set_attr("/", "channels", static_cast<std::int64_t>(in.rows));
  }
  f.flush();
  return sink.frames();
}

ReplayResult replay_to_file(const ReplayRequest& request,
                            const std::function<int(Pipeline&)>& run) {
  ReplayResult r;
  v1::PipelineConfig cfg = replay_config(request, &r.pipeline_text);
  Pipeline pipeline(cfg, r.pipeline_text);
  r.out = request.out.empty() ? cfg.output() : request.out;  // --out, else the pipeline's
  ResultFileSink* sink = r.out.empty() ? nullptr : attach_result_file(pipeline, cfg, r.out);
  if (run) {
    r.rc = run(pipeline);
  } else {
    pipeline.start();
    while (!pipeline.wait(1'000'000'000)) {
    }
    pipeline.join();
  }
  r.errors = pipeline.errors();
  if (r.rc == 0 && !r.errors.empty()) r.rc = 1;
  r.stats = pipeline.stats();
  if (sink) r.frames_written = finish_result_file(pipeline, *sink, r.pipeline_text, request.input);
  return r;
}

}  // namespace rtnmf
