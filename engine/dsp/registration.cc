#include "engine/dsp/registration.h"

#include <fftw3.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include "engine/nmf/touch.h"

namespace rtnmf::dsp {
namespace {

// FFTW's planner is not thread-safe; every plan in the process is made under this mutex.
std::mutex& planner_mutex() {
  static std::mutex m;
  return m;
}

// Measured plans for the correlation windows, recorded once (tools/fftw_wisdom/fftw_wisdom_gen).
constexpr const char* kWisdom =
#include "engine/dsp/fftw_wisdom.inc"
    ;

// Loads kWisdom into FFTW's planner, once per process. Caller holds planner_mutex().
bool load_wisdom_locked() {
  static const bool loaded = fftwf_import_wisdom_from_string(kWisdom) != 0;
  return loaded;
}

std::vector<float> taper_1d(std::uint32_t n, float fraction) {
  std::vector<float> w(n, 1.0f);
  const std::uint32_t edge = static_cast<std::uint32_t>(std::floor(fraction * static_cast<float>(n)));
  for (std::uint32_t i = 0; i < edge; ++i) {
    const float v = 0.5f * (1.0f - std::cos(static_cast<float>(M_PI) * (static_cast<float>(i) + 0.5f) /
                                            static_cast<float>(edge)));
    w[i] = v;
    w[n - 1 - i] = v;
  }
  return w;
}

// Signed frequency of bin i of an n-point DFT, in cycles per sample.
double freq(std::uint32_t i, std::uint32_t n) {
  const double k = i <= n / 2 ? static_cast<double>(i) : static_cast<double>(i) - n;
  return k / static_cast<double>(n);
}

// Sub-sample offset of a peak from three samples (left, centre, right): Gaussian fit when all are
// positive, parabola otherwise.
float peak_offset(float l, float c, float r) {
  if (l > 0 && c > 0 && r > 0) {
    const double ll = std::log(l), lc = std::log(c), lr = std::log(r);
    const double den = ll - 2 * lc + lr;
    if (den < 0) return static_cast<float>(std::clamp(0.5 * (ll - lr) / den, -0.5, 0.5));
  }
  const double den = l - 2.0 * c + r;
  if (den < 0) return static_cast<float>(std::clamp(0.5 * (l - r) / den, -0.5, 0.5));
  return 0.0f;
}

// d[j] (+)= s[b j] + ... + s[b j + b - 1], j < n: the horizontal half of b x b binning, with
// the usual factors unrolled so that the compiler vectorises them.
template <int B>
void hbin(const float* s, float* d, int n, bool add) {
  for (int j = 0; j < n; ++j) {
    float acc = 0;
    for (int k = 0; k < B; ++k) acc += s[B * j + k];
    d[j] = add ? d[j] + acc : acc;
  }
}
void hbin(const float* s, float* d, int n, int b, bool add) {
  switch (b) {
    case 2: return hbin<2>(s, d, n, add);
    case 4: return hbin<4>(s, d, n, add);
    case 8: return hbin<8>(s, d, n, add);
    default:
      for (int j = 0; j < n; ++j) {
        float acc = 0;
        for (int k = 0; k < b; ++k) acc += s[b * j + k];
        d[j] = add ? d[j] + acc : acc;
      }
  }
}

// The largest n' <= n of the form 2^a 3^b 5^c: a window FFTW transforms with its codelets alone
// (no buffers, no generic prime-size algorithm, nothing allocated per execute).
std::uint32_t fft_size_floor(std::uint32_t n) {
  for (std::uint32_t m = n; m > 1; --m) {
    std::uint32_t r = m;
    for (const std::uint32_t f : {2u, 3u, 5u})
      while (r % f == 0) r /= f;
    if (r == 1) return m;
  }
  return 1;
}

}  // namespace

bool registration_wisdom_loaded() {
  std::lock_guard<std::mutex> lock(planner_mutex());
  return load_wisdom_locked();
}

// ------------------------------------------------------------------------------ Correlator

namespace {
template <typename T>
std::uint32_t touch(const std::vector<T>& v) {
  return nmf::touch_bytes(v.data(), v.size() * sizeof(T));
}
}  // namespace

std::uint32_t RigidRegistration::Correlator::warm() const {
  const std::size_t n = static_cast<std::size_t>(h) * w, nc = static_cast<std::size_t>(h) * (w / 2 + 1);
  return touch(taper) + touch(gauss) + nmf::touch_bytes(real, n * sizeof(float)) +
         nmf::touch_bytes(spec, nc * 2 * sizeof(float)) + nmf::touch_bytes(tmpl_spec, nc * 2 * sizeof(float));
}

std::uint32_t RigidRegistration::warm() const {
  std::uint32_t acc = coarse_.warm() + touch(binned_) + touch(tmpl_coarse_) + touch(hrow_[0]) + touch(hrow_[1]) +
                      touch(col0_) + touch(col1_);
  if (refine_) acc += fine_.warm() + touch(tmpl_fine_);
  return acc;
}

void RigidRegistration::Correlator::init(std::uint32_t hh, std::uint32_t ww,
                                         const RegistrationOptions& o) {
  release();
  h = hh;
  w = ww;
  const std::vector<float> ty = taper_1d(h, o.taper_fraction);
  const std::vector<float> tx = taper_1d(w, o.taper_fraction);
  taper.resize(static_cast<std::size_t>(h) * w);
  for (std::uint32_t y = 0; y < h; ++y)
    for (std::uint32_t x = 0; x < w; ++x) taper[y * w + x] = ty[y] * tx[x];
  const std::uint32_t cw = w / 2 + 1;
  gauss.resize(static_cast<std::size_t>(h) * cw);
  const double s2 = 2.0 * M_PI * M_PI * o.smooth_sigma * o.smooth_sigma;
  gauss_sum = 0;
  for (std::uint32_t y = 0; y < h; ++y) {
    const double fy = freq(y, h);
    for (std::uint32_t x = 0; x < w; ++x) {
      const double fx = freq(x, w);
      const double g = std::exp(-s2 * (fy * fy + fx * fx));
      gauss_sum += g;
      if (x < cw) gauss[y * cw + x] = static_cast<float>(g);
    }
  }
  std::lock_guard<std::mutex> lock(planner_mutex());
  real = fftwf_alloc_real(static_cast<std::size_t>(h) * w);
  spec = fftwf_alloc_complex(static_cast<std::size_t>(h) * cw);
  tmpl_spec = fftwf_alloc_complex(static_cast<std::size_t>(h) * cw);
  if (!real || !spec || !tmpl_spec) throw std::bad_alloc();
  // FFTW_ESTIMATE never times anything, so every run picks the same algorithm and shifts are
  // bit-identical across runs. With the compiled-in wisdom loaded it rebuilds the recorded
  // (measured) plan for these sizes instead: 2.4 times faster at 128 x 128, just as repeatable.
  // FFTW_NO_BUFFERING: no plan that allocates a buffer per execution (hot path), and the flag
  // the wisdom was recorded with, which FFTW matches.
  load_wisdom_locked();
  const unsigned flags = FFTW_ESTIMATE | FFTW_NO_BUFFERING;
  fwd = fftwf_plan_dft_r2c_2d(static_cast<int>(h), static_cast<int>(w), real,
                              static_cast<fftwf_complex*>(spec), flags);
  inv = fftwf_plan_dft_c2r_2d(static_cast<int>(h), static_cast<int>(w),
                              static_cast<fftwf_complex*>(spec), real, flags);
  if (!fwd || !inv) throw std::runtime_error("registration: FFTW planning failed");
}

void RigidRegistration::Correlator::release() {
  std::lock_guard<std::mutex> lock(planner_mutex());
  if (fwd) fftwf_destroy_plan(static_cast<fftwf_plan>(fwd));
  if (inv) fftwf_destroy_plan(static_cast<fftwf_plan>(inv));
  fftwf_free(real);
  fftwf_free(spec);
  fftwf_free(tmpl_spec);
  fwd = inv = nullptr;
  real = nullptr;
  spec = tmpl_spec = nullptr;
}

void RigidRegistration::Correlator::load(const float* src, std::size_t stride) {
  double sum = 0;
  for (std::uint32_t y = 0; y < h; ++y) {
    const float* s = src + y * stride;
    float row = 0;
    for (std::uint32_t x = 0; x < w; ++x) row += s[x];
    sum += row;
  }
  const float mean = static_cast<float>(sum / (static_cast<double>(h) * w));
  for (std::uint32_t y = 0; y < h; ++y) {
    const float* s = src + y * stride;
    const float* t = taper.data() + static_cast<std::size_t>(y) * w;
    float* d = real + static_cast<std::size_t>(y) * w;
    for (std::uint32_t x = 0; x < w; ++x) d[x] = (s[x] - mean) * t[x];
  }
  fftwf_execute(static_cast<fftwf_plan>(fwd));
}

void RigidRegistration::Correlator::set_template(const float* src, std::size_t stride) {
  load(src, stride);
  const std::size_t n = static_cast<std::size_t>(h) * (w / 2 + 1);
  auto* s = static_cast<fftwf_complex*>(spec);
  auto* t = static_cast<fftwf_complex*>(tmpl_spec);
  for (std::size_t i = 0; i < n; ++i) {
    t[i][0] = s[i][0];
    t[i][1] = -s[i][1];
  }
}

Shift RigidRegistration::Correlator::estimate(const float* src, std::size_t stride, int m) {
  load(src, stride);
  const std::size_t n = static_cast<std::size_t>(h) * (w / 2 + 1);
  auto* s = static_cast<fftwf_complex*>(spec);
  const auto* t = static_cast<const fftwf_complex*>(tmpl_spec);
  for (std::size_t i = 0; i < n; ++i) {
    const float re = s[i][0] * t[i][0] - s[i][1] * t[i][1];
    const float im = s[i][0] * t[i][1] + s[i][1] * t[i][0];
    const float mag = std::sqrt(re * re + im * im) + 1e-12f;
    const float g = gauss[i] / mag;
    s[i][0] = re * g;
    s[i][1] = im * g;
  }
  fftwf_execute(static_cast<fftwf_plan>(inv));
  // Peak search over |dy|, |dx| <= m (indices wrap around).
  const int H = static_cast<int>(h), W = static_cast<int>(w);
  auto at = [&](int dy, int dx) {
    const int y = (dy + H) % H, x = (dx + W) % W;
    return real[static_cast<std::size_t>(y) * W + x];
  };
  float best = -1e30f;
  int by = 0, bx = 0;
  for (int dy = -m; dy <= m; ++dy) {
    for (int dx = -m; dx <= m; ++dx) {
      const float v = at(dy, dx);
      if (v > best) {
        best = v;
        by = dy;
        bx = dx;
      }
    }
  }
  Shift out;
  out.dy = static_cast<float>(by) + peak_offset(at(by - 1, bx), best, at(by + 1, bx));
  out.dx = static_cast<float>(bx) + peak_offset(at(by, bx - 1), best, at(by, bx + 1));
  out.peak = static_cast<float>(best / gauss_sum);
  return out;
}

// ------------------------------------------------------------------------ RigidRegistration

RigidRegistration::~RigidRegistration() { release(); }

void RigidRegistration::release() {
  coarse_.release();
  fine_.release();
}

void RigidRegistration::init(std::uint32_t height, std::uint32_t width,
                             const RegistrationOptions& options) {
  if (height < 4 || width < 4) throw std::invalid_argument("registration: frame smaller than 4x4");
  release();
  height_ = height;
  width_ = width;
  std::uint32_t b = options.downsample;
  if (b == 0) {
    b = 1;
    while (options.max_window && std::max(height, width) / b > options.max_window &&
           std::min(height, width) / (2 * b) >= 16)
      b *= 2;
  }
  if ((b & (b - 1)) != 0) throw std::invalid_argument("registration: downsample must be a power of two");
  if (height / b < 4 || width / b < 4)
    throw std::invalid_argument("registration: downsample leaves fewer than 4x4 binned pixels");
  bin_ = b;
  // Windows of 2^a 3^b 5^c pixels per side: FFTW's plans for sizes with larger prime factors may
  // allocate on every execute. (Powers of two alone cost accuracy on small frames: a 96 x 96
  // one-photon movie was registered on its central 64 x 64 only, 0.9 px rms error instead of 0.5.)
  const std::uint32_t hb = height / b, wb = width / b;
  const std::uint32_t win_h = fft_size_floor(options.max_window ? std::min(hb, options.max_window) : hb);
  const std::uint32_t win_w = fft_size_floor(options.max_window ? std::min(wb, options.max_window) : wb);
  off_y_ = (hb - win_h) / 2;
  off_x_ = (wb - win_w) / 2;
  // Default: a tenth of the frame's longer side (suite2p's maxregshift). A quarter of the window
  // (16 px at 64 x 64) let sparse frames lock onto a wrong peak: on a simulated 64 x 64 movie
  // with 0.5 px of motion, 11 of 600 frames registered at (5, -8) px, a neuron firing in the
  // frame aligned onto another that was bright in the template.
  const std::uint32_t full = options.max_shift ? options.max_shift : std::max<std::uint32_t>(1, std::max(height, width) / 10);
  max_shift_ = (full + b - 1) / b;
  max_shift_ = std::min(max_shift_, std::min(win_h, win_w) / 2 - 1);
  coarse_.init(win_h, win_w, options);
  binned_.assign(b > 1 ? static_cast<std::size_t>(win_h) * win_w : 0, 0.0f);
  tmpl_coarse_.assign(static_cast<std::size_t>(win_h) * win_w, 0.0f);
  refine_ = b > 1 && options.refine_window >= 8;
  if (refine_) {
    const std::uint32_t rh = fft_size_floor(std::min(height, options.refine_window));
    const std::uint32_t rw = fft_size_floor(std::min(width, options.refine_window));
    roff_y_ = (height - rh) / 2;
    roff_x_ = (width - rw) / 2;
    fine_.init(rh, rw, options);
    tmpl_fine_.assign(static_cast<std::size_t>(rh) * rw, 0.0f);
  } else {
    tmpl_fine_.clear();
  }
  has_template_ = false;
  for (auto& r : hrow_) r.assign(width, 0.0f);
  col0_.resize(width);
  col1_.resize(width);
}

void RigidRegistration::bin_window(const float* frame, float* dst) {
  const std::uint32_t b = bin_, h = coarse_.h, w = coarse_.w;
  const std::size_t W = width_;
  float* acc = hrow_[0].data();  // scratch: hrow_ is only meaningful inside shift_rows()
  const std::uint32_t x0 = off_x_ * b, n = w * b;
  for (std::uint32_t by = 0; by < h; ++by) {
    const float* r = frame + static_cast<std::size_t>((off_y_ + by) * b) * W + x0;
    const float* r1 = r + W;  // b >= 2 here
    for (std::uint32_t x = 0; x < n; ++x) acc[x] = r[x] + r1[x];
    for (std::uint32_t k = 2; k < b; ++k) {
      const float* rk = r + k * W;
      for (std::uint32_t x = 0; x < n; ++x) acc[x] += rk[x];
    }
    hbin(acc, dst + static_cast<std::size_t>(by) * w, static_cast<int>(w), static_cast<int>(b), false);
  }
}

void RigidRegistration::set_template(const float* tmpl) {
  const std::size_t W = width_;
  if (bin_ > 1) {
    bin_window(tmpl, tmpl_coarse_.data());
  } else {
    for (std::uint32_t y = 0; y < coarse_.h; ++y) {
      const float* s = tmpl + (off_y_ + y) * W + off_x_;
      std::copy(s, s + coarse_.w, tmpl_coarse_.data() + static_cast<std::size_t>(y) * coarse_.w);
    }
  }
  if (refine_) {
    for (std::uint32_t y = 0; y < fine_.h; ++y) {
      const float* s = tmpl + (roff_y_ + y) * W + roff_x_;
      std::copy(s, s + fine_.w, tmpl_fine_.data() + static_cast<std::size_t>(y) * fine_.w);
    }
  }
  refresh_template();
}

void RigidRegistration::blend_template(const float* frame, float weight) {
  if (bin_ > 1) bin_window(frame, binned_.data());
  blend_reduced(frame, binned_.data(), weight);
}

void RigidRegistration::blend_reduced(const float* frame, const float* binned, float weight) {
  const std::size_t W = width_;
  if (bin_ > 1) {
    for (std::size_t i = 0; i < tmpl_coarse_.size(); ++i)
      tmpl_coarse_[i] += weight * (binned[i] - tmpl_coarse_[i]);
  } else {
    for (std::uint32_t y = 0; y < coarse_.h; ++y) {
      const float* s = frame + (off_y_ + y) * W + off_x_;
      float* t = tmpl_coarse_.data() + static_cast<std::size_t>(y) * coarse_.w;
      for (std::uint32_t x = 0; x < coarse_.w; ++x) t[x] += weight * (s[x] - t[x]);
    }
  }
  if (refine_) {
    for (std::uint32_t y = 0; y < fine_.h; ++y) {
      const float* s = frame + (roff_y_ + y) * W + roff_x_;
      float* t = tmpl_fine_.data() + static_cast<std::size_t>(y) * fine_.w;
      for (std::uint32_t x = 0; x < fine_.w; ++x) t[x] += weight * (s[x] - t[x]);
    }
  }
}

void RigidRegistration::refresh_template() {
  coarse_.set_template(tmpl_coarse_.data(), coarse_.w);
  if (refine_) fine_.set_template(tmpl_fine_.data(), fine_.w);
  has_template_ = true;
}

Shift RigidRegistration::estimate(const float* frame) {
  if (!has_template_) return Shift{};
  const std::size_t W = width_;
  Shift c;
  if (bin_ > 1) {
    bin_window(frame, binned_.data());
    c = coarse_.estimate(binned_.data(), coarse_.w, static_cast<int>(max_shift_));
  } else {
    c = coarse_.estimate(frame + off_y_ * W + off_x_, W, static_cast<int>(max_shift_));
  }
  const float b = static_cast<float>(bin_);
  if (!refine_) return Shift{c.dy * b, c.dx * b, c.peak};
  // Full resolution: the crop read displaced by the whole-pixel part of the coarse shift, so what
  // is left is within about one binned pixel.
  const int H = static_cast<int>(height_), Wi = static_cast<int>(width_);
  const int rh = static_cast<int>(fine_.h), rw = static_cast<int>(fine_.w);
  const int ry = static_cast<int>(roff_y_), rx = static_cast<int>(roff_x_);
  const int want_y = static_cast<int>(std::lround(c.dy * b)), want_x = static_cast<int>(std::lround(c.dx * b));
  const int iy = std::clamp(ry + want_y, 0, H - rh) - ry;
  const int ix = std::clamp(rx + want_x, 0, Wi - rw) - rx;
  const int extra = std::max(std::abs(want_y - iy), std::abs(want_x - ix));
  const int m = std::min(static_cast<int>(bin_) + 2 + extra, std::min(rh, rw) / 2 - 1);
  const Shift f = fine_.estimate(frame + static_cast<std::size_t>(ry + iy) * W + static_cast<std::size_t>(rx + ix), W, m);
  return Shift{static_cast<float>(iy) + f.dy, static_cast<float>(ix) + f.dx, f.peak};
}

void RigidRegistration::shift_rows(const float* src, float* dst, const Shift& shift, float* bin_out) {
  const int H = static_cast<int>(height_), W = static_cast<int>(width_);
  const float fy = std::floor(shift.dy), fx = std::floor(shift.dx);
  const int iy = static_cast<int>(fy), ix = static_cast<int>(fx);
  const float wy = shift.dy - fy, wx = shift.dx - fx;
  // Columns whose taps x+ix and x+ix+1 both lie inside the row: contiguous loads; the rest clamp.
  const int x_lo = std::clamp(-ix, 0, W), x_hi = std::clamp(W - 2 - ix, x_lo - 1, W - 1);
  for (int x = 0; x < W; ++x) {
    col0_[static_cast<std::size_t>(x)] = std::clamp(x + ix, 0, W - 1);
    col1_[static_cast<std::size_t>(x)] = std::clamp(x + ix + 1, 0, W - 1);
  }
  int tag[2] = {-1, -1};
  // Source row r interpolated horizontally into a slot not holding row `keep`.
  auto row = [&](int r, int keep) -> const float* {
    if (tag[0] == r) return hrow_[0].data();
    if (tag[1] == r) return hrow_[1].data();
    const int s = tag[0] == keep ? 1 : 0;
    tag[s] = r;
    float* o = hrow_[static_cast<std::size_t>(s)].data();
    const float* a = src + static_cast<std::size_t>(r) * W;
    for (int x = 0; x < x_lo; ++x) {
      const float l = a[col0_[static_cast<std::size_t>(x)]], h = a[col1_[static_cast<std::size_t>(x)]];
      o[x] = l + wx * (h - l);
    }
    if (wx == 0.0f) {
      if (x_hi >= x_lo) std::memcpy(o + x_lo, a + x_lo + ix, sizeof(float) * static_cast<std::size_t>(x_hi - x_lo + 1));
    } else {
      const float* a0 = a + ix;
      for (int x = x_lo; x <= x_hi; ++x) o[x] = a0[x] + wx * (a0[x + 1] - a0[x]);
    }
    for (int x = std::max(x_hi + 1, x_lo); x < W; ++x) {
      const float l = a[col0_[static_cast<std::size_t>(x)]], h = a[col1_[static_cast<std::size_t>(x)]];
      o[x] = l + wx * (h - l);
    }
    return o;
  };
  // In place, output row y reads source rows y+iy and y+iy+1: visiting rows upwards when iy < 0
  // and downwards otherwise reads each source row (into hrow_) before it is overwritten.
  const bool down = iy >= 0;
  const int bin = static_cast<int>(bin_);
  const int by0 = static_cast<int>(off_y_) * bin, by1 = by0 + static_cast<int>(coarse_.h) * bin;
  const int bx0 = static_cast<int>(off_x_) * bin, bw = static_cast<int>(coarse_.w);
  if (bin_out) std::fill(bin_out, bin_out + static_cast<std::size_t>(coarse_.h) * coarse_.w, 0.0f);
  for (int i = 0; i < H; ++i) {
    const int y = down ? i : H - 1 - i;
    const int r0 = std::clamp(y + iy, 0, H - 1), r1 = std::clamp(y + iy + 1, 0, H - 1);
    float* o = dst + static_cast<std::size_t>(y) * W;
    if (wy == 0.0f) {
      const float* a = row(r0, -1);
      std::memcpy(o, a, sizeof(float) * static_cast<std::size_t>(W));
    } else {
      const float* a = row(r0, r1);
      const float* b = row(r1, r0);
      for (int x = 0; x < W; ++x) o[x] = a[x] + wy * (b[x] - a[x]);
    }
    if (bin_out && y >= by0 && y < by1) {  // the row is in L1: binning it here is nearly free
      hbin(o + bx0, bin_out + static_cast<std::size_t>((y - by0) / bin) * bw, bw, bin, true);
    }
  }
}

void RigidRegistration::apply(const float* frame, const Shift& shift, float* out) {
  shift_rows(frame, out, shift, nullptr);
}

void RigidRegistration::apply_in_place(float* frame, const Shift& shift) {
  shift_rows(frame, frame, shift, nullptr);
}

Shift RigidRegistration::start_template(float* frame, std::uint32_t index, std::uint32_t count) {
  if (index == 0) {
    set_template(frame);
    return {};
  }
  const Shift s = correct(frame, 1.0f / static_cast<float>(index + 1));
  if (index + 1 == count || ((index + 1) & index) == 0) refresh_template();
  return s;
}

Shift RigidRegistration::correct(float* frame, float weight) {
  const Shift s = estimate(frame);
  apply_and_blend(frame, s, weight);
  return s;
}

void RigidRegistration::apply_and_blend(float* frame, const Shift& s, float weight) {
  const bool blend = weight > 0;
  if (s.dy != 0.0f || s.dx != 0.0f) {
    shift_rows(frame, frame, s, blend && bin_ > 1 ? binned_.data() : nullptr);
  } else if (blend && bin_ > 1) {
    bin_window(frame, binned_.data());
  }
  if (blend) blend_reduced(frame, binned_.data(), weight);
}

int estimate_bidi_phase(const float* frame, std::uint32_t height, std::uint32_t width, int max_offset) {
  const int H = static_cast<int>(height), W = static_cast<int>(width);
  max_offset = std::max(0, max_offset);
  if (H < 4 || W < 2 * max_offset + 3) return 0;
  // Horizontal first differences (edges): a smooth background (vignetting, a gradient) would
  // otherwise dominate the correlation and pull it towards whatever its slope favours (a
  // simulated two-photon frame: off by one for every positive offset).
  auto d = [&](int y, int x) {
    const float* r = frame + static_cast<std::ptrdiff_t>(y) * W;
    return static_cast<double>(r[x + 1]) - r[x];
  };
  const int Wd = W - 1;
  int best = 0;
  double best_score = -2;
  for (int s = -max_offset; s <= max_offset; ++s) {
    // Columns where odd(x + s) exists: x in [x0, x1).
    const int x0 = std::max(0, -s), x1 = std::min(Wd, Wd - s);
    double sab = 0, saa = 0, sbb = 0;
    for (int y = 1; y + 1 < H; y += 2) {
      for (int x = x0; x < x1; ++x) {
        const double a = 0.5 * (d(y - 1, x) + d(y + 1, x));
        const double b = d(y, x + s);
        sab += a * b, saa += a * a, sbb += b * b;
      }
    }
    const double score = saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : 0.0;
    // Strictly better, or as good and nearer 0 (s runs from -max to max).
    if (score > best_score + 1e-12 || (std::fabs(score - best_score) <= 1e-12 && std::abs(s) < std::abs(best))) {
      best_score = score;
      best = s;
    }
  }
  return best;
}

void correct_bidi_phase(float* frame, std::uint32_t height, std::uint32_t width, int offset) {
  const int H = static_cast<int>(height), W = static_cast<int>(width);
  if (offset == 0 || W == 0) return;
  const int o = std::clamp(offset, -(W - 1), W - 1);
  for (int y = 1; y < H; y += 2) {
    float* row = frame + static_cast<std::ptrdiff_t>(y) * W;
    if (o > 0) {  // row[x] = row[x + o]; the last o columns take the last pixel
      const float edge = row[W - 1];
      std::memmove(row, row + o, sizeof(float) * static_cast<std::size_t>(W - o));
      std::fill(row + W - o, row + W, edge);
    } else {  // row[x] = row[x - |o|]; the first |o| columns take the first pixel
      const float edge = row[0];
      std::memmove(row - o, row, sizeof(float) * static_cast<std::size_t>(W + o));
      std::fill(row, row - o, edge);
    }
  }
}

}  // namespace rtnmf::dsp
