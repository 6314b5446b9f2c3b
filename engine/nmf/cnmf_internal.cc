#include "engine/nmf/cnmf_internal.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/nmf/batch_nmf.h"
#if defined(__AVX__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace rtnmf::nmf {

namespace detail {

namespace {
// dst[x] = sum over t of k[t] * rows[t][x], x < n, summed in the order of t from 0 with fused
// multiply-adds. Each output stays in a register over the taps (a tap-major loop over dst
// would load and store every output once per tap).
void weighted_rows(const float* const* rows, const float* k, int taps, int n, float* dst) {
  int x = 0;
#if defined(__AVX2__) && defined(__FMA__)
  for (; x + 32 <= n; x += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int t = 0; t < taps; ++t) {
      const __m256 kt = _mm256_set1_ps(k[t]);
      const float* r = rows[t] + x;
      a0 = _mm256_fmadd_ps(kt, _mm256_loadu_ps(r), a0);
      a1 = _mm256_fmadd_ps(kt, _mm256_loadu_ps(r + 8), a1);
      a2 = _mm256_fmadd_ps(kt, _mm256_loadu_ps(r + 16), a2);
      a3 = _mm256_fmadd_ps(kt, _mm256_loadu_ps(r + 24), a3);
    }
    _mm256_storeu_ps(dst + x, a0);
    _mm256_storeu_ps(dst + x + 8, a1);
    _mm256_storeu_ps(dst + x + 16, a2);
    _mm256_storeu_ps(dst + x + 24, a3);
  }
  for (; x + 8 <= n; x += 8) {
    __m256 a = _mm256_setzero_ps();
    for (int t = 0; t < taps; ++t) a = _mm256_fmadd_ps(_mm256_set1_ps(k[t]), _mm256_loadu_ps(rows[t] + x), a);
    _mm256_storeu_ps(dst + x, a);
  }
#endif
  for (; x < n; ++x) {
    float a = 0;
    for (int t = 0; t < taps; ++t) a = std::fma(k[t], rows[t][x], a);
    dst[x] = a;
  }
}
}  // namespace

void gaussian_filter(const float* in, float* out, float* tmp, int h, int w, float sigma, int threads) {
  const int r = std::max(1, static_cast<int>(std::ceil(3 * sigma)));
  float kern[64];
  const int rr = std::min(r, 31);
  const int taps = 2 * rr + 1;
  float sum = 0;
  for (int i = -rr; i <= rr; ++i) sum += kern[i + rr] = std::exp(-0.5f * i * i / (sigma * sigma));
  for (int i = 0; i < taps; ++i) kern[i] /= sum;
  // Rows. The borders (rr pixels each side, a third of a 49-pixel detection patch's row) read a
  // short copy of their neighbourhood with the edge pixel replicated (at most 3 rr + 1 <= 94
  // values), so every output is the same sum as with clamped indices.
  const int x_lo = std::min(rr, w), x_hi = std::max(x_lo, w - rr);
  parallel_blocks(threads, h, [&](Eigen::Index y0, Eigen::Index y1) {
    const float* rows[64];
    float pad[96];
    auto border = [&](const float* src, float* dst, int x0, int x1) {
      const int n = x1 - x0;
      for (int j = 0; j < n + 2 * rr; ++j) pad[j] = src[std::clamp(x0 + j - rr, 0, w - 1)];
      for (int t = 0; t < taps; ++t) rows[t] = pad + t;
      weighted_rows(rows, kern, taps, n, dst + x0);
    };
    for (Eigen::Index y = y0; y < y1; ++y) {
      const float* src = in + static_cast<std::ptrdiff_t>(y) * w;
      float* dst = tmp + static_cast<std::ptrdiff_t>(y) * w;
      border(src, dst, 0, x_lo);
      if (x_hi < w) border(src, dst, x_hi, w);
      for (int t = 0; t < taps; ++t) rows[t] = src + x_lo + t - rr;
      if (x_hi > x_lo) weighted_rows(rows, kern, taps, x_hi - x_lo, dst + x_lo);
    }
  });
  // Columns: row y of the output weighs rows y - rr .. y + rr of the row pass (clamped).
  parallel_blocks(threads, h, [&](Eigen::Index y0, Eigen::Index y1) {
    const float* rows[64];
    for (Eigen::Index y = y0; y < y1; ++y) {
      for (int t = 0; t < taps; ++t)
        rows[t] = tmp + static_cast<std::ptrdiff_t>(std::clamp(static_cast<int>(y) + t - rr, 0, h - 1)) * w;
      weighted_rows(rows, kern, taps, w, out + static_cast<std::ptrdiff_t>(y) * w);
    }
  });
}

void box_filter(const float* in, float* out, float* tmp, int h, int w, int r) {
  const float inv = 1.0f / static_cast<float>(2 * r + 1);
  for (int y = 0; y < h; ++y) {
    const float* src = in + static_cast<std::ptrdiff_t>(y) * w;
    float* dst = tmp + static_cast<std::ptrdiff_t>(y) * w;
    float acc = 0;
    for (int i = -r; i <= r; ++i) acc += src[std::clamp(i, 0, w - 1)];
    for (int x = 0; x < w; ++x) {
      dst[x] = acc * inv;
      acc += src[std::min(x + r + 1, w - 1)] - src[std::max(x - r, 0)];
    }
  }
  // Columns row by row (contiguous): out row y = out row y-1 + (tmp row y+r - tmp row y-r-1) / n.
  auto row = [&](const float* base, int y) { return base + static_cast<std::ptrdiff_t>(std::clamp(y, 0, h - 1)) * w; };
  for (int x = 0; x < w; ++x) out[x] = 0;
  for (int i = -r; i <= r; ++i) {
    const float* s = row(tmp, i);
    for (int x = 0; x < w; ++x) out[x] += s[x];
  }
  for (int x = 0; x < w; ++x) out[x] *= inv;
  for (int y = 1; y < h; ++y) {
    const float* prev = out + static_cast<std::ptrdiff_t>(y - 1) * w;
    float* dst = out + static_cast<std::ptrdiff_t>(y) * w;
    const float* add = row(tmp, y + r);
    const float* sub = row(tmp, y - r - 1);
    for (int x = 0; x < w; ++x) dst[x] = prev[x] + (add[x] - sub[x]) * inv;
  }
}

namespace {

// Sorts each of the 8 lanes of `a` (m rows of 8, m a power of two) ascending: a bitonic network
// in its all-ascending form (a flip, then half-cleaners), so every compare-exchange is a vector
// min and max. The steps that stay within 8 consecutive rows (all of k <= 8, and the half-cleaner
// steps j = 4, 2, 1 of every larger k) run on 8 rows held in registers: the same compare-exchanges
// in the same order for each row, without a load and store around each (they were ~60 % of them,
// and the sorts ~17 % of a model update at 512 x 512).
void sort_lanes8(float* a, int m) {
  auto ce = [a](int i, int j) {
    float* x = a + static_cast<std::ptrdiff_t>(i) * kLanes;
    float* y = a + static_cast<std::ptrdiff_t>(j) * kLanes;
#if defined(__AVX__)
    static_assert(kLanes == 8);
    const __m256 u = _mm256_loadu_ps(x), v = _mm256_loadu_ps(y);
    _mm256_storeu_ps(x, _mm256_min_ps(u, v));
    _mm256_storeu_ps(y, _mm256_max_ps(u, v));
#else
    for (int l = 0; l < kLanes; ++l) {
      const float lo = x[l] < y[l] ? x[l] : y[l];
      const float hi = x[l] < y[l] ? y[l] : x[l];
      x[l] = lo;
      y[l] = hi;
    }
#endif
  };
#if defined(__AVX__)
  if (m >= 8) {
    auto rce = [](__m256& x, __m256& y) {
      const __m256 lo = _mm256_min_ps(x, y);
      y = _mm256_max_ps(x, y);
      x = lo;
    };
    // Rows r..r+7 in registers: with `first`, the stages k = 2, 4, 8; else the half-cleaner steps
    // j = 4, 2, 1 of a stage k >= 16.
    auto block8 = [&rce](float* r, bool first) {
      __m256 v0 = _mm256_loadu_ps(r), v1 = _mm256_loadu_ps(r + 8), v2 = _mm256_loadu_ps(r + 16);
      __m256 v3 = _mm256_loadu_ps(r + 24), v4 = _mm256_loadu_ps(r + 32), v5 = _mm256_loadu_ps(r + 40);
      __m256 v6 = _mm256_loadu_ps(r + 48), v7 = _mm256_loadu_ps(r + 56);
      if (first) {
        rce(v0, v1), rce(v2, v3), rce(v4, v5), rce(v6, v7);  // k = 2: flip
        rce(v0, v3), rce(v1, v2), rce(v4, v7), rce(v5, v6);  // k = 4: flip
        rce(v0, v1), rce(v2, v3), rce(v4, v5), rce(v6, v7);  //        j = 1
        rce(v0, v7), rce(v1, v6), rce(v2, v5), rce(v3, v4);  // k = 8: flip
      } else {
        rce(v0, v4), rce(v1, v5), rce(v2, v6), rce(v3, v7);  // j = 4
      }
      rce(v0, v2), rce(v1, v3), rce(v4, v6), rce(v5, v7);    // j = 2
      rce(v0, v1), rce(v2, v3), rce(v4, v5), rce(v6, v7);    // j = 1
      _mm256_storeu_ps(r, v0), _mm256_storeu_ps(r + 8, v1), _mm256_storeu_ps(r + 16, v2);
      _mm256_storeu_ps(r + 24, v3), _mm256_storeu_ps(r + 32, v4), _mm256_storeu_ps(r + 40, v5);
      _mm256_storeu_ps(r + 48, v6), _mm256_storeu_ps(r + 56, v7);
    };
    for (int base = 0; base < m; base += 8) block8(a + static_cast<std::ptrdiff_t>(base) * kLanes, true);
    for (int k = 16; k <= m; k <<= 1) {
      for (int base = 0; base < m; base += k)
        for (int t = 0; t < k / 2; ++t) ce(base + t, base + k - 1 - t);
      for (int j = k / 4; j >= 8; j >>= 1)
        for (int base = 0; base < m; base += 2 * j)
          for (int t = 0; t < j; ++t) ce(base + t, base + t + j);
      for (int base = 0; base < m; base += 8) block8(a + static_cast<std::ptrdiff_t>(base) * kLanes, false);
    }
    return;
  }
#endif
  for (int k = 2; k <= m; k <<= 1) {
    for (int base = 0; base < m; base += k)
      for (int t = 0; t < k / 2; ++t) ce(base + t, base + k - 1 - t);
    for (int j = k / 4; j > 0; j >>= 1)
      for (int base = 0; base < m; base += 2 * j)
        for (int t = 0; t < j; ++t) ce(base + t, base + t + j);
  }
}

int lane_rows(int n) {
  int m = 1;
  while (m < n) m <<= 1;
  return m;
}

}  // namespace

void median_and_noise8(const float* x, int n, float* work, float* median, float* noise) {
  const float kInf = std::numeric_limits<float>::infinity();
  // Padding with +inf keeps the j-th smallest of the n values at row j once sorted.
  auto pad = [work, kInf](int from, int to) { std::fill(work + from * kLanes, work + to * kLanes, kInf); };
  if (median) {
    const int m = lane_rows(n);
    std::copy(x, x + n * kLanes, work);
    pad(n, m);
    sort_lanes8(work, m);
    for (int l = 0; l < kLanes; ++l) median[l] = work[(n / 2) * kLanes + l];
  }
  if (noise) {
    const int nd = n - 1, m = lane_rows(nd);
    for (int i = 0; i < nd; ++i)
      for (int l = 0; l < kLanes; ++l) work[i * kLanes + l] = x[(i + 1) * kLanes + l] - x[i * kLanes + l];
    pad(nd, m);
    sort_lanes8(work, m);
    float md[kLanes];
    for (int l = 0; l < kLanes; ++l) md[l] = work[(nd / 2) * kLanes + l];
    for (int i = 0; i < nd; ++i)
      for (int l = 0; l < kLanes; ++l) work[i * kLanes + l] = std::fabs(work[i * kLanes + l] - md[l]);
    pad(nd, m);
    sort_lanes8(work, m);
    for (int l = 0; l < kLanes; ++l) noise[l] = work[(nd / 2) * kLanes + l] / (0.6745f * std::sqrt(2.0f));
  }
}

Support square_support(int cy, int cx, int radius, int h, int w) {
  Support s;
  for (int y = std::max(0, cy - radius); y <= std::min(h - 1, cy + radius); ++y)
    for (int x = std::max(0, cx - radius); x <= std::min(w - 1, cx + radius); ++x)
      s.push_back(y * w + x);
  return s;
}

Eigen::SparseMatrix<float> assemble(int p, const std::vector<Support>& supports,
                                    const std::vector<Eigen::VectorXf>& values) {
  Eigen::SparseMatrix<float> a(p, static_cast<Eigen::Index>(supports.size()));
  std::size_t nnz = 0;
  for (std::size_t k = 0; k < supports.size(); ++k)
    for (Eigen::Index i = 0; i < values[k].size(); ++i) nnz += values[k](i) > 0;
  a.reserve(static_cast<Eigen::Index>(nnz));
  for (std::size_t k = 0; k < supports.size(); ++k) {
    a.startVec(static_cast<Eigen::Index>(k));
    for (std::size_t i = 0; i < supports[k].size(); ++i) {
      const float v = values[k](static_cast<Eigen::Index>(i));
      if (v > 0) a.insertBack(supports[k][i], static_cast<Eigen::Index>(k)) = v;
    }
  }
  a.finalize();
  return a;
}

Eigen::MatrixXf footprint_gram(const Eigen::SparseMatrix<float>& a) {
  const Eigen::Index K = a.cols();
  // Pixel by pixel: each pixel adds the products of the few footprints that hold it (a sparse
  // product AᵀA would go column pair by column pair through a symbolic pass first).
  const Eigen::SparseMatrix<float, Eigen::RowMajor> r = a;  // compressed, columns sorted per pixel
  const int* outer = r.outerIndexPtr();
  const int* inner = r.innerIndexPtr();
  const float* val = r.valuePtr();
  Eigen::MatrixXf g = Eigen::MatrixXf::Zero(K, K);
  for (Eigen::Index p = 0; p < r.outerSize(); ++p) {
    for (int i = outer[p]; i < outer[p + 1]; ++i) {
      const float vi = val[i];
      float* col = g.col(inner[i]).data();
      for (int j = i; j < outer[p + 1]; ++j) col[inner[j]] += vi * val[j];  // rows >= column
    }
  }
  g.triangularView<Eigen::StrictlyUpper>() = g.transpose();
  return g;
}

void hals_rows(const Eigen::MatrixXf& gram, const Eigen::MatrixXf& aty, Eigen::MatrixXf& x,
               int sweeps) {
  const Eigen::Index k = gram.rows();
  for (int s = 0; s < sweeps; ++s) {
    for (Eigen::Index i = 0; i < k; ++i) {
      const float d = gram(i, i);
      if (d <= 0) {
        x.row(i).setZero();
        continue;
      }
      // x_i ← max(0, x_i + (R_i − G_i x) / G_ii)
      Eigen::RowVectorXf grad = aty.row(i) - gram.row(i) * x;
      x.row(i) = (x.row(i) + grad / d).cwiseMax(0.0f);
    }
  }
}

void hals_shapes(const std::vector<Support>& supports, std::vector<Eigen::VectorXf>& values,
                 Eigen::MatrixXf& bg, const std::vector<Eigen::VectorXf>& yc,
                 const Eigen::MatrixXf& yc_bg, const Eigen::MatrixXf& cc, int h, int w,
                 float bg_sigma, int sweeps, int threads) {
  const int K = static_cast<int>(supports.size());
  const int nb = static_cast<int>(bg.cols());
  const std::size_t P = static_cast<std::size_t>(h) * w;
  // Pixel -> neurons whose support holds it (CSR), to find overlapping neighbours.
  std::vector<int> count(P + 1, 0);
  for (const Support& s : supports)
    for (std::int32_t p : s) ++count[static_cast<std::size_t>(p) + 1];
  for (std::size_t p = 0; p < P; ++p) count[p + 1] += count[p];
  std::vector<int> owners(static_cast<std::size_t>(count[P]));
  {
    std::vector<int> fill(count.begin(), count.end() - 1);
    for (int k = 0; k < K; ++k)
      for (std::int32_t p : supports[static_cast<std::size_t>(k)]) owners[static_cast<std::size_t>(fill[static_cast<std::size_t>(p)]++)] = k;
  }
  std::vector<std::vector<int>> neighbours(static_cast<std::size_t>(K));
  {
    std::vector<int> seen(static_cast<std::size_t>(K), -1);
    for (int k = 0; k < K; ++k) {
      for (std::int32_t p : supports[static_cast<std::size_t>(k)])
        for (int q = count[static_cast<std::size_t>(p)]; q < count[static_cast<std::size_t>(p) + 1]; ++q) {
          const int j = owners[static_cast<std::size_t>(q)];
          if (seen[static_cast<std::size_t>(j)] != k) {
            seen[static_cast<std::size_t>(j)] = k;
            neighbours[static_cast<std::size_t>(k)].push_back(j);
          }
        }
    }
  }
  Eigen::VectorXf scatter = Eigen::VectorXf::Zero(static_cast<Eigen::Index>(P));
  for (int s = 0; s < sweeps; ++s) {
    for (int k = 0; k < K; ++k) {
      const float d = cc(k, k);
      const Support& sk = supports[static_cast<std::size_t>(k)];
      Eigen::VectorXf& ak = values[static_cast<std::size_t>(k)];
      if (d <= 1e-12f) continue;
      // (A_all CC)_k on the support: neighbours scattered into a P-vector, then gathered.
      for (int j : neighbours[static_cast<std::size_t>(k)]) {
        const float c = cc(j, k);
        if (c == 0) continue;
        const Support& sj = supports[static_cast<std::size_t>(j)];
        const Eigen::VectorXf& aj = values[static_cast<std::size_t>(j)];
        for (std::size_t i = 0; i < sj.size(); ++i) scatter(sj[i]) += c * aj(static_cast<Eigen::Index>(i));
      }
      for (std::size_t i = 0; i < sk.size(); ++i) {
        const std::int32_t p = sk[i];
        float acc = scatter(p);
        for (int b = 0; b < nb; ++b) acc += bg(p, b) * cc(K + b, k);
        const float v = ak(static_cast<Eigen::Index>(i)) +
                        (yc[static_cast<std::size_t>(k)](static_cast<Eigen::Index>(i)) - acc) / d;
        ak(static_cast<Eigen::Index>(i)) = std::max(v, 0.0f);
      }
      for (int j : neighbours[static_cast<std::size_t>(k)])
        for (std::int32_t p : supports[static_cast<std::size_t>(j)]) scatter(p) = 0;
    }
    // Background columns on all pixels.
    for (int b = 0; b < nb; ++b) {
      const float d = cc(K + b, K + b);
      if (d <= 1e-12f) continue;
      Eigen::VectorXf acc = bg * cc.block(K, K + b, nb, 1);
      for (int k = 0; k < K; ++k) {
        const float c = cc(k, K + b);
        if (c == 0) continue;
        const Support& sk = supports[static_cast<std::size_t>(k)];
        const Eigen::VectorXf& ak = values[static_cast<std::size_t>(k)];
        for (std::size_t i = 0; i < sk.size(); ++i) acc(sk[i]) += c * ak(static_cast<Eigen::Index>(i));
      }
      bg.col(b) = (bg.col(b) + (yc_bg.col(b) - acc) / d).cwiseMax(0.0f);
      if (bg_sigma > 0) {
        Eigen::VectorXf sm(static_cast<Eigen::Index>(P)), tmp(static_cast<Eigen::Index>(P));
        gaussian_filter(bg.col(b).data(), sm.data(), tmp.data(), h, w, bg_sigma, threads);
        bg.col(b) = sm;
      }
    }
  }
}

float trace_baseline(Eigen::Ref<const Eigen::VectorXf> c, float noise_sd) {
  if (c.size() == 0) return 0.0f;
  std::vector<float> v(c.data(), c.data() + c.size());
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  const float med = v[v.size() / 2];
  // Mean of the values at most one noise sd above the median: the resting level, not pulled up
  // by transients.
  double sum = 0;
  int n = 0;
  for (Eigen::Index i = 0; i < c.size(); ++i) {
    if (c(i) <= med + noise_sd) {
      sum += c(i);
      ++n;
    }
  }
  return n ? static_cast<float>(sum / n) : med;
}

float default_g(double frame_rate_hz, float decay_time_s) {
  if (frame_rate_hz <= 0 || decay_time_s <= 0) return 0.9f;
  return static_cast<float>(std::exp(-1.0 / (frame_rate_hz * decay_time_s)));
}

}  // namespace detail

void CnmfModel::finalize() {
  if (ring.active()) return detail::finalize_ring(*this);  // one-photon ring model (cnmf.cc)
  const int K = k(), B = nb();
  gram.resize(K + B, K + B);
  gram.topLeftCorner(K, K) = detail::footprint_gram(footprints);
  background_under.resize(K, B);
  if (B > 0) {
    // Aᵀ b column by column of A (Eigen's transposed sparse product took ~1.7 ms at 500 x 512²).
    Eigen::MatrixXf atb = Eigen::MatrixXf::Zero(K, B);  // K x nb
    for (int k = 0; k < K; ++k)
      for (Eigen::SparseMatrix<float>::InnerIterator it(footprints, k); it; ++it)
        for (int b = 0; b < B; ++b) atb(k, b) += it.value() * background(it.row(), b);
    gram.topRightCorner(K, B) = atb;
    for (int k = 0; k < K; ++k) {
      const float n2 = gram(k, k);
      background_under.row(k) = n2 > 0 ? Eigen::RowVectorXf(atb.row(k) / n2) : Eigen::RowVectorXf::Zero(B);
    }
    gram.bottomLeftCorner(B, K) = atb.transpose();
    for (int i = 0; i < B; ++i)
      for (int j = 0; j < B; ++j) gram(K + i, K + j) = background.col(i).dot(background.col(j));
  }
  gram_sparse = gram.sparseView(0.0f, 0.0f);
  gram_sparse.makeCompressed();
}

}  // namespace rtnmf::nmf
