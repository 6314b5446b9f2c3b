// The built-in calcium-2p pipeline end to end through the runtime: a simulated movie replayed at
// full speed and at a paced speed gives bit-identical /footprints and /traces, the result file
// has the documented layout, and scoring it finds the planted neurons; a truncated movie ends
// the stream with an error naming the frame while the frames before it are kept.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/io/h5.h"
#include "engine/io/movie_h5.h"
#include "engine/io/tiff_writer.h"
#include "engine/nmf/cnmf.h"
#include "engine/runtime/config.h"
#include "engine/runtime/pipeline.h"
#include "engine/runtime/replay.h"
#include "engine/runtime/result_file_sink.h"
#include "engine/sim/calcium.h"
#include "engine/sim/score_imaging.h"
#include "plugins/imaging/builtin_pipelines.h"
#include "tests/support/scratch.h"
#include "tests/support/simulated_movie.h"

namespace rtnmf {
namespace {

std::string temp_path(const std::string& name) {
  return rtnmf::test::scratch_path(name);
}

struct Replay {
  std::vector<std::string> errors;
  std::uint64_t processed = 0;
  v1::StreamStats stats;
};

// The flow `rtnmf replay` runs (engine/runtime/replay.h), without ZeroMQ.
// pinned: frame threads on CPU 0, so the slow path has the other CPUs and runs its updates and
// catch-up on one thread (unpinned replays use two: the same results either way).
// extra: more --set overrides, after these.
Replay replay(const std::string& movie, const std::string& out, bool paced,
              const std::string& pipeline = "calcium-2p", bool small_init = true, bool pinned = false,
              const std::vector<std::string>& extra = {}) {
  EXPECT_EQ(builtin_pipeline(pipeline), imaging::imaging_builtin_pipeline(pipeline));
  ReplayRequest rq;
  rq.pipeline = pipeline;
  rq.input = movie;
  rq.out = out;
  rq.speed = paced ? "10" : "max";  // 10x real time: 300 frames/s
  rq.publish = false;
  if (small_init) rq.overrides = {"cnmf.init_frames=200", "cnmf.update_every=50"};
  rq.overrides.push_back("cnmf.max_components=200");
  rq.overrides.insert(rq.overrides.end(), extra.begin(), extra.end());
  if (pinned) rq.adjust = [](v1::PipelineConfig& c) { c.add_realtime_cpus(0); };
  const ReplayResult res = replay_to_file(rq);
  Replay r;
  r.errors = res.errors;
  r.processed = res.stats.streams(0).frames_processed();
  r.stats = res.stats.streams(0);
  return r;
}

// Scores a result file's footprints and traces (or another K x T dataset) against the truth.
// Every column of /footprints is a component of the final model (merged and removed ones are
// under /retired/), so none may be empty and /traces has a row for each.
sim::ImagingScore score_result(io::h5::File& f, const sim::CalciumTruth& truth, int skip,
                               const char* dataset = "/traces") {
  const Eigen::SparseMatrix<float> fp = io::read_csc(f, "/footprints");
  for (int k = 0; k < fp.cols(); ++k) EXPECT_GT(fp.col(k).nonZeros(), 0) << "column " << k;
  const Eigen::MatrixXf traces = f.read_matrix<float>(dataset);
  EXPECT_EQ(traces.rows(), fp.cols()) << dataset;
  return sim::score_imaging(truth.footprints, truth.traces.rightCols(truth.traces.cols() - skip),
                            Eigen::MatrixXf(), fp, traces.rightCols(traces.cols() - skip), Eigen::MatrixXf());
}

// The small movie of the replay tests (tests/support/simulated_movie.h).
sim::CalciumSimOptions small_movie() { return rtnmf::test::small_sparse_movie(); }

// Writes the simulator's movie, replays it through calcium-2p with its default schedule (and the
// `extra` overrides) and opens the result.
io::h5::File replay_simulation(sim::CalciumSimulator& simulator, const std::vector<std::string>& extra = {}) {
  const std::string movie = temp_path("movie.tif"), out = temp_path("r.h5");
  rtnmf::test::write_simulated_movie(simulator, movie);
  const Replay r = replay(movie, out, false, "calcium-2p", false, false, extra);
  EXPECT_TRUE(r.errors.empty());
  return io::h5::File::open(out);
}

TEST(ImagingPipeline, ReplaysAtAnySpeedAreBitIdenticalAndFindThePlantedNeurons) {
  sim::CalciumSimOptions so = small_movie();
  so.motion_px = 0.5f;
  sim::CalciumSimulator simulator(so);
  const std::string movie = temp_path("movie.tif");
  rtnmf::test::write_simulated_movie(simulator, movie);
  const std::string a = temp_path("a.h5"), b = temp_path("b.h5"), c = temp_path("c.h5");
  Replay ra = replay(movie, a, false);
  Replay rb = replay(movie, b, true);
  Replay rc = replay(movie, c, false, "calcium-2p", true, true);
  EXPECT_TRUE(ra.errors.empty());
  EXPECT_TRUE(rc.errors.empty());
  EXPECT_EQ(ra.processed, 600u);
  EXPECT_EQ(rb.processed, 600u);
  EXPECT_EQ(rc.processed, 600u);
  // Every model the slow path published was taken (replay), and the stats say so.
  EXPECT_GE(ra.stats.model_swaps(), 5u);
  EXPECT_EQ(ra.stats.model_swaps(), ra.stats.model_version());
  EXPECT_EQ(ra.stats.model_swaps(), rb.stats.model_swaps());
  io::h5::File fa = io::h5::File::open(a), fb = io::h5::File::open(b), fc = io::h5::File::open(c);
  for (const char* path : {"/traces", "/spikes", "/raw_traces", "/dff", "/footprints/data",
                           "/footprints/indices", "/footprints/indptr", "/motion/shifts"}) {
    EXPECT_EQ(fa.read<float>(path), fb.read<float>(path)) << path;
    EXPECT_EQ(fa.read<float>(path), fc.read<float>(path)) << path << " (pinned: one slow-path thread)";
  }
  // Layout.
  const io::h5::Dims td = fa.dims("/traces");
  ASSERT_EQ(td.size(), 2u);
  EXPECT_EQ(td[1], 600u);
  EXPECT_EQ(fa.dims("/motion/shifts"), (io::h5::Dims{600, 2}));
  // Registration quality per frame: the correlation peak, and no frame of this clean movie held.
  ASSERT_EQ(fa.dims("/motion/quality"), (io::h5::Dims{600, 2}));
  {
    const std::vector<float> q = fa.read<float>("/motion/quality");
    for (std::size_t t = 30; t < 600; ++t) {
      EXPECT_GT(q[2 * t], 0.0f) << "frame " << t;
      EXPECT_LE(q[2 * t], 1.0f) << "frame " << t;
      EXPECT_EQ(q[2 * t + 1], 0.0f) << "frame " << t;
    }
    EXPECT_EQ(fa.attr_int64("/motion/quality", "outliers_held"), 0);
  }
  // The online CNMF's fit per frame (the initialisation's batch screened with its first model,
  // then the catch-up's and the fast path's), none excluded; bit-identical across replays.
  ASSERT_EQ(fa.dims("/fit/quality"), (io::h5::Dims{600, 2}));
  {
    const std::vector<float> q = fa.read<float>("/fit/quality");
    EXPECT_EQ(q, fb.read<float>("/fit/quality"));
    for (std::size_t t = 0; t < 600; ++t) {
      EXPECT_GT(q[2 * t], 0.0f) << "frame " << t;
      EXPECT_EQ(q[2 * t + 1], 0.0f) << "frame " << t;
    }
    EXPECT_EQ(fa.attr_int64("/fit/quality", "frames_excluded"), 0);
  }
  EXPECT_EQ(fa.dims("/dff"), td);
  EXPECT_EQ(fa.dims("/timing/latency_ns"), (io::h5::Dims{600}));
  EXPECT_EQ(fa.dims("/background/spatial")[0], 64u * 64u);
  Eigen::SparseMatrix<float> fp = io::read_csc(fa, "/footprints");
  EXPECT_EQ(fp.rows(), 64 * 64);
  EXPECT_EQ(static_cast<std::uint64_t>(fp.cols()), td[0]);
  // Deconvolution model per component: c[t] = g c[t-1] + g2 c[t-2] + s[t], whose factors (the
  // roots of z^2 - g z - g2) are the decay per frame, within a factor 3 of the pipeline's 0.4 s
  // at 30 Hz, and the rise.
  const std::vector<float> g = fa.read<float>("/components/g"), g2 = fa.read<float>("/components/g2");
  ASSERT_EQ(g.size(), td[0]);
  ASSERT_EQ(g2.size(), td[0]);
  for (std::size_t k = 0; k < g.size(); ++k) {
    const float disc = g[k] * g[k] + 4 * g2[k];
    ASSERT_GE(disc, 0.0f) << "component " << k;
    const float decay = 0.5f * (g[k] + std::sqrt(disc)), rise = 0.5f * (g[k] - std::sqrt(disc));
    EXPECT_GT(decay, std::exp(-3.0f / (30.0f * 0.4f))) << "component " << k;
    EXPECT_LT(decay, std::exp(-1.0f / (30.0f * 0.4f * 3.0f)) + 1e-4f) << "component " << k;
    EXPECT_GE(rise, 0.0f) << "component " << k;
    EXPECT_LT(rise, decay) << "component " << k;
  }
  // The initialisation took no seed in the edge strip registration replicates into: the
  // largest whole-pixel shift of its 200 frames, at most a sixteenth of the side (4 here).
  {
    const std::vector<float> sh = fa.read<float>("/motion/shifts");
    float largest = 0;
    for (std::size_t i = 0; i < 2 * 200; ++i) largest = std::max(largest, std::fabs(sh[i]));
    EXPECT_EQ(fa.attr_int64("/components", "init_seed_border_px"),
              std::min<std::int64_t>(static_cast<std::int64_t>(std::floor(largest)), 4));
  }
  // The benchmarks' timing attributes: the online phase's frames and wall time, and its CPU time
  // between the first and the last model's frames (whole models apart).
  const std::int64_t update_every = fa.attr_int64("/components", "update_every_frames");
  const std::int64_t online = fa.attr_int64("/components", "online_frames");
  const std::int64_t cpu_frames = fa.attr_int64("/components", "online_cpu_frames");
  EXPECT_GT(online, 0);
  EXPECT_GT(fa.attr_double("/components", "online_wall_s"), 0.0);
  EXPECT_GT(cpu_frames, 0);
  EXPECT_LE(cpu_frames, online);
  EXPECT_EQ(cpu_frames % update_every, 0) << cpu_frames;
  EXPECT_GT(fa.attr_double("/components", "online_cpu_s"), 0.0);
  EXPECT_EQ(fa.attr_int64("/components", "unrecorded_components"), 0);  // rows to spare
  // The steady state starts where the first model computed from frames tracked with a model
  // takes effect: the first model comes at frame 399 (init_frames 200 + first lag 200 - 1), the
  // update computed from frame 399 one model lag later, so here the steady state is the online
  // phase less one model lag.
  const std::int64_t lag = fa.attr_int64("/components", "model_lag_frames");
  const std::int64_t steady = fa.attr_int64("/components", "steady_frames");
  const std::int64_t steady_cpu_frames = fa.attr_int64("/components", "steady_cpu_frames");
  EXPECT_EQ(fa.attr_int64("/components", "first_model_lag_frames"), 200);
  EXPECT_EQ(online, 600 - 399);
  EXPECT_EQ(online - steady, lag);
  EXPECT_GT(fa.attr_double("/components", "steady_wall_s"), 0.0);
  EXPECT_LT(fa.attr_double("/components", "steady_wall_s"), fa.attr_double("/components", "online_wall_s"));
  EXPECT_GT(steady_cpu_frames, 0);
  EXPECT_EQ(cpu_frames - steady_cpu_frames, lag);
  EXPECT_GT(fa.attr_double("/components", "steady_cpu_s"), 0.0);
  EXPECT_LT(fa.attr_double("/components", "steady_cpu_s"), fa.attr_double("/components", "online_cpu_s"));
  EXPECT_LE(fa.attr_double("/components", "steady_model_wait_s"), fa.attr_double("/components", "online_model_wait_s"));
  // calcium-2p checks its neuron_radius (5) against the data (auto_radius) and records what it
  // ran at: 5, or the estimate to the half pixel when that is off by more than the tolerance
  // (this movie's 11 whole somata have a median half-peak radius of 4.1: the simulator's radius
  // 5 is the outline's, with a dimmer nucleus and 20 % jitter; a small sample).
  const double est = fa.attr_double("/components", "neuron_radius_estimate");
  ASSERT_GT(est, 0.0);
  const double expected = std::abs(est / 5.0 - 1.0) <= nmf::kRadiusTolerance ? 5.0 : std::round(2.0 * est) / 2.0;
  EXPECT_EQ(fa.attr_double("/components", "neuron_radius"), expected) << "estimate " << est;
  // ... and reports it with the stream's figures (the progress line's "radius").
  ASSERT_EQ(ra.stats.scalars().count("cnmf.neuron_radius"), 1u);
  EXPECT_EQ(ra.stats.scalars().at("cnmf.neuron_radius"), expected);
  // Scored against the truth (empty columns are components that were removed).
  sim::ImagingScore sc = score_result(fa, simulator.truth(), 0);
  // A sanity check of the plumbing (the accuracy targets are tested in cnmf_test.cc on larger
  // movies): most planted neurons are found, with their traces.
  EXPECT_GE(sc.f1, 0.8) << sc.to_json();
  EXPECT_GE(sc.median_trace_corr, 0.9) << sc.to_json();
  // /dff is dF/F in the truth's own terms: the true calcium over the neuron's resting level plus
  // the background under its footprint (its least-squares coefficient on the footprint). The
  // least-squares slope of the result's dF/F on the true one, per matched neuron: median 0.93 /
  // 0.95 on 256 x 256 simulator movies (hard, radius 6: README, session 14), ~0.7 on this small
  // one with its 200-frame initialisation (F0 1.1-1.9 times the truth's: a found footprint
  // reaches pixels of the background around the soma, and at 1 Hz the baseline's 30th percentile
  // sits above the resting level). Without the background term the slope would be ~3.5; an
  // error of units, far from 1 either way.
  {
    const sim::CalciumTruth& truth = simulator.truth();
    const sim::ImagingScore sd = score_result(fa, truth, 0, "/dff");
    EXPECT_GE(sd.median_trace_corr, 0.9) << sd.to_json();
    const Eigen::MatrixXf dff = fa.read_matrix<float>("/dff");
    std::vector<double> slopes;
    for (const sim::MatchedPair& pr : sd.pairs) {
      const Eigen::SparseVector<float> a = truth.footprints.col(pr.truth);
      const float aa = a.squaredNorm();
      Eigen::VectorXf under = Eigen::VectorXf::Zero(truth.bg_spatial.cols());
      for (Eigen::SparseVector<float>::InnerIterator it(a); it; ++it)
        under += it.value() * truth.bg_spatial.row(it.index()).transpose();
      under /= aa;
      const Eigen::RowVectorXf f0 = truth.f0(pr.truth) + (under.transpose() * truth.bg_temporal).array();
      const Eigen::RowVectorXf expected = truth.traces.row(pr.truth).array() / f0.array();
      const Eigen::RowVectorXf found = dff.row(pr.found);
      slopes.push_back(expected.dot(found) / expected.squaredNorm());
    }
    ASSERT_FALSE(slopes.empty());
    std::sort(slopes.begin(), slopes.end());
    const double median = slopes[slopes.size() / 2];
    EXPECT_GT(median, 0.6);
    EXPECT_LT(median, 1.4);
  }
  std::filesystem::remove(movie);
  std::filesystem::remove(a);
  std::filesystem::remove(b);
  std::filesystem::remove(c);
}

// A recording shorter than the initialisation plus the first model's lag (here 200 + 200
// frames): the fast path never had a model, yet the file holds the initial neurons' footprints
// and their traces over the whole recording (initialisation, then the slow path's catch-up).
// Components merged into another or removed during the run leave the result's main datasets:
// /footprints and /traces hold the final model's components (every column a footprint, row k
// of each K x T dataset column k's), in the order they appeared, with the row each had in the
// published activations (/components/slot); the others' rows, last footprints, ids, absorbers
// and update frames are under /retired/. A hard 128 x 128 movie (overlapping somata, read noise
// 10, 2 px of motion) whose updates at frame 700 remove one component and merge another.
TEST(ImagingPipeline, MergedAndRemovedComponentsAreKeptApartFromTheFinalOnes) {
  sim::CalciumSimOptions so;
  so.height = 128;
  so.width = 128;
  so.frames = 1200;
  so.neurons = 60;
  so.min_distance = 1.0f;
  so.read_noise = 10.0f;
  so.spike_amplitude = 40.0f;
  so.motion_px = 2.0f;
  so.seed = 4;
  sim::CalciumSimulator simulator(so);
  io::h5::File f = replay_simulation(simulator, {"cnmf.max_components=1000"});
  const std::vector<std::int64_t> slot = f.read<std::int64_t>("/components/slot");
  const std::vector<std::int64_t> id = f.read<std::int64_t>("/components/id");
  const std::vector<std::int64_t> rslot = f.read<std::int64_t>("/retired/slot");
  const std::vector<std::int64_t> rid = f.read<std::int64_t>("/retired/id");
  const std::vector<std::int64_t> into = f.read<std::int64_t>("/retired/merged_into");
  const std::vector<std::int64_t> rframe = f.read<std::int64_t>("/retired/frame");
  const std::size_t K = slot.size(), R = rslot.size();
  // The scenario: at least one removal and one merge.
  ASSERT_TRUE(std::count(into.begin(), into.end(), -1) > 0 && std::count(into.begin(), into.end(), -1) < static_cast<long>(R))
      << "retired " << R;
  EXPECT_EQ(static_cast<std::int64_t>(R), f.attr_int64("/components", "merged") + f.attr_int64("/components", "removed"));
  // Every row the run streamed is in exactly one of the two, each part in slot order.
  EXPECT_TRUE(std::is_sorted(slot.begin(), slot.end()));
  EXPECT_TRUE(std::is_sorted(rslot.begin(), rslot.end()));
  std::vector<std::int64_t> all(slot);
  all.insert(all.end(), rslot.begin(), rslot.end());
  std::sort(all.begin(), all.end());
  for (std::size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], static_cast<std::int64_t>(i));
  const Eigen::SparseMatrix<float> fp = io::read_csc(f, "/footprints"), rfp = io::read_csc(f, "/retired/footprints");
  ASSERT_EQ(static_cast<std::size_t>(fp.cols()), K);
  ASSERT_EQ(static_cast<std::size_t>(rfp.cols()), R);
  EXPECT_EQ(id.size(), K);
  EXPECT_EQ(rid.size(), R);
  for (std::size_t k = 0; k < K; ++k) EXPECT_GT(fp.col(static_cast<Eigen::Index>(k)).nonZeros(), 0) << "column " << k;
  const std::int64_t lag = f.attr_int64("/components", "model_lag_frames");
  for (const char* d : {"/traces", "/raw_traces", "/dff", "/spikes"}) {
    EXPECT_EQ(f.dims(d), (io::h5::Dims{K, 1200})) << d;
    EXPECT_EQ(f.dims(std::string("/retired") + d), (io::h5::Dims{R, 1200})) << d;
  }
  const Eigen::MatrixXf rt = f.read_matrix<float>("/retired/traces");
  for (std::size_t j = 0; j < R; ++j) {
    // Its last footprint, an absorber that is a known component, and a trace that ran until the
    // model without it took effect (the update after frame rframe - 1, one model lag later).
    if (into[j] >= 0) {
      EXPECT_GT(rfp.col(static_cast<Eigen::Index>(j)).nonZeros(), 0) << "retired " << j;
      EXPECT_TRUE(std::count(id.begin(), id.end(), into[j]) + std::count(rid.begin(), rid.end(), into[j]) == 1)
          << "retired " << j << " merged into " << into[j];
    }
    const Eigen::Index end = rframe[j] - 1 + lag;
    ASSERT_LT(end, 1200);
    EXPECT_GT(rt.row(static_cast<Eigen::Index>(j)).head(end).cwiseAbs().maxCoeff(), 0.0f) << "retired " << j;
    EXPECT_EQ(rt.row(static_cast<Eigen::Index>(j)).tail(1200 - end).cwiseAbs().maxCoeff(), 0.0f) << "retired " << j;
  }
  // Scored as it stands (no column to drop): the planted neurons are found.
  const sim::ImagingScore sc = score_result(f, simulator.truth(), 0);
  EXPECT_GE(sc.f1, 0.9) << sc.to_json();
}

// Neurons that fire rarely are found online when they fire; the burst that got one found was
// in the residual buffer of the update that found it, before any model the fast path ran had
// it. The result file puts the detection's trace there (it was zeros), so that burst, often the
// neuron's largest, is in its /traces row. 0.05 Hz, 200 x 210 (a frame searched in patches):
// the 16 components found online and matched correlate with their neurons 0.48 in the median
// over the whole movie, -0.08 without it.
TEST(ImagingPipeline, ComponentsFoundOnlineHaveTheirDetectionBurstInTheirTraces) {
  sim::CalciumSimOptions so;
  so.height = 200;
  so.width = 210;
  so.frames = 1500;
  so.neurons = 40;
  so.firing_rate_hz = 0.05f;
  so.seed = 6;
  sim::CalciumSimulator simulator(so);
  io::h5::File f = replay_simulation(simulator);
  const sim::ImagingScore sc = score_result(f, simulator.truth(), 0);
  const std::vector<std::int64_t> slot = f.read<std::int64_t>("/components/slot");
  const std::int64_t used = static_cast<std::int64_t>(slot.size() + f.read<std::int64_t>("/retired/slot").size());
  const std::int64_t first_online = used - f.attr_int64("/components", "added");
  std::vector<double> corr;
  for (const sim::MatchedPair& p : sc.pairs)
    if (slot[static_cast<std::size_t>(p.found)] >= first_online) corr.push_back(p.trace_corr);
  ASSERT_GE(corr.size(), 5u) << sc.to_json();
  std::sort(corr.begin(), corr.end());
  double mean = 0;
  for (double c : corr) mean += c / static_cast<double>(corr.size());
  std::printf("components found online and matched: %zu, trace correlation median %.3f mean %.3f\n", corr.size(),
              corr[corr.size() / 2], mean);
  EXPECT_GE(corr[corr.size() / 2], 0.4);
}

TEST(ImagingPipeline, ARecordingThatEndsBeforeTheFirstModelKeepsTheInitialNeurons) {
  sim::CalciumSimOptions so;
  so.height = 64;
  so.width = 64;
  so.frames = 350;
  so.neurons = 10;
  so.firing_rate_hz = 1.0f;
  so.seed = 3;
  sim::CalciumSimulator simulator(so);
  const std::string movie = temp_path("short.tif"), out = temp_path("short.h5");
  rtnmf::test::write_simulated_movie(simulator, movie);
  Replay r = replay(movie, out, false);
  EXPECT_TRUE(r.errors.empty());
  EXPECT_EQ(r.processed, 350u);
  io::h5::File f = io::h5::File::open(out);
  const Eigen::MatrixXf traces = f.read_matrix<float>("/traces");
  ASSERT_GE(traces.rows(), 6);
  ASSERT_EQ(traces.cols(), 350);
  EXPECT_EQ(io::read_csc(f, "/footprints").cols(), traces.rows());
  for (Eigen::Index k = 0; k < traces.rows(); ++k)
    EXPECT_GT(traces.row(k).tail(150).maxCoeff(), 0.0f) << "row " << k << ": no catch-up trace";
  // Most of the 10 planted neurons are there, with their traces. (With 10 neurons F1 moves in
  // steps of ~0.1 with the registration's sub-pixel noise: 0.889 before the motion stage's
  // template start changed, 0.778 after, while over 16 more seeds of this movie the mean was
  // 0.946 before and 0.949 after.)
  sim::ImagingScore sc = score_result(f, simulator.truth(), 0);
  EXPECT_GE(sc.n_matched, 7) << sc.to_json();
  EXPECT_GE(sc.precision, 0.8) << sc.to_json();
  EXPECT_GE(sc.median_trace_corr, 0.9) << sc.to_json();
  std::filesystem::remove(movie);
  std::filesystem::remove(out);
}

// A recording whose pixel values go below zero (a ScanImage int16 file with its dark level under
// 0; here the simulated movie less 400, as float32) is lifted by its first frame's minimum before
// the non-negative model sees it, and the planted neurons are found as in the positive movie.
// (Without the lift a 128 x 128 movie of 40 neurons scored F1 0.59 and trace correlation 0.57
// against 1.0 / 0.996 for the same movie unshifted.)
TEST(ImagingPipeline, NegativePixelValuesAreLiftedByTheFirstFramesMinimum) {
  const sim::CalciumSimOptions so = small_movie();
  sim::CalciumSimulator simulator(so);
  const std::string movie = temp_path("negative.tif"), out = temp_path("negative.h5");
  float first_min = 0;
  {
    io::TiffWriteOptions wo;
    wo.dtype = io::PixelType::kFloat32;
    wo.software = "SI.hRoiManager.scanFrameRate = 30\n";
    io::TiffWriter w(movie, so.height, so.width, wo);
    std::vector<float> f(static_cast<std::size_t>(so.height) * so.width);
    for (std::uint32_t t = 0; t < so.frames; ++t) {
      simulator.render(t, f.data());
      for (float& v : f) v -= 400.0f;
      if (t == 0) first_min = *std::min_element(f.begin(), f.end());
      w.write_frame(f.data());
    }
  }
  ASSERT_LT(first_min, -200.0f);
  Replay r = replay(movie, out, false);
  EXPECT_TRUE(r.errors.empty());
  io::h5::File f = io::h5::File::open(out);
  EXPECT_FLOAT_EQ(static_cast<float>(f.attr_double("/components", "data_offset")), -first_min);
  sim::ImagingScore sc = score_result(f, simulator.truth(), 0);
  EXPECT_GE(sc.f1, 0.85) << sc.to_json();
  EXPECT_GE(sc.median_trace_corr, 0.9) << sc.to_json();
  std::filesystem::remove(movie);
  std::filesystem::remove(out);
}

// The calcium-1p pipeline with its defaults on a one-photon-like movie: the ring background is
// used (its baseline written, no low-rank background) and the planted neurons are found.
TEST(ImagingPipeline, OnePhotonPipelineUsesTheRingBackgroundAndFindsThePlantedNeurons) {
  sim::CalciumSimOptions so;
  so.height = 96;
  so.width = 96;
  so.frames = 900;
  so.neurons = 20;
  so.seed = 4;
  so = sim::one_photon_options(so);
  sim::CalciumSimulator simulator(so);
  const std::string movie = temp_path("movie1p.tif"), out = temp_path("r1p.h5");
  rtnmf::test::write_simulated_movie(simulator, movie);
  Replay r = replay(movie, out, false, "calcium-1p", false);
  EXPECT_TRUE(r.errors.empty());
  EXPECT_EQ(r.processed, 900u);
  io::h5::File f = io::h5::File::open(out);
  EXPECT_EQ(f.dims("/background/ring_baseline"), (io::h5::Dims{96 * 96}));
  EXPECT_FALSE(f.exists("/background/spatial"));
  // Somata of the preset's radius 7: the size check (auto_radius, only downwards in calcium-1p)
  // measures them and keeps the configured radius.
  EXPECT_EQ(f.attr_double("/components", "neuron_radius"), 7.0);
  EXPECT_GT(f.attr_double("/components", "neuron_radius_estimate"), 7.0 * (1 - nmf::kRadiusTolerance));
  sim::ImagingScore sc = score_result(f, simulator.truth(), 300);
  std::printf("calcium-1p: F1 %.3f cosine %.3f trace corr %.3f\n", sc.f1, sc.median_cosine,
              sc.median_trace_corr);
  // Measured at the time of writing: F1 0.947, cosine 0.994, trace correlation 0.984 (with the
  // ring at 1.5 soma diameters instead of 1.75 radii: 0.947 / 0.992 / 0.889; before the
  // initialisation refined on the ring-background-free movie: 0.84 / 0.97 / 0.89). The issue's
  // targets are the floors.
  EXPECT_GE(sc.f1, 0.9) << sc.to_json();
  EXPECT_GE(sc.median_cosine, 0.9) << sc.to_json();
  EXPECT_GE(sc.median_trace_corr, 0.95) << sc.to_json();
  try {
    replay(movie, temp_path("r1p_bad.h5"), false, "calcium-1p", true, false, {"cnmf.auto_radius_max=-1"});
    ADD_FAILURE() << "a negative auto_radius_max was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("auto_radius_max must be >= 0 (0: a quarter of the shorter frame side), got -1"),
              std::string::npos) << e.what();
  }
  std::filesystem::remove(temp_path("r1p_bad.h5"));
  std::filesystem::remove(movie);
  std::filesystem::remove(out);
}

// Seeded initialisation (cnmf.init_from): footprints of another session of the same field of
// view — here the simulator's own — are refined on this movie and kept in their order, so
// neuron k is the same cell in both; their traces start at frame 0, as the batch's do.
TEST(ImagingPipeline, InitFromAnEarlierResultKeepsItsNeuronsInOrderWithTracesFromTheStart) {
  sim::CalciumSimOptions so;
  so.height = 64;
  so.width = 64;
  so.frames = 500;
  so.neurons = 12;
  so.firing_rate_hz = 1.0f;
  so.seed = 21;
  sim::CalciumSimulator simulator(so);
  const sim::CalciumTruth& truth = simulator.truth();
  const std::string movie = temp_path("seeded.tif"), seeds = temp_path("seeds.h5"),
                    out = temp_path("seeded.h5");
  rtnmf::test::write_simulated_movie(simulator, movie);
  {
    io::h5::File f = io::h5::File::create(seeds);
    io::write_csc(f, "/footprints", truth.footprints);
    f.set_attr("/footprints", "height", static_cast<std::int64_t>(64));
    f.set_attr("/footprints", "width", static_cast<std::int64_t>(64));
  }
  const std::vector<std::string> seeded = {"cnmf.no_new_components=true", "cnmf.init_from=" + seeds};
  EXPECT_TRUE(replay(movie, out, false, "calcium-2p", true, false, seeded).errors.empty());
  io::h5::File f = io::h5::File::open(out);
  const Eigen::SparseMatrix<float> fp = io::read_csc(f, "/footprints");
  const Eigen::MatrixXf traces = f.read_matrix<float>("/traces");
  ASSERT_EQ(fp.cols(), truth.footprints.cols());
  for (Eigen::Index k = 0; k < fp.cols(); ++k) {
    const Eigen::VectorXf a = Eigen::VectorXf(fp.col(k)), b = Eigen::VectorXf(truth.footprints.col(k));
    EXPECT_GE(a.dot(b) / (a.norm() * b.norm()), 0.9) << "component " << k;
    // Over the whole movie, the initialisation frames included.
    EXPECT_GE(sim::detail::pearson(traces.row(k).transpose(), truth.traces.row(k).transpose()), 0.9)
        << "component " << k;
  }
  // A multi-stream result keeps each stream's footprints under /<stream id>/: the stage reads its
  // own stream's ("imaging" in calcium-2p) when the file has no /footprints.
  const std::string grouped_out = temp_path("seeded_grouped.h5");
  {
    io::h5::File g = io::h5::File::create(seeds);
    io::write_csc(g, "/imaging/footprints", truth.footprints);
    g.set_attr("/imaging/footprints", "height", static_cast<std::int64_t>(64));
    g.set_attr("/imaging/footprints", "width", static_cast<std::int64_t>(64));
  }
  EXPECT_TRUE(replay(movie, grouped_out, false, "calcium-2p", true, false, seeded).errors.empty());
  {
    io::h5::File g = io::h5::File::open(grouped_out);
    const Eigen::SparseMatrix<float> gp = io::read_csc(g, "/footprints");
    ASSERT_EQ(gp.cols(), truth.footprints.cols());
    // Seeded from the same footprints: the same result as the run above.
    EXPECT_TRUE(Eigen::MatrixXf(gp).isApprox(Eigen::MatrixXf(fp), 1e-6f));
  }
  std::filesystem::remove(grouped_out);
  // Footprints for another frame shape are refused, naming the file and both shapes.
  const std::string bad_out = temp_path("seeded_bad.h5");
  {
    io::h5::File g = io::h5::File::create(seeds);
    io::write_csc(g, "/footprints", Eigen::SparseMatrix<float>(32 * 128, 3));
    g.set_attr("/footprints", "height", static_cast<std::int64_t>(32));
    g.set_attr("/footprints", "width", static_cast<std::int64_t>(128));
  }
  try {
    replay(movie, bad_out, false, "calcium-2p", true, false, seeded);
    ADD_FAILURE() << "footprints of another shape were accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("init_from " + seeds +
                                         ": footprints are for 32x128 frames, this stream has 64x64"),
              std::string::npos) << e.what();
  }
  std::filesystem::remove(seeds);
  try {
    replay(movie, bad_out, false, "calcium-2p", true, false, seeded);
    ADD_FAILURE() << "a missing init_from file was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("init_from: "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(seeds), std::string::npos) << e.what();
  }
  std::filesystem::remove(movie);
  std::filesystem::remove(out);
  std::filesystem::remove(bad_out);
}

TEST(ImagingPipeline, TruncatedMovieStopsWithTheFrameIndexAndKeepsEarlierFrames) {
  const std::string movie = temp_path("trunc.tif");
  {
    io::TiffWriter w(movie, 32, 32);
    std::vector<float> f(32 * 32, 100.0f);
    for (int t = 0; t < 400; ++t) w.write_frame(f.data());
  }
  std::filesystem::resize_file(movie, std::filesystem::file_size(movie) / 400 * 350 + 10);
  const std::string out = temp_path("trunc.h5");
  Replay r = replay(movie, out, false);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find(movie + ": frame 350: "), std::string::npos) << r.errors[0];
  EXPECT_EQ(r.processed, 350u);
  io::h5::File f = io::h5::File::open(out);
  EXPECT_EQ(f.dims("/motion/shifts")[0], 350u);
  std::filesystem::remove(movie);
  std::filesystem::remove(out);
}

// A movie that cannot be opened stops the replay before it starts, with the stream, the source's
// field and the path named once each, and the result file it would have written is not touched:
// not created, and an earlier result at that path (a re-run with a mistyped input) kept as it was.
TEST(ImagingPipeline, MissingMovieIsNamedOnceAndLeavesTheResultPathAlone) {
  ReplayRequest rq;
  rq.pipeline = "calcium-2p";
  rq.input = "/nonexistent/movie.tif";
  rq.out = temp_path("missing.h5");
  rq.publish = false;
  std::filesystem::remove(rq.out);
  for (const bool earlier : {false, true}) {
    SCOPED_TRACE(earlier ? "an earlier result at the path" : "no file at the path");
    if (earlier) std::ofstream(rq.out) << "earlier result";
    try {
      replay_to_file(rq);
      ADD_FAILURE() << "no error";
    } catch (const ConfigError& e) {
      EXPECT_STREQ(e.what(), "stream 'imaging': source.imaging_file: /nonexistent/movie.tif: no such file");
    }
    if (!earlier) {
      EXPECT_FALSE(std::filesystem::exists(rq.out));
    } else {
      std::ifstream in(rq.out);
      std::string text;
      std::getline(in, text);
      EXPECT_EQ(text, "earlier result");
    }
  }
  std::filesystem::remove(rq.out);
}

// A result path that is the recording itself (or a file its directory would list) is refused
// before anything starts: the result file is created when the stream begins and would truncate
// the movie being read.
TEST(ImagingPipeline, ResultFileOverTheInputIsRefusedAndTheMovieKept) {
  const std::string movie = temp_path("self.tif");
  {
    io::TiffWriter w(movie, 16, 16);
    std::vector<float> f(16 * 16, 100.0f);
    for (int t = 0; t < 20; ++t) w.write_frame(f.data());
  }
  const auto size = std::filesystem::file_size(movie);
  ReplayRequest rq;
  rq.pipeline = "calcium-2p";
  rq.input = movie;
  rq.out = movie;
  rq.publish = false;
  try {
    replay_to_file(rq);
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "result file " + movie + " is part of the input " + movie +
                                         "; write the result elsewhere");
  }
  EXPECT_EQ(std::filesystem::file_size(movie), size);
  std::filesystem::remove(movie);
}

}  // namespace
}  // namespace rtnmf
