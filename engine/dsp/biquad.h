// Second-order IIR sections and a multichannel cascade of them, for causal block filtering of
// channels × samples blocks (column-major: one sample of all channels is contiguous).
#pragma once

#include <Eigen/Core>
#include <complex>
#include <cstdint>
#include <span>
#include <vector>

namespace rtnmf::dsp {

// y[n] = b0 x[n] + b1 x[n-1] + b2 x[n-2] - a1 y[n-1] - a2 y[n-2]  (a0 normalised to 1).
// A first-order section has b2 = a2 = 0.
struct BiquadCoeffs {
  double b0 = 1, b1 = 0, b2 = 0, a1 = 0, a2 = 0;
};

// Complex frequency response of one section at f_hz for sample rate fs_hz. Does not allocate.
std::complex<double> biquad_response(const BiquadCoeffs& c, double f_hz, double fs_hz);
// |H(f)| of a cascade of sections. Does not allocate. Any thread.
double cascade_magnitude(std::span<const BiquadCoeffs> sections, double f_hz, double fs_hz);
// Frequencies where |H| crosses `level` (e.g. 1/sqrt(2)), found by a fine log-spaced scan over
// (f_lo, f_hi) refined by bisection. Allocates the result. Any thread.
std::vector<double> cascade_crossings(std::span<const BiquadCoeffs> sections, double fs_hz,
                                      double level, double f_lo, double f_hi);

// A cascade of biquad sections applied to every channel of a block, state per channel and
// section (transposed direct form II, double precision: the 6 Hz envelope low-pass at 4 kHz has
// poles within 1e-2 of the unit circle, where float state loses the response).
class BiquadCascade {
 public:
  BiquadCascade() = default;
  // Sets the sections and the channel count and zeroes the state. Allocates; not for the hot
  // path. Any thread that owns the object.
  void configure(std::vector<BiquadCoeffs> sections, int channels);
  // Zeroes the state. Does not allocate.
  void reset();
  // Filters a channels × samples column-major block in place. Does not allocate, lock or throw;
  // the caller guarantees block.rows() == channels(). Owning thread only.
  void process(Eigen::Ref<Eigen::MatrixXf> block);
  // Same on raw memory: `data` holds `samples` columns of `channels()` floats.
  void process(float* data, std::int64_t samples);
  // Filters one sample of every channel in place (`x` holds channels() doubles). Does not
  // allocate. Owning thread only.
  void process_sample(double* x) {
    const int nc = channels_;
    for (std::size_t s = 0; s < sections_.size(); ++s) {
      const BiquadCoeffs k = sections_[s];
      double* __restrict z1 = z1_.data() + s * nc;
      double* __restrict z2 = z2_.data() + s * nc;
      // Transposed direct form II, vectorised across channels.
      for (int c = 0; c < nc; ++c) {
        const double in = x[c];
        const double y = k.b0 * in + z1[c];
        z1[c] = k.b1 * in - k.a1 * y + z2[c];
        z2[c] = k.b2 * in - k.a2 * y;
        x[c] = y;
      }
    }
  }

  int channels() const { return channels_; }
  const std::vector<BiquadCoeffs>& sections() const { return sections_; }

 private:
  std::vector<BiquadCoeffs> sections_;
  int channels_ = 0;
  // z1_[s * channels_ + c], z2_[...]: the two delays of section s for channel c.
  std::vector<double> z1_, z2_;
  std::vector<double> work_;  // one sample of all channels
};

}  // namespace rtnmf::dsp
