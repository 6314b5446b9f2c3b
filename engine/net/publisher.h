// The publisher thread: owns every ZeroMQ socket (PUB for act/ model/ event/ stats, REP for
// control). Other threads hand it frames through FrameChannels and messages through the Outbox.
#pragma once

#include <atomic>
#include <readerwriterqueue/atomicops.h>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config.pb.h"
#include "engine/runtime/channel.h"
#include "engine/runtime/stage.h"
#include "messages.pb.h"

namespace rtnmf {

class Publisher : public Outbox {
 public:
  // Any value left empty takes its default (see PublisherConfig in proto/config.proto).
  explicit Publisher(const v1::PublisherConfig& config);
  ~Publisher() override;

  // SCHED_FIFO priority for the publisher thread and ZeroMQ's I/O thread (0 = normal). The
  // caller must have checked that the kernel allows it (realtime_refusal): libzmq aborts when it
  // cannot apply a thread priority. Before bind().
  void set_realtime_priority(int priority) { realtime_priority_ = priority; }
  // CPUs for the publisher thread and ZeroMQ's I/O thread (empty = any). Before bind().
  void set_cpus(std::vector<unsigned> cpus) { cpus_ = std::move(cpus); }
  // Creates and binds the sockets. Throws ConfigError naming the endpoint (in use, malformed,
  // non-loopback without CURVE keys). Main thread, before start().
  void bind();
  // The bound endpoints with the actual port (e.g. after binding tcp://127.0.0.1:*).
  const std::string& endpoint() const { return endpoint_; }
  const std::string& control_endpoint() const { return control_endpoint_; }

  // Publishes each frame popped from `channel` on act/<stream_id>. `spikes_lane` and `dff_lane`
  // (-1 = none) are sent as Activations.spikes and .dff; `event_lane` (-1 = none) holds [fired,
  // component, value] and fired frames also go out as an Event on event/<stream_id>;
  // `shifts_lane` (dy, dx) with `motion_quality_lane` (peak, held) as Activations.motion;
  // `fit_quality_lane` (residual, excluded) as Activations.excluded. Before start().
  void add_stream(const std::string& stream_id, FrameChannel* channel, int spikes_lane,
                  int event_lane = -1, int dff_lane = -1, int shifts_lane = -1,
                  int motion_quality_lane = -1, int fit_quality_lane = -1);
  // Called once per stats interval on the publisher thread; its result is sent on `stats`.
  void set_stats_provider(std::function<v1::Stats()> provider) { stats_ = std::move(provider); }
  // Answers control requests on the publisher thread.
  void set_command_handler(std::function<v1::Reply(const v1::Command&)> handler) {
    commands_ = std::move(handler);
  }

  void start();
  // Publishes what the channels still hold (they must be closed by their producers), then
  // stops. Main thread.
  void stop_after_drain();
  void join();

  // Outbox: any thread except the publisher itself; takes a mutex. Drops (and counts) beyond
  // 1024 pending messages.
  void post_model(const v1::ModelSnapshot& snapshot) override;
  void post_event(const v1::Event& event) override;

  std::uint64_t sent() const { return sent_.load(std::memory_order_relaxed); }
  std::uint64_t send_failed() const { return send_failed_.load(std::memory_order_relaxed); }

 private:
  struct Input {
    std::string stream_id;
    std::string topic;
    FrameChannel* channel;
    int spikes_lane;
    int event_lane;
    std::string event_topic;
    int dff_lane;
    int shifts_lane;
    int motion_quality_lane;
    int fit_quality_lane;
    std::uint64_t next_message = 0;  // Activations.message_seq
  };
  void run();
  // [topic][payload] or, with `extra`, [topic][payload][extra bytes].
  bool send(const std::string& topic, const std::string& payload, const void* extra = nullptr,
            std::size_t extra_bytes = 0);
  void post(std::string topic, std::string payload);

  v1::PublisherConfig config_;
  std::string endpoint_;
  std::string control_endpoint_;
  std::vector<Input> inputs_;
  std::function<v1::Stats()> stats_;
  std::function<v1::Reply(const v1::Command&)> commands_;
  struct Sockets;
  std::unique_ptr<Sockets> sockets_;
  std::thread thread_;
  int realtime_priority_ = 0;
  std::vector<unsigned> cpus_;
  std::atomic<bool> draining_{false};
  moodycamel::spsc_sema::LightweightSemaphore doorbell_;
  std::mutex outbox_mutex_;
  std::vector<std::pair<std::string, std::string>> outbox_;
  std::atomic<std::uint64_t> sent_{0};
  std::atomic<std::uint64_t> send_failed_{0};
};

// Above this many values an Activations message carries them as a raw third frame.
constexpr std::uint32_t kRawValuesThreshold = 4096;

// Gives the ZeroMQ I/O thread of `zmq_context` (a zmq::context_t's handle(), before its first
// socket starts that thread) SCHED_FIFO `priority` (0: unchanged) and pins it to `cpus` (empty:
// any). The caller must know the priority is allowed (realtime_refusal): libzmq aborts otherwise.
// The publisher uses it; so can a subscriber that should react as fast as rtnmf publishes.
void set_zmq_io_scheduling(void* zmq_context, int priority, const std::vector<unsigned>& cpus);

// The receiving side of the latency benchmarks: subscribes to `topic` at `endpoint` and, on the
// calling thread until `done` is set, calls on_message(activations, receipt_ns) for each
// Activations message (a raw third part, if any, is received and skipped). The thread and its
// ZeroMQ I/O thread get SCHED_FIFO `priority` (0: unchanged) on `cpus` (empty: any), like the
// pipeline's frame threads — a closed-loop client would run so.
void receive_activations(
    const std::string& endpoint, const std::string& topic, int priority,
    const std::vector<unsigned>& cpus, const std::atomic<bool>& done,
    const std::function<void(const v1::Activations&, std::int64_t receipt_ns)>& on_message);

// True for endpoints that cannot leave the machine (loopback TCP, ipc://, inproc://).
bool is_local_endpoint(const std::string& endpoint);

}  // namespace rtnmf
