// Batch CNMF on the first frames: greedy seeding, then HALS on A, C and b f.
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "engine/nmf/batch_nmf.h"
#include "engine/nmf/cnmf.h"
#include "engine/nmf/cnmf_internal.h"
#include "engine/nmf/ring_background.h"

namespace rtnmf::nmf {
namespace {
// The initialisation's merge of components whose footprints only touch (see refine_round): the
// traces' correlation needed (at least merge_threshold), and the weaker one's activity (trace
// sd x footprint norm) relative to the stronger's. Split pieces of large cells correlated
// 0.97-0.999 with activity ratios 0.4-1; a neighbour merged at 0.935 in a sparse-firing movie.
constexpr float kTouchingMergeCorr = 0.95f;
constexpr float kTouchingMergeActivity = 0.3f;
}  // namespace

namespace detail {

float median_of(std::vector<float>& v) {
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

// Noise sd of a sequence from the MAD of its first differences.
float diff_noise(const std::vector<float>& x, std::vector<float>& scratch) {
  scratch.resize(x.size() - 1);
  for (std::size_t i = 1; i < x.size(); ++i) scratch[i - 1] = x[i] - x[i - 1];
  const float m = median_of(scratch);
  for (float& d : scratch) d = std::fabs(d - m);
  return median_of(scratch) / (0.6745f * std::sqrt(2.0f));
}

// Footprint consistency: correlation between a footprint and the data averaged over the frames
// in which its trace is highest (CaImAn's spatial-correlation test). yb is P x T (background
// removed); only the support is read.
float space_correlation(const Eigen::MatrixXf& yb, const Support& support, const Eigen::VectorXf& a,
                        Eigen::Ref<const Eigen::VectorXf> c, float baseline, float noise, bool relative) {
  const Eigen::Index T = c.size();
  std::vector<Eigen::Index> order(static_cast<std::size_t>(T));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](Eigen::Index x, Eigen::Index y) { return c(x) > c(y); });
  std::size_t n = 0;
  while (n < order.size() && c(order[n]) > baseline + 2 * noise) ++n;
  n = std::clamp<std::size_t>(n, std::min<std::size_t>(5, order.size()), std::max<std::size_t>(5, order.size() / 5));
  n = std::min(n, order.size());
  Eigen::VectorXf avg = Eigen::VectorXf::Zero(static_cast<Eigen::Index>(support.size()));
  for (std::size_t q = 0; q < n; ++q)
    for (std::size_t i = 0; i < support.size(); ++i) avg(static_cast<Eigen::Index>(i)) += yb(support[i], order[q]);
  if (relative) {
    Eigen::VectorXf all = Eigen::VectorXf::Zero(avg.size());
    for (Eigen::Index t = 0; t < T; ++t)
      for (std::size_t i = 0; i < support.size(); ++i) all(static_cast<Eigen::Index>(i)) += yb(support[i], t);
    avg = avg / static_cast<float>(n) - all / static_cast<float>(T);
  }
  const Eigen::VectorXd x = avg.cast<double>().array() - avg.cast<double>().mean();
  const Eigen::VectorXd y = a.cast<double>().array() - a.cast<double>().mean();
  const double den = x.norm() * y.norm();
  return den > 0 ? static_cast<float>(x.dot(y) / den) : 0.0f;
}

// Keeps the pixels of `a` (over a square patch of side 2R+1 whose centre is the seed) that are
// >= frac * max and 4-connected to the seed. a is indexed like the patch support.
void keep_connected(Eigen::VectorXf& a, int side, int seed_index, float frac) {
  const float thr = frac * a.maxCoeff();
  std::vector<char> keep(static_cast<std::size_t>(a.size()), 0);
  std::vector<int> stack = {seed_index};
  if (a(seed_index) < thr) {
    a.setZero();
    return;
  }
  keep[static_cast<std::size_t>(seed_index)] = 1;
  while (!stack.empty()) {
    const int i = stack.back();
    stack.pop_back();
    const int y = i / side, x = i % side;
    const int nbr[4][2] = {{y - 1, x}, {y + 1, x}, {y, x - 1}, {y, x + 1}};
    for (const auto& n : nbr) {
      if (n[0] < 0 || n[1] < 0 || n[0] >= static_cast<int>(a.size()) / side || n[1] >= side) continue;
      const int j = n[0] * side + n[1];
      if (!keep[static_cast<std::size_t>(j)] && a(j) >= thr) {
        keep[static_cast<std::size_t>(j)] = 1;
        stack.push_back(j);
      }
    }
  }
  for (Eigen::Index i = 0; i < a.size(); ++i)
    if (!keep[static_cast<std::size_t>(i)]) a(i) = 0;
}


SomaSize soma_size(const Eigen::VectorXf& values, std::size_t support_pixels, const CnmfOptions& o) {
  const float thr = values.size() ? 0.2f * values.maxCoeff() : 0.0f;
  if (thr <= 0) return SomaSize::kTooSmall;
  const float area = static_cast<float>((values.array() >= thr).count());
  const float pi = 3.14159265f;
  if (area < pi * 0.25f * o.neuron_radius * o.neuron_radius) return SomaSize::kTooSmall;
  if (area > 0.25f * pi * static_cast<float>(support_pixels)) return SomaSize::kTooLarge;
  return SomaSize::kPlausible;
}

int support_radius(const CnmfOptions& o) {
  return std::max(3, static_cast<int>(std::ceil(1.8f * o.neuron_radius)));
}

std::vector<Seed> find_seeds(Eigen::MatrixXf& s, Eigen::Ref<const Eigen::MatrixXf> y,
                             const CnmfOptions& o, int max_seeds) {
  const int H = static_cast<int>(o.height), W = static_cast<int>(o.width);
  const Eigen::Index P = static_cast<Eigen::Index>(H) * W;
  const Eigen::Index T = s.cols();
  const float r = o.neuron_radius;
  const float sigma = std::max(1.0f, 0.5f * r);
  const int hp_r = std::max(2, static_cast<int>(std::lround(2 * r)));
  const int R = support_radius(o);
  const int threads = std::max(1, o.init_threads);
  // 1. High-passed residual movie: (frame - background) minus its local box mean, then minus
  // each pixel's median. Frames (and below, pixels) are split over `threads` in fixed blocks,
  // each with its own scratch: every value is computed as on one thread.
  parallel_blocks(threads, T, [&](Eigen::Index t0, Eigen::Index t1) {
    Eigen::VectorXf tmp(P), tmp2(P);
    for (Eigen::Index t = t0; t < t1; ++t) {
      box_filter(s.col(t).data(), tmp2.data(), tmp.data(), H, W, hp_r);
      s.col(t) -= tmp2;
    }
  });
  // Per-pixel work in blocks of pixels: each block's traces are gathered frame by frame
  // (contiguous runs of the P x T movie) instead of transposing the whole movie.
  constexpr Eigen::Index kBlock = 64;
  // Up to kLaneMaxN frames (the updater's patches, a 300-frame initialisation): 8 pixels at a
  // time through the branch-free order statistics, their values of one frame being contiguous
  // in s.
  const bool lanes = T >= 2 && T <= kLaneMaxN;
  const Eigen::Index groups = lanes ? (P + kLanes - 1) / kLanes : (P + kBlock - 1) / kBlock;
  struct PixelScratch {
    std::vector<float> lx, lwork, trace, scratch;
    Eigen::MatrixXf blk;  // column j: the trace of pixel p0 + j
  };
  auto make_scratch = [&]() {
    PixelScratch w;
    if (lanes) {
      w.lx.resize(static_cast<std::size_t>(T) * kLanes);
      w.lwork.resize(static_cast<std::size_t>(kLaneMaxN) * kLanes);
    } else {
      w.blk.resize(T, kBlock);
      w.trace.resize(static_cast<std::size_t>(T));
    }
    return w;
  };
  auto gather = [&](PixelScratch& w, Eigen::Index p0, Eigen::Index nbk) {
    for (Eigen::Index t = 0; t < T; ++t) {
      const float* col = s.col(t).data() + p0;
      for (Eigen::Index j = 0; j < nbk; ++j) w.blk(t, j) = col[j];
    }
  };
  auto gather8 = [&](PixelScratch& w, Eigen::Index p0) {
    const int nl = static_cast<int>(std::min<Eigen::Index>(kLanes, P - p0));
    for (Eigen::Index t = 0; t < T; ++t) {
      const float* col = s.col(t).data() + p0;
      float* dst = w.lx.data() + t * kLanes;
      for (int l = 0; l < kLanes; ++l) dst[l] = l < nl ? col[l] : 0.0f;
    }
    return nl;
  };
  parallel_blocks(threads, groups, [&](Eigen::Index g0, Eigen::Index g1) {
    PixelScratch w = make_scratch();
    float med[kBlock];
    for (Eigen::Index g = g0; g < g1; ++g) {
      if (lanes) {
        const Eigen::Index p0 = g * kLanes;
        const int nl = gather8(w, p0);
        median_and_noise8(w.lx.data(), static_cast<int>(T), w.lwork.data(), med, nullptr);
        for (Eigen::Index t = 0; t < T; ++t) {
          float* col = s.col(t).data() + p0;
          for (int l = 0; l < nl; ++l) col[l] -= med[l];
        }
      } else {
        const Eigen::Index p0 = g * kBlock, nbk = std::min(kBlock, P - p0);
        gather(w, p0, nbk);
        for (Eigen::Index j = 0; j < nbk; ++j) {
          std::copy(w.blk.col(j).data(), w.blk.col(j).data() + T, w.trace.begin());
          med[j] = median_of(w.trace);
        }
        for (Eigen::Index t = 0; t < T; ++t) {
          float* col = s.col(t).data() + p0;
          for (Eigen::Index j = 0; j < nbk; ++j) col[j] -= med[j];
        }
      }
    }
  });
  // 2. Smoothed high-passed movie, its noise and peak-to-noise ratio per pixel.
  parallel_blocks(threads, T, [&](Eigen::Index t0, Eigen::Index t1) {
    Eigen::VectorXf tmp(P), tmp2(P);
    for (Eigen::Index t = t0; t < t1; ++t) {
      gaussian_filter(s.col(t).data(), tmp2.data(), tmp.data(), H, W, sigma);
      s.col(t) = tmp2;
    }
  });
  Eigen::VectorXf sn(P), pnr(P);
  parallel_blocks(threads, groups, [&](Eigen::Index g0, Eigen::Index g1) {
    PixelScratch w = make_scratch();
    for (Eigen::Index g = g0; g < g1; ++g) {
      if (lanes) {
        const Eigen::Index p0 = g * kLanes;
        const int nl = gather8(w, p0);
        float noise[kLanes], peak[kLanes];
        median_and_noise8(w.lx.data(), static_cast<int>(T), w.lwork.data(), nullptr, noise);
        std::fill(peak, peak + kLanes, -std::numeric_limits<float>::infinity());
        for (Eigen::Index t = 0; t < T; ++t)
          for (int l = 0; l < kLanes; ++l) peak[l] = std::max(peak[l], w.lx[static_cast<std::size_t>(t * kLanes + l)]);
        for (int l = 0; l < nl; ++l) {
          sn(p0 + l) = std::max(noise[l], 1e-6f);
          pnr(p0 + l) = peak[l] / sn(p0 + l);
        }
      } else {
        const Eigen::Index p0 = g * kBlock, nbk = std::min(kBlock, P - p0);
        gather(w, p0, nbk);
        for (Eigen::Index j = 0; j < nbk; ++j) {
          const float* tr = w.blk.col(j).data();
          std::copy(tr, tr + T, w.trace.begin());
          const Eigen::Index p = p0 + j;
          sn(p) = std::max(diff_noise(w.trace, w.scratch), 1e-6f);
          pnr(p) = w.blk.col(j).maxCoeff() / sn(p);
        }
      }
    }
  });

  // 3. Local correlation image of the smoothed movie's transients (CNMF-E): values below three
  // noise sd are zeroed, so smoothing-induced noise correlation does not count and sparsely
  // firing neurons still correlate with their neighbours during their transients.
  Eigen::VectorXd sum = Eigen::VectorXd::Zero(P), sq = Eigen::VectorXd::Zero(P);
  const int dirs[4][2] = {{0, 1}, {1, 0}, {1, 1}, {1, -1}};
  Eigen::MatrixXd xy = Eigen::MatrixXd::Zero(P, 4);
  Eigen::VectorXf thr = 3.0f * sn;
  // Rows split over threads: each accumulates its own pixels' sums over all frames, in frame
  // order, reading the next row (the neighbours below) as well.
  parallel_blocks(threads, H, [&](Eigen::Index r0, Eigen::Index r1) {
    const int y0 = static_cast<int>(r0), y1 = static_cast<int>(r1);
    const int rows = std::min(y1 + 1, H) - y0;
    const Eigen::Index off = static_cast<Eigen::Index>(y0) * W;
    Eigen::VectorXf buf(static_cast<Eigen::Index>(rows) * W);
    for (Eigen::Index t = 0; t < T; ++t) {
      buf = s.col(t).segment(off, buf.size()).cwiseMax(0.0f);
      buf = (buf.array() >= thr.segment(off, buf.size()).array()).select(buf, 0.0f);
      const float* f = buf.data();  // pixel p at f[p - off]
      for (Eigen::Index p = off; p < static_cast<Eigen::Index>(y1) * W; ++p) {
        sum(p) += f[p - off];
        sq(p) += static_cast<double>(f[p - off]) * f[p - off];
      }
      for (int d = 0; d < 4; ++d) {
        for (int yy = y0; yy < y1 && yy + dirs[d][0] < H; ++yy) {
          for (int xx = std::max(0, -dirs[d][1]); xx < W && xx + dirs[d][1] < W; ++xx) {
            const Eigen::Index p = static_cast<Eigen::Index>(yy) * W + xx;
            const Eigen::Index q = static_cast<Eigen::Index>(yy + dirs[d][0]) * W + xx + dirs[d][1];
            xy(p, d) += static_cast<double>(f[p - off]) * f[q - off];
          }
        }
      }
    }
  });
  Eigen::VectorXd mean = sum / static_cast<double>(T);
  Eigen::VectorXd sd = (sq / static_cast<double>(T) - mean.cwiseAbs2()).cwiseMax(1e-12).cwiseSqrt();
  Eigen::VectorXf cn = Eigen::VectorXf::Zero(P);
  {
    Eigen::VectorXf cnt = Eigen::VectorXf::Zero(P);
    for (int d = 0; d < 4; ++d) {
      for (int yy = 0; yy + dirs[d][0] < H; ++yy) {
        for (int xx = std::max(0, -dirs[d][1]); xx < W && xx + dirs[d][1] < W; ++xx) {
          const Eigen::Index p = static_cast<Eigen::Index>(yy) * W + xx;
          const Eigen::Index q = static_cast<Eigen::Index>(yy + dirs[d][0]) * W + xx + dirs[d][1];
          const double c = (xy(p, d) / static_cast<double>(T) - mean(p) * mean(q)) / (sd(p) * sd(q));
          cn(p) += static_cast<float>(c);
          cn(q) += static_cast<float>(c);
          cnt(p) += 1;
          cnt(q) += 1;
        }
      }
    }
    cn = cn.cwiseQuotient(cnt.cwiseMax(1.0f));
  }
  // 4. Greedy seeding with peeling.
  std::vector<Seed> seeds;
  // Candidates: local maxima of PNR x Cn within ~0.8 soma radius that pass both thresholds,
  // strongest first. One seed per soma; overlapping somata whose centres are further apart than
  // that still get their own.
  std::vector<Eigen::Index> candidates;
  {
    const int lr = std::max(1, static_cast<int>(std::lround(0.8f * r)));
    Eigen::VectorXf score = pnr.cwiseProduct(cn.cwiseMax(0.0f));
    const int band = o.seed_border_px;
    for (Eigen::Index p = 0; p < P; ++p) {
      if (pnr(p) < o.min_pnr || cn(p) < o.min_corr) continue;
      const int py = static_cast<int>(p / W), px = static_cast<int>(p % W);
      if (py < band || px < band || py >= H - band || px >= W - band) continue;
      bool is_max = true;
      for (int yy = std::max(0, py - lr); yy <= std::min(H - 1, py + lr) && is_max; ++yy)
        for (int xx = std::max(0, px - lr); xx <= std::min(W - 1, px + lr); ++xx) {
          const Eigen::Index q = static_cast<Eigen::Index>(yy) * W + xx;
          if (score(q) > score(p) || (score(q) == score(p) && q < p)) {
            is_max = false;
            break;
          }
        }
      if (is_max) candidates.push_back(p);
    }
    std::stable_sort(candidates.begin(), candidates.end(),
                     [&](Eigen::Index x, Eigen::Index y) { return score(x) > score(y); });
  }
  for (Eigen::Index best : candidates) {
    if (static_cast<int>(seeds.size()) >= max_seeds) break;
    if (pnr(best) < o.min_pnr) continue;  // explained by an earlier, overlapping seed
    const int py = static_cast<int>(best / W), px = static_cast<int>(best % W);
    Support sup = square_support(py, px, R, H, W);
    const int y0 = std::max(0, py - R), x0 = std::max(0, px - R);
    const int side = std::min(W - 1, px + R) - x0 + 1;
    const int seed_index = (py - y0) * side + (px - x0);
    Eigen::VectorXf c = s.row(best).transpose();
    Eigen::VectorXf cc = c.array() - c.mean();
    const float var = cc.squaredNorm();
    // Covariances with the seed trace, frame by frame (the support's pixels are short contiguous
    // runs of each frame; a pixel's row of the P x T movie is strided by P).
    const Eigen::Index ns = static_cast<Eigen::Index>(sup.size());
    Eigen::VectorXf a = Eigen::VectorXf::Zero(ns), beta = Eigen::VectorXf::Zero(ns);
    if (var > 0) {
      for (Eigen::Index t = 0; t < T; ++t) {
        const float* yc = y.col(t).data();
        const float* sc = s.col(t).data();
        const float w = cc(t);
        for (Eigen::Index i = 0; i < ns; ++i) {
          a(i) += w * yc[sup[static_cast<std::size_t>(i)]];
          beta(i) += w * sc[sup[static_cast<std::size_t>(i)]];
        }
      }
      a = (a / var).cwiseMax(0.0f);
      beta /= var;
    }
    keep_connected(a, side, seed_index, 0.2f);
    // Peel the seed's signal off the smoothed movie where it lives, so the same neuron does not
    // seed again while an overlapping one still can.
    Eigen::VectorXf peak = Eigen::VectorXf::Constant(ns, -std::numeric_limits<float>::infinity());
    for (Eigen::Index t = 0; t < T; ++t) {
      float* sc = s.col(t).data();
      const float w = cc(t);
      for (Eigen::Index i = 0; i < ns; ++i) {
        float& v = sc[sup[static_cast<std::size_t>(i)]];
        if (beta(i) > 0) v -= beta(i) * w;
        peak(i) = std::max(peak(i), v);
      }
    }
    for (Eigen::Index i = 0; i < ns; ++i) pnr(sup[static_cast<std::size_t>(i)]) = peak(i) / sn(sup[static_cast<std::size_t>(i)]);
    if (a.sum() <= 0 || (a.array() > 0).count() < 3) continue;
    Seed sd;
    sd.values = a / a.norm();
    sd.support = std::move(sup);
    sd.trace = c;
    sd.pnr = pnr(best);
    sd.corr = cn(best);
    sd.row = py;
    sd.col = px;
    seeds.push_back(std::move(sd));
  }

  return seeds;
}

}  // namespace detail

namespace {

// cnmf_initialize at o.neuron_radius.
CnmfInitResult initialize_at_radius(Eigen::Ref<const Eigen::MatrixXf> y, const CnmfOptions& o,
                                    const Eigen::SparseMatrix<float>* seeds) {
  using detail::Support;
  const int H = static_cast<int>(o.height), W = static_cast<int>(o.width);
  const Eigen::Index P = static_cast<Eigen::Index>(H) * W;
  const Eigen::Index T = y.cols();
  if (H <= 0 || W <= 0 || y.rows() != P) {
    throw std::invalid_argument("cnmf: frames have " + std::to_string(y.rows()) +
                                " pixels, options say " + std::to_string(H) + "x" + std::to_string(W));
  }
  if (T < 10) throw std::invalid_argument("cnmf: initialisation needs at least 10 frames");
  if (seeds && seeds->rows() != P) {
    throw std::invalid_argument("cnmf: seed footprints have " + std::to_string(seeds->rows()) +
                                " pixels, frames have " + std::to_string(P));
  }
  const float r = o.neuron_radius;
  int nb = std::max(0, o.background_components);

  // 0. Background first (so that neuropil fluctuations do not seed neurons).
  Eigen::MatrixXf s(P, T);
  Eigen::VectorXf tmp(P), tmp2(P);
  Eigen::MatrixXf bg(P, nb), f(nb, T);
  if (nb > 0) {
    // Rank-nb NMF of the movie smoothed at twice the soma radius (neurons blur into it far less
    // than the smooth background and neuropil do), started from the leading singular vectors.
    // At that scale the background is smooth, so it is estimated on a grid downsampled by block
    // means (ds x ds pixels, ds ~ 0.8 soma radius: 16x fewer pixels at radius 5) and upsampled
    // bilinearly to full resolution.
    const int ds = std::max(1, static_cast<int>(std::floor(0.8f * r)));
    const int hl = (H + ds - 1) / ds, wl = (W + ds - 1) / ds;
    const Eigen::Index pl = static_cast<Eigen::Index>(hl) * wl;
    Eigen::VectorXf inv_count = Eigen::VectorXf::Zero(pl);
    for (int yy = 0; yy < H; ++yy)
      for (int xx = 0; xx < W; ++xx) inv_count((yy / ds) * wl + xx / ds) += 1;
    inv_count = inv_count.cwiseInverse();
    Eigen::MatrixXf sm(pl, T);
    {
      Eigen::VectorXf lo(pl), ltmp(pl);
      for (Eigen::Index t = 0; t < T; ++t) {
        lo.setZero();
        const float* src = y.col(t).data();
        for (int yy = 0; yy < H; ++yy) {
          float* dst = lo.data() + static_cast<Eigen::Index>(yy / ds) * wl;
          const float* row = src + static_cast<Eigen::Index>(yy) * W;
          for (int xx = 0; xx < W; ++xx) dst[xx / ds] += row[xx];
        }
        lo = lo.cwiseProduct(inv_count);
        detail::gaussian_filter(lo.data(), sm.col(t).data(), ltmp.data(), hl, wl, 2 * r / static_cast<float>(ds));
      }
    }
    Eigen::MatrixXf bl(pl, nb);
    // Leading singular vectors by a few power iterations with deflation (a T x T Gram would cost
    // P T² flops).
    Eigen::MatrixXf vs(T, nb), us(pl, nb);
    for (int b = 0; b < nb; ++b) {
      Eigen::VectorXf v = Eigen::VectorXf::Ones(T) / std::sqrt(static_cast<float>(T));
      if (b > 0) v = Eigen::VectorXf::LinSpaced(T, -1.0f, 1.0f).normalized();
      Eigen::VectorXf u(pl);
      for (int it = 0; it < 8; ++it) {
        u.noalias() = sm * v;
        for (int q = 0; q < b; ++q) u -= us.col(q) * us.col(q).dot(u);
        u.normalize();
        v.noalias() = sm.transpose() * u;
        for (int q = 0; q < b; ++q) v -= vs.col(q) * vs.col(q).dot(v);
        v.normalize();
      }
      vs.col(b) = v;
      us.col(b) = u;
    }
    for (int b = 0; b < nb; ++b) {
      Eigen::VectorXf v = vs.col(b);
      Eigen::VectorXf u = sm * v;
      // NNDSVD: keep the sign with the larger positive part.
      Eigen::VectorXf up = u.cwiseMax(0.0f), un = (-u).cwiseMax(0.0f);
      Eigen::VectorXf vp = v.cwiseMax(0.0f), vn = (-v).cwiseMax(0.0f);
      if (up.norm() * vp.norm() >= un.norm() * vn.norm()) {
        bl.col(b) = up;
        f.row(b) = vp.transpose();
      } else {
        bl.col(b) = un;
        f.row(b) = vn.transpose();
      }
      if (bl.col(b).norm() == 0) bl.col(b).setConstant(1.0f);
      const float n = bl.col(b).norm();
      bl.col(b) /= n;
      f.row(b) *= n;
    }
    for (int it = 0; it < 30; ++it) {
      Eigen::MatrixXf gb = bl.transpose() * bl;
      Eigen::MatrixXf bty = bl.transpose() * sm;
      detail::hals_rows(gb, bty, f, 1);
      Eigen::MatrixXf gf = f * f.transpose();
      Eigen::MatrixXf ytf = sm * f.transpose();  // pl x nb
      for (int b = 0; b < nb; ++b) {
        if (gf(b, b) <= 0) continue;
        bl.col(b) = (bl.col(b) + (ytf.col(b) - bl * gf.col(b)) / gf(b, b)).cwiseMax(0.0f);
      }
    }
    // Bilinear upsampling (block centres at (i + 0.5) ds - 0.5), unit columns; f carries the scale.
    for (int yy = 0; yy < H; ++yy) {
      const float fy = std::clamp((yy + 0.5f) / ds - 0.5f, 0.0f, static_cast<float>(hl - 1));
      const int y0 = static_cast<int>(fy), y1 = std::min(y0 + 1, hl - 1);
      const float wy = fy - static_cast<float>(y0);
      for (int xx = 0; xx < W; ++xx) {
        const float fx = std::clamp((xx + 0.5f) / ds - 0.5f, 0.0f, static_cast<float>(wl - 1));
        const int x0 = static_cast<int>(fx), x1 = std::min(x0 + 1, wl - 1);
        const float wx = fx - static_cast<float>(x0);
        const Eigen::Index p = static_cast<Eigen::Index>(yy) * W + xx;
        for (int b = 0; b < nb; ++b) {
          auto at = [&](int i, int j) { return bl(static_cast<Eigen::Index>(i) * wl + j, b); };
          bg(p, b) = (1 - wy) * ((1 - wx) * at(y0, x0) + wx * at(y0, x1)) +
                     wy * ((1 - wx) * at(y1, x0) + wx * at(y1, x1));
        }
      }
    }
    for (int b = 0; b < nb; ++b) {
      const float n = bg.col(b).norm();
      if (n <= 0) {
        bg.col(b).setConstant(1.0f / std::sqrt(static_cast<float>(P)));
        continue;
      }
      bg.col(b) /= n;
      f.row(b) *= n;
    }
  }
  // 1-4. Seeds on the background-free movie (greedy seeding; given seeds skip it).
  std::vector<Support> supports;
  std::vector<Eigen::VectorXf> values;
  if (seeds) {
    // Seeded (CaImAn's Ain): each given footprint on the support square around its peak plus its
    // own pixels, so it can adjust to today's data; the rounds below refine it but do not test
    // it (it was accepted when it was found).
    const int R = detail::support_radius(o);
    for (Eigen::Index k = 0; k < seeds->cols() && static_cast<int>(supports.size()) < o.max_components; ++k) {
      float best = 0;
      Eigen::Index peak = -1;
      for (Eigen::SparseMatrix<float>::InnerIterator it(*seeds, k); it; ++it) {
        if (it.value() > best) {
          best = it.value();
          peak = it.row();
        }
      }
      if (peak < 0) continue;  // an empty column (a component removed in that run)
      const int py = static_cast<int>(peak / W), px = static_cast<int>(peak % W);
      Support sup;
      for (int yy = std::max(0, py - R); yy <= std::min(H - 1, py + R); ++yy)
        for (int xx = std::max(0, px - R); xx <= std::min(W - 1, px + R); ++xx) sup.push_back(yy * W + xx);
      for (Eigen::SparseMatrix<float>::InnerIterator it(*seeds, k); it; ++it)
        if (it.value() > 0) sup.push_back(static_cast<std::int32_t>(it.row()));
      std::sort(sup.begin(), sup.end());
      sup.erase(std::unique(sup.begin(), sup.end()), sup.end());
      Eigen::VectorXf v = Eigen::VectorXf::Zero(static_cast<Eigen::Index>(sup.size()));
      for (Eigen::SparseMatrix<float>::InnerIterator it(*seeds, k); it; ++it) {
        if (it.value() <= 0) continue;
        const auto at = std::lower_bound(sup.begin(), sup.end(), static_cast<std::int32_t>(it.row()));
        v(static_cast<Eigen::Index>(at - sup.begin())) = it.value();
      }
      supports.push_back(std::move(sup));
      values.push_back(v / v.norm());
    }
  } else {
    for (Eigen::Index t = 0; t < T; ++t) {
      s.col(t) = y.col(t);
      if (nb > 0) s.col(t).noalias() -= bg * f.col(t);
    }
    for (detail::Seed& sd : detail::find_seeds(s, y, o, std::max(0, o.max_components))) {
      supports.push_back(std::move(sd.support));
      values.push_back(std::move(sd.values));
    }
  }

  // 5. HALS refinement on the raw movie: C, then b f, then A on fixed supports. One-photon
  // (ring_radius > 0): on the movie without its ring background, refitted each round (below).
  int K = static_cast<int>(supports.size());
  Eigen::MatrixXf yr;  // one-photon: y − B(ring), else empty
  auto ycol = [&](Eigen::Index t) -> const float* { return yr.size() ? yr.col(t).data() : y.col(t).data(); };
  Eigen::MatrixXf c = Eigen::MatrixXf::Zero(K, T);
  Eigen::MatrixXf& work = s;  // reuse: P x T
  // Aᵀ(Y − b f) = AᵀY − (Aᵀb) f and bᵀ(Y − A C) = bᵀY − (bᵀA) C: no P x T temporaries; AᵀY
  // reads only each footprint's pixels of each frame.
  auto at_y = [&](const Eigen::SparseMatrix<float>& a) {
    Eigen::MatrixXf r(a.cols(), T);
    for (Eigen::Index t = 0; t < T; ++t) {
      const float* col = ycol(t);
      for (Eigen::Index k = 0; k < a.cols(); ++k) {
        float acc = 0;
        for (Eigen::SparseMatrix<float>::InnerIterator it(a, k); it; ++it) acc += it.value() * col[it.row()];
        r(k, t) = acc;
      }
    }
    return r;
  };
  auto c_step = [&](int sweeps) {
    Eigen::SparseMatrix<float> a = detail::assemble(static_cast<int>(P), supports, values);
    Eigen::MatrixXf aty = at_y(a);
    if (nb > 0) aty.noalias() -= Eigen::MatrixXf(a.transpose() * bg) * f;
    // HALS on the sparse Gram (footprints rarely overlap): K·(overlaps)·T per sweep, not K²·T.
    Eigen::SparseMatrix<float> ata = Eigen::SparseMatrix<float>(a.transpose()) * a;
    for (int sw = 0; sw < sweeps; ++sw) {
      for (Eigen::Index i = 0; i < ata.outerSize(); ++i) {
        float d = 0;
        Eigen::RowVectorXf grad = aty.row(i);
        for (Eigen::SparseMatrix<float>::InnerIterator it(ata, i); it; ++it) {
          if (it.row() == i) d = it.value();
          if (it.value() != 0) grad.noalias() -= it.value() * c.row(it.row());
        }
        if (d <= 0) {
          c.row(i).setZero();
          continue;
        }
        c.row(i) = (c.row(i) + grad / d).cwiseMax(0.0f);
      }
    }
    return a;
  };
  auto f_step = [&](const Eigen::SparseMatrix<float>& a) {
    if (nb == 0) return;
    Eigen::MatrixXf gb = bg.transpose() * bg;
    Eigen::MatrixXf btr = bg.transpose() * y;
    btr.noalias() -= Eigen::MatrixXf(Eigen::MatrixXf(a.transpose() * bg).transpose()) * c;
    detail::hals_rows(gb, btr, f, 3);
  };
  auto a_step = [&]() {
    std::vector<Eigen::VectorXf> yc(static_cast<std::size_t>(K));
    for (int k = 0; k < K; ++k) yc[static_cast<std::size_t>(k)] = Eigen::VectorXf::Zero(static_cast<Eigen::Index>(supports[static_cast<std::size_t>(k)].size()));
    for (Eigen::Index t = 0; t < T; ++t) {
      const float* col = ycol(t);
      for (int k = 0; k < K; ++k) {
        const float ck = c(k, t);
        if (ck == 0) continue;
        const Support& sk = supports[static_cast<std::size_t>(k)];
        Eigen::VectorXf& v = yc[static_cast<std::size_t>(k)];
        for (std::size_t i = 0; i < sk.size(); ++i) v(static_cast<Eigen::Index>(i)) += ck * col[sk[i]];
      }
    }
    Eigen::MatrixXf all(K + nb, T);
    all.topRows(K) = c;
    if (nb > 0) all.bottomRows(nb) = f;
    Eigen::MatrixXf cc = all * all.transpose();
    Eigen::MatrixXf yc_bg = nb > 0 ? Eigen::MatrixXf(y * f.transpose()) : Eigen::MatrixXf(P, 0);
    detail::hals_shapes(supports, values, bg, yc, yc_bg, cc, H, W, 2 * r, 1, std::max(1, o.init_threads));
    // Unit ℓ2 footprints; traces carry the scale.
    for (int k = 0; k < K; ++k) {
      const float n = values[static_cast<std::size_t>(k)].norm();
      if (n > 0) {
        values[static_cast<std::size_t>(k)] /= n;
        c.row(k) *= n;
      }
    }
  };
  auto drop = [&](const std::vector<char>& remove) {
    int w = 0;
    for (int k = 0; k < K; ++k) {
      if (remove[static_cast<std::size_t>(k)]) continue;
      if (w != k) {
        supports[static_cast<std::size_t>(w)] = std::move(supports[static_cast<std::size_t>(k)]);
        values[static_cast<std::size_t>(w)] = std::move(values[static_cast<std::size_t>(k)]);
        c.row(w) = c.row(k);
      }
      ++w;
    }
    supports.resize(static_cast<std::size_t>(w));
    values.resize(static_cast<std::size_t>(w));
    c.conservativeResize(w, Eigen::NoChange);
    K = w;
  };

  Eigen::SparseMatrix<float> a = c_step(30);
  // One-photon: the low-rank b f cannot hold the structured background; what the neurons do
  // not explain is modelled by the ring (CNMF-E), refitted from y − A C before each round, and
  // the rounds (HALS, merging, the tests) work on y − B with no b f. Without it the footprints
  // absorbed background (rejected as too large) and the spatial test failed on most neurons.
  // s holds X = Y − A C while the ring is fitted (it is free at those points), and yr is
  // written in place: no P x T temporaries.
  auto subtract_ac = [&](Eigen::Index t) { detail::subtract_footprints(a, c.col(t), s.col(t).data()); };
  auto refit_ring = [&]() {
    if (o.ring_radius <= 0) return;
    const int threads = std::max(1, o.init_threads);
    detail::parallel_blocks(threads, T, [&](Eigen::Index t0, Eigen::Index t1) {
      for (Eigen::Index t = t0; t < t1; ++t) {
        s.col(t) = y.col(t);
        subtract_ac(t);
      }
    });
    const RingBackground ring = fit_ring_background(s, o.height, o.width, o.ring_radius, 24, 0.01f, threads, 100);
    if (yr.cols() != T) yr.resize(P, T);
    detail::parallel_blocks(threads, T, [&](Eigen::Index t0, Eigen::Index t1) {
      Eigen::VectorXf b(P), scratch(P);
      for (Eigen::Index t = t0; t < t1; ++t) {
        ring_background_frame(ring, s.col(t).data(), b.data(), scratch.data());
        yr.col(t) = y.col(t) - b;
      }
    });
  };
  if (o.ring_radius > 0) {
    refit_ring();
    nb = 0;
    bg.resize(P, 0);
    f.resize(0, T);
    a = c_step(30);
  }
  const int iters = std::max(1, o.init_iterations);
  // One HALS round, then empty components removed, duplicates merged and, when `test`, those of
  // the components flagged in `tested` that fail the SNR, spatial-consistency or soma-size test
  // (detail::soma_size) rejected. Returns the flags of the components left.
  auto refine_round = [&](bool test, std::vector<char> tested) {
    refit_ring();
    f_step(a);
    a_step();
    a = c_step(5);
    // Remove empty components; merge duplicates (overlapping footprints, correlated traces);
    // halfway, reject components that fail the SNR or spatial-consistency test.
    std::vector<char> remove(static_cast<std::size_t>(K), 0);
    for (int k = 0; k < K; ++k)
      if (values[static_cast<std::size_t>(k)].sum() <= 0 || (!seeds && c.row(k).maxCoeff() <= 0)) remove[static_cast<std::size_t>(k)] = 1;
    // Seeds are neurons found before: not dropped for being silent in these frames (duplicates
    // among them are still merged).
    if (K > 1) {
      Eigen::MatrixXf overlap = Eigen::MatrixXf(Eigen::SparseMatrix<float>(a.transpose()) * a);
      for (int i = 0; i < K; ++i) {
        for (int j = i + 1; j < K; ++j) {
          if (remove[static_cast<std::size_t>(i)] || remove[static_cast<std::size_t>(j)]) continue;
          if (overlap(i, j) <= 0.0f) continue;  // disjoint
          Eigen::VectorXf ci = c.row(i).transpose(), cj = c.row(j).transpose();
          const float ri = (ci.array() - ci.mean()).matrix().norm(), rj = (cj.array() - cj.mean()).matrix().norm();
          if (ri <= 0 || rj <= 0) continue;
          const float corr = (ci.array() - ci.mean()).matrix().dot((cj.array() - cj.mean()).matrix()) / (ri * rj);
          if (corr < o.merge_threshold) continue;
          // Footprints that only touch (cosine < 0.1): pieces of one cell larger than the
          // support square (a square per seed; the seeding finds such a cell in pieces), whose
          // traces are then the same up to noise, merge; neighbouring neurons only when their
          // activity is that alike too, and not a piece that carries a fraction of the other's
          // activity (light spilt from it, or a silent neighbour with shared neuropil: merging
          // that would swallow the neighbour's pixels). CaImAn merges any spatially overlapping
          // pair above merge_thr. Somata of radius 7 with irregular outlines (256 x 256, 80
          // neurons): F1 0.929 -> 0.952; at 15 Hz with radius 5: 0.939 -> 0.985; 23 other movies
          // equal or higher.
          if (overlap(i, j) < 0.1f) {
            const float ai = std::sqrt(std::max(overlap(i, i), 0.0f)) * ri;
            const float aj = std::sqrt(std::max(overlap(j, j), 0.0f)) * rj;
            if (corr < std::max(kTouchingMergeCorr, o.merge_threshold)) continue;
            if (std::min(ai, aj) < kTouchingMergeActivity * std::max(ai, aj)) continue;
          }
          // Merge j into i on the union of supports.
          Eigen::VectorXf dense = Eigen::VectorXf::Zero(P);
          const Support& si = supports[static_cast<std::size_t>(i)];
          const Support& sj = supports[static_cast<std::size_t>(j)];
          const float wi = ci.maxCoeff(), wj = cj.maxCoeff();
          for (std::size_t q = 0; q < si.size(); ++q) dense(si[q]) += wi * values[static_cast<std::size_t>(i)](static_cast<Eigen::Index>(q));
          for (std::size_t q = 0; q < sj.size(); ++q) dense(sj[q]) += wj * values[static_cast<std::size_t>(j)](static_cast<Eigen::Index>(q));
          Support uni;
          std::set_union(si.begin(), si.end(), sj.begin(), sj.end(), std::back_inserter(uni));
          Eigen::VectorXf v(static_cast<Eigen::Index>(uni.size()));
          for (std::size_t q = 0; q < uni.size(); ++q) v(static_cast<Eigen::Index>(q)) = dense(uni[q]);
          const float n = v.norm();
          supports[static_cast<std::size_t>(i)] = std::move(uni);
          values[static_cast<std::size_t>(i)] = v / n;
          c.row(i) = (wi * ci + wj * cj).transpose() / n;
          remove[static_cast<std::size_t>(j)] = 1;
        }
      }
    }
    if (test) {
      if (!yr.size()) {
        work = y;
        if (nb > 0) work.noalias() -= bg * f;
      }
      const Eigen::MatrixXf& yb = yr.size() ? yr : work;
      for (int k = 0; k < K; ++k) {
        if (remove[static_cast<std::size_t>(k)] || !tested[static_cast<std::size_t>(k)]) continue;
        Eigen::VectorXf ck = c.row(k).transpose();
        const float noise = std::max(estimate_noise_sd(ck), 1e-6f);
        const float base = detail::trace_baseline(ck, noise);
        const float snr = (ck.maxCoeff() - base) / noise;
        const float rval = detail::space_correlation(yb, supports[static_cast<std::size_t>(k)],
                                             values[static_cast<std::size_t>(k)], ck, base, noise, o.ring_radius > 0);
        const bool soma = detail::soma_size(values[static_cast<std::size_t>(k)], supports[static_cast<std::size_t>(k)].size(), o) == detail::SomaSize::kPlausible;
        if (snr < o.min_snr || rval < o.min_space_corr || !soma) remove[static_cast<std::size_t>(k)] = 1;
      }
    }
    if (std::find(remove.begin(), remove.end(), 1) != remove.end()) {
      for (int k = 0, w = 0; k < K; ++k)
        if (!remove[static_cast<std::size_t>(k)]) tested[static_cast<std::size_t>(w++)] = tested[static_cast<std::size_t>(k)];
      drop(remove);
      tested.resize(static_cast<std::size_t>(K));
      a = c_step(10);
    }
    return tested;
  };
  {
    std::vector<char> all(static_cast<std::size_t>(K), seeds ? 0 : 1);
    for (int it = 0; it < iters; ++it) all = refine_round(it == iters / 2, std::move(all));
  }
  // 6. Neurons missed by the first seeding, from the residual Y − A C − b f (CNMF-E looks for
  // them the same way after its first updates): neighbours of stronger neurons whose peak-to-noise
  // ratio the peeling lowered, and neurons the smoothing merged into one peak with a brighter
  // neighbour. Seeds come from the residual; footprints from the movie's covariance with the
  // seed trace. They must pass the same tests as the first ones.
  // Seeded with detect_new off (e.g. the second pass of `rtnmf replay --passes 2`): the seeds are
  // the neurons wanted, none is added.
  if (K < o.max_components && (!seeds || o.detect_new)) {
    refit_ring();
    for (Eigen::Index t = 0; t < T; ++t) {
      s.col(t) = Eigen::Map<const Eigen::VectorXf>(ycol(t), P);
      if (nb > 0) s.col(t).noalias() -= bg * f.col(t);
      subtract_ac(t);
    }
    Eigen::VectorXf dense = Eigen::VectorXf::Zero(P);
    const int k0 = K;
    const Eigen::Ref<const Eigen::MatrixXf> yd = yr.size() ? Eigen::Ref<const Eigen::MatrixXf>(yr) : y;
    for (detail::Seed& sd : detail::find_seeds(s, yd, o, o.max_components - K)) {
      // A misfit of a component already there is not a new neuron: skip seeds whose footprint is
      // mostly that component's (cosine > 0.7, as for new neurons online).
      for (std::size_t i = 0; i < sd.support.size(); ++i) dense(sd.support[i]) = sd.values(static_cast<Eigen::Index>(i));
      bool dup = false;
      for (Eigen::Index k = 0; k < a.cols() && !dup; ++k) {
        float dot = 0;
        for (Eigen::SparseMatrix<float>::InnerIterator it(a, k); it; ++it) dot += it.value() * dense(it.row());
        dup = dot > 0.7f;
      }
      for (std::int32_t p : sd.support) dense(p) = 0;
      if (dup) continue;
      supports.push_back(std::move(sd.support));
      values.push_back(std::move(sd.values));
      c.conservativeResize(K + 1, Eigen::NoChange);
      c.row(K).setZero();
      ++K;
    }
    if (K > k0) {
      a = c_step(30);
      std::vector<char> fresh(static_cast<std::size_t>(K), 0);
      for (int k = k0; k < K; ++k) fresh[static_cast<std::size_t>(k)] = 1;
      // Two rounds (the second tests the new ones): more cost init time (+5 s at 512 x 512 x 300)
      // without better scores.
      for (int it = 0; it < 2; ++it) fresh = refine_round(it == 1, std::move(fresh));
    }
  }
  f_step(a);
  a = c_step(10);

  CnmfInitResult res;
  CnmfModel& m = res.model;
  m.height = o.height;
  m.width = o.width;
  m.footprints = a;
  m.background = bg;
  m.g.resize(K);
  m.s_min.resize(K);
  m.baseline.resize(K);
  m.noise.resize(K);
  std::vector<float> gs;
  // Decay from lags past the indicator's rise (~0.1 s) up to ~0.4 s, scaled with the frame rate.
  const int min_lag = std::max(2, static_cast<int>(std::lround(0.1 * o.frame_rate_hz)));
  const int max_lag = std::max(min_lag + 3, static_cast<int>(std::lround(0.4 * o.frame_rate_hz)));
  for (int k = 0; k < K; ++k) {
    Eigen::VectorXf ck = c.row(k).transpose();
    m.noise(k) = std::max(estimate_noise_sd(ck), 1e-6f);
    m.baseline(k) = detail::trace_baseline(ck, m.noise(k));
    if (o.estimate_decay) {
      Eigen::VectorXf d = ck.array() - m.baseline(k);
      gs.push_back(estimate_ar1(d, m.noise(k), max_lag, min_lag));
    }
  }
  float g = detail::default_g(o.frame_rate_hz, o.decay_time_s);
  if (!gs.empty()) {
    const float est = detail::median_of(gs);
    // The estimate is trusted within a factor of ~3 of the prior decay time.
    const float lo = detail::default_g(o.frame_rate_hz, o.decay_time_s / 3);
    const float hi = detail::default_g(o.frame_rate_hz, o.decay_time_s * 3);
    g = std::clamp(est, lo, hi);
  }
  detail::set_ar_coefficients(m, o, g);  // g, g2 (AR(1) or AR(2) with the rise prior)
  m.s_min = o.s_min_sigma * m.noise;
  m.ids.resize(static_cast<std::size_t>(K));
  std::iota(m.ids.begin(), m.ids.end(), 0);
  m.next_id = static_cast<std::uint64_t>(K);
  m.slots.resize(static_cast<std::size_t>(K));
  std::iota(m.slots.begin(), m.slots.end(), 0);
  for (std::int32_t& s : m.slots)
    if (s >= o.result_rows) s = -1;
  m.next_slot = std::min(K, std::max(o.result_rows, 0));
  m.finalize();
  res.traces = c;
  res.background_traces = f;
  res.supports = supports;
  if (o.ring_radius > 0) detail::fit_ring_model(y, o, res);  // one-photon ring background (cnmf.cc)
  res.neuron_radius = o.neuron_radius;
  res.ring_radius = o.ring_radius;
  return res;
}

}  // namespace

float estimate_soma_radius(const Eigen::SparseMatrix<float>& footprints, std::uint32_t height, std::uint32_t width) {
  std::vector<float> radii;
  const auto H = static_cast<Eigen::Index>(height), W = static_cast<Eigen::Index>(width);
  for (Eigen::Index k = 0; k < footprints.outerSize(); ++k) {
    float peak = 0;
    for (Eigen::SparseMatrix<float>::InnerIterator it(footprints, k); it; ++it) peak = std::max(peak, it.value());
    if (peak <= 0) continue;
    int area = 0;
    bool cut = false;  // reaches the frame's edge: part of the soma may lie outside
    for (Eigen::SparseMatrix<float>::InnerIterator it(footprints, k); it; ++it) {
      if (it.value() < 0.5f * peak) continue;
      ++area;
      const Eigen::Index y = it.row() / W, x = it.row() % W;
      cut = cut || y == 0 || x == 0 || y == H - 1 || x == W - 1;
    }
    if (!cut) radii.push_back(std::sqrt(static_cast<float>(area) / 3.14159265f));
  }
  if (static_cast<int>(radii.size()) < kRadiusMinComponents) return 0;
  return detail::median_of(radii);
}

namespace {

// `o` at the soma radius `est` when that is more than kRadiusTolerance off o.neuron_radius (to
// the half pixel, at least 2 px, at most largest_neuron_radius and auto_radius_max), else `o`
// itself. A ring radius that was the default for the old soma radius follows the new one.
CnmfOptions at_estimated_radius(const CnmfOptions& o, float est) {
  if (est <= 0 || std::abs(est / o.neuron_radius - 1.0f) <= kRadiusTolerance) return o;
  float largest = std::floor(2.0f * largest_neuron_radius(o.height, o.width)) / 2.0f;
  if (o.auto_radius_max > 0) largest = std::min(largest, o.auto_radius_max);
  CnmfOptions o2 = o;
  o2.neuron_radius = std::clamp(std::round(2.0f * est) / 2.0f, 2.0f, std::max(2.0f, largest));
  if (o.ring_radius > 0 && o.ring_radius == default_ring_radius(o.neuron_radius))
    o2.ring_radius = default_ring_radius(o2.neuron_radius);
  return o2;
}

}  // namespace

namespace {

// A tracker with model m (and the outlier test at `ratio`, 0: off) over frames [first, T) of the
// batch: each frame's residual and whether the test excluded it. Returns how many it excluded.
Eigen::Index track_batch(Eigen::Ref<const Eigen::MatrixXf> y, Eigen::Index first, const CnmfOptions& o,
                         const CnmfModel& m, float ratio, std::vector<float>& residual,
                         std::vector<std::uint8_t>& excluded) {
  CnmfOptions to = o;
  to.max_components = std::max(1, m.k());
  to.outlier_residual_ratio = ratio;
  CnmfTracker tracker;
  tracker.init(to, m.nb());
  tracker.set_model(&m);
  residual.clear();
  excluded.clear();
  Eigen::Index n = 0;
  for (Eigen::Index t = first; t < y.cols(); ++t) {
    tracker.process(y.col(t).data());
    residual.push_back(tracker.output().residual);
    excluded.push_back(tracker.output().excluded ? 1 : 0);
    n += excluded.back();
  }
  return n;
}

float median_of(std::vector<float> v) {
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

// The model's typical_residual: the median residual of a tracker run with it over the last
// kResidualMinHistory frames of the batch (the fast path's outlier test needs a reference before
// it has a history of its own).
void set_typical_residual(Eigen::Ref<const Eigen::MatrixXf> y, const CnmfOptions& o, CnmfModel& m) {
  const Eigen::Index n = std::min<Eigen::Index>(y.cols(), kResidualMinHistory);
  if (n == 0 || m.k() + m.nb() == 0) return;
  std::vector<float> r;
  std::vector<std::uint8_t> unused;
  track_batch(y, y.cols() - n, o, m, 0.0f, r, unused);
  m.typical_residual = median_of(r);
}

CnmfInitResult initialize(Eigen::Ref<const Eigen::MatrixXf> y, const CnmfOptions& o,
                          const Eigen::SparseMatrix<float>* seeds) {
  if (!o.auto_radius) return initialize_at_radius(y, o, seeds);
  if (seeds) {
    // The seeds (an earlier run's footprints of this field of view) tell the size: one run.
    const float est = estimate_soma_radius(*seeds, o.height, o.width);
    CnmfInitResult res = initialize_at_radius(y, at_estimated_radius(o, est), seeds);
    res.radius_estimate = est;
    return res;
  }
  CnmfInitResult first = initialize_at_radius(y, o, nullptr);
  const float est = estimate_soma_radius(first.model.footprints, o.height, o.width);
  first.radius_estimate = est;
  const CnmfOptions o2 = at_estimated_radius(o, est);
  if (o2.neuron_radius == o.neuron_radius) return first;
  CnmfInitResult second = initialize_at_radius(y, o2, nullptr);
  second.radius_estimate = est;
  return second;
}

}  // namespace

CnmfInitResult cnmf_initialize(Eigen::Ref<const Eigen::MatrixXf> y, const CnmfOptions& o,
                               const Eigen::SparseMatrix<float>* seeds) {
  CnmfInitResult res = initialize(y, o, seeds);
  set_typical_residual(y, o, res.model);
  return res;
}

namespace {

// cnmf_initialize_screened on the columns of y (the frames not marked).
CnmfInitResult screen_batch(Eigen::Ref<Eigen::MatrixXf> y, const CnmfOptions& o,
                            const Eigen::SparseMatrix<float>* seeds, CnmfBatchScreen& screen) {
  const Eigen::Index T = y.cols();
  screen.residual.assign(static_cast<std::size_t>(T), 0.0f);
  screen.excluded.assign(static_cast<std::size_t>(T), 0);
  screen.kept = T;
  CnmfInitResult res = cnmf_initialize(y, o, seeds);
  const CnmfModel& m = res.model;
  if (o.outlier_residual_ratio <= 0 || T < kResidualMinHistory || m.k() + m.nb() == 0) return res;
  // The batch's median residual, the test's reference until the tracker has its own history; no
  // frame above the limit (the usual case): nothing to screen.
  track_batch(y, 0, o, m, 0.0f, screen.residual, screen.excluded);
  const float median = median_of(screen.residual);
  const float limit = o.outlier_residual_ratio * median;
  if (std::none_of(screen.residual.begin(), screen.residual.end(), [&](float v) { return v > limit; })) return res;
  CnmfModel reference = m;
  reference.typical_residual = median;
  const Eigen::Index excluded = track_batch(y, 0, o, reference, o.outlier_residual_ratio, screen.residual, screen.excluded);
  if (excluded == 0 || 3 * excluded > T) {
    std::fill(screen.excluded.begin(), screen.excluded.end(), 0);
    return res;
  }
  Eigen::Index kept = 0;
  for (Eigen::Index t = 0; t < T; ++t) {
    if (screen.excluded[static_cast<std::size_t>(t)]) continue;
    if (kept != t) y.col(kept) = y.col(t);
    ++kept;
  }
  screen.kept = kept;
  return cnmf_initialize(y.leftCols(kept), o, seeds);
}

}  // namespace

CnmfInitResult cnmf_initialize_screened(Eigen::MatrixXf& y, const CnmfOptions& o,
                                        const Eigen::SparseMatrix<float>* seeds, CnmfBatchScreen& screen,
                                        const std::vector<std::uint8_t>* marked) {
  const Eigen::Index T = y.cols();
  screen.marks_ignored = 0;
  Eigen::Index n_marked = 0;
  if (marked && static_cast<Eigen::Index>(marked->size()) == T)
    n_marked = std::count_if(marked->begin(), marked->end(), [](std::uint8_t v) { return v != 0; });
  if (n_marked == 0) return screen_batch(y, o, seeds, screen);
  const Eigen::Index usable = T - n_marked;
  if (3 * usable < T || usable < kResidualMinHistory) {
    // Too few frames left to initialise on: all of them, the marks said (screen.marks_ignored).
    screen.marks_ignored = n_marked;
    return screen_batch(y, o, seeds, screen);
  }
  // The marked frames never reach the initialisation: the others to the front, in order.
  std::vector<Eigen::Index> order;
  order.reserve(static_cast<std::size_t>(usable));
  for (Eigen::Index t = 0; t < T; ++t) {
    if ((*marked)[static_cast<std::size_t>(t)]) continue;
    if (static_cast<Eigen::Index>(order.size()) != t) y.col(static_cast<Eigen::Index>(order.size())) = y.col(t);
    order.push_back(t);
  }
  CnmfBatchScreen sub;
  CnmfInitResult res = screen_batch(y.leftCols(usable), o, seeds, sub);
  screen.residual.assign(static_cast<std::size_t>(T), std::numeric_limits<float>::quiet_NaN());  // marked: not fitted
  screen.excluded.assign(static_cast<std::size_t>(T), 2);
  for (std::size_t j = 0; j < order.size(); ++j) {
    screen.residual[static_cast<std::size_t>(order[j])] = sub.residual[j];
    screen.excluded[static_cast<std::size_t>(order[j])] = sub.excluded[j];
  }
  screen.kept = sub.kept;  // y.leftCols(kept): the frames neither marked nor excluded, in order
  return res;
}

void expand_screened_traces(CnmfInitResult& init, const CnmfBatchScreen& screen) {
  const Eigen::Index T = static_cast<Eigen::Index>(screen.excluded.size());
  if (screen.kept == T || init.traces.cols() != screen.kept || screen.kept == 0) return;
  auto spread = [&](const Eigen::MatrixXf& in) {
    Eigen::MatrixXf out(in.rows(), T);
    Eigen::Index j = 0;
    for (Eigen::Index t = 0; t < T; ++t) {
      if (!screen.excluded[static_cast<std::size_t>(t)]) out.col(t) = in.col(j++);
      else out.col(t) = t > 0 ? Eigen::VectorXf(out.col(t - 1)) : Eigen::VectorXf(in.col(0));
    }
    return out;
  };
  init.traces = spread(init.traces);
  if (init.background_traces.cols() == screen.kept) init.background_traces = spread(init.background_traces);
}

}  // namespace rtnmf::nmf
