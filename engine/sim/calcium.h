// Ground-truth calcium-imaging movies: neurons with soma-shaped footprints, spike trains through
// indicator kinetics, neuropil and a drifting low-rank background, bleaching, shot and read noise,
// rigid motion. Used by `rtnmf simulate calcium`, the accuracy tests and the benchmarks.
//
// Letters: P pixels (row * width + column), K neurons, T frames. Footprints A (P x K, sparse, peak
// 1), Traces C (K x T, calcium in photons/frame above baseline), Spikes S (K x T, counts),
// Background B = b f (P x nb, nb x T), Shifts (T x 2: dy, dx of each frame relative to the scene).
// Frame t (before motion): Y_t = bleach_t * (b f_t + A (f0 + C_t)) + noise.
#pragma once

#include <Eigen/Core>
#include <Eigen/SparseCore>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace rtnmf::sim {

struct CalciumSimOptions {
  std::uint32_t height = 128;
  std::uint32_t width = 128;
  std::uint32_t frames = 1000;
  double frame_rate_hz = 30.0;
  std::uint32_t neurons = 40;
  float neuron_radius = 5.0f;       // soma radius in pixels (mean)
  float radius_jitter = 0.2f;       // relative sd of radius
  float ellipticity = 0.25f;        // max axis ratio deviation
  float nucleus = 0.3f;             // dimming of the nucleus (0 = none; GCaMP excludes nuclei)
  // Irregular outlines: the soma's radius varies with the angle by random harmonics 2-4 of
  // relative sd about this (0 = smooth ellipses; real ROIs: ~0.1-0.3).
  float irregularity = 0.0f;
  // Minimum centre distance in radii: 2 = touching; < 2 lets somata overlap.
  float min_distance = 1.6f;
  float firing_rate_hz = 0.5f;      // mean; each neuron draws its own (log-normal spread)
  float burst_probability = 0.3f;   // a spike brings 1-3 more within a few frames
  float tau_rise_s = 0.05f;         // indicator kinetics (GCaMP6f ~0.05/0.4, GCaMP6s ~0.1/1.2)
  float tau_decay_s = 0.4f;
  float spike_amplitude = 60.0f;    // photons/frame at the footprint peak per spike
  float amplitude_jitter = 0.3f;
  float baseline = 40.0f;           // resting fluorescence of a neuron at its peak pixel
  float background = 100.0f;        // mean background level
  std::uint32_t background_components = 2;
  float neuropil = 0.2f;            // neuropil fluctuation relative to background
  float drift = 0.05f;              // slow background drift (relative)
  // One-photon-like background: > 0 makes every background component after the first a field of
  // a few blobs of this scale (pixels) with its own fluctuation (out-of-focus fluorescence and
  // local neuropil): large, spatially smooth, and of rank background_components (not low rank
  // when that is large). 0 = two-photon background (a vignette and a finer neuropil field).
  float background_scale_px = 0.0f;
  float bleaching_tau_s = 0.0f;     // exponential bleaching time constant (0 = none)
  float read_noise = 5.0f;          // Gaussian noise sd (photons)
  bool shot_noise = true;           // Poisson-like noise: sd = sqrt(signal)
  float motion_px = 0.0f;           // rigid motion: sd of the shift random walk bound (pixels)
  std::uint64_t seed = 1;
};

// A one-photon (miniscope-like) preset on top of `o`: bright, structured background (16 local
// components at 3 soma radii, strong neuropil fluctuation), larger somata, more read noise.
CalciumSimOptions one_photon_options(CalciumSimOptions o);

struct CalciumTruth {
  std::uint32_t height = 0, width = 0;
  double frame_rate_hz = 0;
  Eigen::SparseMatrix<float> footprints;  // P x K
  Eigen::MatrixXf traces;                 // K x T (calcium, photons/frame)
  Eigen::MatrixXf spikes;                 // K x T (counts)
  Eigen::MatrixXf bg_spatial;             // P x nb
  Eigen::MatrixXf bg_temporal;            // nb x T
  Eigen::MatrixXf shifts;                 // T x 2
  Eigen::VectorXf bleach;                 // T
  Eigen::VectorXf f0;                     // K resting levels
  float ar_g = 0;                         // the AR(1) decay per frame of the indicator
};

class CalciumSimulator {
 public:
  // Draws the whole ground truth (footprints, spikes, traces, background, motion). Allocates
  // O(P K_nnz + K T). Throws std::invalid_argument on an impossible configuration.
  explicit CalciumSimulator(const CalciumSimOptions& options);

  // Renders frame t (row-major height x width floats, photons). Deterministic for (seed, t)
  // whatever the order of calls. Does not allocate (scratch sized at construction). One thread.
  void render(std::uint32_t t, float* out);

  const CalciumTruth& truth() const { return truth_; }
  const CalciumSimOptions& options() const { return options_; }

 private:
  CalciumSimOptions options_;
  CalciumTruth truth_;
  Eigen::VectorXf scene_;   // P, scratch
  Eigen::VectorXf moved_;
  Eigen::VectorXf calcium_; // K, scratch
};

// Writes the truth as HDF5: /footprints/{data,indices,indptr,shape} (CSC, P x K), /traces,
// /spikes (K x T), /background/{spatial,temporal}, /motion/shifts (T x 2), attributes height,
// width, frame_rate, kind = "calcium", ar_g. Allocates; throws std::runtime_error naming the file.
void write_calcium_truth(const std::string& path, const CalciumTruth& truth,
                         const CalciumSimOptions& options);
// Reads what write_calcium_truth wrote (also reads rtnmf result files' /footprints, /traces,
// /spikes). Throws std::runtime_error naming the file and dataset.
CalciumTruth read_calcium_truth(const std::string& path);

}  // namespace rtnmf::sim
