#include "engine/runtime/pipeline.h"

#include <algorithm>
#include <cstring>
#include <sstream>

#include "engine/net/publisher.h"
#include "engine/runtime/clock.h"
#include "engine/runtime/config.h"
#include "engine/runtime/plugin_loader.h"
#include "engine/runtime/realtime.h"
#include "engine/runtime/registry.h"

namespace rtnmf {

struct Pipeline::Stream {
  v1::StreamConfig cfg;
  std::unique_ptr<Source> source;
  std::vector<std::unique_ptr<Stage>> stages;
  StreamSpec in_spec;
  StreamSpec out_spec;
  OverloadPolicy policy = OverloadPolicy::kBlock;
  std::unique_ptr<FrameChannel> input;
  std::unique_ptr<FrameChannel> publish;
  struct SinkSlot {
    std::unique_ptr<ResultSink> sink;
    std::unique_ptr<FrameChannel> channel;
    std::thread thread;
  };
  std::vector<SinkSlot> sinks;
  std::thread source_thread;
  std::thread process_thread;
  std::atomic<bool> source_done{false};
  std::atomic<bool> process_done{false};
  std::atomic<std::uint64_t> frames_in{0};
  std::atomic<std::uint64_t> frames_processed{0};
  std::atomic<std::uint64_t> dropped_at_stop{0};
  std::atomic<std::uint64_t> out_of_order{0};
  std::atomic<std::uint64_t> publish_dropped{0};
  LatencyHistogram queue_latency;  // received -> dequeued by the processing thread
  LatencyHistogram total_latency;  // received -> processed (activations ready)
  std::atomic<std::int64_t> first_ns{0};  // written by the processing thread
  std::atomic<std::int64_t> last_ns{0};
  std::vector<std::string> rejections;  // first kMaxRejectionMessages, under errors_mutex_
};

namespace {
constexpr size_t kMaxRejectionMessages = 20;
}

OverloadPolicy overload_policy(const v1::StreamConfig& stream, bool source_is_live) {
  switch (stream.overload()) {
    case v1::BLOCK:
      return OverloadPolicy::kBlock;
    case v1::DROP_OLDEST:
      return OverloadPolicy::kDropOldest;
    default:
      return source_is_live ? OverloadPolicy::kDropOldest : OverloadPolicy::kBlock;
  }
}

Pipeline::Pipeline(v1::PipelineConfig config, std::string config_text)
    : config_(std::move(config)), config_text_(std::move(config_text)) {
  for (const auto& sc : config_.stream()) {
    auto s = std::make_unique<Stream>();
    s->cfg = sc;
    streams_.push_back(std::move(s));
  }
}

Pipeline::~Pipeline() {
  if (started_ && !joined_) {
    abort();
    join();
  }
}

void Pipeline::add_sink(const std::string& stream_id, std::unique_ptr<ResultSink> sink) {
  for (auto& s : streams_)
    if (s->cfg.id() == stream_id) {
      s->sinks.push_back({std::move(sink), nullptr, {}});
      return;
    }
  throw ConfigError("no stream '" + stream_id + "' to attach a sink to");
}

const std::string& Pipeline::stream_id(int i) const { return streams_[i]->cfg.id(); }
const StreamSpec& Pipeline::output_spec(int i) const { return streams_[i]->out_spec; }
const StreamSpec& Pipeline::input_spec(int i) const { return streams_[i]->in_spec; }
const LatencyHistogram& Pipeline::total_latency(int i) const { return streams_[i]->total_latency; }

std::uint64_t Pipeline::expected_frames(int stream) const {
  const Stream& s = *streams_[stream];
  std::uint64_t n = s.source ? s.source->frame_count() : 0;
  const std::uint64_t cap = s.cfg.source().max_frames();
  if (cap && (n == 0 || cap < n)) n = cap;
  return n;
}

std::vector<Stage*> Pipeline::stages(int stream) const {
  std::vector<Stage*> out;
  for (auto& st : streams_[stream]->stages) out.push_back(st.get());
  return out;
}

std::string Pipeline::endpoint() const { return publisher_ ? publisher_->endpoint() : ""; }
std::string Pipeline::control_endpoint() const {
  return publisher_ ? publisher_->control_endpoint() : "";
}

namespace {
std::vector<std::uint32_t> lane_capacities(const std::vector<const StreamSpec*>& specs) {
  std::vector<std::uint32_t> caps;
  for (const StreamSpec* s : specs)
    for (size_t i = 0; i < s->lanes.size(); ++i) {
      if (caps.size() <= i) caps.push_back(0);
      caps[i] = std::max(caps[i], s->lanes[i].size);
    }
  for (auto& c : caps) c = std::max<std::uint32_t>(c, 1);
  return caps;
}
}  // namespace

void Pipeline::start() {
  if (started_) throw ConfigError("pipeline already started");
  try {
    start_impl();
  } catch (...) {
    // Nothing may be left running: stop the stages already started (their slow paths).
    for (auto& sp : streams_)
      for (auto& st : sp->stages) st->stop();
    publisher_.reset();
    throw;
  }
}

void Pipeline::start_impl() {
  for (const auto& p : config_.plugin()) load_plugin(p);
  Registry& reg = Registry::instance();

  realtime_priority_ = 0;
  realtime_cpus_.assign(config_.realtime_cpus().begin(), config_.realtime_cpus().end());
  slow_cpus_ = cpus_outside(realtime_cpus_);
  if (const int rt = static_cast<int>(config_.realtime_priority()); rt > 0) {
    const std::string why = realtime_refusal(rt);
    if (why.empty())
      realtime_priority_ = rt;
    else
      std::fprintf(stderr,
                   "warning: realtime_priority %d refused (%s): running with normal scheduling "
                   "(run as root or grant CAP_SYS_NICE)\n",
                   rt, why.c_str());
  }
  const bool publishing = !config_.publisher().disabled();
  if (publishing) {
    publisher_ = std::make_unique<Publisher>(config_.publisher());
    publisher_->set_realtime_priority(realtime_priority_);
    publisher_->set_cpus(realtime_cpus_);
  }

  for (auto& sp : streams_) {
    Stream& s = *sp;
    std::string kind = source_kind(s.cfg.source());
    if (kind == "plugin") kind = *plugin_value(s.cfg.source().plugin(), "type");
    s.source = reg.make_source(kind);
    // The sources' own errors name their field ("source.imaging_file: PATH: ..."); others get
    // the source kind in front.
    auto source_error = [&](const char* what) {
      const std::string msg(what);
      return ConfigError("stream '" + s.cfg.id() + "': " +
                         (msg.rfind("source.", 0) == 0 ? msg : std::string("source ").append(kind).append(": ").append(msg)));
    };
    try {
      s.in_spec = s.source->open(s.cfg.source(), s.cfg.id());
    } catch (const std::exception& e) {
      throw source_error(e.what());
    }
    s.in_spec.stream_id = s.cfg.id();
    s.policy = overload_policy(s.cfg, s.source->is_live());
    StageContext ctx;
    ctx.stream_id = s.cfg.id();
    ctx.mode = s.policy == OverloadPolicy::kBlock ? RunMode::kReplay : RunMode::kLive;
    ctx.model_lag_frames = s.cfg.model_lag_frames();
    ctx.outbox = publisher_.get();
    ctx.config_text = config_text_;
    ctx.slow_cpus = slow_cpus_;
    ctx.frame_valid_until_after_frame = true;  // process_loop releases a frame after after_frame()
    std::vector<const StreamSpec*> specs{&s.in_spec};
    std::vector<StreamSpec> outs;
    outs.reserve(s.cfg.stage_size());
    StreamSpec cur = s.in_spec;
    for (const auto& stc : s.cfg.stage()) {
      auto stage = reg.make_stage(stc);
      try {
        cur = stage->start(cur, ctx);
      } catch (const ConfigError& e) {
        throw ConfigError("stream '" + s.cfg.id() + "': " + e.what());
      }
      if (cur.lanes.empty() || cur.lanes[0].name != "values")
        throw ConfigError("stream '" + s.cfg.id() + "': stage '" + stage->name() +
                          "' returned a spec without a 'values' lane");
      outs.push_back(cur);
      s.stages.push_back(std::move(stage));
    }
    for (const auto& o : outs) specs.push_back(&o);
    s.out_spec = cur;
    const std::uint32_t depth = s.cfg.queue_depth() ? s.cfg.queue_depth() : 16;
    const std::int64_t spin_ns =
        static_cast<std::int64_t>(s.cfg.has_spin_us() ? s.cfg.spin_us() : default_spin_us()) * 1000;
    s.input = std::make_unique<FrameChannel>(depth, lane_capacities(specs), s.policy, spin_ns);
    std::vector<std::uint32_t> out_caps = lane_capacities({&s.out_spec});
    // Default result queue: 256 frames, but at most ~32 MiB (full 512×512 frames pass through
    // when a pipeline publishes raw pixels).
    std::uint64_t out_bytes = 0;
    for (auto c : out_caps) out_bytes += c * sizeof(float);
    const std::uint32_t out_depth =
        s.cfg.publish_queue_depth()
            ? s.cfg.publish_queue_depth()
            : static_cast<std::uint32_t>(
                  std::clamp<std::uint64_t>((32ull << 20) / std::max<std::uint64_t>(out_bytes, 1),
                                            8, 256));
    if (publishing && !s.cfg.no_publish()) {
      s.publish = std::make_unique<FrameChannel>(out_depth, out_caps, s.policy, 0);
      publisher_->add_stream(s.cfg.id(), s.publish.get(), s.out_spec.lane_index("spikes"),
                             s.out_spec.lane_index("event"), s.out_spec.lane_index("dff"),
                             s.out_spec.lane_index("shifts"), s.out_spec.lane_index("motion_quality"),
                             s.out_spec.lane_index("fit_quality"));
    }
    for (auto& slot : s.sinks)
      slot.channel = std::make_unique<FrameChannel>(out_depth, out_caps, s.policy, 0);
  }

  start_ns_ = now_ns();  // before any thread that reads it starts
  if (publisher_) {
    publisher_->bind();
    publisher_->set_stats_provider([this] { return stats(); });
    publisher_->set_command_handler([this](const v1::Command& c) { return handle_command(c); });
    publisher_->start();
  }
  for (auto& sp : streams_) {
    Stream& s = *sp;
    for (size_t i = 0; i < s.sinks.size(); ++i)
      s.sinks[i].thread = std::thread([this, &s, i] { sink_loop(s, i); });
    s.process_thread = std::thread([this, &s] { process_loop(s); });
    s.source_thread = std::thread([this, &s] { source_loop(s); });
  }
  started_ = true;
}

void Pipeline::source_loop(Stream& s) {
  pin_current_thread(realtime_cpus_);
  make_current_thread_realtime(realtime_priority_);
  const std::uint64_t max_frames = s.cfg.source().max_frames();
  std::uint64_t n = 0;
  while (!stop_requested_.load(std::memory_order_acquire)) {
    if (max_frames && n >= max_frames) break;
    Frame* f = s.input->acquire();
    if (!f) break;  // cancelled
    f->header = FrameHeader{};
    f->header.rows = s.in_spec.rows;
    f->header.cols = s.in_spec.cols;
    ReadStatus st;
    try {
      st = s.source->read(*f);
    } catch (const std::exception& e) {
      st = ReadStatus::kError;
      std::lock_guard<std::mutex> lock(errors_mutex_);
      errors_.push_back("stream '" + s.cfg.id() + "': " + e.what());
    }
    if (st == ReadStatus::kFrame) {
      if (f->header.t_received_ns == 0) f->header.t_received_ns = now_ns();
      s.frames_in.fetch_add(1, std::memory_order_relaxed);
      s.input->push(f);
      ++n;
      continue;
    }
    s.input->give_back(f);
    if (st == ReadStatus::kRejected) {
      std::lock_guard<std::mutex> lock(errors_mutex_);
      if (s.rejections.size() < kMaxRejectionMessages) s.rejections.push_back(s.source->error());
      continue;
    }
    if (st == ReadStatus::kTimeout) continue;
    if (st == ReadStatus::kError && !s.source->error().empty()) {
      std::lock_guard<std::mutex> lock(errors_mutex_);
      errors_.push_back("stream '" + s.cfg.id() + "': " + s.source->error());
    }
    break;
  }
  s.source->close();
  s.input->close();
  s.source_done.store(true, std::memory_order_release);
}

void Pipeline::process_loop(Stream& s) {
  pin_current_thread(realtime_cpus_);
  make_current_thread_realtime(realtime_priority_);
  std::vector<FrameChannel*> outs;
  if (s.publish) outs.push_back(s.publish.get());
  for (auto& slot : s.sinks) outs.push_back(slot.channel.get());
  std::uint64_t expected_seq = 0;
  bool have_seq = false;
  bool first = true;
  // Frames at a slow steady rate (5-1000 ms apart: imaging) leave the caches cold between them;
  // the stages warm them kWarmLeadNs before the next frame is due (the last interval after the
  // last arrival), once per frame. At max speed the next frame is always there: no warming.
  constexpr std::int64_t kWarmLeadNs = 1'500'000;
  std::int64_t last_arrival = 0, interval = 0;
  bool warmed = true;
  for (;;) {
    if (abort_.load(std::memory_order_acquire)) break;
    Frame* f = nullptr;
    if (!warmed) {
      const std::int64_t wait = last_arrival + interval - kWarmLeadNs - now_ns();
      f = s.input->pop(std::max<std::int64_t>(wait, 0));
      if (!f) {
        for (auto& stage : s.stages) stage->warm();
        warmed = true;
        continue;
      }
    } else {
      f = s.input->pop(20'000'000);
    }
    if (!f) {
      if (s.input->closed_and_drained()) break;
      continue;
    }
    if (stop_requested_.load(std::memory_order_relaxed) && s.policy == OverloadPolicy::kDropOldest) {
      s.dropped_at_stop.fetch_add(1, std::memory_order_relaxed);
      s.input->release(f);
      continue;
    }
    const std::int64_t t_deq = now_ns();
    if (first) {
      s.first_ns.store(t_deq, std::memory_order_relaxed);
      first = false;
    }
    FrameHeader& h = f->header;
    if (have_seq && h.seq < expected_seq) s.out_of_order.fetch_add(1, std::memory_order_relaxed);
    expected_seq = h.seq + 1;
    have_seq = true;
    s.queue_latency.record(t_deq - h.t_received_ns);
    for (auto& stage : s.stages) stage->process(*f);
    h.t_processed_ns = now_ns();
    s.total_latency.record(h.t_processed_ns - h.t_received_ns);
    for (FrameChannel* ch : outs) {
      // A block that produced no time step (e.g. between decimated EMG envelope samples) has
      // nothing to publish; sinks still see it (their per-frame lanes and timing).
      if (ch == s.publish.get() && h.cols == 0) continue;
      Frame* o = ch->acquire();
      if (!o) {
        s.publish_dropped.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      o->header = h;
      for (int l = 0; l < o->lane_count() && l < f->lane_count(); ++l) {
        const Lane& src = f->lane(l);
        Lane& dst = o->lane(l);
        dst.size = std::min(src.size, dst.capacity);
        std::memcpy(dst.data, src.data, dst.size * sizeof(float));
      }
      ch->push(o);
    }
    s.frames_processed.fetch_add(1, std::memory_order_relaxed);
    s.last_ns.store(h.t_processed_ns, std::memory_order_relaxed);
    const std::int64_t arrival = h.t_received_ns;
    // The stages may still read the frame in after_frame() (StageContext::frame_valid_until_after_frame).
    for (auto& stage : s.stages) stage->after_frame();
    s.input->release(f);
    if (last_arrival > 0) interval = arrival - last_arrival;
    last_arrival = arrival;
    warmed = !(interval >= 5'000'000 && interval <= 1'000'000'000);
  }
  // Let a source blocked on a full queue go (abort), and count what is left under drop_oldest.
  s.input->cancel();
  for (auto& stage : s.stages) stage->stop();
  for (FrameChannel* ch : outs) ch->close();
  s.process_done.store(true, std::memory_order_release);
}

void Pipeline::sink_loop(Stream& s, size_t i) {
  // Result-file writing is slow-path work: off the CPUs reserved for the frame-carrying threads.
  pin_current_thread(slow_cpus_);
  auto& slot = s.sinks[i];
  bool failed = false;
  try {
    slot.sink->begin(s.out_spec);
  } catch (const std::exception& e) {
    failed = true;
    std::lock_guard<std::mutex> lock(errors_mutex_);
    errors_.push_back("stream '" + s.cfg.id() + "': result sink: " + e.what());
  }
  for (;;) {
    Frame* f = slot.channel->pop(50'000'000);
    if (!f) {
      if (slot.channel->closed_and_drained() || abort_.load()) break;
      continue;
    }
    if (!failed) {
      try {
        slot.sink->write(*f);
      } catch (const std::exception& e) {
        failed = true;
        std::lock_guard<std::mutex> lock(errors_mutex_);
        errors_.push_back("stream '" + s.cfg.id() + "': result sink: " + e.what());
        stop_requested_.store(true);
      }
    }
    slot.channel->release(f);
  }
  slot.channel->cancel();
  if (!failed) {
    try {
      slot.sink->end();
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(errors_mutex_);
      errors_.push_back("stream '" + s.cfg.id() + "': result sink: " + e.what());
    }
  }
}

void Pipeline::request_stop() { stop_requested_.store(true, std::memory_order_release); }

void Pipeline::abort() {
  stop_requested_.store(true, std::memory_order_release);
  abort_.store(true, std::memory_order_release);
  for (auto& s : streams_)
    if (s->input) s->input->cancel();
}

bool Pipeline::wait(std::int64_t timeout_ns) {
  std::int64_t deadline = now_ns() + timeout_ns;
  for (;;) {
    bool done = true;
    for (auto& s : streams_)
      if (!s->process_done.load(std::memory_order_acquire)) done = false;
    if (done) return true;
    if (now_ns() >= deadline) return false;
    sleep_until_ns(std::min(deadline, now_ns() + 2'000'000));
  }
}

void Pipeline::join() {
  if (!started_ || joined_) return;
  for (auto& s : streams_) {
    if (s->source_thread.joinable()) s->source_thread.join();
    if (s->process_thread.joinable()) s->process_thread.join();
    for (auto& slot : s->sinks)
      if (slot.thread.joinable()) slot.thread.join();
  }
  if (publisher_) {
    publisher_->stop_after_drain();
    publisher_->join();
  }
  joined_ = true;
}

std::vector<std::string> Pipeline::rejections(int stream) const {
  std::lock_guard<std::mutex> lock(errors_mutex_);
  return streams_[stream]->rejections;
}

std::vector<std::string> Pipeline::errors() const {
  std::lock_guard<std::mutex> lock(errors_mutex_);
  return errors_;
}

namespace {
void fill_latency(v1::LatencySummary* out, const std::string& name, const LatencyHistogram& h) {
  LatencyHistogram::Summary s = h.summary();
  out->set_name(name);
  out->set_count(s.count);
  out->set_p50_us(s.p50_ns / 1e3);
  out->set_p99_us(s.p99_ns / 1e3);
  out->set_p999_us(s.p999_ns / 1e3);
  out->set_max_us(s.max_ns / 1e3);
}
}  // namespace

v1::Stats Pipeline::stats() const {
  v1::Stats st;
  const std::int64_t now = now_ns();
  st.set_t_ns(now);
  st.set_uptime_s(start_ns_ ? (now - start_ns_) / 1e9 : 0);
  for (const auto& sp : streams_) {
    const Stream& s = *sp;
    v1::StreamStats* ss = st.add_streams();
    ss->set_stream_id(s.cfg.id());
    ss->set_frames_in(s.frames_in.load(std::memory_order_relaxed));
    const std::uint64_t processed = s.frames_processed.load(std::memory_order_relaxed);
    ss->set_frames_processed(processed);
    ss->set_frames_dropped(s.input ? s.input->dropped() : 0);
    ss->set_frames_discarded_at_stop(s.dropped_at_stop.load(std::memory_order_relaxed));
    if (s.source) {
      ss->set_frames_rejected(s.source->rejected());
      ss->set_frames_lost_upstream(s.source->lost_upstream());
    }
    std::uint64_t pub_dropped = s.publish_dropped.load(std::memory_order_relaxed);
    if (s.publish) pub_dropped += s.publish->dropped();
    for (const auto& slot : s.sinks)
      if (slot.channel) pub_dropped += slot.channel->dropped();
    ss->set_publish_dropped(pub_dropped);
    if (s.input) {
      ss->set_input_queue_depth(s.input->depth());
      ss->set_input_queue_capacity(s.input->capacity());
    }
    const std::int64_t last = s.last_ns.load(std::memory_order_relaxed);
    const std::int64_t first = s.first_ns.load(std::memory_order_relaxed);
    if (processed > 1 && last > first)
      ss->set_frames_per_second((processed - 1) / ((last - first) / 1e9));
    fill_latency(ss->add_latency(), "total", s.total_latency);
    fill_latency(ss->add_latency(), "queue", s.queue_latency);
    std::vector<std::pair<std::string, double>> scalars;
    for (const auto& stage : s.stages) {
      fill_latency(ss->add_latency(), stage->name(), stage->latency());
      if (stage->model_version()) ss->set_model_version(stage->model_version());
      if (stage->model_swaps()) ss->set_model_swaps(stage->model_swaps());
      scalars.clear();
      stage->report(scalars);
      for (auto& [k, v] : scalars) (*ss->mutable_scalars())[stage->name() + "." + k] = v;
    }
  }
  if (publisher_) {
    st.set_messages_sent(publisher_->sent());
    st.set_messages_send_failed(publisher_->send_failed());
  }
  return st;
}

std::string Pipeline::final_summary() const {
  v1::Stats st = stats();
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(1);
 for (int si = 0; si < st.streams_size(); ++si) {
    const v1::StreamStats& ss = st.streams(si);
    os << "stream " << ss.stream_id() << ": " << ss.frames_in() << " frames in, "
       << ss.frames_processed() << " processed, " << ss.frames_dropped() << " dropped, "
       << ss.frames_rejected() << " rejected";
    if (ss.frames_discarded_at_stop())
      os << ", " << ss.frames_discarded_at_stop() << " queued at stop discarded (live stream)";
    if (ss.frames_lost_upstream()) os << ", " << ss.frames_lost_upstream() << " lost upstream";
    if (ss.publish_dropped()) os << ", " << ss.publish_dropped() << " results not published";
    os << "\n";
    for (const auto& r : rejections(si))
      os << "  rejected: " << r << "\n";
    for (const auto& l : ss.latency()) {
      if (l.count() == 0) continue;
      os << "  latency " << l.name() << ": p50 " << l.p50_us() << " us, p99 " << l.p99_us()
         << " us, max " << l.max_us() << " us (" << l.count() << " frames)\n";
    }
  }
  if (publisher_)
    os << "published " << st.messages_sent() << " messages, " << st.messages_send_failed()
       << " could not be sent\n";
  for (const auto& e : errors()) os << "error: " << e << "\n";
  return os.str();
}

v1::Reply Pipeline::handle_command(const v1::Command& cmd) {
  v1::Reply r;
  switch (cmd.cmd_case()) {
    case v1::Command::kGetStats:
      r.set_ok(true);
      *r.mutable_stats() = stats();
      break;
    case v1::Command::kStop:
      request_stop();
      r.set_ok(true);
      break;
    case v1::Command::kFreeze: {
      bool any = false;
      for (auto& s : streams_) {
        if (!cmd.freeze().stream_id().empty() && s->cfg.id() != cmd.freeze().stream_id()) continue;
        for (auto& st : s->stages) any |= st->set_frozen(cmd.freeze().frozen());
      }
      r.set_ok(any);
      if (!any) r.set_error("no stage with a model on stream '" + cmd.freeze().stream_id() + "'");
      break;
    }
    case v1::Command::kGetModel:
      for (auto& s : streams_)
        for (auto& st : s->stages) {
          v1::ModelSnapshot snap;
          if (st->snapshot(&snap)) {
            if (snap.stream_id().empty()) snap.set_stream_id(s->cfg.id());
            *r.add_models() = std::move(snap);
          }
        }
      r.set_ok(true);
      break;
    default:
      r.set_ok(false);
      r.set_error("command not supported by this pipeline");
  }
  return r;
}

}  // namespace rtnmf
