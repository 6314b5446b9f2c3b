// Imaging stages driven directly (start / process / stop): dF/F on a known baseline, motion
// correction recovering simulated shifts, the online CNMF stage without allocation in steady
// state and bit-identical across runs, the imaging_file source's error for a truncated file.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "engine/dsp/registration.h"
#include "engine/io/tiff_writer.h"
#include "engine/runtime/registry.h"
#include "engine/sim/calcium.h"
#include "plugins/imaging/online_cnmf_stage.h"
#include "tests/support/alloc_counter.h"
#include "tests/support/simulated_movie.h"

namespace rtnmf::imaging {
namespace {

std::vector<std::uint32_t> capacities(const StreamSpec& in, const StreamSpec& out) {
  std::vector<std::uint32_t> c;
  for (std::size_t i = 0; i < out.lanes.size(); ++i) c.push_back(out.lanes[i].size);
  if (!c.empty()) c[0] = std::max(c[0], in.rows * in.cols);
  return c;
}

StreamSpec imaging_spec(std::uint32_t h, std::uint32_t w, double rate) {
  StreamSpec s = StreamSpec::make("img", h * w, 1, rate);
  s.height = h;
  s.width = w;
  return s;
}

// Starting `stage` on `in` must fail with a message containing `message`.
void expect_start_refused(Stage& stage, const StreamSpec& in, const std::string& message) {
  try {
    stage.start(in, StageContext{});
    ADD_FAILURE() << "started; expected: " << message;
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
  }
}

// The motion-correction tests' movie: 128 x 128, 50 neurons firing at 1 Hz, 2 px of motion.
sim::CalciumSimOptions moving_128_movie(std::uint32_t frames) {
  sim::CalciumSimOptions so;
  so.height = 128;
  so.width = 128;
  so.frames = frames;
  so.neurons = 50;
  so.motion_px = 2.0f;
  so.firing_rate_hz = 1.0f;
  return so;
}

// A report() scalar of `stage` by name (NaN when it has none).
double scalar(const Stage& stage, const std::string& name) {
  std::vector<std::pair<std::string, double>> scalars;
  stage.report(scalars);
  for (const auto& [k, v] : scalars)
    if (k == name) return v;
  return std::nan("");
}

// The online_cnmf stage as the tests below run it on small movies: initialisation on 200 frames,
// an update every 50, in replay with a model lag of 5 frames. Returns the output spec. With
// `after_frame` the caller calls after_frame() after each frame, as the pipeline does (the
// frame's copy for the slow path is then made there).
std::unique_ptr<Stage> small_cnmf_stage(const sim::CalciumSimOptions& so, StreamSpec& in, StreamSpec& out,
                                        float outlier_ratio = 0.0f, bool after_frame = true) {
  v1::StageConfig cfg;
  cfg.set_type("online_cnmf");
  cfg.mutable_imaging()->set_init_frames(200);
  cfg.mutable_imaging()->set_update_every(50);
  cfg.mutable_imaging()->set_max_components(100);
  if (outlier_ratio != 0) cfg.mutable_imaging()->set_outlier_residual_ratio(outlier_ratio);
  std::unique_ptr<Stage> st = Registry::instance().make_stage(cfg);
  in = imaging_spec(so.height, so.width, so.frame_rate_hz);
  StageContext ctx;
  ctx.mode = RunMode::kReplay;
  ctx.model_lag_frames = 5;
  ctx.frame_valid_until_after_frame = after_frame;
  out = st->start(in, ctx);
  return st;
}

TEST(DffStage, GivesDeltaFOverFOnAKnownBaselineAndRectifies) {
  v1::StageConfig cfg;
  cfg.set_type("dff");
  cfg.mutable_imaging()->set_baseline_s(10);
  std::unique_ptr<Stage> st = Registry::instance().make_stage(cfg);
  StreamSpec in = StreamSpec::make("roi", 2, 1, 30.0);
  StreamSpec out = st->start(in, StageContext{});
  Frame f;
  f.allocate(capacities(in, out));
  // ROI 0: baseline 100 with a transient of +50 at frames 600..609; ROI 1: baseline 200 with a
  // dip (negative dF/F is rectified to 0).
  float peak = 0, neg = 0, quiet = 0;
  for (int t = 0; t < 900; ++t) {
    f.set_shape(2, 1);
    f.data()[0] = 100.0f + (t >= 600 && t < 610 ? 50.0f : 0.0f);
    f.data()[1] = 200.0f - (t >= 600 && t < 610 ? 50.0f : 0.0f);
    st->process(f);
    if (t >= 600 && t < 610) {
      peak = std::max(peak, f.data()[0]);
      neg = std::max(neg, f.data()[1]);
    }
    if (t > 300 && t < 600) quiet = std::max(quiet, f.data()[0]);
  }
  EXPECT_NEAR(peak, 0.5f, 0.02f);  // (150 - 100) / 100, baseline barely moved by 10 frames
  EXPECT_EQ(neg, 0.0f);
  EXPECT_LT(quiet, 1e-4f);
  st->stop();
}

// Frames the source marks bad (a light-stimulation band on rows 0-39) do not move the baseline:
// the unmarked frames' output is the same whatever the marked ones hold.
TEST(DffStage, FramesMarkedBadDoNotMoveTheBaseline) {
  auto run = [](bool light, bool marks) {
    v1::StageConfig cfg;
    cfg.set_type("dff");
    std::unique_ptr<Stage> st = Registry::instance().make_stage(cfg);
    StreamSpec in = StreamSpec::make("roi", 2, 1, 30.0);
    StreamSpec out = st->start(in, StageContext{});
    Frame f;
    f.allocate(capacities(in, out));
    std::vector<float> y;
    for (int t = 0; t < 300; ++t) {
      const bool stim = t % 50 < 5;  // frame 0 too: the baseline starts at the first unmarked frame
      f.set_shape(2, 1);
      f.header.flags = marks && stim ? kFrameMarkedBad : 0u;
      f.data()[0] = 100.0f + (light && stim ? 400.0f : 0.0f) + (t % 7 == 0 ? 30.0f : 0.0f);
      f.data()[1] = 200.0f;
      st->process(f);
      y.push_back(f.data()[0]);
    }
    st->stop();
    return y;
  };
  const std::vector<float> lit = run(true, true), dark = run(false, true), unmarked = run(true, false);
  int differ = 0;
  for (int t = 0; t < 300; ++t) {
    if (t % 50 < 5) continue;
    EXPECT_EQ(lit[static_cast<std::size_t>(t)], dark[static_cast<std::size_t>(t)]) << "frame " << t;
    differ += lit[static_cast<std::size_t>(t)] != unmarked[static_cast<std::size_t>(t)];
  }
  EXPECT_GT(differ, 20);  // unmarked, the light lifts the baseline
  EXPECT_NEAR(lit[7], 0.3f, 1e-3f);  // (130 - 100) / 100
}

TEST(MotionCorrectStage, RecoversSimulatedShiftsAndRecordsThem) {
  const sim::CalciumSimOptions so = moving_128_movie(200);
  sim::CalciumSimulator simulator(so);
  v1::StageConfig cfg;
  cfg.set_type("motion_correct");
  std::unique_ptr<Stage> st = Registry::instance().make_stage(cfg);
  StreamSpec in = imaging_spec(128, 128, 30.0);
  StreamSpec out = st->start(in, StageContext{});
  const int lane = out.lane_index("shifts");
  ASSERT_GE(lane, 0);
  EXPECT_EQ(out.lanes[static_cast<std::size_t>(lane)].dataset, "/motion/shifts");
  Frame f;
  f.allocate(capacities(in, out));
  double err = 0, sq = 0;
  int n = 0;
  std::uint64_t allocs = 0;
  for (std::uint32_t t = 0; t < so.frames; ++t) {
    f.set_shape(128 * 128, 1);
    simulator.render(t, f.data());
    rtnmf::test::AllocationGuard guard;
    st->process(f);
    st->warm();  // as the pipeline does between 30 Hz frames: reads only
    allocs += guard.count();
    if (t >= 30) {
      err = std::max(err, static_cast<double>(std::hypot(f.lane(lane).data[0] - simulator.truth().shifts(t, 0),
                                     f.lane(lane).data[1] - simulator.truth().shifts(t, 1))));
      sq += std::pow(f.lane(lane).data[0] - simulator.truth().shifts(t, 0), 2) +
            std::pow(f.lane(lane).data[1] - simulator.truth().shifts(t, 1), 2);
      ++n;
    }
  }
  if (rtnmf::test::allocation_counting_available()) {
    EXPECT_EQ(allocs, 0u);
  }
  EXPECT_GT(n, 100);
  EXPECT_LE(std::sqrt(sq / n), 0.2) << "rms error over frames 30..199 (pixels)";
  EXPECT_LT(err, 0.5) << "largest error over frames 30..199 (pixels)";
  st->stop();
}

// A small sparse field (64 x 64, 12 neurons, 0.5 px of motion): little static texture, so a
// frame with a neuron firing hard can correlate best with the template shifted to put that
// neuron onto another bright one. The default search (a tenth of the side: 6 px) keeps every
// frame within a pixel of the truth; a quarter of the side (16 px, the old default) does not.
TEST(MotionCorrectStage, SparseSmallFramesDoNotLockOntoADistantPeak) {
  sim::CalciumSimOptions so = rtnmf::test::small_sparse_movie();
  so.motion_px = 0.5f;
  sim::CalciumSimulator simulator(so);
  for (const std::uint32_t max_shift : {0u, 16u}) {
    SCOPED_TRACE("max_shift " + std::to_string(max_shift));
    v1::StageConfig cfg;
    cfg.set_type("motion_correct");
    cfg.mutable_imaging()->set_max_shift(max_shift);
    std::unique_ptr<Stage> st = Registry::instance().make_stage(cfg);
    StreamSpec in = imaging_spec(64, 64, 30.0);
    StreamSpec out = st->start(in, StageContext{});
    const int lane = out.lane_index("shifts");
    Frame f;
    f.allocate(capacities(in, out));
    int off = 0;
    for (std::uint32_t t = 0; t < so.frames; ++t) {
      f.set_shape(64 * 64, 1);
      simulator.render(t, f.data());
      st->process(f);
      const double e = std::hypot(f.lane(lane).data[0] - simulator.truth().shifts(t, 0),
                                  f.lane(lane).data[1] - simulator.truth().shifts(t, 1));
      if (t >= 30 && e > 1.0) ++off;
    }
    if (max_shift == 0)
      EXPECT_EQ(off, 0);
    else
      EXPECT_GT(off, 0);
    st->stop();
  }
}

// Frames the registration cannot be trusted on: frames 100-104 blank (the PMT gated off during
// a light stimulus: an offset and read noise only) and 200-204 with a stimulation artefact (the
// top 40 rows saturated). Their correlation peaks are a fraction of the usual and their estimates
// land anywhere in the search range; the outlier test holds the shift of the frame before
// (within a pixel of the truth, the motion being slow) and keeps them out of the template, so
// the frames after them register as well as before. Without it (ratio < 0) some of them are
// moved pixels off, and the count of held frames is 0.
TEST(MotionCorrectStage, HoldsThePreviousShiftOnFramesItCannotRegister) {
  const sim::CalciumSimOptions so = moving_128_movie(300);
  sim::CalciumSimulator simulator(so);
  auto corrupted = [](std::uint32_t t) { return (t >= 100 && t < 105) || (t >= 200 && t < 205); };
  for (const float ratio : {0.0f, -1.0f}) {
    SCOPED_TRACE("outlier_peak_ratio " + std::to_string(ratio));
    v1::StageConfig cfg;
    cfg.set_type("motion_correct");
    cfg.mutable_imaging()->set_outlier_peak_ratio(ratio);
    std::unique_ptr<Stage> st = Registry::instance().make_stage(cfg);
    StreamSpec in = imaging_spec(128, 128, 30.0);
    StreamSpec out = st->start(in, StageContext{});
    const int lane = out.lane_index("shifts"), qlane = out.lane_index("motion_quality");
    ASSERT_GE(qlane, 0);
    EXPECT_EQ(out.lanes[static_cast<std::size_t>(qlane)].dataset, "/motion/quality");
    Frame f;
    f.allocate(capacities(in, out));
    std::mt19937 rng(7);
    std::normal_distribution<float> noise(0.0f, 5.0f);
    double worst_bad = 0, sq = 0;
    int n = 0, held = 0, held_good = 0;
    for (std::uint32_t t = 0; t < so.frames; ++t) {
      f.set_shape(128 * 128, 1);
      simulator.render(t, f.data());
      if (t >= 100 && t < 105)
        for (int i = 0; i < 128 * 128; ++i) f.data()[i] = 20.0f + noise(rng);
      if (t >= 200 && t < 205)
        for (int i = 0; i < 40 * 128; ++i) f.data()[i] = 4000.0f;
      st->process(f);
      const double e = std::hypot(f.lane(lane).data[0] - simulator.truth().shifts(t, 0),
                                  f.lane(lane).data[1] - simulator.truth().shifts(t, 1));
      const bool h = f.lane(qlane).data[1] != 0.0f;
      held += h;
      if (corrupted(t)) {
        worst_bad = std::max(worst_bad, e);
      } else if (t >= 30) {
        held_good += h;
        sq += e * e;
        ++n;
      }
    }
    std::vector<std::pair<std::string, double>> scalars;
    st->report(scalars);
    const auto it = std::find_if(scalars.begin(), scalars.end(), [](const auto& kv) { return kv.first == "outliers_held"; });
    ASSERT_NE(it, scalars.end());
    EXPECT_EQ(it->second, held);
    EXPECT_EQ(held_good, 0) << "clean frames held";
    EXPECT_LE(std::sqrt(sq / n), 0.2) << "rms error over the clean frames from 30 (pixels)";
    if (ratio == 0.0f) {
      // The blank frames; the artefact ones register where they should (no jump), so they pass.
      EXPECT_EQ(held, 5);
      EXPECT_LT(worst_bad, 3.0) << "largest error on the corrupted frames (pixels)";
    } else {
      EXPECT_EQ(held, 0);
      EXPECT_GT(worst_bad, 4.0);
    }
    st->stop();
  }
  v1::StageConfig bad;
  bad.set_type("motion_correct");
  bad.mutable_imaging()->set_outlier_peak_ratio(1.5f);
  expect_start_refused(*Registry::instance().make_stage(bad), imaging_spec(128, 128, 30.0),
                       "outlier_peak_ratio 1.5 is not below 1");
}

// Frames the source marks bad (kFrameMarkedBad: a stimulation band over rows 0-39, frame 0 and
// frames in the template's start among them) are registered but stay out of the template, the
// outlier test's history and the shift the next frame's jump is measured from: every unmarked
// frame's shift is bit-identical whatever the marked frames hold, and as accurate as on a clean
// movie. Unmarked, the light reaches the template (the shifts of later frames change).
TEST(MotionCorrectStage, FramesMarkedBadStayOutOfTheTemplate) {
  const sim::CalciumSimOptions so = moving_128_movie(300);
  sim::CalciumSimulator simulator(so);
  auto stim = [](std::uint32_t t) { return t == 0 || (t >= 10 && t < 15) || (t >= 100 && t < 108) || (t >= 200 && t < 208); };
  struct Run {
    std::vector<float> dy, dx, held;
    double marked = 0;
  };
  auto run = [&](bool light, bool marks) {
    v1::StageConfig cfg;
    cfg.set_type("motion_correct");
    std::unique_ptr<Stage> st = Registry::instance().make_stage(cfg);
    StreamSpec in = imaging_spec(128, 128, 30.0);
    StreamSpec out = st->start(in, StageContext{});
    const int lane = out.lane_index("shifts"), qlane = out.lane_index("motion_quality");
    Frame f;
    f.allocate(capacities(in, out));
    Run r;
    for (std::uint32_t t = 0; t < so.frames; ++t) {
      f.set_shape(128 * 128, 1);
      f.header.flags = marks && stim(t) ? kFrameMarkedBad : 0u;
      simulator.render(t, f.data());
      if (light && stim(t))
        for (int i = 0; i < 40 * 128; ++i) f.data()[i] += 600.0f;
      st->process(f);
      r.dy.push_back(f.lane(lane).data[0]);
      r.dx.push_back(f.lane(lane).data[1]);
      r.held.push_back(f.lane(qlane).data[1]);
    }
    r.marked = scalar(*st, "frames_marked_bad");
    st->stop();
    return r;
  };
  const Run lit = run(true, true), dark = run(false, true), unmarked = run(true, false);
  EXPECT_EQ(lit.marked, 22.0);
  EXPECT_EQ(unmarked.marked, 0.0);
  // Frame 0 marked, the template starts at frame 1: shifts are relative to its position (the
  // errors' mean, taken out).
  std::vector<double> ey, ex;
  int differ = 0;
  for (std::uint32_t t = 0; t < so.frames; ++t) {
    if (stim(t)) {
      EXPECT_EQ(lit.held[t], 2.0f) << "frame " << t;
      continue;
    }
    EXPECT_EQ(lit.held[t], 0.0f) << "frame " << t;
    EXPECT_EQ(lit.dy[t], dark.dy[t]) << "frame " << t;
    EXPECT_EQ(lit.dx[t], dark.dx[t]) << "frame " << t;
    differ += lit.dy[t] != unmarked.dy[t] || lit.dx[t] != unmarked.dx[t];
    if (t >= 30) {
      ey.push_back(lit.dy[t] - simulator.truth().shifts(t, 0));
      ex.push_back(lit.dx[t] - simulator.truth().shifts(t, 1));
    }
  }
  const double my = std::accumulate(ey.begin(), ey.end(), 0.0) / static_cast<double>(ey.size());
  const double mx = std::accumulate(ex.begin(), ex.end(), 0.0) / static_cast<double>(ex.size());
  double sq = 0;
  for (std::size_t i = 0; i < ey.size(); ++i) sq += std::pow(ey[i] - my, 2) + std::pow(ex[i] - mx, 2);
  EXPECT_LE(std::sqrt(sq / static_cast<double>(ey.size())), 0.2) << "rms error over the unmarked frames from 30 (pixels)";
  EXPECT_LT(std::hypot(my, mx), 1.0) << "the reference frame's offset";
  EXPECT_GT(differ, 100);
}

// Resonant-scan comb: every odd line of the movie displaced 3 px. bidi_phase_auto measures the
// offset on the mean of the first frames and ends at 3, correcting every frame after the
// template frames as bidi_phase: 3 does (shifts within 0.1 px); the shifts follow the truth as
// on a clean movie. Both set, or an offset as wide as the frame, are refused.
TEST(MotionCorrectStage, CorrectsTheBidirectionalScanOffset) {
  sim::CalciumSimOptions so;
  so.height = 128;
  so.width = 128;
  so.frames = 120;
  so.neurons = 50;
  so.motion_px = 1.0f;
  so.firing_rate_hz = 1.0f;
  sim::CalciumSimulator simulator(so);
  auto make = [](int bidi, bool automatic) {
    v1::StageConfig cfg;
    cfg.set_type("motion_correct");
    cfg.set_name("motion");
    cfg.mutable_imaging()->set_bidi_phase(bidi);
    cfg.mutable_imaging()->set_bidi_phase_auto(automatic);
    return Registry::instance().make_stage(cfg);
  };
  std::unique_ptr<Stage> a = make(0, true), b = make(3, false);
  StreamSpec in = imaging_spec(128, 128, 30.0);
  StreamSpec out = a->start(in, StageContext{});
  b->start(in, StageContext{});
  const int lane = out.lane_index("shifts");
  Frame fa, fb;
  fa.allocate(capacities(in, out));
  fb.allocate(capacities(in, out));
  double sq = 0;
  int n = 0;
  for (std::uint32_t t = 0; t < so.frames; ++t) {
    fa.set_shape(128 * 128, 1);
    simulator.render(t, fa.data());
    dsp::correct_bidi_phase(fa.data(), 128, 128, -3);  // the comb: odd(x) = frame(x - 3)
    fb.set_shape(128 * 128, 1);
    std::copy(fa.data(), fa.data() + 128 * 128, fb.data());
    a->process(fa);
    b->process(fb);
    if (t >= 30) {
      // Shifts as with the fixed offset (the templates differ by the first frames).
      const float dy = fa.lane(lane).data[0] - fb.lane(lane).data[0];
      const float dx = fa.lane(lane).data[1] - fb.lane(lane).data[1];
      EXPECT_LT(std::hypot(dy, dx), 0.1f) << "frame " << t;
      sq += std::pow(fa.lane(lane).data[0] - simulator.truth().shifts(t, 0), 2) +
            std::pow(fa.lane(lane).data[1] - simulator.truth().shifts(t, 1), 2);
      ++n;
    }
  }
  std::vector<std::pair<std::string, double>> scalars;
  a->report(scalars);
  EXPECT_NE(std::find(scalars.begin(), scalars.end(), std::make_pair(std::string("bidi_phase_px"), 3.0)),
            scalars.end());
  EXPECT_LE(std::sqrt(sq / n), 0.2) << "rms shift error over frames 30..119 (pixels)";
  a->stop();
  b->stop();
  for (const auto& [bidi, automatic, message] :
       {std::make_tuple(2, true, std::string("bidi_phase and bidi_phase_auto: set one")),
        std::make_tuple(-128, false, std::string("bidi_phase -128 is not smaller than the frame width 128"))}) {
    expect_start_refused(*make(bidi, automatic), in, message);
  }
}

// Runs the online_cnmf stage over a simulated movie; returns the traces lane per frame. With
// after_frame, calls it and warm() after each frame as the pipeline does at 30 Hz (the model for
// the next frame is then taken, and read into the caches before the frame is due; allocations
// counted with process()).
std::vector<std::vector<float>> run_cnmf_stage(const sim::CalciumSimOptions& so,
                                               std::uint64_t* allocations, int* components,
                                               bool after_frame = true) {
  sim::CalciumSimulator simulator(so);
  StreamSpec in, out;
  std::unique_ptr<Stage> st = small_cnmf_stage(so, in, out, 0.0f, after_frame);
  Frame f;
  f.allocate(capacities(in, out));
  std::vector<std::vector<float>> traces;
  std::uint64_t allocs = 0;
  for (std::uint32_t t = 0; t < so.frames; ++t) {
    f.set_shape(so.height * so.width, 1);
    simulator.render(t, f.data());
    rtnmf::test::AllocationGuard guard;
    st->process(f);
    if (after_frame) {
      st->after_frame();
      st->warm();
    }
    if (t >= 400) allocs += guard.count();  // steady state: the model exists and has been swapped
    traces.emplace_back(f.data(), f.data() + f.header.rows);
  }
  st->stop();
  if (allocations) *allocations = allocs;
  if (components) *components = static_cast<OnlineCnmfStage*>(st.get())->components();
  return traces;
}

TEST(OnlineCnmfStage, SteadyStateProcessDoesNotAllocateAndReplaysAreBitIdentical) {
  const sim::CalciumSimOptions so = rtnmf::test::small_sparse_movie(1);
  std::uint64_t allocs = 0;
  int k = 0;
  std::vector<std::vector<float>> a = run_cnmf_stage(so, &allocs, &k);
  EXPECT_GE(k, 9);
  if (rtnmf::test::allocation_counting_available()) {
    EXPECT_EQ(allocs, 0u);
  }
  // Without after_frame() (and warm()) each frame takes its model itself and copies itself into
  // the slow path's ring: the same traces, bit for bit.
  std::vector<std::vector<float>> b = run_cnmf_stage(so, nullptr, nullptr, false);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t t = 0; t < a.size(); ++t) ASSERT_EQ(a[t], b[t]) << "frame " << t;
  // Before the first model (init 200 + lag 5) the traces are empty or zero; afterwards not.
  float late = 0;
  for (std::size_t t = 300; t < a.size(); ++t)
    for (float v : a[t]) late = std::max(late, v);
  EXPECT_GT(late, 0.0f);
}

// A stimulation light leaking into the detector: rows [8, 40) of frames first to first + 5,
// first + 70 to first + 75, ... (8 bursts of 6 frames) brighter by 400 photons.
bool stimulated(std::uint32_t t, std::uint32_t first = 260) { return t >= first && t < first + 560 && (t - first) % 70 < 6; }

struct ExclusionRun {
  std::vector<float> residual;                 // /fit/quality column 0 per frame
  std::vector<std::uint8_t> excluded;          // column 1
  std::vector<std::vector<float>> traces, spikes;
  int components = 0;
  int unmatched = 0;                           // final components no planted neuron matches
  double frames_excluded = -1;                 // report()'s scalar
  double frames_marked_bad = -1;
};

// With `blob`, the stimulated frames get a bright compact spot instead (Gaussian, sd 3 px, in
// another place each burst): what a neuron the model does not have yet looks like, firing.
// With `marks`, the stimulated frames come marked bad by the source (kFrameMarkedBad).
ExclusionRun run_stimulated(float ratio, bool blob = false, std::uint32_t first = 260, bool marks = false) {
  sim::CalciumSimOptions so = rtnmf::test::small_sparse_movie(4);
  so.frames = 900;
  sim::CalciumSimulator simulator(so);
  StreamSpec in, out;
  std::unique_ptr<Stage> st = small_cnmf_stage(so, in, out, ratio);
  const int fit = out.lane_index("fit_quality"), spk = out.lane_index("spikes");
  EXPECT_GE(fit, 0);
  EXPECT_GE(spk, 0);
  Frame f;
  f.allocate(capacities(in, out));
  ExclusionRun r;
  for (std::uint32_t t = 0; t < so.frames; ++t) {
    f.set_shape(so.height * so.width, 1);
    f.header.flags = marks && stimulated(t, first) ? kFrameMarkedBad : 0u;
    simulator.render(t, f.data());
    if (stimulated(t, first) && !blob)
      for (std::uint32_t p = 8 * so.width; p < 40 * so.width; ++p) f.data()[p] += 400.0f;
    if (stimulated(t, first) && blob) {
      constexpr float kSpots[8][2] = {{50, 14}, {12, 50}, {50, 50}, {14, 14}, {32, 32}, {20, 40}, {44, 24}, {8, 30}};
      const float* c = kSpots[(t - first) / 70];
      for (std::uint32_t y = 0; y < so.height; ++y)
        for (std::uint32_t x = 0; x < so.width; ++x)
          f.data()[y * so.width + x] += 1500.0f * std::exp(-(std::pow(y - c[0], 2.0f) + std::pow(x - c[1], 2.0f)) / 18.0f);
    }
    st->process(f);
    st->after_frame();
    r.residual.push_back(f.lane(fit).data[0]);
    r.excluded.push_back(static_cast<std::uint8_t>(f.lane(fit).data[1]));
    r.traces.emplace_back(f.data(), f.data() + f.header.rows);
    r.spikes.emplace_back(f.lane(spk).data, f.lane(spk).data + f.lane(spk).size);
  }
  st->stop();
  const nmf::CnmfModel& m = static_cast<OnlineCnmfStage*>(st.get())->final_model();
  r.components = m.k();
  // A component matches a planted neuron when their footprints' cosine is at least 0.5.
  const Eigen::SparseMatrix<float>& truth = simulator.truth().footprints;
  const Eigen::MatrixXf cos = Eigen::MatrixXf(m.footprints.transpose() * truth);
  for (int k = 0; k < m.k(); ++k) {
    const float nk = m.footprints.col(k).norm();
    float best = 0;
    for (int j = 0; j < truth.cols(); ++j) best = std::max(best, cos(k, j) / (nk * truth.col(j).norm() + 1e-12f));
    r.unmatched += best < 0.5f ? 1 : 0;
  }
  r.frames_excluded = scalar(*st, "frames_excluded");
  r.frames_marked_bad = scalar(*st, "frames_marked_bad");
  return r;
}

TEST(OnlineCnmfStage, FramesTheModelCannotExplainAreExcludedAndTheirTracesHeld) {
  const ExclusionRun on = run_stimulated(0.0f);  // the default ratio, 4
  const ExclusionRun off = run_stimulated(-1.0f);
  // At 64 x 64 the first model reaches the fast path at frame 399 (init 200 + first lag 200);
  // frames 200-398 are tracked by the slow path's catch-up, which excludes its stimulated ones
  // too (counted, not on the lane). Both judge from their first frame on (the initialisation's
  // typical residual).
  int lane_frames = 0, jumps_on = 0, jumps_off = 0, spikes_off = 0;
  for (std::uint32_t t = 0; t < on.excluded.size(); ++t) {
    EXPECT_EQ(on.excluded[t], t >= 399 && stimulated(t) ? 1 : 0) << "frame " << t << " residual " << on.residual[t];
    EXPECT_EQ(off.excluded[t], 0) << "frame " << t;
    if (!stimulated(t)) continue;
    lane_frames += on.excluded[t];
    // Held: no spike, no trace jumping above twice the last two frames' (the AR(2) prediction
    // from them is below that); without the test the light reads as activity.
    for (std::size_t k = 0; k < on.traces[t].size(); ++k) {
      EXPECT_EQ(on.spikes[t][k], 0.0f) << "frame " << t << " component " << k;
      auto before = [&](const ExclusionRun& r) {
        return std::max(k < r.traces[t - 1].size() ? r.traces[t - 1][k] : 0.0f,
                        k < r.traces[t - 2].size() ? r.traces[t - 2][k] : 0.0f);
      };
      jumps_on += on.traces[t][k] > 2 * before(on) + 1.0f ? 1 : 0;
    }
    for (std::size_t k = 0; k < off.traces[t].size(); ++k) {
      const float b = std::max(k < off.traces[t - 1].size() ? off.traces[t - 1][k] : 0.0f,
                               k < off.traces[t - 2].size() ? off.traces[t - 2][k] : 0.0f);
      jumps_off += off.traces[t][k] > 2 * b + 1.0f ? 1 : 0;
      spikes_off += off.spikes[t][k] > 0 ? 1 : 0;
    }
  }
  EXPECT_EQ(lane_frames, 36);  // bursts at 400, 470, 540, 610, 680, 750
  EXPECT_EQ(on.frames_excluded, 48.0);  // and at 260 and 330 in the catch-up
  EXPECT_EQ(off.frames_excluded, 0.0);
  EXPECT_EQ(jumps_on, 0);
  EXPECT_GT(jumps_off, 20);
  EXPECT_GT(spikes_off, 20);
  // The slow path leaves the light out: no component without a planted neuron under it.
  EXPECT_EQ(on.unmatched, 0) << on.components << " components";
  EXPECT_GT(off.unmatched, 0) << off.components << " components";
  // A compact excess (a neuron not in the model, firing) raises the residual as much but is kept.
  const ExclusionRun spot = run_stimulated(0.0f, true);
  std::vector<float> clean;
  for (std::uint32_t t = 399; t < spot.residual.size(); ++t)
    if (!stimulated(t)) clean.push_back(spot.residual[t]);
  std::nth_element(clean.begin(), clean.begin() + static_cast<std::ptrdiff_t>(clean.size() / 2), clean.end());
  const float typical = clean[clean.size() / 2];
  int over = 0;
  for (std::uint32_t t = 399; t < spot.residual.size(); ++t) {
    EXPECT_EQ(spot.excluded[t], 0) << "frame " << t;
    over += stimulated(t) && spot.residual[t] > 4 * typical ? 1 : 0;
  }
  EXPECT_GE(over, 30) << "the spot's frames should be over the ratio (typical residual " << typical << ")";
  EXPECT_EQ(spot.frames_excluded, 0.0);
  // Light during the initialisation's batch (frames 0-199; bursts from frame 50): the batch is
  // screened with its first model and initialised again without those frames.
  const ExclusionRun early = run_stimulated(0.0f, false, 50);
  const ExclusionRun early_off = run_stimulated(-1.0f, false, 50);
  for (std::uint32_t t = 399; t < early.excluded.size(); ++t)
    EXPECT_EQ(early.excluded[t], stimulated(t, 50) ? 1 : 0) << "frame " << t;
  EXPECT_EQ(early.frames_excluded, 48.0);  // 18 in the batch, 12 in the catch-up, 18 on the lane
  EXPECT_EQ(early.unmatched, 0) << early.components << " components";
  EXPECT_GT(early_off.unmatched, 0) << early_off.components << " components";
  v1::StageConfig bad;
  bad.set_type("online_cnmf");
  bad.mutable_imaging()->set_outlier_residual_ratio(0.5f);
  expect_start_refused(*Registry::instance().make_stage(bad), imaging_spec(64, 64, 30),
                       "outlier_residual_ratio 0.5 is not above 1 (a multiple of the median residual; negative: off)");
}

// The same light, marked bad by the source, with the outlier test off: every marked frame is
// excluded (lane value 2) from the first model's frames on, the batch's and the catch-up's
// counted, traces held, no spike, no spurious component; so are the compact spots the test
// itself keeps (a marked frame is excluded whatever its residual). What the marked frames hold
// then changes nothing: the traces of the light run and the spot run are bit-identical.
TEST(OnlineCnmfStage, FramesMarkedBadAreExcludedWhateverTheirResidual) {
  ExclusionRun light;
  for (const std::uint32_t first : {260u, 50u}) {
    SCOPED_TRACE("light from frame " + std::to_string(first));
    const ExclusionRun marked = run_stimulated(-1.0f, false, first, true);
    if (first == 260) light = marked;
    int spikes = 0, jumps = 0;
    for (std::uint32_t t = 399; t < marked.excluded.size(); ++t) {
      EXPECT_EQ(marked.excluded[t], stimulated(t, first) ? 2 : 0) << "frame " << t;
      if (!stimulated(t, first)) continue;
      for (std::size_t k = 0; k < marked.traces[t].size(); ++k) {
        spikes += marked.spikes[t][k] > 0;
        const float before = std::max(k < marked.traces[t - 1].size() ? marked.traces[t - 1][k] : 0.0f,
                                      k < marked.traces[t - 2].size() ? marked.traces[t - 2][k] : 0.0f);
        jumps += marked.traces[t][k] > 2 * before + 1.0f;
      }
    }
    EXPECT_EQ(spikes, 0);
    EXPECT_EQ(jumps, 0);
    EXPECT_EQ(marked.frames_excluded, 48.0);
    EXPECT_EQ(marked.frames_marked_bad, 48.0);
    EXPECT_EQ(marked.unmatched, 0) << marked.components << " components";
  }
  const ExclusionRun spot = run_stimulated(-1.0f, true, 260, true);
  for (std::uint32_t t = 399; t < spot.excluded.size(); ++t)
    EXPECT_EQ(spot.excluded[t], stimulated(t) ? 2 : 0) << "frame " << t;
  EXPECT_EQ(spot.frames_marked_bad, 48.0);
  EXPECT_EQ(spot.traces, light.traces);
  EXPECT_EQ(spot.spikes, light.spikes);
}

TEST(ImagingFileSource, TruncatedTiffEndsTheStreamWithTheFrameIndex) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("rtnmf_src_" + std::to_string(::getpid()) + ".tif")).string();
  {
    io::TiffWriter w(path, 16, 16);
    std::vector<float> fr(256, 7.0f);
    for (int t = 0; t < 8; ++t) w.write_frame(fr.data());
  }
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 8 * 5 + 100);
  std::unique_ptr<Source> src = Registry::instance().make_source("imaging_file");
  v1::SourceConfig cfg;
  cfg.mutable_imaging_file()->set_path(path);
  cfg.set_pacing(v1::MAX);
  StreamSpec spec = src->open(cfg, "img");
  EXPECT_EQ(spec.height, 16u);
  EXPECT_DOUBLE_EQ(spec.sample_rate_hz, 30.0);
  Frame f;
  f.allocate({256});
  int good = 0;
  ReadStatus st;
  while ((st = src->read(f)) == ReadStatus::kFrame) {
    EXPECT_EQ(f.data()[17], 7.0f);
    ++good;
  }
  ASSERT_EQ(st, ReadStatus::kError);
  EXPECT_EQ(src->error().rfind(path + ": frame " + std::to_string(good) + ": ", 0), 0u)
      << src->error();
  EXPECT_GE(good, 4);
  std::filesystem::remove(path);
}

// source.imaging_file.roi reaches the reader: unset, a ScanImage multi-ROI file's ROIs come
// stacked; set, that ROI alone (pages of two 4 x 6 ROIs with 2 flyback lines between).
TEST(ImagingFileSource, RoiSelectsOneScanImageRoi) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("rtnmf_src_mroi_" + std::to_string(::getpid()) + ".tif")).string();
  {
    io::TiffWriteOptions o;
    o.software = "SI.hRoiManager.scanFrameRate = 15\nSI.hRoiManager.mroiEnable = 1\n";
    o.artist = "{\"RoiGroups\": {\"imagingRoiGroup\": {\"rois\": [{\"scanfields\": {\"pixelResolutionXY\": [6, 4]}}, "
               "{\"scanfields\": {\"pixelResolutionXY\": [6, 4]}}]}}}";
    io::TiffWriter w(path, 10, 6, o);
    std::vector<float> page(60);
    for (int i = 0; i < 60; ++i) page[static_cast<std::size_t>(i)] = static_cast<float>(i);
    for (int t = 0; t < 3; ++t) w.write_frame(page.data());
  }
  v1::SourceConfig cfg;
  cfg.mutable_imaging_file()->set_path(path);
  cfg.set_pacing(v1::MAX);
  std::unique_ptr<Source> all = Registry::instance().make_source("imaging_file");
  StreamSpec spec = all->open(cfg, "img");
  EXPECT_EQ(spec.height, 8u);
  EXPECT_EQ(spec.width, 6u);
  cfg.mutable_imaging_file()->set_roi(1);
  std::unique_ptr<Source> one = Registry::instance().make_source("imaging_file");
  spec = one->open(cfg, "img");
  ASSERT_EQ(spec.height, 4u);
  EXPECT_DOUBLE_EQ(spec.sample_rate_hz, 15.0);
  Frame f;
  f.allocate({24});
  ASSERT_EQ(one->read(f), ReadStatus::kFrame);
  for (int i = 0; i < 24; ++i) EXPECT_EQ(f.data()[i], static_cast<float>(36 + i)) << i;  // rows 6-9
  std::filesystem::remove(path);
}

TEST(ImagingFileSource, MissingFileIsAConfigError) {
  std::unique_ptr<Source> src = Registry::instance().make_source("imaging_file");
  v1::SourceConfig cfg;
  cfg.mutable_imaging_file()->set_path("/nonexistent/movie.tif");
  try {
    src->open(cfg, "img");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "source.imaging_file: /nonexistent/movie.tif: no such file");
  }
}

}  // namespace
}  // namespace rtnmf::imaging
