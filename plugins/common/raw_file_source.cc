// Raw binary frames: dtype, frame shape and rate come from the config.
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "engine/runtime/clock.h"
#include "engine/runtime/dtype.h"
#include "engine/runtime/pacer.h"
#include "engine/runtime/registry.h"

namespace rtnmf {
namespace {

class RawFileSource : public Source {
 public:
  StreamSpec open(const v1::SourceConfig& config, const std::string& stream_id) override {
    cfg_ = config.raw();
    if (cfg_.path().empty()) throw ConfigError("source.raw.path: missing");
    if (dtype_size(cfg_.dtype()) == 0)
      throw ConfigError("source.raw.dtype: missing (uint16, int16, int32, float32, float64)");
    if (cfg_.shape_size() != 2 || cfg_.shape(0) == 0 || cfg_.shape(1) == 0)
      throw ConfigError("source.raw.shape: give two positive numbers [height, width] or "
                        "[channels, samples_per_block]");
    if (cfg_.rate_hz() <= 0) throw ConfigError("source.raw.rate_hz: must be > 0");
    file_.reset(std::fopen(cfg_.path().c_str(), "rb"));
    if (!file_)
      throw ConfigError(cfg_.path() + ": cannot open: " + std::strerror(errno));
    if (cfg_.header_bytes() &&
        std::fseek(file_.get(), static_cast<long>(cfg_.header_bytes()), SEEK_SET) != 0)
      throw ConfigError(cfg_.path() + ": cannot skip " + std::to_string(cfg_.header_bytes()) +
                        " header bytes");
    a_ = cfg_.shape(0);
    b_ = cfg_.shape(1);
    n_ = static_cast<std::size_t>(a_) * b_;
    bytes_.resize(n_ * dtype_size(cfg_.dtype()));
    // Imaging frames (no sample rate per channel): pixels × 1. Blocks: channels × samples.
    imaging_ = !cfg_.blocks() && !cfg_.interleaved();
    StreamSpec spec;
    if (imaging_) {
      spec = StreamSpec::make(stream_id, static_cast<std::uint32_t>(n_), 1, cfg_.rate_hz());
      spec.height = a_;
      spec.width = b_;
      pacer_.init(config, cfg_.rate_hz(), false);
    } else {
      spec = StreamSpec::make(stream_id, a_, b_, cfg_.rate_hz());
      scratch_.resize(n_);
      pacer_.init(config, cfg_.rate_hz() / b_, false);
    }
    return spec;
  }

  ReadStatus read(Frame& frame) override {
    pacer_.wait(index_);
    std::size_t got = std::fread(bytes_.data(), 1, bytes_.size(), file_.get());
    if (got == 0 && std::feof(file_.get())) return ReadStatus::kEnd;
    if (got < bytes_.size()) {
      error_ = cfg_.path() + ": frame " + std::to_string(index_) + ": truncated (" +
               std::to_string(got) + " of " + std::to_string(bytes_.size()) + " bytes)";
      return ReadStatus::kError;
    }
    frame.header.seq = index_;
    std::size_t bad;
    if (imaging_) {
      frame.set_shape(static_cast<std::uint32_t>(n_), 1);
      bad = convert_to_float(bytes_.data(), cfg_.dtype(), n_, frame.data(), cfg_.big_endian());
    } else {
      frame.set_shape(a_, b_);
      if (cfg_.interleaved()) {
        bad = convert_to_float(bytes_.data(), cfg_.dtype(), n_, frame.data(), cfg_.big_endian());
      } else {
        bad = convert_to_float(bytes_.data(), cfg_.dtype(), n_, scratch_.data(),
                               cfg_.big_endian());
        channel_major_to_column_major(scratch_.data(), a_, b_, frame.data());
      }
    }
    const std::uint64_t i = index_++;
    if (bad) {
      error_ = cfg_.path() + ": frame " + std::to_string(i) + ": " + std::to_string(bad) +
               " NaN/Inf samples; frame rejected";
      rejected_.fetch_add(1, std::memory_order_relaxed);
      return ReadStatus::kRejected;
    }
    return ReadStatus::kFrame;
  }

 private:
  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  v1::RawFileSource cfg_;
  std::unique_ptr<std::FILE, Closer> file_;
  std::vector<unsigned char> bytes_;
  std::vector<float> scratch_;
  std::uint32_t a_ = 0, b_ = 0;
  std::size_t n_ = 0;
  bool imaging_ = true;
  std::uint64_t index_ = 0;
  Pacer pacer_;
};

}  // namespace

RTNMF_REGISTER_SOURCE("raw", "raw binary frames (dtype, shape and rate from the config)",
                      RawFileSource);

}  // namespace rtnmf
