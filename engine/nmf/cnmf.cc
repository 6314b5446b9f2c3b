// Online CNMF: the fast-path tracker and the slow-path updater.
#include "engine/nmf/cnmf.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "engine/nmf/batch_nmf.h"
#include "engine/nmf/cnmf_internal.h"
#include "engine/nmf/ring_background.h"
#include "engine/nmf/squares.h"
#include "engine/nmf/touch.h"

namespace rtnmf::nmf {

namespace detail {

void set_ar_coefficients(CnmfModel& m, const CnmfOptions& o, float decay_g) {
  const int K = m.k();
  m.g.setConstant(K, decay_g);
  m.g2.setZero(K);
  if (o.ar_order == 2 && o.rise_time_s > 0 && o.frame_rate_hz > 0) {
    const float r = static_cast<float>(std::exp(-1.0 / (o.frame_rate_hz * o.rise_time_s)));
    m.g.setConstant(K, decay_g + r);
    m.g2.setConstant(K, -decay_g * r);
  }
}

void finalize_ring(CnmfModel& m) {
  if (m.nb() != 0) throw std::invalid_argument("cnmf: a ring-background model has no low-rank background");
  m.ring_footprints = ring_filter_footprints(m.ring, m.footprints);
  m.gram = footprint_gram(m.ring_footprints);  // as finalize() does for A
  const int K = m.k();
  m.background_under = Eigen::MatrixXf::Zero(K, 1);
  m.footprint_norm2 = Eigen::VectorXf::Zero(K);
  for (int k = 0; k < K; ++k) {
    float ab = 0, aa = 0;
    for (Eigen::SparseMatrix<float>::InnerIterator it(m.footprints, k); it; ++it) {
      if (m.ring.b0.size() > it.row()) ab += it.value() * m.ring.b0(it.row());
      aa += it.value() * it.value();
    }
    m.footprint_norm2(k) = aa;
    m.background_under(k, 0) = aa > 0 ? ab / aa : 0.0f;
  }
  m.gram_sparse = m.gram.sparseView(0.0f, 0.0f);
  m.gram_sparse.makeCompressed();
}

void subtract_footprints(const Eigen::SparseMatrix<float>& a, Eigen::Ref<const Eigen::VectorXf> c,
                         float* x) {
  for (Eigen::Index k = 0; k < a.cols(); ++k) {
    const float ck = c(k);
    if (ck == 0) continue;
    for (Eigen::SparseMatrix<float>::InnerIterator it(a, k); it; ++it) x[it.row()] -= ck * it.value();
  }
}

void remove_ring_background_frame(const CnmfModel& m, Eigen::Ref<const Eigen::VectorXf> c,
                                  const float* y, float* out, float* x_out, float* scratch) {
  const Eigen::Index P = m.footprints.rows();
  Eigen::Map<const Eigen::VectorXf> yv(y, P);
  Eigen::Map<Eigen::VectorXf> xv(x_out, P), ov(out, P);
  xv = yv;
  subtract_footprints(m.footprints, c, x_out);
  ring_background_frame(m.ring, x_out, out, scratch);  // out = B
  ov = yv - ov;
}

Eigen::MatrixXf remove_ring_background(const CnmfModel& m, const Eigen::MatrixXf& traces,
                                       Eigen::Ref<const Eigen::MatrixXf> frames, int threads) {
  const Eigen::Index P = frames.rows(), T = frames.cols();
  Eigen::MatrixXf out(P, T);
  parallel_blocks(std::max(1, threads), T, [&](Eigen::Index t0, Eigen::Index t1) {
    Eigen::VectorXf x(P), scratch(P);
    for (Eigen::Index t = t0; t < t1; ++t) {
      remove_ring_background_frame(m, traces.col(t), frames.col(t).data(), out.col(t).data(), x.data(),
                                   scratch.data());
    }
  });
  return out;
}

void fit_ring_model(Eigen::Ref<const Eigen::MatrixXf> y, const CnmfOptions& o, CnmfInitResult& init) {
  CnmfModel& m = init.model;
  const int H = static_cast<int>(o.height), W = static_cast<int>(o.width);
  const Eigen::Index P = y.rows(), T = y.cols();
  const int K = m.k();
  Eigen::MatrixXf& c = init.traces;
  std::vector<Support>& supports = init.supports;
  // Footprint values on the fixed supports.
  std::vector<Eigen::VectorXf> values(static_cast<std::size_t>(K));
  for (int k = 0; k < K; ++k) {
    const Support& sk = supports[static_cast<std::size_t>(k)];
    Eigen::VectorXf v = Eigen::VectorXf::Zero(static_cast<Eigen::Index>(sk.size()));
    for (Eigen::SparseMatrix<float>::InnerIterator it(m.footprints, k); it; ++it) {
      auto pos = std::lower_bound(sk.begin(), sk.end(), static_cast<std::int32_t>(it.row()));
      if (pos != sk.end() && *pos == it.row()) v(pos - sk.begin()) = it.value();
    }
    values[static_cast<std::size_t>(k)] = v;
  }
  m.background.resize(P, 0);
  init.background_traces.resize(0, T);
  // Two P x T buffers for all three rounds, every per-frame step split over the initialisation's
  // threads in fixed blocks of frames (the same values on any thread count). x holds y − A c for
  // the ring fit, then the frames with the ring background removed; z the ring-filtered frames.
  // (Each round used to allocate P x T temporaries and run these loops on one thread: 5.8 s of a
  // 21.5 s replay of a 256 x 256, 600-frame one-photon movie.)
  const int threads = std::max(1, o.init_threads);
  Eigen::MatrixXf x(P, T), z(P, T);
  Eigen::MatrixXf empty_bg(P, 0), empty_yc(P, 0);
  std::vector<Eigen::VectorXf> yc(static_cast<std::size_t>(K));
  for (int it = 0; it < 3; ++it) {
    // Ring fit to what the neurons do not explain.
    parallel_blocks(threads, T, [&](Eigen::Index t0, Eigen::Index t1) {
      for (Eigen::Index t = t0; t < t1; ++t) {
        x.col(t) = y.col(t);
        subtract_footprints(m.footprints, c.col(t), x.col(t).data());
      }
    });
    m.ring = fit_ring_background(x, o.height, o.width, o.ring_radius, 24, 0.01f, threads);
    // Traces on the ringed footprints (exact least squares of the ring model).
    parallel_blocks(threads, T, [&](Eigen::Index t0, Eigen::Index t1) {
      Eigen::VectorXf scratch(P);
      for (Eigen::Index t = t0; t < t1; ++t) ring_filter_frame(m.ring, y.col(t).data(), z.col(t).data(), scratch.data());
    });
    const Eigen::SparseMatrix<float> at = ring_filter_footprints(m.ring, m.footprints);
    const Eigen::SparseMatrix<float> att = at.transpose();
    const Eigen::MatrixXf gram = Eigen::MatrixXf(att * at);
    Eigen::MatrixXf rhs(K, T);
    parallel_blocks(threads, T, [&](Eigen::Index t0, Eigen::Index t1) {
      rhs.middleCols(t0, t1 - t0).noalias() = att * z.middleCols(t0, t1 - t0);
    });
    hals_rows(gram, rhs, c, 10);
    // Footprints against the data with the ring background removed (into x: y − B).
    parallel_blocks(threads, T, [&](Eigen::Index t0, Eigen::Index t1) {
      Eigen::VectorXf xa(P), scratch(P);
      for (Eigen::Index t = t0; t < t1; ++t)
        remove_ring_background_frame(m, c.col(t), y.col(t).data(), x.col(t).data(), xa.data(), scratch.data());
    });
    const Eigen::MatrixXf& yb = x;
    parallel_blocks(threads, K, [&](Eigen::Index k0, Eigen::Index k1) {
      for (Eigen::Index k = k0; k < k1; ++k) {
        const Support& sk = supports[static_cast<std::size_t>(k)];
        Eigen::VectorXf v = Eigen::VectorXf::Zero(static_cast<Eigen::Index>(sk.size()));
        for (Eigen::Index t = 0; t < T; ++t) {
          const float ck = c(k, t);
          if (ck == 0) continue;
          for (std::size_t i = 0; i < sk.size(); ++i) v(static_cast<Eigen::Index>(i)) += ck * yb(sk[i], t);
        }
        yc[static_cast<std::size_t>(k)] = std::move(v);
      }
    });
    const Eigen::MatrixXf cc = c * c.transpose();
    hals_shapes(supports, values, empty_bg, yc, empty_yc, cc, H, W, 0.0f, 1);
    // A constant pedestal under a footprint times the trace's baseline is indistinguishable from
    // b0; somata vanish at the edge of their support square, so remove the edge level.
    for (int k = 0; k < K; ++k) {
      const Support& sk = supports[static_cast<std::size_t>(k)];
      Eigen::VectorXf& v = values[static_cast<std::size_t>(k)];
      std::vector<float> edge;
      int y0 = H, y1 = -1, x0 = W, x1 = -1;
      for (std::int32_t q : sk) {
        y0 = std::min(y0, q / W), y1 = std::max(y1, q / W), x0 = std::min(x0, q % W), x1 = std::max(x1, q % W);
      }
      for (std::size_t i = 0; i < sk.size(); ++i) {
        const int qy = sk[i] / W, qx = sk[i] % W;
        if (qy == y0 || qy == y1 || qx == x0 || qx == x1) edge.push_back(v(static_cast<Eigen::Index>(i)));
      }
      if (edge.empty()) continue;
      const float level = median_of(edge);
      if (level > 0) v = (v.array() - level).cwiseMax(0.0f).matrix();
    }
    for (int k = 0; k < K; ++k) {
      const float n = values[static_cast<std::size_t>(k)].norm();
      if (n > 0) {
        values[static_cast<std::size_t>(k)] /= n;
        c.row(k) *= n;
      }
    }
    m.footprints = assemble(static_cast<int>(P), supports, values);
  }
  // Final traces on the final footprints.
  {
    const Eigen::SparseMatrix<float> at = ring_filter_footprints(m.ring, m.footprints);
    const Eigen::SparseMatrix<float> att = at.transpose();
    hals_rows(Eigen::MatrixXf(att * at), att * z, c, 10);
  }
  for (int k = 0; k < K; ++k) {
    Eigen::VectorXf ck = c.row(k).transpose();
    m.noise(k) = std::max(estimate_noise_sd(ck), 1e-6f);
    m.baseline(k) = trace_baseline(ck, m.noise(k));
  }
  m.s_min = o.s_min_sigma * m.noise;
  m.finalize();
}

}  // namespace detail

// ---------------------------------------------------------------- fast path

void CnmfTracker::init(const CnmfOptions& options, int nb) {
  options_ = options;
  kmax_ = std::max(1, options.max_components);
  nb_ = nb;
  const Eigen::Index n = kmax_ + nb_;
  rhs_ = Eigen::VectorXf::Zero(n);
  x_ = Eigen::VectorXf::Zero(n);
  scratch_ = Eigen::VectorXf::Zero(n);
  baseline_ = Eigen::VectorXf::Zero(kmax_);
  baseline_scale_ = Eigen::VectorXf::Zero(kmax_);
  baseline_below_ = Eigen::VectorXf::Constant(kmax_, kBaselineQuantile);
  y_in_ = Eigen::VectorXf::Zero(kmax_);
  c_out_ = Eigen::VectorXf::Zero(kmax_);
  s_out_ = Eigen::VectorXf::Zero(kmax_);
  c_prev_ = Eigen::VectorXf::Zero(kmax_);
  x_prev_ = Eigen::VectorXf::Zero(n);
  resid_hist_.clear();
  ids_.clear();
  ids_.reserve(static_cast<std::size_t>(kmax_));
  oasis_.init(kmax_);
  out_.raw = Eigen::VectorXf::Zero(kmax_);
  out_.denoised = Eigen::VectorXf::Zero(kmax_);
  out_.spikes = Eigen::VectorXf::Zero(kmax_);
  out_.activation = Eigen::VectorXf::Zero(kmax_);
  out_.background = Eigen::VectorXf::Zero(std::max(nb_, 0));
  out_.dff = Eigen::VectorXf::Zero(kmax_);
  f_smooth_ = Eigen::VectorXf::Zero(std::max(nb_, 0));
  ring_under_ = Eigen::VectorXf::Constant(kmax_, std::numeric_limits<float>::quiet_NaN());
  f_alpha_ = static_cast<float>(1.0 / std::max(1.0, kDffBackgroundTauS * options.frame_rate_hz));
  const Eigen::Index P = static_cast<Eigen::Index>(options.height) * options.width;
  ring_z_ = Eigen::VectorXf::Zero(options.ring_radius > 0 ? P : 0);
  ring_scratch_ = Eigen::VectorXf::Zero(options.ring_radius > 0 ? P : 0);
  const int H = static_cast<int>(options.height), W = static_cast<int>(options.width);
  block_side_ = std::max(8, static_cast<int>(std::ceil(4 * options.neuron_radius)));
  blocks_h_ = (H + block_side_ - 1) / block_side_;
  blocks_w_ = (W + block_side_ - 1) / block_side_;
  resid_px_ = Eigen::VectorXf::Zero(options.outlier_residual_ratio > 0 ? P : 0);
  block_energy_.assign(static_cast<std::size_t>(blocks_h_) * blocks_w_, 0.0);
  model_ = nullptr;
  t_ = 0;
}

bool CnmfTracker::residual_is_widespread(const float* frame, double limit) {
  const CnmfModel& m = *model_;
  const int K = m.k();
  const int H = static_cast<int>(m.height), W = static_cast<int>(m.width);
  const Eigen::Index P = static_cast<Eigen::Index>(H) * W;
  if (resid_px_.size() != P) return true;
  // r = y - b f - A c (ring model: z - Ã c).
  const bool ring = m.ring.active();
  resid_px_ = Eigen::Map<const Eigen::VectorXf>(ring ? ring_z_.data() : frame, P);
  for (int b = 0; b < nb_ && !ring; ++b) resid_px_.noalias() -= x_(K + b) * m.background.col(b);
  const Eigen::SparseMatrix<float>& a = ring ? m.ring_footprints : m.footprints;
  for (int k = 0; k < K; ++k) {
    const float c = x_(k);
    if (c == 0) continue;
    for (Eigen::SparseMatrix<float>::InnerIterator it(a, k); it; ++it) resid_px_(it.row()) -= c * it.value();
  }
  std::fill(block_energy_.begin(), block_energy_.end(), 0.0);
  for (int y = 0; y < H; ++y) {
    const float* r = resid_px_.data() + static_cast<Eigen::Index>(y) * W;
    double* e = block_energy_.data() + static_cast<std::size_t>(y / block_side_) * blocks_w_;
    for (int x0 = 0; x0 < W; x0 += block_side_) {
      double s = 0;
      for (int x = x0; x < std::min(W, x0 + block_side_); ++x) s += static_cast<double>(r[x]) * r[x];
      e[x0 / block_side_] += s;
    }
  }
  // Leave out the kCompactBlocks blocks with the most residual (a soma spans at most 2 x 2).
  double rest = 0;
  for (double e : block_energy_) rest += e;
  std::int64_t pixels = P;
  for (int i = 0; i < kCompactBlocks; ++i) {
    const auto top = std::max_element(block_energy_.begin(), block_energy_.end());
    if (*top < 0) break;
    rest -= *top;
    const int b = static_cast<int>(top - block_energy_.begin()), by = b / blocks_w_, bx = b % blocks_w_;
    pixels -= static_cast<std::int64_t>(std::min(block_side_, H - by * block_side_)) * std::min(block_side_, W - bx * block_side_);
    *top = -1.0;
  }
  return pixels > 0 && rest / static_cast<double>(pixels) > limit;
}

namespace {
std::uint32_t touch_sparse(const Eigen::SparseMatrix<float>& a) {
  if (a.outerSize() == 0 || a.nonZeros() == 0) return 0;
  const auto nnz = static_cast<std::size_t>(a.nonZeros());
  return touch_bytes(a.valuePtr(), nnz * sizeof(float)) +
         touch_bytes(a.innerIndexPtr(), nnz * sizeof(int)) +
         touch_bytes(a.outerIndexPtr(), (static_cast<std::size_t>(a.outerSize()) + 1) * sizeof(int));
}
}  // namespace

std::uint32_t CnmfTracker::warm() const {
  auto vec = [](const Eigen::VectorXf& v) { return touch_bytes(v.data(), static_cast<std::size_t>(v.size()) * sizeof(float)); };
  return vec(x_) + vec(rhs_) + vec(baseline_) + vec(baseline_scale_) + vec(baseline_below_) + vec(y_in_) +
         vec(c_out_) + vec(s_out_) + vec(c_prev_) + oasis_.warm();
}

std::uint32_t touch_model(const CnmfModel& m) {
  std::uint32_t acc = touch_sparse(m.footprints) + touch_sparse(m.ring_footprints) +
                      touch_sparse(m.gram_sparse);
  acc += touch_bytes(m.background.data(), static_cast<std::size_t>(m.background.size()) * sizeof(float));
  return acc;
}

void CnmfTracker::set_model(const CnmfModel* model) {
  const int K = model->k();
  if (K > kmax_) throw std::length_error("cnmf: model has more components than max_components");
  if (model->nb() != nb_) throw std::length_error("cnmf: background rank changed");
  if (model->ring.active() && ring_z_.size() != model->footprints.rows()) {
    throw std::length_error("cnmf: ring-background model but the tracker was not sized for one");
  }
  // Follow components by id. Ids ascend in both models and removed components only shift later
  // ones down, so moving state forward in place (from j >= i to i) never overwrites live state.
  const std::size_t old_k = ids_.size();
  std::size_t j = 0;
  const Eigen::Index bg_from = static_cast<Eigen::Index>(old_k);
  // Background warm start first (it sits after the neurons and K may grow).
  for (int b = 0; b < nb_; ++b) scratch_(b) = x_(bg_from + b);
  for (int i = 0; i < K; ++i) {
    const std::uint64_t id = model->ids[static_cast<std::size_t>(i)];
    while (j < old_k && ids_[j] < id) ++j;
    const float g = model->g(i), s_min = model->s_min(i);
    const float g2 = model->g2.size() == K ? model->g2(i) : 0.0f;
    if (j < old_k && ids_[j] == id) {
      const int from = static_cast<int>(j);
      x_(i) = x_(from);
      baseline_(i) = baseline_(from);
      baseline_below_(i) = baseline_below_(from);
      ring_under_(i) = ring_under_(from);
      c_out_(i) = c_out_(from);
      c_prev_(i) = c_prev_(from);
      oasis_.move(from, i);
      if (oasis_.g(i) != g || oasis_.g2(i) != g2) oasis_.reset_trace(i, g, s_min, 0.0f, g2);
      else oasis_.set_params(i, g, s_min, 0.0f, g2);
    } else {
      x_(i) = 0;
      baseline_(i) = model->baseline(i);
      baseline_below_(i) = kBaselineQuantile;
      ring_under_(i) = std::numeric_limits<float>::quiet_NaN();
      c_out_(i) = c_prev_(i) = 0;
      oasis_.reset_trace(i, g, s_min, 0.0f, g2);
    }
    baseline_scale_(i) = std::max(model->noise(i), 1e-6f);
    // i <= j: entries below j are no longer read. Capacity was reserved in init().
    if (static_cast<std::size_t>(i) < ids_.size()) ids_[static_cast<std::size_t>(i)] = id;
    else ids_.push_back(id);
  }
  ids_.resize(static_cast<std::size_t>(K));
  for (int b = 0; b < nb_; ++b) x_(K + b) = scratch_(b);
  model_ = model;
}

void CnmfTracker::process(const float* frame, double squared_norm, bool marked) {
  const CnmfModel& m = *model_;
  const int K = m.k(), n = K + nb_;
  const Eigen::Index P = static_cast<Eigen::Index>(m.height) * m.width;
  Eigen::Map<const Eigen::VectorXf> y(frame, P);
  // bᵀy first: its sequential pass brings a frame that is not in the caches (the slow path's
  // catch-up reads frames written to its ring long before) in for Aᵀy's scattered reads of the
  // footprints' pixels, which otherwise wait on memory row by row.
  if (nb_ > 0) rhs_.segment(K, nb_).noalias() = m.background.transpose() * y;
  if (m.ring.active()) {
    // One-photon ring model: least squares on Ã = (I − W) A against z = (I − W)(y − b0).
    ring_filter_frame(m.ring, frame, ring_z_.data(), ring_scratch_.data());
    rhs_.head(K).noalias() = m.ring_footprints.transpose() * ring_z_;
  } else {
    rhs_.head(K).noalias() = m.footprints.transpose() * y;
  }
  x_prev_.head(n) = x_.head(n);
  // Warm-started HALS on the Gram of [A b], walking only its non-zeros (symmetric: column i is
  // row i).
  const float* gv = m.gram_sparse.valuePtr();
  const int* gi = m.gram_sparse.innerIndexPtr();
  const int* gp = m.gram_sparse.outerIndexPtr();
  for (int sweep = 0; sweep < options_.fast_iterations; ++sweep) {
    float change = 0, norm = 0;
    for (int i = 0; i < n; ++i) {
      float d = 0, dot = 0;
      for (int q = gp[i]; q < gp[i + 1]; ++q) {
        const int j = gi[q];
        dot += gv[q] * x_(j);
        if (j == i) d = gv[q];
      }
      if (d <= 0) continue;
      const float old = x_(i);
      const float v = std::max(0.0f, old + (rhs_(i) - dot) / d);
      x_(i) = v;
      change += d * (v - old) * (v - old);
      norm += d * v * v;
    }
    if (change <= options_.fast_tolerance * options_.fast_tolerance * norm) break;
  }
  // The fit's residual, ||y - U x||^2 = ||y||^2 - 2 xᵀUᵀy + xᵀ(UᵀU)x with U = [A b] (ring model:
  // Ã against z), from the products already at hand: the frame's squared norm (the caller's, or
  // one more pass over it) and one pass over the Gram's non-zeros.
  {
    double lin = 0, quad = 0;
    for (int i = 0; i < n; ++i) {
      const float xi = x_(i);
      if (xi == 0) continue;
      float dot = 0;
      for (int q = gp[i]; q < gp[i + 1]; ++q) dot += gv[q] * x_(gi[q]);
      lin += static_cast<double>(xi) * rhs_(i);
      quad += static_cast<double>(xi) * dot;
    }
    const double yy = m.ring.active()      ? sum_squares(ring_z_.data(), static_cast<std::size_t>(P))
                      : squared_norm >= 0 ? squared_norm
                                          : sum_squares(frame, static_cast<std::size_t>(P));
    out_.residual = static_cast<float>(std::max(0.0, yy - 2 * lin + quad) / static_cast<double>(P));
  }
  out_.excluded = out_.marked = marked;
  if (!marked && options_.outlier_residual_ratio > 0) {
    float reference = m.typical_residual;  // until this tracker has a history of its own
    if (resid_hist_.size() >= kResidualMinHistory) reference = resid_hist_.median();
    const double limit = static_cast<double>(options_.outlier_residual_ratio) * reference;
    out_.excluded = reference > 0 && out_.residual > limit && residual_is_widespread(frame, limit);
  }
  if (!marked) resid_hist_.push(out_.residual);
  const bool excluded = out_.excluded;
  if (excluded) {
    // Held: the fit is reported (activation, raw) but moves nothing; the deconvolution gets the
    // AR model's prediction from the last two denoised values (no spike), the next frame's sweeps
    // start where this one's did.
    for (int i = 0; i < K; ++i) {
      out_.activation(i) = x_(i);
      out_.raw(i) = x_(i) - baseline_(i);
      y_in_(i) = oasis_.g(i) * c_out_(i) + oasis_.g2(i) * c_prev_(i);
    }
    for (int b = 0; b < nb_; ++b) out_.background(b) = x_(K + b);
    x_.head(n) = x_prev_.head(n);
  }
  // Baseline: a running 30th percentile (stochastic quantile tracker, ~10 s memory at 30 Hz),
  // reported as that plus 0.52 noise sd (the 30th percentile of Gaussian noise is -0.52 sd).
  // Its steps are 0.005 noise sd, so it falls at most ~5 sd per 1,500 frames: bleaching leaves
  // it far above the trace, which then reads negative and deconvolves to nothing. So the
  // downward step grows with the fraction of recent frames (~7 s memory) below the
  // baseline's level beyond kBaselineFallFraction (at its baseline a trace sits near 0.3, and
  // activity only lowers it). Upward steps keep their rate. (Also gating it on the mean of that
  // fraction over all components, as bleaching dims every neuron together, changed nothing
  // measurable on the README's movies.)
  for (int i = 0; i < K && !excluded; ++i) {
    const float c = x_(i);
    const float step = baseline_scale_(i) * 0.005f;
    const float level = baseline_(i) - 0.52f * baseline_scale_(i);
    const bool below = c < level;
    float& fraction = baseline_below_(i);
    fraction += kBaselineFallRate * ((below ? 1.0f : 0.0f) - fraction);
    const float boost =
        std::min(kBaselineMaxBoost, 1.0f + kBaselineFallGain * std::max(0.0f, fraction - kBaselineFallFraction));
    baseline_(i) += step * (below ? -0.7f * boost : 0.3f);
    out_.activation(i) = c;
    y_in_(i) = c - baseline_(i);
    out_.raw(i) = y_in_(i);
  }
  if (!excluded)
    for (int b = 0; b < nb_; ++b) out_.background(b) = x_(K + b);
  c_prev_.head(K) = c_out_.head(K);
  oasis_.update_first(K, y_in_, c_out_, s_out_);
  out_.denoised.head(K) = c_out_.head(K);
  if (!excluded)
    for (int b = 0; b < nb_; ++b) f_smooth_(b) += (t_ == 0 ? 1.0f : f_alpha_) * (x_(K + b) - f_smooth_(b));
  if (m.ring.active()) {
    // The ring's background under each footprint follows bleaching (b0 alone would not).
    const float* fv = m.footprints.valuePtr();
    const int* fi = m.footprints.innerIndexPtr();
    const int* fp = m.footprints.outerIndexPtr();
    const bool normed = m.footprint_norm2.size() == K;
    for (int i = 0; i < K; ++i) {
      float num = 0;
      for (int q = fp[i]; q < fp[i + 1]; ++q) num += fv[q] * (frame[fi[q]] - ring_z_(fi[q]));
      const float den = normed ? m.footprint_norm2(i) : 0.0f;
      const float u = den > 0 ? num / den : 0.0f;
      float& r = ring_under_(i);
      if (!excluded) r = std::isnan(r) ? u : r + f_alpha_ * (u - r);
      out_.dff(i) = c_out_(i) / resting_fluorescence(m, i, baseline_(i), r);
    }
  } else {
    const float* f = nb_ > 0 ? f_smooth_.data() : nullptr;
    for (int i = 0; i < K; ++i)
      out_.dff(i) = c_out_(i) / resting_fluorescence(m, i, baseline_(i), background_under_footprint(m, i, f));
  }
  const float thr = options_.spike_threshold_sigma;
  for (int i = 0; i < K; ++i)
    out_.spikes(i) = !excluded && s_out_(i) >= thr * baseline_scale_(i) ? s_out_(i) : 0.0f;
  ++t_;
}

}  // namespace rtnmf::nmf
