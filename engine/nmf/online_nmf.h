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
#include <vector>

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
  // After each column update, entries of w_k below prune_w × max(w_k) are set to 0, if that
  // leaves at most prune_max_density of the column non-zero (a localised footprint; dense
  // synergy columns are left as they are). For footprints: without it every noise-only pixel
  // keeps a tiny positive weight (48 % of W non-zero at 65,536 pixels, K 100, against 0.2 %
  // planted) and every product with W stays dense. 0 (default) keeps W exactly as the BCD step
  // leaves it. With prune_w > 0, initialize_from_data takes the sparse start (see there).
  float prune_w = 0.f;
  float prune_max_density = 0.25f;
  // W is handled as sparse (per-column supports; the Gram and the BCD step cost nnz(W) instead
  // of features × K per column) when its fraction of non-zero entries, measured at each
  // dictionary refresh, is at most sparse_max_density; Wᵀ X of a mini-batch is taken from the
  // supports when the density is also at most sparse_product_max_density (a gathered
  // multiply-add costs ~30 GEMM ones here). 0: always dense; 1: always sparse. Same result
  // either way up to float summation order.
  float sparse_max_density = 0.25f;
  float sparse_product_max_density = 0.03f;
  // The mini-batch path (partial_fit_batch, accumulate_batch, initialize_from_data) splits its
  // products and activation solves over this many threads in fixed blocks (columns for Wᵀ X and
  // the activations, rows for X Hᵀ): deterministic for a given count; activations are identical
  // across counts, W and B agree to float rounding. The per-sample calls are single-threaded.
  int threads = 1;
  // A product or solve of fewer multiply-adds runs on one thread: a thread start and join costs
  // ~30-50 µs here, and far more when the machine is loaded and the helper waits for a core
  // (64 × 200,000, K 6, whose mini-batch X Hᵀ is 0.4M: two threads made the stream 1.3-2×
  // slower; 512 × 20,000, K 20, 10M: 1.9× slower at load 3.6).
  double parallel_min_work = 32.0 * (1 << 20);
};

class OnlineNmf {
 public:
  // Allocates W (zeros until set_dictionary/initialize_random), A, B and the solver workspace.
  OnlineNmf(Eigen::Index features, Eigen::Index k, const OnlineNmfOptions& options = {});

  // Seeded random non-negative W with unit-norm columns; clears the statistics. Allocates nothing
  // beyond the instance. Slow path.
  void initialize_random(std::uint64_t seed);
  // Starts from data instead of a random W: a short fit of `x` (features × n, e.g. the first
  // 2K–4K samples of the stream), `iterations` HALS rounds; W ends with unit ℓ2 columns, A and
  // B are the statistics of the fit's activations and samples_seen() = n, so the stream
  // continues with the next sample. X needs features() rows; K is kept. Allocates (slow path);
  // split over options().threads. Returns the fit's relative error on `x`.
  // - prune_w = 0: batch HALS (fit_nmf, seeded random W and H, one sweep per factor and round).
  // - prune_w > 0 (sparse start): from a seeded random H and W = 0, each round is the mini-batch
  //   step with the statistics replaced: A = H Hᵀ, B = X Hᵀ, BCD on W with every column pruned,
  //   columns scaled to unit ℓ2 (H, A, B rescaled), one HALS sweep on H from Wᵀ X. W is sparse
  //   from round 0, so rounds cost n·features·K for X Hᵀ plus nnz(W)·n. If W after round 0 has
  //   more than prune_max_density non-zeros (the data are not footprint-like), it restarts as
  //   with prune_w = 0. The error is that of the last round's H with the final W (from A and B).
  double initialize_from_data(const Eigen::Ref<const Eigen::MatrixXf>& x, int iterations = 10,
                              std::uint64_t seed = 0);
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
  // is ignored). B's rows are split over options().threads. May allocate (GEMM workspace,
  // threads).
  void accumulate_batch(const Eigen::Ref<const Eigen::MatrixXf>& x,
                        const Eigen::Ref<const Eigen::MatrixXf>& h);
  // Block coordinate descent on W from the statistics (no-op when frozen or before any sample),
  // then Gram and solver refresh; uses W's column supports when W is sparse (see
  // sparse_max_density). Dense W: does not allocate in our code (Eigen may use GEMM workspace
  // for the Gram of large dictionaries); sparse W: the supports may grow their storage.
  void update_dictionary();

  // activations + accumulate + update_dictionary every `update_every` samples.
  NnlsResult partial_fit(const Eigen::Ref<const Eigen::VectorXf>& x,
                         Eigen::Ref<Eigen::VectorXf> h);
  // A mini-batch: Wᵀ X (sparse or dense W), activations per column (warm from H's content; the
  // same result as activations() per sample), accumulate_batch, update_dictionary. Columns and
  // rows are split over options().threads in fixed blocks. H must be K × n. May allocate.
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
  // Fraction of non-zero entries of W at the last refresh, and whether the mini-batch path uses
  // W as sparse (density ≤ options().sparse_max_density).
  double dictionary_density() const { return density_; }
  bool sparse_dictionary() const { return sparse_; }
  const OnlineNmfOptions& options() const { return options_; }

 private:
  // Gram, density, dense/sparse choice and the solver's copy of W. `supports_current`: W changed
  // only through the BCD sweeps (or a rescaling that kept the supports), so no scan is needed.
  void refresh_gram(bool supports_current = false);
  // update_dictionary's BCD sweeps without the Gram refresh.
  void bcd_sweeps();
  void sparse_column_update(Eigen::Index k, float akk, float l1, float l2);
  // A column is pruned only if it keeps at most this many entries (footprint-like).
  Eigen::Index max_pruned_support() const {
    return static_cast<Eigen::Index>(static_cast<double>(options_.prune_max_density) *
                                     static_cast<double>(w_.rows()));
  }
  double initialize_by_batch_fit(const Eigen::Ref<const Eigen::MatrixXf>& x, int iterations,
                                 std::uint64_t seed);
  float decay_for(std::int64_t t) const;
  // Per-column supports of W (rows and values of the non-zeros) and the density; scans W.
  void rebuild_supports();
  void rebuild_support(Eigen::Index k);
  // out (K × n) = Wᵀ X, sparse or dense by sparse_, columns split over threads.
  void dictionary_transpose_times(const Eigen::Ref<const Eigen::MatrixXf>& x,
                                  Eigen::MatrixXf& out);
  // Activations of every column of H from batch_wtx_ against the current Gram: for K ≤
  // kBatchCdMaxK by solve_batch_cd, else per column with the solver, split over threads.
  void solve_batch(Eigen::Ref<Eigen::MatrixXf> h);
  // Coordinate descent (HALS) on every column at once, warm from H's content: per coordinate one
  // (batch × K)(K) product, vectorised across samples, instead of a K-long loop per sample. Each
  // column is converged to the solver's tol (its own HALS rule), at most max_iter sweeps.
  void solve_batch_cd(Eigen::Ref<Eigen::MatrixXf> h);

  OnlineNmfOptions options_;
  Eigen::MatrixXf w_, a_, b_;
  Eigen::VectorXf scratch_;  // features
  Eigen::MatrixXf batch_wtx_;  // K × batch, for partial_fit_batch
  Eigen::MatrixXf batch_ht_, batch_bt_;  // batch × K: H and Wᵀ X transposed (solve_batch_cd)
  Eigen::ArrayXf batch_grad_, batch_next_, batch_step_, batch_size_;  // batch
  Eigen::MatrixXf sparse_gram_;  // K × K, the Gram from the supports
  NnlsSolver solver_;
  std::vector<NnlsSolver> helper_solvers_;  // threads − 1, for the mini-batch activations
  // Column supports, valid when supports_valid_: support_rows_[k] / support_values_[k].
  std::vector<std::vector<int>> support_rows_;
  std::vector<std::vector<float>> support_values_;
  bool supports_valid_ = false;
  bool force_prune_ = false;  // initialize_from_data's rounds: prune every column
  std::vector<int> prefetch_lines_;  // first row of each 64-byte line under any support
  std::vector<char> line_seen_;
  bool sparse_ = false;
  double density_ = 1.0;
  bool frozen_ = false;
  std::int64_t samples_ = 0;
  int since_update_ = 0;
};

}  // namespace rtnmf::nmf
