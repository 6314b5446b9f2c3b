#include "engine/sim/emg_sim.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numbers>
#include <random>
#include <stdexcept>
#include <vector>

#include "engine/dsp/biquad.h"
#include "engine/dsp/butterworth.h"
#include "engine/io/h5.h"

namespace rtnmf::sim {
namespace {

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("simulate emg: " + what);
}

// One burst train: raised-cosine bumps of random amplitude at Poisson onsets.
void add_bursts(std::mt19937_64& rng, double rate_hz, double burst_s, double fs, float* h,
                std::int64_t n) {
  std::exponential_distribution<double> gap(rate_hz);
  std::uniform_real_distribution<double> amp(0.4, 1.0);
  std::uniform_real_distribution<double> len(0.6, 1.4);
  double t = gap(rng);
  const double total = static_cast<double>(n) / fs;
  while (t < total) {
    const double a = amp(rng);
    const double d = burst_s * len(rng);
    const std::int64_t i0 = static_cast<std::int64_t>(t * fs);
    const std::int64_t i1 = std::min<std::int64_t>(n, static_cast<std::int64_t>((t + d) * fs));
    for (std::int64_t i = i0; i < i1; ++i) {
      const double u = (static_cast<double>(i) / fs - t) / d;
      h[i] += static_cast<float>(a * 0.5 * (1.0 - std::cos(2.0 * std::numbers::pi * u)));
    }
    t += d + gap(rng);
  }
}

}  // namespace

Eigen::MatrixXf random_synergies(int channels, int k, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  Eigen::MatrixXf w(channels, k);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    for (int j = 0; j < k; ++j) {
      for (int c = 0; c < channels; ++c) {
        const float v = u(rng);
        // About a third of the muscles carry most of a synergy; the others a little.
        w(c, j) = v > 0.66f ? v * v * 3.0f : 0.05f * v;
      }
      w.col(j) /= w.col(j).norm();
    }
    const Eigen::MatrixXf g = w.transpose() * w;
    float worst = 0;
    for (int a = 0; a < k; ++a)
      for (int b = a + 1; b < k; ++b) worst = std::max(worst, g(a, b));
    if (worst < 0.5f) return w;
  }
  return w;
}

EmgSimulation simulate_emg(const EmgSimConfig& config) {
  require(config.channels >= 1, "channels must be >= 1");
  require(config.synergies >= 1 && config.synergies <= config.channels,
          "synergies must be in 1..channels");
  require(config.sample_rate_hz > 0, "sample rate must be positive");
  require(config.duration_s > 0, "duration must be positive");
  const double ratio = config.sample_rate_hz / config.envelope_rate_hz;
  require(config.envelope_rate_hz > 0 && std::abs(ratio - std::round(ratio)) < 1e-6,
          "envelope rate must divide the sample rate");
  require(config.carrier_high_hz < 0.5 * config.sample_rate_hz,
          "carrier band must lie below Nyquist (raise the sample rate)");
  require(config.private_drive >= 0 && (config.private_drive == 0 || config.private_rate_hz > 0),
          "private drive needs a non-negative level and a positive rate");
  require(config.drive_noise >= 0 &&
              (config.drive_noise == 0 ||
               (config.drive_noise_hz > 0 && config.drive_noise_hz < 0.5 * config.sample_rate_hz)),
          "drive noise needs a non-negative level and a bandwidth below Nyquist");
  const int nc = config.channels;
  const int k = config.synergies;
  const double fs = config.sample_rate_hz;
  const std::int64_t n = static_cast<std::int64_t>(std::llround(config.duration_s * fs));
  const int decim = static_cast<int>(std::lround(ratio));

  EmgSimulation sim;
  sim.config = config;
  std::mt19937_64 rng(config.seed);
  sim.synergies = random_synergies(nc, k, rng());
  const bool switches = config.switch_at_s >= 0 && config.switch_at_s < config.duration_s;
  if (switches) {
    sim.synergies_after = sim.synergies;
    // A new synergy 0, distinct from all the old ones.
    Eigen::MatrixXf fresh = random_synergies(nc, k + 1, rng());
    int best = 0;
    float best_max = 2;
    for (int j = 0; j < k + 1; ++j) {
      const float m = (sim.synergies.transpose() * fresh.col(j)).maxCoeff();
      if (m < best_max) {
        best_max = m;
        best = j;
      }
    }
    sim.synergies_after.col(0) = fresh.col(best);
  }
  for (int c = 0; c < nc; ++c) {
    char name[16];
    std::snprintf(name, sizeof name, "EMG%02d", c + 1);
    sim.channel_names.push_back(name);
  }

  // Activations at the sample rate.
  Eigen::MatrixXf h = Eigen::MatrixXf::Constant(k, n, static_cast<float>(config.tonic));
  {
    Eigen::VectorXf row(n);
    for (int j = 0; j < k; ++j) {
      row.setZero();
      add_bursts(rng, config.burst_rate_hz, config.burst_s, fs, row.data(), n);
      h.row(j) += row.transpose();
    }
  }
  sim.activations.resize(k, n / decim);
  for (std::int64_t i = 0; i < n / decim; ++i)
    sim.activations.col(i) = h.col(i * decim + decim - 1);

  // Shared drive W h, then each muscle's private bursts on top (scaled to the mean shared drive,
  // so that weakly recruited muscles still have activity of their own).
  const std::int64_t switch_at = switches ? static_cast<std::int64_t>(config.switch_at_s * fs) : n;
  Eigen::MatrixXf drive(nc, n);
  for (std::int64_t i = 0; i < n; ++i) {
    const Eigen::MatrixXf& w = i < switch_at ? sim.synergies : sim.synergies_after;
    drive.col(i).noalias() = w * h.col(i);
  }
  std::normal_distribution<float> g(0.0f, 1.0f);
  if (config.private_drive > 0) {
    // Each muscle's bursts are scaled to a mean of private_drive × the mean shared drive.
    const double mean_drive = drive.mean();
    std::vector<float> row(static_cast<std::size_t>(n));
    for (int c = 0; c < nc; ++c) {
      std::fill(row.begin(), row.end(), 0.0f);
      add_bursts(rng, config.private_rate_hz, config.burst_s, fs, row.data(), n);
      double sum = 0;
      for (float v : row) sum += v;
      if (sum <= 0) continue;
      const float level =
          static_cast<float>(config.private_drive * mean_drive * static_cast<double>(n) / sum);
      for (std::int64_t i = 0; i < n; ++i) drive(c, i) += level * row[static_cast<std::size_t>(i)];
    }
  }
  // Multiplicative drive noise: low-passed Gaussian noise, unit variance, g = max(0, 1 + s ξ).
  if (config.drive_noise > 0) {
    dsp::BiquadCascade lp;
    lp.configure(dsp::butterworth_lowpass(2, config.drive_noise_hz, fs), nc);
    Eigen::MatrixXf xi(nc, n);
    for (Eigen::Index i = 0; i < xi.size(); ++i) xi.data()[i] = g(rng);
    Eigen::MatrixXf warm(nc, static_cast<Eigen::Index>(4 * fs / config.drive_noise_hz) + 1);
    for (Eigen::Index i = 0; i < warm.size(); ++i) warm.data()[i] = g(rng);
    lp.process(warm);
    lp.process(xi);
    for (int c = 0; c < nc; ++c) {
      const float sd = std::sqrt(xi.row(c).squaredNorm() / static_cast<float>(n));
      const float s = sd > 0 ? static_cast<float>(config.drive_noise) / sd : 0.0f;
      for (std::int64_t i = 0; i < n; ++i) drive(c, i) *= std::max(0.0f, 1.0f + s * xi(c, i));
    }
  }

  // Carriers: white noise through each muscle's own band (motor-unit action potentials differ in
  // shape between muscles and electrode sites), scaled to unit variance, warmed up on noise so
  // the recording starts in steady state.
  std::uniform_real_distribution<double> low_gain(1.0, 1.5), high_gain(0.4, 1.0);
  Eigen::MatrixXf muscles(nc, n);
  {
    std::vector<float> carrier(static_cast<std::size_t>(n));
    std::vector<float> warm(static_cast<std::size_t>(fs));
    for (int c = 0; c < nc; ++c) {
      const double lo = config.carrier_low_hz * low_gain(rng);
      const double hi = std::max(lo * 1.5, config.carrier_high_hz * high_gain(rng));
      dsp::BiquadCascade band;
      band.configure(dsp::butterworth_bandpass(2, lo, std::min(hi, config.carrier_high_hz), fs), 1);
      for (float& v : warm) v = g(rng);
      band.process(warm.data(), static_cast<std::int64_t>(warm.size()));
      for (float& v : carrier) v = g(rng);
      band.process(carrier.data(), n);
      double var = 0;
      for (float v : carrier) var += static_cast<double>(v) * v;
      const float scale = static_cast<float>(1.0 / std::sqrt(var / static_cast<double>(n)));
      for (std::int64_t i = 0; i < n; ++i)
        muscles(c, i) = carrier[static_cast<std::size_t>(i)] * scale * drive(c, i);
    }
  }
  // Cross-talk to the two neighbouring channels (a ring, like electrodes around a limb).
  sim.emg.resize(nc, n);
  const float x = static_cast<float>(config.crosstalk);
  for (std::int64_t i = 0; i < n; ++i) {
    for (int c = 0; c < nc; ++c) {
      float v = (1.0f - 2.0f * x) * muscles(c, i);
      if (nc > 1) v += x * (muscles((c + 1) % nc, i) + muscles((c + nc - 1) % nc, i));
      sim.emg(c, i) = v;
    }
  }
  // Mains hum (random phase and 0.5..1.5 amplitude per channel) and baseline noise.
  std::uniform_real_distribution<double> phase(0.0, 2.0 * std::numbers::pi);
  std::uniform_real_distribution<double> hum_gain(0.5, 1.5);
  for (int c = 0; c < nc; ++c) {
    const double ph = phase(rng);
    const double a = config.mains_amplitude * hum_gain(rng);
    for (std::int64_t i = 0; i < n; ++i) {
      float v = static_cast<float>(config.noise) * g(rng);
      if (config.mains_hz > 0) {
        v += static_cast<float>(a *
                                std::sin(2.0 * std::numbers::pi * config.mains_hz * i / fs + ph));
      }
      sim.emg(c, i) += v;
    }
  }
  return sim;
}

void write_emg_csv(const std::string& path, const EmgSimulation& sim) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "w"), &std::fclose);
  if (!f) throw std::runtime_error(path + ": cannot create");
  std::fputs("t", f.get());
  for (const std::string& name : sim.channel_names) std::fprintf(f.get(), ",%s", name.c_str());
  std::fputc('\n', f.get());
  const double fs = sim.config.sample_rate_hz;
  for (Eigen::Index i = 0; i < sim.emg.cols(); ++i) {
    std::fprintf(f.get(), "%.7f", static_cast<double>(i) / fs);
    for (Eigen::Index c = 0; c < sim.emg.rows(); ++c) std::fprintf(f.get(), ",%.6g", sim.emg(c, i));
    std::fputc('\n', f.get());
  }
  if (std::ferror(f.get())) throw std::runtime_error(path + ": write error");
}

void write_emg_truth(const std::string& path, const EmgSimulation& sim) {
  io::h5::File f = io::h5::File::create(path);
  f.write_matrix("/truth/synergies", sim.synergies);
  f.write_matrix("/truth/activations", sim.activations);
  if (sim.synergies_after.size() > 0) f.write_matrix("/truth/synergies_after", sim.synergies_after);
  std::string names;
  for (const std::string& n : sim.channel_names) names += (names.empty() ? "" : ",") + n;
  f.set_attr("/truth/synergies", "channel_names", names);
  const EmgSimConfig& c = sim.config;
  f.set_attr("/truth", "kind", std::string("emg"));
  f.set_attr("/truth", "sample_rate_hz", c.sample_rate_hz);
  f.set_attr("/truth", "envelope_rate_hz", c.envelope_rate_hz);
  f.set_attr("/truth", "duration_s", c.duration_s);
  f.set_attr("/truth", "seed", static_cast<std::int64_t>(c.seed));
  f.set_attr("/truth", "crosstalk", c.crosstalk);
  f.set_attr("/truth", "mains_hz", c.mains_hz);
  f.set_attr("/truth", "mains_amplitude", c.mains_amplitude);
  f.set_attr("/truth", "noise", c.noise);
  f.set_attr("/truth", "private_drive", c.private_drive);
  f.set_attr("/truth", "drive_noise", c.drive_noise);
  f.set_attr("/truth", "switch_at_s", c.switch_at_s);
}

}  // namespace rtnmf::sim
