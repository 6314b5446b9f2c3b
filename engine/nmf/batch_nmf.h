// Batch (offline) NMF: X ≈ W H with W, H ≥ 0.
//
// Letters: X data (features × samples), W factors — Synergies or Footprints — (features × K),
// H activations (K × samples). K is the rank.
//
// Solvers
// - Frobenius loss: accelerated HALS (Gillis & Glineur 2012). Each outer iteration forms Xᵀ W
//   and WᵀW and runs a few HALS sweeps over the columns of Hᵀ (each column update is one
//   matrix-vector product over all samples), stopping when a sweep moves less than 1 % of the
//   first; then the same for W with X Hᵀ and H Hᵀ. For a short X (M ≤ 2048) and K ≤ 40 the H
//   half and both products run in one pass over X: per block of samples that stays in cache,
//   Xᵀ W for the block, its HALS sweeps, then X Hᵀ and H Hᵀ accumulated. Thin products use
//   register-tiled kernels that read X in place (no packed copy); for K > 40 the sweeps run on
//   64-row tiles of the factor held in L1. The products and sweeps are
//   split over `threads` std::threads by fixed row/column blocks, so a run is deterministic for
//   a given seed and thread count (not across thread counts: summation order changes).
// - β-divergence (β = 1 is Kullback–Leibler, β = 0 Itakura–Saito, β = 2 Frobenius): multiplicative
//   updates with the exponent γ(β) of Févotte & Idier (2011), which make every update
//   non-increasing.
// - Compressed HALS (Frobenius, both factors free; Erichson et al. 2018, Tepper & Sapiro 2016):
//   for a large X with K ≪ min(M, N), first HALS on X̂ = Q B, X projected on its leading range
//   (Q M × l orthonormal from the randomised range finder that NNDSVD already runs, B = Qᵀ X,
//   l = K + 10), where Xᵀ W ≈ Bᵀ (Qᵀ W) and X Hᵀ ≈ Q (B Hᵀ) cost M l K instead of M N K; it
//   stops when the compressed objective ½‖X̂ − W H‖² + penalties changes by ≤ tol relative.
//   W gets fewer sweeps there (by the same cost ratio, now ≈ l / K: 2), H the usual count.
//   Then exact HALS iterations on X polish that point under the usual stopping rule, so the
//   reported error and objective are the exact ones. Chosen automatically (Compression::kAuto)
//   for a large X (M N ≥ 2²⁴) that is not a short X with a thin rank (the fused path's case),
//   with l ≤ min(M, N) / 8 and init NNDSVD(a) (which finds the range anyway; not for a random
//   start, nor given factors: a warm start is near a solution already).
// Objective minimised (recorded once per iteration, entry 0 is the initial point):
//   D_β(X | W H) + l1_w Σ W + l2_w/2 ‖W‖² + l1_h Σ H + l2_h/2 ‖H‖²,  D_2 = 1/2 ‖X − W H‖².
// Stopping: |f_{t−1} − f_t| ≤ tol · f_{t−1} (relative objective change), or max_iter.
// Initialisation: NNDSVD / NNDSVDa (Boutsidis & Gallopoulos 2008, on a randomised truncated SVD),
// seeded random (sklearn's scale: sqrt(mean(X)/K)·|N(0,1)|), or given W and/or H (warm start: the
// missing factor is solved by NNLS against the given one).
// After fitting, W's columns can be normalised to unit ℓ1 or ℓ2 norm with H's rows rescaled to
// keep W H unchanged, so factors from different sessions compare directly.
//
// All functions here allocate (offline use) and may be called from any thread; they spawn at most
// `threads − 1` helper threads and join them before returning. Invalid options or inputs throw
// std::invalid_argument with a message naming the option.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <vector>

namespace rtnmf::nmf {

enum class NmfLoss { kFrobenius, kKullbackLeibler, kBeta };
enum class NmfInit { kNndsvd, kNndsvda, kRandom, kGiven };
enum class Normalization { kNone, kL1, kL2 };
// Compressed HALS before the exact iterations (Frobenius only): automatic, always, never.
enum class Compression { kAuto, kOn, kOff };

// Parsers for the tools; throw std::invalid_argument naming the value and the choices.
NmfLoss parse_loss(const std::string& s);          // frobenius | kl | beta
NmfInit parse_init(const std::string& s);          // nndsvd | nndsvda | random
Normalization parse_normalization(const std::string& s);  // l1 | l2 | none
Compression parse_compression(const std::string& s);      // auto | on | off
std::string to_string(NmfLoss l);
std::string to_string(NmfInit i);
std::string to_string(Normalization n);
std::string to_string(Compression c);

struct BatchNmfOptions {
  Eigen::Index rank = 0;
  NmfLoss loss = NmfLoss::kFrobenius;
  float beta = 2.f;  // only for kBeta (kKullbackLeibler is β = 1)
  NmfInit init = NmfInit::kNndsvda;
  std::uint64_t seed = 0;
  int max_iter = 200;
  double tol = 1e-4;
  float l1_w = 0.f, l2_w = 0.f, l1_h = 0.f, l2_h = 0.f;
  Normalization normalize = Normalization::kL2;
  int threads = 2;  // 1 or more; products are split into this many fixed blocks
  // HALS: at most this many coordinate sweeps per factor per outer iteration (0 = automatic from
  // the cost ratio of the products to a sweep, 4 to 8).
  int max_inner_sweeps = 0;
  bool update_w = true;  // false: W stays as initialised (e.g. given), only H is fitted
  bool update_h = true;
  // Frobenius: compressed HALS phase first (see above). kOn with another loss or a frozen factor
  // throws; kOn with init random or given runs its own range finder (seeded by `seed`).
  Compression compress = Compression::kAuto;
};

struct NmfResult {
  Eigen::MatrixXf w;               // features × K
  Eigen::MatrixXf h;               // K × samples
  // Exact objective: objective[0] at the initial point, then (compressed runs only) one at the
  // end of the compressed phase, then one per exact iteration.
  std::vector<double> objective;
  int iterations = 0;              // exact iterations (each phase is capped at max_iter)
  int compressed_iterations = 0;   // 0 when the compressed phase did not run
  // ½‖Q Qᵀ X − W H‖² + penalties after each compressed iteration (non-increasing).
  std::vector<double> compressed_objective;
  bool converged = false;          // the exact phase stopped on tol rather than max_iter
  double relative_error = 0.0;     // ‖X − W H‖ / ‖X‖ at the end
};

// Fits X ≈ W H. `w0` / `h0` (nullptr when absent) are the given factors for init kGiven or for
// frozen factors (update_w/update_h false); a given factor of the wrong shape throws. Throws
// std::invalid_argument for rank < 1, negative or non-finite X, or bad options.
NmfResult fit_nmf(const Eigen::Ref<const Eigen::MatrixXf>& x, const BatchNmfOptions& options,
                  const Eigen::MatrixXf* w0 = nullptr, const Eigen::MatrixXf* h0 = nullptr);

// Whether fit_nmf on an X of rows × cols runs the compressed HALS phase under `options` (the
// kAuto rule above; kOn/kOff as asked). Throws std::invalid_argument, as fit_nmf would, for kOn
// with a loss other than Frobenius or a frozen factor. Does not allocate.
bool uses_compression(Eigen::Index rows, Eigen::Index cols, const BatchNmfOptions& options);

// Initial factors by options.init (kGiven is not handled here). Deterministic for options.seed.
void initialize_factors(const Eigen::Ref<const Eigen::MatrixXf>& x, const BatchNmfOptions& options,
                        Eigen::MatrixXf& w, Eigen::MatrixXf& h);

// Activations for many samples against a fixed W (Frobenius, with optional l1/l2 on H): H ≥ 0
// minimising 1/2‖X − W H‖² + l1 Σ H + l2/2 ‖H‖², by coordinate descent per column (warm-started
// from H's content when `warm`). `h` is resized to K × samples. Used by the tools, online NMF's
// mini-batches and the scikit-learn comparison.
void solve_activations(const Eigen::Ref<const Eigen::MatrixXf>& x,
                       const Eigen::Ref<const Eigen::MatrixXf>& w, Eigen::MatrixXf& h,
                       float l1 = 0.f, float l2 = 0.f, int max_sweeps = 50, double tol = 1e-4,
                       int threads = 1, bool warm = false);

// Scales W's columns to unit norm (ℓ1 or ℓ2) and H's rows by the inverse so W H is unchanged.
// Zero columns stay zero. Does not allocate.
void normalize_factors(Eigen::MatrixXf& w, Eigen::MatrixXf& h, Normalization norm);

// Throws std::invalid_argument naming the first negative / NaN / Inf entry as
// "X[row, col] (1-based): ..." or an empty X.
void validate_nonnegative(const Eigen::Ref<const Eigen::MatrixXf>& x);

namespace detail {
// Runs fn(begin, end) on `threads` contiguous blocks of [0, n), one per thread (the calling
// thread takes the last block, the calling thread's kept helper threads the others: see
// block_pool.h). Blocks depend only on n and threads: deterministic. An exception thrown by a
// block is rethrown to the caller once all blocks are done.
template <typename Fn>
void parallel_blocks(int threads, Eigen::Index n, Fn&& fn);

// Coordinate descent on every column of h: minimise 1/2 hᵀ G h − bᵀ h + l1 Σ h + l2/2 ‖h‖²
// column by column (b = column of B), at most max_sweeps sweeps, stopping a column when a sweep's
// squared (G-weighted) step is ≤ rel_first × that of its first sweep or ≤ rel_size × ‖h‖²_G.
// Parallel over columns.
void cd_columns(const Eigen::Ref<const Eigen::MatrixXf>& gram,
                const Eigen::Ref<const Eigen::MatrixXf>& b, Eigen::Ref<Eigen::MatrixXf> h,
                float l1, float l2, int max_sweeps, double rel_first, double rel_size,
                int threads);

// out = a * b, the columns of b (and out) split across threads. out must be sized.
void parallel_product(const Eigen::Ref<const Eigen::MatrixXf>& a,
                      const Eigen::Ref<const Eigen::MatrixXf>& b, Eigen::Ref<Eigen::MatrixXf> out,
                      int threads);
// out = aᵀ a for a tall a (rows split across threads, partial products summed in fixed order).
void parallel_gram(const Eigen::Ref<const Eigen::MatrixXf>& a, Eigen::MatrixXf& out, int threads);

// Orthonormal basis Q (M × l) of the leading range of X by randomised range finding with
// `power_iterations` power iterations (Halko et al. 2011), and Bᵀ = Xᵀ Q (N × l). Seeded.
void randomized_range(const Eigen::Ref<const Eigen::MatrixXf>& x, Eigen::Index l,
                      std::uint64_t seed, int power_iterations, int threads, Eigen::MatrixXf& q,
                      Eigen::MatrixXf& bt);

// Truncated SVD by randomised range finding (Halko et al. 2011), rank k (l = k + 10), seeded.
void randomized_svd(const Eigen::Ref<const Eigen::MatrixXf>& x, Eigen::Index k, std::uint64_t seed,
                    int power_iterations, int threads, Eigen::MatrixXf& u, Eigen::VectorXf& s,
                    Eigen::MatrixXf& v);
// The same, also keeping the range found: q (M × l, orthonormal) and bt = Xᵀ q (N × l).
void randomized_svd_keep_range(const Eigen::Ref<const Eigen::MatrixXf>& x, Eigen::Index k,
                               std::uint64_t seed, int power_iterations, int threads,
                               Eigen::MatrixXf& u, Eigen::VectorXf& s, Eigen::MatrixXf& v,
                               Eigen::MatrixXf& q, Eigen::MatrixXf& bt);
}  // namespace detail

}  // namespace rtnmf::nmf

#include "engine/nmf/block_pool.h"

namespace rtnmf::nmf::detail {

template <typename Fn>
void parallel_blocks(int threads, Eigen::Index n, Fn&& fn) {
  if (threads < 1) threads = 1;
  if (threads > n) threads = static_cast<int>(std::max<Eigen::Index>(n, 1));
  if (threads == 1) {
    fn(Eigen::Index{0}, n);
    return;
  }
  struct Ctx {
    std::remove_reference_t<Fn>* fn;
    Eigen::Index chunk, n;
  } ctx{&fn, (n + threads - 1) / threads, n};
  // Block t is [t chunk, min(n, (t + 1) chunk)); the last one (the caller's) runs to n.
  run_blocks(threads, [](void* c, int t) {
    const Ctx& x = *static_cast<Ctx*>(c);
    const Eigen::Index b = t * x.chunk;
    const Eigen::Index e = std::min(x.n, b + x.chunk);
    if (b < e) (*x.fn)(b, e);
  }, &ctx);
}

}  // namespace rtnmf::nmf::detail
