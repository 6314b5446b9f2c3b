// Batch NMF: accelerated HALS (Frobenius) and β-divergence multiplicative updates. See batch_nmf.h.
#include "engine/nmf/batch_nmf.h"

#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <cstring>
#if defined(__AVX__)
#include <immintrin.h>
#endif
#include <limits>
#include <random>
#include <stdexcept>

namespace rtnmf::nmf {

namespace {

// Below this many multiply-adds a product runs on the calling thread: starting a std::thread
// (~20-50 µs) costs more than it saves.
constexpr double kParallelMinWork = 2e6;

int threads_for(double work, int threads) {
  return work < kParallelMinWork ? 1 : std::max(threads, 1);
}

// Floor for W H in the β-divergence updates (a zero model value with positive data would make
// the KL objective infinite and the update 0/0).
constexpr float kTiny = 1e-12f;
// HALS inner loop: stop the sweeps on a column once a sweep moves it less than 1 % of the first
// sweep (Gillis & Glineur's ε = 0.01), in squared norm.
constexpr double kInnerRelativeStep = 1e-4;

using Mat = Eigen::MatrixXf;

std::string shape_str(Eigen::Index r, Eigen::Index c) {
  return std::to_string(r) + "x" + std::to_string(c);
}

// a * aᵀ for a wide a (K × n), columns split across threads, partial sums added in block order.
void gram_wide(const Eigen::Ref<const Mat>& a, Mat& out, int threads) {
  const Eigen::Index k = a.rows(), n = a.cols();
  const int t = static_cast<int>(std::clamp<Eigen::Index>(
      n / 4096, 1, threads_for(double(k) * double(k) * double(n), threads)));
  std::vector<Mat> parts(static_cast<size_t>(t), Mat::Zero(k, k));
  const Eigen::Index chunk = (n + t - 1) / t;
  detail::parallel_blocks(t, t, [&](Eigen::Index b, Eigen::Index e) {
    for (Eigen::Index p = b; p < e; ++p) {
      const Eigen::Index c0 = p * chunk, c1 = std::min(n, c0 + chunk);
      if (c0 < c1) {
        parts[static_cast<size_t>(p)].noalias() =
            a.middleCols(c0, c1 - c0) * a.middleCols(c0, c1 - c0).transpose();
      }
    }
  });
  out = parts[0];
  for (size_t p = 1; p < parts.size(); ++p) out += parts[p];
}

// out (K × M) = h (K × N) * xᵀ (N × M): rows of x split across threads.
void product_h_xt(const Eigen::Ref<const Mat>& h, const Eigen::Ref<const Mat>& x, Mat& out,
                  int threads) {
  out.resize(h.rows(), x.rows());
  threads = threads_for(double(h.rows()) * double(h.cols()) * double(x.rows()), threads);
  detail::parallel_blocks(threads, x.rows(), [&](Eigen::Index b, Eigen::Index e) {
    out.middleCols(b, e - b).noalias() = h * x.middleRows(b, e - b).transpose();
  });
}

// ---- Skinny products without packing ----------------------------------------------------------
// X (M × N) times a thin factor is the whole cost of an HALS iteration. Eigen's GEMM packs the big
// operand (a copy of X per product) which, with only l ≤ kSkinnyMax columns on the other side,
// costs about as much as the multiply-adds themselves (measured: ~40 % of a fit in
// gemm_pack_lhs). These kernels read X in place with register tiles of 8-float vectors (GCC
// vector extensions: AVX with -mavx2, SSE pairs otherwise); the summation order depends only on
// the shapes and the thread count, so results stay deterministic.
constexpr Eigen::Index kSkinnyMax = 40;

typedef float V8 __attribute__((vector_size(32)));

inline V8 load8(const float* p) {
  V8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store8(float* p, V8 v) { std::memcpy(p, &v, sizeof(v)); }
inline V8 splat8(float s) { return V8{s, s, s, s, s, s, s, s}; }
inline float hsum8(V8 v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

// out(j, c) += Σ_{i ∈ [i0, i1)} X(i, j) Q(i, c) for the JS samples j.. and CS columns c..
template <int JS, int CS>
void xtq_tile(const float* x, Eigen::Index ldx, const float* q, Eigen::Index ldq, Eigen::Index i0,
              Eigen::Index i1, float* out, Eigen::Index ldo, Eigen::Index j, Eigen::Index c) {
  V8 acc[JS][CS];
  for (int s = 0; s < JS; ++s)
    for (int t = 0; t < CS; ++t) acc[s][t] = splat8(0.f);
  const float* xs[JS];
  const float* qs[CS];
  for (int s = 0; s < JS; ++s) xs[s] = x + (j + s) * ldx;
  for (int t = 0; t < CS; ++t) qs[t] = q + (c + t) * ldq;
  Eigen::Index i = i0;
  for (; i + 8 <= i1; i += 8) {
    V8 xv[JS];
    for (int s = 0; s < JS; ++s) xv[s] = load8(xs[s] + i);
    for (int t = 0; t < CS; ++t) {
      const V8 qv = load8(qs[t] + i);
      for (int s = 0; s < JS; ++s) acc[s][t] += xv[s] * qv;
    }
  }
  for (int s = 0; s < JS; ++s) {
    float sums[CS];
#if defined(__AVX__)
    {
      // Up to four horizontal sums at once (a short M makes these a large share of the tile);
      // missing columns are zero vectors.
      __m256 a[4];
      for (int t = 0; t < 4; ++t) {
        if (t < CS) {
          std::memcpy(&a[t], &acc[s][t < CS ? t : 0], 32);
        } else {
          a[t] = _mm256_setzero_ps();
        }
      }
      const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
      const __m128 r4 = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
      float all[4];
      _mm_storeu_ps(all, r4);
      for (int t = 0; t < CS; ++t) sums[t] = all[t];
    }
#else
    for (int t = 0; t < CS; ++t) sums[t] = hsum8(acc[s][t]);
#endif
    for (int t = 0; t < CS; ++t) {
      float sum = sums[t];
      for (Eigen::Index r = i; r < i1; ++r) sum += xs[s][r] * qs[t][r];
      out[(c + t) * ldo + j + s] += sum;
    }
  }
}

template <int JS>
void xtq_row(const float* x, Eigen::Index ldx, const float* q, Eigen::Index ldq, Eigen::Index l,
             Eigen::Index i0, Eigen::Index i1, float* out, Eigen::Index ldo, Eigen::Index j) {
  Eigen::Index c = 0;
  for (; c + 4 <= l; c += 4) xtq_tile<JS, 4>(x, ldx, q, ldq, i0, i1, out, ldo, j, c);
  switch (l - c) {
    case 3: xtq_tile<JS, 3>(x, ldx, q, ldq, i0, i1, out, ldo, j, c); break;
    case 2: xtq_tile<JS, 2>(x, ldx, q, ldq, i0, i1, out, ldo, j, c); break;
    case 1: xtq_tile<JS, 1>(x, ldx, q, ldq, i0, i1, out, ldo, j, c); break;
    default: break;
  }
}

// out (N × l) = Xᵀ Q for samples [j0, j1): rows of X in chunks whose slice of Q stays in L2.
void xtq_block(const Eigen::Ref<const Mat>& x, const Eigen::Ref<const Mat>& q, Mat& out,
               Eigen::Index j0, Eigen::Index j1) {
  const Eigen::Index m = x.rows(), l = q.cols(), ldo = out.rows();
  out.middleRows(j0, j1 - j0).setZero();
  const Eigen::Index chunk = std::max<Eigen::Index>(256, (65536 / std::max<Eigen::Index>(l, 1)) & ~Eigen::Index{7});
  for (Eigen::Index i0 = 0; i0 < m; i0 += chunk) {
    const Eigen::Index i1 = std::min(m, i0 + chunk);
    Eigen::Index j = j0;
    for (; j + 3 <= j1; j += 3)
      xtq_row<3>(x.data(), x.outerStride(), q.data(), q.outerStride(), l, i0, i1, out.data(), ldo, j);
    for (; j < j1; ++j)
      xtq_row<1>(x.data(), x.outerStride(), q.data(), q.outerStride(), l, i0, i1, out.data(), ldo, j);
  }
}

// out(i.., c..) += Σ_{j ∈ [j0, j1)} X(i, j) F(j, c): RS vectors of 8 rows times CS columns.
template <int RS, int CS>
void xf_tile(const float* x, Eigen::Index ldx, const float* f, Eigen::Index ldf, Eigen::Index j0,
             Eigen::Index j1, float* out, Eigen::Index ldo, Eigen::Index i, Eigen::Index c) {
  V8 acc[RS][CS];
  for (int r = 0; r < RS; ++r)
    for (int t = 0; t < CS; ++t) acc[r][t] = splat8(0.f);
  const float* fs[CS];
  for (int t = 0; t < CS; ++t) fs[t] = f + (c + t) * ldf;
  for (Eigen::Index j = j0; j < j1; ++j) {
    const float* xj = x + j * ldx + i;
    // The next row tiles of this sample: consecutive samples are M floats apart, beyond what
    // the hardware prefetchers follow (measured 28 -> 42 GFLOP/s at 512 x 20,000, l 20).
    __builtin_prefetch(xj + 8 * RS * 4);
    V8 xv[RS];
    for (int r = 0; r < RS; ++r) xv[r] = load8(xj + 8 * r);
    for (int t = 0; t < CS; ++t) {
      const V8 b = splat8(fs[t][j]);
      for (int r = 0; r < RS; ++r) acc[r][t] += xv[r] * b;
    }
  }
  for (int t = 0; t < CS; ++t)
    for (int r = 0; r < RS; ++r) {
      float* o = out + (c + t) * ldo + i + 8 * r;
      store8(o, load8(o) + acc[r][t]);
    }
}

template <int RS>
void xf_rows(const float* x, Eigen::Index ldx, const float* f, Eigen::Index ldf, Eigen::Index l,
             Eigen::Index j0, Eigen::Index j1, float* out, Eigen::Index ldo, Eigen::Index i) {
  Eigen::Index c = 0;
  for (; c + 6 <= l; c += 6) xf_tile<RS, 6>(x, ldx, f, ldf, j0, j1, out, ldo, i, c);
  switch (l - c) {
    case 5: xf_tile<RS, 5>(x, ldx, f, ldf, j0, j1, out, ldo, i, c); break;
    case 4: xf_tile<RS, 4>(x, ldx, f, ldf, j0, j1, out, ldo, i, c); break;
    case 3: xf_tile<RS, 3>(x, ldx, f, ldf, j0, j1, out, ldo, i, c); break;
    case 2: xf_tile<RS, 2>(x, ldx, f, ldf, j0, j1, out, ldo, i, c); break;
    case 1: xf_tile<RS, 1>(x, ldx, f, ldf, j0, j1, out, ldo, i, c); break;
    default: break;
  }
}

// out (M × l) (+)= X F for rows [i0, i1) of X and samples [ja, jb) (all when jb < 0), in chunks
// of samples. `accumulate`: add to out instead of overwriting those rows.
void xf_block(const Eigen::Ref<const Mat>& x, const Eigen::Ref<const Mat>& f, Mat& out,
              Eigen::Index i0, Eigen::Index i1, Eigen::Index ja = 0, Eigen::Index jb = -1,
              bool accumulate = false) {
  const Eigen::Index n = jb < 0 ? x.cols() : jb, l = f.cols(), ldo = out.rows();
  if (!accumulate) out.middleRows(i0, i1 - i0).setZero();
  // Few samples per chunk: consecutive samples sit M floats apart, and with thousands of them a
  // tile's rows would fall into a handful of cache sets (measured 2.5x slower at M = 512).
  const Eigen::Index chunk = 96;
  const Eigen::Index ldx = x.outerStride(), ldf = f.outerStride();
  for (Eigen::Index j0 = ja; j0 < n; j0 += chunk) {
    const Eigen::Index j1 = std::min(n, j0 + chunk);
    Eigen::Index i = i0;
    for (; i + 16 <= i1; i += 16) xf_rows<2>(x.data(), ldx, f.data(), ldf, l, j0, j1, out.data(), ldo, i);
    for (; i + 8 <= i1; i += 8) xf_rows<1>(x.data(), ldx, f.data(), ldf, l, j0, j1, out.data(), ldo, i);
    for (; i < i1; ++i)  // rows left over (M not a multiple of 8)
      for (Eigen::Index c = 0; c < l; ++c) {
        float s = 0.f;
        for (Eigen::Index j = j0; j < j1; ++j) s += x(i, j) * f(j, c);
        out(i, c) += s;
      }
  }
}

// out (N × l) = xᵀ (N × M) * q (M × l): columns of x split across threads.
void product_xt_q(const Eigen::Ref<const Mat>& x, const Eigen::Ref<const Mat>& q, Mat& out,
                  int threads) {
  out.resize(x.cols(), q.cols());
  threads = threads_for(double(x.rows()) * double(x.cols()) * double(q.cols()), threads);
  const bool skinny = q.cols() <= kSkinnyMax;
  detail::parallel_blocks(threads, x.cols(), [&](Eigen::Index b, Eigen::Index e) {
    if (skinny) {
      xtq_block(x, q, out, b, e);
    } else {
      out.middleRows(b, e - b).noalias() = x.middleCols(b, e - b).transpose() * q;
    }
  });
}

// out (M × K) = x (M × N) * f (N × K): rows of x split across threads.
void product_x_f(const Eigen::Ref<const Mat>& x, const Eigen::Ref<const Mat>& f, Mat& out,
                 int threads) {
  out.resize(x.rows(), f.cols());
  threads = threads_for(double(x.rows()) * double(x.cols()) * double(f.cols()), threads);
  if (f.cols() <= kSkinnyMax) {
    // Threads own blocks of 16 rows (two 8-float vectors), so only the last block has a tail.
    const Eigen::Index m = x.rows(), units = (m + 15) / 16;
    detail::parallel_blocks(threads, units, [&](Eigen::Index b, Eigen::Index e) {
      xf_block(x, f, out, b * 16, std::min(m, e * 16));
    });
    return;
  }
  detail::parallel_blocks(threads, x.rows(), [&](Eigen::Index b, Eigen::Index e) {
    out.middleRows(b, e - b).noalias() = x.middleRows(b, e - b) * f;
  });
}

// Σ X and Σ X² in double from float column sums (vectorised; a column's float sum loses nothing
// that matters here, the columns are added in double).
void sum_and_squares(const Eigen::Ref<const Mat>& x, double& sum, double& squares) {
  sum = 0.0;
  squares = 0.0;
  for (Eigen::Index j = 0; j < x.cols(); ++j) {
    sum += static_cast<double>(x.col(j).sum());
    squares += static_cast<double>(x.col(j).squaredNorm());
  }
}

double penalties(const Eigen::Ref<const Mat>& w, const Eigen::Ref<const Mat>& h,
                 const BatchNmfOptions& o) {
  double p = 0.0;
  if (o.l1_w != 0.f) p += o.l1_w * w.cast<double>().sum();
  if (o.l2_w != 0.f) p += 0.5 * o.l2_w * w.cast<double>().squaredNorm();
  if (o.l1_h != 0.f) p += o.l1_h * h.cast<double>().sum();
  if (o.l2_h != 0.f) p += 0.5 * o.l2_h * h.cast<double>().squaredNorm();
  return p;
}

// Σ_ij a_ij b_ij in double.
double frobenius_inner(const Eigen::Ref<const Mat>& a, const Eigen::Ref<const Mat>& b) {
  double s = 0.0;
  for (Eigen::Index j = 0; j < a.cols(); ++j)
    s += a.col(j).cast<double>().dot(b.col(j).cast<double>());
  return s;
}

// Orthonormal basis of the columns of y in place (Cholesky QR, twice for stability).
void orthonormalize(Mat& y, int threads) {
  for (int pass = 0; pass < 2; ++pass) {
    Mat g;
    Mat yt = y.transpose();
    gram_wide(yt, g, threads);
    Eigen::MatrixXd gd = g.cast<double>();
    gd.diagonal().array() += 1e-12 * std::max(gd.diagonal().maxCoeff(), 1e-300);
    Eigen::LLT<Eigen::MatrixXd> llt(gd);
    // y ← y L⁻ᵀ
    Eigen::MatrixXd linv_t =
        llt.matrixU().solve(Eigen::MatrixXd::Identity(gd.rows(), gd.cols()));
    Mat r = linv_t.cast<float>();
    Mat out(y.rows(), y.cols());
    detail::parallel_blocks(threads, y.rows(), [&](Eigen::Index b, Eigen::Index e) {
      out.middleRows(b, e - b).noalias() = y.middleRows(b, e - b) * r;
    });
    y.swap(out);
  }
}

// β-divergence D_β(X | Y) in double, Y floored at kTiny.
double beta_divergence(const Eigen::Ref<const Mat>& x, const Eigen::Ref<const Mat>& y,
                       float beta) {
  double d = 0.0;
  for (Eigen::Index j = 0; j < x.cols(); ++j) {
    for (Eigen::Index i = 0; i < x.rows(); ++i) {
      const double a = x(i, j), b = std::max(y(i, j), kTiny);
      if (beta == 2.f) {
        d += 0.5 * (a - b) * (a - b);
      } else if (beta == 1.f) {
        d += (a > 0 ? a * std::log(a / b) : 0.0) - a + b;
      } else if (beta == 0.f) {
        const double r = std::max(a, static_cast<double>(kTiny)) / b;
        d += r - std::log(r) - 1.0;
      } else {
        d += (std::pow(a, beta) + (beta - 1.0) * std::pow(b, beta) -
              beta * a * std::pow(b, beta - 1.0)) /
             (beta * (beta - 1.0));
      }
    }
  }
  return d;
}

// Févotte & Idier's exponent making the multiplicative update a majorisation-minimisation step.
float mu_exponent(float beta) {
  if (beta < 1.f) return 1.f / (2.f - beta);
  if (beta > 2.f) return 1.f / (beta - 1.f);
  return 1.f;
}

void check_options(const Eigen::Ref<const Mat>& x, const BatchNmfOptions& o) {
  if (o.rank < 1) throw std::invalid_argument("rank must be at least 1 (got " +
                                              std::to_string(o.rank) + ")");
  if (o.max_iter < 0) throw std::invalid_argument("max_iter must be non-negative");
  if (!(o.tol >= 0)) throw std::invalid_argument("tol must be non-negative");
  for (float p : {o.l1_w, o.l2_w, o.l1_h, o.l2_h})
    if (!(p >= 0.f) || !std::isfinite(p))
      throw std::invalid_argument("regularisation weights must be finite and non-negative");
  if (x.size() == 0) throw std::invalid_argument("X is empty");
}

// W H in blocks of columns (for the β updates).
void model(const Eigen::Ref<const Mat>& w, const Eigen::Ref<const Mat>& h, Mat& wh, int threads) {
  wh.resize(w.rows(), h.cols());
  detail::parallel_product(w, h, wh, threads);
  wh = wh.cwiseMax(kTiny);
}

}  // namespace

NmfLoss parse_loss(const std::string& s) {
  if (s == "frobenius" || s == "fro") return NmfLoss::kFrobenius;
  if (s == "kl" || s == "kullback-leibler") return NmfLoss::kKullbackLeibler;
  if (s == "beta") return NmfLoss::kBeta;
  throw std::invalid_argument("unknown loss '" + s + "' (expected frobenius, kl or beta)");
}

NmfInit parse_init(const std::string& s) {
  if (s == "nndsvd") return NmfInit::kNndsvd;
  if (s == "nndsvda") return NmfInit::kNndsvda;
  if (s == "random") return NmfInit::kRandom;
  throw std::invalid_argument("unknown init '" + s +
                              "' (expected nndsvd, nndsvda, random or FILE.h5)");
}

Normalization parse_normalization(const std::string& s) {
  if (s == "l1") return Normalization::kL1;
  if (s == "l2") return Normalization::kL2;
  if (s == "none") return Normalization::kNone;
  throw std::invalid_argument("unknown normalisation '" + s + "' (expected l1, l2 or none)");
}

std::string to_string(NmfLoss l) {
  switch (l) {
    case NmfLoss::kFrobenius: return "frobenius";
    case NmfLoss::kKullbackLeibler: return "kl";
    case NmfLoss::kBeta: return "beta";
  }
  return "?";
}

std::string to_string(NmfInit i) {
  switch (i) {
    case NmfInit::kNndsvd: return "nndsvd";
    case NmfInit::kNndsvda: return "nndsvda";
    case NmfInit::kRandom: return "random";
    case NmfInit::kGiven: return "given";
  }
  return "?";
}

std::string to_string(Normalization n) {
  switch (n) {
    case Normalization::kNone: return "none";
    case Normalization::kL1: return "l1";
    case Normalization::kL2: return "l2";
  }
  return "?";
}

void validate_nonnegative(const Eigen::Ref<const Mat>& x) {
  if (x.rows() == 0 || x.cols() == 0)
    throw std::invalid_argument("X is empty (" + shape_str(x.rows(), x.cols()) + ")");
  constexpr float kMax = std::numeric_limits<float>::max();
  for (Eigen::Index j = 0; j < x.cols(); ++j) {
    // Branch-free scan of the column (vectorised); NaN fails both comparisons.
    const float* col = x.col(j).data();
    bool bad = false;
    for (Eigen::Index i = 0; i < x.rows(); ++i) bad |= !(col[i] >= 0.f && col[i] <= kMax);
    if (!bad) continue;
    for (Eigen::Index i = 0; i < x.rows(); ++i) {
      const float v = x(i, j);
      if (std::isfinite(v) && v >= 0.f) continue;
      const std::string where = "X[" + std::to_string(i + 1) + ", " + std::to_string(j + 1) +
                                "] (row " + std::to_string(i + 1) + ", column " +
                                std::to_string(j + 1) + ", 1-based)";
      if (std::isnan(v)) throw std::invalid_argument(where + " is NaN");
      if (std::isinf(v)) throw std::invalid_argument(where + " is infinite");
      throw std::invalid_argument(where + " is negative (" + std::to_string(v) + ")");
    }
  }
}

void normalize_factors(Mat& w, Mat& h, Normalization norm) {
  if (norm == Normalization::kNone) return;
  for (Eigen::Index k = 0; k < w.cols(); ++k) {
    const float s = norm == Normalization::kL1 ? w.col(k).lpNorm<1>() : w.col(k).norm();
    if (s > 0.f) {
      w.col(k) /= s;
      h.row(k) *= s;
    }
  }
}

namespace detail {

void parallel_product(const Eigen::Ref<const Mat>& a, const Eigen::Ref<const Mat>& b,
                      Eigen::Ref<Mat> out, int threads) {
  threads = threads_for(double(a.rows()) * double(a.cols()) * double(b.cols()), threads);
  parallel_blocks(threads, b.cols(), [&](Eigen::Index c0, Eigen::Index c1) {
    out.middleCols(c0, c1 - c0).noalias() = a * b.middleCols(c0, c1 - c0);
  });
}

void parallel_gram(const Eigen::Ref<const Mat>& a, Mat& out, int threads) {
  Mat at = a.transpose();
  gram_wide(at, out, threads);
}

void cd_columns(const Eigen::Ref<const Mat>& gram, const Eigen::Ref<const Mat>& b,
                Eigen::Ref<Mat> h, float l1, float l2, int max_sweeps, double rel_first,
                double rel_size, int threads) {
  const Eigen::Index k = gram.rows(), n = h.cols();
  // Below ~64 columns per block the threads cost more than they save.
  const int t = static_cast<int>(std::clamp<Eigen::Index>(
      n / 64, 1, threads_for(4.0 * double(k) * double(k) * double(n), threads)));
  parallel_blocks(t, n, [&](Eigen::Index c0, Eigen::Index c1) {
    // Gradients of the whole block at once with one product, then per-column sweeps.
    Mat grad = -b.middleCols(c0, c1 - c0);
    grad.noalias() += gram * h.middleCols(c0, c1 - c0);
    if (l1 != 0.f || l2 != 0.f) {
      grad.array() += l1;
      grad.noalias() += l2 * h.middleCols(c0, c1 - c0);
    }
    for (Eigen::Index j = c0; j < c1; ++j) {
      Eigen::Ref<Eigen::VectorXf> g = grad.col(j - c0);
      double first = -1.0;
      for (int s = 0; s < max_sweeps; ++s) {
        double step = 0.0, size = 0.0;
        for (Eigen::Index c = 0; c < k; ++c) {
          const float d = gram(c, c) + l2;
          const float old = h(c, j);
          const float next = d > 0.f ? std::max(0.f, old - g[c] / d) : 0.f;
          const float delta = next - old;
          if (delta != 0.f) {
            g += delta * gram.col(c);
            g[c] += l2 * delta;
            h(c, j) = next;
          }
          step += static_cast<double>(d) * delta * delta;
          size += static_cast<double>(d) * next * next;
        }
        if (first < 0) first = step;
        if (step == 0.0 || step <= rel_first * first || step <= rel_size * size) break;
      }
    }
  });
}

void randomized_range(const Eigen::Ref<const Mat>& x, Eigen::Index l, std::uint64_t seed,
                      int power_iterations, int threads, Mat& q, Mat& bt) {
  const Eigen::Index m = x.rows(), n = x.cols();
  l = std::min(l, std::min(m, n));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  Mat& y = q;
  Mat z;
  if (m < n && power_iterations > 0) {
    // Wide X: start from the short side, Y = X (Xᵀ Ω) with Ω M × l. Same subspace as the tall
    // branch's power iteration at one product less, and l·M normal draws instead of l·N (at
    // 64 x 200,000 the draws alone were 10 % of a fit).
    Mat omega(m, l);
    for (Eigen::Index j = 0; j < l; ++j)
      for (Eigen::Index i = 0; i < m; ++i) omega(i, j) = normal(rng);
    product_xt_q(x, omega, z, threads);
    orthonormalize(z, threads);
    product_x_f(x, z, y, threads);
    orthonormalize(y, threads);
    --power_iterations;
  } else {
    Mat omega(n, l);
    for (Eigen::Index j = 0; j < l; ++j)
      for (Eigen::Index i = 0; i < n; ++i) omega(i, j) = normal(rng);
    product_x_f(x, omega, y, threads);
    orthonormalize(y, threads);
  }
  for (int p = 0; p < power_iterations; ++p) {
    product_xt_q(x, y, z, threads);
    orthonormalize(z, threads);
    product_x_f(x, z, y, threads);
    orthonormalize(y, threads);
  }
  product_xt_q(x, y, bt, threads);  // n × l = Bᵀ
}

void randomized_svd(const Eigen::Ref<const Mat>& x, Eigen::Index k, std::uint64_t seed,
                    int power_iterations, int threads, Mat& u, Eigen::VectorXf& s, Mat& v) {
  Mat y, bt;
  randomized_svd_keep_range(x, k, seed, power_iterations, threads, u, s, v, y, bt);
}

void randomized_svd_keep_range(const Eigen::Ref<const Mat>& x, Eigen::Index k,
                               std::uint64_t seed, int power_iterations, int threads, Mat& u,
                               Eigen::VectorXf& s, Mat& v, Mat& y, Mat& bt) {
  const Eigen::Index m = x.rows(), n = x.cols();
  randomized_range(x, k + 10, seed, power_iterations, threads, y, bt);
  const Eigen::Index l = y.cols();
  // B = Qᵀ X (l × n); its SVD from the eigen-decomposition of B Bᵀ (l × l).
  Mat bbt_f;
  parallel_gram(bt, bbt_f, threads);
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(bbt_f.cast<double>());
  const Eigen::Index kk = std::min(k, l);
  u.resize(m, k);
  v.resize(n, k);
  s.setZero(k);
  u.setZero();
  v.setZero();
  Mat ub(l, kk);
  for (Eigen::Index c = 0; c < kk; ++c) {
    const Eigen::Index idx = l - 1 - c;  // eigenvalues ascend
    s[c] = static_cast<float>(std::sqrt(std::max(eig.eigenvalues()[idx], 0.0)));
    ub.col(c) = eig.eigenvectors().col(idx).cast<float>();
  }
  u.leftCols(kk).noalias() = y * ub;
  v.leftCols(kk).noalias() = bt * ub;
  for (Eigen::Index c = 0; c < kk; ++c)
    if (s[c] > 0.f) v.col(c) /= s[c];
}

}  // namespace detail

namespace {

// initialize_factors; for NNDSVD(a), `q` and `bt` (when given) receive the range found by the
// randomised SVD (q M × l orthonormal, bt = Xᵀ q), for the compressed HALS phase.
void initialize_factors_keep_range(const Eigen::Ref<const Mat>& x, const BatchNmfOptions& o,
                                   Mat& w, Mat& h, Mat* q, Mat* bt) {
  const Eigen::Index m = x.rows(), n = x.cols(), k = o.rank;
  double total = 0.0, squares = 0.0;
  sum_and_squares(x, total, squares);
  const double mean = total / static_cast<double>(x.size());
  if (o.init == NmfInit::kRandom) {
    std::mt19937_64 rng(o.seed);
    std::normal_distribution<float> normal(0.f, 1.f);
    const float avg = static_cast<float>(std::sqrt(mean / static_cast<double>(k)));
    w.resize(m, k);
    h.resize(k, n);
    for (Eigen::Index j = 0; j < k; ++j)
      for (Eigen::Index i = 0; i < m; ++i) w(i, j) = avg * std::abs(normal(rng));
    for (Eigen::Index j = 0; j < n; ++j)
      for (Eigen::Index i = 0; i < k; ++i) h(i, j) = avg * std::abs(normal(rng));
    return;
  }
  if (o.init != NmfInit::kNndsvd && o.init != NmfInit::kNndsvda)
    throw std::invalid_argument("initialize_factors: init 'given' needs W or H");
  Mat u, v;
  Eigen::VectorXf s;
  // One power iteration: NNDSVD only needs the leading subspace roughly (scikit-learn uses 4-7;
  // measured here at 512 x 20,000 and 64 x 200,000, 1 gives the same fitted error and iteration
  // count as 2 or 4 at a fraction of the init cost).
  Mat q_local, bt_local;
  detail::randomized_svd_keep_range(x, k, o.seed, 1, o.threads, u, s, v, q ? *q : q_local,
                                    bt ? *bt : bt_local);
  w.setZero(m, k);
  h.setZero(k, n);
  for (Eigen::Index j = 0; j < k; ++j) {
    if (j == 0) {
      w.col(0) = std::sqrt(s[0]) * u.col(0).cwiseAbs();
      h.row(0) = std::sqrt(s[0]) * v.col(0).cwiseAbs().transpose();
      continue;
    }
    Eigen::VectorXf xp = u.col(j).cwiseMax(0.f), xn = (-u.col(j)).cwiseMax(0.f);
    Eigen::VectorXf yp = v.col(j).cwiseMax(0.f), yn = (-v.col(j)).cwiseMax(0.f);
    const float xpn = xp.norm(), ypn = yp.norm(), xnn = xn.norm(), ynn = yn.norm();
    const float mp = xpn * ypn, mn = xnn * ynn;
    const bool pos = mp > mn;
    const float sigma = pos ? mp : mn;
    if (sigma <= 0.f) continue;
    const float lbd = std::sqrt(s[j] * sigma);
    if (pos) {
      w.col(j) = lbd * xp / xpn;
      h.row(j) = lbd * yp.transpose() / ypn;
    } else {
      w.col(j) = lbd * xn / xnn;
      h.row(j) = lbd * yn.transpose() / ynn;
    }
  }
  constexpr float kZero = 1e-6f;
  w = (w.array() < kZero).select(0.f, w);
  h = (h.array() < kZero).select(0.f, h);
  if (o.init == NmfInit::kNndsvda) {
    const float avg = static_cast<float>(mean);
    w = (w.array() == 0.f).select(avg, w);
    h = (h.array() == 0.f).select(avg, h);
  }
}

}  // namespace

void initialize_factors(const Eigen::Ref<const Mat>& x, const BatchNmfOptions& o, Mat& w, Mat& h) {
  initialize_factors_keep_range(x, o, w, h, nullptr, nullptr);
}

void solve_activations(const Eigen::Ref<const Mat>& x, const Eigen::Ref<const Mat>& w, Mat& h,
                       float l1, float l2, int max_sweeps, double tol, int threads, bool warm) {
  if (w.rows() != x.rows())
    throw std::invalid_argument("solve_activations: W is " + shape_str(w.rows(), w.cols()) +
                                " but X is " + shape_str(x.rows(), x.cols()));
  if (!warm || h.rows() != w.cols() || h.cols() != x.cols()) h.setZero(w.cols(), x.cols());
  Mat wt = w.transpose();
  Mat gram;
  gram_wide(wt, gram, threads);
  Mat wtx(w.cols(), x.cols());
  detail::parallel_product(wt, x, wtx, threads);
  // Converge each column fully: no relative-to-first-sweep early exit here.
  detail::cd_columns(gram, wtx, h, l1, l2, max_sweeps, 0.0, tol * tol, threads);
}

namespace {

// aᵀ a for a tall a (n × K), rows split across threads, partial sums added in block order.
void gram_tall(const Eigen::Ref<const Mat>& a, Mat& out, int threads) {
  const Eigen::Index k = a.cols(), n = a.rows();
  const int t = static_cast<int>(std::clamp<Eigen::Index>(
      n / 4096, 1, threads_for(double(k) * double(k) * double(n), threads)));
  std::vector<Mat> parts(static_cast<size_t>(t), Mat::Zero(k, k));
  const Eigen::Index chunk = (n + t - 1) / t;
  detail::parallel_blocks(t, t, [&](Eigen::Index b, Eigen::Index e) {
    for (Eigen::Index p = b; p < e; ++p) {
      const Eigen::Index r0 = p * chunk, r1 = std::min(n, r0 + chunk);
      if (r0 >= r1) continue;
      if (k > kSkinnyMax) {
        // One triangle (SYRK): half the multiply-adds, which at K 100 and 65,536 rows is a
        // product as large as a compressed one, once per iteration.
        parts[static_cast<size_t>(p)].selfadjointView<Eigen::Lower>().rankUpdate(
            a.middleRows(r0, r1 - r0).transpose());
      } else {
        parts[static_cast<size_t>(p)].noalias() =
            a.middleRows(r0, r1 - r0).transpose() * a.middleRows(r0, r1 - r0);
      }
    }
  });
  out = parts[0];
  for (size_t p = 1; p < parts.size(); ++p) out += parts[p];
  if (k > kSkinnyMax) {  // mirror the lower triangle (an in-place transpose would alias)
    for (Eigen::Index j = 1; j < k; ++j)
      for (Eigen::Index i = 0; i < j; ++i) out(i, j) = out(j, i);
  }
}

// HALS on a tall factor F (n × K; the rows are independent problems):
//   minimise 1/2 tr(F G Fᵀ) − tr(Fᵀ B) + l1 Σ F + l2/2 ‖F‖²,  F ≥ 0,
// one column of F at a time, f_c ← max(0, (b_c − F g_c + g_cc f_c − l1) / (g_cc + l2)). Each
// column update is a matrix-vector product over all rows, so it runs at vector speed. Rows are
// split across threads in fixed blocks; each block stops when a sweep moves it by less than 1 % of
// its first sweep (squared: kInnerRelativeStep), or after max_sweeps.
void hals_rows(const Eigen::Ref<const Mat>& g, const Eigen::Ref<const Mat>& b, Mat& f, float l1,
               float l2, int max_sweeps, Eigen::Index r0, Eigen::Index r1) {
  const Eigen::Index rows = r1 - r0, k = f.cols();
  Eigen::VectorXf fg(rows), next(rows);
  double first = -1.0;
  for (int s = 0; s < max_sweeps; ++s) {
    double step = 0.0;
    for (Eigen::Index c = 0; c < k; ++c) {
      const float d = g(c, c) + l2;
      if (!(d > 0.f)) {
        f.col(c).segment(r0, rows).setZero();
        continue;
      }
      fg.noalias() = f.middleRows(r0, rows) * g.col(c);
      next = ((b.col(c).segment(r0, rows) - fg + g(c, c) * f.col(c).segment(r0, rows)).array() -
              l1)
                 .max(0.f) /
             d;
      step += static_cast<double>(d) * (next - f.col(c).segment(r0, rows)).squaredNorm();
      f.col(c).segment(r0, rows) = next;
    }
    if (first < 0) first = step;
    if (step == 0.0 || step <= kInnerRelativeStep * first) break;
  }
}

// Each column update reads the whole row block of F: blocks of about 64k floats (256 KB) keep F's
// rows in L2 through all sweeps (a 65,536 x 100 W read from memory once per column update made
// the W sweeps cost as much as the products). Rows are independent problems; each sub-block
// stops on its own.
// hals_rows for exactly kTileRows rows [r0, r0 + kTileRows), copied into `tile` (kTileRows × K,
// column-major) so that F's rows stay in L1 through all sweeps; the column update's F g_c runs
// as 8 vector accumulators over K (Eigen's gemv on a 655-row block read F from L2 at ~30 GFLOP/s,
// 40 % of a compressed fit at K 100). Same updates and stopping rule as hals_rows on this block.
constexpr Eigen::Index kTileRows = 64;

void hals_rows_tile(const Eigen::Ref<const Mat>& g, const Eigen::Ref<const Mat>& b, Mat& f,
                    float l1, float l2, int max_sweeps, Eigen::Index r0, float* tile) {
  constexpr int kVecs = static_cast<int>(kTileRows / 8);
  const Eigen::Index k = f.cols();
  for (Eigen::Index c = 0; c < k; ++c)
    std::memcpy(tile + c * kTileRows, f.col(c).data() + r0, sizeof(float) * kTileRows);
  const V8 zero = splat8(0.f), l1v = splat8(l1);
  double first = -1.0;
  for (int s = 0; s < max_sweeps; ++s) {
    double step = 0.0;
    for (Eigen::Index c = 0; c < k; ++c) {
      float* fc = tile + c * kTileRows;
      const float d = g(c, c) + l2;
      if (!(d > 0.f)) {
        std::memset(fc, 0, sizeof(float) * kTileRows);
        continue;
      }
      V8 acc[kVecs];
      for (int v = 0; v < kVecs; ++v) acc[v] = zero;
      const float* gc = g.col(c).data();
      for (Eigen::Index j = 0; j < k; ++j) {
        const V8 gj = splat8(gc[j]);
        const float* fj = tile + j * kTileRows;
        for (int v = 0; v < kVecs; ++v) acc[v] += load8(fj + 8 * v) * gj;
      }
      const V8 gcc = splat8(g(c, c)), inv_d = splat8(1.f / d);
      const float* bc = b.col(c).data() + r0;
      V8 moved = zero;
      for (int v = 0; v < kVecs; ++v) {
        const V8 old = load8(fc + 8 * v);
        V8 next = (load8(bc + 8 * v) - acc[v] + gcc * old - l1v) * inv_d;
        next = next > zero ? next : zero;
        const V8 delta = next - old;
        moved += delta * delta;
        store8(fc + 8 * v, next);
      }
      step += static_cast<double>(d) * static_cast<double>(hsum8(moved));
    }
    if (first < 0) first = step;
    if (step == 0.0 || step <= kInnerRelativeStep * first) break;
  }
  for (Eigen::Index c = 0; c < k; ++c)
    std::memcpy(f.col(c).data() + r0, tile + c * kTileRows, sizeof(float) * kTileRows);
}

void hals_tall(const Eigen::Ref<const Mat>& g, const Eigen::Ref<const Mat>& b, Mat& f, float l1,
               float l2, int max_sweeps, int threads) {
  const Eigen::Index n = f.rows(), k = f.cols();
  const int t = threads_for(4.0 * double(k) * double(k) * double(n), threads);
  if (k > kSkinnyMax) {
    // Wide rank: tiles of kTileRows rows held in L1 (hals_rows_tile), the tail by hals_rows.
    // Threads own whole tiles. (A thin rank keeps the 256 KB blocks below: its figures were
    // measured with them, and its sweeps are a small part of a fit.)
    const Eigen::Index tiles = n / kTileRows;
    std::vector<std::vector<float>> scratch(static_cast<size_t>(std::max(t, 1)));
    const int tt = static_cast<int>(std::clamp<Eigen::Index>(tiles, 1, t));
    const Eigen::Index chunk = (tiles + tt - 1) / tt;
    detail::parallel_blocks(tt, tt, [&](Eigen::Index pb, Eigen::Index pe) {
      for (Eigen::Index p = pb; p < pe; ++p) {
        std::vector<float>& tile = scratch[static_cast<size_t>(p)];
        tile.resize(static_cast<size_t>(kTileRows * k));
        for (Eigen::Index i = p * chunk; i < std::min(tiles, (p + 1) * chunk); ++i)
          hals_rows_tile(g, b, f, l1, l2, max_sweeps, i * kTileRows, tile.data());
      }
    });
    if (tiles * kTileRows < n) hals_rows(g, b, f, l1, l2, max_sweeps, tiles * kTileRows, n);
    return;
  }
  const Eigen::Index sub = std::max<Eigen::Index>(256, 65536 / std::max<Eigen::Index>(k, 1));
  detail::parallel_blocks(t, n, [&](Eigen::Index r0, Eigen::Index r1) {
    for (Eigen::Index a = r0; a < r1; a += sub)
      hals_rows(g, b, f, l1, l2, max_sweeps, a, std::min(r1, a + sub));
  });
}

// One pass over X for the H half-iteration and the products the W half needs, for a short X
// (M ≤ kFusedMaxRows) and a thin rank: per block of samples that stays in L2, xtw_b = X_bᵀ W
// (skipped when `xtw_fresh`: xtw already holds it), HALS sweeps on those rows of Hᵀ, then
// xht += X_b H_bᵀ and hht += H_b H_bᵀ while X_b is still in cache. Memory traffic for X halves
// against two separate products. Threads own fixed sample ranges and their own partial sums,
// added in order: deterministic for a thread count.
constexpr Eigen::Index kFusedMaxRows = 2048;

void fused_h_pass(const Eigen::Ref<const Mat>& x, const Mat& w, const Mat& wtw, Mat& xtw,
                  bool xtw_fresh, Mat& ht, Mat& xht, Mat& hht, float l1, float l2, int sweeps,
                  int threads) {
  const Eigen::Index m = x.rows(), n = x.cols(), k = w.cols();
  const int t = static_cast<int>(std::clamp<Eigen::Index>(
      n / 256, 1, threads_for(2.0 * double(m) * double(n) * double(k), threads)));
  const Eigen::Index block = std::clamp<Eigen::Index>(((65536 / m) + 7) & ~Eigen::Index{7}, 32, 4096);
  std::vector<Mat> xht_p(static_cast<size_t>(t), Mat::Zero(m, k));
  std::vector<Mat> hht_p(static_cast<size_t>(t), Mat::Zero(k, k));
  xtw.resize(n, k);
  const Eigen::Index chunk = (n + t - 1) / t;
  detail::parallel_blocks(t, t, [&](Eigen::Index pb, Eigen::Index pe) {
    for (Eigen::Index p = pb; p < pe; ++p) {
      const Eigen::Index s0 = p * chunk, s1 = std::min(n, s0 + chunk);
      Mat& xh = xht_p[static_cast<size_t>(p)];
      Mat& hh = hht_p[static_cast<size_t>(p)];
      for (Eigen::Index j0 = s0; j0 < s1; j0 += block) {
        const Eigen::Index j1 = std::min(s1, j0 + block);
        if (!xtw_fresh) xtq_block(x, w, xtw, j0, j1);
        hals_rows(wtw, xtw, ht, l1, l2, sweeps, j0, j1);
        xf_block(x, ht, xh, 0, m, j0, j1, true);
        hh.noalias() += ht.middleRows(j0, j1 - j0).transpose() * ht.middleRows(j0, j1 - j0);
      }
    }
  });
  xht = xht_p[0];
  hht = hht_p[0];
  for (size_t p = 1; p < xht_p.size(); ++p) {
    xht += xht_p[p];
    hht += hht_p[p];
  }
}

// The compressed HALS phase (see batch_nmf.h): HALS on X̂ = Q B with q = Q (M × l, orthonormal)
// and bt = Bᵀ = Xᵀ Q (N × l). Both factors free. On entry wtw and hht match w and ht; on return
// they match the final factors. Each iteration is an exact HALS iteration on X̂, so `objective`
// (½‖X̂ − W H‖² + penalties) does not increase. Products per iteration: Qᵀ W and Q (B Hᵀ), M l K
// each, instead of Xᵀ W and X Hᵀ, M N K each.
int compressed_hals(const Mat& q, const Mat& bt, const BatchNmfOptions& o, int inner_h,
                    int inner_w, int threads, Mat& w, Mat& ht, Mat& wtw, Mat& hht,
                    std::vector<double>& objective) {
  const double xhat_sq = frobenius_inner(bt, bt);  // ‖X̂‖² = ‖B‖² (Q orthonormal)
  const Eigen::Index n = bt.rows(), l = bt.cols(), k = w.cols();
  // Letters as in fit_hals; qtw = Qᵀ W (l × K), bht = B Hᵀ (l × K), xtw = X̂ᵀ W, xht = X̂ Hᵀ.
  Mat qtw(l, k), bht(l, k), xtw(n, k), xht;
  double prev = std::numeric_limits<double>::infinity();
  int it = 0;
  while (it < o.max_iter) {
    ++it;
    product_xt_q(q, w, qtw, threads);
    xtw.noalias() = bt * qtw;
    hals_tall(wtw, xtw, ht, o.l1_h, o.l2_h, inner_h, threads);
    gram_tall(ht, hht, threads);
    bht.noalias() = bt.transpose() * ht;
    product_x_f(q, bht, xht, threads);
    hals_tall(hht, xht, w, o.l1_w, o.l2_w, inner_w, threads);
    gram_tall(w, wtw, threads);
    const double f = std::max(0.0, 0.5 * (xhat_sq - 2.0 * frobenius_inner(w, xht) +
                                          frobenius_inner(wtw, hht))) +
                     penalties(w, ht, o);
    objective.push_back(f);
    if (it > 1 && std::abs(prev - f) <= o.tol * std::max(prev, 1e-300)) break;
    prev = f;
  }
  return it;
}

NmfResult fit_hals(const Eigen::Ref<const Mat>& x, const BatchNmfOptions& o, Mat w, Mat h,
                   const Mat* q = nullptr, const Mat* bt = nullptr) {
  const int threads = std::max(o.threads, 1);
  const Eigen::Index m = x.rows(), k = o.rank;
  double x_sum = 0.0, x_sq = 0.0;
  sum_and_squares(x, x_sum, x_sq);
  // Gillis & Glineur size the inner loop by the flop ratio of the products (M N K) to a sweep:
  // 1 + M/K for H (a sweep costs N K²), 1 + N/K for W (M K²). A sweep runs well below GEMM
  // speed, so the ratio is scaled by 1/8 and bounded to [4, 8], the same count for both factors
  // (each also stops once a sweep moves it by < 1 % of its first). Measured (sweeps -> outer
  // iterations, CPU): 512 x 20,000 K 20: 2 -> 26, 4 -> 21 (fastest), 8 -> 22; 64 x 200,000 K 6:
  // 2 -> 20, 4 -> 16; 65,536 x 2,000 K 100: (10 H, 3 W) -> 40 it 60 s, 8 -> 27 it 45 s,
  // 16 -> 32 it 62 s.
  const int inner = o.max_inner_sweeps > 0
                        ? o.max_inner_sweeps
                        : static_cast<int>(std::clamp<Eigen::Index>(1 + m / (8 * k), 4, 8));
  const int inner_h = inner, inner_w = inner;
  // Letters: ht = Hᵀ (N × K) so that both factors are tall with contiguous columns;
  // xtw = Xᵀ W (N × K), xht = X Hᵀ (M × K), wtw = Wᵀ W, hht = H Hᵀ (K × K).
  Mat ht = h.transpose();
  h.resize(0, 0);
  Mat xtw, xht, wtw, hht;
  product_xt_q(x, w, xtw, threads);
  gram_tall(w, wtw, threads);
  gram_tall(ht, hht, threads);
  auto data_term = [&](const Mat& factor, const Mat& cross) {
    return std::max(0.0, 0.5 * (x_sq - 2.0 * frobenius_inner(factor, cross) +
                                frobenius_inner(wtw, hht)));
  };
  // Rescale the initial product to its least-squares optimum α = <X, WH> / ‖WH‖² (NNDSVDa's
  // mean-filled zeros inflate WH several-fold; sklearn starts from there and spends iterations
  // shrinking it). Cheap: everything comes from the products already formed. Skipped when a
  // factor is frozen (it must stay exactly as given).
  {
    const double cross = frobenius_inner(ht, xtw), model_sq = frobenius_inner(wtw, hht);
    if (cross > 0 && model_sq > 0 && o.update_w && o.update_h) {
      const double alpha = cross / model_sq;
      const float sa = static_cast<float>(std::sqrt(alpha));
      w *= sa;
      ht *= sa;
      xtw *= sa;
      wtw *= static_cast<float>(alpha);
      hht *= static_cast<float>(alpha);
    }
  }
  NmfResult r;
  double last_data = data_term(ht, xtw);
  r.objective.push_back(last_data + penalties(w, ht, o));
  bool xtw_fresh = true;
  if (q && bt && o.max_iter > 0) {
    // The same Gillis & Glineur rule with the compressed products: for W they cost M l K against
    // M K² for a sweep, a ratio of l / K ≈ 1, so 1 + l / (2K) sweeps, but at least 2 (with 1 the
    // objective stalls: measured at 65,536 x 2,000 K 100, 54 compressed iterations ending at
    // error 0.080 against 0.0618). W sweeps, in CPU s for the fit: 2 -> 11.8 (43 compressed
    // iterations), 4 -> 14.9 (40), 8 -> 18.4 (32), all at error 0.061766. H keeps its count (its
    // products still cost M l K, its sweeps only N K²).
    const int compressed_inner_w =
        o.max_inner_sweeps > 0
            ? o.max_inner_sweeps
            : static_cast<int>(std::clamp<Eigen::Index>(1 + q->cols() / (2 * k), 2, 8));
    r.compressed_iterations = compressed_hals(*q, *bt, o, inner_h, compressed_inner_w, threads, w, ht, wtw,
                                              hht, r.compressed_objective);
    // Back to X: the exact objective at the compressed solution, and Xᵀ W for the first exact
    // iteration.
    product_xt_q(x, w, xtw, threads);
    last_data = data_term(ht, xtw);
    r.objective.push_back(last_data + penalties(w, ht, o));
  }
  // Short X, thin rank, both factors free: one pass over X per iteration (fused_h_pass).
  const bool fused = o.update_h && o.update_w && m <= kFusedMaxRows && k <= kSkinnyMax;
  for (int it = 1; it <= o.max_iter; ++it) {
    if (fused) {
      fused_h_pass(x, w, wtw, xtw, xtw_fresh, ht, xht, hht, o.l1_h, o.l2_h, inner_h, threads);
      xtw_fresh = false;
      hals_tall(hht, xht, w, o.l1_w, o.l2_w, inner_w, threads);
      gram_tall(w, wtw, threads);
      last_data = data_term(w, xht);
      const double f = last_data + penalties(w, ht, o);
      const double prev = r.objective.back();
      r.objective.push_back(f);
      r.iterations = it;
      if (std::abs(prev - f) <= o.tol * std::max(prev, 1e-300)) {
        r.converged = true;
        break;
      }
      continue;
    }
    if (!xtw_fresh) product_xt_q(x, w, xtw, threads);
    xtw_fresh = false;
    if (o.update_h) {
      hals_tall(wtw, xtw, ht, o.l1_h, o.l2_h, inner_h, threads);
      gram_tall(ht, hht, threads);
    }
    if (o.update_w) {
      product_x_f(x, ht, xht, threads);
      hals_tall(hht, xht, w, o.l1_w, o.l2_w, inner_w, threads);
      gram_tall(w, wtw, threads);
      last_data = data_term(w, xht);
    } else {
      last_data = data_term(ht, xtw);
      xtw_fresh = true;  // W did not move
    }
    const double f = last_data + penalties(w, ht, o);
    const double prev = r.objective.back();
    r.objective.push_back(f);
    r.iterations = it;
    if (std::abs(prev - f) <= o.tol * std::max(prev, 1e-300)) {
      r.converged = true;
      break;
    }
  }
  r.w = std::move(w);
  r.h = ht.transpose();
  // ‖X − WH‖² = 2 × the data term, already known from the last objective (no extra product).
  r.relative_error = x_sq > 0 ? std::sqrt(2.0 * last_data / x_sq) : 0.0;
  return r;
}

NmfResult fit_mu(const Eigen::Ref<const Mat>& x, const BatchNmfOptions& o, Mat w, Mat h) {
  const int threads = std::max(o.threads, 1);
  const float beta = o.loss == NmfLoss::kKullbackLeibler ? 1.f : o.beta;
  const float gamma = mu_exponent(beta);
  const Eigen::Index m = x.rows(), n = x.cols(), k = o.rank;
  // Zeros are fixed points of multiplicative updates: lift exact zeros of the init slightly.
  w = w.cwiseMax(kTiny);
  h = h.cwiseMax(kTiny);
  Mat wh, r_num(m, n), num, den;
  model(w, h, wh, threads);
  NmfResult res;
  auto objective = [&]() { return beta_divergence(x, wh, beta) + penalties(w, h, o); };
  res.objective.push_back(objective());
  // R1 = X ∘ (WH)^(β−2), R2 = (WH)^(β−1), both in place of scratch matrices.
  auto ratios = [&](Mat& r1, Mat& r2) {
    if (beta == 1.f) {
      r1 = x.cwiseQuotient(wh);
    } else if (beta == 2.f) {
      r1 = x;
    } else {
      r1 = x.cwiseProduct(wh.array().pow(beta - 2.f).matrix());
      r2 = wh.array().pow(beta - 1.f).matrix();
    }
  };
  Mat r2;
  for (int it = 1; it <= o.max_iter; ++it) {
    if (o.update_h) {
      ratios(r_num, r2);
      num.resize(k, n);
      Mat wt = w.transpose();
      detail::parallel_product(wt, r_num, num, threads);
      if (beta == 1.f) {
        den = w.colwise().sum().transpose().replicate(1, n);
      } else if (beta == 2.f) {
        Mat wtw = wt * w;
        den.resize(k, n);
        detail::parallel_product(wtw, h, den, threads);
      } else {
        den.resize(k, n);
        detail::parallel_product(wt, r2, den, threads);
      }
      den.array() += o.l1_h;
      if (o.l2_h != 0.f) den.noalias() += o.l2_h * h;
      den = den.cwiseMax(kTiny);
      if (gamma == 1.f) {
        h.array() *= num.array() / den.array();
      } else {
        h.array() *= (num.array() / den.array()).pow(gamma);
      }
      model(w, h, wh, threads);
    }
    if (o.update_w) {
      ratios(r_num, r2);
      num.resize(m, k);
      product_h_xt(h, r_num, num, threads);  // K × M = H R1ᵀ
      Mat numt = num.transpose();
      if (beta == 1.f) {
        den = h.rowwise().sum().transpose().replicate(m, 1);
      } else if (beta == 2.f) {
        Mat hht = h * h.transpose();
        den.noalias() = w * hht;
      } else {
        Mat d;
        product_h_xt(h, r2, d, threads);
        den = d.transpose();
      }
      den.array() += o.l1_w;
      if (o.l2_w != 0.f) den.noalias() += o.l2_w * w;
      den = den.cwiseMax(kTiny);
      if (gamma == 1.f) {
        w.array() *= numt.array() / den.array();
      } else {
        w.array() *= (numt.array() / den.array()).pow(gamma);
      }
      model(w, h, wh, threads);
    }
    const double f = objective();
    const double prev = res.objective.back();
    res.objective.push_back(f);
    res.iterations = it;
    if (std::abs(prev - f) <= o.tol * std::max(prev, 1e-300)) {
      res.converged = true;
      break;
    }
  }
  res.w = std::move(w);
  res.h = std::move(h);
  return res;
}

// Range size of the compressed phase (the NNDSVD randomised SVD's k + 10).
constexpr Eigen::Index kCompressOversampling = 10;

}  // namespace

// kAuto: only where it pays. The fused path (short X, thin rank) already reads X once per
// iteration with the skinny kernels, and a small X costs little per exact iteration; for a large
// X the compressed products cost about l / min(M, N) of the exact ones (≤ 1/8 here).
bool uses_compression(Eigen::Index m, Eigen::Index n, const BatchNmfOptions& o) {
  if (o.compress == Compression::kOff) return false;
  if (o.compress == Compression::kOn) {
    if (o.loss != NmfLoss::kFrobenius)
      throw std::invalid_argument("compress=on needs the Frobenius loss (got " +
                                  to_string(o.loss) + ")");
    if (!o.update_w || !o.update_h)
      throw std::invalid_argument("compress=on needs both factors updated (update_w and "
                                  "update_h true)");
    return true;
  }
  // Only with NNDSVD(a), whose randomised SVD hands over the range for free. A random start
  // would pay four more passes over X for it (about two exact iterations), which short fits
  // such as OnlineNmf's seeding (random, ≤ 30 iterations) do not win back; a warm start (given
  // factors) is near a solution already. kOn compresses those too.
  const Eigen::Index k = o.rank, l = k + kCompressOversampling;
  const bool fused = m <= kFusedMaxRows && k <= kSkinnyMax;
  return o.loss == NmfLoss::kFrobenius && o.update_w && o.update_h && !fused &&
         (o.init == NmfInit::kNndsvd || o.init == NmfInit::kNndsvda) &&
         double(m) * double(n) >= double(1 << 24) && 8 * l <= std::min(m, n);
}

Compression parse_compression(const std::string& s) {
  if (s == "auto") return Compression::kAuto;
  if (s == "on") return Compression::kOn;
  if (s == "off") return Compression::kOff;
  throw std::invalid_argument("unknown compression '" + s + "' (expected auto, on or off)");
}

std::string to_string(Compression c) {
  switch (c) {
    case Compression::kAuto: return "auto";
    case Compression::kOn: return "on";
    case Compression::kOff: return "off";
  }
  return "?";
}

NmfResult fit_nmf(const Eigen::Ref<const Mat>& x, const BatchNmfOptions& options,
                  const Mat* w0, const Mat* h0) {
  check_options(x, options);
  validate_nonnegative(x);
  const Eigen::Index m = x.rows(), n = x.cols(), k = options.rank;
  if (w0 && (w0->rows() != m || w0->cols() != k))
    throw std::invalid_argument("given W is " + shape_str(w0->rows(), w0->cols()) +
                                ", expected " + shape_str(m, k));
  if (h0 && (h0->rows() != k || h0->cols() != n))
    throw std::invalid_argument("given H is " + shape_str(h0->rows(), h0->cols()) +
                                ", expected " + shape_str(k, n));
  if (w0) validate_nonnegative(*w0);
  if (h0) validate_nonnegative(*h0);
  if (!options.update_w && !w0) throw std::invalid_argument("update_w=false needs a given W");
  if (!options.update_h && !h0) throw std::invalid_argument("update_h=false needs a given H");
  BatchNmfOptions chosen = options;
  if (w0 || h0) chosen.init = NmfInit::kGiven;  // given factors are a warm start, whatever init says
  const bool compress = uses_compression(m, n, chosen);
  Mat w, h, q, bt;  // q, bt: the range for the compressed phase (see batch_nmf.h)
  if (w0 && h0) {
    w = *w0;
    h = *h0;
  } else if (w0) {
    w = *w0;
    solve_activations(x, w, h, options.l1_h, options.l2_h, 100, 1e-4, options.threads);
  } else if (h0) {
    h = *h0;
    // W from its normal equations: columns of Wᵀ against H Hᵀ and H Xᵀ.
    Mat hht, hxt;
    gram_wide(h, hht, options.threads);
    product_h_xt(h, x, hxt, options.threads);
    Mat wt = Mat::Zero(k, m);
    detail::cd_columns(hht, hxt, wt, options.l1_w, options.l2_w, 100, 0.0, 1e-8,
                       options.threads);
    w = wt.transpose();
  } else {
    if (options.init == NmfInit::kGiven)
      throw std::invalid_argument("init 'given' needs W and/or H");
    initialize_factors_keep_range(x, options, w, h, compress ? &q : nullptr,
                                  compress ? &bt : nullptr);
  }
  if (compress && q.size() == 0) {  // init random or given: no range from NNDSVD's SVD
    detail::randomized_range(x, k + kCompressOversampling, options.seed, 1, options.threads, q,
                             bt);
  }
  NmfResult r = options.loss == NmfLoss::kFrobenius
                    ? fit_hals(x, options, std::move(w), std::move(h), compress ? &q : nullptr,
                               compress ? &bt : nullptr)
                    : fit_mu(x, options, std::move(w), std::move(h));
  normalize_factors(r.w, r.h, options.normalize);
  if (options.loss == NmfLoss::kFrobenius) return r;
  // Relative error in blocks, in double.
  double res = 0.0;
  Mat block;
  for (Eigen::Index j0 = 0; j0 < n; j0 += 2048) {
    const Eigen::Index c = std::min<Eigen::Index>(2048, n - j0);
    block = x.middleCols(j0, c);
    block.noalias() -= r.w * r.h.middleCols(j0, c);
    res += block.cast<double>().squaredNorm();
  }
  const double xn = x.cast<double>().squaredNorm();
  r.relative_error = xn > 0 ? std::sqrt(res / xn) : 0.0;
  return r;
}

}  // namespace rtnmf::nmf
