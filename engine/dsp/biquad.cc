#include "engine/dsp/biquad.h"

#include <cmath>
#include <numbers>

namespace rtnmf::dsp {

std::complex<double> biquad_response(const BiquadCoeffs& c, double f_hz, double fs_hz) {
  const double w = 2.0 * std::numbers::pi * f_hz / fs_hz;
  const std::complex<double> z1 = std::polar(1.0, -w);  // z^-1
  const std::complex<double> z2 = z1 * z1;
  return (c.b0 + c.b1 * z1 + c.b2 * z2) / (1.0 + c.a1 * z1 + c.a2 * z2);
}

double cascade_magnitude(std::span<const BiquadCoeffs> sections, double f_hz, double fs_hz) {
  double m = 1.0;
  for (const BiquadCoeffs& c : sections) m *= std::abs(biquad_response(c, f_hz, fs_hz));
  return m;
}

std::vector<double> cascade_crossings(std::span<const BiquadCoeffs> sections, double fs_hz,
                                      double level, double f_lo, double f_hi) {
  std::vector<double> out;
  constexpr int kSteps = 20000;
  const double r = std::log(f_hi / f_lo) / kSteps;
  double f_prev = f_lo;
  double g_prev = cascade_magnitude(sections, f_prev, fs_hz) - level;
  for (int i = 1; i <= kSteps; ++i) {
    const double f = f_lo * std::exp(r * i);
    const double g = cascade_magnitude(sections, f, fs_hz) - level;
    if ((g_prev < 0) != (g < 0)) {
      double a = f_prev, b = f;
      double ga = g_prev;
      for (int it = 0; it < 80; ++it) {
        const double m = 0.5 * (a + b);
        const double gm = cascade_magnitude(sections, m, fs_hz) - level;
        if ((gm < 0) == (ga < 0)) {
          a = m;
          ga = gm;
        } else {
          b = m;
        }
      }
      out.push_back(0.5 * (a + b));
    }
    f_prev = f;
    g_prev = g;
  }
  return out;
}

void BiquadCascade::configure(std::vector<BiquadCoeffs> sections, int channels) {
  sections_ = std::move(sections);
  channels_ = channels;
  const std::size_t n = sections_.size() * static_cast<std::size_t>(channels_);
  z1_.assign(n, 0.0);
  z2_.assign(n, 0.0);
  work_.assign(static_cast<std::size_t>(channels_), 0.0);
}

void BiquadCascade::reset() {
  std::fill(z1_.begin(), z1_.end(), 0.0);
  std::fill(z2_.begin(), z2_.end(), 0.0);
}

void BiquadCascade::process(Eigen::Ref<Eigen::MatrixXf> block) {
  // Ref<MatrixXf> has an inner stride of 1 and an outer stride that may exceed rows().
  for (Eigen::Index j = 0; j < block.cols(); ++j) process(block.col(j).data(), 1);
}

void BiquadCascade::process(float* data, std::int64_t samples) {
  const int nc = channels_;
  double* __restrict w = work_.data();
  for (std::int64_t t = 0; t < samples; ++t) {
    float* __restrict x = data + t * nc;
    for (int c = 0; c < nc; ++c) w[c] = x[c];
    process_sample(w);
    for (int c = 0; c < nc; ++c) x[c] = static_cast<float>(w[c]);
  }
}

}  // namespace rtnmf::dsp
