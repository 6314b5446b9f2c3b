// Non-negative least squares for per-frame activations: the fast path of every streaming stage.
//
//   minimise_h  1/2 ‖x − W h‖² + l1 Σ h + l2/2 ‖h‖²   subject to h ≥ 0
//   ⇔  minimise_h  1/2 hᵀ G h − bᵀ h + l1 Σ h + l2/2 ‖h‖²,   G = WᵀW (K×K), b = Wᵀx (K)
//
// Letters: W is the dictionary (Synergies, muscles × K, or Footprints, pixels × K, dense or
// sparse); x one sample (features); h its activations (K); G the Gram matrix; b = Wᵀx.
//
// Two solvers:
// - kHals: cyclic coordinate descent (HALS) on the Gram, warm-started from the previous h. One
//   sweep costs K² flops; it converges in a few sweeps when the columns of W barely overlap
//   (localised footprints) but stalls when they are strongly correlated (dense synergies).
// - kBpp: block principal pivoting (Kim & Park 2011), exact in a finite number of pivots: each
//   pivot solves the passive-set normal equations by a Cholesky factorisation (|F|³/6 flops).
//   Warm-started from the support of the previous h, it usually needs one or two pivots.
// - kAuto picks from the conditioning of G (choose_nnls_method): with C = D^-½ G D^-½ the Gram
//   normalised to a unit diagonal (C_ij = cosine between dictionary columns i and j), HALS when
//   the mean Gershgorin radius r̄ = mean_i Σ_{j≠i} |C_ij| is below `auto_max_row_sum` (default 1:
//   C is diagonally dominant on average, so Gauss-Seidel sweeps contract fast), BPP otherwise.
//   The mean, not the worst pair, is what matters: a few overlapping footprints among 500 slow
//   down only their own coordinates, while dense synergies (all cosines ~0.8) make every sweep
//   crawl. Measured in bench/bm_nmf.cc (2-core box, CPU time per frame): sparse footprints K 500
//   (max cosine 0.87, r̄ < 1) HALS 0.6 ms vs BPP 3.6 ms; dense synergies K 8 (r̄ ≈ 6) BPP 0.4 µs
//   vs HALS 6.8 µs, K 128 BPP 0.17 ms vs HALS 0.29 ms (and HALS not converged after 200 sweeps).
//
// Allocation: constructors, resize() and set_dictionary() allocate; every solve*() call does not
// (asserted in tests/nmf/nnls_test.cc with an allocation counter). A solver instance is not
// thread-safe: one thread (the processing thread) uses it; give each thread its own instance.
#pragma once

#include <Eigen/Core>
#include <Eigen/SparseCore>

namespace rtnmf::nmf {

enum class NnlsMethod { kAuto, kHals, kBpp };

// Parses "auto" | "hals" | "bpp"; throws std::invalid_argument naming the value otherwise.
NnlsMethod parse_nnls_method(const char* name);
const char* to_string(NnlsMethod m);

struct NnlsOptions {
  NnlsMethod method = NnlsMethod::kAuto;
  // HALS: maximum sweeps. BPP: maximum pivots (then falls back to HALS sweeps from the best point).
  int max_iter = 200;
  // HALS stops when the weighted step Σ G_kk Δh_k² ≤ tol² Σ G_kk h_k² (scale-free). BPP ignores it.
  float tol = 1e-4f;
  float l1 = 0.f;  // added to every activation's cost (sparsity)
  float l2 = 0.f;  // ridge on h
  // kAuto chooses HALS when the mean Gershgorin radius of the unit-diagonal Gram is below this.
  float auto_max_row_sum = 1.f;
};

struct NnlsResult {
  int iterations = 0;   // HALS sweeps or BPP pivots
  bool converged = false;
  NnlsMethod method = NnlsMethod::kHals;  // the solver actually used
};

// Largest |G_ij| / sqrt(G_ii G_jj) over i ≠ j (0 for K ≤ 1; zero columns are ignored).
// Does not allocate. Any thread.
float max_normalized_correlation(const Eigen::Ref<const Eigen::MatrixXf>& gram);

// mean_i Σ_{j≠i} |G_ij| / sqrt(G_ii G_jj): the mean Gershgorin radius of the unit-diagonal Gram
// (0 for K ≤ 1; zero columns are ignored). Does not allocate. Any thread.
float mean_normalized_row_sum(const Eigen::Ref<const Eigen::MatrixXf>& gram);

// The solver kAuto would use for this Gram (see the header comment). Does not allocate.
NnlsMethod choose_nnls_method(const Eigen::Ref<const Eigen::MatrixXf>& gram,
                              float auto_max_row_sum = 1.f);

class NnlsSolver {
 public:
  NnlsSolver() = default;
  // Sizes the workspace for K activations. Allocates.
  explicit NnlsSolver(Eigen::Index k, const NnlsOptions& options = {});

  // Re-sizes the workspace (allocates when K changes); forgets any stored dictionary.
  void resize(Eigen::Index k);
  Eigen::Index size() const { return k_; }
  // Does not allocate. When method is kAuto and a dictionary/Gram is stored, re-chooses.
  void set_options(const NnlsOptions& options);
  const NnlsOptions& options() const { return options_; }

  // Stores a copy of W (dense or sparse, features × K) and its Gram WᵀW, and chooses the method
  // for kAuto. Allocates (re-sizes to W.cols() if needed; a dense copy of the same shape reuses
  // memory). Slow-path only. Throws std::invalid_argument on an empty W.
  void set_dictionary(const Eigen::Ref<const Eigen::MatrixXf>& w);
  void set_dictionary(const Eigen::SparseMatrix<float, Eigen::ColMajor>& w);
  // Stores W (dense) with a Gram the caller already computed (the slow path ships both, so the fast
  // path swaps a model in without a matrix product). Does not allocate when the shape is unchanged.
  // Does not check that gram == WᵀW.
  void set_dictionary(const Eigen::Ref<const Eigen::MatrixXf>& w,
                      const Eigen::Ref<const Eigen::MatrixXf>& gram);
  // Stores a Gram without a dictionary (solve(x, ...) is then unavailable; use solve_gram).
  // Does not allocate when K is unchanged.
  void set_gram(const Eigen::Ref<const Eigen::MatrixXf>& gram);
  const Eigen::MatrixXf& gram() const { return gram_; }
  // The method kAuto resolved to for the stored Gram (or options().method when not kAuto).
  NnlsMethod resolved_method() const { return resolved_; }

  // Activations of one sample x (features) against the stored dictionary: b = Wᵀx, then
  // solve_gram. `h` (K) is the warm start when `warm`, else it is reset to 0; it receives the
  // result. Does not allocate. Throws std::logic_error when no dictionary is stored.
  NnlsResult solve(const Eigen::Ref<const Eigen::VectorXf>& x, Eigen::Ref<Eigen::VectorXf> h,
                   bool warm = true);
  // Against the stored Gram: b = Wᵀx given by the caller. Does not allocate.
  NnlsResult solve_gram(const Eigen::Ref<const Eigen::VectorXf>& b, Eigen::Ref<Eigen::VectorXf> h,
                        bool warm = true);
  // Against a Gram the caller owns (e.g. one the streaming stage keeps in its model). kAuto
  // resolves per call (O(K²)); set method explicitly to skip that. K must equal size().
  // Does not allocate.
  NnlsResult solve_gram(const Eigen::Ref<const Eigen::MatrixXf>& gram,
                        const Eigen::Ref<const Eigen::VectorXf>& b, Eigen::Ref<Eigen::VectorXf> h,
                        bool warm = true);

  // The last b = Wᵀx computed by solve() (for callers that also want the residual).
  const Eigen::VectorXf& last_wtx() const { return wtx_; }

 private:
  NnlsResult hals(const Eigen::Ref<const Eigen::MatrixXf>& gram,
                  const Eigen::Ref<const Eigen::VectorXf>& b, Eigen::Ref<Eigen::VectorXf> h,
                  int max_sweeps);
  NnlsResult bpp(const Eigen::Ref<const Eigen::MatrixXf>& gram,
                 const Eigen::Ref<const Eigen::VectorXf>& b, Eigen::Ref<Eigen::VectorXf> h,
                 bool warm);
  // Solves (G_FF + l2 I) x_F = b_F − l1 for the passive set in passive_; false if not SPD.
  bool solve_passive(const Eigen::Ref<const Eigen::MatrixXf>& gram,
                     const Eigen::Ref<const Eigen::VectorXf>& b, Eigen::Index n);

  Eigen::Index k_ = 0;
  NnlsOptions options_;
  NnlsMethod resolved_ = NnlsMethod::kHals;
  enum class Dict { kNone, kGramOnly, kDense, kSparse } dict_ = Dict::kNone;
  Eigen::MatrixXf dense_w_;
  Eigen::SparseMatrix<float, Eigen::ColMajor> sparse_w_;
  Eigen::MatrixXf gram_;
  // Workspace, all sized K (or K×K) in resize().
  Eigen::VectorXf wtx_, grad_, x_, y_, best_x_, rhs_;
  Eigen::MatrixXf chol_;
  Eigen::VectorXi passive_index_;
  Eigen::Matrix<bool, Eigen::Dynamic, 1> passive_;
};

}  // namespace rtnmf::nmf
