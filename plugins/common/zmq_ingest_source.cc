// Live ingest: `Frame` messages from acquisition software over ZeroMQ (SUB or PULL).
// The socket is created, used and closed on the source thread only (ZeroMQ sockets are not
// thread-safe); the publisher thread owns the outgoing sockets.
#include <cmath>
#include <cstring>
#include <zmq.hpp>

#include "engine/runtime/clock.h"
#include "engine/runtime/dtype.h"
#include "engine/runtime/registry.h"
#include "frame.pb.h"

namespace rtnmf {
namespace {

class ZmqIngestSource : public Source {
 public:
  // The bound endpoint (with the real port after binding tcp://127.0.0.1:*).
  std::string bound_endpoint() const { return socket_ ? socket_->get(zmq::sockopt::last_endpoint) : ""; }

  StreamSpec open(const v1::SourceConfig& config, const std::string& stream_id) override {
    cfg_ = config.zmq();
    stream_id_ = stream_id;
    max_frames_ = config.max_frames();
    if (cfg_.endpoint().empty()) throw ConfigError("source.zmq.endpoint: missing");
    if (cfg_.shape_size() != 2 || cfg_.shape(0) == 0 || cfg_.shape(1) == 0)
      throw ConfigError("source.zmq.shape: give the expected frame shape, two positive numbers");
    a_ = cfg_.shape(0);
    b_ = cfg_.shape(1);
    blocks_ = cfg_.blocks();
    StreamSpec spec;
    if (blocks_) {
      spec = StreamSpec::make(stream_id, a_, b_, cfg_.rate_hz());
    } else {
      spec = StreamSpec::make(stream_id, a_ * b_, 1, cfg_.rate_hz());
      spec.height = a_;
      spec.width = b_;
    }
    scratch_.resize(static_cast<std::size_t>(a_) * b_);
    // Bind/connect now so the endpoint is ready when start() returns; from here on only the
    // source thread touches the socket (a thread start is the full barrier ZeroMQ asks for).
    try {
      connect();
    } catch (const zmq::error_t& e) {
      throw ConfigError("source.zmq.endpoint " + cfg_.endpoint() + ": " + e.what());
    }
    return spec;
  }

  bool is_live() const override { return true; }

  ReadStatus read(Frame& frame) override {
    if (!socket_) connect();
    zmq::message_t part;
    zmq::recv_result_t got;
    try {
      got = socket_->recv(part, zmq::recv_flags::none);
    } catch (const zmq::error_t& e) {
      error_ = "zmq ingest " + cfg_.endpoint() + ": " + e.what();
      return ReadStatus::kError;
    }
    if (!got) return ReadStatus::kTimeout;  // receive timeout: let the runtime check stop
    // Take the last part of a multipart message ([topic][Frame] from PUB, [Frame] from PUSH).
    while (part.more()) {
      zmq::message_t next;
      if (!socket_->recv(next, zmq::recv_flags::none)) break;
      part = std::move(next);
    }
    const std::int64_t t_recv = now_ns();
    ++messages_;
    if (!msg_.ParseFromArray(part.data(), static_cast<int>(part.size())))
      return reject("message " + std::to_string(messages_) + ": not a rtnmf.v1.Frame (" +
                    std::to_string(part.size()) + " bytes)");
    // Any parsable frame, even one rejected below, was received: only seqs never seen count as
    // lost upstream.
    if (have_seq_ && msg_.seq() > next_seq_)
      lost_upstream_.fetch_add(msg_.seq() - next_seq_, std::memory_order_relaxed);
    if (!have_seq_ || msg_.seq() >= next_seq_) next_seq_ = msg_.seq() + 1;
    have_seq_ = true;
    if (msg_.shape_size() != 2 || msg_.shape(0) != a_ || msg_.shape(1) != b_) {
      std::string got_shape;
      for (int i = 0; i < msg_.shape_size(); ++i)
        got_shape.append(i ? "x" : "").append(std::to_string(msg_.shape(i)));
      return reject("frame seq " + std::to_string(msg_.seq()) + ": shape " +
                    (got_shape.empty() ? "missing" : got_shape) + ", expected " +
                    std::to_string(a_) + "x" + std::to_string(b_));
    }
    if (cfg_.dtype() != v1::DTYPE_UNSPECIFIED && msg_.dtype() != cfg_.dtype())
      return reject("frame seq " + std::to_string(msg_.seq()) + ": dtype " +
                    dtype_name(msg_.dtype()) + ", expected " + dtype_name(cfg_.dtype()));
    const std::size_t es = dtype_size(msg_.dtype());
    if (es == 0)
      return reject("frame seq " + std::to_string(msg_.seq()) + ": dtype missing or unknown");
    const std::size_t n = static_cast<std::size_t>(a_) * b_;
    if (msg_.payload().size() != n * es)
      return reject("frame seq " + std::to_string(msg_.seq()) + ": payload has " +
                    std::to_string(msg_.payload().size()) + " bytes, expected " +
                    std::to_string(n * es));
    std::size_t bad;
    if (blocks_ && !msg_.interleaved()) {
      bad = convert_to_float(msg_.payload().data(), msg_.dtype(), n, scratch_.data());
      if (!bad) channel_major_to_column_major(scratch_.data(), a_, b_, frame.data());
    } else {
      bad = convert_to_float(msg_.payload().data(), msg_.dtype(), n, frame.data());
    }
    if (bad)
      return reject("frame seq " + std::to_string(msg_.seq()) + ": " + std::to_string(bad) +
                    " NaN/Inf samples");
    frame.header.seq = msg_.seq();
    frame.header.t_acquired_ns = msg_.t_acquired_ns();
    frame.header.t_received_ns = t_recv;
    if (msg_.marked_bad()) frame.header.flags |= kFrameMarkedBad;
    if (blocks_)
      frame.set_shape(a_, b_);
    else
      frame.set_shape(a_ * b_, 1);
    return ReadStatus::kFrame;
  }

  void close() override {
    if (socket_) socket_->close();
    socket_.reset();
    context_.reset();
  }

 private:
  void connect() {
    context_ = std::make_unique<zmq::context_t>(1);
    const bool pull = cfg_.socket() == v1::ZmqIngestSource::PULL;
    socket_ = std::make_unique<zmq::socket_t>(
        *context_, pull ? zmq::socket_type::pull : zmq::socket_type::sub);
    socket_->set(zmq::sockopt::rcvtimeo, 20);
    socket_->set(zmq::sockopt::linger, 0);
    if (cfg_.receive_hwm()) socket_->set(zmq::sockopt::rcvhwm, static_cast<int>(cfg_.receive_hwm()));
    if (!pull) socket_->set(zmq::sockopt::subscribe, cfg_.topic());
    if (cfg_.bind())
      socket_->bind(cfg_.endpoint());
    else
      socket_->connect(cfg_.endpoint());
  }

  ReadStatus reject(std::string why) {
    error_ = "zmq ingest " + cfg_.endpoint() + ": " + std::move(why);
    rejected_.fetch_add(1, std::memory_order_relaxed);
    return ReadStatus::kRejected;
  }

  v1::ZmqIngestSource cfg_;
  std::string stream_id_;
  std::uint64_t max_frames_ = 0;
  std::unique_ptr<zmq::context_t> context_;
  std::unique_ptr<zmq::socket_t> socket_;
  v1::Frame msg_;
  std::vector<float> scratch_;
  std::uint32_t a_ = 0, b_ = 0;
  bool blocks_ = false;
  bool have_seq_ = false;
  std::uint64_t next_seq_ = 0;
  std::uint64_t messages_ = 0;
};

}  // namespace

RTNMF_REGISTER_SOURCE("zmq", "live Frame messages over ZeroMQ (SUB or PULL)", ZmqIngestSource);

}  // namespace rtnmf
