#include "plugins/emg/synergy_stage.h"

#include <immintrin.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <stdexcept>

#include "engine/io/h5.h"
#include "engine/nmf/metrics.h"
#include "engine/runtime/realtime.h"
#include "engine/runtime/registry.h"
#include "plugins/emg/channel_names.h"

namespace rtnmf::emg {
namespace {

// Synergies stored by an earlier session: /synergies (result files) or /W (`rtnmf fit`), or a
// path given as file.h5:/dataset.
Eigen::MatrixXf read_synergies(const std::string& spec, int channels, const std::string& where) {
  std::string file = spec, path;
  if (const std::size_t c = spec.find(".h5:"); c != std::string::npos) {
    file = spec.substr(0, c + 3);
    path = spec.substr(c + 4);
  }
  try {
    io::h5::File f = io::h5::File::open(file);
    if (path.empty()) path = f.exists("/synergies") ? "/synergies" : "/W";
    Eigen::MatrixXf w = f.read_matrix<float>(path);
    if (w.rows() != channels && w.cols() == channels) w.transposeInPlace();
    if (w.rows() != channels) {
      throw ConfigError(where + f.where(path) + ": synergies of " + std::to_string(w.rows()) +
                        " channels for a stream of " + std::to_string(channels));
    }
    if (w.cols() == 0 || w.minCoeff() < 0 || !w.allFinite()) {
      throw ConfigError(where + f.where(path) + ": synergies must be non-negative and finite");
    }
    return w;
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception& e) {
    throw ConfigError(where + e.what());
  }
}

}  // namespace

SynergyStage::SynergyStage(const v1::StageConfig& config) : Stage(config) {}

SynergyStage::~SynergyStage() { do_stop(); }

void SynergyStage::set_model(SynergyModelState& model, const Eigen::MatrixXf& w) const {
  const int k = static_cast<int>(w.cols());
  model.w.setZero();
  model.w.leftCols(k) = w;
  model.gram.setZero();
  model.gram.topLeftCorner(k, k).noalias() = w.transpose() * w;
  for (int j = k; j < k_max_; ++j) model.gram(j, j) = 1.0f;
  model.k = k;
}

StreamSpec SynergyStage::do_start(const StreamSpec& in, const StageContext& ctx) {
  do_stop();  // a restarted stage must not leave its previous slow path running
  if (in.is_imaging()) throw ConfigError(where() + "needs channels x samples blocks");
  const v1::NmfStageParams& p = config().nmf();
  channels_ = static_cast<int>(in.rows);
  max_cols_ = static_cast<int>(in.cols);
  rate_hz_ = in.sample_rate_hz;
  stream_id_ = ctx.stream_id;
  mode_ = ctx.mode;
  lag_ = std::max<std::uint32_t>(1, ctx.model_lag_frames);
  update_every_ = p.update_every() ? p.update_every() : 50;
  forgetting_ = p.forgetting() > 0 ? p.forgetting() : 0.999;
  if (forgetting_ > 1.0) throw ConfigError(where() + "nmf.forgetting must lie in (0, 1]");
  frozen_.store(p.frozen());
  outbox_ = ctx.outbox;
  if (p.normalize().empty() || p.normalize() == "l2") {
    norm_ = nmf::Normalization::kL2;
  } else if (p.normalize() == "l1") {
    norm_ = nmf::Normalization::kL1;
  } else {
    throw ConfigError(where() + "nmf.normalize must be l1 or l2, got '" + p.normalize() + "'");
  }
  if (!(rate_hz_ > 0)) throw ConfigError(where() + "input has no sample rate");
  channel_names_ = detail::channel_names(stream_id_, channels_);

  const int rank = static_cast<int>(p.rank());
  if (rank > channels_) {
    throw ConfigError(where() + "nmf.rank " + std::to_string(rank) + " exceeds the " +
                      std::to_string(channels_) + " channels");
  }
  Eigen::MatrixXf fixed;
  if (!p.calibration_file().empty())
    fixed = read_synergies(p.calibration_file(), channels_, where());
  has_previous_ = !p.init_from().empty();
  if (has_previous_) previous_ = read_synergies(p.init_from(), channels_, where());
  k_max_ = p.max_components() ? static_cast<int>(p.max_components()) : std::min(channels_, 8);
  k_max_ = std::max({k_max_, rank, static_cast<int>(fixed.cols()),
                     has_previous_ ? static_cast<int>(previous_.cols()) : 0});
  k_max_ = std::min(k_max_, channels_);

  cal_options_ = CalibrationOptions{};
  cal_options_.rank = rank;
  cal_options_.max_rank = k_max_;
  cal_options_.vaf_threshold = p.vaf_threshold() > 0 ? p.vaf_threshold() : 0.9;
  if (p.vaf_gain() != 0) cal_options_.vaf_gain = std::max(0.0, p.vaf_gain());
  cal_options_.normalize = norm_;
  cal_options_.seed = p.seed();
  const double cal_s = p.calibration_s() > 0 ? p.calibration_s() : 10.0;
  cal_samples_ = fixed.size() > 0 ? 0 : std::max<std::int64_t>(1, std::llround(cal_s * rate_hz_));

  // Fast path state.
  nmf::NnlsOptions no;
  no.method = nmf::NnlsMethod::kBpp;  // exact; dense, correlated synergies stall HALS
  no.l1 = static_cast<float>(p.l1_h());
  no.l2 = static_cast<float>(p.l2_h());
  no.max_iter = p.max_nnls_iter() ? static_cast<int>(p.max_nnls_iter()) : 50;
  solver_ = nmf::NnlsSolver(k_max_, no);
  x_.resize(channels_);
  b_.resize(k_max_);
  gh_.resize(k_max_);
  h_ = Eigen::VectorXf::Zero(k_max_);
  frame_ = 0;
  seen_version_ = ~std::uint64_t{0};
  const double vaf_s = p.vaf_window_s() > 0 ? p.vaf_window_s() : 5.0;
  const std::int64_t vaf_n = std::max<std::int64_t>(1, std::llround(vaf_s * rate_hz_));
  vaf_res_.assign(vaf_n, 0.0);
  vaf_energy_.assign(vaf_n, 0.0);
  vaf_pos_ = vaf_count_ = 0;
  vaf_res_sum_ = vaf_energy_sum_ = 0;

  // Ring: enough for L + update_every frames of samples (see the deadlock note in slow_loop).
  ring_capacity_ = static_cast<std::uint64_t>(lag_ + update_every_ + 4) *
                   static_cast<std::uint64_t>(std::max(1, max_cols_));
  ring_frame_.assign(ring_capacity_, 0);
  ring_x_.assign(ring_capacity_ * channels_, 0.0f);
  ring_h_.assign(ring_capacity_ * k_max_, 0.0f);
  ring_head_ = ring_tail_ = frames_done_ = 0;

  // Slow path state.
  cal_x_.resize(channels_, cal_samples_);
  cal_count_ = 0;
  calibrated_ = false;
  pending_samples_ = 0;
  SynergyModelState initial;
  initial.w = Eigen::MatrixXf::Zero(channels_, k_max_);
  initial.gram = Eigen::MatrixXf::Identity(k_max_, k_max_);
  if (fixed.size() > 0) {
    normalize_columns(fixed, norm_);
    set_model(initial, fixed);
    w_work_ = fixed;
    updater_.init(w_work_, forgetting_, norm_);
    calibrated_ = true;
    k_ = initial.k;
  }
  try {
    exchange_.init(initial, mode_, lag_, update_every_);
  } catch (const std::exception& e) {
    throw ConfigError(where() + e.what());
  }
  stop_ = false;
  slow_cpus_ = ctx.slow_cpus;
  slow_ = std::thread([this] { slow_loop(); });

  StreamSpec out = in;
  out.rows = static_cast<std::uint32_t>(k_max_);
  out.cols = static_cast<std::uint32_t>(max_cols_);
  if (out.lanes.empty()) out.lanes.emplace_back();
  out.lanes[0].name = "values";
  out.lanes[0].size = std::max(out.lanes[0].size, out.rows * out.cols);
  out.lanes[0].dataset = "/activations";  // K × T at the envelope rate (unused rows trimmed)
  out.lanes[0].component_major = true;
  // Sliding-window VAF after each envelope sample: one value per output column, T × 1 in the
  // result file (T = the columns of /activations).
  vaf_lane_ = out.add_lane("vaf", static_cast<std::uint32_t>(std::max(1, max_cols_)));
  out.lanes[vaf_lane_].dataset = "/vaf";
  out.lanes[vaf_lane_].component_major = false;
  out.lanes[vaf_lane_].column_width = 1;
  return out;
}

void SynergyStage::do_process(Frame& frame) {
  const std::uint64_t n = frame_++;
  const SynergyModelState& model = exchange_.acquire(n);
  if (exchange_.version() != seen_version_) {
    // A new model: start the activations from zero (its components may have changed).
    seen_version_ = exchange_.version();
    h_.setZero();
    k_.store(model.k, std::memory_order_relaxed);
  }
  const int cols = static_cast<int>(frame.header.cols);
  const int nc = channels_;
  const int km = k_max_;  // ring slots hold K_max activations
  float* data = frame.data();
  float* vaf_out =
      vaf_lane_ > 0 && frame.lane_count() > vaf_lane_ ? frame.lane(vaf_lane_).data : nullptr;
  for (int j = 0; j < cols; ++j) {
    // Copy x first: output column j overlaps input column j in place (km <= nc).
    x_ = Eigen::Map<const Eigen::VectorXf>(data + static_cast<std::ptrdiff_t>(j) * nc, nc);
    double res = 0, energy = x_.squaredNorm();
    if (model.k > 0) {
      b_.noalias() = model.w.transpose() * x_;
      solver_.solve_gram(model.gram, b_, h_, true);
      // ‖x − W h‖² = ‖x‖² − 2 hᵀb + hᵀ G h (unused entries of h are 0).
      gh_.noalias() = model.gram * h_;
      res = std::max(0.0, energy - 2.0 * h_.dot(b_) + static_cast<double>(h_.dot(gh_)));
    } else {
      h_.setZero();
      res = energy;
    }
    // Hand (x, h) to the slow path. Replay never drops: wait for room.
    const std::uint64_t head = ring_head_.load(std::memory_order_relaxed);
    bool room = head - ring_tail_.load(std::memory_order_acquire) < ring_capacity_;
    if (!room && mode_ == RunMode::kReplay) {
      while (!room && !exchange_.stopping()) {
        _mm_pause();
        room = head - ring_tail_.load(std::memory_order_acquire) < ring_capacity_;
      }
    }
    if (room) {
      const std::uint64_t slot = head % ring_capacity_;
      ring_frame_[slot] = n;
      std::copy(x_.data(), x_.data() + nc, ring_x_.data() + slot * nc);
      std::copy(h_.data(), h_.data() + km, ring_h_.data() + slot * km);
      ring_head_.store(head + 1, std::memory_order_release);
    } else {
      dropped_.fetch_add(1, std::memory_order_relaxed);
    }
    if (model.k > 0) {
      vaf_res_sum_ += res - vaf_res_[vaf_pos_];
      vaf_energy_sum_ += energy - vaf_energy_[vaf_pos_];
      vaf_res_[vaf_pos_] = res;
      vaf_energy_[vaf_pos_] = energy;
      vaf_pos_ = (vaf_pos_ + 1) % static_cast<std::int64_t>(vaf_res_.size());
      if (vaf_count_ < static_cast<std::int64_t>(vaf_res_.size())) ++vaf_count_;
      if (vaf_energy_sum_ > 0) {
        vaf_.store(1.0 - vaf_res_sum_ / vaf_energy_sum_, std::memory_order_relaxed);
      }
    }
    if (vaf_out) vaf_out[j] = static_cast<float>(vaf_.load(std::memory_order_relaxed));
    // Output: K × cols, packed (K <= K_max <= channels, so column j never overtakes input j+1).
    std::copy(h_.data(), h_.data() + model.k, data + static_cast<std::ptrdiff_t>(j) * model.k);
  }
  frame.set_shape(static_cast<std::uint32_t>(model.k), static_cast<std::uint32_t>(cols));
  frames_done_.store(n + 1, std::memory_order_release);
}

bool SynergyStage::wait_for_frames(std::uint64_t count) {
  int spins = 0;
  while (frames_done_.load(std::memory_order_acquire) < count) {
    if (stop_.load(std::memory_order_acquire) || exchange_.stopping()) {
      // stop() comes after the fast path's last frame, which may have landed between the load
      // above and this one: look again, or the tail update of a replay would depend on timing.
      return frames_done_.load(std::memory_order_acquire) >= count;
    }
    if (++spins < 2000) {
      _mm_pause();
    } else if (spins < 4000) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  return true;
}

void SynergyStage::run_calibration(SynergyModelState& model) {
  cal_options_.previous = has_previous_ ? &previous_ : nullptr;
  calibration_ = calibrate_synergies(cal_x_.leftCols(cal_count_), cal_options_);
  w_work_ = calibration_.synergies;
  const Eigen::MatrixXf xc = cal_x_.leftCols(cal_count_);
  updater_.init(w_work_, forgetting_, norm_, &xc, &calibration_.activations);
  set_model(model, w_work_);
  init_cosine_.store(calibration_.mean_matched_cosine, std::memory_order_relaxed);
  calibrated_ = true;
}

void SynergyStage::slow_loop() {
  pin_current_thread(slow_cpus_);  // off the realtime CPUs, if the pipeline reserved some
  // Schedule (frame indices only, so replays repeat it exactly): after frame t with
  // is_update_frame(t), fold every sample of frames <= t, then publish a model computed from
  // them. Replay: the fast path waits at t + L for it, and the ring holds L + update_every
  // frames, so neither side can block the other for good.
  std::uint64_t t = update_every_ - 1;
  // Lower this thread's priority so that calibration and W updates yield the core to the
  // processing thread on a loaded machine (Linux: nice applies per thread). Best effort.
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);
  try {
    while (wait_for_frames(t + 1)) {
      const std::uint64_t head = ring_head_.load(std::memory_order_acquire);
      std::uint64_t tail = ring_tail_.load(std::memory_order_relaxed);
      while (tail < head) {
        const std::uint64_t slot = tail % ring_capacity_;
        if (ring_frame_[slot] > t) break;
        const float* x = ring_x_.data() + slot * channels_;
        if (!calibrated_) {
          if (cal_count_ < cal_samples_) {
            std::copy(x, x + channels_, cal_x_.col(cal_count_).data());
            ++cal_count_;
          }
        } else {
          updater_.accumulate(x, ring_h_.data() + slot * k_max_);
          ++pending_samples_;
        }
        ++tail;
      }
      ring_tail_.store(tail, std::memory_order_release);

      SynergyModelState& next = exchange_.back();
      next = exchange_.latest();
      bool changed = false;
      if (!calibrated_ && cal_count_ >= cal_samples_) {
        run_calibration(next);
        changed = true;
      } else if (calibrated_ && !frozen_.load(std::memory_order_relaxed) && pending_samples_ > 0) {
        updater_.update(w_work_, 1);
        set_model(next, w_work_);
        pending_samples_ = 0;
        changed = true;
        updates_.fetch_add(1, std::memory_order_relaxed);
      }
      if (!exchange_.publish(t)) break;
      // Snapshots for `model/<stream>` and control get_model: after calibration, then about
      // every 20 updates (they are copies, made here on the slow path).
      if (changed && (updates_.load(std::memory_order_relaxed) % 20 == 0)) record_snapshot(t);
      t += update_every_;
    }
  } catch (const std::exception& e) {
    // A failed calibration leaves the model uncalibrated (activations stay 0) and is reported.
    slow_error_ = e.what();
    while (!stop_.load() && !exchange_.stopping()) {
      if (!wait_for_frames(t + 1)) break;
      SynergyModelState& next = exchange_.back();
      next = exchange_.latest();
      if (!exchange_.publish(t)) break;
      t += update_every_;
      // Keep draining so the fast path never waits on a full ring.
      ring_tail_.store(ring_head_.load(std::memory_order_acquire), std::memory_order_release);
    }
  }
}

void SynergyStage::do_stop() {
  stop_.store(true, std::memory_order_release);
  exchange_.stop();
  if (slow_.joinable()) slow_.join();
}

Eigen::MatrixXf SynergyStage::synergies() const {
  const int k = k_.load(std::memory_order_relaxed);
  if (w_work_.cols() == 0 || k == 0) return Eigen::MatrixXf(channels_, 0);
  return w_work_.leftCols(std::min<Eigen::Index>(k, w_work_.cols()));
}

void SynergyStage::record_snapshot(std::uint64_t computed_from) {
  v1::ModelSnapshot snap;
  snap.set_stream_id(stream_id_);
  snap.set_version(updates_.load(std::memory_order_relaxed) + 1);
  snap.set_computed_from_seq(computed_from);
  snap.set_effective_seq(computed_from + lag_);
  const int k = static_cast<int>(w_work_.cols());
  snap.set_rows(static_cast<std::uint32_t>(channels_));
  snap.set_components(static_cast<std::uint32_t>(k));
  snap.add_indptr(0);
  for (int j = 0; j < k; ++j) {
    for (int c = 0; c < channels_; ++c) {
      snap.add_data(w_work_(c, j));
      snap.add_indices(static_cast<std::uint32_t>(c));
    }
    snap.add_indptr(static_cast<std::uint32_t>((j + 1) * channels_));
    snap.add_component_names("synergy" + std::to_string(j + 1));
  }
  for (const std::string& n : channel_names_) snap.add_row_names(n);
  (*snap.mutable_scalars())["vaf"] = vaf_.load(std::memory_order_relaxed);
  (*snap.mutable_scalars())["forgetting"] = forgetting_;
  (*snap.mutable_scalars())["frozen"] = frozen_.load() ? 1.0 : 0.0;
  if (has_previous_) (*snap.mutable_scalars())["init_matched_cosine"] = init_cosine_.load();
  if (outbox_) outbox_->post_model(snap);
  std::lock_guard<std::mutex> lock(snapshot_mutex_);
  snapshot_ = std::move(snap);
}

bool SynergyStage::set_frozen(bool frozen) {
  frozen_.store(frozen, std::memory_order_relaxed);
  return true;
}

bool SynergyStage::snapshot(v1::ModelSnapshot* out) const {
  std::lock_guard<std::mutex> lock(snapshot_mutex_);
  if (snapshot_.components() == 0) return false;
  *out = snapshot_;
  return true;
}

void SynergyStage::report(std::vector<std::pair<std::string, double>>& scalars) const {
  scalars.emplace_back("vaf", vaf_.load(std::memory_order_relaxed));
  scalars.emplace_back("components", k_.load(std::memory_order_relaxed));
  scalars.emplace_back("model_updates",
                       static_cast<double>(updates_.load(std::memory_order_relaxed)));
  scalars.emplace_back("samples_dropped",
                       static_cast<double>(dropped_.load(std::memory_order_relaxed)));
  if (has_previous_)
    scalars.emplace_back("init_matched_cosine", init_cosine_.load(std::memory_order_relaxed));
}

void SynergyStage::write_synergy_results(io::h5::File& f) {
  std::string names;
  for (const std::string& n : channel_names_) names += (names.empty() ? "" : ",") + n;
  const Eigen::MatrixXf w = synergies();
  f.write_matrix("/synergies", w);
  f.set_attr("/synergies", "channel_names", names);
  f.set_attr("/synergies", "normalize",
             std::string(norm_ == nmf::Normalization::kL1 ? "l1" : "l2"));
  f.set_attr("/synergies", "rank", static_cast<std::int64_t>(w.cols()));
  f.set_attr("/synergies", "forgetting", forgetting_);
  f.set_attr("/synergies", "frozen", static_cast<std::int64_t>(frozen_.load()));
  f.set_attr("/synergies", "model_updates", static_cast<std::int64_t>(updates_.load()));
  f.set_attr("/synergies", "sample_rate_hz", rate_hz_);
  f.set_attr("/synergies", "vaf_final_window", vaf_.load());
  if (!slow_error_.empty()) f.set_attr("/synergies", "error", slow_error_);
  if (calibration_.synergies.size() > 0) {
    f.write_matrix("/calibration/synergies", calibration_.synergies);
    Eigen::VectorXd v = Eigen::Map<const Eigen::VectorXd>(calibration_.vaf_by_rank.data(),
                                                          calibration_.vaf_by_rank.size());
    f.write_vector("/calibration/vaf_by_rank", v);
    if (!calibration_.cophenetic_by_rank.empty()) {
      Eigen::VectorXd c = Eigen::Map<const Eigen::VectorXd>(calibration_.cophenetic_by_rank.data(),
                                                            calibration_.cophenetic_by_rank.size());
      f.write_vector("/calibration/cophenetic_by_rank", c);
      f.set_attr("/calibration", "rank_by_threshold_alone",
                 static_cast<std::int64_t>(calibration_.rank_by_threshold));
    }
    f.set_attr("/calibration", "vaf_threshold", cal_options_.vaf_threshold);
    f.set_attr("/calibration", "vaf_gain", cal_options_.vaf_gain);
    f.set_attr("/calibration", "vaf", calibration_.vaf);
    f.set_attr("/calibration", "samples", static_cast<std::int64_t>(cal_count_));
  }
  if (has_previous_) {
    f.write_matrix("/init/synergies", previous_);
    if (!calibration_.matched_cosine.empty()) {
      Eigen::VectorXd c = Eigen::Map<const Eigen::VectorXd>(calibration_.matched_cosine.data(),
                                                            calibration_.matched_cosine.size());
      f.write_vector("/init/matched_cosine", c);
      f.set_attr("/init", "mean_matched_cosine", calibration_.mean_matched_cosine);
    }
    if (w.cols() > 0) {
      const nmf::FactorMatch m = nmf::match_factors(previous_, w);
      f.set_attr("/init", "final_mean_matched_cosine", m.mean_similarity);
    }
  }
}

RTNMF_REGISTER_STAGE("online_synergies",
                     "synergies / assemblies: calibration NMF (rank by VAF), NNLS activations, "
                     "online W with forgetting or frozen",
                     SynergyStage);

}  // namespace rtnmf::emg
