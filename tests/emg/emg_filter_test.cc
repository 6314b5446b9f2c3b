// Filter designs against their specifications: -3 dB points measured from the coefficients and
// from filtered sinusoids, notch depth, envelope of an amplitude-modulated carrier.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <random>
#include <vector>

#include "engine/dsp/biquad.h"
#include "engine/dsp/butterworth.h"
#include "engine/dsp/emg_conditioner.h"
#include "tests/support/alloc_counter.h"

namespace rtnmf::dsp {
namespace {

constexpr double kHalfPower = 0.70710678118654752;

// Steady-state gain of `sections` for a sinusoid at f_hz, measured by filtering it.
double measured_gain(const std::vector<BiquadCoeffs>& sections, double f_hz, double fs_hz) {
  BiquadCascade cascade;
  cascade.configure(sections, 1);
  // Long enough for the slowest section (6 Hz low-pass) to settle, then whole periods.
  const int settle = static_cast<int>(fs_hz * 4.0);
  const int periods = std::max(20, static_cast<int>(std::ceil(2.0 * f_hz)));
  const int n = static_cast<int>(std::round(periods * fs_hz / f_hz));
  double in_sq = 0, out_sq = 0;
  std::vector<float> x(1);
  for (int t = 0; t < settle + n; ++t) {
    const double v = std::sin(2.0 * std::numbers::pi * f_hz * t / fs_hz);
    x[0] = static_cast<float>(v);
    cascade.process(x.data(), 1);
    if (t >= settle) {
      in_sq += v * v;
      out_sq += static_cast<double>(x[0]) * x[0];
    }
  }
  return std::sqrt(out_sq / in_sq);
}

// The frequency in (lo, hi) where the measured sinusoid gain crosses 1/sqrt(2) (bisection on
// the filtered-sinusoid measurement; the gain must be monotone on the bracket).
double measured_crossing(const std::vector<BiquadCoeffs>& sections, double lo, double hi,
                         double fs_hz) {
  const bool rising = measured_gain(sections, lo, fs_hz) < kHalfPower;
  for (int it = 0; it < 18; ++it) {
    const double m = std::sqrt(lo * hi);
    const bool below = measured_gain(sections, m, fs_hz) < kHalfPower;
    if (below == rising) {
      lo = m;
    } else {
      hi = m;
    }
  }
  return std::sqrt(lo * hi);
}

TEST(ButterworthDesign, BandPassHalfPowerPointsMatchTheDesignAtEveryRate) {
  for (double fs : {1000.0, 2000.0, 4000.0}) {
    for (int order : {1, 2, 3, 4}) {
      const double hi_edge = std::min(450.0, 0.45 * fs);
      std::vector<BiquadCoeffs> s = butterworth_bandpass(order, 20.0, hi_edge, fs);
      EXPECT_EQ(s.size(), static_cast<std::size_t>(order));
      std::vector<double> x = cascade_crossings(s, fs, kHalfPower, 1.0, 0.499 * fs);
      ASSERT_EQ(x.size(), 2u) << "fs " << fs << " order " << order;
      EXPECT_NEAR(x[0], 20.0, 0.02 * 20.0) << "fs " << fs << " order " << order;
      EXPECT_NEAR(x[1], hi_edge, 0.02 * hi_edge) << "fs " << fs << " order " << order;
      // Unit gain in the pass band, strong attenuation far outside it.
      EXPECT_NEAR(cascade_magnitude(s, std::sqrt(20.0 * hi_edge), fs), 1.0, 0.02);
      EXPECT_LT(cascade_magnitude(s, 2.0, fs), 0.15);
    }
  }
}

TEST(ButterworthDesign, BandPassHalfPowerPointsHoldForFilteredSinusoids) {
  const double fs = 4000.0;
  std::vector<BiquadCoeffs> s = butterworth_bandpass(2, 20.0, 450.0, fs);
  EXPECT_NEAR(measured_crossing(s, 5.0, 60.0, fs), 20.0, 0.4);
  EXPECT_NEAR(measured_crossing(s, 200.0, 1500.0, fs), 450.0, 9.0);
  EXPECT_NEAR(measured_gain(s, 95.0, fs), 1.0, 0.02);
}

TEST(ButterworthDesign, LowPassAndHighPassHalfPowerPoints) {
  for (double fs : {100.0, 1000.0, 4000.0}) {
    for (int order : {1, 2, 3, 4, 5}) {
      for (double fc : {6.0, 0.2 * fs}) {
        std::vector<BiquadCoeffs> lp = butterworth_lowpass(order, fc, fs);
        EXPECT_EQ(lp.size(), static_cast<std::size_t>((order + 1) / 2));
        std::vector<double> x = cascade_crossings(lp, fs, kHalfPower, 0.01, 0.499 * fs);
        ASSERT_EQ(x.size(), 1u);
        EXPECT_NEAR(x[0], fc, 0.02 * fc) << "low-pass fs " << fs << " order " << order;
        EXPECT_NEAR(cascade_magnitude(lp, 0.0, fs), 1.0, 1e-9);
        std::vector<BiquadCoeffs> hp = butterworth_highpass(order, fc, fs);
        x = cascade_crossings(hp, fs, kHalfPower, 0.01, 0.499 * fs);
        ASSERT_EQ(x.size(), 1u);
        EXPECT_NEAR(x[0], fc, 0.02 * fc) << "high-pass fs " << fs << " order " << order;
      }
    }
  }
}

TEST(ButterworthDesign, EnvelopeLowPassHalfPowerPointHoldsForFilteredSinusoidsInFloat) {
  // 6 Hz at 4 kHz: poles near the unit circle; the cascade must still meet the design.
  const double fs = 4000.0;
  std::vector<BiquadCoeffs> lp = butterworth_lowpass(2, 6.0, fs);
  EXPECT_NEAR(measured_crossing(lp, 1.0, 30.0, fs), 6.0, 0.12);
  EXPECT_NEAR(measured_gain(lp, 0.5, fs), 1.0, 0.01);
}

TEST(NotchDesign, HalfPowerPointsAndDepth) {
  for (double fs : {1000.0, 4000.0}) {
    for (double f0 : {50.0, 60.0}) {
      const double bw = 2.0;
      std::vector<BiquadCoeffs> s = notch(f0, bw, fs);
      auto [lo, hi] = notch_edges(f0, bw, fs);
      std::vector<double> x = cascade_crossings(s, fs, kHalfPower, 1.0, 0.499 * fs);
      ASSERT_EQ(x.size(), 2u);
      EXPECT_NEAR(x[0], lo, 1e-3 * f0);
      EXPECT_NEAR(x[1], hi, 1e-3 * f0);
      EXPECT_NEAR(x[1] - x[0], bw, 0.02 * bw);
      EXPECT_NEAR(std::sqrt(x[0] * x[1]), f0, 0.02 * bw);
      EXPECT_LT(cascade_magnitude(s, f0, fs), 1e-6);
      EXPECT_NEAR(cascade_magnitude(s, 0.0, fs), 1.0, 1e-9);
      EXPECT_NEAR(cascade_magnitude(s, 2.0 * f0, fs), 1.0, 0.01);
      // A filtered mains sinusoid is gone once the notch has settled.
      EXPECT_LT(measured_gain(s, f0, fs), 0.01);
    }
  }
}

TEST(ButterworthDesign, ImpossibleDesignsAreRefusedWithTheParameterNamed) {
  try {
    butterworth_bandpass(2, 20.0, 600.0, 1000.0);
    FAIL() << "no error";
  } catch (const DesignError& e) {
    EXPECT_STREQ(e.what(),
                 "band-pass high edge 600.000000 Hz must lie in (0, Nyquist = 500.000000 Hz)");
  }
  try {
    butterworth_bandpass(2, 450.0, 20.0, 4000.0);
    FAIL() << "no error";
  } catch (const DesignError& e) {
    EXPECT_STREQ(e.what(),
                 "band-pass low edge 450.000000 Hz must be below the high edge 20.000000 Hz");
  }
  EXPECT_THROW(butterworth_lowpass(0, 6.0, 100.0), DesignError);
  EXPECT_THROW(notch(50.0, 60.0, 1000.0), DesignError);
}

EmgConditionerConfig basic_config(int channels, double fs) {
  EmgConditionerConfig c;
  c.channels = channels;
  c.sample_rate_hz = fs;
  return c;
}

TEST(EmgConditioner, EnvelopeFollowsTheModulationOfANoiseCarrier) {
  // Carrier: white noise band-limited to the EMG band; modulation m(t) = 1 + 0.8 sin(2 pi 1 t).
  // The envelope of |x| is proportional to E|carrier| m(t): check its shape after the filter
  // delay, and the decimated output rate.
  const double fs = 2000.0;
  const int nc = 2;
  EmgConditioner cond;
  cond.configure(basic_config(nc, fs));
  ASSERT_EQ(cond.decimation(), 20);
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0.0f, 1.0f);
  BiquadCascade shaper;
  shaper.configure(butterworth_bandpass(2, 40.0, 300.0, fs), nc);
  const int n = static_cast<int>(fs * 12.0);
  Eigen::MatrixXf x(nc, n);
  std::vector<double> m(n);
  for (int t = 0; t < n; ++t) {
    m[t] = 1.0 + 0.8 * std::sin(2.0 * std::numbers::pi * 1.0 * t / fs);
    for (int c = 0; c < nc; ++c) x(c, t) = g(rng);
  }
  shaper.process(x);
  for (int t = 0; t < n; ++t) x.col(t) *= static_cast<float>(m[t]);
  Eigen::MatrixXf env(nc, cond.max_output_cols(n));
  const std::int64_t k = cond.process(x, env);
  ASSERT_EQ(k, n / 20);
  // Compare with the modulation sampled at the same instants, ignoring the first 2 s; allow the
  // low-pass group delay by taking the best lag within 0..100 ms.
  double best = -1;
  for (int lag = 0; lag <= 10; ++lag) {
    std::vector<double> a, b;
    for (int j = 200; j < k; ++j) {
      a.push_back(env(0, j));
      b.push_back(m[(j - lag) * 20 + 19]);
    }
    double ma = 0, mb = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      ma += a[i];
      mb += b[i];
    }
    ma /= a.size();
    mb /= b.size();
    double sab = 0, saa = 0, sbb = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      sab += (a[i] - ma) * (b[i] - mb);
      saa += (a[i] - ma) * (a[i] - ma);
      sbb += (b[i] - mb) * (b[i] - mb);
    }
    best = std::max(best, sab / std::sqrt(saa * sbb));
  }
  EXPECT_GT(best, 0.95);
  // Mean level: E|N(0, s^2)| = s sqrt(2/pi) with s the carrier's std after the band-pass chain.
  EXPECT_GT(env.row(1).tail(k - 200).minCoeff(), 0.0f);
}

TEST(EmgConditioner, EnvelopeOfASinusoidalCarrierIsTwoOverPiTimesItsAmplitude) {
  const double fs = 4000.0;
  EmgConditioner cond;
  cond.configure(basic_config(1, fs));
  const int n = static_cast<int>(fs * 6.0);
  Eigen::MatrixXf x(1, n);
  for (int t = 0; t < n; ++t) {
    x(0, t) = static_cast<float>(3.0 * std::sin(2.0 * std::numbers::pi * 150.0 * t / fs));
  }
  Eigen::MatrixXf env(1, cond.max_output_cols(n));
  const std::int64_t k = cond.process(x, env);
  ASSERT_EQ(k, 600);
  // |3 sin| averages 6/pi; the 300 Hz ripple is attenuated ~ (6/300)^2 by the low-pass.
  for (std::int64_t j = 300; j < k; ++j) EXPECT_NEAR(env(0, j), 6.0 / std::numbers::pi, 0.03);
}

TEST(EmgConditioner, OutputCountDependsOnlyOnTheSampleCountAcrossBlocks) {
  // Blocks of 4 samples at 4 kHz with a 100 Hz envelope: one output every 10th block, the
  // remaining blocks produce none; the concatenation equals one large block.
  const double fs = 4000.0;
  const int nc = 3;
  EmgConditioner a, b;
  a.configure(basic_config(nc, fs));
  b.configure(basic_config(nc, fs));
  std::mt19937 rng(3);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const int n = 4000;
  Eigen::MatrixXf x(nc, n);
  for (int t = 0; t < n; ++t)
    for (int c = 0; c < nc; ++c) x(c, t) = g(rng);
  Eigen::MatrixXf whole(nc, a.max_output_cols(n));
  ASSERT_EQ(a.process(x, whole), 100);
  Eigen::MatrixXf block(nc, 4), out(nc, b.max_output_cols(4));
  ASSERT_EQ(b.max_output_cols(4), 1);
  int produced = 0, empty_blocks = 0;
  for (int t = 0; t < n; t += 4) {
    block = x.middleCols(t, 4);
    const std::int64_t k = b.process(block, out);
    ASSERT_LE(k, 1);
    if (k == 0) ++empty_blocks;
    for (std::int64_t j = 0; j < k; ++j) {
      for (int c = 0; c < nc; ++c) ASSERT_EQ(out(c, j), whole(c, produced));
      ++produced;
    }
  }
  EXPECT_EQ(produced, 100);
  EXPECT_EQ(empty_blocks, 900);
}

TEST(EmgConditioner, InPlaceProcessingMatchesSeparateBuffers) {
  const double fs = 1000.0;
  EmgConditioner a, b;
  EmgConditionerConfig cfg = basic_config(4, fs);
  cfg.notch_hz = 50;
  cfg.envelope_rate_hz = 250;
  a.configure(cfg);
  b.configure(cfg);
  std::mt19937 rng(5);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (int blk = 0; blk < 50; ++blk) {
    Eigen::MatrixXf x(4, 16);
    for (int i = 0; i < x.size(); ++i) x.data()[i] = g(rng);
    Eigen::MatrixXf out(4, 16);
    const std::int64_t ka = a.process(x, out);
    const std::int64_t kb = b.process(x.data(), 16, x.data());
    ASSERT_EQ(ka, 4);
    ASSERT_EQ(kb, 4);
    for (int j = 0; j < 4; ++j)
      for (int c = 0; c < 4; ++c) ASSERT_EQ(out(c, j), x(c, j));
  }
}

TEST(EmgConditioner, NotchRemovesMainsHumFromTheEnvelope) {
  const double fs = 2000.0;
  EmgConditionerConfig cfg = basic_config(1, fs);
  EmgConditioner with, without;
  cfg.notch_hz = 50;
  with.configure(cfg);
  cfg.notch_hz = 0;
  without.configure(cfg);
  const int n = static_cast<int>(fs * 8);
  Eigen::MatrixXf x(1, n);
  for (int t = 0; t < n; ++t)
    x(0, t) = static_cast<float>(std::sin(2 * std::numbers::pi * 50 * t / fs));
  Eigen::MatrixXf y = x;
  Eigen::MatrixXf e1(1, with.max_output_cols(n)), e2(1, without.max_output_cols(n));
  const std::int64_t k = with.process(x, e1);
  without.process(y, e2);
  EXPECT_GT(e2(0, k - 1), 0.5);   // hum passes the band-pass: envelope ~ 2/pi
  EXPECT_LT(e1(0, k - 1), 0.01);  // and is gone with the notch
}

TEST(EmgConditioner, CalibrationMaximumScalesEachChannelToOneAndThenFreezes) {
  const double fs = 1000.0;
  EmgConditionerConfig cfg = basic_config(2, fs);
  cfg.normalize = EmgConditionerConfig::Normalize::kCalibrationMax;
  cfg.calibration_s = 3;
  EmgConditioner cond;
  cond.configure(cfg);
  const int n = static_cast<int>(fs * 6);
  Eigen::MatrixXf x(2, n);
  for (int t = 0; t < n; ++t) {
    const double s = std::sin(2 * std::numbers::pi * 100 * t / fs);
    // Channel 1 is 5 times channel 0 during calibration, then both double.
    const double gain = t < 3 * fs ? 1.0 : 2.0;
    x(0, t) = static_cast<float>(gain * s);
    x(1, t) = static_cast<float>(5 * gain * s);
  }
  Eigen::MatrixXf env(2, cond.max_output_cols(n));
  const std::int64_t k = cond.process(x, env);
  ASSERT_EQ(k, 600);
  EXPECT_TRUE(cond.calibrated());
  EXPECT_NEAR(cond.divisor()[1] / cond.divisor()[0], 5.0, 0.01);
  // Near the end of calibration both channels sit at ~1, afterwards at ~2 (frozen divisor).
  EXPECT_NEAR(env(0, 290), 1.0, 0.05);
  EXPECT_NEAR(env(1, 290), 1.0, 0.05);
  EXPECT_NEAR(env(0, 590), 2.0, 0.1);
  EXPECT_NEAR(env(1, 590), 2.0, 0.1);
}

TEST(EmgConditioner, GivenCalibrationMaximaMustMatchTheChannelCount) {
  EmgConditionerConfig cfg = basic_config(3, 1000.0);
  cfg.normalize = EmgConditionerConfig::Normalize::kCalibrationMax;
  cfg.calibration_max = {1.0f, 2.0f};
  EmgConditioner cond;
  try {
    cond.configure(cfg);
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "calibration_max has 2 values for 3 channels");
  }
  cfg.calibration_max.clear();
  cfg.normalize = EmgConditionerConfig::Normalize::kNone;
  cfg.envelope_rate_hz = 300;
  try {
    cond.configure(cfg);
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "envelope_rate_hz 300 must divide the sample rate 1000 Hz");
  }
}

TEST(EmgConditioner, RunningPercentileTracksAChangingLevel) {
  const double fs = 1000.0;
  EmgConditionerConfig cfg = basic_config(1, fs);
  cfg.normalize = EmgConditionerConfig::Normalize::kRunningPercentile;
  cfg.percentile = 50;
  cfg.percentile_window_s = 2;
  EmgConditioner cond;
  cond.configure(cfg);
  const int n = static_cast<int>(fs * 10);
  Eigen::MatrixXf x(1, n);
  for (int t = 0; t < n; ++t) {
    const double gain = t < 5 * fs ? 1.0 : 10.0;
    x(0, t) = static_cast<float>(gain * std::sin(2 * std::numbers::pi * 100 * t / fs));
  }
  Eigen::MatrixXf env(1, cond.max_output_cols(n));
  const std::int64_t k = cond.process(x, env);
  // A steady level normalises to ~1 both before and (2 s window) after the tenfold step.
  EXPECT_NEAR(env(0, 450), 1.0, 0.03);
  EXPECT_NEAR(env(0, k - 1), 1.0, 0.03);
  EXPECT_NEAR(cond.divisor()[0], 10.0 * 2.0 / std::numbers::pi, 0.2);
}

TEST(EmgConditioner, ProcessDoesNotAllocate) {
  if (!test::allocation_counting_available()) GTEST_SKIP() << "allocation counting unavailable";
  EmgConditionerConfig cfg = basic_config(64, 4000.0);
  cfg.notch_hz = 50;
  cfg.notch_harmonics = 3;
  cfg.normalize = EmgConditionerConfig::Normalize::kRunningPercentile;
  EmgConditioner cond;
  cond.configure(cfg);
  Eigen::MatrixXf x = Eigen::MatrixXf::Random(64, 4);
  Eigen::MatrixXf out(64, 1);
  test::AllocationGuard guard;
  std::int64_t total = 0;
  for (int i = 0; i < 20000; ++i) total += cond.process(x, out);
  EXPECT_EQ(guard.count(), 0u);
  EXPECT_EQ(total, 2000);
}

TEST(SpikeBinner, RectifiesAndSumsAcrossBlockBoundaries) {
  SpikeBinner b;
  b.configure(2, 3, 0.5f);
  Eigen::MatrixXf x(2, 4);
  x << 1, -1, 2, 0.5, 0, 3, 0.25, 1;
  Eigen::MatrixXf out(2, 2);
  ASSERT_EQ(b.process(x.data(), 4, out.data()), 1);
  EXPECT_FLOAT_EQ(out(0, 0), 0.5f + 0 + 1.5f);
  EXPECT_FLOAT_EQ(out(1, 0), 0 + 2.5f + 0);
  // Carry: the 4th sample starts the next bin.
  Eigen::MatrixXf y(2, 2);
  y << 1.5, 0, 0, 0;
  ASSERT_EQ(b.process(y.data(), 2, out.data()), 1);
  EXPECT_FLOAT_EQ(out(0, 0), 0 + 1.0f + 0);
  EXPECT_FLOAT_EQ(out(1, 0), 0.5f + 0 + 0);
}

}  // namespace
}  // namespace rtnmf::dsp
