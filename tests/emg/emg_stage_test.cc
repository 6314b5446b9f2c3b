// The EMG stages driven directly (no pipeline threads besides the stage's own slow path):
// conditioning + online synergies on simulated EMG in 4-sample blocks, replay determinism, warm
// start from a result file, and zero allocations in process().
#include <gtest/gtest.h>

#include <sched.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/io/h5.h"
#include "engine/nmf/metrics.h"
#include "engine/runtime/registry.h"
#include "engine/sim/emg_sim.h"
#include "plugins/emg/synergy_stage.h"
#include "tests/support/alloc_counter.h"
#include "tests/support/scratch.h"

namespace rtnmf {
namespace {

std::string temp_path(const std::string& name) {
  return rtnmf::test::scratch_path(name);
}

struct Chain {
  std::unique_ptr<Stage> condition, nmf;
  StreamSpec in, mid, out;
  Frame frame;
};

v1::StageConfig nmf_config(std::uint32_t rank, double calibration_s) {
  v1::StageConfig c;
  c.set_type("online_synergies");
  c.set_name("nmf");
  c.mutable_nmf()->set_rank(rank);
  c.mutable_nmf()->set_calibration_s(calibration_s);
  c.mutable_nmf()->set_update_every(25);
  c.mutable_nmf()->set_forgetting(0.998);
  return c;
}

std::unique_ptr<Chain> make_chain(int channels, int block, double fs, const v1::StageConfig& nmf,
                                  RunMode mode = RunMode::kReplay,
                                  std::vector<unsigned> slow_cpus = {}) {
  auto ch = std::make_unique<Chain>();
  v1::StageConfig cond;
  cond.set_type("emg_condition");
  cond.mutable_emg()->set_notch_hz(50);
  ch->condition = Registry::instance().make_stage(cond);
  ch->nmf = Registry::instance().make_stage(nmf);
  StageContext ctx;
  ctx.stream_id = "emg";
  ctx.mode = mode;
  ctx.model_lag_frames = 3;
  ctx.slow_cpus = std::move(slow_cpus);
  ch->in = StreamSpec::make("emg", channels, block, fs);
  ch->mid = ch->condition->start(ch->in, ctx);
  ch->out = ch->nmf->start(ch->mid, ctx);
  std::vector<std::uint32_t> caps;
  for (const LaneSpec& l : ch->out.lanes) caps.push_back(l.size);
  caps[0] = std::max<std::uint32_t>(caps[0], channels * block);
  ch->frame.allocate(caps);
  return ch;
}

// Runs the recording through the chain in blocks; returns the activations (K_max × T) and the
// count of blocks that produced no envelope sample.
Eigen::MatrixXf run(Chain& ch, const Eigen::MatrixXf& emg, int block, int* empty_blocks = nullptr,
                    std::uint64_t* allocations = nullptr, Eigen::Index steady_from = 0) {
  const Eigen::Index t_total = emg.cols();
  Eigen::MatrixXf acts(ch.out.rows, t_total / 20 + 1);
  Eigen::Index n = 0;
  int empty = 0;
  std::uint64_t allocs = 0;
  for (Eigen::Index t = 0; t + block <= t_total; t += block) {
    ch.frame.header.seq = static_cast<std::uint64_t>(t / block);
    ch.frame.set_shape(ch.in.rows, block);
    std::copy(emg.col(t).data(), emg.col(t).data() + ch.in.rows * block, ch.frame.data());
    test::AllocationGuard guard;
    ch.condition->process(ch.frame);
    ch.nmf->process(ch.frame);
    if (t >= steady_from) allocs += guard.count();
    const Eigen::Index rows = ch.frame.header.rows;  // K: 0 until calibrated
    EXPECT_LE(rows, static_cast<Eigen::Index>(ch.out.rows));
    const Eigen::Index cols = ch.frame.header.cols;
    if (cols == 0) ++empty;
    for (Eigen::Index j = 0; j < cols; ++j) {
      acts.col(n).setZero();
      acts.col(n).head(rows) = ch.frame.values().col(j);
      ++n;
    }
  }
  ch.condition->stop();
  ch.nmf->stop();
  if (empty_blocks) *empty_blocks = empty;
  if (allocations) *allocations = allocs;
  return acts.leftCols(n);
}

TEST(EmgStages, RecoverPlantedSynergiesFromFourSampleBlocksWithoutAllocating) {
  sim::EmgSimConfig c;
  c.channels = 16;
  c.synergies = 4;
  c.duration_s = 60;
  c.seed = 17;
  sim::EmgSimulation s = sim::simulate_emg(c);
  auto ch = make_chain(16, 4, 2000, nmf_config(4, 20));
  EXPECT_EQ(ch->mid.cols, 1u);  // 4 samples at 2 kHz -> at most one 100 Hz envelope sample
  EXPECT_DOUBLE_EQ(ch->mid.sample_rate_hz, 100.0);
  EXPECT_EQ(ch->out.rows, 8u);  // K_max = min(channels, 8)
  int empty = 0;
  std::uint64_t allocs = 0;
  Eigen::MatrixXf acts = run(*ch, s.emg, 4, &empty, &allocs, /*steady_from=*/2000 * 25);
  EXPECT_EQ(acts.cols(), 6000);
  EXPECT_EQ(empty, 30000 - 6000);
  auto* nmf = dynamic_cast<emg::SynergyStage*>(ch->nmf.get());
  ASSERT_NE(nmf, nullptr);
  EXPECT_EQ(nmf->components(), 4);
  const nmf::FactorMatch m = nmf::match_factors(s.synergies, nmf->synergies());
  EXPECT_GE(m.mean_similarity, 0.95);
  // Rows beyond K stay 0; activations are non-negative.
  EXPECT_EQ(acts.bottomRows(4).cwiseAbs().maxCoeff(), 0.0f);
  EXPECT_GE(acts.minCoeff(), 0.0f);
  std::vector<std::pair<std::string, double>> scalars;
  nmf->report(scalars);
  EXPECT_EQ(scalars[0].first, "vaf");
  EXPECT_GT(scalars[0].second, 0.9);
  if (test::allocation_counting_available()) {
    EXPECT_EQ(allocs, 0u);
  }
}

TEST(EmgStages, TwoReplaysGiveBitIdenticalActivationsAndSynergies) {
  sim::EmgSimConfig c;
  c.channels = 12;
  c.synergies = 3;
  c.duration_s = 30;
  c.seed = 23;
  sim::EmgSimulation s = sim::simulate_emg(c);
  auto a = make_chain(12, 4, 2000, nmf_config(0, 8));
  auto b = make_chain(12, 4, 2000, nmf_config(0, 8));
  Eigen::MatrixXf ha = run(*a, s.emg, 4);
  Eigen::MatrixXf hb = run(*b, s.emg, 4);
  auto* na = dynamic_cast<emg::SynergyStage*>(a->nmf.get());
  auto* nb = dynamic_cast<emg::SynergyStage*>(b->nmf.get());
  ASSERT_EQ(ha.cols(), hb.cols());
  EXPECT_TRUE(ha == hb);
  EXPECT_TRUE(na->synergies() == nb->synergies());
  EXPECT_GT(na->components(), 0);
  EXPECT_GT(na->model_version(), 10u);
}

// Threads of this process whose allowed-CPU list reads exactly `list` (/proc/self/task).
int threads_allowed_exactly(const std::string& list) {
  int count = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream in(task.path() / "status");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("Cpus_allowed_list:", 0) == 0) {
        std::string v = line.substr(line.find(':') + 1);
        v.erase(0, v.find_first_not_of(" \t"));
        if (v == list) ++count;
      }
  }
  return count;
}

TEST(EmgStages, SlowPathRunsOnTheCpusTheContextGivesIt) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
  if (CPU_COUNT(&allowed) < 2) GTEST_SKIP() << "needs two CPUs";
  unsigned last = 0;
  for (unsigned c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &allowed)) last = c;
  const std::string want = std::to_string(last);
  ASSERT_EQ(threads_allowed_exactly(want), 0);
  auto ch = make_chain(8, 4, 2000, nmf_config(2, 1), RunMode::kReplay, {last});
  int pinned = 0;
  for (int i = 0; i < 200 && pinned == 0; ++i) {  // the slow thread pins itself as it starts
    pinned = threads_allowed_exactly(want);
    if (pinned == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(pinned, 1);
  ch->condition->stop();
  ch->nmf->stop();
  EXPECT_EQ(threads_allowed_exactly(want), 0);
}

TEST(EmgStages, WarmStartFromAnEarlierResultFileKeepsItsOrderAndReportsTheCosine) {
  sim::EmgSimConfig c;
  c.channels = 16;
  c.synergies = 4;
  c.duration_s = 30;
  c.seed = 41;
  sim::EmgSimulation s = sim::simulate_emg(c);
  // Session 1's synergies in a scrambled order, as its result file would hold them.
  const std::string previous = temp_path("previous.h5");
  {
    io::h5::File f = io::h5::File::create(previous);
    Eigen::MatrixXf w(16, 4);
    const int perm[4] = {3, 1, 0, 2};
    for (int j = 0; j < 4; ++j) w.col(j) = s.synergies.col(perm[j]);
    f.write_matrix("/synergies", w);
  }
  v1::StageConfig cfg = nmf_config(0, 15);
  cfg.mutable_nmf()->set_init_from(previous);
  cfg.mutable_nmf()->set_frozen(true);
  auto ch = make_chain(16, 4, 2000, cfg);
  run(*ch, s.emg, 4);
  auto* nmf = dynamic_cast<emg::SynergyStage*>(ch->nmf.get());
  ASSERT_EQ(nmf->components(), 4);
  Eigen::MatrixXf w = nmf->synergies();
  io::h5::File f = io::h5::File::open(previous);
  Eigen::MatrixXf old = f.read_matrix<float>("/synergies");
  for (int j = 0; j < 4; ++j) {
    EXPECT_GT(w.col(j).dot(old.col(j)) / (w.col(j).norm() * old.col(j).norm()), 0.95) << j;
  }
  std::vector<std::pair<std::string, double>> scalars;
  nmf->report(scalars);
  ASSERT_EQ(scalars.back().first, "init_matched_cosine");
  EXPECT_GT(scalars.back().second, 0.95);
  // The result file carries the synergies, channel names and the warm-start similarity.
  const std::string out = temp_path("result.h5");
  {
    io::h5::File r = io::h5::File::create(out);
    nmf->write_synergy_results(r);
  }
  io::h5::File r = io::h5::File::open(out);
  EXPECT_TRUE(r.read_matrix<float>("/synergies") == w);
  // Frozen: W never moved after calibration.
  EXPECT_EQ(r.attr_int64("/synergies", "model_updates"), 0);
  EXPECT_TRUE(r.read_matrix<float>("/calibration/synergies") == w);
  v1::ModelSnapshot snap;
  ASSERT_TRUE(nmf->snapshot(&snap));
  EXPECT_EQ(snap.components(), 4u);
  EXPECT_EQ(snap.rows(), 16u);
  EXPECT_EQ(snap.data_size(), 64);
  EXPECT_FLOAT_EQ(snap.data(16 * 2 + 5), w(5, 2));
  EXPECT_EQ(r.attr_string("/synergies", "channel_names").substr(0, 8), "ch1,ch2,");
  EXPECT_GT(r.attr_double("/init", "mean_matched_cosine"), 0.95);
}

TEST(EmgStages, BadInitFileIsAStartError) {
  v1::StageConfig cfg = nmf_config(0, 5);
  cfg.mutable_nmf()->set_init_from(temp_path("missing.h5"));
  auto stage = Registry::instance().make_stage(cfg);
  StageContext ctx;
  ctx.stream_id = "emg";
  try {
    stage->start(StreamSpec::make("emg", 8, 1, 100), ctx);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("stage 'nmf' (online_synergies): "), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("missing.h5"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace rtnmf
