// Stage "online_cnmf": online CNMF with OASIS deconvolution on registered imaging frames.
//
// Fast path (process, processing thread): the current model's traces for this frame by
// warm-started HALS on sparse footprints and the low-rank background, online OASIS per neuron;
// no allocation, no lock. Output: lane 0 = denoised traces by result slot (/traces, K x T),
// lanes "spikes" (/spikes), "raw_traces" (/raw_traces), "background" (/background/temporal),
// "fit_quality" (/fit/quality: the fit's residual, and 1 on frames excluded as ones the model
// cannot explain, CnmfOptions::outlier_residual_ratio; the slow path does not add those).
// Each component keeps one result slot (row of the published activations) for the whole run;
// the rows of removed or merged components stop. The result file holds the final components
// (slot order) and moves the others to /retired/ (write_results).
// With a motion_correct stage before it, each frame's shift (its "shifts" lane) goes to the
// updater with the frame (CnmfUpdater::set_motion): the new-neuron search refuses candidates
// whose activity the motion explains.
// Slow path (own thread): collects the first init_frames frames and runs the batch
// initialisation, then folds every frame into the sufficient statistics and every update_every
// frames builds a new model (shapes, background, new neurons, merges, removals). Models reach the
// fast path through ModelExchange: in replay (BLOCK) an update computed from frames <= t takes
// effect exactly at frame t + L, so replays are bit-identical at any speed; live, as soon as
// ready. The fast path hands frames to the slow path through a bounded ring: in replay it waits
// when the ring is full, live it drops the slow path's copy (counted; the model then learns from
// fewer frames, activations are unaffected). In a pipeline the copy into the ring is made in
// after_frame(), once the frame has left (StageContext::frame_valid_until_after_frame): it reads
// the pixels past lane 0's shape, which the stages after this one do not write.
// The first model (the initialisation on frames < init_frames) takes effect first_lag frames
// after its last frame, not L: the batch takes seconds (about 8 s of one core at 512 x 512 x 300),
// so under real-time pacing the fast path would otherwise stall on it. first_lag =
// max(L, init_frames, frames the batch needs at 40 % of a core by a per-pixel cost estimate):
// 300 at 64 x 64, 590 at 512 x 512 and 30 Hz (at --speed max the fast path waits once, there). Frames before the first model get zero traces on the wire (no model exists yet); in the
// result file write_results replaces those columns with the initialisation batch's traces and,
// for the frames between the initialisation and the first model, traces the slow path computed
// with the initial model while catching up (it also folds those frames into its statistics).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <Eigen/Core>

#include "engine/nmf/cnmf.h"
#include "engine/runtime/huge_buffer.h"
#include "engine/runtime/model_exchange.h"
#include "engine/runtime/stage.h"

namespace rtnmf::imaging {

class OnlineCnmfStage : public Stage {
 public:
  explicit OnlineCnmfStage(const v1::StageConfig& config);
  ~OnlineCnmfStage() override;

  // /footprints/{data,indices,indptr,shape} (CSC, pixels x K: the components of the last
  // processed frame's model), /background/spatial, /components/{id, slot, g, g2}, attributes;
  // rewrites the first init frames of /traces, /raw_traces, /dff and /spikes with the
  // initialisation batch, and a component found online's rows before its model took effect with
  // its detection's trace and the slow path's estimates (births_, gaps_); then moves the rows of
  // merged and removed components out of those (streamed by result slot) into /retired/ with
  // their last footprints, so that every column of /footprints is a component and row k of
  // /traces is column k's. Main thread after stop()
  // and after the result sink finished. Throws std::runtime_error on HDF5 failure.
  void write_results(io::h5::File& file) override;
  // Publisher thread: components, model updates, slow-path drops.
  void report(std::vector<std::pair<std::string, double>>& scalars) const override;
  std::uint64_t model_version() const override { return exchange_.version_relaxed(); }
  std::uint64_t model_swaps() const override { return exchange_.swaps(); }

  // After stop(): the last model the slow path built (or the initial one). The result file uses
  // the model of the last processed frame instead (deterministic in replay).
  const nmf::CnmfModel& final_model() const { return final_model_; }
  int components() const { return k_.load(std::memory_order_relaxed); }
  std::uint64_t dropped_frames() const { return dropped_.load(std::memory_order_relaxed); }

 protected:
  StreamSpec do_start(const StreamSpec& in, const StageContext& ctx) override;
  void do_process(Frame& frame) override;
  // Copies the frame into its ring slot when process() left that for later (defer_copy_), then
  // takes (and cache-warms) the model of the next frame, once this one has left.
  void do_after_frame() override;
  // Reads the model the next frame uses and the tracker's state into the caches (Stage::warm):
  // after ~33 ms of idling beside the slow path they are in memory, not in the caches.
  void do_warm() override;
  void do_stop() override;

 private:
  // init_from: an earlier result's /footprints (or /<stream_id>/footprints, as a multi-stream run
  // writes them) for this field of view. Throws ConfigError naming the file when it cannot be
  // read or is for another frame shape.
  Eigen::SparseMatrix<float> load_seeds(const std::string& path, const std::string& stream_id) const;
  // Acquires the model frame n uses and follows a version change (tracker, counters).
  void prepare(std::uint64_t n);
  void slow_loop();
  void slow_frame(std::uint64_t t, std::uint32_t slot);
  // After the updater's update or search at frame t: its new components counted, and their
  // detection traces kept for the result file (births_).
  void record_finds(std::uint64_t t);
  // The initialisation's seed-free edge strip: the largest whole-pixel shift of its frames.
  int init_seed_border_px() const;

  // configuration
  nmf::CnmfOptions options_;
  std::uint32_t init_frames_ = 300, update_every_ = 100, lag_ = 30, first_lag_ = 300;
  RunMode mode_ = RunMode::kReplay;
  bool frozen_ = false;
  std::uint32_t height_ = 0, width_ = 0, pixels_ = 0, slots_ = 0;
  int nb_ = 0;
  int spikes_lane_ = -1, raw_lane_ = -1, dff_lane_ = -1, bg_lane_ = -1, fit_lane_ = -1;
  double rate_hz_ = 30;

  // fast path
  ModelExchange<nmf::CnmfModel> exchange_;
  nmf::CnmfTracker tracker_;
  bool tracking_ = false;
  const nmf::CnmfModel* in_use_ = nullptr;  // the model of the last processed frame
  const nmf::CnmfModel* model_ = nullptr;   // the model prepared for frame prepared_
  std::uint64_t prepared_ = ~std::uint64_t{0};
  std::uint64_t frame_ = 0, seen_version_ = ~std::uint64_t{0};
  // Timing (fast-path thread; read by write_results after stop): waits for a model longer than
  // 0.1 ms, and the steady-clock times of the first model's frame and of the last frame.
  std::int64_t wait_ns_ = 0, online_wait_ns_ = 0, first_model_ns_ = 0, last_frame_ns_ = 0;
  std::uint64_t waits_ = 0, first_model_frame_ = 0;
  // The process's CPU time (all threads) when the first model and the latest model took effect,
  // and that frame: CPU per online frame, which a shared VM's slow stretches disturb far less
  // than the wall time.
  std::int64_t first_model_cpu_ns_ = 0, last_model_cpu_ns_ = 0;
  std::uint64_t last_model_frame_ = 0;
  // The steady state: from the first model computed from frames the fast path tracked with a
  // model (so the slow path has folded the frames buffered during the initialisation, which the
  // online phase above includes) to the end. Wall time and waits from that frame, CPU to the
  // last model.
  std::int64_t steady_ns_ = 0, steady_wait_ns_ = 0, steady_cpu_ns_ = 0;
  std::uint64_t steady_frame_ = 0;
  std::int32_t slots_used_ = 0;
  float offset_ = 0.0f;  // added to every pixel: minus the first frame's minimum when below 0
  // Slow path (read after stop): the largest |shift| of the initialisation's frames, which sets
  // the seed-free edge strip of the initialisation (init_seed_border_px).
  float init_largest_shift_ = 0.0f;
  // Slow path (read after stop): every component with a result row that an update merged or
  // removed, with its footprint then (the result file's /retired group).
  std::vector<nmf::CnmfUpdater::Retired> retired_;
  // Slow path (read after stop): every component with a result row an update or a search found,
  // with its trace over the detection's buffer, which ends at frame `last` (write_results puts
  // it in the rows, where the fast path had nothing to report yet).
  struct Birth {
    nmf::CnmfUpdater::Born born;
    std::uint64_t last = 0;
  };
  std::vector<Birth> births_;
  // Slow path (read after stop): by result slot, the activations it estimated for a component
  // found by an update in the frames before that update's model took effect (consecutive
  // frames from `first`; CnmfUpdater::untracked_last). Bounded: a few model lags per slot.
  struct Gap {
    std::uint64_t first = 0;
    std::vector<float> values;
  };
  std::vector<Gap> gaps_;

  // fast -> slow ring (single producer, single consumer)
  std::uint32_t ring_cap_ = 0;
  std::uint32_t kept_ = 0;  // frames the updater keeps in place (slots held by the slow path)
  HugeBuffer ring_pixels_;  // ring_cap_ frames of pixels (hundreds of MiB at 512 x 512)
  std::vector<float> ring_act_, ring_bg_;
  std::vector<std::uint8_t> ring_has_model_;
  std::vector<std::int32_t> ring_next_slot_;  // the fast path model's next_slot for each frame
  std::vector<std::uint64_t> ring_frame_;
  // The motion stage's "shifts" lane when one runs before this stage (-1: none), and each ring
  // slot's shift (dy, dx) for the updater (CnmfUpdater::set_motion).
  int shifts_in_lane_ = -1;
  std::vector<float> ring_shift_;
  // Per ring slot, as /fit/quality codes it (nmf::CnmfFrameOutput::exclusion): 1 when the tracker
  // (fast path or catch-up) excluded the frame as one the model cannot explain
  // (CnmfOptions::outlier_residual_ratio), 2 when the source marked it bad (kFrameMarkedBad; set
  // by the fast path also before it has a model, for the initialisation's batch and the
  // catch-up). The slow path does not add a frame with a non-zero entry.
  std::vector<std::uint8_t> ring_excluded_;
  // The ring positions of the last kept_ frames added to the updater (oldest at added_head_ -
  // added_n_): with excluded frames left out, the updater's kept frames reach further back than
  // kept_ positions, and the ring releases slots only behind the oldest of them (so their
  // ring_frame_ entries still hold their frame indices). At most max_skip_ excluded frames are
  // left out per kept_ added (ring_cap_ has room for them); an excluded frame beyond that is
  // added after all (counted in excluded_added_).
  std::vector<std::uint64_t> added_pos_;
  std::uint32_t added_head_ = 0, added_n_ = 0, max_skip_ = 0;
  // The ring position of the `back`-th most recent frame added (1: the last; <= added_n_).
  std::uint64_t added_pos(std::uint32_t back) const {
    const std::size_t cap = added_pos_.size();
    return added_pos_[(added_head_ + cap - back) % cap];
  }
  // The oldest ring position the updater may still read (slow path).
  std::uint64_t oldest_kept(std::uint64_t pos) const;
  // With StageContext::frame_valid_until_after_frame (the pipeline), the frame's copy into its
  // ring slot is made in after_frame(), outside the frame's latency: process() keeps lane 0's
  // first copy_used_ floats (overwritten with the traces) in copy_head_ and notes the frame and
  // slot; finish_copy() copies and only then publishes the slot (head_). Processing thread.
  bool defer_copy_ = false;
  std::vector<float> copy_head_;
  const float* copy_px_ = nullptr;  // the frame whose copy is due; null: none
  std::uint32_t copy_slot_ = 0, copy_used_ = 0;
  void finish_copy();
  alignas(64) std::atomic<std::uint64_t> head_{0};
  alignas(64) std::atomic<std::uint64_t> tail_{0};
  std::atomic<bool> stop_{false};
  std::thread slow_;
  std::vector<unsigned> slow_cpus_;  // StageContext::slow_cpus

  // slow path
  nmf::CnmfUpdater updater_;
  Eigen::MatrixXf init_movie_;
  nmf::CnmfInitResult init_;
  nmf::CnmfBatchScreen init_screen_;  // the batch's outlier frames (left out of the initialisation)
  std::vector<std::uint8_t> init_marked_;  // per batch frame: marked bad by the source
  Eigen::SparseMatrix<float> seeds_;  // init_from's footprints (P x K0), empty without it
  bool initialised_ = false;
  std::string slow_error_;
  // Catch-up: the initial model run by the slow path on the frames it receives before the fast
  // path has a model (at most first_lag of them, contiguous from init_frames).
  nmf::CnmfTracker catch_tracker_;
  Eigen::MatrixXf catch_raw_, catch_den_, catch_spk_, catch_dff_, catch_bg_;  // K0 x first_lag, nb x first_lag
  Eigen::MatrixXf catch_fit_;  // first_lag x 2: residual, excluded (/fit/quality's rows)
  std::uint64_t catch_count_ = 0;
  // With update_threads > 1 (replays with a spare core) the catch-up tracking runs on a helper
  // ahead of the slow path, which folds each frame once the helper is past it: ring positions
  // < catch_next_ are tracked, their activations in ring_act_/ring_bg_. The helper stops at the
  // first frame the fast path had a model for, or at the end of the stream; then
  // catch_finished_, and the slow path (after joining it) tracks any rest itself.
  void catch_loop(std::uint64_t first);
  void track_catch_up(std::uint64_t t, std::uint32_t slot);
  std::thread catch_helper_;
  alignas(64) std::atomic<std::uint64_t> catch_next_{0};
  std::atomic<bool> catch_finished_{false};
  std::uint64_t slow_pos_ = 0;  // ring position of the frame slow_frame() is processing
  volatile std::uint32_t warm_sink_ = 0;  // keeps do_warm()'s reads

  // results / stats
  mutable std::mutex final_mutex_;
  nmf::CnmfModel final_model_;
  std::atomic<int> k_{0};
  std::atomic<float> radius_used_{0};  // soma radius the initialisation ran at (0 before it)
  std::atomic<std::uint64_t> updates_{0}, dropped_{0}, added_{0}, merged_{0}, removed_{0};
  // Frames excluded as outliers (fast path and catch-up), and those of them the slow path had to
  // add all the same (max_skip_).
  std::atomic<std::uint64_t> excluded_{0}, excluded_added_{0};
  std::atomic<std::uint64_t> marked_{0};  // of the excluded: marked bad by the source
  std::atomic<int> unrecorded_{0};  // most components alive at once without a result row
};

}  // namespace rtnmf::imaging
