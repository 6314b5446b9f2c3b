// Online CNMF slow path: sufficient statistics, shape updates, new components, merges, removals.
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#if defined(__AVX__)
#include <immintrin.h>
#endif
#include <numeric>
#include <stdexcept>

#include "engine/nmf/batch_nmf.h"
#include "engine/nmf/cnmf.h"
#include "engine/nmf/cnmf_internal.h"

namespace rtnmf::nmf {

using detail::Support;

namespace {

// Pixels of each frame fold_pixels() reads per group of rows (rounded to whole block rows). At
// 2,048 (8 KB) the jumps between the pending frames every two pages cost more than the second
// read of each frame saved; 8,192 and 16,384 were equally fast (bm_cnmf_slow AddFrame).
constexpr int kFoldGroupPixels = 8192;

// A sorted support as runs of consecutive pixels (footprint supports are squares: one run per
// row), so that statistics gather whole rows with vector loads instead of one index per pixel.
using Run = detail::SupportRun;
// Appends the runs of `s` to `runs`.
void append_runs(const Support& s, std::vector<Run>& runs) {
  for (std::size_t i = 0; i < s.size();) {
    std::size_t j = i + 1;
    while (j < s.size() && s[j] == s[j - 1] + 1) ++j;
    runs.push_back({s[i], static_cast<std::int32_t>(i), static_cast<std::int32_t>(j - i)});
    i = j;
  }
}
// v[support] += c * y[support], one run at a time.
void gather_axpy(const Run* r, const Run* end, float c, const float* y, float* v) {
  for (; r != end; ++r) {
    const float* src = y + r->pixel;
    float* dst = v + r->offset;
    for (std::int32_t i = 0; i < r->length; ++i) dst[i] += c * src[i];
  }
}
// l[j] = mean of acc[D j .. D j + D - 1] over `rows` rows, for the whole blocks of a row of w
// values; returns their count. D fixed at compile time so that the loop vectorises across blocks;
// each sum runs in the same order as CnmfUpdater::block_means' loop for edge blocks.
template <int D>
int whole_block_means(const float* acc, int w, int rows, float* l) {
  const int n = w / D;
  const float count = static_cast<float>(rows * D);
  for (int j = 0; j < n; ++j) {
    float sum = 0;
    for (int x = 0; x < D; ++x) sum += acc[j * D + x];
    l[j] = sum / count;
  }
  return n;
}
// cy (P x nb) = scale * cy + Σ_j w(b, j) frame_j for m frames: pixel blocks of cy stay in cache
// while the frames stream through once (Eigen's GEMM would first pack the P x m frames: a copy of
// all of them per call).
void accumulate_background(Eigen::MatrixXf& cy, float scale, const float* const* frames,
                           const Eigen::Ref<const Eigen::MatrixXf>& w) {
  const Eigen::Index P = cy.rows(), nb = cy.cols(), m = w.cols();
  constexpr Eigen::Index kBlock = 2048;
  for (Eigen::Index p0 = 0; p0 < P; p0 += kBlock) {
    const Eigen::Index len = std::min(kBlock, P - p0);
    for (Eigen::Index b = 0; b < nb; ++b) {
      float* dst = cy.col(b).data() + p0;
      if (scale != 1.0f)
        for (Eigen::Index i = 0; i < len; ++i) dst[i] *= scale;
      for (Eigen::Index j = 0; j < m; ++j) {
        const float c = w(b, j);
        if (c == 0) continue;
        const float* src = frames[j] + p0;
        for (Eigen::Index i = 0; i < len; ++i) dst[i] += c * src[i];
      }
    }
  }
}

}  // namespace

void CnmfUpdater::init(const CnmfOptions& options, const CnmfInitResult& init,
                       Eigen::Ref<const Eigen::MatrixXf> frames) {
  // One-photon ring model: the statistics see the frames with the ring background removed.
  const bool ring = init.model.ring.active();
  const Eigen::MatrixXf ring_free = ring ? detail::remove_ring_background(init.model, init.traces, frames, options.update_threads) : Eigen::MatrixXf();
  Eigen::Ref<const Eigen::MatrixXf> y(ring ? Eigen::Ref<const Eigen::MatrixXf>(ring_free) : frames);
  if (ring) {
    ring_y_.resize(frames.rows());
    ring_x_.resize(frames.rows());
    ring_scratch_.resize(frames.rows());
    ring_mean_ = init.model.ring.b0;
  }
  options_ = options;
  if (init.neuron_radius > 0) {  // the radius the initialisation ran at (auto_radius may change it)
    options_.neuron_radius = init.neuron_radius;
    options_.ring_radius = init.ring_radius;
  }
  model_ = init.model;
  nb_ = model_.nb();
  const int K = model_.k();
  const Eigen::Index P = static_cast<Eigen::Index>(options.height) * options.width;
  const Eigen::Index T = y.cols();
  lambda_ = options.forgetting_frames > 1 ? 1.0f - 1.0f / options.forgetting_frames : 1.0f;
  support_ = init.supports;
  born_.assign(support_.size(), 0);
  values_.assign(static_cast<std::size_t>(K), Eigen::VectorXf());
  for (int k = 0; k < K; ++k) {
    const Support& sk = support_[static_cast<std::size_t>(k)];
    Eigen::VectorXf v = Eigen::VectorXf::Zero(static_cast<Eigen::Index>(sk.size()));
    for (Eigen::SparseMatrix<float>::InnerIterator it(model_.footprints, k); it; ++it) {
      auto pos = std::lower_bound(sk.begin(), sk.end(), static_cast<std::int32_t>(it.row()));
      if (pos != sk.end() && *pos == it.row()) v(pos - sk.begin()) = it.value();
    }
    values_[static_cast<std::size_t>(k)] = v;
  }
  bg_ = model_.background;
  // Statistics over the initial frames (weights λ^(T-1-t)).
  Eigen::MatrixXf x(K + nb_, T);
  x.topRows(K) = init.traces;
  if (nb_ > 0) x.bottomRows(nb_) = init.background_traces;
  Eigen::VectorXf w(T);
  for (Eigen::Index t = 0; t < T; ++t) w(t) = std::pow(lambda_, static_cast<float>(T - 1 - t));
  Eigen::MatrixXf xw = x * w.asDiagonal();
  cc_ = xw * x.transpose();
  cy_.assign(static_cast<std::size_t>(K), Eigen::VectorXf());
  std::vector<Run> runs;
  for (int k = 0; k < K; ++k) {
    const Support& sk = support_[static_cast<std::size_t>(k)];
    Eigen::VectorXf v = Eigen::VectorXf::Zero(static_cast<Eigen::Index>(sk.size()));
    runs.clear();
    append_runs(sk, runs);
    for (Eigen::Index t = 0; t < T; ++t) {
      const float c = xw(k, t);
      if (c == 0) continue;
      gather_axpy(runs.data(), runs.data() + runs.size(), c, y.col(t).data(), v.data());
    }
    cy_[static_cast<std::size_t>(k)] = v;
  }
  cy_bg_ = Eigen::MatrixXf::Zero(P, nb_);
  if (nb_ > 0) {
    std::vector<const float*> cols(static_cast<std::size_t>(T));
    for (Eigen::Index t = 0; t < T; ++t) cols[static_cast<std::size_t>(t)] = y.col(t).data();
    accumulate_background(cy_bg_, 1.0f, cols.data(), xw.bottomRows(nb_));
  }
  row_scratch_ = Eigen::VectorXf::Zero(static_cast<Eigen::Index>(options.width));
  // Frame ring from the last frames of the initialisation (already in the statistics).
  const std::uint32_t n = residual_buffer(options);
  ds_ = std::max(1, static_cast<int>(std::floor(0.8f * options_.neuron_radius)));
  hl_ = (static_cast<int>(options.height) + ds_ - 1) / ds_;
  wl_ = (static_cast<int>(options.width) + ds_ - 1) / ds_;
  ring_n_ = n;
  kept_run_ = 0;
  frames_ = Eigen::MatrixXf::Zero(P, n);
  frame_ptr_.assign(n, nullptr);
  for (std::uint32_t j = 0; j < n; ++j) frame_ptr_[j] = frames_.col(j).data();
  lowres_ = Eigen::MatrixXf::Zero(static_cast<Eigen::Index>(hl_) * wl_, n);
  lowres_due_.assign(n, 0);
  buffer_x_ = Eigen::MatrixXf::Zero(K + nb_, n);
  motion_ = Eigen::MatrixXf::Zero(2, n);
  buf_pos_ = 0;
  buf_count_ = 0;
  pending_ = 0;
  for (Eigen::Index t = std::max<Eigen::Index>(0, T - n); t < T; ++t) {
    store_frame(y.col(t).data(), false);
    buffer_x_.col(buf_pos_) = x.col(t);
    buf_pos_ = (buf_pos_ + 1) % n;
    buf_count_ = std::min(buf_count_ + 1, n);
  }
  hist_x_ = Eigen::MatrixXf::Zero(K, static_cast<Eigen::Index>(kHistoryBuffers) * n);
  hist_pos_ = 0;
  hist_count_ = 0;
  for (Eigen::Index t = std::max<Eigen::Index>(0, T - hist_x_.cols()); t < T; ++t) push_history(x.col(t).head(K));
  x_ = Eigen::VectorXf::Zero(K + nb_);
  dense_ = Eigen::VectorXf::Zero(P);
  searched_empty_.assign(static_cast<std::size_t>(hl_) * wl_, 0);
  searched_score_.assign(static_cast<std::size_t>(hl_) * wl_, 0.0f);
  block_scratch_ = Eigen::VectorXf::Zero(static_cast<Eigen::Index>(hl_) * wl_);
  t_ = static_cast<std::uint64_t>(T);
  prepare_runs();
}

void CnmfUpdater::prepare_runs() {
  const int K = model_.k();
  runs_.clear();
  run_start_.assign(static_cast<std::size_t>(K) + 1, 0);
  for (int k = 0; k < K; ++k) {
    append_runs(support_[static_cast<std::size_t>(k)], runs_);
    run_start_[static_cast<std::size_t>(k) + 1] = runs_.size();
  }
  // The same runs by group of pixel rows (fold_pixels' unit), cut at group boundaries.
  const Eigen::Index gp = group_pixels();
  const Eigen::Index P = static_cast<Eigen::Index>(options_.height) * options_.width;
  const std::size_t groups = static_cast<std::size_t>((P + gp - 1) / gp);
  std::vector<std::vector<GroupRun>> by_group(groups);
  for (int k = 0; k < K; ++k)
    for (std::size_t r = run_start_[static_cast<std::size_t>(k)]; r < run_start_[static_cast<std::size_t>(k) + 1]; ++r) {
      Run run = runs_[r];
      while (run.length > 0) {
        const Eigen::Index g = run.pixel / gp;
        const std::int32_t len = static_cast<std::int32_t>(std::min<Eigen::Index>(run.length, (g + 1) * gp - run.pixel));
        by_group[static_cast<std::size_t>(g)].push_back({k, {run.pixel, run.offset, len}});
        run.pixel += len;
        run.offset += len;
        run.length -= len;
      }
    }
  group_runs_.clear();
  group_start_.assign(groups + 1, 0);
  for (std::size_t g = 0; g < groups; ++g) {
    group_runs_.insert(group_runs_.end(), by_group[g].begin(), by_group[g].end());
    group_start_[g + 1] = group_runs_.size();
  }
}

// Block rows per group in fold_pixels (~32 KB of each frame), and the group's pixels.
int CnmfUpdater::group_rows() const {
  return std::max(1, kFoldGroupPixels / std::max(1, ds_ * static_cast<int>(options_.width)));
}
Eigen::Index CnmfUpdater::group_pixels() const {
  return static_cast<Eigen::Index>(group_rows()) * ds_ * static_cast<Eigen::Index>(options_.width);
}

void CnmfUpdater::add_frame(const float* frame, Eigen::Ref<const Eigen::VectorXf> by_slot,
                            Eigen::Ref<const Eigen::VectorXf> background) {
  add(frame, by_slot, background, false);
}

void CnmfUpdater::add_frame_kept(const float* frame, Eigen::Ref<const Eigen::VectorXf> by_slot,
                                 Eigen::Ref<const Eigen::VectorXf> background) {
  add(frame, by_slot, background, true);
}

void CnmfUpdater::add(const float* frame, Eigen::Ref<const Eigen::VectorXf> by_slot,
                      Eigen::Ref<const Eigen::VectorXf> background, bool keep) {
  const int K = model_.k();
  if (x_.size() != K + nb_) x_.resize(K + nb_);
  // Map the fast path's activations (its model's ids) onto ours; components it did not have
  // count as 0 for this frame.
  x_.setZero();
  for (int k = 0; k < K; ++k) {
    const std::int32_t slot = model_.slots[static_cast<std::size_t>(k)];
    if (slot >= 0 && slot < by_slot.size()) x_(k) = by_slot(slot);
  }
  if (nb_ > 0) x_.tail(nb_) = background.head(nb_);
  untracked_last_.clear();
  if (model_.ring.active()) {  // one-photon: the frame without its ring background (cnmf.cc)
    detail::remove_ring_background_frame(model_, x_.head(K), frame, ring_y_.data(), ring_x_.data(),
                                         ring_scratch_.data());
    ring_mean_ = lambda_ * ring_mean_ + (1.0f - lambda_) * ring_x_;  // y − A c, for b0
    frame = ring_y_.data();
    keep = false;  // a scratch: copied
  }
  if (tracked_next_slot_ != kAllTracked) estimate_untracked(frame);
  tracked_next_slot_ = kAllTracked;
  // The frame's statistics (CY, CY_bg, its block means) are gathered by fold(), in one pass
  // over the pending frames.
  store_frame(frame, keep);
  if (run_start_.size() != static_cast<std::size_t>(K) + 1) prepare_runs();
  if (buffer_x_.rows() != K + nb_) buffer_x_.conservativeResize(K + nb_, Eigen::NoChange);
  buffer_x_.col(buf_pos_) = x_;
  motion_(0, buf_pos_) = motion_next_[0];
  motion_(1, buf_pos_) = motion_next_[1];
  motion_next_[0] = motion_next_[1] = 0;
  push_history(x_.head(K));
  const std::uint32_t n = ring_n_;
  buf_pos_ = (buf_pos_ + 1) % n;
  buf_count_ = std::min(buf_count_ + 1, n);
  ++pending_;
  // Fold in batches of up to 10 frames: the GEMM stays efficient and update() finds little left.
  if (pending_ >= std::min<std::uint32_t>(n, 10)) fold();
  ++t_;
}

void CnmfUpdater::estimate_untracked(const float* frame) {
  const int K = model_.k();
  if (untracked_.size() != static_cast<std::size_t>(K)) {
    untracked_.assign(static_cast<std::size_t>(K), Untracked());
    untracked_built_.assign(static_cast<std::size_t>(K), 0);
  }
  for (int k = 0; k < K; ++k) {
    const std::int32_t slot = model_.slots[static_cast<std::size_t>(k)];
    if (slot < 0 || slot < tracked_next_slot_) continue;  // no row, or tracked
    const Support& sk = support_[static_cast<std::size_t>(k)];
    const Eigen::VectorXf& ak = values_[static_cast<std::size_t>(k)];
    Untracked& u = untracked_[static_cast<std::size_t>(k)];
    if (!untracked_built_[static_cast<std::size_t>(k)]) {
      // Neighbours: tracked components whose supports meet this one's (the untracked ones
      // count as 0 here, as they did for every component before).
      if (support_pos_.size() != static_cast<std::size_t>(dense_.size())) support_pos_.assign(static_cast<std::size_t>(dense_.size()), -1);
      for (std::size_t i = 0; i < sk.size(); ++i) support_pos_[static_cast<std::size_t>(sk[i])] = static_cast<int>(i);
      u.neighbours.clear();
      std::vector<std::pair<int, int>> hits;  // (neighbour's column in a_nb, position in the support)
      std::vector<float> vals;                 // its footprint value there
      for (int j = 0; j < K; ++j) {
        if (j == k) continue;
        const std::int32_t sj_slot = model_.slots[static_cast<std::size_t>(j)];
        if (!(sj_slot >= 0 && sj_slot < tracked_next_slot_)) continue;
        const Support& sj = support_[static_cast<std::size_t>(j)];
        if (sj.empty() || sj.back() < sk.front() || sj.front() > sk.back()) continue;
        int col = -1;
        for (std::size_t q = 0; q < sj.size(); ++q) {
          const int pos = support_pos_[static_cast<std::size_t>(sj[q])];
          const float v = values_[static_cast<std::size_t>(j)](static_cast<Eigen::Index>(q));
          if (pos < 0 || v == 0) continue;
          if (col < 0) {
            col = static_cast<int>(u.neighbours.size());
            u.neighbours.push_back(j);
          }
          hits.emplace_back(col, pos);
          vals.push_back(v);
        }
      }
      u.a_nb = Eigen::MatrixXf::Zero(static_cast<Eigen::Index>(sk.size()), static_cast<Eigen::Index>(u.neighbours.size()));
      for (std::size_t h = 0; h < hits.size(); ++h) u.a_nb(hits[h].second, hits[h].first) = vals[h];
      u.b.resize(static_cast<Eigen::Index>(sk.size()), nb_);
      for (std::size_t i = 0; i < sk.size(); ++i)
        for (int b = 0; b < nb_; ++b) u.b(static_cast<Eigen::Index>(i), b) = bg_(sk[i], b);
      u.norm2 = ak.squaredNorm();
      for (std::int32_t p : sk) support_pos_[static_cast<std::size_t>(p)] = -1;
      untracked_built_[static_cast<std::size_t>(k)] = 1;
    }
    if (u.norm2 <= 0) continue;
    float dot = 0;
    for (std::size_t i = 0; i < sk.size(); ++i) {
      float r = frame[sk[i]];
      for (Eigen::Index c = 0; c < u.a_nb.cols(); ++c) r -= u.a_nb(static_cast<Eigen::Index>(i), c) * x_(u.neighbours[static_cast<std::size_t>(c)]);
      for (int b = 0; b < nb_; ++b) r -= u.b(static_cast<Eigen::Index>(i), b) * x_(K + b);
      dot += ak(static_cast<Eigen::Index>(i)) * r;
    }
    untracked_last_.emplace_back(slot, std::max(0.0f, dot / u.norm2));
  }
}

void CnmfUpdater::push_history(Eigen::Ref<const Eigen::VectorXf> c) {
  const std::uint32_t cap = static_cast<std::uint32_t>(hist_x_.cols());
  hist_x_.col(hist_pos_) = c;
  hist_pos_ = (hist_pos_ + 1) % cap;
  hist_count_ = std::min(hist_count_ + 1, cap);
}

void CnmfUpdater::store_frame(const float* frame, bool keep) {
  const int H = static_cast<int>(options_.height), W = static_cast<int>(options_.width);
  // The own copies (the initialisation's last frames, frames added by add_frame) are freed once
  // the whole ring points at kept frames, and allocated again when a frame is copied.
  kept_run_ = keep ? kept_run_ + 1 : 0;
  if (!keep && frames_.cols() == 0) frames_.resize(static_cast<Eigen::Index>(H) * W, ring_n_);
  float* dst = keep ? nullptr : frames_.col(buf_pos_).data();
  frame_ptr_[buf_pos_] = keep ? frame : dst;
  if (kept_run_ >= ring_n_ && frames_.cols() > 0) frames_.resize(0, 0);
  // A kept frame's block means are summed by fold(), in its pass over the frame for the
  // background statistic: one read of the frame instead of two.
  lowres_due_[buf_pos_] = keep ? 1 : 0;
  if (keep) return;
  float* lo = lowres_.col(buf_pos_).data();
  float* acc = row_scratch_.data();
  // One pass over the frame: each row is copied into the ring and summed into its block row
  // (vector adds), then the block row is reduced across columns. Block means (edge blocks may
  // be partial).
  for (int by = 0; by < hl_; ++by) {
    const int y0 = by * ds_, y1 = std::min(y0 + ds_, H);
    for (int yy = y0; yy < y1; ++yy) {
      const float* row = frame + static_cast<std::ptrdiff_t>(yy) * W;
      float* out = dst + static_cast<std::ptrdiff_t>(yy) * W;
      // Plain loops, not std::copy: memmove's rep-movsb path for rows of a few KB ran at a third
      // of the vector loop's speed here (42% of add_frame at 512 x 512).
      int x = 0;
#if defined(__AVX__)
      // Streaming stores: the ring is far larger than the caches and is read back only at the
      // next fold; a normal store would first read each line in.
      if (reinterpret_cast<std::uintptr_t>(out) % 32 == 0) {
        for (; x + 8 <= W; x += 8) {
          const __m256 v = _mm256_loadu_ps(row + x);
          _mm256_stream_ps(out + x, v);
          _mm256_storeu_ps(acc + x, yy == y0 ? v : _mm256_add_ps(_mm256_loadu_ps(acc + x), v));
        }
      }
#endif
      for (; x < W; ++x) {
        out[x] = row[x];
        acc[x] = yy == y0 ? row[x] : acc[x] + row[x];
      }
    }
    block_means(acc, y1 - y0, lo + static_cast<std::ptrdiff_t>(by) * wl_);
  }
#if defined(__AVX__)
  _mm_sfence();  // order the streaming stores before later ones (another thread may read the ring)
#endif
}

// One block row of a frame's block means (l) from the column sums (acc) of its `rows` rows.
void CnmfUpdater::block_means(const float* acc, int rows, float* l) const {
  const int W = static_cast<int>(options_.width);
  // Whole blocks with the block width fixed at compile time, so that the compiler vectorises
  // across blocks (the same sums in the same order as the loop below, which took ~45 µs per
  // 512 x 512 frame for all blocks); the loop is left with the edge blocks and other widths.
  int bx = 0;
  switch (ds_) {
    case 2: bx = whole_block_means<2>(acc, W, rows, l); break;
    case 3: bx = whole_block_means<3>(acc, W, rows, l); break;
    case 4: bx = whole_block_means<4>(acc, W, rows, l); break;
    case 5: bx = whole_block_means<5>(acc, W, rows, l); break;
    case 6: bx = whole_block_means<6>(acc, W, rows, l); break;
    case 8: bx = whole_block_means<8>(acc, W, rows, l); break;
    default: break;
  }
  for (; bx < wl_; ++bx) {
    const int x0 = bx * ds_, x1 = std::min(x0 + ds_, W);
    float sum = 0;
    for (int x = x0; x < x1; ++x) sum += acc[x];
    l[bx] = sum / static_cast<float>(rows * (x1 - x0));
  }
}

// The pending frames' one pass over their pixels, by groups of block rows (~32 KB of each
// frame, so a group of the statistics stays in cache while the frames stream through; Eigen's GEMM
// would first pack the P x m frames, a copy of all of them per call). With w = the frames'
// weighted activations [c; f] (K + nb rows): CY_k += Σ_j w(k, j) frame_j[support_k] (CY_k was
// scaled already), CY_bg ← scale CY_bg + Σ_j w(K + b, j) frame_j, and, for frames added in place,
// their block means (store_frame left them to this read). Gathering CY per frame in add()
// instead, the supports' rows came from cache only because store_frame had just read the whole
// frame, which fold then read a second time.
void CnmfUpdater::fold_pixels(const std::uint32_t* cols, std::uint32_t m, float scale,
                              const Eigen::Ref<const Eigen::MatrixXf>& w) {
  const int H = static_cast<int>(options_.height), W = static_cast<int>(options_.width);
  const Eigen::Index K = w.rows() - nb_;
  const int group = group_rows();  // the grouping prepare_runs() cut group_runs_ by
  float* acc = row_scratch_.data();
  for (int by0 = 0; by0 < hl_; by0 += group) {
    const int by1 = std::min(by0 + group, hl_);
    const Eigen::Index p0 = static_cast<Eigen::Index>(by0) * ds_ * W;
    const Eigen::Index len = static_cast<Eigen::Index>(std::min(by1 * ds_, H)) * W - p0;
    if (scale != 1.0f)
      for (int b = 0; b < nb_; ++b) {
        float* dst = cy_bg_.col(b).data() + p0;
        for (Eigen::Index i = 0; i < len; ++i) dst[i] *= scale;
      }
    // Frames outer, components inner: each frame's pixels are read from memory once (each sum
    // still runs over the frames in order).
    const std::size_t g = static_cast<std::size_t>(by0 / group);
    const GroupRun* gr0 = group_runs_.data() + group_start_[g];
    const GroupRun* gr1 = group_runs_.data() + group_start_[g + 1];
    for (std::uint32_t j = 0; j < m; ++j) {
      const float* frame = frame_ptr_[cols[j]];
      const float* src = frame + p0;
      for (int b = 0; b < nb_; ++b) {
        const float c = w(K + b, j);
        if (c == 0) continue;
        float* dst = cy_bg_.col(b).data() + p0;
        for (Eigen::Index i = 0; i < len; ++i) dst[i] += c * src[i];
      }
      for (const GroupRun* r = gr0; r != gr1; ++r) {
        const float c = w(r->k, j);
        if (c == 0) continue;
        gather_axpy(&r->run, &r->run + 1, c, frame, cy_[static_cast<std::size_t>(r->k)].data());
      }
      if (!lowres_due_[cols[j]]) continue;
      float* lo = lowres_.col(cols[j]).data();
      for (int by = by0; by < by1; ++by) {
        const int y0 = by * ds_, y1 = std::min(y0 + ds_, H);
        for (int yy = y0; yy < y1; ++yy) {
          const float* row = frame + static_cast<std::ptrdiff_t>(yy) * W;
          for (int x = 0; x < W; ++x) acc[x] = yy == y0 ? row[x] : acc[x] + row[x];
        }
        block_means(acc, y1 - y0, lo + static_cast<std::ptrdiff_t>(by) * wl_);
      }
    }
  }
  for (std::uint32_t j = 0; j < m; ++j) lowres_due_[cols[j]] = 0;
}

// Folds the pending frames into the statistics: with m frames and weights w_j = λ^(m-1-j),
// S ← λ^m S + Σ_j w_j (term of frame j), exactly what m single-frame updates give.
void CnmfUpdater::fold() {
  const std::uint32_t m = pending_;
  if (m == 0) return;
  pending_ = 0;
  const int K = model_.k();
  const std::uint32_t n = ring_n_;
  const std::uint32_t first = (buf_pos_ + n - m) % n;  // oldest pending column
  Eigen::MatrixXf xw(K + nb_, m);
  Eigen::MatrixXf xs(K + nb_, m);
  std::vector<std::uint32_t> cols(m);
  for (std::uint32_t j = 0; j < m; ++j) {
    cols[j] = (first + j) % n;
    xs.col(j) = buffer_x_.col(cols[j]);
    xw.col(j) = xs.col(j) * std::pow(lambda_, static_cast<float>(m - 1 - j));
  }
  const float lm = std::pow(lambda_, static_cast<float>(m));
  cc_ *= lm;
  cc_.noalias() += xw * xs.transpose();
  for (int k = 0; k < K; ++k) cy_[static_cast<std::size_t>(k)] *= lm;
  fold_pixels(cols.data(), m, lm, xw);
}

void CnmfUpdater::update_shapes() {
  const int K = model_.k();
  if (K == 0 && nb_ == 0) return;
  detail::hals_shapes(support_, values_, bg_, cy_, cy_bg_, cc_, static_cast<int>(options_.height),
                      static_cast<int>(options_.width), 2 * options_.neuron_radius, 1, options_.update_threads);
  (void)K;
}

void CnmfUpdater::erase_component(int k, std::int64_t merged_into) {
  const int K = model_.k();
  if (model_.slots[static_cast<std::size_t>(k)] >= 0) {
    Retired r;
    r.id = model_.ids[static_cast<std::size_t>(k)];
    r.slot = model_.slots[static_cast<std::size_t>(k)];
    r.merged_into = merged_into;
    r.frame = t_;
    r.pixels = support_[static_cast<std::size_t>(k)];
    const Eigen::VectorXf& v = values_[static_cast<std::size_t>(k)];
    r.values.assign(v.data(), v.data() + v.size());
    retired_last_.push_back(std::move(r));
  }
  support_.erase(support_.begin() + k);
  born_.erase(born_.begin() + k);
  values_.erase(values_.begin() + k);
  cy_.erase(cy_.begin() + k);
  auto drop_index = [&](Eigen::MatrixXf& m, bool rows, bool cols) {
    if (rows) {
      Eigen::MatrixXf t(m.rows() - 1, m.cols());
      t.topRows(k) = m.topRows(k);
      t.bottomRows(m.rows() - k - 1) = m.bottomRows(m.rows() - k - 1);
      m.swap(t);
    }
    if (cols) {
      Eigen::MatrixXf t(m.rows(), m.cols() - 1);
      t.leftCols(k) = m.leftCols(k);
      t.rightCols(m.cols() - k - 1) = m.rightCols(m.cols() - k - 1);
      m.swap(t);
    }
  };
  drop_index(cc_, true, true);
  drop_index(buffer_x_, true, false);
  auto drop_vec = [&](Eigen::VectorXf& v) {
    Eigen::VectorXf t(v.size() - 1);
    t.head(k) = v.head(k);
    t.tail(v.size() - k - 1) = v.tail(v.size() - k - 1);
    v.swap(t);
  };
  drop_index(hist_x_, true, false);
  drop_vec(model_.g);
  if (model_.g2.size() == K) drop_vec(model_.g2);
  drop_vec(model_.s_min);
  drop_vec(model_.baseline);
  drop_vec(model_.noise);
  model_.ids.erase(model_.ids.begin() + k);
  model_.slots.erase(model_.slots.begin() + k);
  x_.resize(K - 1 + nb_);
  // footprints are rebuilt from values_ by rebuild_model(); keep the column count consistent.
  model_.footprints = detail::assemble(static_cast<int>(dense_.size()), support_, values_);
}

void CnmfUpdater::remove_components() {
  removed_last_ = 0;
  const int K = model_.k();
  if (K == 0) return;
  // A component "stops explaining data" when its footprint vanished or its (forgetting-weighted)
  // energy fell far below the typical component's. One whose footprint, as the shapes are
  // updated, spread beyond a soma's size (detail::soma_size, the test new components pass) has
  // turned into background and goes too. (Not the lower bound: the footprint of a neuron found
  // recently at low SNR is still noisy, and a single bright pixel would make it look small.)
  std::vector<float> diag;
  for (int k = 0; k < K; ++k) diag.push_back(cc_(k, k));
  std::vector<float> sorted = diag;
  const float med = detail::median_of(sorted);
  for (int k = K - 1; k >= 0; --k) {
    const bool empty = values_[static_cast<std::size_t>(k)].maxCoeff() <= 0;
    const bool dead = diag[static_cast<std::size_t>(k)] < 1e-6f * med;
    const bool diffuse = !empty && detail::soma_size(values_[static_cast<std::size_t>(k)],
                                                     support_[static_cast<std::size_t>(k)].size(),
                                                     options_) == detail::SomaSize::kTooLarge;
    if (empty || dead || diffuse) {
      erase_component(k, -1);
      ++removed_last_;
    }
  }
}

void CnmfUpdater::merge_components() {
  merged_last_ = 0;
  const int K = model_.k();
  if (K < 2 || buf_count_ < 5) return;
  const Eigen::Index P = dense_.size();
  Eigen::SparseMatrix<float> a = detail::assemble(static_cast<int>(P), support_, values_);
  Eigen::MatrixXf overlap = detail::footprint_gram(a);
  Eigen::VectorXf norms(K);
  for (int k = 0; k < K; ++k) norms(k) = std::sqrt(std::max(overlap(k, k), 1e-20f));
  const Eigen::Index n = buf_count_;
  Eigen::MatrixXf tr = buffer_x_.topRows(K).leftCols(n);
  // Over the last `frames` frames of the activation history: the correlation of two
  // components' traces, and each one's activity in pixel units (trace sd x footprint norm).
  struct Pair {
    float corr = 0, act_i = 0, act_j = 0;
  };
  auto history = [&](int i, int j, std::uint64_t frames) {
    Pair r;
    const std::uint32_t L = static_cast<std::uint32_t>(std::min<std::uint64_t>(frames, hist_count_));
    const std::uint32_t cap = static_cast<std::uint32_t>(hist_x_.cols());
    double si = 0, sj = 0, sii = 0, sjj = 0, sij = 0;
    for (std::uint32_t q = 0; q < L; ++q) {
      const std::uint32_t col = (hist_pos_ + cap - 1 - q) % cap;
      const double a = hist_x_(i, col), b = hist_x_(j, col);
      si += a, sj += b, sii += a * a, sjj += b * b, sij += a * b;
    }
    if (L < 2) return r;
    const double vi = sii - si * si / L, vj = sjj - sj * sj / L;
    if (vi <= 0 || vj <= 0) return r;
    r.corr = static_cast<float>((sij - si * sj / L) / std::sqrt(vi * vj));
    r.act_i = static_cast<float>(std::sqrt(vi / L)) * norms(i);
    r.act_j = static_cast<float>(std::sqrt(vj / L)) * norms(j);
    return r;
  };
  constexpr std::uint64_t kMergeAgeBuffers = 5;
  // Overlapping footprints that are not near-duplicates (cosine below kSameShapeCos) merge only
  // when their traces also followed each other over all the frames both were tracked (up to the
  // activation history), not over the buffer alone: in a 2-s buffer one transient of one neuron,
  // part of whose light its overlapping neighbour takes, correlates the two. On hard movies
  // (256 x 256, 120 neurons at 1.1 radii, low SNR, motion; seeds 11-18) 20 such merges were
  // checked against the truth: 19 joined two different neurons (history correlation -0.29 to
  // 0.86, 16 of them below 0.7), the one right merge had 0.49. The pieces of large somata
  // (radius 8, auto radius) that merge had 0.77-0.81 or cosine >= 0.73. The history is noisier
  // than the buffer (silent stretches), hence a lower threshold than merge_threshold.
  constexpr float kSameShapeCos = 0.7f;
  constexpr float kOverlapHistoryCorr = 0.7f;
  const std::uint64_t kMergeAge = kMergeAgeBuffers * ring_n_;
  std::vector<char> gone(static_cast<std::size_t>(K), 0);
  std::vector<std::int64_t> into(static_cast<std::size_t>(K), -1);  // id of the absorber
  for (int i = 0; i < K; ++i) {
    for (int j = i + 1; j < K; ++j) {
      if (gone[static_cast<std::size_t>(i)] || gone[static_cast<std::size_t>(j)]) continue;
      // Overlapping footprints (cosine >= 0.3) with correlated traces over the buffer, and,
      // unless the shapes are near-duplicates, over the history too: one neuron. Footprints
      // that only touch (the rim of a soma larger than the support square, taken for a new
      // neuron when the detection's test missed it, beside that soma) merge
      // when their traces followed each other over all the frames both were tracked, at least
      // kMergeAgeBuffers buffers and at most the activation history: two neighbouring neurons
      // do not (in a radius-7 movie, the activity of adjacent true neurons correlated ≤ 0.51,
      // a soma and its rim 0.8-1.0), while over one buffer (2 s) a silent pair can look alike
      // or a rim and its soma unlike.
      const float fp_cos = overlap(i, j) / (norms(i) * norms(j));
      if (fp_cos <= 0.0f) continue;
      const bool touching = fp_cos < 0.3f;
      if (touching) {
        const std::uint64_t bi = born_[static_cast<std::size_t>(i)], bj = born_[static_cast<std::size_t>(j)];
        if (t_ - std::max(bi, bj) < kMergeAge) continue;  // the younger tracked too briefly
        const Pair h = history(i, j, t_ - std::max(bi, bj));
        if (h.corr < options_.merge_threshold) continue;
        // The younger one is the rim only if it is also the weaker; a neuron found next to a
        // known one that stayed silent since (whose trace then follows the newcomer's light on
        // the shared pixels) is the stronger, and the two are kept.
        if ((bi > bj && h.act_i > h.act_j) || (bj > bi && h.act_j > h.act_i)) continue;
      }
      Eigen::VectorXf ci = tr.row(i).transpose().array() - tr.row(i).mean();
      Eigen::VectorXf cj = tr.row(j).transpose().array() - tr.row(j).mean();
      const float den = ci.norm() * cj.norm();
      if (!touching && (den <= 0 || ci.dot(cj) / den < options_.merge_threshold)) continue;
      if (!touching && fp_cos < kSameShapeCos) {
        const std::uint64_t bi = born_[static_cast<std::size_t>(i)], bj = born_[static_cast<std::size_t>(j)];
        if (history(i, j, t_ - std::max(bi, bj)).corr < kOverlapHistoryCorr) continue;
      }
      // Merge j into i: footprint union weighted by each one's energy; statistics summed.
      const Support& si = support_[static_cast<std::size_t>(i)];
      const Support& sj = support_[static_cast<std::size_t>(j)];
      const float wi = std::sqrt(std::max(cc_(i, i), 0.0f)), wj = std::sqrt(std::max(cc_(j, j), 0.0f));
      Support uni;
      std::set_union(si.begin(), si.end(), sj.begin(), sj.end(), std::back_inserter(uni));
      Eigen::VectorXf v = Eigen::VectorXf::Zero(static_cast<Eigen::Index>(uni.size()));
      Eigen::VectorXf cy = Eigen::VectorXf::Zero(static_cast<Eigen::Index>(uni.size()));
      for (std::size_t q = 0, u = 0; q < si.size(); ++q) {
        while (uni[u] != si[q]) ++u;
        v(static_cast<Eigen::Index>(u)) += wi * values_[static_cast<std::size_t>(i)](static_cast<Eigen::Index>(q));
        cy(static_cast<Eigen::Index>(u)) += cy_[static_cast<std::size_t>(i)](static_cast<Eigen::Index>(q));
      }
      for (std::size_t q = 0, u = 0; q < sj.size(); ++q) {
        while (uni[u] != sj[q]) ++u;
        v(static_cast<Eigen::Index>(u)) += wj * values_[static_cast<std::size_t>(j)](static_cast<Eigen::Index>(q));
        cy(static_cast<Eigen::Index>(u)) += cy_[static_cast<std::size_t>(j)](static_cast<Eigen::Index>(q));
      }
      const float vn = v.norm() / std::max(wi + wj, 1e-12f);
      support_[static_cast<std::size_t>(i)] = std::move(uni);
      values_[static_cast<std::size_t>(i)] = v / std::max(wi + wj, 1e-12f);
      cy_[static_cast<std::size_t>(i)] = cy;
      (void)vn;
      // The merged trace is the sum; fold j's statistics into i's.
      cc_.row(i) += cc_.row(j);
      cc_.col(i) += cc_.col(j);
      hist_x_.row(i) += hist_x_.row(j);
      buffer_x_.row(i) += buffer_x_.row(j);
      gone[static_cast<std::size_t>(j)] = 1;
      into[static_cast<std::size_t>(j)] = static_cast<std::int64_t>(model_.ids[static_cast<std::size_t>(i)]);
      ++merged_last_;
    }
  }
  for (int k = K - 1; k >= 0; --k)
    if (gone[static_cast<std::size_t>(k)]) erase_component(k, into[static_cast<std::size_t>(k)]);
}

void CnmfUpdater::detect_new_components() {
  added_last_ = 0;
  patches_last_ = 0;
  const int K = model_.k();
  if (!options_.detect_new || buf_count_ < 10 || K >= options_.max_components) return;
  const int want = std::min(options_.max_new_per_update, options_.max_components - K);
  if (want <= 0) return;
  const int H = static_cast<int>(options_.height), W = static_cast<int>(options_.width);
  const int R = detail::support_radius(options_);
  const int half = 2 * R + ds_;
  const int side = 2 * half + 1;
  // Small frames: one patch, the whole frame.
  if (static_cast<Eigen::Index>(H) * W <= 16 * static_cast<Eigen::Index>(side) * side) {
    detect_in_patch(0, 0, H, W, want);
    x_.resize(static_cast<Eigen::Index>(support_.size()) + nb_);
    return;
  }
  // Screening: the residual of the block-averaged frames (hl x wl), spatially high-passed, and
  // each block's peak-to-noise ratio over the buffer; patches go around its local maxima.
  const Eigen::Index n = buf_count_;
  const std::uint32_t cap = ring_n_;
  const Eigen::Index pl = lowres_.rows();
  // Footprints block-averaged (pl x K), built column by column: each component's pixels are
  // summed into a block scratch, its few touched blocks emitted in order (setFromTriplets over
  // all K x support pixels sorted ~180k triplets, 2.4 ms at 500 neurons, 512 x 512).
  Eigen::SparseMatrix<float> alo(pl, K);
  {
    std::size_t nnz = 0;
    for (int k = 0; k < K; ++k) nnz += support_[static_cast<std::size_t>(k)].size();
    alo.reserve(static_cast<Eigen::Index>(nnz / static_cast<std::size_t>(std::max(1, ds_)) + static_cast<std::size_t>(K)));
    std::vector<Eigen::Index> touched;
    for (int k = 0; k < K; ++k) {
      const Support& sk = support_[static_cast<std::size_t>(k)];
      const Eigen::VectorXf& ak = values_[static_cast<std::size_t>(k)];
      touched.clear();
      for (std::size_t i = 0; i < sk.size(); ++i) {
        const float a = ak(static_cast<Eigen::Index>(i));
        if (a == 0) continue;
        const int py = sk[i] / W, px = sk[i] % W;
        const int by = py / ds_, bx = px / ds_;
        const float cnt = static_cast<float>(std::min(ds_, H - by * ds_) * std::min(ds_, W - bx * ds_));
        const Eigen::Index blk = static_cast<Eigen::Index>(by) * wl_ + bx;
        if (block_scratch_(blk) == 0) touched.push_back(blk);
        block_scratch_(blk) += a / cnt;
      }
      std::sort(touched.begin(), touched.end());
      alo.startVec(k);
      for (Eigen::Index blk : touched) {
        alo.insertBack(blk, k) = block_scratch_(blk);
        block_scratch_(blk) = 0;
      }
    }
    alo.finalize();
  }
  Eigen::MatrixXf blo = Eigen::MatrixXf::Zero(pl, nb_);
  for (int b = 0; b < nb_; ++b) {
    for (int yy = 0; yy < H; ++yy) {
      const int by = yy / ds_;
      const float* row = bg_.col(b).data() + static_cast<Eigen::Index>(yy) * W;
      float* dst = blo.col(b).data() + static_cast<Eigen::Index>(by) * wl_;
      for (int bx = 0, xx = 0; bx < wl_; ++bx) {
        float acc = 0;
        for (const int e = std::min(xx + ds_, W); xx < e; ++xx) acc += row[xx];
        dst[bx] += acc;
      }
    }
    for (int by = 0; by < hl_; ++by)
      for (int bx = 0; bx < wl_; ++bx)
        blo(static_cast<Eigen::Index>(by) * wl_ + bx, b) /=
            static_cast<float>(std::min(ds_, H - by * ds_) * std::min(ds_, W - bx * ds_));
  }
  Eigen::MatrixXf rl(pl, n), xk(K, n), fb(nb_, n);
  for (Eigen::Index q = 0; q < n; ++q) {
    const std::uint32_t col = (buf_pos_ + cap - static_cast<std::uint32_t>(n) + static_cast<std::uint32_t>(q)) % cap;
    rl.col(q) = lowres_.col(col);
    xk.col(q) = buffer_x_.col(col).head(K);
    fb.col(q) = buffer_x_.col(col).tail(nb_);
  }
  // Frames (then blocks of pixels) split over the update's threads in fixed blocks: each value
  // is computed as on one thread.
  const int threads = std::max(1, options_.update_threads);
  detail::parallel_blocks(threads, n, [&](Eigen::Index q0, Eigen::Index q1) {
    rl.middleCols(q0, q1 - q0).noalias() -= alo * xk.middleCols(q0, q1 - q0);
    for (Eigen::Index q = q0; q < q1; ++q)
      for (int b = 0; b < nb_; ++b) rl.col(q) -= fb(b, q) * blo.col(b);
    const int hp = std::max(1, static_cast<int>(std::lround(2 * options_.neuron_radius / ds_)));
    Eigen::VectorXf sm(pl), tmp(pl);
    for (Eigen::Index q = q0; q < q1; ++q) {
      detail::box_filter(rl.col(q).data(), sm.data(), tmp.data(), hl_, wl_, hp);
      rl.col(q) -= sm;
    }
  });
  Eigen::VectorXf score(pl);
  if (n <= detail::kLaneMaxN) {
    // 8 blocks at a time: their values of one frame are contiguous in rl.
    constexpr int L = detail::kLanes;
    detail::parallel_blocks(threads, (pl + L - 1) / L, [&](Eigen::Index g0, Eigen::Index g1) {
      std::vector<float> x(static_cast<std::size_t>(n) * L), work(static_cast<std::size_t>(detail::kLaneMaxN) * L);
      float med[L], noise[L], peak[L];
      for (Eigen::Index p0 = g0 * L; p0 < std::min(pl, g1 * L); p0 += L) {
        const int nl = static_cast<int>(std::min<Eigen::Index>(L, pl - p0));
        std::fill(peak, peak + L, -std::numeric_limits<float>::infinity());
        for (Eigen::Index q = 0; q < n; ++q) {
          const float* src = rl.col(q).data() + p0;
          float* dst = x.data() + q * L;
          for (int l = 0; l < L; ++l) {
            dst[l] = l < nl ? src[l] : 0.0f;
            peak[l] = std::max(peak[l], dst[l]);
          }
        }
        detail::median_and_noise8(x.data(), static_cast<int>(n), work.data(), med, noise);
        for (int l = 0; l < nl; ++l) score(p0 + l) = (peak[l] - med[l]) / std::max(noise[l], 1e-6f);
      }
    });
  } else {
    std::vector<float> tr(static_cast<std::size_t>(n)), scratch;
    Eigen::MatrixXf rt = rl.transpose();  // n x pl, small
    for (Eigen::Index p = 0; p < pl; ++p) {
      std::copy(rt.col(p).data(), rt.col(p).data() + n, tr.begin());
      const float noise = std::max(detail::diff_noise(tr, scratch), 1e-6f);
      const float med = detail::median_of(tr);
      score(p) = (rt.col(p).maxCoeff() - med) / noise;
    }
  }
  std::vector<Eigen::Index> cand;
  for (int by = 0; by < hl_; ++by)
    for (int bx = 0; bx < wl_; ++bx) {
      const Eigen::Index p = static_cast<Eigen::Index>(by) * wl_ + bx;
      if (score(p) < 0.5f * options_.min_pnr) continue;
      bool is_max = true;
      for (int yy = std::max(0, by - 1); yy <= std::min(hl_ - 1, by + 1) && is_max; ++yy)
        for (int xx = std::max(0, bx - 1); xx <= std::min(wl_ - 1, bx + 1); ++xx) {
          const Eigen::Index q = static_cast<Eigen::Index>(yy) * wl_ + xx;
          if (score(q) > score(p) || (score(q) == score(p) && q < p)) {
            is_max = false;
            break;
          }
        }
      if (is_max) cand.push_back(p);
    }
  std::stable_sort(cand.begin(), cand.end(), [&](Eigen::Index a, Eigen::Index b) { return score(a) > score(b); });
  std::vector<std::pair<int, int>> done;  // centres of searched patches
  int patches = 0;
  // A patch search costs ~2 ms at 512 x 512. Once the field's neurons are found, the screening
  // still ranks hundreds of residual maxima (noise, misfits of known neurons) and every update
  // searched 8 x want of them in vain (~80 ms, more than the rest of the update). So at most
  // 2 x want patches per search, and a spot whose search found nothing is skipped for the next
  // kRetryFrames frames (4 updates at the default cadence): the searches move down the ranking
  // instead of repeating the top. Unless its score has since grown kRetryGain-fold: a neuron
  // that fires for the first time where noise was searched in vain a few seconds before
  // (sparse firing) is not skipped.
  constexpr std::uint64_t kRetryFrames = 400;
  constexpr float kRetryGain = 2.0f;
  const int reach = (half - R) / ds_;  // blocks whose patch this one's search covers
  for (Eigen::Index p : cand) {
    if (added_last_ >= want || patches >= 2 * want) break;
    const std::uint64_t last = searched_empty_[static_cast<std::size_t>(p)];
    if (last != 0 && t_ - last <= kRetryFrames && score(p) < kRetryGain * searched_score_[static_cast<std::size_t>(p)])
      continue;
    const int cy = static_cast<int>(p / wl_) * ds_ + ds_ / 2, cx = static_cast<int>(p % wl_) * ds_ + ds_ / 2;
    bool covered = false;
    for (const auto& d : done)
      if (std::abs(d.first - cy) <= half - R && std::abs(d.second - cx) <= half - R) covered = true;
    if (covered) continue;
    const int ph = std::min(side, H), pw = std::min(side, W);
    const int y0 = std::clamp(cy - half, 0, H - ph), x0 = std::clamp(cx - half, 0, W - pw);
    done.emplace_back(cy, cx);
    ++patches;
    const int before = added_last_;
    detect_in_patch(y0, x0, ph, pw, want - added_last_);
    if (added_last_ == before) {
      const int by = static_cast<int>(p / wl_), bx = static_cast<int>(p % wl_);
      for (int yy = std::max(0, by - reach); yy <= std::min(hl_ - 1, by + reach); ++yy)
        for (int xx = std::max(0, bx - reach); xx <= std::min(wl_ - 1, bx + reach); ++xx) {
          const std::size_t q = static_cast<std::size_t>(yy) * wl_ + xx;
          searched_empty_[q] = t_;
          searched_score_[q] = score(static_cast<Eigen::Index>(q));
        }
    }
  }
  patches_last_ = patches;
  x_.resize(static_cast<Eigen::Index>(support_.size()) + nb_);
}

float CnmfUpdater::motion_r2(const Eigen::VectorXf& c, const std::vector<std::uint32_t>& cols) const {
  // Least squares of c on [dy, dx, |dy|, |dx|, 1] over the buffer: the fraction of its variance
  // the shifts explain (0 when they do not vary).
  const Eigen::Index n = c.size();
  Eigen::MatrixXf a(n, 5);
  for (Eigen::Index q = 0; q < n; ++q) {
    const float dy = motion_(0, cols[static_cast<std::size_t>(q)]), dx = motion_(1, cols[static_cast<std::size_t>(q)]);
    a.row(q) << dy, dx, std::fabs(dy), std::fabs(dx), 1.0f;
  }
  const float var = (c.array() - c.mean()).square().sum();
  if (var <= 0) return 0.0f;
  const Eigen::VectorXf beta = a.colPivHouseholderQr().solve(c);
  const float res = (c - a * beta).squaredNorm();
  return std::clamp(1.0f - res / var, 0.0f, 1.0f);
}

bool CnmfUpdater::in_motion_strip(std::int32_t p, const std::vector<std::uint32_t>& cols) const {
  float largest = 0;
  for (std::uint32_t c : cols) largest = std::max({largest, std::fabs(motion_(0, c)), std::fabs(motion_(1, c))});
  const int H = static_cast<int>(options_.height), W = static_cast<int>(options_.width);
  const int py = p / W, px = p % W;
  return std::min({py, px, H - 1 - py, W - 1 - px}) <= static_cast<int>(std::ceil(largest));
}

void CnmfUpdater::detect_in_patch(int y0, int x0, int ph, int pw, int want) {
  const int W = static_cast<int>(options_.width);
  const Eigen::Index np = static_cast<Eigen::Index>(ph) * pw;
  const Eigen::Index n = buf_count_;
  const std::uint32_t cap = ring_n_;
  auto ring_col = [&](Eigen::Index q) {
    return (buf_pos_ + cap - static_cast<std::uint32_t>(n) + static_cast<std::uint32_t>(q)) % cap;
  };
  auto to_full = [&](std::int32_t lp) { return (y0 + lp / pw) * W + x0 + lp % pw; };
  // The residual on the patch, in time order: y − b f − A c with the current shapes. Ring
  // columns and activations are looked up once, not per pixel (a modulo per pixel and frame was
  // most of this loop's time).
  std::vector<std::uint32_t> cols(static_cast<std::size_t>(n));
  for (Eigen::Index q = 0; q < n; ++q) cols[static_cast<std::size_t>(q)] = ring_col(q);
  Eigen::MatrixXf raw(np, n);
  // The known footprints' pixels inside the patch (patch index, value), component by component
  // in order, found once: per frame, each frame's column of `raw` (10 KB) is then updated in
  // cache. Looping frames innermost per pixel wrote a different cache line on every step
  // (columns are np floats apart): with the background pass, ~1.3 ms of a ~4 ms patch search.
  struct PatchPixel {
    std::int32_t lp;
    float a;
  };
  std::vector<PatchPixel> pix;
  std::vector<std::pair<std::int32_t, std::size_t>> comp;  // component, end of its pixels in pix
  for (std::size_t k = 0; k < support_.size(); ++k) {
    const Support& sk = support_[k];
    if (sk.empty() || sk.back() / W < y0 || sk.front() / W >= y0 + ph) continue;
    const Eigen::VectorXf& ak = values_[k];
    const std::size_t before = pix.size();
    for (std::size_t i = 0; i < sk.size(); ++i) {
      const int py = sk[i] / W - y0, px = sk[i] % W - x0;
      if (py < 0 || py >= ph || px < 0 || px >= pw || ak(static_cast<Eigen::Index>(i)) == 0) continue;
      pix.push_back({py * pw + px, ak(static_cast<Eigen::Index>(i))});
    }
    if (pix.size() > before) comp.emplace_back(static_cast<std::int32_t>(k), pix.size());
  }
  // Frames in fixed blocks over the update's threads. Each value is the same sum as before and
  // on any number of threads: y, minus the background components in order, minus the
  // footprints in component order.
  detail::parallel_blocks(std::max(1, options_.update_threads), n, [&](Eigen::Index q0, Eigen::Index q1) {
    for (Eigen::Index q = q0; q < q1; ++q) {
      const std::uint32_t col = cols[static_cast<std::size_t>(q)];
      float* dst = raw.col(q).data();
      for (int yy = 0; yy < ph; ++yy) {
        const Eigen::Index p0 = static_cast<Eigen::Index>(y0 + yy) * W + x0;
        const float* src = frame_ptr_[col] + p0;
        float* d = dst + static_cast<Eigen::Index>(yy) * pw;
        for (int xx = 0; xx < pw; ++xx) d[xx] = src[xx];
        for (int b = 0; b < nb_; ++b) {
          const float* bgp = bg_.col(b).data() + p0;
          const float f = buffer_x_(buffer_x_.rows() - nb_ + b, col);
          for (int xx = 0; xx < pw; ++xx) d[xx] -= bgp[xx] * f;
        }
      }
      std::size_t i = 0;
      for (const auto& [k, end] : comp) {
        const float c = buffer_x_(k, col);
        for (; i < end; ++i) dst[pix[i].lp] -= pix[i].a * c;
      }
    }
  });
  Eigen::MatrixXf work = raw;
  CnmfOptions po = options_;
  po.height = static_cast<std::uint32_t>(ph);
  po.init_threads = std::max(1, options_.update_threads);
  po.width = static_cast<std::uint32_t>(pw);
  po.seed_border_px = 0;  // the initialisation's rule; the search tests shifts instead (motion_r2)
  std::vector<detail::Seed> seeds = detail::find_seeds(work, raw, po, 4 * want);
  const float g = model_.g.size() ? model_.g(0) : detail::default_g(options_.frame_rate_hz, options_.decay_time_s);
  int added = 0;
  for (detail::Seed& sd : seeds) {
    if (added >= want) break;
    // Trace over the buffer by regressing the residual on the footprint.
    Eigen::VectorXf c(n);
    for (Eigen::Index q = 0; q < n; ++q) {
      float acc = 0;
      for (std::size_t i = 0; i < sd.support.size(); ++i) acc += sd.values(static_cast<Eigen::Index>(i)) * raw(sd.support[i], q);
      c(q) = acc;
    }
    const float noise = std::max(estimate_noise_sd(c), 1e-6f);
    const float base = detail::trace_baseline(c, noise);
    const float snr = (c.maxCoeff() - base) / noise;
    // Against what the activity adds over the buffer (relative): the residual's static part
    // (misfit edges of known neighbours, the resting level of the unexplained) is not this
    // neuron's footprint. Hard seeds 11-18 mean F1 0.931 -> 0.947, seed 17 0.882 -> 0.913.
    const float rval = detail::space_correlation(raw, sd.support, sd.values, c, base, noise, true);
    if (snr < options_.min_snr || rval < std::max(options_.min_space_corr, options_.new_space_corr)) continue;
    if (detail::soma_size(sd.values, sd.support.size(), options_) != detail::SomaSize::kPlausible) continue;
    Support full(sd.support.size());
    for (std::size_t i = 0; i < sd.support.size(); ++i) full[i] = to_full(sd.support[i]);
    // A border spot that registration's edge copies light: its peak in the strip, its trace
    // following the shifts (0 without them: set_motion).
    Eigen::Index peak = 0;
    sd.values.maxCoeff(&peak);
    if (in_motion_strip(full[static_cast<std::size_t>(peak)], cols) && motion_r2(c, cols) > kMotionR2) continue;
    // Not a duplicate of an existing component: footprint cosine on the shared pixels.
    bool dup = false;
    for (std::size_t i = 0; i < full.size(); ++i) dense_(full[i]) = sd.values(static_cast<Eigen::Index>(i));
    // A misfit of an existing neuron looks like a new one in the residual; it overlaps or
    // borders that neuron and its trace follows that neuron's activity. Those are left to the
    // shape update. Neighbours: components with footprint pixels within a soma radius of the
    // candidate's.
    Eigen::VectorXf cc_centered = c.array() - c.mean();
    int by0 = std::numeric_limits<int>::max(), by1 = -1, bx0 = std::numeric_limits<int>::max(), bx1 = -1;
    for (std::size_t i = 0; i < full.size(); ++i) {
      if (sd.values(static_cast<Eigen::Index>(i)) <= 0) continue;
      by0 = std::min(by0, full[i] / W), by1 = std::max(by1, full[i] / W);
      bx0 = std::min(bx0, full[i] % W), bx1 = std::max(bx1, full[i] % W);
    }
    const int margin = std::max(1, static_cast<int>(std::ceil(options_.neuron_radius)));
    by0 -= margin, by1 += margin, bx0 -= margin, bx1 += margin;
    const float c_sd = cc_centered.norm();
    for (int k = 0; k < static_cast<int>(support_.size()) && !dup; ++k) {
      const Support& sk = support_[static_cast<std::size_t>(k)];
      if (sk.empty() || sk.back() / W < by0 || sk.front() / W > by1) continue;
      const Eigen::VectorXf& ak = values_[static_cast<std::size_t>(k)];
      float dot = 0;
      int near = 0;
      for (std::size_t i = 0; i < sk.size(); ++i) {
        const float a = ak(static_cast<Eigen::Index>(i));
        dot += dense_(sk[i]) * a;
        if (a > 0) {
          const int py = sk[i] / W, px = sk[i] % W;
          near += py >= by0 && py <= by1 && px >= bx0 && px <= bx1;
        }
      }
      const float nk = ak.norm();
      if (nk <= 0 || (dot <= 0 && near == 0)) continue;
      if (dot / nk > 0.7f) {
        dup = true;
        break;
      }
      if (k < buffer_x_.rows()) {
        Eigen::VectorXf tk(n);
        for (Eigen::Index q = 0; q < n; ++q) tk(q) = buffer_x_(k, ring_col(q));
        tk.array() -= tk.mean();
        const float den = tk.norm() * cc_centered.norm();
        const float corr = den > 0 ? tk.dot(cc_centered) / den : 0.0f;
        // Overlapping k and following it: k's misfit, unless the candidate's activity over the
        // buffer is the stronger (in pixel units: its footprint is unit-norm). A neuron the
        // model lacks lights a silent overlapping k, whose trace then follows it at a fraction
        // of its brightness; that neuron was refused here. Sparse firing (0.1 Hz, 256 x 256,
        // 100 neurons): recall 0.81 -> 0.85; over 13 other movies F1 equal or higher (hard
        // two-photon seeds 0.951 -> 0.964, GCaMP6s-like decay 0.975 -> 0.985) except on somata
        // of radius 7 and 8 with neuron_radius 5 (0.990 / 0.980 -> 0.976 / 0.971).
        const float k_sd = nk * tk.norm();
        if (dot / nk > 0.1f && corr > 0.5f && c_sd < k_sd) dup = true;
        // Near k (within a soma radius), following it closely, and weaker over the buffer than
        // k's own activity (in pixel units: the candidate's footprint is unit-norm): the rim of
        // a soma larger than k's support square, whose light k cannot take. An unmodelled
        // neuron next to k also lends k its activity while k is silent, but there k's share is
        // the weaker one, so that neuron is still taken. With the merging of touching
        // components: two-photon somata of radius 7 and 8 with neuron_radius 5 (256 x 256, 100
        // neurons, 2,000 frames), precision 0.75 / 0.73 -> 0.98 / 0.97, recall 1.0 / 1.0 ->
        // 1.0 / 0.99.
        if (corr > options_.merge_threshold && c_sd < k_sd) dup = true;
      }
    }
    for (std::size_t i = 0; i < full.size(); ++i) dense_(full[i]) = 0;
    if (dup) continue;
    // Accept: statistics from the buffer; its activations join the buffer, so later residuals
    // (and patches) no longer see it. YC from the data, like every other component's: the shape
    // update takes the neighbours' and the background's share off itself (through CC). From the
    // residual y - b f - A c, as before, that share came off twice: the next update emptied most
    // new footprints, they were removed and found again (5,300 added and 5,161 removed in an
    // hour at 512 x 512, each taking a result row).
    Eigen::VectorXf cpos = (c.array() - base).cwiseMax(0.0f);
    const int k = static_cast<int>(support_.size());
    Eigen::VectorXf cy = Eigen::VectorXf::Zero(static_cast<Eigen::Index>(sd.support.size()));
    for (Eigen::Index q = 0; q < n; ++q) {
      const float* y = frame_ptr_[cols[static_cast<std::size_t>(q)]];
      for (std::size_t i = 0; i < full.size(); ++i) cy(static_cast<Eigen::Index>(i)) += cpos(q) * y[full[i]];
    }
    // CC gets a new row/column (inserted before the background block).
    Eigen::MatrixXf cc(k + 1 + nb_, k + 1 + nb_);
    cc.setZero();
    cc.topLeftCorner(k, k) = cc_.topLeftCorner(k, k);
    if (nb_ > 0) {
      cc.bottomRightCorner(nb_, nb_) = cc_.bottomRightCorner(nb_, nb_);
      cc.topRightCorner(k, nb_) = cc_.topRightCorner(k, nb_);
      cc.bottomLeftCorner(nb_, k) = cc_.bottomLeftCorner(nb_, k);
    }
    Eigen::MatrixXf bx(k + 1 + nb_, buffer_x_.cols());
    bx.topRows(k) = buffer_x_.topRows(k);
    bx.row(k).setZero();
    if (nb_ > 0) bx.bottomRows(nb_) = buffer_x_.bottomRows(nb_);
    for (Eigen::Index q = 0; q < n; ++q) bx(k, ring_col(q)) = cpos(q);
    Eigen::VectorXf cross = bx * bx.row(k).transpose();
    cc.row(k) = cross.transpose();
    cc.col(k) = cross;
    cc_.swap(cc);
    buffer_x_.swap(bx);
    hist_x_.conservativeResize(k + 1, Eigen::NoChange);
    hist_x_.row(k).setZero();  // merge_components reads only the frames since it joined
    support_.push_back(std::move(full));
    born_.push_back(t_);
    values_.push_back(sd.values);
    cy_.push_back(cy);
    auto push = [](Eigen::VectorXf& v, float x) {
      v.conservativeResize(v.size() + 1);
      v(v.size() - 1) = x;
    };
    if (model_.g2.size() == model_.g.size()) push(model_.g2, model_.g2.size() ? model_.g2(0) : 0.0f);
    push(model_.g, g);
    push(model_.s_min, options_.s_min_sigma * noise);
    push(model_.baseline, 0.0f);
    push(model_.noise, noise);
    model_.ids.push_back(model_.next_id++);
    model_.slots.push_back(model_.next_slot < options_.result_rows ? model_.next_slot++ : -1);
    if (model_.slots.back() >= 0) {
      Born b;
      b.slot = model_.slots.back();
      b.trace.assign(cpos.data(), cpos.data() + cpos.size());
      b.base = base;
      b.g = model_.g(model_.g.size() - 1);
      b.g2 = model_.g2.size() == model_.g.size() ? model_.g2(model_.g2.size() - 1) : 0.0f;
      b.s_min = model_.s_min(model_.s_min.size() - 1);
      b.noise = noise;
      born_last_.push_back(std::move(b));
    }
    for (Eigen::Index q = 0; q < n; ++q)
      for (std::size_t i = 0; i < sd.support.size(); ++i)
        raw(sd.support[i], q) -= cpos(q) * sd.values(static_cast<Eigen::Index>(i));
    ++added;
    ++added_last_;
  }
}

void CnmfUpdater::rebuild_model() {
  model_.footprints = detail::assemble(static_cast<int>(dense_.size()), support_, values_);
  if (model_.ring.active()) model_.ring.b0 = ring_mean_;  // constant baseline follows the data
  model_.background = bg_;
  model_.finalize();
}

void CnmfUpdater::search() {
  retired_last_.clear();
  born_last_.clear();
  merged_last_ = removed_last_ = 0;
  fold();  // the buffer's activations are in the statistics before a new row joins them
  detect_new_components();
  if (added_last_ > 0) components_changed();  // add() maps and removes the ring with the new K
}

void CnmfUpdater::components_changed() {
  rebuild_model();
  prepare_runs();  // supports changed (added, merged, removed components); nothing is pending
  untracked_.clear();  // supports, shapes and background changed: rebuilt when next needed
  untracked_built_.clear();
}

void CnmfUpdater::update(CnmfModel& out) {
  retired_last_.clear();
  born_last_.clear();
  fold();
  if (options_.update_footprints) update_shapes();
  remove_components();
  merge_components();
  detect_new_components();
  components_changed();
  out = model_;
}

}  // namespace rtnmf::nmf
