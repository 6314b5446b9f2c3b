// Binned spike counts with planted neuronal assemblies (groups of neurons that fire together),
// for tests and `rtnmf simulate emg --kind assemblies`.
//
// Letters: W membership (neurons × A, 1 for members, then unit ℓ2 columns), H assembly
// activations (A × bins). counts(n, t) ~ Poisson(bin_s · (baseline_hz + rate_hz Σ_a M_na h_a(t)))
// with M the 0/1 membership; h_a(t) is 0 or a random strength in [0.5, 1.5] (active with
// probability `active_probability` per bin).
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <string>

namespace rtnmf::sim {

struct AssemblySimConfig {
  int neurons = 100;
  int assemblies = 5;
  int members = 15;  // neurons per assembly (drawn independently: overlaps happen)
  std::int64_t bins = 4000;
  double bin_s = 0.05;
  double baseline_hz = 0.5;
  double rate_hz = 40;  // extra rate of a member while its assembly is active (h = 1)
  double active_probability = 0.08;
  std::uint64_t seed = 1;
};

struct AssemblySimulation {
  Eigen::MatrixXf counts;       // neurons × bins
  Eigen::MatrixXf membership;   // neurons × A, unit ℓ2 columns
  Eigen::MatrixXf activations;  // A × bins
  AssemblySimConfig config;
};

// Deterministic for config.seed. Allocates. Throws std::invalid_argument naming a bad parameter.
AssemblySimulation simulate_assemblies(const AssemblySimConfig& config);

// /truth/synergies (membership), /truth/activations, attributes on /truth (kind = "assemblies",
// bin_s, ...). Throws std::runtime_error on HDF5 failure.
void write_assembly_truth(const std::string& path, const AssemblySimulation& sim);
// Writes the counts as CSV: header `n001,...` (no time column), one row per bin. Throws
// std::runtime_error naming the file on I/O failure.
void write_assembly_csv(const std::string& path, const AssemblySimulation& sim);

}  // namespace rtnmf::sim
