// Online CNMF slow path: sufficient statistics, shape updates, new components, merges, removals.
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "engine/nmf/cnmf.h"
#include "engine/nmf/cnmf_internal.h"

namespace rtnmf::nmf {

using detail::Support;

void CnmfUpdater::init(const CnmfOptions& options, const CnmfInitResult& init,
                       Eigen::Ref<const Eigen::MatrixXf> frames) {
  // One-photon ring model: the statistics see the frames with the ring background removed.
  const bool ring = init.model.ring.active();
  const Eigen::MatrixXf ring_free = ring ? detail::remove_ring_background(init.model, init.traces, frames) : Eigen::MatrixXf();
  Eigen::Ref<const Eigen::MatrixXf> y(ring ? Eigen::Ref<const Eigen::MatrixXf>(ring_free) : frames);
  if (ring) {
    ring_y_.resize(frames.rows());
    ring_x_.resize(frames.rows());
    ring_scratch_.resize(frames.rows());
    ring_mean_ = init.model.ring.b0;
  }
  options_ = options;
  model_ = init.model;
  nb_ = model_.nb();
  const int K = model_.k();
  const Eigen::Index P = static_cast<Eigen::Index>(options.height) * options.width;
  const Eigen::Index T = y.cols();
  lambda_ = options.forgetting_frames > 1 ? 1.0f - 1.0f / options.forgetting_frames : 1.0f;
  support_ = init.supports;
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
  for (int k = 0; k < K; ++k) {
    const Support& sk = support_[static_cast<std::size_t>(k)];
    Eigen::VectorXf v = Eigen::VectorXf::Zero(static_cast<Eigen::Index>(sk.size()));
    for (Eigen::Index t = 0; t < T; ++t) {
      const float c = xw(k, t);
      if (c == 0) continue;
      for (std::size_t i = 0; i < sk.size(); ++i) v(static_cast<Eigen::Index>(i)) += c * y(sk[i], t);
    }
    cy_[static_cast<std::size_t>(k)] = v;
  }
  cy_bg_ = nb_ > 0 ? Eigen::MatrixXf(y * xw.bottomRows(nb_).transpose()) : Eigen::MatrixXf(P, 0);
  // Residual buffer from the last frames of the initialisation.
  const std::uint32_t n = std::max<std::uint32_t>(10, options.residual_buffer);
  residual_ = Eigen::MatrixXf::Zero(P, n);
  buffer_x_ = Eigen::MatrixXf::Zero(K + nb_, n);
  buf_pos_ = 0;
  buf_count_ = 0;
  for (Eigen::Index t = std::max<Eigen::Index>(0, T - n); t < T; ++t) {
    residual_.col(buf_pos_) = y.col(t) - model_.footprints * x.col(t).head(K);
    if (nb_ > 0) residual_.col(buf_pos_).noalias() -= bg_ * x.col(t).tail(nb_);
    buffer_x_.col(buf_pos_) = x.col(t);
    buf_pos_ = (buf_pos_ + 1) % n;
    buf_count_ = std::min(buf_count_ + 1, n);
  }
  x_ = Eigen::VectorXf::Zero(K + nb_);
  dense_ = Eigen::VectorXf::Zero(P);
  t_ = static_cast<std::uint64_t>(T);
}

void CnmfUpdater::add_frame(const float* frame, Eigen::Ref<const Eigen::VectorXf> by_slot,
                            Eigen::Ref<const Eigen::VectorXf> background) {
  const int K = model_.k();
  const Eigen::Index P = static_cast<Eigen::Index>(options_.height) * options_.width;
  if (x_.size() != K + nb_) x_.resize(K + nb_);
  // Map the fast path's activations (its model's ids) onto ours; components it did not have
  // count as 0 for this frame.
  x_.setZero();
  for (int k = 0; k < K; ++k) {
    const std::int32_t slot = model_.slots[static_cast<std::size_t>(k)];
    if (slot >= 0 && slot < by_slot.size()) x_(k) = by_slot(slot);
  }
  if (model_.ring.active()) {  // one-photon: the frame without its ring background (cnmf.cc)
    detail::remove_ring_background_frame(model_, x_.head(K), frame, ring_y_.data(), ring_x_.data(),
                                         ring_scratch_.data());
    ring_mean_ = lambda_ * ring_mean_ + (1.0f - lambda_) * ring_x_;  // y − A c, for b0
    frame = ring_y_.data();
  }
  Eigen::Map<const Eigen::VectorXf> y(frame, P);
  if (nb_ > 0) x_.tail(nb_) = background.head(nb_);
  // Statistics with forgetting.
  cc_ *= lambda_;
  cc_.noalias() += x_ * x_.transpose();
  for (int k = 0; k < K; ++k) {
    Eigen::VectorXf& v = cy_[static_cast<std::size_t>(k)];
    const Support& sk = support_[static_cast<std::size_t>(k)];
    const float c = x_(k);
    if (c == 0) {
      v *= lambda_;
      continue;
    }
    for (std::size_t i = 0; i < sk.size(); ++i) {
      v(static_cast<Eigen::Index>(i)) = lambda_ * v(static_cast<Eigen::Index>(i)) + c * y(sk[i]);
    }
  }
  for (int b = 0; b < nb_; ++b) cy_bg_.col(b) = lambda_ * cy_bg_.col(b) + x_(K + b) * y;
  // Residual of this frame into the ring.
  auto r = residual_.col(buf_pos_);
  r = y;
  if (nb_ > 0) r.noalias() -= bg_ * x_.tail(nb_);
  for (int k = 0; k < K; ++k) {
    const float c = x_(k);
    if (c == 0) continue;
    const Support& sk = support_[static_cast<std::size_t>(k)];
    const Eigen::VectorXf& a = values_[static_cast<std::size_t>(k)];
    for (std::size_t i = 0; i < sk.size(); ++i) r(sk[i]) -= c * a(static_cast<Eigen::Index>(i));
  }
  if (buffer_x_.rows() != K + nb_) buffer_x_.conservativeResize(K + nb_, Eigen::NoChange);
  buffer_x_.col(buf_pos_) = x_;
  const std::uint32_t n = static_cast<std::uint32_t>(residual_.cols());
  buf_pos_ = (buf_pos_ + 1) % n;
  buf_count_ = std::min(buf_count_ + 1, n);
  ++t_;
}

void CnmfUpdater::update_shapes() {
  const int K = model_.k();
  if (K == 0 && nb_ == 0) return;
  detail::hals_shapes(support_, values_, bg_, cy_, cy_bg_, cc_, static_cast<int>(options_.height),
                      static_cast<int>(options_.width), 2 * options_.neuron_radius, 1);
  (void)K;
}

void CnmfUpdater::erase_component(int k) {
  const int K = model_.k();
  support_.erase(support_.begin() + k);
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
  // energy fell far below the typical component's.
  std::vector<float> diag;
  for (int k = 0; k < K; ++k) diag.push_back(cc_(k, k));
  std::vector<float> sorted = diag;
  const float med = detail::median_of(sorted);
  for (int k = K - 1; k >= 0; --k) {
    const bool empty = values_[static_cast<std::size_t>(k)].maxCoeff() <= 0;
    const bool dead = diag[static_cast<std::size_t>(k)] < 1e-6f * med;
    if (empty || dead) {
      erase_component(k);
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
  Eigen::MatrixXf overlap = Eigen::MatrixXf(Eigen::SparseMatrix<float>(a.transpose()) * a);
  Eigen::VectorXf norms(K);
  for (int k = 0; k < K; ++k) norms(k) = std::sqrt(std::max(overlap(k, k), 1e-20f));
  const Eigen::Index n = buf_count_;
  Eigen::MatrixXf tr = buffer_x_.topRows(K).leftCols(n);
  std::vector<char> gone(static_cast<std::size_t>(K), 0);
  for (int i = 0; i < K; ++i) {
    for (int j = i + 1; j < K; ++j) {
      if (gone[static_cast<std::size_t>(i)] || gone[static_cast<std::size_t>(j)]) continue;
      if (overlap(i, j) / (norms(i) * norms(j)) < 0.3f) continue;
      Eigen::VectorXf ci = tr.row(i).transpose().array() - tr.row(i).mean();
      Eigen::VectorXf cj = tr.row(j).transpose().array() - tr.row(j).mean();
      const float den = ci.norm() * cj.norm();
      if (den <= 0 || ci.dot(cj) / den < options_.merge_threshold) continue;
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
      buffer_x_.row(i) += buffer_x_.row(j);
      gone[static_cast<std::size_t>(j)] = 1;
      ++merged_last_;
    }
  }
  for (int k = K - 1; k >= 0; --k)
    if (gone[static_cast<std::size_t>(k)]) erase_component(k);
}

void CnmfUpdater::detect_new_components() {
  added_last_ = 0;
  const int K = model_.k();
  if (!options_.detect_new || buf_count_ < 10 || K >= options_.max_components) return;
  const Eigen::Index P = dense_.size();
  const Eigen::Index n = buf_count_;
  const std::uint32_t cap = static_cast<std::uint32_t>(residual_.cols());
  // The buffer in time order.
  Eigen::MatrixXf raw(P, n);
  for (Eigen::Index q = 0; q < n; ++q) {
    const std::uint32_t col = (buf_pos_ + cap - static_cast<std::uint32_t>(n) + static_cast<std::uint32_t>(q)) % cap;
    raw.col(q) = residual_.col(col);
  }
  Eigen::MatrixXf work = raw;
  const int want = std::min(options_.max_new_per_update, options_.max_components - K);
  if (want <= 0) return;
  std::vector<detail::Seed> seeds = detail::find_seeds(work, raw, options_, 4 * want);
  const float g = model_.g.size() ? model_.g(0) : detail::default_g(options_.frame_rate_hz, options_.decay_time_s);
  for (detail::Seed& sd : seeds) {
    if (added_last_ >= want) break;
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
    const float rval = detail::space_correlation(raw, sd.support, sd.values, c, base, noise);
    if (snr < options_.min_snr || rval < options_.min_space_corr) continue;
    // Not a duplicate of an existing component: footprint cosine on the shared pixels.
    bool dup = false;
    dense_.setZero();
    for (std::size_t i = 0; i < sd.support.size(); ++i) dense_(sd.support[i]) = sd.values(static_cast<Eigen::Index>(i));
    // A misfit of an existing neuron looks like a new one in the residual; it overlaps that
    // neuron and its trace follows that neuron's activity. Those are left to the shape update.
    Eigen::VectorXf cc_centered = c.array() - c.mean();
    for (int k = 0; k < static_cast<int>(support_.size()) && !dup; ++k) {
      const Support& sk = support_[static_cast<std::size_t>(k)];
      const Eigen::VectorXf& ak = values_[static_cast<std::size_t>(k)];
      float dot = 0;
      for (std::size_t i = 0; i < sk.size(); ++i) dot += dense_(sk[i]) * ak(static_cast<Eigen::Index>(i));
      const float nk = ak.norm();
      if (nk <= 0 || dot <= 0) continue;
      if (dot / nk > 0.7f) {
        dup = true;
        break;
      }
      if (k < buffer_x_.rows() && dot / nk > 0.1f) {
        Eigen::VectorXf tk(n);
        for (Eigen::Index q = 0; q < n; ++q) {
          const std::uint32_t col = (buf_pos_ + cap - static_cast<std::uint32_t>(n) + static_cast<std::uint32_t>(q)) % cap;
          tk(q) = buffer_x_(k, col);
        }
        tk.array() -= tk.mean();
        const float den = tk.norm() * cc_centered.norm();
        if (den > 0 && tk.dot(cc_centered) / den > 0.5f) dup = true;
      }
    }
    for (std::size_t i = 0; i < sd.support.size(); ++i) dense_(sd.support[i]) = 0;
    if (dup) continue;
    // Accept: statistics from the buffer (the residual stands in for the data), remove it from the
    // residual so it is not found again.
    Eigen::VectorXf cpos = (c.array() - base).cwiseMax(0.0f);
    const int k = static_cast<int>(support_.size());
    Eigen::VectorXf cy = Eigen::VectorXf::Zero(static_cast<Eigen::Index>(sd.support.size()));
    for (Eigen::Index q = 0; q < n; ++q)
      for (std::size_t i = 0; i < sd.support.size(); ++i) cy(static_cast<Eigen::Index>(i)) += cpos(q) * raw(sd.support[i], q);
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
    for (Eigen::Index q = 0; q < n; ++q) {
      const std::uint32_t col = (buf_pos_ + cap - static_cast<std::uint32_t>(n) + static_cast<std::uint32_t>(q)) % cap;
      bx(k, col) = cpos(q);
    }
    Eigen::VectorXf cross = bx * bx.row(k).transpose();
    cc.row(k) = cross.transpose();
    cc.col(k) = cross;
    cc_.swap(cc);
    buffer_x_.swap(bx);
    support_.push_back(sd.support);
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
    model_.slots.push_back(model_.next_slot < options_.max_components ? model_.next_slot++ : -1);
    for (Eigen::Index q = 0; q < n; ++q) {
      const std::uint32_t col = (buf_pos_ + cap - static_cast<std::uint32_t>(n) + static_cast<std::uint32_t>(q)) % cap;
      for (std::size_t i = 0; i < sd.support.size(); ++i) {
        residual_(sd.support[i], col) -= cpos(q) * sd.values(static_cast<Eigen::Index>(i));
        raw(sd.support[i], q) -= cpos(q) * sd.values(static_cast<Eigen::Index>(i));
      }
    }
    ++added_last_;
  }
  x_.resize(static_cast<Eigen::Index>(support_.size()) + nb_);
}

void CnmfUpdater::rebuild_model() {
  model_.footprints = detail::assemble(static_cast<int>(dense_.size()), support_, values_);
  if (model_.ring.active()) model_.ring.b0 = ring_mean_;  // constant baseline follows the data
  model_.background = bg_;
  model_.finalize();
}

void CnmfUpdater::update(CnmfModel& out) {
  if (options_.update_footprints) update_shapes();
  remove_components();
  merge_components();
  detect_new_components();
  rebuild_model();
  out = model_;
}

}  // namespace rtnmf::nmf
