#include "plugins/common/synthetic_source.h"

#include <cmath>

#include "engine/runtime/clock.h"
#include "engine/runtime/registry.h"

namespace rtnmf {

StreamSpec SyntheticSource::open(const v1::SourceConfig& config, const std::string& stream_id) {
  cfg_ = config.synthetic();
  if (cfg_.kind() == v1::SyntheticSource::KIND_UNSPECIFIED)
    cfg_.set_kind(v1::SyntheticSource::IMAGING);
  rng_.seed(cfg_.seed() ? cfg_.seed() : 42);
  noise_ = cfg_.noise() > 0 ? static_cast<float>(cfg_.noise()) : 0.1f;
  const std::uint32_t k = cfg_.components() ? cfg_.components() : 16;
  std::normal_distribution<float> gauss(0.f, 1.f);
  std::uniform_real_distribution<float> unif(0.f, 1.f);
  StreamSpec spec;
  if (cfg_.kind() == v1::SyntheticSource::IMAGING) {
    const std::uint32_t h = cfg_.height() ? cfg_.height() : 256;
    const std::uint32_t w = cfg_.width() ? cfg_.width() : 256;
    const double rate = cfg_.rate_hz() > 0 ? cfg_.rate_hz() : 30.0;
    rows_ = h * w;
    cols_ = 1;
    width_ = w;
    spec = StreamSpec::make(stream_id, rows_, 1, rate);
    spec.height = h;
    spec.width = w;
    quantise_ = cfg_.dtype() != v1::DTYPE_FLOAT32;
    // Neurons: Gaussian footprints of radius ~4 px.
    const float sigma = 2.5f;
    const int half = 7;
    for (std::uint32_t i = 0; i < k; ++i) {
      Blob b;
      int cy = half + static_cast<int>(unif(rng_) * std::max<int>(1, static_cast<int>(h) - 2 * half));
      int cx = half + static_cast<int>(unif(rng_) * std::max<int>(1, static_cast<int>(w) - 2 * half));
      b.y0 = static_cast<std::uint32_t>(std::max(0, cy - half));
      b.x0 = static_cast<std::uint32_t>(std::max(0, cx - half));
      b.h = std::min<std::uint32_t>(2 * half + 1, h - b.y0);
      b.w = std::min<std::uint32_t>(2 * half + 1, w - b.x0);
      b.weights.resize(static_cast<size_t>(b.h) * b.w);
      for (std::uint32_t y = 0; y < b.h; ++y)
        for (std::uint32_t x = 0; x < b.w; ++x) {
          float dy = static_cast<float>(b.y0 + y) - cy, dx = static_cast<float>(b.x0 + x) - cx;
          b.weights[y * b.w + x] = std::exp(-(dx * dx + dy * dy) / (2 * sigma * sigma));
        }
      blobs_.push_back(std::move(b));
    }
    // Smooth background (a tilted plane plus a broad bump), baseline ~ 100 counts.
    background_.resize(rows_);
    for (std::uint32_t y = 0; y < h; ++y)
      for (std::uint32_t x = 0; x < w; ++x) {
        float fy = static_cast<float>(y) / h - 0.5f, fx = static_cast<float>(x) / w - 0.5f;
        background_[y * w + x] = 100.f + 30.f * fx + 50.f * std::exp(-(fx * fx + fy * fy) * 8);
      }
    // A bank of noise frames cycled with a stride: per-pixel RNG per frame is too slow at
    // 512×512 × 1 kHz.
    noise_bank_.resize(8);
    for (auto& nf : noise_bank_) {
      nf.resize(rows_);
      for (std::uint32_t i = 0; i < rows_; ++i) nf[i] = gauss(rng_) * noise_ * 100.f;
    }
    calcium_ = Eigen::VectorXf::Zero(k);
    spike_prob_.resize(k);
    for (auto& p : spike_prob_) p = static_cast<float>((0.2 + 1.8 * unif(rng_)) / rate);
    decay_ = static_cast<float>(std::exp(-1.0 / (0.5 * rate)));  // tau = 0.5 s (GCaMP6f-like)
    pacer_.init(config, rate, true);
  } else {
    const std::uint32_t ch = cfg_.channels() ? cfg_.channels() : 64;
    const std::uint32_t bs = cfg_.block_samples() ? cfg_.block_samples() : 4;
    const double rate = cfg_.rate_hz() > 0 ? cfg_.rate_hz() : 1000.0;
    rows_ = ch;
    cols_ = bs;
    spec = StreamSpec::make(stream_id, ch, bs, rate);
    quantise_ = cfg_.dtype() != v1::DTYPE_FLOAT32;
    synergies_.resize(ch, k);
    for (std::uint32_t c = 0; c < ch; ++c)
      for (std::uint32_t j = 0; j < k; ++j) {
        float v = unif(rng_);
        synergies_(c, j) = v > 0.6f ? v : 0.05f * v;
      }
    // Activations: smooth periodic recruitment (a few seconds per cycle) tabulated over 8 s.
    const std::uint32_t period = static_cast<std::uint32_t>(rate * 8);
    activation_table_.resize(k, period);
    for (std::uint32_t j = 0; j < k; ++j) {
      float f1 = 0.25f + 0.5f * unif(rng_), ph = 6.28f * unif(rng_);
      for (std::uint32_t t = 0; t < period; ++t) {
        float tt = static_cast<float>(t) / static_cast<float>(rate);
        float v = std::sin(6.2831853f * f1 * tt + ph);
        activation_table_(j, t) = std::max(0.f, v) * std::max(0.f, v);
      }
    }
    // Carriers: white noise smoothed by a short moving average (band-limited).
    carrier_table_.resize(ch, period);
    for (std::uint32_t c = 0; c < ch; ++c) {
      float prev = 0;
      for (std::uint32_t t = 0; t < period; ++t) {
        float v = gauss(rng_);
        carrier_table_(c, t) = 0.5f * (v + prev);
        prev = v;
      }
    }
    pacer_.init(config, rate / bs, true);
  }
  return spec;
}

ReadStatus SyntheticSource::read(Frame& frame) {
  pacer_.wait(seq_);
  frame.header.seq = seq_;
  frame.header.t_acquired_ns = wall_ns();
  frame.set_shape(rows_, cols_);
  if (cfg_.kind() == v1::SyntheticSource::IMAGING)
    fill_imaging(frame);
  else
    fill_emg(frame);
  ++seq_;
  return ReadStatus::kFrame;
}

void SyntheticSource::fill_imaging(Frame& f) {
  std::uniform_real_distribution<float> unif(0.f, 1.f);
  for (Eigen::Index i = 0; i < calcium_.size(); ++i) {
    calcium_[i] *= decay_;
    if (unif(rng_) < spike_prob_[i]) calcium_[i] += 1.f;
  }
  Frame::Vector y = f.values_flat();
  const Eigen::VectorXf& noise = noise_bank_[seq_ % noise_bank_.size()];
  // Shift the noise frame by a seq-dependent offset so frames do not repeat exactly.
  const std::uint32_t off = static_cast<std::uint32_t>((seq_ * 7919) % rows_);
  y.head(rows_ - off) = background_.head(rows_ - off) + noise.tail(rows_ - off);
  y.tail(off) = background_.tail(off) + noise.head(off);
  const std::uint32_t width = width_;
  for (size_t k = 0; k < blobs_.size(); ++k) {
    const Blob& b = blobs_[k];
    const float a = 200.f * calcium_[static_cast<Eigen::Index>(k)];
    if (a <= 0.f) continue;
    for (std::uint32_t yy = 0; yy < b.h; ++yy)
      for (std::uint32_t xx = 0; xx < b.w; ++xx)
        y[(b.y0 + yy) * width + b.x0 + xx] += a * b.weights[yy * b.w + xx];
  }
  if (quantise_) y = y.array().round().max(0.f).min(65535.f);
}

void SyntheticSource::fill_emg(Frame& f) {
  Frame::Matrix x = f.values();
  const Eigen::Index period = activation_table_.cols();
  for (std::uint32_t s = 0; s < cols_; ++s) {
    const Eigen::Index t = static_cast<Eigen::Index>((sample_ + s) % period);
    // drive_c = Σ_k W_ck a_k(t); sample = carrier · drive + noise floor.
    x.col(s).noalias() = synergies_ * activation_table_.col(t);
    x.col(s).array() *= carrier_table_.col(t).array() * scale_;
    x.col(s).array() += carrier_table_.col((t + 101) % period).array() * (noise_ * 20.f);
  }
  sample_ += cols_;
  if (quantise_) x = x.array().round().max(-32768.f).min(32767.f);
}

RTNMF_REGISTER_SOURCE("synthetic", "planted imaging frames or EMG blocks (demo, benchmarks)",
                      SyntheticSource);

}  // namespace rtnmf
