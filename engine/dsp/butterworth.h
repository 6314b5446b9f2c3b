// Butterworth and notch filter design as biquad sections: analog prototype, prewarped bilinear
// transform, poles paired into second-order sections. Design-time only (allocates); the sections
// run in dsp::BiquadCascade.
#pragma once

#include <stdexcept>
#include <vector>

#include "engine/dsp/biquad.h"

namespace rtnmf::dsp {

// Thrown for impossible designs (edge at or above Nyquist, order 0, low >= high, ...). The
// message names the parameter and its value.
struct DesignError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// Order-N low-pass with its -3 dB point at cutoff_hz (exact after prewarping). Unit gain at DC.
// ceil(N/2) sections. Allocates. Throws DesignError.
std::vector<BiquadCoeffs> butterworth_lowpass(int order, double cutoff_hz, double fs_hz);
// Order-N high-pass, -3 dB at cutoff_hz, unit gain at Nyquist. Allocates. Throws DesignError.
std::vector<BiquadCoeffs> butterworth_highpass(int order, double cutoff_hz, double fs_hz);
// Band-pass from an order-N prototype (a 2N-order filter, N sections) with its -3 dB points at
// low_hz and high_hz (exact after prewarping) and unit gain at the centre. Allocates. Throws
// DesignError.
std::vector<BiquadCoeffs> butterworth_bandpass(int order, double low_hz, double high_hz,
                                               double fs_hz);
// Second-order notch at f0_hz whose -3 dB points lie bandwidth_hz apart (placed so that their
// prewarped geometric mean is the prewarped f0). Unit gain at DC. One section. Allocates (the
// vector). Throws DesignError.
std::vector<BiquadCoeffs> notch(double f0_hz, double bandwidth_hz, double fs_hz);

// The -3 dB points of the notch designed by notch(): {low, high}. Throws DesignError.
std::pair<double, double> notch_edges(double f0_hz, double bandwidth_hz, double fs_hz);

}  // namespace rtnmf::dsp
