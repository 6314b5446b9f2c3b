// Long run (label soak; RTNMF_SOAK_SCALE multiplies the seeds): the calibration's default rank
// rule over many simulated recordings. 16 channels, 2-5 planted synergies, the stage's default
// 10 s calibration window, default CalibrationOptions (VAF >= 0.9 and the next rank adds
// < 1.5 %). Measured (scale 1, 32 recordings): the planted rank 30/32, the threshold alone 13/32.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "engine/dsp/emg_conditioner.h"
#include "engine/nmf/metrics.h"
#include "engine/sim/emg_sim.h"
#include "plugins/emg/synergy_model.h"
#include "tests/emg/emg_test_util.h"
#include "tests/support/soak.h"

namespace rtnmf::emg {
namespace {

using rtnmf::test::soak_scale;

using rtnmf::test::condition;

TEST(SynergyCalibrationSoak, DefaultRankRulePicksThePlantedRankOnMostRecordings) {
  const int seeds = std::max(1, static_cast<int>(8 * soak_scale()));
  int total = 0, right = 0, threshold_right = 0;
  double worst_cosine = 1;
  for (int planted = 2; planted <= 5; ++planted) {
    for (int sd = 0; sd < seeds; ++sd) {
      sim::EmgSimConfig c;
      c.channels = 16;
      c.synergies = planted;
      c.duration_s = 12;
      c.seed = 20 + planted + 100 * static_cast<std::uint64_t>(sd);
      const sim::EmgSimulation s = sim::simulate_emg(c);
      const Eigen::MatrixXf env = condition(s.emg, 2000).rightCols(1000);
      const Calibration cal = calibrate_synergies(env, CalibrationOptions{});
      ++total;
      right += cal.rank == planted;
      threshold_right += cal.rank_by_threshold == planted;
      if (cal.rank == planted) {
        worst_cosine =
            std::min(worst_cosine, nmf::match_factors(s.synergies, cal.synergies).mean_similarity);
      }
    }
  }
  std::printf("planted rank picked %d/%d (threshold alone %d/%d); worst matched cosine %.3f\n",
              right, total, threshold_right, total, worst_cosine);
  EXPECT_GE(right, total * 7 / 8);
  EXPECT_LT(threshold_right, total * 3 / 4);
  EXPECT_GE(worst_cosine, 0.95);
}

}  // namespace
}  // namespace rtnmf::emg
