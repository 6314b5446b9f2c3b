#include "engine/dsp/registration.h"

#include <fftw3.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <stdexcept>

namespace rtnmf::dsp {
namespace {

// FFTW's planner is not thread-safe; every plan in the process is made under this mutex.
std::mutex& planner_mutex() {
  static std::mutex m;
  return m;
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

}  // namespace

RigidRegistration::~RigidRegistration() { release(); }

void RigidRegistration::release() {
  std::lock_guard<std::mutex> lock(planner_mutex());
  if (fwd_) fftwf_destroy_plan(static_cast<fftwf_plan>(fwd_));
  if (inv_) fftwf_destroy_plan(static_cast<fftwf_plan>(inv_));
  fftwf_free(real_);
  fftwf_free(spec_);
  fftwf_free(tmpl_spec_);
  fwd_ = inv_ = nullptr;
  real_ = nullptr;
  spec_ = tmpl_spec_ = nullptr;
}

void RigidRegistration::init(std::uint32_t height, std::uint32_t width,
                             const RegistrationOptions& options) {
  if (height < 4 || width < 4) throw std::invalid_argument("registration: frame smaller than 4x4");
  release();
  options_ = options;
  height_ = height;
  width_ = width;
  // Power-of-two windows: FFTW's plans for other sizes may allocate buffers on every execute.
  auto pow2_floor = [](std::uint32_t n) {
    std::uint32_t p = 1;
    while (p * 2 <= n) p *= 2;
    return p;
  };
  win_h_ = pow2_floor(options.max_window ? std::min(height, options.max_window) : height);
  win_w_ = pow2_floor(options.max_window ? std::min(width, options.max_window) : width);
  off_y_ = (height - win_h_) / 2;
  off_x_ = (width - win_w_) / 2;
  max_shift_ = options.max_shift ? options.max_shift : std::min(win_h_, win_w_) / 4;
  max_shift_ = std::min(max_shift_, std::min(win_h_, win_w_) / 2 - 1);
  has_template_ = false;

  const std::vector<float> ty = taper_1d(win_h_, options.taper_fraction);
  const std::vector<float> tx = taper_1d(win_w_, options.taper_fraction);
  taper_.resize(static_cast<std::size_t>(win_h_) * win_w_);
  for (std::uint32_t y = 0; y < win_h_; ++y)
    for (std::uint32_t x = 0; x < win_w_; ++x) taper_[y * win_w_ + x] = ty[y] * tx[x];

  const std::uint32_t cw = win_w_ / 2 + 1;
  gauss_.resize(static_cast<std::size_t>(win_h_) * cw);
  const double s2 = 2.0 * M_PI * M_PI * options.smooth_sigma * options.smooth_sigma;
  gauss_sum_ = 0;
  for (std::uint32_t y = 0; y < win_h_; ++y) {
    const double fy = freq(y, win_h_);
    for (std::uint32_t x = 0; x < win_w_; ++x) {
      const double fx = freq(x, win_w_);
      const double g = std::exp(-s2 * (fy * fy + fx * fx));
      gauss_sum_ += g;
      if (x < cw) gauss_[y * cw + x] = static_cast<float>(g);
    }
  }

  {
    std::lock_guard<std::mutex> lock(planner_mutex());
    real_ = fftwf_alloc_real(static_cast<std::size_t>(win_h_) * win_w_);
    spec_ = fftwf_alloc_complex(static_cast<std::size_t>(win_h_) * cw);
    tmpl_spec_ = fftwf_alloc_complex(static_cast<std::size_t>(win_h_) * cw);
    if (!real_ || !spec_ || !tmpl_spec_) throw std::bad_alloc();
    // FFTW_ESTIMATE: the same algorithm every run, so shifts are bit-identical across runs.
    fwd_ = fftwf_plan_dft_r2c_2d(static_cast<int>(win_h_), static_cast<int>(win_w_), real_,
                                 static_cast<fftwf_complex*>(spec_), FFTW_ESTIMATE);
    inv_ = fftwf_plan_dft_c2r_2d(static_cast<int>(win_h_), static_cast<int>(win_w_),
                                 static_cast<fftwf_complex*>(spec_), real_, FFTW_ESTIMATE);
    if (!fwd_ || !inv_) throw std::runtime_error("registration: FFTW planning failed");
  }
  col0_.resize(width);
  col1_.resize(width);
}

void RigidRegistration::load_window(const float* frame, float* dst) const {
  double sum = 0;
  for (std::uint32_t y = 0; y < win_h_; ++y) {
    const float* src = frame + static_cast<std::size_t>(y + off_y_) * width_ + off_x_;
    for (std::uint32_t x = 0; x < win_w_; ++x) sum += src[x];
  }
  const float mean = static_cast<float>(sum / (static_cast<double>(win_h_) * win_w_));
  for (std::uint32_t y = 0; y < win_h_; ++y) {
    const float* src = frame + static_cast<std::size_t>(y + off_y_) * width_ + off_x_;
    const float* t = taper_.data() + static_cast<std::size_t>(y) * win_w_;
    float* d = dst + static_cast<std::size_t>(y) * win_w_;
    for (std::uint32_t x = 0; x < win_w_; ++x) d[x] = (src[x] - mean) * t[x];
  }
}

void RigidRegistration::set_template(const float* tmpl) {
  load_window(tmpl, real_);
  fftwf_execute(static_cast<fftwf_plan>(fwd_));
  const std::size_t n = static_cast<std::size_t>(win_h_) * (win_w_ / 2 + 1);
  auto* s = static_cast<fftwf_complex*>(spec_);
  auto* t = static_cast<fftwf_complex*>(tmpl_spec_);
  for (std::size_t i = 0; i < n; ++i) {
    t[i][0] = s[i][0];
    t[i][1] = -s[i][1];
  }
  has_template_ = true;
}

Shift RigidRegistration::estimate(const float* frame) {
  Shift out;
  if (!has_template_) return out;
  load_window(frame, real_);
  fftwf_execute(static_cast<fftwf_plan>(fwd_));
  const std::size_t n = static_cast<std::size_t>(win_h_) * (win_w_ / 2 + 1);
  auto* s = static_cast<fftwf_complex*>(spec_);
  const auto* t = static_cast<const fftwf_complex*>(tmpl_spec_);
  for (std::size_t i = 0; i < n; ++i) {
    const float re = s[i][0] * t[i][0] - s[i][1] * t[i][1];
    const float im = s[i][0] * t[i][1] + s[i][1] * t[i][0];
    const float mag = std::sqrt(re * re + im * im) + 1e-12f;
    const float g = gauss_[i] / mag;
    s[i][0] = re * g;
    s[i][1] = im * g;
  }
  fftwf_execute(static_cast<fftwf_plan>(inv_));
  // Peak search over |dy|, |dx| <= max_shift (indices wrap around).
  const int H = static_cast<int>(win_h_), W = static_cast<int>(win_w_);
  const int m = static_cast<int>(max_shift_);
  auto at = [&](int dy, int dx) {
    const int y = (dy + H) % H, x = (dx + W) % W;
    return real_[static_cast<std::size_t>(y) * W + x];
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
  out.dy = static_cast<float>(by) + peak_offset(at(by - 1, bx), best, at(by + 1, bx));
  out.dx = static_cast<float>(bx) + peak_offset(at(by, bx - 1), best, at(by, bx + 1));
  out.peak = static_cast<float>(best / gauss_sum_);
  return out;
}

void RigidRegistration::apply(const float* frame, const Shift& shift, float* out) {
  const int H = static_cast<int>(height_), W = static_cast<int>(width_);
  // Rigid: every row uses the same column taps, so the interior is two contiguous loads per
  // pixel; only the border columns need clamping.
  const float fy = std::floor(shift.dy), fx = std::floor(shift.dx);
  const int iy = static_cast<int>(fy), ix = static_cast<int>(fx);
  const float wy = shift.dy - fy, wx = shift.dx - fx;
  const int x_lo = std::clamp(-ix, 0, W), x_hi = std::clamp(W - 1 - ix - 1, x_lo - 1, W - 1);
  for (int x = 0; x < W; ++x) {
    const int a = std::clamp(x + ix, 0, W - 1), b = std::clamp(x + ix + 1, 0, W - 1);
    col0_[x] = a;
    col1_[x] = b;
  }
  for (int y = 0; y < H; ++y) {
    const float* r0 = frame + static_cast<std::size_t>(std::clamp(y + iy, 0, H - 1)) * W;
    const float* r1 = frame + static_cast<std::size_t>(std::clamp(y + iy + 1, 0, H - 1)) * W;
    float* o = out + static_cast<std::size_t>(y) * W;
    auto px = [&](int x0, int x1, int x) {
      const float a = r0[x0] + wx * (r0[x1] - r0[x0]);
      const float b = r1[x0] + wx * (r1[x1] - r1[x0]);
      o[x] = a + wy * (b - a);
    };
    for (int x = 0; x < x_lo; ++x) px(col0_[x], col1_[x], x);
    const float* a0 = r0 + ix;
    const float* b0 = r1 + ix;
    for (int x = x_lo; x <= x_hi; ++x) {
      const float a = a0[x] + wx * (a0[x + 1] - a0[x]);
      const float b = b0[x] + wx * (b0[x + 1] - b0[x]);
      o[x] = a + wy * (b - a);
    }
    for (int x = std::max(x_hi + 1, x_lo); x < W; ++x) px(col0_[x], col1_[x], x);
  }
}

}  // namespace rtnmf::dsp
