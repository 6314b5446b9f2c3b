// A processing stage: start() sizes everything and may fail; process() is the hot path.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "config.pb.h"
#include "engine/runtime/frame.h"
#include "engine/runtime/latency_histogram.h"
#include "messages.pb.h"

namespace rtnmf {

namespace io::h5 {
class File;
}

// A configuration or start-up error. The message names what was wrong and where
// (`file:line: field: reason` for config errors, `stage 'name': reason` for stage start).
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Replay (BLOCK overload) is deterministic: model swaps happen at fixed frames. Live
// (DROP_OLDEST) stays current: swaps happen as soon as an update is ready.
enum class RunMode { kReplay, kLive };

// Off-hot-path messages (model snapshots, events from slow paths) on their way to the publisher.
// Thread-safe; may block briefly (mutex). Never call it from process().
class Outbox {
 public:
  virtual ~Outbox() = default;
  virtual void post_model(const v1::ModelSnapshot& snapshot) = 0;
  virtual void post_event(const v1::Event& event) = 0;
};

// What a stage learns about its surroundings at start().
struct StageContext {
  std::string stream_id;
  RunMode mode = RunMode::kReplay;
  std::uint32_t model_lag_frames = 0;  // L, see DESIGN.md §1
  Outbox* outbox = nullptr;            // may be null (tests, benchmarks)
  std::string config_text;             // the whole pipeline text, for result-file attributes
  // CPUs for the stage's slow-path threads (pin_current_thread at their start): the CPUs outside
  // the pipeline's realtime_cpus, or empty (no pinning) when those are not set.
  std::vector<unsigned> slow_cpus;
  // The runner calls after_frame() after every process() and keeps the frame given to process()
  // valid (its lanes as the last stage left them) until after_frame() returns: a stage may finish
  // per-frame work on it there, outside the frame's latency. The pipeline promises it; direct
  // callers (tests, benchmarks) that cannot leave it false.
  bool frame_valid_until_after_frame = false;
};

// Base class of every stage. Subclasses implement do_start/do_process (and optionally the rest).
// The public process() is non-virtual: it times the call and delegates.
class Stage {
 public:
  explicit Stage(v1::StageConfig config) : config_(std::move(config)) {}
  virtual ~Stage() = default;
  Stage(const Stage&) = delete;
  Stage& operator=(const Stage&) = delete;

  // Allocates everything process() will need. Returns the spec of the frames this stage emits.
  // Throws ConfigError naming the stage and the problem. Processing thread, before the first frame.
  StreamSpec start(const StreamSpec& in, const StageContext& ctx);

  // Hot path: transforms `frame` in place. Does not allocate, lock, log or do I/O.
  // Processing thread only.
  void process(Frame& frame) {
    std::int64_t t0 = clock_ns();
    do_process(frame);
    latency_.record(clock_ns() - t0);
  }

  // Processing thread, after each frame has left for the publisher and the result sinks (so
  // outside the frame's latency), before the next one is taken: housekeeping that must not delay
  // a frame, e.g. taking and cache-warming the model the next frame will use. Same rules as
  // process(): no allocation, lock, log or I/O. Default: nothing.
  void after_frame() { do_after_frame(); }

  // Processing thread, when frames come at a slow steady rate (imaging at 30 Hz) and the next
  // one is due in about a millisecond: read what it will need (model, buffers) so that it finds
  // them in the caches instead of in memory after the idle gap. Same rules as process(); must
  // not change any result. Default: nothing.
  void warm() { do_warm(); }

  // Stops slow-path threads; after stop() process() is not called again. Processing thread.
  void stop() { do_stop(); }

  // Writes this stage's end-of-run results (footprints, synergies, ...) to the result file
  // (engine/io/h5.h). Main thread, after stop() and after the result sink finished; HDF5 is not
  // thread-safe, so nothing else uses it then. Default: nothing.
  virtual void write_results(io::h5::File& /*file*/) {}

  // Stage-specific figures for the `stats` message (e.g. sliding VAF, component count).
  // Called from the publisher thread: implementations read atomics only.
  virtual void report(std::vector<std::pair<std::string, double>>& /*scalars*/) const {}
  // Current model version (0 = no model). Any thread.
  virtual std::uint64_t model_version() const { return 0; }
  // Models the fast path has taken so far (0 without a model). Any thread.
  virtual std::uint64_t model_swaps() const { return 0; }
  // Control requests, on the publisher thread (implementations use atomics or their slow path):
  // freeze / unfreeze the model (closed loop). Returns false when the stage has no model.
  virtual bool set_frozen(bool /*frozen*/) { return false; }
  // Fills a snapshot of the current model. Returns false when the stage has no model.
  virtual bool snapshot(v1::ModelSnapshot* /*out*/) const { return false; }

  const std::string& name() const { return name_; }
  const std::string& type() const { return config_.type(); }
  const v1::StageConfig& config() const { return config_; }
  const LatencyHistogram& latency() const { return latency_; }

 protected:
  virtual StreamSpec do_start(const StreamSpec& in, const StageContext& ctx) = 0;
  virtual void do_process(Frame& frame) = 0;
  virtual void do_after_frame() {}
  virtual void do_warm() {}
  virtual void do_stop() {}
  // "stage 'name' (type): " prefix for error messages.
  std::string where() const;

 private:
  static std::int64_t clock_ns();
  v1::StageConfig config_;
  std::string name_;
  LatencyHistogram latency_;
};

// How a source's read() ended.
enum class ReadStatus {
  kFrame,     // `frame` holds the next frame
  kEnd,       // the source is exhausted (file end, max_frames)
  kRejected,  // malformed input was refused and counted; call read() again
  kTimeout,   // nothing yet (live sources); check the stop flag and call again
  kError,     // unrecoverable: error() says what and where (file, frame index)
};

// A frame source, run on its own thread (I/O, decoding, pacing, time stamps).
class Source {
 public:
  virtual ~Source() = default;
  // Opens files/sockets and validates; returns the spec of the frames it produces.
  // Throws ConfigError. Called before any thread starts.
  virtual StreamSpec open(const v1::SourceConfig& config, const std::string& stream_id) = 0;
  // Fills `frame` (lane 0, header.seq / t_acquired_ns; the runtime sets t_received_ns).
  // Source thread only. Pacing is the source's job (REALTIME sources wait here).
  virtual ReadStatus read(Frame& frame) = 0;
  virtual void close() {}
  // Why the last kRejected/kError happened. Source thread (or after it ended).
  virtual const std::string& error() const { return error_; }
  // Live sources default to DROP_OLDEST, files to BLOCK.
  virtual bool is_live() const { return false; }
  // Number of frames the source will produce, when known (files); 0 = unknown. After open().
  virtual std::uint64_t frame_count() const { return 0; }
  // Counters any thread may read.
  std::uint64_t rejected() const { return rejected_.load(std::memory_order_relaxed); }
  std::uint64_t lost_upstream() const { return lost_upstream_.load(std::memory_order_relaxed); }

 protected:
  std::string error_;
  std::atomic<std::uint64_t> rejected_{0};
  std::atomic<std::uint64_t> lost_upstream_{0};
};

}  // namespace rtnmf
