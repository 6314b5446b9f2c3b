// Online NMF after Mairal, Bach, Ponce & Sapiro (2010), for streams: one sample x at a time.
//
// Letters: x a sample (features), W the dictionary — Synergies (muscles × K) — h the activations
// of x (K), A = Σ λ^(t−s) h_s h_sᵀ (K × K) and B = Σ λ^(t−s) x_s h_sᵀ (features × K) the
// sufficient statistics, λ the forgetting factor (1 = remember everything; effective memory
// 1/(1−λ) samples). Memory is O(features × K), independent of stream length.
//
// The W update is block coordinate descent on the surrogate
//   1/2 tr(Wᵀ W A) − tr(Wᵀ B) + l1_w Σ W + l2_w/2 ‖W‖²,   W ≥ 0,
// warm-started from the current W, one column at a time:
//   w_k ← max(0, (B_k − W A_k + A_kk w_k − l1_w) / (A_kk + l2_w)),  then w_k ← w_k / max(1, ‖w_k‖)
// (the unit-ball constraint of Mairal et al. fixes the scale ambiguity; optional).
//
// Fast path / slow path. A streaming stage splits the work across threads, each holding its own
// instance (no sharing, no locks inside):
//   processing thread:  online.activations(x, h)        // NNLS with the current W; no allocation
//                       queue (x, h) to the updater; at a frame boundary, if a new model is ready:
//                       online.set_model(w_new, gram_new) // copies; no allocation (same K)
//   updater thread:     learner.accumulate(x, h)         // A, B with forgetting; no allocation
//                       learner.update_dictionary()      // BCD on W, recomputes the Gram
//                       publish learner.dictionary(), learner.gram() (copies) to the fast path
// Single-threaded users call partial_fit(x, h), which does all three.
//
// Frozen mode (closed loop): update_dictionary() leaves W untouched; statistics still accumulate,
// so unfreezing resumes learning. Components can be added (e.g. from a residual search) and
// retired (e.g. when their activation energy diag(A) has decayed); both allocate (slow path).
//
// Thread rules: an instance is used by one thread at a time. Errors: shape mismatches throw
// std::invalid_argument (only in the allocating calls; the hot calls check nothing in Release).
#pragma once

#include <Eigen/Core>
#include <cstdint>

#include "engine/nmf/nnls.h"

namespace rtnmf::nmf {

struct OnlineNmfOptions {
  float forgetting = 1.f;    // λ ∈ (0, 1], applied once per sample
  // Mairal et al.'s ρ: the statistics are also scaled by (1 − 1/t)^ρ at sample t, so the first
  // samples (activated by a still-random W) fade polynomially even with λ = 1. 0 disables it.
  float warmup_power = 1.f;
  NnlsOptions activations;   // solver, l1/l2 on h, iterations
  float l1_w = 0.f;
  float l2_w = 0.f;
  int dictionary_sweeps = 1;  // BCD passes over the columns per update_dictionary()
  bool unit_ball = true;      // project each column onto ‖w_k‖₂ ≤ 1
  int update_every = 1;       // partial_fit: update W after this many samples
};

class OnlineNmf {
 public:
  // Allocates W (zeros until set_dictionary/initialize_random), A, B and the solver workspace.
  OnlineNmf(Eigen::Index features, Eigen::Index k, const OnlineNmfOptions& options = {});

  // Seeded random non-negative W with unit-norm columns; clears the statistics. Allocates nothing
  // beyond the instance. Slow path.
  void initialize_random(std::uint64_t seed);
  // Starts from data instead of a random W: a short batch HALS fit of `x` (features × n, e.g. the
  // first 4K samples of the stream) from a seeded random W, `iterations` outer iterations with one
  // coordinate sweep per factor each, split over `threads`. W becomes the fit's factors (unit ℓ2
  // columns), the statistics A = H Hᵀ and B = X Hᵀ of its activations, and samples_seen() = n,
  // so the stream continues with the next sample. Cost ≈ iterations × 2 n·features·K (at 65,536
  // features, K 100 and n 400: ~0.25 s per iteration on one core); many more iterations than ~10
  // make the start cost more than the stream it prepares. X needs features() rows; K is kept.
  // Allocates (slow path). Returns the fit's relative error on `x`.
  double initialize_from_data(const Eigen::Ref<const Eigen::MatrixXf>& x, int iterations = 10,
                              std::uint64_t seed = 0, int threads = 1);
  // Sets W (features × K; K may differ from the current one, then everything is re-sized and the
  // statistics cleared), recomputes the Gram. Allocates only when the shape changes (the Gram
  // product may use Eigen's GEMM workspace). Slow path.
  void set_dictionary(const Eigen::Ref<const Eigen::MatrixXf>& w);
  // Fast-path model swap: W with its Gram precomputed by the slow path. Does not allocate when
  // the shape is unchanged; throws std::invalid_argument on a different shape.
  void set_model(const Eigen::Ref<const Eigen::MatrixXf>& w,
                 const Eigen::Ref<const Eigen::MatrixXf>& gram);

  // ---- fast path ----
  // Activations of x against the current W (NNLS, warm-started from h's content). Does not
  // allocate. Processing thread.
  NnlsResult activations(const Eigen::Ref<const Eigen::VectorXf>& x,
                         Eigen::Ref<Eigen::VectorXf> h);

  // ---- slow path ----
  // A ← λA + h hᵀ, B ← λB + x hᵀ. Does not allocate.
  void accumulate(const Eigen::Ref<const Eigen::VectorXf>& x,
                  const Eigen::Ref<const Eigen::VectorXf>& h);
  // A mini-batch (columns of X and H): A ← λ^n A + H Hᵀ, B ← λ^n B + X Hᵀ (decay inside the batch
  // is ignored). May allocate GEMM workspace.
  void accumulate_batch(const Eigen::Ref<const Eigen::MatrixXf>& x,
                        const Eigen::Ref<const Eigen::MatrixXf>& h);
  // Block coordinate descent on W from the statistics (no-op when frozen or before any sample),
  // then Gram and solver refresh. Does not allocate in our code; Eigen may use GEMM workspace
  // for the Gram of large dictionaries.
  void update_dictionary();

  // activations + accumulate + update_dictionary every `update_every` samples.
  NnlsResult partial_fit(const Eigen::Ref<const Eigen::VectorXf>& x,
                         Eigen::Ref<Eigen::VectorXf> h);
  // A mini-batch: activations per column (warm from H's content), accumulate_batch,
  // update_dictionary. H must be K × n. May allocate.
  void partial_fit_batch(const Eigen::Ref<const Eigen::MatrixXf>& x,
                         Eigen::Ref<Eigen::MatrixXf> h);

  // ---- components (slow path, allocate) ----
  // Appends a component with initial column w (features); its statistics start at 0. Returns its
  // index.
  Eigen::Index add_component(const Eigen::Ref<const Eigen::VectorXf>& w);
  // Removes component k (column of W and B, row/column of A).
  void retire_component(Eigen::Index k);

  void set_frozen(bool frozen) { frozen_ = frozen; }
  bool frozen() const { return frozen_; }
  // Clears A, B and the sample count (keeps W).
  void reset_statistics();

  Eigen::Index features() const { return w_.rows(); }
  Eigen::Index rank() const { return w_.cols(); }
  const Eigen::MatrixXf& dictionary() const { return w_; }
  const Eigen::MatrixXf& gram() const { return solver_.gram(); }
  const Eigen::MatrixXf& stats_a() const { return a_; }
  const Eigen::MatrixXf& stats_b() const { return b_; }
  // Decayed activation energy per component, diag(A): near 0 means a component is unused.
  Eigen::VectorXf component_energy() const { return a_.diagonal(); }
  std::int64_t samples_seen() const { return samples_; }
  const OnlineNmfOptions& options() const { return options_; }

 private:
  void refresh_gram();
  float decay_for(std::int64_t t) const;

  OnlineNmfOptions options_;
  Eigen::MatrixXf w_, a_, b_;
  Eigen::VectorXf scratch_;  // features
  Eigen::MatrixXf batch_wtx_;  // K × batch, for partial_fit_batch
  NnlsSolver solver_;
  bool frozen_ = false;
  std::int64_t samples_ = 0;
  int since_update_ = 0;
};

}  // namespace rtnmf::nmf
