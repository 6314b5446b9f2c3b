// Helpers shared by the EMG tests.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cstdint>

#include "engine/dsp/emg_conditioner.h"

namespace rtnmf::test {

// Conditions a whole recording (channels × samples) as the emg_condition stage would, in blocks
// of `block` samples (0: the whole recording in one call), with a `notch_hz` mains notch (0: none).
// Returns the envelope, channels × envelope samples.
inline Eigen::MatrixXf condition(const Eigen::MatrixXf& emg, double fs, Eigen::Index block = 0,
                                 double notch_hz = 50) {
  dsp::EmgConditionerConfig cfg;
  cfg.channels = static_cast<int>(emg.rows());
  cfg.sample_rate_hz = fs;
  cfg.notch_hz = notch_hz;
  dsp::EmgConditioner cond;
  cond.configure(cfg);
  if (block <= 0) block = emg.cols();
  Eigen::MatrixXf env(emg.rows(), cond.max_output_cols(emg.cols()) + 1);
  std::int64_t n = 0;
  for (Eigen::Index t = 0; t < emg.cols(); t += block) {
    const Eigen::Index s = std::min<Eigen::Index>(block, emg.cols() - t);
    n += cond.process(emg.col(t).data(), s, env.col(n).data());
  }
  return env.leftCols(n);
}

}  // namespace rtnmf::test
