// Simulated calcium movies for the imaging tests: the small movie several of them replay, and
// writing a simulator's movie as the TIFF a ScanImage rig would (30 Hz in its header).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/io/tiff_writer.h"
#include "engine/sim/calcium.h"

namespace rtnmf::test {

// 64 x 64, 600 frames, 12 neurons firing at 1 Hz. Small and sparse: little static texture for
// registration, whole-frame searches.
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

// Every frame of the simulator's movie as float32 pages of a multi-page TIFF at `path`.
inline void write_simulated_movie(sim::CalciumSimulator& simulator, const std::string& path) {
  const sim::CalciumSimOptions& so = simulator.options();
  io::TiffWriteOptions wo;
  wo.software = "SI.hRoiManager.scanFrameRate = 30\n";
  io::TiffWriter w(path, so.height, so.width, wo);
  std::vector<float> f(static_cast<std::size_t>(so.height) * so.width);
  for (std::uint32_t t = 0; t < so.frames; ++t) {
    simulator.render(t, f.data());
    w.write_frame(f.data());
  }
}

}  // namespace rtnmf::test
