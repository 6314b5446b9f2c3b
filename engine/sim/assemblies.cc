#include "engine/sim/assemblies.h"

#include <cstdio>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#include "engine/io/h5.h"

namespace rtnmf::sim {

AssemblySimulation simulate_assemblies(const AssemblySimConfig& c) {
  auto require = [](bool ok, const char* what) {
    if (!ok) throw std::invalid_argument(std::string("simulate assemblies: ") + what);
  };
  require(c.neurons >= 1, "neurons must be >= 1");
  require(c.assemblies >= 1, "assemblies must be >= 1");
  require(c.members >= 1 && c.members <= c.neurons, "members must be in 1..neurons");
  require(c.bins >= 1, "bins must be >= 1");
  require(c.bin_s > 0, "bin_s must be positive");
  AssemblySimulation sim;
  sim.config = c;
  std::mt19937_64 rng(c.seed);
  Eigen::MatrixXf m = Eigen::MatrixXf::Zero(c.neurons, c.assemblies);
  std::vector<int> order(c.neurons);
  for (int a = 0; a < c.assemblies; ++a) {
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    for (int i = 0; i < c.members; ++i) m(order[i], a) = 1.0f;
  }
  sim.membership = m;
  for (int a = 0; a < c.assemblies; ++a) sim.membership.col(a).normalize();
  std::bernoulli_distribution active(c.active_probability);
  std::uniform_real_distribution<float> strength(0.5f, 1.5f);
  sim.activations = Eigen::MatrixXf::Zero(c.assemblies, c.bins);
  for (std::int64_t t = 0; t < c.bins; ++t)
    for (int a = 0; a < c.assemblies; ++a)
      if (active(rng)) sim.activations(a, t) = strength(rng);
  sim.counts.resize(c.neurons, c.bins);
  Eigen::VectorXf rate(c.neurons);
  for (std::int64_t t = 0; t < c.bins; ++t) {
    rate.noalias() = m * sim.activations.col(t);
    for (int n = 0; n < c.neurons; ++n) {
      std::poisson_distribution<int> p(c.bin_s * (c.baseline_hz + c.rate_hz * rate(n)));
      sim.counts(n, t) = static_cast<float>(p(rng));
    }
  }
  return sim;
}

void write_assembly_truth(const std::string& path, const AssemblySimulation& sim) {
  io::h5::File f = io::h5::File::create(path);
  f.write_matrix("/truth/synergies", sim.membership);
  f.write_matrix("/truth/activations", sim.activations);
  const AssemblySimConfig& c = sim.config;
  f.set_attr("/truth", "kind", std::string("assemblies"));
  f.set_attr("/truth", "bin_s", c.bin_s);
  f.set_attr("/truth", "envelope_rate_hz", 1.0 / c.bin_s);
  f.set_attr("/truth", "baseline_hz", c.baseline_hz);
  f.set_attr("/truth", "rate_hz", c.rate_hz);
  f.set_attr("/truth", "seed", static_cast<std::int64_t>(c.seed));
}

void write_assembly_csv(const std::string& path, const AssemblySimulation& sim) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "w"), &std::fclose);
  if (!f) throw std::runtime_error(path + ": cannot create");
  for (Eigen::Index n = 0; n < sim.counts.rows(); ++n) {
    std::fprintf(f.get(), "%sn%03d", n ? "," : "", static_cast<int>(n + 1));
  }
  std::fputc('\n', f.get());
  for (Eigen::Index t = 0; t < sim.counts.cols(); ++t) {
    for (Eigen::Index n = 0; n < sim.counts.rows(); ++n) {
      std::fprintf(f.get(), "%s%d", n ? "," : "", static_cast<int>(sim.counts(n, t)));
    }
    std::fputc('\n', f.get());
  }
  if (std::ferror(f.get())) throw std::runtime_error(path + ": write error");
}

}  // namespace rtnmf::sim
