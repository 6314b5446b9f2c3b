// A running pipeline: per stream a source thread and a processing thread, plus one publisher
// thread that owns every ZeroMQ socket and one thread per result sink.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config.pb.h"
#include "engine/runtime/channel.h"
#include "engine/runtime/latency_histogram.h"
#include "engine/runtime/stage.h"
#include "messages.pb.h"

namespace rtnmf {

class Publisher;

// Consumes a stream's processed frames on its own thread (e.g. the HDF5 result writer).
class ResultSink {
 public:
  virtual ~ResultSink() = default;
  // The spec of the frames it will receive (the last stage's output). Sink thread, first.
  virtual void begin(const StreamSpec& spec) = 0;
  // One processed frame, in order. Sink thread. May do I/O. Throwing stops the stream with
  // the error.
  virtual void write(const Frame& frame) = 0;
  // No more frames. Sink thread.
  virtual void end() = 0;
};

class Pipeline {
 public:
  // `config` must have passed validate_pipeline. `config_text` is kept for result files.
  Pipeline(v1::PipelineConfig config, std::string config_text = "");
  ~Pipeline();  // aborts and joins if still running
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Adds a sink for `stream_id`. Before start(). Throws ConfigError for an unknown stream.
  void add_sink(const std::string& stream_id, std::unique_ptr<ResultSink> sink);

  // Loads plugins, opens sources, starts stages (sizes every buffer), binds sockets and starts
  // the threads. Throws ConfigError naming what failed; then nothing is left running.
  void start();

  // Graceful stop: sources stop reading; under BLOCK queued frames are processed, under
  // DROP_OLDEST they are dropped and counted. Any thread (not a signal handler: use a flag).
  void request_stop();
  // Immediate stop: nothing more is processed. Any thread.
  void abort();

  // Waits until every stream has ended (source exhausted or stop requested and drained), or the
  // timeout passes. Returns true when finished. Main thread.
  bool wait(std::int64_t timeout_ns);
  // Joins all threads (finishing the publisher after it drained) and stops the stages.
  void join();

  bool started() const { return started_; }
  // The publisher's bound endpoints ("" when publishing is disabled).
  std::string endpoint() const;
  std::string control_endpoint() const;

  // Counters and cumulative latency summaries. Any thread.
  v1::Stats stats() const;
  // Histogram of received → processed for stream i (for windowed summaries). Any thread.
  const LatencyHistogram& total_latency(int stream) const;
  // Errors that ended streams (file damaged at frame N, sink failure...). After join().
  std::vector<std::string> errors() const;
  // Why input was rejected on stream i: the first 20 reasons (malformed message, NaN, ...).
  std::vector<std::string> rejections(int stream) const;
  // One block of text per stream with the final counts. After join().
  std::string final_summary() const;

  // Frames the stream's source will produce when known (files), else 0. After start().
  std::uint64_t expected_frames(int stream) const;
  int stream_count() const { return static_cast<int>(streams_.size()); }
  const std::string& stream_id(int i) const;
  // The stream's stages, for write_results after join(). Main thread.
  std::vector<Stage*> stages(int stream) const;
  const StreamSpec& output_spec(int stream) const;
  const StreamSpec& input_spec(int stream) const;
  const v1::PipelineConfig& config() const { return config_; }
  // The SCHED_FIFO priority the frame-carrying threads run at: 0 when realtime_priority was not
  // set or the kernel refused it (start() then printed why on stderr).
  int realtime_priority() const { return realtime_priority_; }
  // The CPUs those threads are pinned to (empty = any).
  const std::vector<unsigned>& realtime_cpus() const { return realtime_cpus_; }
  const std::string& config_text() const { return config_text_; }

 private:
  struct Stream;
  void start_impl();
  void source_loop(Stream& s);
  void process_loop(Stream& s);
  void sink_loop(Stream& s, size_t i);
  v1::Reply handle_command(const v1::Command& cmd);

  v1::PipelineConfig config_;
  std::string config_text_;
  std::vector<std::unique_ptr<Stream>> streams_;
  std::unique_ptr<Publisher> publisher_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> abort_{false};
  bool started_ = false;
  int realtime_priority_ = 0;  // in effect (0 when not asked for or refused)
  std::vector<unsigned> realtime_cpus_;
  std::vector<unsigned> slow_cpus_;  // cpus_outside(realtime_cpus_): stage slow paths, sinks
  bool joined_ = false;
  std::int64_t start_ns_ = 0;
  mutable std::mutex errors_mutex_;
  std::vector<std::string> errors_;
};

// OverloadPolicy for a stream: its `overload`, or by default BLOCK for file sources and
// DROP_OLDEST for live ones.
OverloadPolicy overload_policy(const v1::StreamConfig& stream, bool source_is_live);

}  // namespace rtnmf
