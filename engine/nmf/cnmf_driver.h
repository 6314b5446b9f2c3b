// Single-threaded online CNMF over a whole movie: initialisation on the first frames, then the
// fast path frame by frame and the slow path every `update_every` frames (taking effect one frame
// later, as a replay with lag 1 would). For tests, benchmarks and offline tools; the streaming
// stage runs the same pieces on two threads. Keeps K x T traces in memory (not for streaming).
#pragma once

#include <Eigen/Core>
#include <Eigen/SparseCore>
#include <cstdint>
#include <functional>
#include <vector>

#include "engine/nmf/cnmf.h"

namespace rtnmf::nmf {

struct CnmfRunOptions {
  std::uint32_t init_frames = 300;
  std::uint32_t update_every = 100;
};

struct CnmfRunResult {
  CnmfModel model;               // the final model
  Eigen::MatrixXf raw;           // K_final x T (c - baseline)
  Eigen::MatrixXf denoised;      // K_final x T
  Eigen::MatrixXf spikes;        // K_final x T
  Eigen::MatrixXf background;    // nb x T
  int added = 0, merged = 0, removed = 0;  // over all updates
};

// `frame(t, out)` writes registered frame t (P floats); the same t again for the initialisation's
// frames when its screening left some out (cnmf_initialize_screened). Frames the tracker excludes
// are not added to the updater. Allocates. Throws what the pieces throw.
CnmfRunResult run_cnmf_online(const std::function<void(std::uint32_t, float*)>& frame,
                              std::uint32_t frames, const CnmfOptions& options,
                              const CnmfRunOptions& run);

}  // namespace rtnmf::nmf
