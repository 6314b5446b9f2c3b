// Stage "online_synergies": muscle synergies from EMG envelopes, or neuronal assemblies from
// binned spike counts / ROI traces (channels × samples blocks at the envelope / bin rate).
//
// Fast path (process): for every sample of the block, activations h = argmin_{h>=0} ‖x − W h‖
// by exact NNLS (block principal pivoting, warm-started) against the current model's Gram; the
// output frame is K × samples (K = 0 until calibrated; lane capacity K_max × samples); lane
// "vaf" holds the sliding-window VAF after each of those samples (one value per column).
// Blocks with 0 samples (decimation) only advance the frame counter.
// Slow path (own thread): collects the calibration window (first calibration_s seconds), fits
// batch NMF with K fixed or chosen by VAF >= vaf_threshold, then folds every (x, h) into the
// online sufficient statistics with `forgetting` and updates W every `update_every` frames
// (unless frozen). Models reach the fast path through ModelExchange: in replay an update
// computed from frames <= t takes effect at frame t + L, so replays are bit-identical.
// Warm start: nmf.init_from names an earlier result file; its /synergies seed the calibration,
// fix the component order and the matched cosine is reported. nmf.calibration_file: use that
// file's synergies from the first frame on (no calibration window).
#pragma once

#include <Eigen/Core>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/nmf/nnls.h"
#include "engine/runtime/model_exchange.h"
#include "engine/runtime/stage.h"
#include "plugins/emg/synergy_model.h"

namespace rtnmf::io::h5 {
class File;
}

namespace rtnmf::emg {

// The model the fast path reads (immutable while in use): W (channels × K_max, columns >= k
// zero) and its Gram padded with 1 on unused diagonal entries so those activations stay 0.
struct SynergyModelState {
  Eigen::MatrixXf w;
  Eigen::MatrixXf gram;
  int k = 0;  // 0 = not calibrated yet
};

class SynergyStage : public Stage {
 public:
  explicit SynergyStage(const v1::StageConfig& config);
  ~SynergyStage() override;

  // Writes /synergies (channels × K, attributes channel_names, normalize, rank, ...),
  // /calibration/{synergies, vaf_by_rank}, and with a warm start /init/{synergies,
  // matched_cosine}. /activations (K × T) and /vaf (T × 1, per envelope sample) are streamed
  // lanes.
  // Main thread after stop(). Allocates; throws std::runtime_error on HDF5 failure.
  void write_results(io::h5::File& file) override { write_synergy_results(file); }
  void write_synergy_results(io::h5::File& file);

  // Publisher thread: sliding VAF, component count, calibration state, warm-start cosine.
  void report(std::vector<std::pair<std::string, double>>& scalars) const override;
  std::uint64_t model_version() const override { return exchange_.version_relaxed(); }
  std::uint64_t model_swaps() const override { return exchange_.swaps(); }
  // Control (publisher thread): freeze / unfreeze W. Statistics keep accumulating, so
  // unfreezing resumes learning. A live action: replays stay deterministic only without it.
  bool set_frozen(bool frozen) override;
  // The last published model as a dense CSC snapshot (publisher thread; a short lock shared
  // only with the slow path).
  bool snapshot(v1::ModelSnapshot* out) const override;

  // After stop() (or from the processing thread): the current synergies (channels × K).
  Eigen::MatrixXf synergies() const;
  int components() const { return k_.load(std::memory_order_relaxed); }
  int max_components() const { return k_max_; }
  // Samples the fast path could not hand to the slow path (live mode only; replay waits).
  std::uint64_t dropped_samples() const { return dropped_.load(std::memory_order_relaxed); }

 protected:
  StreamSpec do_start(const StreamSpec& in, const StageContext& ctx) override;
  void do_process(Frame& frame) override;
  void do_stop() override;

 private:
  void slow_loop();
  bool wait_for_frames(std::uint64_t count);
  void run_calibration(SynergyModelState& model);
  void set_model(SynergyModelState& model, const Eigen::MatrixXf& w) const;
  void record_snapshot(std::uint64_t computed_from);

  // --- configuration (start) ---
  int channels_ = 0, k_max_ = 0, max_cols_ = 0;
  double rate_hz_ = 0;
  RunMode mode_ = RunMode::kReplay;
  std::uint32_t lag_ = 1, update_every_ = 50;
  double forgetting_ = 0.999;
  std::atomic<bool> frozen_{false};
  nmf::Normalization norm_ = nmf::Normalization::kL2;
  CalibrationOptions cal_options_;
  std::int64_t cal_samples_ = 0;
  std::string stream_id_;
  std::vector<std::string> channel_names_;
  Eigen::MatrixXf previous_;  // init_from synergies (empty: none)
  bool has_previous_ = false;
  int vaf_lane_ = -1;

  // --- fast path ---
  ModelExchange<SynergyModelState> exchange_;
  nmf::NnlsSolver solver_;
  Eigen::VectorXf x_, b_, h_, gh_;
  std::uint64_t frame_ = 0;
  std::uint64_t seen_version_ = ~std::uint64_t{0};
  std::vector<double> vaf_res_, vaf_energy_;  // ring over the VAF window
  std::int64_t vaf_pos_ = 0, vaf_count_ = 0;
  double vaf_res_sum_ = 0, vaf_energy_sum_ = 0;

  // --- fast -> slow sample ring (one producer, one consumer) ---
  std::uint64_t ring_capacity_ = 0;
  std::vector<std::uint64_t> ring_frame_;
  std::vector<float> ring_x_, ring_h_;
  alignas(64) std::atomic<std::uint64_t> ring_head_{0};
  alignas(64) std::atomic<std::uint64_t> ring_tail_{0};
  alignas(64) std::atomic<std::uint64_t> frames_done_{0};

  // --- slow path ---
  std::thread slow_;
  std::vector<unsigned> slow_cpus_;  // StageContext::slow_cpus
  std::atomic<bool> stop_{false};
  Eigen::MatrixXf cal_x_;  // channels × cal_samples
  std::int64_t cal_count_ = 0;
  bool calibrated_ = false;
  Calibration calibration_;
  OnlineSynergyUpdater updater_;
  Eigen::MatrixXf w_work_;  // channels × k
  std::uint64_t pending_samples_ = 0;
  std::string slow_error_;
  Outbox* outbox_ = nullptr;
  mutable std::mutex snapshot_mutex_;
  v1::ModelSnapshot snapshot_;  // guarded by snapshot_mutex_

  // --- shared, read by report() ---
  std::atomic<double> vaf_{0.0};
  std::atomic<int> k_{0};
  std::atomic<double> init_cosine_{0.0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> updates_{0};
};

}  // namespace rtnmf::emg
