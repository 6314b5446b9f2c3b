// Simulated surface EMG with known muscle synergies, for tests, demos and `rtnmf simulate emg`.
//
// Model (letters: W synergies, channels × K; H activations, K × T):
//   drive_m(t)  = Σ_k W_mk h_k(t)                       muscle drive, smooth and non-negative
//   muscle_m(t) = drive_m(t) · carrier_m(t)             carrier: unit-variance band-limited noise
//   emg_c(t)    = Σ_m C_cm muscle_m(t) + hum + noise    C: cross-talk to neighbouring channels
// so the rectified, low-passed envelope of channel c is proportional to (C W h(t))_c, and NMF of
// the envelopes recovers W up to column scale. Activations are sums of smooth bursts (raised-
// cosine bumps at Poisson times) over a small tonic level. Optionally synergy 0 is replaced by a
// new one from `switch_at_s` on (tests of online tracking).
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <vector>

namespace rtnmf::sim {

struct EmgSimConfig {
  int channels = 16;
  int synergies = 4;
  double sample_rate_hz = 2000;
  double duration_s = 60;
  std::uint64_t seed = 1;
  double envelope_rate_hz = 100;  // rate of the activations written as truth
  double carrier_low_hz = 30;     // carrier band
  double carrier_high_hz = 350;
  double burst_rate_hz = 0.6;    // bursts per second per synergy
  double burst_s = 0.8;          // burst length
  double tonic = 0.05;           // activation floor
  double crosstalk = 0.05;       // fraction of each muscle seen on each neighbouring channel
  double mains_hz = 50;          // 0 = no hum
  double mains_amplitude = 0.1;  // hum amplitude (EMG of a fully active muscle is ~1 rms)
  double noise = 0.02;           // baseline noise standard deviation
  double switch_at_s = -1;       // < 0: no switch
};

struct EmgSimulation {
  Eigen::MatrixXf emg;                     // channels × samples
  Eigen::MatrixXf synergies;               // channels × K, unit ℓ2 columns (before any switch)
  Eigen::MatrixXf synergies_after;         // channels × K after the switch (empty without one)
  Eigen::MatrixXf activations;             // K × envelope samples (h sampled at envelope_rate_hz)
  std::vector<std::string> channel_names;  // "EMG01", ...
  EmgSimConfig config;
};

// Random non-negative synergies (channels × K, unit ℓ2 columns), each concentrated on a few
// muscles, with pairwise cosine below 0.6. Deterministic for the generator state. Allocates.
Eigen::MatrixXf random_synergies(int channels, int k, std::uint64_t seed);

// Simulates a recording. Deterministic for config.seed. Allocates (channels × samples floats).
// Throws std::invalid_argument naming a bad parameter.
EmgSimulation simulate_emg(const EmgSimConfig& config);

// Writes `t,EMG01,...` CSV rows (time in seconds, %.7g values). Throws std::runtime_error
// naming the file on I/O failure.
void write_emg_csv(const std::string& path, const EmgSimulation& sim);

// Writes the truth to HDF5: /truth/synergies (channels × K, attribute channel_names: comma-
// separated), /truth/activations (K × T at envelope_rate_hz), /truth/synergies_after when the
// simulation switched, and the parameters as attributes of /truth (kind = "emg"). Throws
// std::runtime_error on HDF5 failure.
void write_emg_truth(const std::string& path, const EmgSimulation& sim);

}  // namespace rtnmf::sim
