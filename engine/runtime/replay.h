// Replaying a recorded file through a pipeline: the one flow behind `rtnmf replay`, also used by
// the family tests so that they exercise exactly what users run.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "config.pb.h"
#include "engine/runtime/pipeline.h"

namespace rtnmf {

// The text of a pipeline given by a built-in name or a *.pbtxt path; `origin` receives the name
// used in errors ("<builtin:NAME>" or the path). Throws ConfigError naming the path and listing
// the built-in pipelines when neither exists.
std::string pipeline_text_for(const std::string& name_or_path, std::string* origin);

struct ReplayRequest {
  std::string pipeline;                // built-in name or *.pbtxt path
  std::string input;                   // fills the `path` of the first stream's source
  std::string out;                     // HDF5 result file; "" = no file
  std::string speed = "max";           // max | realtime | a factor of real time (> 0)
  std::vector<std::string> overrides;  // --set STAGE.PARAM=VALUE, applied after the input
  bool publish = true;                 // false: no ZeroMQ sockets
  std::string endpoint;                // "" = the pipeline's own
  // Last adjustment before validation (the CLI applies --rt-priority / --rt-cpus here).
  std::function<void(v1::PipelineConfig&)> adjust;
};

struct ReplayResult {
  int rc = 0;                        // 0, or 1 when a stream ended with an error
  std::vector<std::string> errors;   // stream errors (e.g. a damaged frame, named)
  v1::Stats stats;                   // final statistics
  std::string out;                   // the result file written (--out, else the pipeline's output)
  std::uint64_t frames_written = 0;  // frames in the result file
  std::string pipeline_text;         // the text written to the file (with the overrides)
};

// Builds the configuration a replay runs: the pipeline with the input set, overrides applied,
// every stream BLOCK (a replay never drops) and paced as `speed` asks. Throws ConfigError.
v1::PipelineConfig replay_config(const ReplayRequest& request, std::string* text);

// Runs the replay. `run` drives the constructed pipeline from start to join (the CLI passes its
// live summary / progress bar loop and returns its exit code); by default the pipeline is started,
// waited for and joined. Afterwards every stage writes its results and the file gets the
// attributes: rtnmf_version, pipeline, input, frame_rate_hz, frames, height/width or channels.
// Several streams: datasets of the first stream only, under /<stream id>/ (stated on stderr).
ReplayResult replay_to_file(const ReplayRequest& request,
                            const std::function<int(Pipeline&)>& run = {});

class ResultFileSink;
// The result file of a run, live or replayed: attach_result_file before start() (creates the
// file now, so a bad path fails before anything runs; several streams: the first one's datasets
// under /<stream id>/, stated on stderr); finish_result_file after join(): every stage writes its
// results, then the attributes above (`input` names the recording, or the live source). Returns
// the frames written. Throws std::runtime_error naming the file.
ResultFileSink* attach_result_file(Pipeline& pipeline, const v1::PipelineConfig& cfg,
                                   const std::string& path);
std::uint64_t finish_result_file(Pipeline& pipeline, ResultFileSink& sink,
                                 const std::string& pipeline_text, const std::string& input);

}  // namespace rtnmf
