// Online CNMF for calcium imaging: Y ≈ A C + B, pure Eigen, no I/O; no threads of its own except
// the optional helpers of the batch initialisation and of the model updates
// (CnmfOptions::init_threads, update_threads; joined before the call returns).
//
// Letters (one frame at a time): P pixels (row * width + column), K neurons, nb background
// components. A Footprints (P x K, sparse, unit ℓ2 columns), b background spatial (P x nb, dense,
// smooth), c the neurons' activations for one frame (K), f the background activations (nb),
// y one registered frame (P). Per frame y ≈ A c + b f with c, f >= 0.
//
// Three pieces, separated so that the fast path never allocates and never waits for the slow one:
//   cnmf_initialize()  batch CNMF on the first frames: greedy seeding on a high-passed, smoothed
//                      movie (peak-to-noise and local correlation), then HALS refinement of
//                      A, C and b f. Produces the first CnmfModel.
//   CnmfTracker        FAST PATH. Holds a pointer to an immutable CnmfModel; per frame: Aᵀy and
//                      bᵀy by sparse/dense products, warm-started HALS on the precomputed Gram of
//                      [A b], online OASIS per neuron, running baseline. No allocation.
//   CnmfUpdater        SLOW PATH. Folds (y, c) pairs into sufficient statistics (CC = Σ c cᵀ,
//                      CY = Σ c yᵀ restricted to each footprint's fixed support, with forgetting)
//                      and a bounded residual buffer; update() produces a new CnmfModel: HALS on
//                      footprints and background, new neurons from the residual (accepted on a
//                      spatial-correlation and SNR test), merging of duplicates, removal of dead
//                      components. Memory depends on P, K and the buffer length, never on T.
// Components keep a stable id across models so traces can be followed through swaps.
#pragma once

#include <Eigen/Core>
#include <Eigen/SparseCore>
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "engine/nmf/oasis.h"
#include "engine/nmf/ring_background.h"
#include "engine/nmf/window_median.h"

namespace rtnmf::nmf {

struct CnmfOptions {
  std::uint32_t height = 0, width = 0;  // frame shape (required)
  double frame_rate_hz = 30.0;
  // Expected soma radius in pixels. Sets the smoothing, patch and support sizes.
  float neuron_radius = 5.0f;
  // Checks neuron_radius against the data at initialisation: when the median size of the
  // components found (estimate_soma_radius) is off by more than kRadiusTolerance, the
  // initialisation is run once more at the estimated radius, which the model updates then use
  // (CnmfInitResult::neuron_radius). With seeds the estimate comes from the seeds' footprints
  // and the initialisation runs once, at it. A ring radius equal to
  // default_ring_radius(neuron_radius) follows the new radius.
  bool auto_radius = false;
  // The largest radius auto_radius may choose (0: largest_neuron_radius). One-photon data set
  // neuron_radius here (sizes only down): on a --one-photon simulator movie of radius-10 somata
  // the initialisation at the estimate (9.5) took ten of the local background's blobs (~1,000
  // pixels each) for somata, F1 0.923 -> 0.864, while radius 4.5 / 5.5 movies gained (session 15).
  float auto_radius_max = 0.0f;
  int background_components = 2;  // nb
  // One-photon data: CNMF-E ring background (ring_background.h) of this radius in pixels instead
  // of the low-rank b f (0 = off; default_ring_radius() gives 1.75 soma radii). The low-rank
  // background (background_components) is still used while seeding the initialisation; the
  // model then has nb = 0 and a ring.
  int ring_radius = 0;
  int max_components = 1000;  // alive at once
  // Output slots over the whole run: the rows of the streamed K x T results and the indices of
  // the published activations. A slot is never reused (a row belongs to one component), so
  // merged, removed and new components use them up: the hour-long 512 x 512 benchmark stream
  // took 600 (500 at the initialisation, 79 added, 94 merged and 11 removed on the way; 925
  // in session 5, before new components' statistics came from the data). A component found
  // once all are taken is tracked without one (unrecorded()).
  int result_rows = 4000;
  // Seeding (initialisation and new neurons): a candidate needs a peak-to-noise ratio of its
  // smoothed high-passed trace >= min_pnr and a local correlation >= min_corr.
  float min_pnr = 6.0f;
  float min_corr = 0.4f;
  // Acceptance of a component after its first fit: trace SNR (peak of the deconvolved trace over
  // the noise of the raw trace) and the correlation between its trace and its pixels.
  float min_snr = 3.0f;
  float min_space_corr = 0.6f;
  // The same test for a neuron found online, stricter: the search takes the best of hundreds of
  // residual maxima over 60 frames, so chance structure (neuropil) passes 0.6 (CaImAn's online
  // default rval_thr is of this order). Computed on what the activity adds over the buffer
  // (the active frames' mean minus the buffer's mean).
  float new_space_corr = 0.85f;
  int init_iterations = 8;        // HALS rounds at initialisation
  // The initialisation takes no seed centred within this many pixels of the frame's edge. Motion
  // correction replicates edge pixels into the strip a shift uncovers, and in a moving field
  // that strip's flicker seeds components that are no neuron; the online_cnmf stage sets it to
  // the largest whole-pixel shift of the initialisation's frames (CaImAn's border_pix). Neurons
  // there are still found by the online search, which tests candidates against the shifts.
  int seed_border_px = 0;
  float decay_time_s = 0.4f;      // indicator decay (GCaMP6f ~0.4 s, GCaMP6s ~1 s); a prior only
  bool estimate_decay = true;     // estimate g from the initial traces (median over neurons)
  // Deconvolution model: 1 = AR(1) (decay only), 2 = AR(2) (rise and decay). AR(2) needs the rise
  // to span more than about one frame (GCaMP6f: ~0.05-0.08 s to rise, i.e. 1.5-2.5 frames at 30 Hz).
  int ar_order = 2;
  float rise_time_s = 0.05f;      // indicator rise time constant (AR(2) only; a prior)
  float s_min_sigma = 1.0f;       // OASIS minimal spike, in units of each trace's noise sd
  // Reported spikes: OASIS spikes of at least this many noise sd of the trace (a detection
  // threshold; smaller ones stay in the denoised trace but are not reported as spikes). Raising
  // s_min instead merges pools and misplaces spikes.
  float spike_threshold_sigma = 3.0f;
  // Fast path: HALS sweeps per frame (warm-started) and relative tolerance.
  int fast_iterations = 5;
  float fast_tolerance = 1e-3f;
  // Frames the model cannot explain (a stimulation light leaking into the detector, a shutter, a
  // garbled frame): a frame whose fit leaves a mean squared residual per pixel above this many
  // times the median of the last kResidualWindow frames' (excluded ones included, so that a lasting
  // change becomes the norm within half the window) is excluded: the tracker holds its traces
  // (deconvolution fed the AR model's prediction, baselines not moved, no spike) and reports it
  // (CnmfFrameOutput::excluded) so that the slow path leaves it out of the statistics and the
  // new-neuron search. Unless the excess is compact: a neuron the model does not have yet, firing
  // in a small field, can raise the residual as much, so the frame is excluded only if the pixels
  // outside the kCompactBlocks blocks (side 4 soma radii) with the most residual are still above
  // the limit. <= 0: off.
  float outlier_residual_ratio = 4.0f;
  // Slow path.
  std::uint32_t residual_buffer = 60;  // frames kept for new-neuron detection
  float forgetting_frames = 3000;      // effective memory of the statistics (frames)
  int max_new_per_update = 5;
  float merge_threshold = 0.85f;       // trace correlation of overlapping components
  bool detect_new = true;
  bool update_footprints = true;
  // Threads for the initialisation's per-frame filters and per-pixel statistics (fixed blocks
  // of frames or pixels: the result is the same for any count). The online CNMF stage uses 2
  // when replaying with no CPUs reserved for frame threads, else 1.
  int init_threads = 1;
  // Threads for the slow path's model updates (the background's smoothing, new-neuron
  // detection's screening, residuals and seeding): fixed blocks again, the same model for any
  // count. The stage sets it as init_threads.
  int update_threads = 1;
};

// The model the fast path uses. Immutable once handed to a tracker.
struct CnmfModel {
  std::uint32_t height = 0, width = 0;
  Eigen::SparseMatrix<float> footprints;  // A, P x K
  Eigen::MatrixXf background;             // b, P x nb
  Eigen::MatrixXf gram;                   // [A b]ᵀ[A b], (K+nb) x (K+nb)
  // The same without its zeros (footprints rarely overlap): the fast path's HALS walks only the
  // neighbours of each component, K·(overlaps + nb) per sweep instead of (K+nb)².
  Eigen::SparseMatrix<float> gram_sparse;
  // One-photon ring background (inactive for two-photon models). When active, nb = 0 and the
  // fast path solves on ring_footprints Ã = (I − W) A; gram is ÃᵀÃ.
  RingBackground ring;
  Eigen::SparseMatrix<float> ring_footprints;
  Eigen::VectorXf g;                      // AR(1) per neuron (AR(2): g1)
  Eigen::VectorXf g2;                     // AR(2) second coefficient per neuron (empty or 0: AR(1))
  Eigen::VectorXf s_min;                  // OASIS minimal spike per neuron
  Eigen::VectorXf baseline;               // initial baseline per neuron
  Eigen::VectorXf noise;                  // noise sd of each neuron's raw trace
  // The background under each footprint in trace units (its least-squares coefficient on the
  // footprint), for dF/F's resting fluorescence: K x nb, (a_kᵀ b_j) / (a_kᵀ a_k), times f(t);
  // for the ring model (nb = 0) K x 1, (a_kᵀ b0) / (a_kᵀ a_k), its constant baseline only (the
  // tracker uses the ring's per-frame estimate instead; this serves the initialisation's frames).
  // Set by finalize().
  Eigen::MatrixXf background_under;
  // a_kᵀ a_k per footprint, for ring models only (empty otherwise): the denominator of the
  // tracker's per-frame background under each footprint, constant per model. Set by finalize().
  Eigen::VectorXf footprint_norm2;
  std::vector<std::uint64_t> ids;         // stable component ids, ascending
  std::uint64_t next_id = 0;
  // Output slot of each component (row of the streamed K x T results), -1 = not recorded. A
  // slot is never reused, so each result row belongs to one component for the whole run.
  std::vector<std::int32_t> slots;
  std::int32_t next_slot = 0;
  // The typical mean squared residual per pixel of a frame's fit (CnmfFrameOutput::residual):
  // the median over the initialisation's last kResidualMinHistory frames, carried by later
  // models. The outlier test's reference until a tracker has that many frames of its own (a
  // tracker keeps its history across models). 0: unknown.
  float typical_residual = 0;
  int k() const { return static_cast<int>(footprints.cols()); }
  int nb() const { return static_cast<int>(background.cols()); }
  // Components without a result row (found after all result_rows rows were taken): tracked,
  // so they still explain their light, but neither recorded nor published.
  int unrecorded() const { return static_cast<int>(std::count(slots.begin(), slots.end(), -1)); }
  // Recomputes gram and gram_sparse from footprints and background. Allocates.
  void finalize();
};

// What the initialisation produced besides the model (the traces over the initial frames).
// Reads one byte of every cache line of the arrays CnmfTracker::process walks (footprints, ring
// footprints, background, sparse Gram): call it on the tracking thread for a model another
// thread built, between frames, so the first frame using it does not pay for the transfer.
// No allocation. Returns a value derived from the bytes (so the reads are not optimised away).
std::uint32_t touch_model(const CnmfModel& m);

struct CnmfInitResult {
  CnmfModel model;
  Eigen::MatrixXf traces;      // K x T0 raw activations c
  Eigen::MatrixXf background_traces;  // nb x T0
  // Per neuron: the pixels (sorted) its footprint may occupy; fixed for its lifetime.
  std::vector<std::vector<std::int32_t>> supports;
  // The soma radius the initialisation ran at (options.neuron_radius unless auto_radius changed
  // it; CnmfUpdater::init then uses this one) and, with auto_radius, the estimate from the
  // first run's components (0: not estimated, too few components).
  float neuron_radius = 0;
  float radius_estimate = 0;
  int ring_radius = 0;  // likewise for options.ring_radius
};

// auto_radius: estimates within [1 - kRadiusTolerance, 1 + kRadiusTolerance] x neuron_radius keep
// the first run. The initialisation at radius 5 on 256 x 256 x 1500 simulator movies (shapes with
// nuclei, irregular outlines, size jitter; session 13): somata of radius 5 estimate 4.7-5.3 (hard,
// 200 crowded neurons, 15 and 60 Hz included), radius 6 5.8-6.1, radius 7 6.2, radius 3.5 3.8.
constexpr float kRadiusTolerance = 0.15f;
// Fewest components that give an estimate.
constexpr int kRadiusMinComponents = 10;

// Largest soma radius a height x width frame allows, a quarter of its shorter side: the online
// CNMF stage refuses a larger neuron_radius, and auto_radius never goes above it.
inline float largest_neuron_radius(std::uint32_t height, std::uint32_t width) {
  return 0.25f * static_cast<float>(std::min(height, width));
}

// Median over the footprints (columns, pixel = row * width + column) of the radius of a disc
// with the area of the pixels at or above half the footprint's peak, sqrt(area / pi): the soma
// radius a component of that footprint has (a uniform disc of radius r gives r). Footprints
// whose half-peak pixels reach the frame's edge are left out (cut off by it). 0 when fewer than
// kRadiusMinComponents footprints are left. Allocates.
float estimate_soma_radius(const Eigen::SparseMatrix<float>& footprints, std::uint32_t height, std::uint32_t width);

// Batch CNMF on `frames` (P x T0, columns are registered frames). Allocates O(P T0). Any thread.
// Throws std::invalid_argument when the shape does not match the options.
// `seeds` (P x K0, e.g. an earlier result's /footprints; empty columns are skipped): seeded
// initialisation, as CaImAn's Ain. These footprints replace the greedy seeding, are refined on
// `frames` and kept without the acceptance tests, also when silent in `frames` (duplicates among
// them are merged); neurons they miss are then searched in the residual unless
// options.detect_new is false. Their order is kept (less empty columns and merged duplicates),
// ahead of any found in the residual. Throws std::invalid_argument when seeds has not P rows.
CnmfInitResult cnmf_initialize(Eigen::Ref<const Eigen::MatrixXf> frames, const CnmfOptions& options,
                               const Eigen::SparseMatrix<float>* seeds = nullptr);

// The batch's frames the model cannot explain (CnmfOptions::outlier_residual_ratio: stimulation
// light, a shutter), found by cnmf_initialize_screened: per frame of the batch, the residual of
// a tracker run with the first initialisation's model and whether the outlier test excluded it;
// `kept` frames were left (the first columns of the batch afterwards).
struct CnmfBatchScreen {
  std::vector<float> residual;          // NaN for marked frames (not fitted)
  std::vector<std::uint8_t> excluded;   // 1: by the outlier test; 2: marked bad by the source
  Eigen::Index kept = 0;
  // Marked frames taken after all: too few others were left (fewer than a third of the batch
  // or than kResidualMinHistory), so the marks were ignored. 0 when they were honoured.
  Eigen::Index marks_ignored = 0;
};

// cnmf_initialize without the batch's outlier frames: initialises on all of `frames`, runs a
// tracker with that model over them (the outlier test on, its reference the batch's median
// residual until it has a history of its own) and, when it excluded frames (at most a third; more
// are taken for a change of regime and kept), moves the others to the front of `frames` and
// initialises again on those `screen.kept` columns. The result's traces then cover the kept
// frames (CnmfUpdater::init wants them with frames.leftCols(kept)); expand_screened_traces()
// spreads them back over every frame. Costs two passes of the tracker over the batch, and a second
// initialisation only when frames were excluded. Allocates.
// `marked` (one entry per frame, non-zero: the source marked it bad) takes those frames out
// before anything else, unless fewer than a third of the batch would be left.
CnmfInitResult cnmf_initialize_screened(Eigen::MatrixXf& frames, const CnmfOptions& options,
                                        const Eigen::SparseMatrix<float>* seeds, CnmfBatchScreen& screen,
                                        const std::vector<std::uint8_t>* marked = nullptr);
// Traces and background traces of a screened initialisation over every frame of its batch, an
// excluded frame holding the values of the kept frame before it (the first kept frame's before
// that).
void expand_screened_traces(CnmfInitResult& init, const CnmfBatchScreen& screen);

// The fast path's running baseline per component (CnmfTracker): the quantile it tracks, the
// fraction of recent frames below it beyond which its downward step grows, the rate of that
// running fraction (per frame), the growth per unit of fraction, and the largest multiple of the
// step. With a 40 s bleaching time constant (a 50 s movie ending at 29 % of its start) the fixed
// step left baselines up to ~20 noise sd above the traces (median trace correlation 0.842 on
// `rtnmf simulate calcium ... --bleaching-tau 40`, 0.908 with this; the one-photon test movie
// RingBackground seed 3 0.959 -> 0.950: components whose traces dip for seconds follow the dip).
constexpr float kBaselineQuantile = 0.3f;
constexpr float kBaselineFallFraction = 0.5f;
constexpr float kBaselineFallRate = 0.005f;
constexpr float kBaselineFallGain = 100.0f;
constexpr float kBaselineMaxBoost = 64.0f;
// dF/F's background term uses the background activations f smoothed over this many seconds
// (exponential average): neuropil flickers at ~1 s and would make F0 (and dF/F) noisy, bleaching
// takes tens of seconds.
constexpr double kDffBackgroundTauS = 3.0;

// Per-frame outputs of the tracker, K_max long (the first model.k() entries are valid).
struct CnmfFrameOutput {
  Eigen::VectorXf raw;        // c - baseline (before deconvolution)
  Eigen::VectorXf denoised;   // OASIS c
  Eigen::VectorXf spikes;     // OASIS s
  Eigen::VectorXf activation; // c as solved (with baseline): what the slow path needs
  Eigen::VectorXf background; // f (nb)
  // denoised / F0, F0 = running baseline + background under the footprint (resting_fluorescence)
  Eigen::VectorXf dff;
  // Mean squared residual per pixel of the frame's fit, ||y - A c - b f||^2 / P (one-photon ring
  // model: of the ring-filtered frame), and whether the frame was excluded as an outlier
  // (CnmfOptions::outlier_residual_ratio; activation and raw are then the fit, denoised and dff
  // held, spikes 0), or because its source marked it bad (`marked`; excluded too).
  float residual = 0;
  bool excluded = false;
  bool marked = false;
  // As /fit/quality's column records it: 0 kept, 1 excluded by the outlier test, 2 marked bad.
  std::uint8_t exclusion() const { return marked ? 2 : excluded ? 1 : 0; }
};

// Frames of residual history behind the outlier test, and how many it needs before it judges
// (before that: CnmfModel::typical_residual). A soma covers at most kCompactBlocks of the blocks
// the test's spatial check divides the frame into.
constexpr int kResidualWindow = 100;
constexpr int kResidualMinHistory = 30;
constexpr int kCompactBlocks = 4;

// The background under neuron k's footprint in trace units from m.background_under: with a
// low-rank background (nb > 0) times the background activations `f` (nb of them, averaged over
// kDffBackgroundTauS); for the ring model the constant part b0 (`f` unused; the tracker has the
// ring's per-frame estimate instead). 0 when the model has none.
inline float background_under_footprint(const CnmfModel& m, int k, const float* f) {
  if (m.background_under.rows() != m.k()) return 0.0f;
  if (m.nb() == 0) return m.background_under.cols() > 0 ? m.background_under(k, 0) : 0.0f;
  float u = 0;
  for (int j = 0; j < m.nb(); ++j) u += m.background_under(k, j) * f[j];
  return u;
}

// dF/F's denominator for neuron k of model m: its running baseline plus the background under its
// footprint, floored at the neuron's noise sd so that a baseline near zero cannot blow dF/F up.
// As CaImAn's detrend_df_f divides by the baseline of C plus the background projected on A; both
// follow bleaching, so dF/F does not fade with it.
inline float resting_fluorescence(const CnmfModel& m, int k, float baseline, float background) {
  return std::max(baseline + background, m.noise.size() > k ? m.noise(k) : 1e-6f);
}

class CnmfTracker {
 public:
  // Sizes every per-frame buffer for up to max_components neurons and nb background components.
  // Allocates. Not for the hot path.
  void init(const CnmfOptions& options, int nb);
  // Switches to a (new) model at a frame boundary (call it whenever the model changed, even at the
  // same address); state (warm start, OASIS pools, baselines) follows
  // components by id, new components start fresh. Does not allocate (K <= max_components,
  // else throws std::length_error before touching any state). Processing thread.
  void set_model(const CnmfModel* model);
  // One registered frame (P floats). `squared_norm`: the frame's sum_squares (squares.h) when
  // the caller has it (copy_sum_squares), which saves a pass over the frame; negative: computed
  // here. `marked`: the source marked the frame bad (stimulation light): excluded whatever its
  // residual, which then stays out of the test's history. Does not allocate, lock or log.
  // Processing thread.
  void process(const float* frame, double squared_norm = -1.0, bool marked = false);
  // Reads what the next process() will use besides the model (touch_model) into the caches: the
  // per-component state and each trace's last deconvolution pool. Changes nothing; the return
  // value only keeps the reads. Between frames, processing thread.
  std::uint32_t warm() const;
  const CnmfFrameOutput& output() const { return out_; }
  const CnmfModel* model() const { return model_; }
  std::uint64_t frames() const { return t_; }

 private:
  CnmfOptions options_;
  const CnmfModel* model_ = nullptr;
  int kmax_ = 0, nb_ = 0;
  std::uint64_t t_ = 0;
  Eigen::VectorXf rhs_, x_, scratch_;  // (kmax + nb)
  Eigen::VectorXf ring_z_, ring_scratch_;  // P (ring background only)
  Eigen::VectorXf baseline_, baseline_scale_;
  // Per component: running fraction of frames below the baseline's level (~200-frame memory),
  // which sets the multiplier of its downward step (above kBaselineFallFraction).
  Eigen::VectorXf baseline_below_;
  Eigen::VectorXf f_smooth_;  // nb: background activations averaged over kDffBackgroundTauS
  // Ring model: each component's background under its footprint, a_kᵀ(y − z) / a_kᵀa_k with
  // z = (I − W)(y − b0), so y − z = b0 + W(y − b0): the ring's background estimate plus W A c
  // (the components' activity seen through the ring, mostly averaged away), averaged over
  // kDffBackgroundTauS; NaN until a component's first frame.
  Eigen::VectorXf ring_under_;
  float f_alpha_ = 1.0f;
  Eigen::VectorXf y_in_, c_out_, s_out_;
  // The denoised traces two frames back (c_out_ holds the last frame's; with it the AR prediction
  // fed to the deconvolution on an excluded frame) and the warm start before this frame's sweeps
  // (restored on one).
  Eigen::VectorXf c_prev_, x_prev_;
  // Residuals of the last kResidualWindow frames.
  WindowMedian<kResidualWindow> resid_hist_;
  // The outlier test's spatial check (a frame over the limit only): the fit's residual per pixel
  // (P) and per block (block_side_ pixels square, blocks_h_ x blocks_w_; edge blocks partial),
  // and whether the pixels outside the kCompactBlocks blocks with the most residual are above
  // `limit` per pixel.
  Eigen::VectorXf resid_px_;
  std::vector<double> block_energy_;
  int block_side_ = 8, blocks_h_ = 0, blocks_w_ = 0;
  bool residual_is_widespread(const float* frame, double limit);
  std::vector<std::uint64_t> ids_;     // ids of the current slots
  OnlineOasis oasis_;
  CnmfFrameOutput out_;
};

namespace detail {
// A run of consecutive pixels of a sorted support: first pixel, position in the support, length.
struct SupportRun {
  std::int32_t pixel, offset, length;
};
}  // namespace detail

// Slow path. Owns the statistics; produces new models. One thread (the updater thread).
class CnmfUpdater {
 public:
  // Starts from an initialisation: statistics from its frames and traces, at the soma radius
  // (and ring radius) the initialisation ran at when it says so (init.neuron_radius > 0), else
  // at options'. Allocates.
  void init(const CnmfOptions& options, const CnmfInitResult& init,
            Eigen::Ref<const Eigen::MatrixXf> init_frames);
  // Folds one frame and the activations the fast path found for it, by output slot
  // (`by_slot[slot]`, components without a slot or absent from the fast path's model count as 0)
  // and the nb background activations. Allocates only when K changed since the last call.
  void add_frame(const float* frame, Eigen::Ref<const Eigen::VectorXf> by_slot,
                 Eigen::Ref<const Eigen::VectorXf> background);
  // The same without copying the frame: the updater keeps the pointer, and the caller keeps
  // the P values there unchanged until residual_buffer() more frames have been added (new
  // neurons are searched in the last residual_buffer() frames). With the ring background the
  // frame is copied anyway (the updater keeps y minus the ring background).
  void add_frame_kept(const float* frame, Eigen::Ref<const Eigen::VectorXf> by_slot,
                      Eigen::Ref<const Eigen::VectorXf> background);
  // The fast path's model for the frame the next add_frame call brings had the components with
  // result slots below `next_slot` (its CnmfModel::next_slot). For the others with a slot -
  // found by an update whose model had not taken effect yet (model_lag_frames) - that call
  // estimates the activation from the frame (the footprint's least-squares fit to the frame less
  // the tracked neighbours and the background, at least 0) for the result file
  // (untracked_last()). The statistics still count them as 0 in those frames (feeding them the
  // estimate was tried: F1 +0.001 on average over 28 movies, mean trace correlation mixed).
  // With the ring background, on the frame less its ring background. Not called: every
  // component counts as tracked.
  void set_tracked_slots(std::int32_t next_slot) { tracked_next_slot_ = next_slot; }
  // (slot, estimated activation) of the components the fast path did not track in the frame
  // the last add_frame call brought (set_tracked_slots).
  const std::vector<std::pair<std::int32_t, float>>& untracked_last() const { return untracked_last_; }
  // The registration shift (rows, columns) of the frame the next add_frame call brings. Frames
  // whose shifts were given let the new-neuron search refuse candidates whose activity over the
  // buffer the motion explains (strips along the edges, where registration replicates pixels).
  void set_motion(float dy, float dx) {
    motion_next_[0] = dy;
    motion_next_[1] = dx;
  }
  std::uint32_t residual_buffer() const { return ring_n_; }
  // What residual_buffer() will be for `options` (callers size their own rings by it).
  static std::uint32_t residual_buffer(const CnmfOptions& options) {
    return std::max<std::uint32_t>(10, options.residual_buffer);
  }
  // Builds the next model into `out` from the statistics (footprint and background HALS, new
  // neurons, merges, removals). Allocates. Deterministic given the frames added.
  void update(CnmfModel& out);
  // The new-neuron search alone, where an update is due but its model could not be used (the
  // online_cnmf stage's first model takes effect after a longer lag than the updates', and
  // the update frames inside it get no update): what it finds joins the statistics at once and
  // the model at the next update() (added_last() and born_last() report it). Allocates.
  void search();
  const CnmfModel& current() const { return model_; }
  std::uint64_t frames_seen() const { return t_; }
  // Diagnostics of the last update() or search().
  int added_last() const { return added_last_; }
  // Patches searched for new neurons by the last update or search (at most 2 x
  // max_new_per_update; 0 when the frame is small enough to be searched whole).
  int patches_last() const { return patches_last_; }
  int merged_last() const { return merged_last_; }
  int removed_last() const { return removed_last_; }
  // The components with a result row that the last update() merged into another or removed,
  // each with the footprint it had then (the result file keeps them apart from the final ones).
  struct Retired {
    std::uint64_t id = 0;
    std::int32_t slot = -1;
    std::int64_t merged_into = -1;  // the id that absorbed it; -1: removed
    std::uint64_t frame = 0;        // frames_seen() at that update
    std::vector<std::int32_t> pixels;
    std::vector<float> values;
  };
  const std::vector<Retired>& retired_last() const { return retired_last_; }
  // The components with a result row that the last update() or search() found, each with its
  // trace over the residual buffer its detection used (the last residual_buffer() frames
  // added, oldest first: activity the fast path could not report, the component not being in its
  // model yet) and its deconvolution parameters.
  struct Born {
    std::int32_t slot = -1;
    std::vector<float> trace;
    float base = 0;  // subtracted from the trace (its baseline over the buffer), before the clip at 0
    float g = 0, g2 = 0, s_min = 0, noise = 0;
  };
  const std::vector<Born>& born_last() const { return born_last_; }

 private:
  void fold();
  void fold_pixels(const std::uint32_t* cols, std::uint32_t m, float scale,
                   const Eigen::Ref<const Eigen::MatrixXf>& w);
  void store_frame(const float* frame, bool keep);  // keep: frame_ptr_ points at `frame`, no copy
  void block_means(const float* acc, int rows, float* l) const;
  void detect_new_components();
  // Candidate neurons in the residual, restricted to square patches around the peaks of a
  // block-averaged residual; each patch searched like the initialisation. Allocates.
  void detect_in_patch(int y0, int x0, int ph, int pw, int want);
  // Fraction of the variance of a candidate's trace `c` (over the ring columns `cols`) that the
  // frames' shifts explain. A spot of replicated border pixels follows the motion (the false
  // components at the borders: 0.64-0.82). A neuron's activity does not over a whole movie (the
  // found true neurons' traces over a hard movie with 6 px of motion: R² ≤ 0.45, 99 % ≤ 0.11),
  // but over a 60-frame buffer a burst's rise and decay often correlate with the slowly
  // wandering shifts by chance: hard movies seeds 11-18, candidates with R² > 0.5 that were true
  // neurons reached 0.92, so the test applies only in the strip registration replicates into
  // (in_motion_strip).
  float motion_r2(const Eigen::VectorXf& c, const std::vector<std::uint32_t>& cols) const;
  static constexpr float kMotionR2 = 0.5f;
  // Whether frame pixel `p` lies within ceil(largest |shift| over the ring columns `cols`)
  // pixels of the frame's edge. Hard movies seeds 11-18 (6 px of motion): the border spots the
  // test refused peaked 0-2 px from the edge; true neurons it refused peaked 3-112 px from it.
  bool in_motion_strip(std::int32_t p, const std::vector<std::uint32_t>& cols) const;
  void merge_components();
  void remove_components();
  // After components were added, merged or removed (or shapes changed): the model, the support
  // runs and the untracked components' neighbour sets follow.
  void components_changed();
  void update_shapes();
  void rebuild_model();
  // Drops component k; merged_into: the id that absorbed it, -1 when removed (retired_last_).
  void erase_component(int k, std::int64_t merged_into);

  CnmfOptions options_;
  CnmfModel model_;
  std::uint64_t t_ = 0;
  int nb_ = 0;
  float lambda_ = 1.0f;
  // Per neuron, by index (ids in model_.ids): support (pixels, sorted, fixed), footprint values
  // on it, statistic CY = Σ c_k y[support] (forgetting).
  std::vector<std::vector<std::int32_t>> support_;
  std::vector<Eigen::VectorXf> values_;
  std::vector<Eigen::VectorXf> cy_;
  std::vector<std::uint64_t> born_;            // t_ when each joined (0: the initialisation's)
  Eigen::MatrixXf bg_;                         // P x nb
  Eigen::MatrixXf cy_bg_;                      // P x nb: Σ f_b y
  Eigen::MatrixXf cc_;                         // (K+nb)^2: Σ x xᵀ, x = [c; f]
  // The last N frames (P x N ring), the same block-averaged by ds_ x ds_ (hl_*wl_ x N, for
  // screening the residual for new neurons) and their activations [c; f]. The newest pending_
  // frames are not yet folded into the statistics: fold() does it in one batch (a GEMM over the
  // ring instead of P x nb work per frame), when the ring is full and before each update.
  Eigen::MatrixXf frames_;
  std::vector<const float*> frame_ptr_;  // column j of the ring: frames_.col(j) or a kept frame
  std::uint32_t ring_n_ = 0;             // ring length (residual_buffer)
  std::uint32_t kept_run_ = 0;           // frames added in place since the last copied one
  Eigen::MatrixXf lowres_;
  std::vector<std::uint8_t> lowres_due_;  // per ring column: block means not yet summed (fold)
  Eigen::MatrixXf buffer_x_;                   // (K+nb) x N
  Eigen::MatrixXf motion_;                     // 2 x N: the frames' shifts (set_motion, else 0)
  float motion_next_[2] = {0, 0};
  static constexpr std::int32_t kAllTracked = 0x7fffffff;
  std::int32_t tracked_next_slot_ = kAllTracked;
  // Per component the fast path did not track (set_tracked_slots): its neighbours' footprints
  // and the background on its support, rebuilt after each update (estimate_untracked).
  struct Untracked {
    std::vector<int> neighbours;
    Eigen::MatrixXf a_nb;  // |support| x neighbours
    Eigen::MatrixXf b;     // |support| x nb
    float norm2 = 0;
  };
  std::vector<Untracked> untracked_;  // by component index; empty a_nb/b until built
  std::vector<char> untracked_built_;
  std::vector<int> support_pos_;      // P scratch: position in the support being built, -1
  std::vector<std::pair<std::int32_t, float>> untracked_last_;
  void estimate_untracked(const float* frame);
  // The components' activations over the last kHistoryBuffers x N frames (K x that, a ring,
  // 1.2 MB at 500 neurons; merge_components judges touching footprints on it).
  static constexpr std::uint32_t kHistoryBuffers = 10;
  Eigen::MatrixXf hist_x_;
  std::uint32_t hist_pos_ = 0, hist_count_ = 0;
  void push_history(Eigen::Ref<const Eigen::VectorXf> c);  // the next column of hist_x_
  std::uint32_t buf_pos_ = 0, buf_count_ = 0, pending_ = 0;
  int ds_ = 1, hl_ = 1, wl_ = 1;
  // New-neuron search: per block, frames_seen() at the search whose patch there found nothing,
  // 0 if none (detect_new_components).
  std::vector<std::uint64_t> searched_empty_;
  std::vector<float> searched_score_;  // per block, its screening score when searched_empty_ was set
  Eigen::VectorXf block_scratch_;  // hl_*wl_, zeros between uses (detect_new_components)
  Eigen::VectorXf x_;                          // (K+nb), this frame, mapped to our indices
  Eigen::VectorXf dense_;                      // P scratch
  Eigen::VectorXf row_scratch_;                // width scratch (store_frame)
  // Supports as runs of consecutive pixels (component k's are [run_start_[k], run_start_[k+1])),
  // and the same cut by fold_pixels' groups of rows (group g's are
  // [group_start_[g], group_start_[g+1]), by component).
  struct GroupRun {
    int k;
    detail::SupportRun run;
  };
  std::vector<detail::SupportRun> runs_;
  std::vector<std::size_t> run_start_;
  std::vector<GroupRun> group_runs_;
  std::vector<std::size_t> group_start_;
  void prepare_runs();
  int group_rows() const;
  Eigen::Index group_pixels() const;
  void add(const float* frame, Eigen::Ref<const Eigen::VectorXf> by_slot,
           Eigen::Ref<const Eigen::VectorXf> background, bool keep);
  // Ring background: the frame with it removed, y − A c, scratch, running mean of y − A c (b0).
  Eigen::VectorXf ring_y_, ring_x_, ring_scratch_, ring_mean_;
  int added_last_ = 0, merged_last_ = 0, removed_last_ = 0, patches_last_ = 0;
  std::vector<Retired> retired_last_;
  std::vector<Born> born_last_;
};

namespace detail {
// Separable Gaussian smoothing (sigma px, radius ceil(3 sigma)) of one H x W image, replicated
// borders; `tmp` is scratch of H*W. Does not allocate with threads = 1; with more, rows are split
// over that many threads in fixed blocks (the same output for any count).
void gaussian_filter(const float* in, float* out, float* tmp, int h, int w, float sigma,
                     int threads = 1);
// Box mean over (2r+1)^2 with replicated borders. Does not allocate (tmp H*W).
void box_filter(const float* in, float* out, float* tmp, int h, int w, int r);
// Sets the model's deconvolution coefficients for all K neurons from the decay factor per frame
// `decay_g`: AR(1) g = decay_g, g2 = 0; AR(2) (options.ar_order == 2) adds the rise prior
// r = exp(-1 / (rate * rise_time_s)): g = decay_g + r, g2 = -decay_g r. Allocates.
void set_ar_coefficients(CnmfModel& model, const CnmfOptions& options, float decay_g);
// Ring-background part of CnmfModel::finalize(): Ã, gram and gram_sparse. Allocates.
void finalize_ring(CnmfModel& model);
// End of the initialisation for one-photon data (options.ring_radius > 0): fits the ring
// background to Y − A C and refines C and A against it (nb becomes 0); noise, baselines and s_min
// follow the new traces. Allocates O(P T).
void fit_ring_model(Eigen::Ref<const Eigen::MatrixXf> frames, const CnmfOptions& options,
                    CnmfInitResult& init);
// Frames with the ring background removed: Y − b0 − W (Y − A C − b0), frames split over
// `threads` in fixed blocks (the same values on any count). Allocates.
Eigen::MatrixXf remove_ring_background(const CnmfModel& model, const Eigen::MatrixXf& traces,
                                       Eigen::Ref<const Eigen::MatrixXf> frames, int threads = 1);
// One frame: out = y − b0 − W (y − A c − b0); x_out = y − A c. scratch P. Does not allocate.
void remove_ring_background_frame(const CnmfModel& model, Eigen::Ref<const Eigen::VectorXf> c,
                                  const float* y, float* out, float* x_out, float* scratch);
}  // namespace detail

}  // namespace rtnmf::nmf
