// The small simulated movie several imaging tests replay: 64 x 64, 600 frames, 12 neurons firing
// at 1 Hz. Small and sparse: little static texture for registration, whole-frame searches.
#pragma once

#include <cstdint>

#include "engine/sim/calcium.h"

namespace rtnmf::test {

inline sim::CalciumSimOptions small_sparse_movie(std::uint64_t seed = 9) {
  sim::CalciumSimOptions so;
  so.height = 64;
  so.width = 64;
  so.frames = 600;
  so.neurons = 12;
  so.firing_rate_hz = 1.0f;
  so.seed = seed;
  return so;
}

}  // namespace rtnmf::test
