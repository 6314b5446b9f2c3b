// Online NMF (Mairal et al. 2010). See online_nmf.h.
#include "engine/nmf/online_nmf.h"

#include "engine/nmf/batch_nmf.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>

namespace rtnmf::nmf {
namespace {

// Runs fn(block, begin, end) on `threads` contiguous blocks of [0, n) (block sizes a multiple of
// `align` except the last), one block per thread through detail::parallel_blocks; one block when
// `work` (multiply-adds) is below `min_work`. Blocks depend only on n, threads, align and work,
// so every reduction order is fixed for a thread count and shape. Spawns threads per call (slow
// path only).
template <typename Fn>
void run_blocks(int threads, Eigen::Index n, Eigen::Index align, double work, double min_work,
                Fn&& fn) {
  Eigen::Index chunk = n;
  if (threads > 1 && n > align && work >= min_work) {
    chunk = (n + threads - 1) / threads;
    chunk = (chunk + align - 1) / align * align;
  }
  if (chunk >= n) {
    fn(0, Eigen::Index{0}, n);
    return;
  }
  const Eigen::Index blocks = (n + chunk - 1) / chunk;
  detail::parallel_blocks(static_cast<int>(blocks), blocks, [&](Eigen::Index p0, Eigen::Index p1) {
    for (Eigen::Index p = p0; p < p1; ++p)
      fn(static_cast<int>(p), p * chunk, std::min(n, (p + 1) * chunk));
  });
}

}  // namespace

OnlineNmf::OnlineNmf(Eigen::Index features, Eigen::Index k, const OnlineNmfOptions& options)
    : options_(options),
      w_(Eigen::MatrixXf::Zero(features, k)),
      a_(Eigen::MatrixXf::Zero(k, k)),
      b_(Eigen::MatrixXf::Zero(features, k)),
      scratch_(Eigen::VectorXf::Zero(features)),
      solver_(k, options.activations) {
  if (features < 1 || k < 1)
    throw std::invalid_argument("OnlineNmf: features and rank must be at least 1");
  if (!(options.forgetting > 0.f && options.forgetting <= 1.f))
    throw std::invalid_argument("OnlineNmf: forgetting must be in (0, 1]");
  if (options.threads < 1) throw std::invalid_argument("OnlineNmf: threads must be at least 1");
  if (!(options.prune_w >= 0.f && options.prune_w < 1.f))
    throw std::invalid_argument("OnlineNmf: prune_w must be in [0, 1)");
  for (int t = 1; t < options.threads; ++t) helper_solvers_.emplace_back(k, options.activations);
}

void OnlineNmf::initialize_random(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  for (Eigen::Index j = 0; j < w_.cols(); ++j) {
    for (Eigen::Index i = 0; i < w_.rows(); ++i) w_(i, j) = u(rng);
    w_.col(j) /= w_.col(j).norm();
  }
  reset_statistics();
  refresh_gram();
}

double OnlineNmf::initialize_from_data(const Eigen::Ref<const Eigen::MatrixXf>& x,
                                       int iterations, std::uint64_t seed) {
  if (x.rows() != w_.rows())
    throw std::invalid_argument("OnlineNmf::initialize_from_data: X has " +
                                std::to_string(x.rows()) + " rows, expected " +
                                std::to_string(w_.rows()));
  if (x.cols() < 1) throw std::invalid_argument("OnlineNmf::initialize_from_data: X is empty");
  if (iterations < 1)
    throw std::invalid_argument("OnlineNmf::initialize_from_data: iterations must be >= 1");
  if (options_.prune_w == 0.f) return initialize_by_batch_fit(x, iterations, seed);
  // Sparse start: HALS rounds on the online model's own code path from a seeded random H (not
  // W), so the first W step builds W from X Hᵀ and prunes it: W is sparse from round 0 on and no
  // round pays for a dense random W (its Wᵀ X, Gram and BCD sweep cost ~0.3 s at 65,536 × 200,
  // K 100), while a batch fit stays dense throughout. H moves by one coordinate sweep per round,
  // as in batch HALS: solving it exactly against an early W gives each sample a few
  // near-arbitrary components and the fit stalls (65,536 × 400, K 100, 10 rounds: relative
  // error 0.46 against 0.15).
  const Eigen::Index kk = w_.cols();
  Eigen::MatrixXf h(kk, x.cols());
  {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.f, 1.f);
    for (Eigen::Index j = 0; j < h.cols(); ++j)
      for (Eigen::Index i = 0; i < kk; ++i) h(i, j) = std::abs(normal(rng));
  }
  // Inside the rounds: one HALS sweep for H; no unit-ball cap (capping a column mid-sweep when
  // H's scale wants it longer breaks the W–H balance HALS relies on: 10 rounds, 0.48 with the
  // cap; the scale is fixed after each round instead, H, A and B rescaled); every column pruned
  // (the first W, built from a random H, mixes many footprints; whether the data give sparse
  // columns is judged on the whole W after round 0).
  const NnlsOptions saved = options_.activations;
  NnlsOptions one_sweep = saved;
  one_sweep.method = NnlsMethod::kHals;
  one_sweep.max_iter = 1;
  const bool unit_ball = options_.unit_ball;
  auto set_round_mode = [&](bool on) {
    solver_.set_options(on ? one_sweep : saved);
    for (NnlsSolver& s : helper_solvers_) s.set_options(on ? one_sweep : saved);
    options_.unit_ball = on ? false : unit_ball;
    force_prune_ = on;
  };
  set_round_mode(true);
  w_.setZero();
  refresh_gram();
  for (int it = 0; it < iterations; ++it) {
    if (it > 0) {
      dictionary_transpose_times(x, batch_wtx_);
      solve_batch(h);
    }
    // The statistics of this round's H replace the last round's (accumulate_batch assigns when
    // samples_ = 0; no need to clear B first).
    samples_ = 0;
    accumulate_batch(x, h);
    bcd_sweeps();
    // Unit ℓ2 columns; H rescaled so that W H stays the same fit, and A and B with it after the
    // last round (earlier rounds' statistics are replaced anyway).
    const bool last = it + 1 == iterations;
    for (Eigen::Index k = 0; k < kk; ++k) {
      float n;
      if (sparse_) {
        auto& values = support_values_[static_cast<size_t>(k)];
        n = std::sqrt(std::inner_product(values.begin(), values.end(), values.begin(), 0.f));
        if (!(n > 0.f) || n == 1.f) continue;
        const auto& rows = support_rows_[static_cast<size_t>(k)];
        for (size_t p = 0; p < rows.size(); ++p) {
          values[p] /= n;
          w_(rows[p], k) = values[p];
        }
      } else {
        n = w_.col(k).norm();
        if (!(n > 0.f) || n == 1.f) continue;
        w_.col(k) /= n;
      }
      h.row(k) *= n;
      if (last) {
        b_.col(k) *= n;
        a_.row(k) *= n;
        a_.col(k) *= n;
      }
    }
    refresh_gram(true);
    if (it == 0 && density_ > static_cast<double>(options_.prune_max_density)) {
      // The data do not give sparse columns (synergies, not footprints): the batch HALS start,
      // which generalises better there (512 × 20,000, K 20, 80 start samples: final error 0.099
      // against 0.150 from these rounds without pruning).
      set_round_mode(false);
      return initialize_by_batch_fit(x, iterations, seed);
    }
  }
  set_round_mode(false);
  since_update_ = 0;
  refresh_gram(true);  // the solver's copy of W (fast path), skipped inside the rounds
  // ‖X − W H‖² = ‖X‖² − 2 Σ W∘B + Σ (WᵀW)∘A with B = X Hᵀ, A = H Hᵀ: no extra product.
  const double xx = x.cast<double>().squaredNorm();
  const double wb = (w_.cast<double>().array() * b_.cast<double>().array()).sum();
  const double ga = (solver_.gram().cast<double>().array() * a_.cast<double>().array()).sum();
  const double r2 = std::max(0.0, xx - 2.0 * wb + ga);
  return xx > 0 ? std::sqrt(r2 / xx) : 0.0;
}

double OnlineNmf::initialize_by_batch_fit(const Eigen::Ref<const Eigen::MatrixXf>& x,
                                          int iterations, std::uint64_t seed) {
  BatchNmfOptions o;
  o.rank = w_.cols();
  o.init = NmfInit::kRandom;
  o.seed = seed;
  o.max_iter = iterations;
  o.max_inner_sweeps = 1;
  o.threads = options_.threads;
  o.normalize = Normalization::kL2;
  NmfResult r = fit_nmf(x, o);
  w_ = r.w;
  reset_statistics();
  accumulate_batch(x, r.h);
  refresh_gram();
  return r.relative_error;
}

void OnlineNmf::set_dictionary(const Eigen::Ref<const Eigen::MatrixXf>& w) {
  if (w.rows() != w_.rows())
    throw std::invalid_argument("OnlineNmf::set_dictionary: W has " + std::to_string(w.rows()) +
                                " rows, expected " + std::to_string(w_.rows()));
  if (w.cols() != w_.cols()) {
    a_.setZero(w.cols(), w.cols());
    b_.setZero(w.rows(), w.cols());
    samples_ = 0;
  }
  w_ = w;
  refresh_gram();
}

void OnlineNmf::set_model(const Eigen::Ref<const Eigen::MatrixXf>& w,
                          const Eigen::Ref<const Eigen::MatrixXf>& gram) {
  if (w.rows() != w_.rows() || w.cols() != w_.cols())
    throw std::invalid_argument("OnlineNmf::set_model: shape differs from the current model");
  w_ = w;
  solver_.set_dictionary(w_, gram);
  // The supports are rebuilt by the next slow-path call that needs them (not here: no allocation).
  supports_valid_ = false;
  sparse_ = false;
}

void OnlineNmf::rebuild_support(Eigen::Index k) {
  std::vector<int>& rows = support_rows_[static_cast<size_t>(k)];
  std::vector<float>& values = support_values_[static_cast<size_t>(k)];
  rows.clear();
  values.clear();
  const float* w = w_.col(k).data();
  for (Eigen::Index i = 0; i < w_.rows(); ++i) {
    if (w[i] != 0.f) {
      rows.push_back(static_cast<int>(i));
      values.push_back(w[i]);
    }
  }
}

void OnlineNmf::rebuild_supports() {
  const Eigen::Index nnz = (w_.array() != 0.f).count();
  density_ = static_cast<double>(nnz) / static_cast<double>(w_.size());
  sparse_ = density_ <= static_cast<double>(options_.sparse_max_density) &&
            options_.sparse_max_density > 0.f;
  if (sparse_) {
    support_rows_.resize(static_cast<size_t>(w_.cols()));
    support_values_.resize(static_cast<size_t>(w_.cols()));
    for (Eigen::Index k = 0; k < w_.cols(); ++k) rebuild_support(k);
  }
  supports_valid_ = true;
}

void OnlineNmf::refresh_gram(bool supports_current) {
  if (supports_current && supports_valid_ && sparse_) {
    // The BCD sweep kept every support up to date: the density from their sizes, no scan.
    size_t nnz = 0;
    for (const auto& r : support_rows_) nnz += r.size();
    density_ = static_cast<double>(nnz) / static_cast<double>(w_.size());
    sparse_ = density_ <= static_cast<double>(options_.sparse_max_density);
  } else {
    rebuild_supports();
  }
  if (!sparse_) {
    solver_.set_dictionary(w_);
    return;
  }
  // G = WᵀW from the supports: scatter column k into the (zeroed) scratch vector, dot it with
  // every column j ≥ k over j's support. K · nnz(W) / 2 multiply-adds instead of features · K².
  const Eigen::Index kk = w_.cols();
  sparse_gram_.resize(kk, kk);
  scratch_.setZero();
  float* t = scratch_.data();
  for (Eigen::Index k = 0; k < kk; ++k) {
    const auto& rk = support_rows_[static_cast<size_t>(k)];
    const auto& vk = support_values_[static_cast<size_t>(k)];
    for (size_t p = 0; p < rk.size(); ++p) t[rk[p]] = vk[p];
    for (Eigen::Index j = k; j < kk; ++j) {
      const auto& rj = support_rows_[static_cast<size_t>(j)];
      const auto& vj = support_values_[static_cast<size_t>(j)];
      float sum = 0.f;
      for (size_t p = 0; p < rj.size(); ++p) sum += vj[p] * t[rj[p]];
      sparse_gram_(k, j) = sum;
      sparse_gram_(j, k) = sum;
    }
    for (int r : rk) t[r] = 0.f;
  }
  // Inside initialize_from_data's rounds only the Gram is used (solve_gram); the solver's copy
  // of W (features × K, ~7 ms at 65,536 × 100) is made once at the end.
  if (force_prune_) {
    solver_.set_gram(sparse_gram_);
  } else {
    solver_.set_dictionary(w_, sparse_gram_);
  }
}

void OnlineNmf::dictionary_transpose_times(const Eigen::Ref<const Eigen::MatrixXf>& x,
                                           Eigen::MatrixXf& out) {
  if (!supports_valid_) rebuild_supports();
  out.resize(w_.cols(), x.cols());
  if (sparse_ && density_ <= static_cast<double>(options_.sparse_product_max_density)) {
    // The gathers of one column of X hit scattered lines (a 12 × 12 footprint on a 256-pixel-wide
    // image is 12 runs 1 KB apart) that the hardware prefetcher does not see coming: the lines
    // of the next column under any support are requested while this one is summed.
    prefetch_lines_.clear();
    line_seen_.assign(static_cast<size_t>(w_.rows() / 16 + 1), 0);
    for (const auto& rk : support_rows_)
      for (int r : rk) line_seen_[static_cast<size_t>(r >> 4)] = 1;
    for (size_t l = 0; l < line_seen_.size(); ++l)
      if (line_seen_[l]) prefetch_lines_.push_back(static_cast<int>(l) * 16);
    const double work = density_ * static_cast<double>(w_.size()) * static_cast<double>(x.cols());
    run_blocks(options_.threads, x.cols(), 1, work, options_.parallel_min_work,
               [&](int, Eigen::Index b, Eigen::Index e) {
      for (Eigen::Index j = b; j < e; ++j) {
        const float* xj = x.col(j).data();
        if (j + 1 < e) {
          const float* next = x.col(j + 1).data();
          for (int r : prefetch_lines_) __builtin_prefetch(next + r);
        }
        for (Eigen::Index k = 0; k < w_.cols(); ++k) {
          const auto& rk = support_rows_[static_cast<size_t>(k)];
          const auto& vk = support_values_[static_cast<size_t>(k)];
          float sum = 0.f;
          for (size_t p = 0; p < rk.size(); ++p) sum += vk[p] * xj[rk[p]];
          out(k, j) = sum;
        }
      }
    });
  } else {
    const double work = static_cast<double>(w_.size()) * static_cast<double>(x.cols());
    run_blocks(options_.threads, x.cols(), 8, work, options_.parallel_min_work,
               [&](int, Eigen::Index b, Eigen::Index e) {
      out.middleCols(b, e - b).noalias() = w_.transpose() * x.middleCols(b, e - b);
    });
  }
}

// Up to this rank the mini-batch activations run as one coordinate descent over the whole batch
// (solve_batch_cd). Measured on 64 × 200,000, K 6, mini-batches of 1,024: a per-sample BPP solve
// (the auto choice there) was ~60 % of the stream, ~250 ns a sample; a sweep over the batch costs
// K products of 1,024 × K, a few µs.
constexpr Eigen::Index kBatchCdMaxK = 32;

void OnlineNmf::solve_batch_cd(Eigen::Ref<Eigen::MatrixXf> h) {
  const NnlsOptions& o = solver_.options();
  const Eigen::MatrixXf& g = solver_.gram();
  const Eigen::Index n = h.cols(), K = h.rows();
  batch_ht_ = h.transpose().cwiseMax(0.f);
  batch_bt_ = batch_wtx_.leftCols(n).transpose();
  batch_grad_.resize(n);
  batch_next_.resize(n);
  batch_step_.resize(n);
  batch_size_.resize(n);
  const float tol2 = o.tol * o.tol;
  for (int sweep = 0; sweep < o.max_iter; ++sweep) {
    batch_step_.setZero();
    batch_size_.setZero();
    for (Eigen::Index k = 0; k < K; ++k) {
      auto hk = batch_ht_.col(k).array();
      const float d = g(k, k) + o.l2;
      if (!(d > 0.f)) {  // an all-zero dictionary column explains nothing
        hk.setZero();
        continue;
      }
      // ∂/∂h_k of 1/2 hᵀ(G + l2 I)h − bᵀh + l1 Σh, for every sample of the batch.
      batch_grad_.matrix().noalias() = batch_ht_ * g.col(k);
      batch_grad_ += o.l2 * hk - batch_bt_.col(k).array() + o.l1;
      batch_next_ = (hk - batch_grad_ / d).max(0.f);
      batch_step_ += d * (batch_next_ - hk).square();
      batch_size_ += d * batch_next_.square();
      hk = batch_next_;
    }
    if ((batch_step_ <= tol2 * batch_size_).all()) break;
  }
  h = batch_ht_.transpose();
}

void OnlineNmf::solve_batch(Eigen::Ref<Eigen::MatrixXf> h) {
  if (h.rows() <= kBatchCdMaxK) {
    solve_batch_cd(h);
    return;
  }
  for (NnlsSolver& s : helper_solvers_) s.set_gram(solver_.gram());
  // A few sweeps of K² each per column.
  const double work = 4.0 * static_cast<double>(h.rows() * h.rows() * h.cols());
  run_blocks(options_.threads, h.cols(), 1, work, options_.parallel_min_work,
             [&](int block, Eigen::Index b, Eigen::Index e) {
    NnlsSolver& s = block == 0 ? solver_ : helper_solvers_[static_cast<size_t>(block - 1)];
    for (Eigen::Index j = b; j < e; ++j) s.solve_gram(batch_wtx_.col(j), h.col(j), true);
  });
}

void OnlineNmf::reset_statistics() {
  a_.setZero();
  b_.setZero();
  samples_ = 0;
  since_update_ = 0;
}

NnlsResult OnlineNmf::activations(const Eigen::Ref<const Eigen::VectorXf>& x,
                                  Eigen::Ref<Eigen::VectorXf> h) {
  return solver_.solve(x, h, true);
}

float OnlineNmf::decay_for(std::int64_t t) const {
  float d = options_.forgetting;
  if (options_.warmup_power > 0.f && t > 1)
    d *= std::pow(1.f - 1.f / static_cast<float>(t), options_.warmup_power);
  return d;
}

void OnlineNmf::accumulate(const Eigen::Ref<const Eigen::VectorXf>& x,
                           const Eigen::Ref<const Eigen::VectorXf>& h) {
  const float lambda = decay_for(samples_ + 1);
  if (lambda != 1.f) {
    a_ *= lambda;
    b_ *= lambda;
  }
  a_.noalias() += h * h.transpose();
  b_.noalias() += x * h.transpose();
  ++samples_;
}

void OnlineNmf::accumulate_batch(const Eigen::Ref<const Eigen::MatrixXf>& x,
                                 const Eigen::Ref<const Eigen::MatrixXf>& h) {
  if (x.rows() != w_.rows() || h.rows() != w_.cols() || x.cols() != h.cols())
    throw std::invalid_argument("OnlineNmf::accumulate_batch: shapes of X and H do not match");
  float decay = std::pow(options_.forgetting, static_cast<float>(x.cols()));
  if (options_.warmup_power > 0.f && samples_ > 0) {
    // (1 − 1/t)^ρ over the batch's samples telescopes to (t0 / t1)^ρ.
    decay *= std::pow(static_cast<float>(samples_) / static_cast<float>(samples_ + x.cols()),
                      options_.warmup_power);
  }
  // No statistics yet (A = B = 0 whenever samples_ = 0): assign instead of adding, which saves
  // reading B (features × K) back.
  const bool first = samples_ == 0;
  if (first) {
    a_.noalias() = h * h.transpose();
  } else {
    if (decay != 1.f) a_ *= decay;
    a_.noalias() += h * h.transpose();
  }
  // B's rows in fixed blocks, one per thread: each row's sum is over the same samples.
  const double work = static_cast<double>(x.rows()) * static_cast<double>(x.cols() * h.rows());
  run_blocks(options_.threads, x.rows(), 64, work, options_.parallel_min_work,
             [&](int, Eigen::Index b, Eigen::Index e) {
    auto rows = b_.middleRows(b, e - b);
    if (first) {
      rows.noalias() = x.middleRows(b, e - b) * h.transpose();
      return;
    }
    if (decay != 1.f) rows *= decay;
    rows.noalias() += x.middleRows(b, e - b) * h.transpose();
  });
  samples_ += x.cols();
}

void OnlineNmf::update_dictionary() {
  since_update_ = 0;
  if (frozen_ || samples_ == 0) return;
  bcd_sweeps();
  refresh_gram(true);
}

void OnlineNmf::bcd_sweeps() {
  if (!supports_valid_) rebuild_supports();
  const float l1 = options_.l1_w, l2 = options_.l2_w;
  for (int sweep = 0; sweep < options_.dictionary_sweeps; ++sweep) {
    for (Eigen::Index k = 0; k < w_.cols(); ++k) {
      const float akk = a_(k, k);
      // A component without statistics yet keeps its initial column.
      if (!(akk > 1e-12f)) continue;
      // w_k ← max(0, (B_k − W A_k + A_kk w_k − l1) / (A_kk + l2))
      if (sparse_) {
        sparse_column_update(k, akk, l1, l2);
        continue;
      }
      scratch_.noalias() = w_ * a_.col(k);
      w_.col(k) = ((b_.col(k) - scratch_ + akk * w_.col(k)).array() - l1).max(0.f) / (akk + l2);
      if (options_.prune_w > 0.f) {
        const float cut = options_.prune_w * w_.col(k).maxCoeff();
        if (force_prune_ || (w_.col(k).array() >= cut).count() <= max_pruned_support())
          w_.col(k) = (w_.col(k).array() < cut).select(0.f, w_.col(k));
      }
      if (options_.unit_ball) {
        const float n = w_.col(k).norm();
        if (n > 1.f) w_.col(k) /= n;
      }
    }
  }
}

void OnlineNmf::sparse_column_update(Eigen::Index k, float akk, float l1, float l2) {
  // The dense step's arithmetic in three passes over the column: B_k − Σ_{j≠k} A_jk w_j over the
  // supports (nnz(W) instead of features × K), then the clamped value and its maximum, then the
  // prune cut, W's column and k's support together.
  const Eigen::Index m = w_.rows();
  float* t = scratch_.data();
  const float* bk = b_.col(k).data();
  std::copy(bk, bk + m, t);
  for (Eigen::Index j = 0; j < w_.cols(); ++j) {
    const float ajk = a_(j, k);
    if (j == k || ajk == 0.f) continue;
    const auto& rj = support_rows_[static_cast<size_t>(j)];
    const auto& vj = support_values_[static_cast<size_t>(j)];
    for (size_t p = 0; p < rj.size(); ++p) t[rj[p]] -= ajk * vj[p];
  }
  const float denom = akk + l2;
  // Eigen's packet max reduction (a scalar std::max loop is not vectorised without fast-math).
  scratch_.array() = (scratch_.array() - l1).max(0.f) / denom;
  const float top = scratch_.maxCoeff();
  float cut = options_.prune_w > 0.f ? options_.prune_w * top : 0.f;
  std::vector<int>& rows = support_rows_[static_cast<size_t>(k)];
  std::vector<float>& values = support_values_[static_cast<size_t>(k)];
  float* w = w_.col(k).data();
  // W's column is zero off its support: clear the old support, write the new one (no full-column
  // store). The prune is undone (cut 0, a second pass) when the column turns out not to be
  // footprint-like.
  for (int r : rows) w[r] = 0.f;
  const size_t max_kept = force_prune_ ? static_cast<size_t>(m)
                                       : static_cast<size_t>(max_pruned_support());
  float sq = 0.f;
  for (int pass = 0; pass < 2; ++pass) {
    rows.clear();
    values.clear();
    sq = 0.f;
    // 16 entries at a time, most of them below the cut (off every footprint): a branch-free
    // test per block, the scalar collection only where something is kept.
    const float keep = cut > 0.f ? cut : std::numeric_limits<float>::denorm_min();  // v > 0
    Eigen::Index i0 = 0;
    for (; i0 + 16 <= m; i0 += 16) {
      int any = 0;
      for (int q = 0; q < 16; ++q) any |= t[i0 + q] >= keep;
      if (!any) continue;
      for (Eigen::Index i = i0; i < i0 + 16; ++i) {
        if (t[i] >= keep) {
          rows.push_back(static_cast<int>(i));
          values.push_back(t[i]);
          sq += t[i] * t[i];
        }
      }
    }
    for (Eigen::Index i = i0; i < m; ++i) {
      if (t[i] >= keep) {
        rows.push_back(static_cast<int>(i));
        values.push_back(t[i]);
        sq += t[i] * t[i];
      }
    }
    if (cut == 0.f || rows.size() <= max_kept) break;
    cut = 0.f;
  }
  for (size_t p = 0; p < rows.size(); ++p) w[rows[p]] = values[p];
  if (options_.unit_ball && sq > 1.f) {
    const float n = std::sqrt(sq);
    for (size_t p = 0; p < rows.size(); ++p) {
      values[p] /= n;
      w[rows[p]] = values[p];
    }
  }
}

NnlsResult OnlineNmf::partial_fit(const Eigen::Ref<const Eigen::VectorXf>& x,
                                  Eigen::Ref<Eigen::VectorXf> h) {
  NnlsResult r = activations(x, h);
  accumulate(x, h);
  if (++since_update_ >= options_.update_every) update_dictionary();
  return r;
}

void OnlineNmf::partial_fit_batch(const Eigen::Ref<const Eigen::MatrixXf>& x,
                                  Eigen::Ref<Eigen::MatrixXf> h) {
  if (x.rows() != w_.rows() || h.rows() != w_.cols() || x.cols() != h.cols())
    throw std::invalid_argument("OnlineNmf::partial_fit_batch: shapes of X and H do not match");
  // One product for the whole batch instead of a matrix-vector product per sample.
  dictionary_transpose_times(x, batch_wtx_);
  solve_batch(h);
  accumulate_batch(x, h);
  update_dictionary();
}

Eigen::Index OnlineNmf::add_component(const Eigen::Ref<const Eigen::VectorXf>& w) {
  if (w.size() != w_.rows())
    throw std::invalid_argument("OnlineNmf::add_component: column has " +
                                std::to_string(w.size()) + " entries, expected " +
                                std::to_string(w_.rows()));
  const Eigen::Index k = w_.cols();
  w_.conservativeResize(Eigen::NoChange, k + 1);
  w_.col(k) = w.cwiseMax(0.f);
  b_.conservativeResize(Eigen::NoChange, k + 1);
  b_.col(k).setZero();
  a_.conservativeResize(k + 1, k + 1);
  a_.row(k).setZero();
  a_.col(k).setZero();
  refresh_gram();
  return k;
}

void OnlineNmf::retire_component(Eigen::Index k) {
  const Eigen::Index n = w_.cols();
  if (k < 0 || k >= n)
    throw std::invalid_argument("OnlineNmf::retire_component: no component " + std::to_string(k));
  if (n == 1) throw std::invalid_argument("OnlineNmf::retire_component: cannot retire the last");
  const Eigen::Index tail = n - k - 1;
  w_.middleCols(k, tail) = w_.rightCols(tail).eval();
  b_.middleCols(k, tail) = b_.rightCols(tail).eval();
  a_.middleCols(k, tail) = a_.rightCols(tail).eval();
  a_.middleRows(k, tail) = a_.bottomRows(tail).eval();
  w_.conservativeResize(Eigen::NoChange, n - 1);
  b_.conservativeResize(Eigen::NoChange, n - 1);
  a_.conservativeResize(n - 1, n - 1);
  refresh_gram();
}

}  // namespace rtnmf::nmf
