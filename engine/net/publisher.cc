#include "engine/net/publisher.h"

#include <fstream>
#include <zmq.hpp>

#include <sched.h>

#include "engine/runtime/clock.h"
#include "engine/runtime/realtime.h"

namespace rtnmf {

struct Publisher::Sockets {
  // ZeroMQ starts its I/O thread with the first socket, so its scheduling is set before that.
  Sockets(int realtime_priority, const std::vector<unsigned>& cpus) {
    set_zmq_io_scheduling(context.handle(), realtime_priority, cpus);
    pub = zmq::socket_t(context, zmq::socket_type::pub);
    rep = zmq::socket_t(context, zmq::socket_type::rep);
  }
  zmq::context_t context{1};
  zmq::socket_t pub;
  zmq::socket_t rep;
  bool has_rep = false;
};

void set_zmq_io_scheduling(void* zmq_context, int priority, const std::vector<unsigned>& cpus) {
  if (priority > 0) {
    zmq_ctx_set(zmq_context, ZMQ_THREAD_SCHED_POLICY, SCHED_FIFO);
    zmq_ctx_set(zmq_context, ZMQ_THREAD_PRIORITY, priority);
  }
  for (unsigned c : cpus) zmq_ctx_set(zmq_context, ZMQ_THREAD_AFFINITY_CPU_ADD, static_cast<int>(c));
}

void receive_activations(
    const std::string& endpoint, const std::string& topic, int priority,
    const std::vector<unsigned>& cpus, const std::atomic<bool>& done,
    const std::function<void(const v1::Activations&, std::int64_t receipt_ns)>& on_message) {
  pin_current_thread(cpus);
  make_current_thread_realtime(priority);
  zmq::context_t ctx(1);
  set_zmq_io_scheduling(ctx.handle(), priority, cpus);  // before the first socket starts it
  zmq::socket_t sub(ctx, zmq::socket_type::sub);
  sub.set(zmq::sockopt::rcvtimeo, 100);
  sub.set(zmq::sockopt::subscribe, topic);
  sub.set(zmq::sockopt::rcvhwm, 100000);
  sub.connect(endpoint);
  v1::Activations act;
  while (!done.load()) {
    zmq::message_t t, b;
    if (!sub.recv(t)) continue;
    if (!t.more() || !sub.recv(b)) continue;
    zmq::message_t raw;  // large outputs arrive as a third, raw float32 part
    if (b.more() && !sub.recv(raw)) continue;
    const std::int64_t now = now_ns();
    if (!act.ParseFromArray(b.data(), static_cast<int>(b.size()))) continue;
    on_message(act, now);
  }
}

bool is_local_endpoint(const std::string& e) {
  if (e.rfind("ipc://", 0) == 0 || e.rfind("inproc://", 0) == 0) return true;
  if (e.rfind("tcp://", 0) != 0) return false;
  std::string host = e.substr(6, e.rfind(':') == std::string::npos ? std::string::npos
                                                                    : e.rfind(':') - 6);
  return host.rfind("127.", 0) == 0 || host == "localhost" || host == "[::1]" || host == "::1";
}

Publisher::Publisher(const v1::PublisherConfig& config) : config_(config) {
  if (config_.endpoint().empty()) config_.set_endpoint("tcp://127.0.0.1:5555");
  if (config_.control_endpoint().empty()) config_.set_control_endpoint("tcp://127.0.0.1:5556");
  if (config_.stats_interval_s() == 0) config_.set_stats_interval_s(1.0);
  if (config_.send_hwm() == 0) config_.set_send_hwm(10000);
  if (!config_.has_spin_us()) config_.set_spin_us(default_spin_us());
}

Publisher::~Publisher() {
  draining_.store(true);
  doorbell_.signal();
  if (thread_.joinable()) thread_.join();
}

namespace {

void apply_curve(zmq::socket_t& s, const v1::PublisherConfig& cfg, const std::string& endpoint) {
  if (is_local_endpoint(endpoint)) return;
  if (cfg.curve_secret_key_file().empty())
    throw ConfigError("publisher endpoint " + endpoint +
                      ": not loopback, so it needs CURVE authentication "
                      "(set publisher.curve_secret_key_file)");
  if (!zmq_has("curve"))
    throw ConfigError("publisher endpoint " + endpoint + ": this libzmq has no CURVE support");
  std::ifstream in(cfg.curve_secret_key_file());
  std::string key;
  if (!(in >> key) || key.size() != 40)
    throw ConfigError(cfg.curve_secret_key_file() +
                      ": expected a 40-character Z85 CURVE secret key");
  s.set(zmq::sockopt::curve_server, 1);
  s.set(zmq::sockopt::curve_secretkey, key);
}

}  // namespace

void Publisher::bind() {
  sockets_ = std::make_unique<Sockets>(realtime_priority_, cpus_);
  auto& pub = sockets_->pub;
  pub.set(zmq::sockopt::sndhwm, static_cast<int>(config_.send_hwm()));
  pub.set(zmq::sockopt::linger, 200);
  // Whole 512×512 frames (1 MiB) leave in one go rather than in several TCP windows.
  pub.set(zmq::sockopt::sndbuf, 8 << 20);
  // Report, rather than silently drop, messages a slow subscriber cannot take.
  pub.set(zmq::sockopt::xpub_nodrop, 1);
  apply_curve(pub, config_, config_.endpoint());
  try {
    pub.bind(config_.endpoint());
  } catch (const zmq::error_t& e) {
    throw ConfigError("publisher.endpoint " + config_.endpoint() + ": cannot bind: " + e.what());
  }
  endpoint_ = pub.get(zmq::sockopt::last_endpoint);
  if (config_.control_endpoint() != "none") {
    auto& rep = sockets_->rep;
    rep.set(zmq::sockopt::linger, 0);
    apply_curve(rep, config_, config_.control_endpoint());
    try {
      rep.bind(config_.control_endpoint());
    } catch (const zmq::error_t& e) {
      throw ConfigError("publisher.control_endpoint " + config_.control_endpoint() +
                        ": cannot bind: " + e.what());
    }
    control_endpoint_ = rep.get(zmq::sockopt::last_endpoint);
    sockets_->has_rep = true;
  }
}

void Publisher::add_stream(const std::string& stream_id, FrameChannel* channel, int spikes_lane,
                           int event_lane, int dff_lane, int shifts_lane, int motion_quality_lane,
                           int fit_quality_lane) {
  channel->set_doorbell(&doorbell_);
  inputs_.push_back({stream_id, "act/" + stream_id, channel, spikes_lane, event_lane,
                     "event/" + stream_id, dff_lane, shifts_lane, motion_quality_lane, fit_quality_lane});
}

void Publisher::start() {
  if (!sockets_) bind();
  thread_ = std::thread([this] { run(); });
}

void Publisher::stop_after_drain() {
  draining_.store(true, std::memory_order_release);
  doorbell_.signal();
}

void Publisher::join() {
  if (thread_.joinable()) thread_.join();
}

void Publisher::post(std::string topic, std::string payload) {
  {
    std::lock_guard<std::mutex> lock(outbox_mutex_);
    if (outbox_.size() >= 1024) {
      send_failed_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    outbox_.emplace_back(std::move(topic), std::move(payload));
  }
  doorbell_.signal();
}

void Publisher::post_model(const v1::ModelSnapshot& snapshot) {
  post("model/" + snapshot.stream_id(), snapshot.SerializeAsString());
}

void Publisher::post_event(const v1::Event& event) {
  post("event/" + event.stream_id(), event.SerializeAsString());
}

bool Publisher::send(const std::string& topic, const std::string& payload, const void* extra,
                     std::size_t extra_bytes) {
  auto& pub = sockets_->pub;
  try {
    if (!pub.send(zmq::buffer(topic), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
      send_failed_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    // Once the first part is queued the rest always is (ZeroMQ sends multipart atomically).
    if (extra) {
      pub.send(zmq::buffer(payload), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      pub.send(zmq::buffer(extra, extra_bytes), zmq::send_flags::dontwait);
    } else {
      pub.send(zmq::buffer(payload), zmq::send_flags::dontwait);
    }
  } catch (const zmq::error_t&) {
    send_failed_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  sent_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void Publisher::run() {
  pin_current_thread(cpus_);
  make_current_thread_realtime(realtime_priority_);  // allowed: the pipeline probed it
  v1::Activations act;
  std::string buf;
  std::vector<std::pair<std::string, std::string>> pending;
  const auto interval_ns = static_cast<std::int64_t>(config_.stats_interval_s() * 1e9);
  std::int64_t next_stats = now_ns() + interval_ns;
  const std::int64_t spin_ns = static_cast<std::int64_t>(config_.spin_us()) * 1000;
  std::int64_t idle_since = now_ns();
  for (;;) {
    bool any = false;
    for (Input& in : inputs_) {
      while (Frame* f = in.channel->pop(0)) {
        any = true;
        const FrameHeader& h = f->header;
        act.Clear();
        act.set_stream_id(in.stream_id);
        act.set_seq(h.seq);
        act.set_t_acquired_ns(h.t_acquired_ns);
        act.set_t_received_ns(h.t_received_ns);
        act.set_t_processed_ns(h.t_processed_ns);
        act.set_model_version(h.model_version);
        act.set_message_seq(in.next_message++);  // counted even if the send fails: a visible gap
        const Lane& v = f->lane(0);
        act.set_value_count(v.size);
        const bool raw = v.size > kRawValuesThreshold;
        if (raw)
          act.set_values_in_next_part(true);
        else
          act.mutable_values()->Add(v.data, v.data + v.size);
        if (h.cols > 1) {
          act.add_shape(h.rows);
          act.add_shape(h.cols);
        }
        if (in.spikes_lane > 0) {
          const Lane& s = f->lane(in.spikes_lane);
          act.mutable_spikes()->Add(s.data, s.data + s.size);
        }
        if (in.dff_lane > 0) {
          const Lane& d = f->lane(in.dff_lane);
          act.mutable_dff()->Add(d.data, d.data + d.size);
        }
        if (in.shifts_lane > 0 && f->lane(in.shifts_lane).size >= 2) {
          const float* sh = f->lane(in.shifts_lane).data;
          v1::Motion* mo = act.mutable_motion();
          mo->set_dy(sh[0]);
          mo->set_dx(sh[1]);
          if (in.motion_quality_lane > 0 && f->lane(in.motion_quality_lane).size >= 2) {
            const float* q = f->lane(in.motion_quality_lane).data;
            mo->set_peak(q[0]);
            mo->set_held(q[1] != 0.0f);
          }
        }
        if (in.fit_quality_lane > 0 && f->lane(in.fit_quality_lane).size >= 2)
          act.set_excluded(f->lane(in.fit_quality_lane).data[1] != 0.0f);
        act.SerializeToString(&buf);
        // Closed-loop triggers go out right after the activations that caused them.
        bool fired = false;
        v1::Event ev;
        if (in.event_lane > 0 && f->lane(in.event_lane).data[0] > 0) {
          const float* e = f->lane(in.event_lane).data;
          fired = true;
          ev.set_stream_id(in.stream_id);
          ev.set_seq(h.seq);
          ev.set_t_received_ns(h.t_received_ns);
          ev.set_t_event_ns(h.t_processed_ns);
          ev.set_kind("threshold");
          ev.set_component(static_cast<std::uint32_t>(e[1]));
          ev.set_value(e[2]);
        }
        if (raw) {
          send(in.topic, buf, v.data, v.size * sizeof(float));
          in.channel->release(f);
        } else {
          in.channel->release(f);
          send(in.topic, buf);
        }
        if (fired) send(in.event_topic, ev.SerializeAsString());
      }
    }
    {
      // Never wait here for a (normal-priority) slow-path thread that is posting: if it holds
      // the lock, it rings the doorbell after releasing it and the next round takes the messages.
      std::unique_lock<std::mutex> lock(outbox_mutex_, std::try_to_lock);
      if (lock.owns_lock()) pending.swap(outbox_);
    }
    for (auto& [topic, payload] : pending) {
      send(topic, payload);
      any = true;
    }
    pending.clear();
    if (sockets_->has_rep) {
      zmq::message_t req;
      auto got = sockets_->rep.recv(req, zmq::recv_flags::dontwait);
      if (got) {
        v1::Command cmd;
        v1::Reply reply;
        if (!cmd.ParseFromArray(req.data(), static_cast<int>(req.size()))) {
          reply.set_ok(false);
          reply.set_error("malformed Command message");
        } else if (commands_) {
          reply = commands_(cmd);
        } else {
          reply.set_ok(false);
          reply.set_error("no command handler");
        }
        std::string out = reply.SerializeAsString();
        sockets_->rep.send(zmq::buffer(out), zmq::send_flags::none);
        any = true;
      }
    }
    std::int64_t now = now_ns();
    if (stats_ && now >= next_stats) {
      v1::Stats st = stats_();
      st.set_messages_sent(sent());
      st.set_messages_send_failed(send_failed());
      send("stats", st.SerializeAsString());
      next_stats = now + interval_ns;
    }
    if (draining_.load(std::memory_order_acquire)) {
      bool all_done = true;
      for (Input& in : inputs_)
        if (!in.channel->closed_and_drained()) all_done = false;
      std::lock_guard<std::mutex> lock(outbox_mutex_);
      if (all_done && outbox_.empty()) break;
    }
    if (any) {
      idle_since = now;
      continue;
    }
    if (now - idle_since < spin_ns) continue;
    // Sleep until a producer rings, or at the latest 1 ms (control socket, stats timer).
    doorbell_.wait(1000);
  }
  // One last stats message so subscribers see the final counts.
  if (stats_) {
    v1::Stats st = stats_();
    st.set_messages_sent(sent());
    st.set_messages_send_failed(send_failed());
    send("stats", st.SerializeAsString());
  }
}

}  // namespace rtnmf
