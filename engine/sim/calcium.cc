#include "engine/sim/calcium.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "engine/io/h5.h"
#include "engine/io/movie_h5.h"

namespace rtnmf::sim {
namespace {

// Smooth non-negative random field (sum of broad Gaussians), mean 1.
Eigen::VectorXf smooth_field(std::uint32_t h, std::uint32_t w, int blobs, float scale,
                             std::mt19937_64& rng) {
  std::uniform_real_distribution<float> uy(0, static_cast<float>(h)), ux(0, static_cast<float>(w)),
      ua(0.5f, 1.5f);
  Eigen::VectorXf f = Eigen::VectorXf::Constant(static_cast<Eigen::Index>(h) * w, 0.3f);
  for (int b = 0; b < blobs; ++b) {
    const float cy = uy(rng), cx = ux(rng), a = ua(rng);
    for (std::uint32_t y = 0; y < h; ++y)
      for (std::uint32_t x = 0; x < w; ++x) {
        const float dy = static_cast<float>(y) - cy, dx = static_cast<float>(x) - cx;
        f(static_cast<Eigen::Index>(y) * w + x) += a * std::exp(-(dy * dy + dx * dx) / (2 * scale * scale));
      }
  }
  f /= f.mean();
  return f;
}

}  // namespace

CalciumSimOptions one_photon_options(CalciumSimOptions o) {
  o.neuron_radius = 7.0f;
  o.background = 400.0f;
  o.background_components = 16;
  o.background_scale_px = 3.0f * o.neuron_radius;
  o.neuropil = 0.5f;
  o.read_noise = 10.0f;
  o.spike_amplitude = 80.0f;
  return o;
}

CalciumSimulator::CalciumSimulator(const CalciumSimOptions& o) : options_(o) {
  if (o.height < 8 || o.width < 8 || o.frames == 0 || o.frame_rate_hz <= 0 || o.neuron_radius <= 0) {
    throw std::invalid_argument("simulate calcium: need height, width >= 8, frames >= 1, rate > 0, radius > 0");
  }
  std::mt19937_64 rng(o.seed);
  std::normal_distribution<float> nd(0, 1);
  std::uniform_real_distribution<float> u01(0, 1);
  const std::uint32_t H = o.height, W = o.width, T = o.frames;
  const Eigen::Index P = static_cast<Eigen::Index>(H) * W;
  truth_.height = H;
  truth_.width = W;
  truth_.frame_rate_hz = o.frame_rate_hz;

  // Footprints: soft-edged ellipses with a dimmer nucleus, placed with a minimum distance.
  struct Soma {
    float cy, cx, r;
  };
  std::vector<Soma> somata;
  std::vector<Eigen::Triplet<float>> trip;
  const float margin = o.neuron_radius;
  for (std::uint32_t k = 0; k < o.neurons; ++k) {
    Soma s{};
    bool placed = false;
    for (int attempt = 0; attempt < 2000 && !placed; ++attempt) {
      s.r = o.neuron_radius * std::max(0.5f, 1.0f + o.radius_jitter * nd(rng));
      s.cy = margin + u01(rng) * (static_cast<float>(H) - 2 * margin);
      s.cx = margin + u01(rng) * (static_cast<float>(W) - 2 * margin);
      placed = true;
      for (const Soma& q : somata) {
        const float d = std::hypot(s.cy - q.cy, s.cx - q.cx);
        if (d < o.min_distance * 0.5f * (s.r + q.r)) placed = false;
      }
    }
    if (!placed) {
      throw std::invalid_argument("simulate calcium: cannot place " + std::to_string(o.neurons) +
                                  " neurons at this density (placed " + std::to_string(k) + ")");
    }
    somata.push_back(s);
    const float e = o.ellipticity * (2 * u01(rng) - 1);
    const float a = s.r * (1 + e), b = s.r * (1 - e);
    const float th = static_cast<float>(M_PI) * u01(rng);
    const float ct = std::cos(th), st = std::sin(th);
    // Outline harmonics (drawn only when asked for: default movies stay as they were).
    float harm_c[3] = {0, 0, 0}, harm_p[3] = {0, 0, 0};
    if (o.irregularity > 0) {
      for (int m = 0; m < 3; ++m) {
        harm_c[m] = o.irregularity * nd(rng) / static_cast<float>(m + 1);
        harm_p[m] = 2 * static_cast<float>(M_PI) * u01(rng);
      }
    }
    const float reach = 1.0f + std::fabs(harm_c[0]) + std::fabs(harm_c[1]) + std::fabs(harm_c[2]);
    const int ext = static_cast<int>(std::ceil(1.6f * std::max(a, b) * reach));
    for (int y = static_cast<int>(s.cy) - ext; y <= static_cast<int>(s.cy) + ext; ++y) {
      for (int x = static_cast<int>(s.cx) - ext; x <= static_cast<int>(s.cx) + ext; ++x) {
        if (y < 0 || x < 0 || y >= static_cast<int>(H) || x >= static_cast<int>(W)) continue;
        const float dy = static_cast<float>(y) - s.cy, dx = static_cast<float>(x) - s.cx;
        const float u = (ct * dx + st * dy) / a, v = (-st * dx + ct * dy) / b;
        float d = std::sqrt(u * u + v * v);
        if (o.irregularity > 0) {
          const float th2 = std::atan2(v, u);
          float rho = 1.0f;
          for (int m = 0; m < 3; ++m) rho += harm_c[m] * std::cos(static_cast<float>(m + 2) * th2 + harm_p[m]);
          d /= std::max(0.5f, rho);
        }
        float val = 1.0f / (1.0f + std::exp((d - 1.0f) / 0.15f));
        val *= 1.0f - o.nucleus * std::exp(-d * d / (2 * 0.35f * 0.35f));
        if (val > 0.02f) trip.emplace_back(y * static_cast<int>(W) + x, static_cast<int>(k), val);
      }
    }
  }
  truth_.footprints.resize(P, o.neurons);
  truth_.footprints.setFromTriplets(trip.begin(), trip.end());
  for (Eigen::Index k = 0; k < truth_.footprints.outerSize(); ++k) {
    float mx = 0;
    for (Eigen::SparseMatrix<float>::InnerIterator it(truth_.footprints, k); it; ++it) mx = std::max(mx, it.value());
    for (Eigen::SparseMatrix<float>::InnerIterator it(truth_.footprints, k); it; ++it) it.valueRef() /= mx;
  }
  truth_.footprints.makeCompressed();

  // Spikes and calcium (double exponential kinetics, peak-normalised).
  const double dt = 1.0 / o.frame_rate_hz;
  const float gd = static_cast<float>(std::exp(-dt / o.tau_decay_s));
  const float gr = o.tau_rise_s > 0 ? static_cast<float>(std::exp(-dt / o.tau_rise_s)) : 0.0f;
  float peak = 0;
  {
    float d = 1, r = 1;
    for (int t = 0; t < 1000; ++t) {
      peak = std::max(peak, d - r);
      d *= gd;
      r *= gr;
    }
    if (gr == 0) peak = 1;
  }
  truth_.ar_g = gd;
  truth_.spikes = Eigen::MatrixXf::Zero(o.neurons, T);
  truth_.traces = Eigen::MatrixXf::Zero(o.neurons, T);
  truth_.f0.resize(o.neurons);
  std::lognormal_distribution<float> lnd(0.0f, 0.5f);
  for (std::uint32_t k = 0; k < o.neurons; ++k) {
    const float rate = o.firing_rate_hz * lnd(rng);
    const float p = static_cast<float>(std::min(0.5, rate * dt));
    const float amp = o.spike_amplitude * std::max(0.3f, 1.0f + o.amplitude_jitter * nd(rng));
    truth_.f0(k) = o.baseline * std::max(0.3f, 1.0f + 0.3f * nd(rng));
    for (std::uint32_t t = 0; t < T; ++t) {
      if (u01(rng) < p) {
        truth_.spikes(k, t) += 1;
        if (u01(rng) < o.burst_probability) {
          const int extra = 1 + static_cast<int>(u01(rng) * 3);
          for (int e = 0; e < extra; ++e) {
            const std::uint32_t te = t + 1 + static_cast<std::uint32_t>(u01(rng) * 4);
            if (te < T) truth_.spikes(k, te) += 1;
          }
        }
      }
    }
    float d = 0, r = 0;
    for (std::uint32_t t = 0; t < T; ++t) {
      d = gd * d + truth_.spikes(k, t);
      r = gr * r + truth_.spikes(k, t);
      truth_.traces(k, t) = amp * (gr > 0 ? (d - r) / peak : d);
    }
  }

  // Background: a vignette-like smooth field and a neuropil field, slow drift and fluctuations.
  const std::uint32_t nb = std::max<std::uint32_t>(1, o.background_components);
  truth_.bg_spatial.resize(P, nb);
  truth_.bg_temporal.resize(nb, T);
  for (std::uint32_t j = 0; j < nb; ++j) {
    if (j > 0 && o.background_scale_px > 0) {
      truth_.bg_spatial.col(j) = smooth_field(H, W, 3, o.background_scale_px, rng);
    } else {
      truth_.bg_spatial.col(j) = smooth_field(H, W, j == 0 ? 2 : 6,
                                              (j == 0 ? 0.5f : 0.15f) * static_cast<float>(std::max(H, W)), rng);
    }
    // One-photon: the local components share the neuropil level between them.
    const float level = j == 0 ? o.background
                        : o.background_scale_px > 0
                            ? o.background * o.neuropil * 4.0f / static_cast<float>(std::max(1u, nb - 1))
                            : o.background * o.neuropil * 2.0f;
    const float phase = 6.28f * u01(rng);
    float fluct = 0;
    for (std::uint32_t t = 0; t < T; ++t) {
      const float slow = o.drift * std::sin(phase + 6.28f * static_cast<float>(t) / std::max(T, 300u));
      fluct = 0.97f * fluct + 0.243f * nd(rng);  // unit-variance AR(1), ~1 s correlation
      const float f = j == 0 ? level * (1 + slow)
                             : level * std::max(0.05f, 1.0f + o.neuropil * fluct + slow);
      truth_.bg_temporal(j, t) = f;
    }
  }
  // Bleaching and motion.
  truth_.bleach.resize(T);
  truth_.shifts = Eigen::MatrixXf::Zero(T, 2);
  float my = 0, mx = 0;
  for (std::uint32_t t = 0; t < T; ++t) {
    truth_.bleach(t) = o.bleaching_tau_s > 0
                           ? static_cast<float>(std::exp(-static_cast<double>(t) * dt / o.bleaching_tau_s))
                           : 1.0f;
    if (o.motion_px > 0 && t > 0) {
      my = 0.95f * my + o.motion_px * 0.312f * nd(rng);
      mx = 0.95f * mx + o.motion_px * 0.312f * nd(rng);
      truth_.shifts(t, 0) = std::clamp(my, -3 * o.motion_px, 3 * o.motion_px);
      truth_.shifts(t, 1) = std::clamp(mx, -3 * o.motion_px, 3 * o.motion_px);
    }
  }
  scene_.resize(P);
  moved_.resize(P);
  calcium_.resize(o.neurons);
}

void CalciumSimulator::render(std::uint32_t t, float* out) {
  const std::uint32_t H = options_.height, W = options_.width;
  calcium_.noalias() = truth_.f0 + truth_.traces.col(t);
  scene_.noalias() = truth_.bg_spatial * truth_.bg_temporal.col(t);
  scene_.noalias() += truth_.footprints * calcium_;
  scene_ *= truth_.bleach(t);
  const float dy = truth_.shifts(t, 0), dx = truth_.shifts(t, 1);
  // frame(y, x) = scene(y - dy, x - dx) by separable cubic convolution (Keys, a = -0.5: close
  // to a band-limited shift, so registration is not biased by the simulator), borders replicated.
  auto keys = [](float d, float w[4]) {
    // taps at offsets -1, 0, 1, 2 for a fractional position d in [0, 1)
    const float a = -0.5f;
    auto k = [a](float x) {
      x = std::fabs(x);
      if (x <= 1) return (a + 2) * x * x * x - (a + 3) * x * x + 1;
      if (x < 2) return a * x * x * x - 5 * a * x * x + 8 * a * x - 4 * a;
      return 0.0f;
    };
    w[0] = k(1 + d);
    w[1] = k(d);
    w[2] = k(1 - d);
    w[3] = k(2 - d);
  };
  const int iH = static_cast<int>(H), iW = static_cast<int>(W);
  const float fy = std::floor(-dy), fx = std::floor(-dx);
  float wy[4], wx[4];
  keys(-dy - fy, wy);
  keys(-dx - fx, wx);
  const int oy = static_cast<int>(fy), ox = static_cast<int>(fx);
  for (int y = 0; y < iH; ++y) {
    int rows[4];
    for (int i = 0; i < 4; ++i) rows[i] = std::clamp(y + oy - 1 + i, 0, iH - 1);
    for (int x = 0; x < iW; ++x) {
      float acc = 0;
      for (int j = 0; j < 4; ++j) {
        const int cx = std::clamp(x + ox - 1 + j, 0, iW - 1);
        float col = 0;
        for (int i = 0; i < 4; ++i) col += wy[i] * scene_(rows[i] * iW + cx);
        acc += wx[j] * col;
      }
      moved_(y * iW + x) = acc;
    }
  }
  std::mt19937_64 rng(options_.seed * 0x9E3779B97F4A7C15ull + t + 1);
  std::normal_distribution<float> nd(0, 1);
  const Eigen::Index P = static_cast<Eigen::Index>(H) * W;
  for (Eigen::Index p = 0; p < P; ++p) {
    const float v = moved_(p);
    const float sd = std::sqrt((options_.shot_noise ? std::max(v, 0.0f) : 0.0f) +
                               options_.read_noise * options_.read_noise);
    out[p] = v + sd * nd(rng);
  }
}

void write_calcium_truth(const std::string& path, const CalciumTruth& truth,
                         const CalciumSimOptions& o) {
  io::h5::File f = io::h5::File::create(path);
  io::write_csc(f, "/footprints", truth.footprints);
  f.write_matrix("/traces", truth.traces);
  f.write_matrix("/spikes", truth.spikes);
  f.write_matrix("/background/spatial", truth.bg_spatial);
  f.write_matrix("/background/temporal", truth.bg_temporal);
  f.write_matrix("/motion/shifts", truth.shifts);
  f.write_vector("/f0", truth.f0);
  f.write_vector("/bleach", truth.bleach);
  f.set_attr("/", "kind", "calcium_truth");
  f.set_attr("/", "height", static_cast<std::int64_t>(truth.height));
  f.set_attr("/", "width", static_cast<std::int64_t>(truth.width));
  f.set_attr("/", "frame_rate", truth.frame_rate_hz);
  f.set_attr("/", "ar_g", static_cast<double>(truth.ar_g));
  f.set_attr("/", "seed", static_cast<std::int64_t>(o.seed));
  f.set_attr("/", "neurons", static_cast<std::int64_t>(o.neurons));
  f.set_attr("/", "tau_decay_s", static_cast<double>(o.tau_decay_s));
  f.set_attr("/", "tau_rise_s", static_cast<double>(o.tau_rise_s));
  f.set_attr("/", "read_noise", static_cast<double>(o.read_noise));
  f.set_attr("/", "motion_px", static_cast<double>(o.motion_px));
}

CalciumTruth read_calcium_truth(const std::string& path) {
  io::h5::File f = io::h5::File::open(path);
  CalciumTruth t;
  t.footprints = io::read_csc(f, "/footprints");
  t.traces = f.read_matrix<float>("/traces");
  if (f.exists("/spikes")) t.spikes = f.read_matrix<float>("/spikes");
  if (f.exists("/background/spatial")) t.bg_spatial = f.read_matrix<float>("/background/spatial");
  if (f.exists("/background/temporal")) t.bg_temporal = f.read_matrix<float>("/background/temporal");
  if (f.exists("/motion/shifts")) t.shifts = f.read_matrix<float>("/motion/shifts");
  if (f.has_attr("/", "height")) t.height = static_cast<std::uint32_t>(f.attr_int64("/", "height"));
  if (f.has_attr("/", "width")) t.width = static_cast<std::uint32_t>(f.attr_int64("/", "width"));
  if (f.has_attr("/", "frame_rate")) t.frame_rate_hz = f.attr_double("/", "frame_rate");
  if (f.has_attr("/", "ar_g")) t.ar_g = static_cast<float>(f.attr_double("/", "ar_g"));
  return t;
}

}  // namespace rtnmf::sim
