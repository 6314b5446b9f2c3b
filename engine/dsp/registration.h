// Rigid registration of imaging frames to a template by FFT phase correlation (FFTW, float).
//
//   RigidRegistration reg;
//   reg.init(height, width, {});            // plans and buffers: allocates, not thread-safe wrt
//                                           // other FFTW planning (guarded by a global mutex)
//   reg.set_template(tmpl);                 // allocates nothing after init
//   Shift s = reg.estimate(frame);          // hot path: no allocation
//   reg.apply(frame, s, corrected);         // corrected(y, x) = frame(y + s.dy, x + s.dx)
//
// Conventions: frames are row-major height x width (pixel = row * width + column). A shift (dy, dx)
// means the frame is the template displaced by dy rows and dx columns:
// frame(y, x) ~ template(y - dy, x - dx). Sub-pixel: the normalised cross-power spectrum is
// multiplied by a Gaussian (suite2p's trick, sigma ~1.15 px in space), which turns the correlation
// peak into a Gaussian blob whose centre a log-parabola through 3 points per axis recovers.
// Deterministic: plans are made with FFTW_ESTIMATE, so every run computes bit-identical shifts.
#pragma once

#include <cstdint>
#include <vector>

namespace rtnmf::dsp {

struct Shift {
  float dy = 0;
  float dx = 0;
  float peak = 0;  // height of the normalised correlation peak (quality, 0..1)
};

struct RegistrationOptions {
  // Largest shift searched, in pixels (0 = a quarter of the registration window).
  std::uint32_t max_shift = 0;
  // The phase correlation runs on a central crop of at most this many pixels per side (0 = whole
  // frame), rounded down to a power of two (FFTW plans for other sizes may allocate per call);
  // shifts are rigid, so a central crop estimates them at a fraction of the cost.
  std::uint32_t max_window = 256;
  // Gaussian smoothing of the correlation in pixels (suite2p smooth_sigma).
  float smooth_sigma = 1.15f;
  // Fraction of each border tapered to the mean before the FFT (kills edge wrap-around).
  float taper_fraction = 0.1f;
};

class RigidRegistration {
 public:
  RigidRegistration() = default;
  ~RigidRegistration();
  RigidRegistration(const RigidRegistration&) = delete;
  RigidRegistration& operator=(const RigidRegistration&) = delete;

  // Sizes buffers and creates FFTW plans for height x width frames. Allocates. Throws
  // std::invalid_argument for an empty shape. Call before any other method, from any one thread.
  void init(std::uint32_t height, std::uint32_t width, const RegistrationOptions& options);

  // Sets the reference image (height*width floats). Does not allocate.
  void set_template(const float* tmpl);
  bool has_template() const { return has_template_; }

  // Estimates the displacement of `frame` relative to the template. Does not allocate. Returns a
  // zero shift with peak 0 before set_template().
  Shift estimate(const float* frame);

  // Writes the frame moved back onto the template grid: out(y, x) = frame(y + dy, x + dx) by
  // bilinear interpolation, replicating border pixels. Does not allocate. `out` != `frame`.
  void apply(const float* frame, const Shift& shift, float* out);

  std::uint32_t height() const { return height_; }
  std::uint32_t width() const { return width_; }

 private:
  void load_window(const float* frame, float* dst) const;
  std::vector<std::int32_t> col0_, col1_;  // apply(): clamped column taps
  double gauss_sum_ = 1;
  void release();

  std::uint32_t height_ = 0, width_ = 0;
  std::uint32_t win_h_ = 0, win_w_ = 0, off_y_ = 0, off_x_ = 0;  // central crop
  std::uint32_t max_shift_ = 0;
  RegistrationOptions options_;
  bool has_template_ = false;
  std::vector<float> taper_;    // win_h_ x win_w_
  std::vector<float> gauss_;    // win_h_ x (win_w_/2+1) spectral weights
  float* real_ = nullptr;       // fftwf_malloc'd, win_h_ x win_w_
  void* spec_ = nullptr;        // fftwf_complex, win_h_ x (win_w_/2+1)
  void* tmpl_spec_ = nullptr;   // conj(FFT(template))
  void* fwd_ = nullptr;         // fftwf_plan
  void* inv_ = nullptr;
};

}  // namespace rtnmf::dsp
