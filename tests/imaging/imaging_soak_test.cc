// Long runs (label soak; RTNMF_SOAK_SCALE multiplies their length): the online_cnmf stage's
// memory stays flat over a long stream, and the accuracy targets hold over several seeds of the
// hard movie.
#include <algorithm>
#include <cstdint>
#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "engine/io/h5.h"
#include "engine/io/movie_h5.h"
#include "engine/runtime/replay.h"
#include "engine/runtime/registry.h"
#include "engine/sim/calcium.h"
#include "engine/sim/score_imaging.h"
#include "tests/support/scratch.h"
#include "tests/support/simulated_movie.h"
#include "tests/support/soak.h"

namespace rtnmf {
namespace {

using rtnmf::test::soak_scale;

std::size_t heap_in_use() { return mallinfo2().uordblks; }

// Resident set size from /proc/self/statm (pages -> bytes); 0 if unreadable.
std::size_t rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  const int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * 4096ul : 0;
}

TEST(ImagingSoak, OnlineCnmfStageMemoryIsFlatOverALongStream) {
  sim::CalciumSimOptions so;
  so.height = 64;
  so.width = 64;
  so.frames = 600;  // the simulator's truth is K x frames: frames repeat cyclically below
  so.neurons = 12;
  so.firing_rate_hz = 1.0f;
  sim::CalciumSimulator simulator(so);
  v1::StageConfig cfg;
  cfg.set_type("online_cnmf");
  cfg.mutable_imaging()->set_init_frames(200);
  cfg.mutable_imaging()->set_update_every(50);
  std::unique_ptr<Stage> st = Registry::instance().make_stage(cfg);
  StreamSpec in = StreamSpec::make("img", 64 * 64, 1, 30.0);
  in.height = in.width = 64;
  StageContext ctx;
  ctx.mode = RunMode::kReplay;
  ctx.model_lag_frames = 5;
  StreamSpec out = st->start(in, ctx);
  Frame f;
  std::vector<std::uint32_t> caps;
  for (const LaneSpec& l : out.lanes) caps.push_back(l.size);
  caps[0] = std::max<std::uint32_t>(caps[0], 64 * 64);
  f.allocate(caps);
  // At least 4000 frames even in the short CI form: the first heap sample is taken at 2000.
  const std::uint64_t total =
      std::max<std::uint64_t>(4000, static_cast<std::uint64_t>(30000 * soak_scale()));
  // The slow path allocates while it updates, so single heap samples jitter by megabytes; a leak
  // shows as a rising floor. Compare the lowest sample of the first and the second half.
  std::size_t at_start = SIZE_MAX, at_end = SIZE_MAX;
  std::size_t rss_start = SIZE_MAX, rss_end = SIZE_MAX;
  for (std::uint64_t t = 0; t < total; ++t) {
    f.set_shape(64 * 64, 1);
    simulator.render(static_cast<std::uint32_t>(t % so.frames), f.data());
    st->process(f);
    if (t >= 2000 && t % 100 == 0) {
      std::size_t& floor = (t < 2000 + (total - 2000) / 2) ? at_start : at_end;
      floor = std::min(floor, heap_in_use());
      std::size_t& rss = (t < 2000 + (total - 2000) / 2) ? rss_start : rss_end;
      rss = std::min(rss, rss_bytes());
    }
  }
  st->stop();
  std::printf("heap floor after 2000 frames %zu bytes, in the second half (to %llu frames) %zu "
              "bytes\n", at_start, static_cast<unsigned long long>(total), at_end);
  std::printf("RSS floor after 2000 frames %zu bytes, in the second half %zu bytes\n", rss_start,
              rss_end);
  // Flat: at most 1 MB of drift over the run (no T-long arrays anywhere); the resident set (what
  // the allocator keeps from the system as well) within 4 MB.
  EXPECT_LT(static_cast<double>(at_end), static_cast<double>(at_start) + 1e6);
  EXPECT_LT(static_cast<double>(rss_end), static_cast<double>(rss_start) + 4e6);
}

// A simulated movie end to end, as a lab runs it: written as a TIFF, replayed through the
// built-in pipeline with its defaults (`rtnmf replay MOVIE --pipeline P --out R.h5`: reader,
// motion correction, online CNMF with its model lags, new-neuron searches and result file), the
// result file scored against the truth over every frame (`rtnmf score --truth T R.h5`).
sim::ImagingScore run_replayed(const sim::CalciumSimOptions& so, const std::string& pipeline) {
  sim::CalciumSimulator simulator(so);
  const std::string movie = test::scratch_path("soak_movie.tif"), out = test::scratch_path("soak_result.h5");
  test::write_simulated_movie(simulator, movie);
  ReplayRequest rq;
  rq.pipeline = pipeline;
  rq.input = movie;
  rq.out = out;
  rq.publish = false;
  const ReplayResult res = replay_to_file(rq);
  EXPECT_TRUE(res.errors.empty());
  const io::h5::File f = io::h5::File::open(out);
  const sim::CalciumTruth& truth = simulator.truth();
  return sim::score_imaging(truth.footprints, truth.traces, truth.spikes, io::read_csc(f, "/footprints"),
                            f.read_matrix<float>("/traces"), f.read_matrix<float>("/spikes"));
}

// Per seed the hard movie (overlap, low SNR, motion) scores, at the time of writing, F1 0.941 /
// 0.966 / 0.955 / 0.966 / 0.935 / 0.943 / 0.913 / 0.957 for seeds 11-18 (mean 0.947), trace
// correlation >= 0.978 and footprint cosine >= 0.972 on every seed. Before new neurons were tested
// against what their activity adds (CnmfOptions::new_space_corr): 0.929 / 0.966 / 0.918 / 0.953 /
// 0.923 / 0.944 / 0.882 / 0.936 (seed 17 below the target: fragments of large somata accepted).
// Session 11 (rims of large somata and silent neighbours, CnmfUpdater::detect_in_patch and
// merge_components): 0.966 / 0.966 / 0.967 / 0.977 / 0.957 / 0.943 / 0.945 / 0.957 (mean 0.960).
// Session 14 (the template started as the motion stage starts it, RigidRegistration::
// start_template): 0.955 / 0.955 / 0.956 / 0.977 / 0.957 / 0.966 / 0.956 / 0.957 (mean 0.960).
// Session 16 (overlapping components merge only if their traces also correlate over the
// history, CnmfUpdater::merge_components): 0.955 / 0.978 / 0.967 / 0.977 / 0.957 / 0.956 /
// 0.967 / 0.946 (mean 0.963). Those figures came from a harness that registered the frames
// itself and ran the numerical core's driver (no first-model lag, no shifts for the updater's
// motion test); since session 18 the movie goes through `rtnmf replay`'s path (run_replayed):
// 0.945 / 0.925 / 0.957 / 0.978 / 0.978 / 0.966 / 0.978 / 0.957 (mean 0.961), trace
// correlation 0.968-0.994, cosine >= 0.963.
// Every seed must reach the targets.
TEST(ImagingSoak, HardMoviesAcrossSeedsMeetTheTargets) {
  // The target is a mean over seeds, so even the short CI form runs four (about a minute); the
  // full soak runs eight (seeds 11-18), more with a larger scale.
  const int seeds = std::max(4, static_cast<int>(8 * soak_scale()));
  double f1_sum = 0;
  for (int seed = 11; seed < 11 + seeds; ++seed) {
    sim::CalciumSimOptions so;
    so.height = 128;
    so.width = 128;
    so.frames = 1500;
    so.neurons = 45;
    so.min_distance = 1.1f;
    so.read_noise = 10.0f;
    so.spike_amplitude = 40.0f;
    so.motion_px = 1.0f;
    so.seed = static_cast<std::uint64_t>(seed);
    const sim::ImagingScore s = run_replayed(so, "calcium-2p");
    std::printf("seed %d: F1 %.3f cosine %.3f trace corr %.3f\n", seed, s.f1, s.median_cosine,
                s.median_trace_corr);
    EXPECT_GE(s.f1, 0.9) << "seed " << seed;
    EXPECT_GE(s.median_trace_corr, 0.95) << "seed " << seed;
    EXPECT_GE(s.median_cosine, 0.9) << "seed " << seed;
    f1_sum += s.f1;
  }
  EXPECT_GE(f1_sum / seeds, 0.9);
}

// One-photon hard movies (calcium-1p settings, ring background): 20 somata of radius 7 on 96 x 96
// as close as one diameter, spikes of 60 photons instead of the preset's 80, 1 px motion. At the
// time of writing (ring at 1.75 soma radii), seeds 11-16 score F1 0.950 / 0.923 / 0.872 / 0.850
// / 0.919 / 0.976 (mean 0.915), trace correlation 0.945 / 0.971 / 0.884 / 0.971 / 0.965 / 0.930
// (mean 0.944), cosine >= 0.980; with the ring at 1.5 diameters seeds 11-13 gave F1 0.818 / 0.842
// / 0.884 and trace correlation 0.912 / 0.806 / 0.852 (through rtnmf replay). The trace
// target (0.95) was not met on every seed then: neurons the initialisation misses are found at
// the first updates and their traces were empty until then. Session 14
// (registration windows of 2^a 3^b 5^c pixels: the whole 96 x 96 frame instead of its central
// 64 x 64; shifts 0.9 -> 0.5 px rms from the truth): F1 0.950 / 0.974 / 0.950 / 0.895 / 0.919 /
// 0.947 (mean 0.939), trace correlation 0.950 / 0.970 / 0.953 / 0.970 / 0.964 / 0.943 (through
// the driver harness, as the two-photon test's figures before session 18). Through `rtnmf
// replay`'s path (session 18, with the new-neuron search in the first model's lag and the motion
// test at the edges only): F1 0.974 / 0.974 / 0.974 / 0.923 / 0.947 / 0.923 (mean 0.953), trace
// correlation 0.955 / 0.977 / 0.968 / 0.959 / 0.970 / 0.965, cosine >= 0.985: every seed now
// meets the targets, and the test asks for them.
TEST(ImagingSoak, OnePhotonHardMovies) {
  const int seeds = std::max(3, static_cast<int>(6 * soak_scale()));
  double f1_sum = 0, corr_sum = 0;
  for (int seed = 11; seed < 11 + seeds; ++seed) {
    sim::CalciumSimOptions so;
    so.height = 96;
    so.width = 96;
    so.frames = 900;
    so.neurons = 20;
    so.seed = static_cast<std::uint64_t>(seed);
    so = sim::one_photon_options(so);
    so.min_distance = 1.0f;
    so.spike_amplitude = 60.0f;
    so.motion_px = 1.0f;
    const sim::ImagingScore s = run_replayed(so, "calcium-1p");
    std::printf("1p hard seed %d: F1 %.3f (precision %.3f recall %.3f) cosine %.3f trace corr %.3f\n", seed,
                s.f1, s.precision, s.recall, s.median_cosine, s.median_trace_corr);
    EXPECT_GE(s.f1, 0.9) << "seed " << seed;
    EXPECT_GE(s.median_trace_corr, 0.95) << "seed " << seed;
    EXPECT_GE(s.median_cosine, 0.95) << "seed " << seed;
    f1_sum += s.f1;
    corr_sum += s.median_trace_corr;
  }
  EXPECT_GE(f1_sum / seeds, 0.93);
  EXPECT_GE(corr_sum / seeds, 0.95);
}

}  // namespace
}  // namespace rtnmf
