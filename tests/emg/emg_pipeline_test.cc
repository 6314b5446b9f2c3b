// The built-in emg-synergies pipeline end to end through the runtime: a simulated CSV recording
// replayed twice gives bit-identical synergies and activations in the result file, recovers the
// planted synergies, and a damaged row is a counted rejected block that does not stop the stream.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "engine/io/h5.h"
#include "engine/io/matrix_io.h"
#include "engine/nmf/metrics.h"
#include "engine/runtime/config.h"
#include "engine/runtime/pipeline.h"
#include "engine/runtime/result_file_sink.h"
#include "engine/sim/assemblies.h"
#include "engine/sim/emg_sim.h"
#include "plugins/emg/builtin_pipelines.h"

namespace rtnmf {
namespace {

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "rtnmf_emgpipe_" + std::to_string(::getpid()) + "_" + name;
}

struct ReplayResult {
  Eigen::MatrixXf synergies, activations, vaf;
  std::uint64_t rejected = 0, processed = 0;
  std::vector<std::string> errors;
  std::string channel_names;
};

ReplayResult replay(const std::string& input, const std::string& out,
                    const std::vector<std::string>& overrides,
                    const std::string& pipeline = "emg-synergies") {
  const std::string text = builtin_pipeline(pipeline);
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(text, emg::emg_builtin_pipeline(pipeline));
  v1::PipelineConfig cfg = parse_pipeline(text, "<builtin:" + pipeline + ">");
  cfg.mutable_stream(0)->mutable_source()->mutable_emg_file()->set_path(input);
  cfg.mutable_stream(0)->set_overload(v1::BLOCK);
  cfg.mutable_stream(0)->mutable_source()->set_pacing(v1::MAX);
  cfg.mutable_publisher()->set_disabled(true);
  for (const std::string& o : overrides) apply_override(cfg, o);
  validate_pipeline(cfg, "", "<test>");
  ReplayResult r;
  {
    Pipeline p(cfg, text);
    auto sink = std::make_unique<ResultFileSink>(out);
    ResultFileSink* s = sink.get();
    p.add_sink(cfg.stream(0).id(), std::move(sink));
    p.start();
    while (!p.wait(1'000'000'000)) {
    }
    p.join();
    for (Stage* st : p.stages(0)) st->write_results(s->file());
    s->file().flush();
    const v1::Stats st = p.stats();
    r.rejected = st.streams(0).frames_rejected();
    r.processed = st.streams(0).frames_processed();
    r.errors = p.errors();
  }
  io::h5::File f = io::h5::File::open(out);
  r.synergies = f.read_matrix<float>("/synergies");
  r.activations = f.read_matrix<float>("/activations");
  r.vaf = f.read_matrix<float>("/vaf");
  r.channel_names = f.attr_string("/synergies", "channel_names");
  EXPECT_TRUE(f.exists("/timing/latency_ns"));
  return r;
}

TEST(EmgPipeline, TwoReplaysOfOneFileAreBitIdenticalAndRecoverThePlantedSynergies) {
  sim::EmgSimConfig c;
  c.channels = 12;
  c.synergies = 3;
  c.duration_s = 40;
  c.seed = 77;
  sim::EmgSimulation s = sim::simulate_emg(c);
  const std::string csv = temp_path("rec.csv");
  sim::write_emg_csv(csv, s);
  const std::vector<std::string> sets = {"nmf.calibration_s=10", "nmf.vaf_threshold=0.97"};
  ReplayResult a = replay(csv, temp_path("a.h5"), sets);
  ReplayResult b = replay(csv, temp_path("b.h5"), sets);
  EXPECT_TRUE(a.errors.empty());
  EXPECT_EQ(a.processed, 20000u);  // 80000 samples in 4-sample blocks
  ASSERT_EQ(a.synergies.cols(), 3);
  EXPECT_EQ(a.activations.rows(), 3);  // K × T, unused rows trimmed
  EXPECT_EQ(a.activations.cols(), 4000);
  EXPECT_EQ(a.vaf.size(), 20000);  // one value per frame
  EXPECT_TRUE(a.synergies == b.synergies);
  EXPECT_TRUE(a.activations == b.activations);
  EXPECT_TRUE(a.vaf == b.vaf);
  EXPECT_EQ(a.channel_names.substr(0, 12), "EMG01,EMG02,");
  EXPECT_GE(nmf::match_factors(s.synergies, a.synergies).mean_similarity, 0.95);
  EXPECT_GT(a.vaf(a.vaf.size() - 1), 0.9);
}

TEST(EmgPipeline, ADamagedRowIsACountedRejectedBlockAndTheStreamGoesOn) {
  sim::EmgSimConfig c;
  c.channels = 4;
  c.synergies = 2;
  c.duration_s = 4;
  c.seed = 5;
  sim::EmgSimulation s = sim::simulate_emg(c);
  const std::string csv = temp_path("bad.csv");
  sim::write_emg_csv(csv, s);
  // Damage line 1002 (sample 1000): a non-numeric cell.
  std::ifstream in(csv);
  std::string all, line;
  int n = 0;
  while (std::getline(in, line)) {
    if (++n == 1002) line = line.substr(0, line.find(',')) + ",oops,0,0,0";
    all += line + "\n";
  }
  std::ofstream(csv) << all;
  ReplayResult r = replay(csv, temp_path("bad.h5"), {"nmf.calibration_s=1", "nmf.rank=2"});
  EXPECT_EQ(r.rejected, 1u);
  EXPECT_EQ(r.processed, 1999u);
  EXPECT_TRUE(r.errors.empty());
}

TEST(EmgPipeline, AssembliesPipelineRecoversPlantedAssembliesFromANpyCountMatrix) {
  sim::AssemblySimConfig c;
  c.neurons = 60;
  c.assemblies = 4;
  c.members = 12;
  c.bins = 3000;
  c.seed = 12;
  sim::AssemblySimulation s = sim::simulate_assemblies(c);
  const std::string npy = temp_path("counts.npy");
  io::write_npy(npy, s.counts);  // neurons × bins
  ReplayResult r =
      replay(npy, temp_path("asm.h5"),
             {"nmf.calibration_s=100", "nmf.rank=4", "source.sample_rate=20"}, "assemblies");
  EXPECT_TRUE(r.errors.empty());
  EXPECT_EQ(r.processed, 3000u);
  ASSERT_EQ(r.synergies.rows(), 60);
  ASSERT_EQ(r.synergies.cols(), 4);
  EXPECT_EQ(r.activations.cols(), 3000);
  EXPECT_GE(nmf::match_factors(s.membership, r.synergies).mean_similarity, 0.95);
}

TEST(EmgPipeline, AssembliesFromTimeMajorHdf5WithTranspose) {
  sim::AssemblySimConfig c;
  c.neurons = 30;
  c.assemblies = 3;
  c.members = 8;
  c.bins = 2000;
  c.seed = 4;
  sim::AssemblySimulation s = sim::simulate_assemblies(c);
  const std::string h5 = temp_path("counts.h5");
  {
    io::h5::File f = io::h5::File::create(h5);
    Eigen::MatrixXf tm = s.counts.transpose();  // bins × neurons, as NumPy users often store it
    f.write_matrix("/counts", tm);
  }
  ReplayResult r =
      replay(h5 + ":/counts", temp_path("asm2.h5"),
             {"nmf.calibration_s=60", "nmf.rank=3", "source.transpose=true"}, "assemblies");
  EXPECT_TRUE(r.errors.empty());
  ASSERT_EQ(r.synergies.rows(), 30);
  EXPECT_GE(nmf::match_factors(s.membership, r.synergies).mean_similarity, 0.95);
}

}  // namespace
}  // namespace rtnmf
