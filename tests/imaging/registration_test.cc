// Phase-correlation registration recovers known sub-pixel shifts.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/dsp/registration.h"
#include "tests/support/alloc_counter.h"

namespace rtnmf::dsp {
namespace {

struct Blob {
  float y, x, sigma, amp;
};

std::vector<Blob> random_blobs(int h, int w, int n, std::mt19937& rng) {
  std::uniform_real_distribution<float> uy(0, static_cast<float>(h)), ux(0, static_cast<float>(w)),
      us(1.5f, 4.0f), ua(50, 200);
  std::vector<Blob> b;
  for (int i = 0; i < n; ++i) b.push_back({uy(rng), ux(rng), us(rng), ua(rng)});
  return b;
}

// The scene displaced by (dy, dx): frame(y, x) = scene(y - dy, x - dx), plus noise.
std::vector<float> render(int h, int w, const std::vector<Blob>& blobs, float dy, float dx,
                          float noise, std::mt19937& rng) {
  std::vector<float> f(static_cast<std::size_t>(h) * w, 100.0f);
  std::normal_distribution<float> nd(0, noise);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      float v = 100.0f + 20.0f * std::sin(0.02f * (static_cast<float>(y) - dy));
      for (const Blob& b : blobs) {
        const float ry = static_cast<float>(y) - dy - b.y, rx = static_cast<float>(x) - dx - b.x;
        v += b.amp * std::exp(-(ry * ry + rx * rx) / (2 * b.sigma * b.sigma));
      }
      f[static_cast<std::size_t>(y) * w + x] = v + (noise > 0 ? nd(rng) : 0.0f);
    }
  return f;
}

void check_shifts(int h, int w, float noise, RegistrationOptions opts) {
  std::mt19937 rng(7);
  std::vector<Blob> blobs = random_blobs(h, w, h * w / 300, rng);
  RigidRegistration reg;
  reg.init(h, w, opts);
  reg.set_template(render(h, w, blobs, 0, 0, 0, rng).data());
  const float shifts[][2] = {{0, 0}, {0.3f, -1.7f}, {2.5f, 3.25f}, {-4.6f, 0.1f}, {7.8f, -6.4f},
                             {-0.45f, 0.55f}};
  for (const auto& s : shifts) {
    std::vector<float> f = render(h, w, blobs, s[0], s[1], noise, rng);
    Shift est = reg.estimate(f.data());
    EXPECT_NEAR(est.dy, s[0], 0.2f) << "shift " << s[0] << "," << s[1];
    EXPECT_NEAR(est.dx, s[1], 0.2f) << "shift " << s[0] << "," << s[1];
    EXPECT_GT(est.peak, 0.05f);
  }
}

TEST(RigidRegistration, RecoversSubPixelShiftsWithinTwoTenthsOfAPixel) {
  check_shifts(96, 128, 0.0f, {});
}

TEST(RigidRegistration, RecoversShiftsInNoiseOnACentralCrop) {
  RegistrationOptions o;
  o.max_window = 128;
  check_shifts(160, 200, 10.0f, o);
}

TEST(RigidRegistration, AppliedShiftRealignsTheFrameWithoutAllocating) {
  const int h = 96, w = 80;  // not powers of two: the window is cropped to 64 x 64
  std::mt19937 rng(3);
  std::vector<Blob> blobs = random_blobs(h, w, 20, rng);
  std::vector<float> tmpl = render(h, w, blobs, 0, 0, 0, rng);
  std::vector<float> moved = render(h, w, blobs, 2.4f, -3.6f, 0, rng);
  RigidRegistration reg;
  reg.init(h, w, {});
  reg.set_template(tmpl.data());
  std::vector<float> out(tmpl.size());
  Shift s;
  {
    rtnmf::test::AllocationGuard guard;
    s = reg.estimate(moved.data());
    reg.apply(moved.data(), s, out.data());
    if (rtnmf::test::allocation_counting_available()) {
      EXPECT_EQ(guard.count(), 0u);
    }
  }
  double err_before = 0, err_after = 0, norm = 0;
  for (int y = 8; y < h - 8; ++y)
    for (int x = 8; x < w - 8; ++x) {
      const std::size_t i = static_cast<std::size_t>(y) * w + x;
      err_before += std::pow(moved[i] - tmpl[i], 2);
      err_after += std::pow(out[i] - tmpl[i], 2);
      norm += std::pow(tmpl[i] - 100.0, 2);
    }
  EXPECT_LT(err_after, 0.05 * err_before);
  EXPECT_LT(err_after, 0.02 * norm);
}

// The same scene rendered only near each blob (4 sigma): fast enough for 512 x 512 frames.
std::vector<float> render_local(int h, int w, const std::vector<Blob>& blobs, float dy, float dx,
                                float noise, std::mt19937& rng) {
  std::vector<float> f(static_cast<std::size_t>(h) * w);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      f[static_cast<std::size_t>(y) * w + x] = 100.0f + 20.0f * std::sin(0.02f * (static_cast<float>(y) - dy));
  for (const Blob& b : blobs) {
    const float cy = b.y + dy, cx = b.x + dx, r = 4 * b.sigma;
    for (int y = std::max(0, static_cast<int>(cy - r)); y <= std::min(h - 1, static_cast<int>(cy + r)); ++y)
      for (int x = std::max(0, static_cast<int>(cx - r)); x <= std::min(w - 1, static_cast<int>(cx + r)); ++x) {
        const float ry = static_cast<float>(y) - cy, rx = static_cast<float>(x) - cx;
        f[static_cast<std::size_t>(y) * w + x] += b.amp * std::exp(-(ry * ry + rx * rx) / (2 * b.sigma * b.sigma));
      }
  }
  std::normal_distribution<float> nd(0, noise);
  if (noise > 0)
    for (float& v : f) v += nd(rng);
  return f;
}

// 512 x 512: the default options bin the frame 8 x 8 for a whole-frame estimate (64 x 64 window)
// and refine it on a 128 x 128 full-resolution crop; a 128 x 128 window bins 4 x 4. The template
// is blended from registered frames as the stage does. Shifts larger than the refinement search
// and sub-pixel ones must both come out within 0.2 px, in noise, and apply_in_place must equal
// apply bit for bit.
TEST(RigidRegistration, BinnedEstimateRefinedAtFullResolutionKeepsSubPixelAccuracyAt512) {
  for (const std::uint32_t window : {0u, 128u}) {
    SCOPED_TRACE("coarse window " + std::to_string(window));
    const int n = 512;
    std::mt19937 rng(11);
    std::vector<Blob> blobs = random_blobs(n, n, 500, rng);
    RigidRegistration reg;
    RegistrationOptions o;
    if (window) o.max_window = window;
    reg.init(n, n, o);
    EXPECT_EQ(reg.downsample(), window ? 4u : 8u);
    EXPECT_TRUE(reg.refines());
    reg.set_template(render_local(n, n, blobs, 0, 0, 10.0f, rng).data());
    // A running template as the stage builds it: noisy registered frames blended in.
    for (int i = 1; i < 8; ++i) {
      std::vector<float> f = render_local(n, n, blobs, 0, 0, 10.0f, rng);
      reg.blend_template(f.data(), 1.0f / static_cast<float>(i + 1));
    }
    reg.refresh_template();
    const float shifts[][2] = {{0, 0},        {0.3f, -1.7f}, {2.5f, 3.25f},  {-4.6f, 0.1f},
                               {13.3f, -20.6f}, {-0.45f, 0.55f}, {-31.2f, 7.9f}, {5.05f, -9.95f}};
    std::vector<float> out(static_cast<std::size_t>(n) * n);
    for (const auto& s : shifts) {
      std::vector<float> f = render_local(n, n, blobs, s[0], s[1], 10.0f, rng);
      Shift est;
      {
        rtnmf::test::AllocationGuard guard;
        est = reg.estimate(f.data());
        reg.apply(f.data(), est, out.data());
        reg.apply_in_place(f.data(), est);
        if (rtnmf::test::allocation_counting_available()) {
          EXPECT_EQ(guard.count(), 0u);
        }
      }
      EXPECT_NEAR(est.dy, s[0], 0.2f) << "shift " << s[0] << "," << s[1];
      EXPECT_NEAR(est.dx, s[1], 0.2f) << "shift " << s[0] << "," << s[1];
      EXPECT_GT(est.peak, 0.05f);
      ASSERT_EQ(f, out) << "in place differs from out of place, shift " << s[0] << "," << s[1];
      // The stage's fused call: the same shift and the same corrected frame.
      std::vector<float> g = render_local(n, n, blobs, s[0], s[1], 10.0f, rng);
      const Shift e2 = reg.estimate(g.data());
      std::vector<float> h = g;
      reg.apply_in_place(h.data(), e2);
      const Shift c = reg.correct(g.data(), 0.0f);
      EXPECT_EQ(c.dy, e2.dy);
      EXPECT_EQ(c.dx, e2.dx);
      ASSERT_EQ(g, h) << "correct() differs from estimate + apply_in_place";
    }
  }
}

// The measured FFT plans compiled into engine/dsp/fftw_wisdom.inc are accepted by this FFTW (an
// upgrade rejects them silently and registration runs 1.4 times slower at 512 x 512: regenerate
// the file then), and two registrations planned in one process compute bit-identical shifts.
TEST(RigidRegistration, CompiledInPlansAreAcceptedAndRepeatable) {
  EXPECT_TRUE(registration_wisdom_loaded())
      << "FFTW rejected engine/dsp/fftw_wisdom.inc; regenerate it with "
         "tools/fftw_wisdom/fftw_wisdom_gen";
  const int n = 512;
  std::mt19937 rng(5);
  std::vector<Blob> blobs = random_blobs(n, n, 300, rng);
  const std::vector<float> tmpl = render(n, n, blobs, 0, 0, 0, rng);
  const std::vector<float> f = render(n, n, blobs, 1.35f, -2.6f, 5.0f, rng);
  RigidRegistration a, b;
  a.init(n, n, {});
  a.set_template(tmpl.data());
  b.init(n, n, {});
  b.set_template(tmpl.data());
  const Shift sa = a.estimate(f.data()), sb = b.estimate(f.data());
  EXPECT_EQ(sa.dy, sb.dy);
  EXPECT_EQ(sa.dx, sb.dx);
  EXPECT_EQ(sa.peak, sb.peak);
  EXPECT_NEAR(sa.dy, 1.35f, 0.2f);
  EXPECT_NEAR(sa.dx, -2.6f, 0.2f);
}

// Frames whose sides are not powers of two are registered on all of their pixels (windows of
// 2^a 3^b 5^c pixels): here every structure lies in a band 10-14 px inside the borders, outside
// the central 64 x 64 crop that power-of-two windows used for 96 x 96 frames (which then found
// nothing to register). 90 x 100 windows exercise the factors 3 and 5.
TEST(RigidRegistration, SmallFramesAreRegisteredOnTheirWholeArea) {
  for (const auto& [h, w] : {std::pair{96, 96}, std::pair{90, 100}}) {
    SCOPED_TRACE(std::to_string(h) + " x " + std::to_string(w));
    std::mt19937 rng(17);
    std::uniform_real_distribution<float> band(10, 14), along(10, 80), us(1.5f, 2.5f), ua(50, 200);
    std::vector<Blob> blobs;
    for (int i = 0; i < 40; ++i) {
      const float d = band(rng), a = along(rng);
      switch (i % 4) {
        case 0: blobs.push_back({d, a, us(rng), ua(rng)}); break;
        case 1: blobs.push_back({static_cast<float>(h) - d, a, us(rng), ua(rng)}); break;
        case 2: blobs.push_back({a, d, us(rng), ua(rng)}); break;
        default: blobs.push_back({a, static_cast<float>(w) - d, us(rng), ua(rng)}); break;
      }
    }
    RigidRegistration reg;
    reg.init(h, w, {});
    reg.set_template(render(h, w, blobs, 0, 0, 0, rng).data());
    const float shifts[][2] = {{0.3f, -1.7f}, {2.5f, 3.25f}, {-4.6f, 0.1f}, {-0.45f, 0.55f}};
    for (const auto& s : shifts) {
      std::vector<float> f = render(h, w, blobs, s[0], s[1], 5.0f, rng);
      Shift est;
      {
        rtnmf::test::AllocationGuard guard;
        est = reg.estimate(f.data());
        if (rtnmf::test::allocation_counting_available()) {
          EXPECT_EQ(guard.count(), 0u);
        }
      }
      EXPECT_NEAR(est.dy, s[0], 0.2f) << "shift " << s[0] << "," << s[1];
      EXPECT_NEAR(est.dx, s[1], 0.2f) << "shift " << s[0] << "," << s[1];
    }
  }
}

// start_template: frame 0 is the template (zero shift), the next frames are registered to the
// running mean of those before them, and the template they leave registers later frames.
TEST(RigidRegistration, StartTemplateRegistersTheFirstFramesToTheirRunningMean) {
  const int h = 128, w = 128;
  std::mt19937 rng(23);
  std::vector<Blob> blobs = random_blobs(h, w, 60, rng);
  std::normal_distribution<float> walk(0, 1.0f);
  RigidRegistration reg;
  reg.init(h, w, {});
  float y0 = 0, x0 = 0;
  for (std::uint32_t t = 0; t < 30; ++t) {
    const float dy = t ? walk(rng) : 0, dx = t ? walk(rng) : 0;
    if (t == 0) {
      y0 = dy;
      x0 = dx;
    }
    std::vector<float> f = render(h, w, blobs, dy, dx, 20.0f, rng);
    Shift s;
    {
      rtnmf::test::AllocationGuard guard;
      s = reg.start_template(f.data(), t, 30);
      if (rtnmf::test::allocation_counting_available()) {
        EXPECT_EQ(guard.count(), 0u);
      }
    }
    EXPECT_NEAR(s.dy, dy - y0, 0.2f) << "frame " << t;
    EXPECT_NEAR(s.dx, dx - x0, 0.2f) << "frame " << t;
  }
  for (const auto& s : {std::array<float, 2>{1.3f, -2.2f}, std::array<float, 2>{-3.1f, 0.4f}}) {
    std::vector<float> f = render(h, w, blobs, s[0], s[1], 20.0f, rng);
    const Shift est = reg.estimate(f.data());
    EXPECT_NEAR(est.dy, s[0], 0.2f);
    EXPECT_NEAR(est.dx, s[1], 0.2f);
  }
}

// Bidirectional scanning: the odd rows displaced sideways (the comb). The offset is found in whole
// pixels on the mean of 8 noisy frames, and correcting moves the odd rows back exactly (but for
// the columns it uncovers, which take the edge pixel).
TEST(BidiPhase, EstimatesTheOddRowsOffsetAndMovesThemBack) {
  std::mt19937 rng(11);
  const int h = 96, w = 80;
  const std::vector<Blob> blobs = random_blobs(h, w, h * w / 300, rng);
  const std::vector<float> scene = render(h, w, blobs, 0, 0, 0, rng);
  for (const int offset : {-4, -1, 0, 2, 3, 7}) {
    std::vector<float> f(static_cast<std::size_t>(h) * w, 0.0f);
    for (int k = 0; k < 8; ++k) {
      const std::vector<float> one = render(h, w, blobs, 0, 0, 8.0f, rng);  // noise sd 8, blobs of 50-200
      for (std::size_t i = 0; i < f.size(); ++i) f[i] += one[i] / 8;
    }
    std::vector<float> clean = scene;
    // odd(x) = scene(x - offset): the inverse of the correction.
    correct_bidi_phase(f.data(), h, w, -offset);
    correct_bidi_phase(clean.data(), h, w, -offset);
    EXPECT_EQ(estimate_bidi_phase(f.data(), h, w, 10), offset);
    rtnmf::test::AllocationGuard guard;
    correct_bidi_phase(clean.data(), h, w, offset);
    if (rtnmf::test::allocation_counting_available()) {
      EXPECT_EQ(guard.count(), 0u);
    }
    const int a = std::abs(offset);
    for (int y = 0; y < h; ++y)
      for (int x = a; x < w - a; ++x)
        ASSERT_EQ(clean[static_cast<std::size_t>(y) * w + x], scene[static_cast<std::size_t>(y) * w + x])
            << "offset " << offset << " at " << y << "," << x;
  }
  // Too small to tell: no offset.
  std::vector<float> tiny(3 * 40, 1.0f);
  EXPECT_EQ(estimate_bidi_phase(tiny.data(), 3, 40, 10), 0);
}

TEST(RigidRegistration, WithoutATemplateReturnsZeroShift) {
  RigidRegistration reg;
  reg.init(16, 16, {});
  std::vector<float> f(256, 1.0f);
  Shift s = reg.estimate(f.data());
  EXPECT_EQ(s.dy, 0.0f);
  EXPECT_EQ(s.peak, 0.0f);
}

}  // namespace
}  // namespace rtnmf::dsp
