#include "engine/dsp/butterworth.h"

#include <algorithm>
#include <cmath>
#include <complex>
#include <numbers>
#include <string>

namespace rtnmf::dsp {
namespace {

using Complex = std::complex<double>;

void check_edge(const char* what, double f_hz, double fs_hz) {
  if (!(fs_hz > 0) || !std::isfinite(fs_hz)) {
    throw DesignError(std::string("sample rate must be positive, got ") + std::to_string(fs_hz));
  }
  if (!(f_hz > 0) || !(f_hz < 0.5 * fs_hz)) {
    throw DesignError(std::string(what) + " " + std::to_string(f_hz) +
                      " Hz must lie in (0, Nyquist = " + std::to_string(0.5 * fs_hz) + " Hz)");
  }
}

void check_order(int order) {
  if (order < 1 || order > 16) {
    throw DesignError("filter order must be in 1..16, got " + std::to_string(order));
  }
}

// Analog frequency (rad/s) that the bilinear transform with K = 2 fs maps onto f_hz.
double prewarp(double f_hz, double fs_hz) {
  return 2.0 * fs_hz * std::tan(std::numbers::pi * f_hz / fs_hz);
}

// Analog pole s -> digital pole z (bilinear transform, K = 2 fs).
Complex bilinear(Complex s, double fs_hz) {
  const double k = 2.0 * fs_hz;
  return (k + s) / (k - s);
}

// Poles of the normalised order-N Butterworth prototype (left half plane, unit circle).
std::vector<Complex> prototype_poles(int order) {
  std::vector<Complex> p;
  for (int k = 0; k < order; ++k) {
    const double theta = std::numbers::pi * (2.0 * k + order + 1) / (2.0 * order);
    p.push_back(std::polar(1.0, theta));
  }
  return p;
}

// Groups digital poles into sections: conjugate pairs first (one representative with imag > 0),
// then the real poles two at a time (a lone real pole makes a first-order section).
std::vector<std::vector<Complex>> pair_poles(const std::vector<Complex>& poles) {
  constexpr double kRealTol = 1e-10;
  std::vector<std::vector<Complex>> groups;
  std::vector<double> reals;
  for (Complex z : poles) {
    if (std::abs(z.imag()) <= kRealTol) {
      reals.push_back(z.real());
    } else if (z.imag() > 0) {
      groups.push_back({z, std::conj(z)});
    }
  }
  std::sort(reals.begin(), reals.end());
  for (std::size_t i = 0; i < reals.size(); i += 2) {
    if (i + 1 < reals.size()) {
      groups.push_back({Complex(reals[i]), Complex(reals[i + 1])});
    } else {
      groups.push_back({Complex(reals[i])});
    }
  }
  return groups;
}

// Section with the given poles (1 or 2) and zeros (same count), scaled to unit magnitude at
// f_ref_hz.
BiquadCoeffs make_section(const std::vector<Complex>& poles, const std::vector<double>& zeros,
                          double f_ref_hz, double fs_hz) {
  BiquadCoeffs c;
  if (poles.size() == 2) {
    c.a1 = -(poles[0] + poles[1]).real();
    c.a2 = (poles[0] * poles[1]).real();
  } else {
    c.a1 = -poles[0].real();
    c.a2 = 0;
  }
  if (zeros.size() == 2) {
    c.b0 = 1;
    c.b1 = -(zeros[0] + zeros[1]);
    c.b2 = zeros[0] * zeros[1];
  } else {
    c.b0 = 1;
    c.b1 = -zeros[0];
    c.b2 = 0;
  }
  const double g = std::abs(biquad_response(c, f_ref_hz, fs_hz));
  c.b0 /= g;
  c.b1 /= g;
  c.b2 /= g;
  return c;
}

std::vector<BiquadCoeffs> design_lp_hp(int order, double cutoff_hz, double fs_hz, bool high) {
  check_order(order);
  check_edge(high ? "high-pass cutoff" : "low-pass cutoff", cutoff_hz, fs_hz);
  const double wc = prewarp(cutoff_hz, fs_hz);
  std::vector<Complex> zpoles;
  for (Complex p : prototype_poles(order)) {
    const Complex s = high ? wc / p : wc * p;
    zpoles.push_back(bilinear(s, fs_hz));
  }
  const double zero = high ? 1.0 : -1.0;
  // Normalise a low-pass at DC, a high-pass at Nyquist (exactly: biquad_response at fs/2).
  const double f_ref = high ? 0.5 * fs_hz : 0.0;
  std::vector<BiquadCoeffs> out;
  for (const auto& g : pair_poles(zpoles)) {
    out.push_back(make_section(g, std::vector<double>(g.size(), zero), f_ref, fs_hz));
  }
  return out;
}

}  // namespace

std::vector<BiquadCoeffs> butterworth_lowpass(int order, double cutoff_hz, double fs_hz) {
  return design_lp_hp(order, cutoff_hz, fs_hz, false);
}

std::vector<BiquadCoeffs> butterworth_highpass(int order, double cutoff_hz, double fs_hz) {
  return design_lp_hp(order, cutoff_hz, fs_hz, true);
}

std::vector<BiquadCoeffs> butterworth_bandpass(int order, double low_hz, double high_hz,
                                               double fs_hz) {
  check_order(order);
  check_edge("band-pass low edge", low_hz, fs_hz);
  check_edge("band-pass high edge", high_hz, fs_hz);
  if (!(low_hz < high_hz)) {
    throw DesignError("band-pass low edge " + std::to_string(low_hz) +
                      " Hz must be below the high edge " + std::to_string(high_hz) + " Hz");
  }
  const double w1 = prewarp(low_hz, fs_hz);
  const double w2 = prewarp(high_hz, fs_hz);
  const double bw = w2 - w1;
  const double w0sq = w1 * w2;
  // Low-pass -> band-pass: each prototype pole p gives the roots of s^2 - p bw s + w0^2.
  std::vector<Complex> zpoles;
  for (Complex p : prototype_poles(order)) {
    const Complex pb = p * bw;
    const Complex disc = std::sqrt(pb * pb - 4.0 * w0sq);
    zpoles.push_back(bilinear(0.5 * (pb + disc), fs_hz));
    zpoles.push_back(bilinear(0.5 * (pb - disc), fs_hz));
  }
  // Centre: the digital frequency whose prewarped value is sqrt(w1 w2).
  const double f_centre = fs_hz / std::numbers::pi * std::atan(std::sqrt(w0sq) / (2.0 * fs_hz));
  std::vector<BiquadCoeffs> out;
  for (const auto& g : pair_poles(zpoles)) {
    // Each section carries one zero at DC and one at Nyquist.
    std::vector<double> zeros =
        g.size() == 2 ? std::vector<double>{1.0, -1.0} : std::vector<double>{1.0};
    out.push_back(make_section(g, zeros, f_centre, fs_hz));
  }
  return out;
}

std::pair<double, double> notch_edges(double f0_hz, double bandwidth_hz, double fs_hz) {
  check_edge("notch frequency", f0_hz, fs_hz);
  if (!(bandwidth_hz > 0) || !(bandwidth_hz < f0_hz)) {
    throw DesignError("notch bandwidth " + std::to_string(bandwidth_hz) +
                      " Hz must lie in (0, notch frequency " + std::to_string(f0_hz) + " Hz)");
  }
  // Find low such that prewarp(low) * prewarp(low + bw) = prewarp(f0)^2 (bisection; the product
  // increases with low).
  const double w0sq = prewarp(f0_hz, fs_hz) * prewarp(f0_hz, fs_hz);
  double a = std::max(1e-9, f0_hz - bandwidth_hz), b = f0_hz;
  if (b + bandwidth_hz >= 0.5 * fs_hz) {
    throw DesignError("notch " + std::to_string(f0_hz) + " Hz with bandwidth " +
                      std::to_string(bandwidth_hz) + " Hz reaches Nyquist");
  }
  for (int it = 0; it < 200; ++it) {
    const double m = 0.5 * (a + b);
    if (prewarp(m, fs_hz) * prewarp(m + bandwidth_hz, fs_hz) < w0sq) {
      a = m;
    } else {
      b = m;
    }
  }
  const double low = 0.5 * (a + b);
  return {low, low + bandwidth_hz};
}

std::vector<BiquadCoeffs> notch(double f0_hz, double bandwidth_hz, double fs_hz) {
  const auto [low, high] = notch_edges(f0_hz, bandwidth_hz, fs_hz);
  // Analog band-stop from a first-order prototype: (s^2 + w0^2) / (s^2 + B s + w0^2), whose
  // -3 dB points are exactly w1, w2; the bilinear transform with prewarped edges keeps them.
  const double w1 = prewarp(low, fs_hz);
  const double w2 = prewarp(high, fs_hz);
  const double w0sq = w1 * w2;
  const double bw = w2 - w1;
  const double k = 2.0 * fs_hz;
  const double kk = k * k;
  const double a0 = kk + bw * k + w0sq;
  BiquadCoeffs c;
  c.b0 = (kk + w0sq) / a0;
  c.b1 = 2.0 * (w0sq - kk) / a0;
  c.b2 = (kk + w0sq) / a0;
  c.a1 = 2.0 * (w0sq - kk) / a0;
  c.a2 = (kk - bw * k + w0sq) / a0;
  return {c};
}

}  // namespace rtnmf::dsp
