// The calcium-1p pipeline's CNMF settings (plugins/imaging/builtin_pipelines.cc), for tests that
// run the numerical core on one-photon movies without the pipeline around it.
#pragma once

#include <cstdint>

#include "engine/nmf/cnmf.h"
#include "engine/nmf/ring_background.h"

namespace rtnmf::test {

// ring = false keeps the settings but uses the two-photon low-rank background instead.
inline nmf::CnmfOptions calcium_1p_options(std::uint32_t height, std::uint32_t width,
                                           bool ring = true) {
  nmf::CnmfOptions o;
  o.height = height;
  o.width = width;
  o.neuron_radius = 7;
  o.auto_radius = true;  // sizes only down (auto_radius_max)
  o.auto_radius_max = 7;
  o.background_components = 4;
  o.min_pnr = 8;
  o.min_corr = 0.6f;
  o.decay_time_s = 0.6f;
  o.ring_radius = ring ? nmf::default_ring_radius(o.neuron_radius) : 0;
  return o;
}

}  // namespace rtnmf::test
