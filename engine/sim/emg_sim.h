// Simulated surface EMG with known muscle synergies, for tests, demos and `rtnmf simulate emg`.
//
// Model (letters: W synergies, channels × K; H activations, K × T):
//   shared_m(t) = Σ_k W_mk h_k(t)                        the synergies' drive of muscle m
//   drive_m(t)  = (shared_m(t) + p_m(t)) · g_m(t)        p: the muscle's private drive; g: slow
//                                                        multiplicative drive noise (mean 1)
//   muscle_m(t) = drive_m(t) · carrier_m(t)              carrier: unit-variance band-limited
//                                                        noise in a band of the muscle's own
//   emg_c(t)    = Σ_m C_cm muscle_m(t) + hum + noise     C: cross-talk to neighbouring channels
// Activations are sums of smooth bursts (raised-cosine bumps at Poisson times) over a small
// tonic level. The shared part is exactly rank K; what makes the envelopes field-typical rather
// than exactly rank K is what real recordings have as well: muscle-specific activity (private
// bursts), trial-to-trial and motor-unit variability of each muscle's drive (g), the random
// envelope of each stochastic carrier (narrower bands fluctuate more), cross-talk mixing
// independent carriers, hum and baseline noise. With the defaults (16 channels, 2–5 synergies,
// 10 s of conditioned envelopes) the planted rank explains 94–97 % of the variance, rank K − 1
// already 90–94 % for K ≥ 4 (so "VAF ≥ 90 %" alone picks too few, as it does on real data),
// the planted rank adds ≥ 2 % and every rank above it ≈ 1 %.
// Optionally synergy 0 is replaced by a new one from `switch_at_s` on (tests of online tracking).
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
  double carrier_low_hz = 30;     // carrier band: each muscle's lies inside it, its lower edge
  double carrier_high_hz = 350;   // at 1..1.5x the low end and its upper at 0.4..1x the high end
  double burst_rate_hz = 0.8;     // bursts per second per synergy
  double burst_s = 0.5;           // burst length
  double tonic = 0.05;            // activation floor
  double crosstalk = 0.1;         // fraction of each muscle seen on each neighbouring channel
  double private_drive = 0.2;     // mean of each muscle's own bursts / mean synergy drive
  double private_rate_hz = 1.0;   // their rate per muscle
  double drive_noise = 0.15;      // standard deviation of the multiplicative drive noise g
  double drive_noise_hz = 2;      // its bandwidth (low-pass cutoff)
  double mains_hz = 50;           // 0 = no hum
  double mains_amplitude = 0.1;   // hum amplitude (EMG of a fully active muscle is ~1 rms)
  double noise = 0.02;            // baseline noise standard deviation
  double switch_at_s = -1;        // < 0: no switch
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
// muscles, with pairwise cosine below 0.5 (when 1000 draws find such a set). Deterministic for the
// generator state. Allocates.
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
