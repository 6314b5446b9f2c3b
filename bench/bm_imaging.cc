// Imaging fast path at the size: 512 x 512 frames, 500 sparse footprints (somata of
// radius 5, ~80 pixels each) and 2 background components. Frames are synthesised from planted
// activations, so the traces' relative error is reported next to the speed. items_per_second =
// frames/s; p50/p99/max per-frame latency in microseconds as counters.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <vector>

#include <unistd.h>

#include "engine/dsp/registration.h"
#include "engine/io/movie.h"
#include "engine/io/tiff_writer.h"
#include "engine/nmf/cnmf.h"
#include "engine/nmf/oasis.h"
#include "engine/nmf/squares.h"

namespace {

using rtnmf::nmf::CnmfModel;
using rtnmf::nmf::CnmfOptions;
using rtnmf::nmf::CnmfTracker;

constexpr int kSide = 512;
constexpr int kNeurons = 500;
constexpr int kFrames = 64;  // distinct frames cycled through

struct Scene {
  CnmfModel model;
  Eigen::MatrixXf frames;  // P x kFrames
  Eigen::MatrixXf truth;   // K x kFrames
};

Scene& scene() {
  static Scene s = [] {
    Scene sc;
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> u(6, kSide - 6);
    std::vector<Eigen::Triplet<float>> trip;
    for (int k = 0; k < kNeurons; ++k) {
      const float cy = u(rng), cx = u(rng);
      for (int y = static_cast<int>(cy) - 6; y <= static_cast<int>(cy) + 6; ++y)
        for (int x = static_cast<int>(cx) - 6; x <= static_cast<int>(cx) + 6; ++x) {
          const float d = std::hypot(y - cy, x - cx);
          if (d <= 5.0f) trip.emplace_back(y * kSide + x, k, std::exp(-d * d / 18.0f));
        }
    }
    const Eigen::Index P = static_cast<Eigen::Index>(kSide) * kSide;
    CnmfModel& m = sc.model;
    m.height = m.width = kSide;
    m.footprints.resize(P, kNeurons);
    m.footprints.setFromTriplets(trip.begin(), trip.end());
    for (int k = 0; k < kNeurons; ++k) m.footprints.col(k) /= m.footprints.col(k).norm();
    m.footprints.makeCompressed();
    m.background.resize(P, 2);
    for (Eigen::Index p = 0; p < P; ++p) {
      const float y = static_cast<float>(p / kSide) / kSide, x = static_cast<float>(p % kSide) / kSide;
      m.background(p, 0) = 1.0f + 0.3f * std::sin(3 * x) * std::cos(2 * y);
      m.background(p, 1) = 0.5f + 0.5f * x * y;
    }
    m.g = Eigen::VectorXf::Constant(kNeurons, 0.92f);
    m.s_min = Eigen::VectorXf::Constant(kNeurons, 1.0f);
    m.baseline = Eigen::VectorXf::Constant(kNeurons, 5.0f);
    m.noise = Eigen::VectorXf::Constant(kNeurons, 1.0f);
    for (int k = 0; k < kNeurons; ++k) {
      m.ids.push_back(static_cast<std::uint64_t>(k));
      m.slots.push_back(k);
    }
    m.next_id = m.next_slot = kNeurons;
    m.finalize();
    // Frames: sparse activity (5% of neurons in a transient) + background + noise.
    std::bernoulli_distribution active(0.05);
    std::normal_distribution<float> noise(0, 1.0f);
    sc.truth.resize(kNeurons, kFrames);
    sc.frames.resize(P, kFrames);
    for (int t = 0; t < kFrames; ++t) {
      for (int k = 0; k < kNeurons; ++k) sc.truth(k, t) = 5.0f + (active(rng) ? 40.0f : 0.0f);
      Eigen::Vector2f f(100.0f, 20.0f);
      sc.frames.col(t) = m.footprints * sc.truth.col(t) + m.background * f;
      for (Eigen::Index p = 0; p < P; ++p) sc.frames(p, t) += noise(rng);
    }
    return sc;
  }();
  return s;
}

void report_latency(benchmark::State& state, std::vector<double>& us) {
  std::sort(us.begin(), us.end());
  if (us.empty()) return;
  state.counters["p50_us"] = us[us.size() / 2];
  state.counters["p99_us"] = us[std::min(us.size() - 1, us.size() * 99 / 100)];
  state.counters["max_us"] = us.back();
  state.SetItemsProcessed(state.iterations());
}

// The fast path of a model of the scene's size: 512×512, kNeurons footprints, 2 background
// components. The model must outlive the tracker.
void init_tracker(CnmfTracker& tracker, const CnmfModel& model) {
  CnmfOptions o;
  o.height = o.width = kSide;
  o.max_components = kNeurons;
  tracker.init(o, 2);
  tracker.set_model(&model);
}

// Fast path alone: Aᵀy and bᵀy, warm HALS on the Gram of [A b], OASIS, baselines.
// Arg 0 `ar`: the deconvolution's order (1, or 2 with the calcium-2p default kinetics, rise
// 0.05 s and decay 0.4 s at 30 Hz). Arg 1 `cold`: 1 evicts the caches before every frame (64 MiB
// written, untimed), as at 30 Hz when the slow path runs on the other core between frames. Each
// frame's squared norm is given, as the online CNMF stage computes it when it copies the frame
// into the slow path's ring at once (copy_sum_squares: direct callers); in a pipeline the copy
// waits until the frame has left and the tracker sums it itself (BM_ImagingChain_Frame).
void BM_CnmfTracker_Frame(benchmark::State& state) {
  const int ar = static_cast<int>(state.range(0));
  const bool cold = state.range(1) != 0;
  Scene& sc = scene();
  CnmfModel model = sc.model;
  if (ar == 2) {
    const Eigen::Vector2f g = rtnmf::nmf::ar2_from_kinetics(30.0, 0.05, 0.4);
    model.g.setConstant(g(0));
    model.g2 = Eigen::VectorXf::Constant(kNeurons, g(1));
  }
  CnmfTracker tracker;
  init_tracker(tracker, model);
  std::vector<double> squares(kFrames);
  for (int f = 0; f < kFrames; ++f)
    squares[static_cast<std::size_t>(f)] = rtnmf::nmf::sum_squares(sc.frames.col(f).data(), static_cast<std::size_t>(sc.frames.rows()));
  std::vector<char> evict(cold ? std::size_t{64} << 20 : 0);
  std::vector<double> us;
  us.reserve(1 << 16);
  double err = 0, norm = 0;
  int t = 0;
  for (auto _ : state) {
    if (cold) {
      state.PauseTiming();
      for (std::size_t i = 0; i < evict.size(); i += 64) evict[i] = static_cast<char>(evict[i] + 1);
      benchmark::DoNotOptimize(evict.data());
      state.ResumeTiming();
    }
    const auto t0 = std::chrono::steady_clock::now();
    tracker.process(sc.frames.col(t % kFrames).data(), squares[static_cast<std::size_t>(t % kFrames)]);
    const auto t1 = std::chrono::steady_clock::now();
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    const Eigen::VectorXf& c = tracker.output().activation;
    err += (c.head(kNeurons) - sc.truth.col(t % kFrames)).squaredNorm();
    norm += sc.truth.col(t % kFrames).squaredNorm();
    ++t;
  }
  report_latency(state, us);
  state.counters["trace_rel_err"] = std::sqrt(err / norm);
}
BENCHMARK(BM_CnmfTracker_Frame)
    ->ArgNames({"ar", "cold"})
    ->Args({1, 0})
    ->Args({2, 0})
    ->Args({1, 1})
    ->Args({2, 1})
    ->Unit(benchmark::kMicrosecond)
    ->MinTime(3.0);

// Motion correction at 512 x 512, what the stage does per frame: RigidRegistration::correct()
// (estimate, shift the frame in place, blend it into the running template). Arg = coarse window
// in binned pixels: 64 bins the frame 8 x 8 and refines on a 128 x 128 full-resolution crop (the
// default), 128 bins 4 x 4 (the default until session 13), 256 bins 2 x 2 (+ refinement), 512 is
// one full-resolution 512 x 512 correlation (the first version's cost). Each iteration first
// copies a fresh frame (untimed). Counter `bin` = binning.
void BM_Registration_Frame(benchmark::State& state) {
  Scene& sc = scene();
  rtnmf::dsp::RigidRegistration reg;
  rtnmf::dsp::RegistrationOptions o;
  o.max_window = static_cast<std::uint32_t>(state.range(0));
  reg.init(kSide, kSide, o);
  reg.set_template(sc.frames.col(0).data());
  std::vector<float> work(static_cast<std::size_t>(kSide) * kSide);
  std::vector<double> us;
  int t = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const float* f = sc.frames.col(t++ % kFrames).data();
    std::copy(f, f + work.size(), work.begin());
    state.ResumeTiming();
    const auto t0 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(reg.correct(work.data(), 0.01f));
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  report_latency(state, us);
  state.counters["bin"] = reg.downsample();
}
BENCHMARK(BM_Registration_Frame)->Arg(64)->Arg(128)->Arg(256)->Arg(512)->Unit(benchmark::kMicrosecond);

// Whole per-frame chain of calcium-2p on one core: registration (default options) and the fast
// path (latency percentiles), then the online CNMF stage's copy of the frame into the slow path's
// ring, which a pipeline makes after the frame has left (in the iteration time only).
void BM_ImagingChain_Frame(benchmark::State& state) {
  Scene& sc = scene();
  CnmfTracker tracker;
  init_tracker(tracker, sc.model);
  rtnmf::dsp::RigidRegistration reg;
  reg.init(kSide, kSide, {});
  reg.set_template(sc.frames.col(0).data());
  std::vector<float> work(static_cast<std::size_t>(kSide) * kSide);
  Eigen::MatrixXf ring(static_cast<Eigen::Index>(work.size()), 16);  // 16 MiB: not in the caches
  std::vector<double> us;
  int t = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const float* f = sc.frames.col(t % kFrames).data();
    std::copy(f, f + work.size(), work.begin());
    state.ResumeTiming();
    const auto t0 = std::chrono::steady_clock::now();
    reg.correct(work.data(), 0.01f);
    tracker.process(work.data());  // sums the frame's squared norm itself, as in a pipeline
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    // The copy into the slow path's ring, after the frame has left (Stage::after_frame): in the
    // iteration's time, not in the latency reported.
    rtnmf::nmf::copy_sum_squares(ring.col(t++ % 16).data(), work.data(), work.size());
  }
  report_latency(state, us);
}
BENCHMARK(BM_ImagingChain_Frame)->Unit(benchmark::kMicrosecond)->MinTime(3.0);

// The source's per-frame cost on the replay path: TIFF frame -> float, 512 x 512 uint16, one
// strip per page as ScanImage and the simulator write them, the file in the page cache (written
// just before; /tmp). Arg = frames in the file (the directory walk at open is outside the loop).
void BM_TiffMovie_ReadFrame(benchmark::State& state) {
  const int frames = static_cast<int>(state.range(0));
  const std::string path = "/tmp/rtnmf_bm_read_" + std::to_string(::getpid()) + ".tif";
  Scene& sc = scene();
  {
    rtnmf::io::TiffWriter w(path, kSide, kSide);
    for (int t = 0; t < frames; ++t) w.write_frame(sc.frames.col(t % kFrames).data());
  }
  auto movie = rtnmf::io::open_movie(path);
  std::vector<float> out(static_cast<std::size_t>(kSide) * kSide);
  std::vector<double> us;
  std::int64_t t = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    movie->read_frame(t++ % frames, out.data());
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    benchmark::DoNotOptimize(out.data());
  }
  report_latency(state, us);
  movie.reset();
  std::remove(path.c_str());
}
BENCHMARK(BM_TiffMovie_ReadFrame)->Arg(256)->Unit(benchmark::kMicrosecond)->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
