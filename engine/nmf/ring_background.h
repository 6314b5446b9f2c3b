// CNMF-E ring background for one-photon data (Zhou et al., eLife 2018).
//
// Letters: P pixels (row * width + column), K neurons, T frames; Y the movie (P x T), A
// footprints (P x K), C traces (K x T). One-photon background is large, spatially smooth on the
// scale of a few somata and fluctuates locally (out-of-focus fluorescence, neuropil), so it is not
// low rank. The ring model predicts each pixel's background from pixels on a ring around it, far
// enough out (radius ≈ 1.75 soma radii, default_ring_radius) that the ring misses the pixel's
// own neuron:
//   B = b0 1ᵀ + W (Y − A C − b0 1ᵀ),   W: P x P, row p non-zero only on ring(p).
// b0 is the constant baseline. With W known, the traces of one frame y are
//   c = argmin_{c >= 0} ‖(I − W)(y − b0 − A c)‖²,
// a least-squares problem on the "ringed" footprints Ã = (I − W) A and data z = (I − W)(y − b0);
// the fast path solves it exactly (no lag on the previous frame's traces).
#pragma once

#include <Eigen/Core>
#include <Eigen/SparseCore>
#include <cstdint>
#include <utility>
#include <vector>

namespace rtnmf::nmf {

struct RingBackground {
  std::uint32_t height = 0, width = 0;
  int radius = 0;                                     // ring radius, pixels
  Eigen::VectorXf b0;                                 // P constant baseline
  Eigen::SparseMatrix<float, Eigen::RowMajor> w;      // P x P ring weights
  bool active() const { return w.rows() > 0; }
};

// Offsets (dy, dx) of `points` pixels spread evenly on a circle of `radius`, duplicates removed.
// Allocates.
std::vector<std::pair<int, int>> ring_offsets(int radius, int points);

// Fits b0 (the mean over frames) and W (per pixel, ridge least squares of the pixel's centred
// values on its ring pixels' centred values) from X = Y − A C (P x T, columns are frames).
// `ridge` is relative to the mean variance of the ring pixels. Every k-th frame is used, k such
// that about `max_frames` are (b0 from all). `threads` split the pixel rows in
// fixed blocks (the same fit for any count). Allocates O(P · points). Any thread. Throws
// std::invalid_argument when X does not have height * width rows.
RingBackground fit_ring_background(Eigen::Ref<const Eigen::MatrixXf> x, std::uint32_t height,
                                   std::uint32_t width, int radius, int points = 24,
                                   float ridge = 0.01f, int threads = 1, int max_frames = 200);

// Background of one frame given x = y − A c (P): out = b0 + W (x − b0). `scratch` holds P floats.
// Does not allocate. Any thread.
void ring_background_frame(const RingBackground& rb, const float* x, float* out, float* scratch);

// z = (I − W)(y − b0) for one frame (P). `scratch` holds P floats. Does not allocate.
void ring_filter_frame(const RingBackground& rb, const float* y, float* z, float* scratch);

// Ã = (I − W) A. Allocates.
Eigen::SparseMatrix<float> ring_filter_footprints(const RingBackground& rb,
                                                  const Eigen::SparseMatrix<float>& a);

// Default ring radius for a soma radius r: 1.75 r. CNMF-E's ring is 1.5 soma diameters (3 r);
// on simulated one-photon movies (background blobs of 12, 21 and 40 px, 20 somata of radius 7
// on 96² and 128², 120 on 256², radius 5, the soma radius set 30 % too small) every ring from
// 1.6 r to 2 r gave better traces than 3 r, 1.75 r the best F1 (median trace correlation 0.92-0.99
// against 0.75-0.99 at 3 r): the nearer ring follows the local background more closely, and
// an unexplained neuron's activity reaches fewer neighbours' traces through it (Ã = (I − W) A
// couples footprints up to two ring radii apart). A pixel at a soma's centre still has its ring
// 0.75 r outside that soma.
int default_ring_radius(float neuron_radius);

}  // namespace rtnmf::nmf
