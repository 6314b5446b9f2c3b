// Running a pipeline from the command line: signals, live summary, final report.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "engine/runtime/pipeline.h"
#include "tools/rtnmf/command.h"

namespace rtnmf::cli {

struct RunOptions {
  double seconds = 0;          // stop after this long (0 = until the sources end or Ctrl-C)
  bool live_summary = true;    // one line per second on stderr
  bool progress_bar = false;   // replay: frames, frames/s, ETA (needs total_frames)
  std::uint64_t total_frames = 0;  // 0 = ask the pipeline's first source
  // Extra text for the progress/summary line (e.g. component count), called once a second.
  std::function<std::string()> extra;
};

// Starts the pipeline (errors propagate as ConfigError), runs until it ends, a signal arrives
// (SIGINT/SIGTERM: graceful stop; a second one aborts) or `seconds` pass, joins it and prints the
// final summary. Returns 0, or 1 when a stream ended with an error.
int run_pipeline(Pipeline& pipeline, const RunOptions& options);

// The closing line of a run that wrote a result file: "results: PATH (N frames)" on stderr.
void print_result_file(const std::string& path, std::uint64_t frames);

// Applies --rt-priority P and --rt-cpus LIST (e.g. "1" or "0,1") to the configuration when
// given; throws UsageError on bad values. Returns whether anything changed (then validate again).
bool apply_realtime_args(const ArgParser& p, v1::PipelineConfig& cfg);

// Reads a pipeline: a built-in name or a *.pbtxt path; applies --set overrides and validates.
// Returns the text (for result files) through `text`.
v1::PipelineConfig load_pipeline_arg(const std::string& name_or_path,
                                     const std::vector<std::string>& overrides, std::string* text);

}  // namespace rtnmf::cli
