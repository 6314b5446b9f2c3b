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
#include "engine/runtime/replay.h"
#include "engine/sim/assemblies.h"
#include "engine/sim/emg_sim.h"
#include "plugins/emg/builtin_pipelines.h"
#include "tests/support/scratch.h"

namespace rtnmf {
namespace {

std::string temp_path(const std::string& name) {
  return rtnmf::test::scratch_path(name);
}

struct Replayed {
  Eigen::MatrixXf synergies, activations, vaf;
  std::uint64_t rejected = 0, processed = 0;
  std::vector<std::string> errors;
  std::string channel_names;
  std::int64_t calibration_rank_by_threshold = -1;
};

// Replays `input` through a built-in pipeline exactly as `rtnmf replay` does (replay_to_file),
// without publishing, and reads the result file back.
Replayed replay(const std::string& input, const std::string& out,
                const std::vector<std::string>& overrides,
                const std::string& pipeline = "emg-synergies") {
  EXPECT_EQ(std::string(builtin_pipeline(pipeline)), emg::emg_builtin_pipeline(pipeline));
  ReplayRequest req;
  req.pipeline = pipeline;
  req.input = input;
  req.out = out;
  req.overrides = overrides;
  req.publish = false;
  const ReplayResult rr = replay_to_file(req);
  Replayed r;
  r.rejected = rr.stats.streams(0).frames_rejected();
  r.processed = rr.stats.streams(0).frames_processed();
  r.errors = rr.errors;
  io::h5::File f = io::h5::File::open(out);
  r.synergies = f.read_matrix<float>("/synergies");
  r.activations = f.read_matrix<float>("/activations");
  r.vaf = f.read_matrix<float>("/vaf");
  r.channel_names = f.attr_string("/synergies", "channel_names");
  if (f.exists("/calibration/cophenetic_by_rank"))
    r.calibration_rank_by_threshold = f.attr_int64("/calibration", "rank_by_threshold_alone");
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
  // The built-in pipeline's own settings (10 s calibration, rank by VAF >= 90 % and gain).
  Replayed a = replay(csv, temp_path("a.h5"), {});
  Replayed b = replay(csv, temp_path("b.h5"), {});
  EXPECT_TRUE(a.errors.empty());
  EXPECT_EQ(a.processed, 20000u);  // 80000 samples in 4-sample blocks
  ASSERT_EQ(a.synergies.cols(), 3);
  EXPECT_EQ(a.activations.rows(), 3);  // K × T, unused rows trimmed
  EXPECT_EQ(a.activations.cols(), 4000);
  EXPECT_EQ(a.vaf.size(), 4000);  // one value per envelope sample, like /activations
  EXPECT_TRUE(a.synergies == b.synergies);
  EXPECT_TRUE(a.activations == b.activations);
  EXPECT_TRUE(a.vaf == b.vaf);
  EXPECT_EQ(a.channel_names.substr(0, 12), "EMG01,EMG02,");
  EXPECT_GE(nmf::match_factors(s.synergies, a.synergies).mean_similarity, 0.95);
  EXPECT_GT(a.vaf(a.vaf.size() - 1), 0.9);
  EXPECT_EQ(a.vaf(500), 0.0f);  // before the calibration window (10 s = 1000 samples) ended
  EXPECT_GT(a.calibration_rank_by_threshold, 0);
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
  Replayed r = replay(csv, temp_path("bad.h5"), {"nmf.calibration_s=1", "nmf.rank=2"});
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
  Replayed r =
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
  Replayed r =
      replay(h5 + ":/counts", temp_path("asm2.h5"),
             {"nmf.calibration_s=60", "nmf.rank=3", "source.transpose=true"}, "assemblies");
  EXPECT_TRUE(r.errors.empty());
  ASSERT_EQ(r.synergies.rows(), 30);
  EXPECT_GE(nmf::match_factors(s.membership, r.synergies).mean_similarity, 0.95);
}

}  // namespace
}  // namespace rtnmf
