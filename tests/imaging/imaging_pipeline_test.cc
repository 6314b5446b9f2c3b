// The built-in calcium-2p pipeline end to end through the runtime: a simulated movie replayed at
// full speed and at a paced speed gives bit-identical /footprints and /traces, the result file
// has the documented layout, and scoring it finds the planted neurons; a truncated movie ends
// the stream with an error naming the frame while the frames before it are kept.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "engine/io/h5.h"
#include "engine/io/movie_h5.h"
#include "engine/io/tiff_writer.h"
#include "engine/runtime/config.h"
#include "engine/runtime/pipeline.h"
#include "engine/runtime/result_file_sink.h"
#include "engine/sim/calcium.h"
#include "engine/sim/score_imaging.h"
#include "plugins/imaging/builtin_pipelines.h"

namespace rtnmf {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("rtnmf_imgpipe_" + std::to_string(::getpid()) + "_" + name)).string();
}

struct Replay {
  std::vector<std::string> errors;
  std::uint64_t processed = 0;
};

Replay replay(const std::string& movie, const std::string& out, bool paced) {
  const std::string text = builtin_pipeline("calcium-2p");
  EXPECT_EQ(text, imaging::imaging_builtin_pipeline("calcium-2p"));
  v1::PipelineConfig cfg = parse_pipeline(text, "<builtin:calcium-2p>");
  v1::StreamConfig* s = cfg.mutable_stream(0);
  s->mutable_source()->mutable_imaging_file()->set_path(movie);
  s->set_overload(v1::BLOCK);
  if (paced) {
    s->mutable_source()->set_pacing(v1::REALTIME);
    s->mutable_source()->set_speed(10.0);  // 300 frames/s
  } else {
    s->mutable_source()->set_pacing(v1::MAX);
  }
  cfg.mutable_publisher()->set_disabled(true);
  apply_override(cfg, "cnmf.init_frames=200");
  apply_override(cfg, "cnmf.update_every=50");
  apply_override(cfg, "cnmf.max_components=200");
  validate_pipeline(cfg, "", "<test>");
  Replay r;
  Pipeline p(cfg, text);
  auto sink = std::make_unique<ResultFileSink>(out);
  ResultFileSink* sp = sink.get();
  p.add_sink(cfg.stream(0).id(), std::move(sink));
  p.start();
  while (!p.wait(1'000'000'000)) {
  }
  p.join();
  for (Stage* st : p.stages(0)) st->write_results(sp->file());
  sp->file().flush();
  r.errors = p.errors();
  r.processed = p.stats().streams(0).frames_processed();
  return r;
}

TEST(ImagingPipeline, ReplaysAtAnySpeedAreBitIdenticalAndFindThePlantedNeurons) {
  sim::CalciumSimOptions so;
  so.height = 64;
  so.width = 64;
  so.frames = 600;
  so.neurons = 12;
  so.firing_rate_hz = 1.0f;
  so.motion_px = 0.5f;
  so.seed = 9;
  sim::CalciumSimulator simulator(so);
  const std::string movie = temp_path("movie.tif");
  {
    io::TiffWriteOptions wo;
    wo.software = "SI.hRoiManager.scanFrameRate = 30\n";
    io::TiffWriter w(movie, so.height, so.width, wo);
    std::vector<float> f(64 * 64);
    for (std::uint32_t t = 0; t < so.frames; ++t) {
      simulator.render(t, f.data());
      w.write_frame(f.data());
    }
  }
  const std::string a = temp_path("a.h5"), b = temp_path("b.h5");
  Replay ra = replay(movie, a, false);
  Replay rb = replay(movie, b, true);
  EXPECT_TRUE(ra.errors.empty());
  EXPECT_EQ(ra.processed, 600u);
  EXPECT_EQ(rb.processed, 600u);
  io::h5::File fa = io::h5::File::open(a), fb = io::h5::File::open(b);
  for (const char* path : {"/traces", "/spikes", "/raw_traces", "/footprints/data",
                           "/footprints/indices", "/footprints/indptr", "/motion/shifts"}) {
    EXPECT_EQ(fa.read<float>(path), fb.read<float>(path)) << path;
  }
  // Layout.
  const io::h5::Dims td = fa.dims("/traces");
  ASSERT_EQ(td.size(), 2u);
  EXPECT_EQ(td[1], 600u);
  EXPECT_EQ(fa.dims("/motion/shifts"), (io::h5::Dims{600, 2}));
  EXPECT_EQ(fa.dims("/timing/latency_ns"), (io::h5::Dims{600}));
  EXPECT_EQ(fa.dims("/background/spatial")[0], 64u * 64u);
  Eigen::SparseMatrix<float> fp = io::read_csc(fa, "/footprints");
  EXPECT_EQ(fp.rows(), 64 * 64);
  EXPECT_EQ(static_cast<std::uint64_t>(fp.cols()), td[0]);
  // Scored against the truth (empty columns are components that were removed).
  std::vector<int> keep;
  for (int k = 0; k < fp.cols(); ++k)
    if (fp.col(k).nonZeros() > 0) keep.push_back(k);
  Eigen::MatrixXf traces = fa.read_matrix<float>("/traces");
  Eigen::SparseMatrix<float> kept(fp.rows(), static_cast<Eigen::Index>(keep.size()));
  Eigen::MatrixXf kt(keep.size(), traces.cols());
  std::vector<Eigen::Triplet<float>> trip;
  for (std::size_t j = 0; j < keep.size(); ++j) {
    for (Eigen::SparseMatrix<float>::InnerIterator it(fp, keep[j]); it; ++it)
      trip.emplace_back(static_cast<int>(it.row()), static_cast<int>(j), it.value());
    kt.row(static_cast<Eigen::Index>(j)) = traces.row(keep[j]);
  }
  kept.setFromTriplets(trip.begin(), trip.end());
  sim::ImagingScore sc = sim::score_imaging(simulator.truth().footprints, simulator.truth().traces,
                                            Eigen::MatrixXf(), kept, kt, Eigen::MatrixXf());
  // A sanity check of the plumbing (the accuracy targets are tested in cnmf_test.cc on larger
  // movies): most planted neurons are found, with their traces.
  EXPECT_GE(sc.f1, 0.8) << sc.to_json();
  EXPECT_GE(sc.median_trace_corr, 0.9) << sc.to_json();
  std::filesystem::remove(movie);
  std::filesystem::remove(a);
  std::filesystem::remove(b);
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

}  // namespace
}  // namespace rtnmf
