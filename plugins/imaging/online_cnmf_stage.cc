#include "plugins/imaging/online_cnmf_stage.h"

#include <hdf5.h>
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <sstream>
#include <ctime>

#include "engine/io/h5.h"
#include "engine/io/movie_h5.h"
#include "engine/nmf/squares.h"
#include "engine/runtime/realtime.h"
#include "engine/runtime/registry.h"

namespace rtnmf::imaging {
namespace {

void backoff(int& spins) {
  if (++spins < 2000) {
    _mm_pause();
  } else {
    std::this_thread::yield();
  }
}

// The slow path's wait for frames: nothing waits on it within a frame, so after a short spin it
// sleeps instead of yielding in a loop (which keeps a core busy and, on a small machine, takes it
// from the fast path).
void idle_backoff(int& spins) {
  if (++spins < 2000) {
    _mm_pause();
  } else if (spins < 2100) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// Overwrites the block [0, rows) x [col0, col0 + cols) of a 2-d float dataset (rows x T) with
// a row-major buffer. Throws naming the dataset.
void write_block(io::h5::File& f, const std::string& path, const Eigen::MatrixXf& block,
                 std::uint64_t col0, std::uint64_t row0 = 0) {
  if (block.size() == 0 || !f.exists(path)) return;
  const io::h5::Dims d = f.dims(path);
  if (d.size() != 2 || row0 >= d[0]) return;
  const hsize_t rows = std::min<hsize_t>(d[0] - row0, static_cast<hsize_t>(block.rows()));
  if (col0 >= d[1]) return;
  const hsize_t cols = std::min<hsize_t>(d[1] - col0, static_cast<hsize_t>(block.cols()));
  if (rows == 0 || cols == 0) return;
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> buf =
      block.topLeftCorner(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  io::h5::Handle ds = f.open_dataset(path);
  hid_t space = H5Dget_space(ds.get());
  hsize_t start[2] = {row0, col0}, count[2] = {rows, cols};
  H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr);
  hid_t mem = H5Screate_simple(2, count, nullptr);
  const herr_t rc = H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, buf.data());
  H5Sclose(mem);
  H5Sclose(space);
  if (rc < 0) throw std::runtime_error(f.where(path) + ": cannot write the initialisation block");
}

}  // namespace

OnlineCnmfStage::OnlineCnmfStage(const v1::StageConfig& config) : Stage(config) {}

Eigen::SparseMatrix<float> OnlineCnmfStage::load_seeds(const std::string& path,
                                                       const std::string& stream_id) const {
  Eigen::SparseMatrix<float> a;
  std::int64_t h = 0, w = 0;
  try {
    const io::h5::File f = io::h5::File::open(path);
    // A multi-stream run writes its first stream's datasets under /<stream id>/.
    std::string group = "/footprints";
    if (!f.exists(group) && !stream_id.empty() && f.exists("/" + stream_id + "/footprints"))
      group = "/" + stream_id + "/footprints";
    a = io::read_csc(f, group);
    if (f.has_attr(group, "height") && f.has_attr(group, "width")) {
      h = f.attr_int64(group, "height");
      w = f.attr_int64(group, "width");
    }
  } catch (const std::exception& e) {
    throw ConfigError(where() + "init_from: " + e.what());
  }
  const bool shape_known = h > 0 && w > 0;
  if ((shape_known && (h != height_ || w != width_)) || a.rows() != static_cast<Eigen::Index>(pixels_)) {
    std::string theirs = std::to_string(a.rows()) + " pixels";
    if (shape_known) theirs = std::to_string(h) + "x" + std::to_string(w) + " frames";
    throw ConfigError(where() + "init_from " + path + ": footprints are for " + theirs +
                      ", this stream has " + std::to_string(height_) + "x" + std::to_string(width_));
  }
  if (a.nonZeros() == 0) throw ConfigError(where() + "init_from " + path + ": /footprints holds no footprint");
  return a;
}

OnlineCnmfStage::~OnlineCnmfStage() { do_stop(); }

StreamSpec OnlineCnmfStage::do_start(const StreamSpec& in, const StageContext& ctx) {
  if (!in.is_imaging()) throw ConfigError(where() + "needs an imaging stream (height x width)");
  const v1::ImagingStageParams& p = config().imaging();
  height_ = in.height;
  width_ = in.width;
  pixels_ = height_ * width_;
  rate_hz_ = in.sample_rate_hz > 0 ? in.sample_rate_hz : 30.0;
  options_ = nmf::CnmfOptions{};
  options_.height = height_;
  options_.width = width_;
  options_.frame_rate_hz = rate_hz_;
  if (p.neuron_radius() > 0) options_.neuron_radius = p.neuron_radius();
  options_.auto_radius = p.auto_radius();
  if (p.auto_radius_max() < 0) {
    std::ostringstream m;
    m << where() << "auto_radius_max must be >= 0 (0: a quarter of the shorter frame side), got " << p.auto_radius_max();
    throw ConfigError(m.str());
  }
  options_.auto_radius_max = p.auto_radius_max();
  if (p.background_components() > 0) options_.background_components = static_cast<int>(p.background_components());
  if (p.max_components() > 0) options_.max_components = static_cast<int>(p.max_components());
  if (p.result_rows() > 0) options_.result_rows = static_cast<int>(p.result_rows());
  if (p.min_pnr() > 0) options_.min_pnr = p.min_pnr();
  if (p.min_corr() > 0) options_.min_corr = p.min_corr();
  if (p.min_snr() > 0) options_.min_snr = p.min_snr();
  if (p.min_space_corr() > 0) options_.min_space_corr = p.min_space_corr();
  if (p.new_space_corr() > 0) options_.new_space_corr = p.new_space_corr();
  if (p.decay_time_s() > 0) options_.decay_time_s = static_cast<float>(p.decay_time_s());
  if (p.s_min_sigma() > 0) options_.s_min_sigma = p.s_min_sigma();
  if (p.merge_threshold() > 0) options_.merge_threshold = p.merge_threshold();
  if (p.residual_buffer() > 0) options_.residual_buffer = p.residual_buffer();
  if (p.fast_iterations() > 0) options_.fast_iterations = static_cast<int>(p.fast_iterations());
  // A negative ratio turns the outlier test off; 0 is the default.
  if (p.outlier_residual_ratio() < 0) {
    options_.outlier_residual_ratio = 0.0f;
  } else if (p.outlier_residual_ratio() > 0) {
    if (p.outlier_residual_ratio() <= 1) {
      char v[32];
      std::snprintf(v, sizeof v, "%g", static_cast<double>(p.outlier_residual_ratio()));
      throw ConfigError(where() + "outlier_residual_ratio " + v +
                        " is not above 1 (a multiple of the median residual; negative: off)");
    }
    options_.outlier_residual_ratio = p.outlier_residual_ratio();
  }
  if (p.ar_order() > 2) throw ConfigError(where() + "ar_order must be 1 or 2, not " + std::to_string(p.ar_order()));
  if (p.ar_order() > 0) options_.ar_order = static_cast<int>(p.ar_order());
  if (p.rise_time_s() > 0) options_.rise_time_s = static_cast<float>(p.rise_time_s());
  if (p.ring_background()) {
    options_.ring_radius = p.ring_radius() > 0 ? static_cast<int>(std::lround(p.ring_radius()))
                                               : nmf::default_ring_radius(options_.neuron_radius);
  }
  options_.detect_new = !p.no_new_components();
  seeds_ = Eigen::SparseMatrix<float>();
  if (!p.init_from().empty()) seeds_ = load_seeds(p.init_from(), ctx.stream_id);
  const double forget_s = p.forgetting_s() > 0 ? p.forgetting_s() : 100.0;
  options_.forgetting_frames = static_cast<float>(std::max(10.0, forget_s * rate_hz_));
  frozen_ = p.frozen();
  update_every_ = p.update_every() ? p.update_every() : 100;
  const std::uint32_t want = p.init_frames() ? p.init_frames() : 300;
  init_frames_ = std::max<std::uint32_t>(update_every_, (want + update_every_ - 1) / update_every_ * update_every_);
  mode_ = ctx.mode;
  defer_copy_ = ctx.frame_valid_until_after_frame;
  // The initialisation (~10 s of CPU at 512 x 512) on two threads when replaying with no CPU
  // reserved for the frame threads: then nothing paced waits on this core. Live, or with
  // --rt-cpus (the slow path then has the other CPUs only), one thread. Same result either way.
  options_.init_threads =
      mode_ == RunMode::kReplay && ctx.slow_cpus.empty() && std::thread::hardware_concurrency() >= 2 ? 2 : 1;
  // The model updates likewise: at --speed max the fast path waits for an update that is late
  // (an update takes ~55 ms at 512 x 512 inside the pipeline), so a second thread there is a gain.
  options_.update_threads = options_.init_threads;
  // Unset: an update takes effect when the next one starts (double-buffered models).
  lag_ = ctx.model_lag_frames ? ctx.model_lag_frames : update_every_;
  // The first model's lag: at least init_frames, and enough frames that the batch needs at most
  // kInitCoreShare of one core at the stream's frame rate. Its cost is ~1e-7 s of one core per
  // pixel and frame (7.8 s for 300 frames of 512 x 512 on the 2-core reference machine): with a
  // lag of init_frames it had to get 80 % of a core at 30 Hz, and any load beyond that made it
  // overrun and the paced fast path stall at the first model (1.46 s measured). Shape, rate and
  // config only, so replays stay bit-identical; small frames keep a lag of init_frames.
  constexpr double kInitSecondsPerPixelFrame = 1e-7;
  constexpr double kInitCoreShare = 0.4;
  // auto_radius runs the initialisation a second time when the data's somata are off the
  // configured radius (rare when it is set right): that run then fits in the same lag at 2 x
  // kInitCoreShare of a core (replays spread it over init_threads). Not sized for it: the lag,
  // and the ring of frames held until the first model (~first_lag MB at 512 x 512), would double
  // for every stream.
  const double init_s = kInitSecondsPerPixelFrame * static_cast<double>(pixels_) * init_frames_;
  const auto need = static_cast<std::uint32_t>(std::ceil(init_s * rate_hz_ / kInitCoreShare));
  first_lag_ = std::max({lag_, init_frames_, need});
  nb_ = options_.ring_radius > 0 ? 0 : options_.background_components;  // ring: no b f
  slots_ = static_cast<std::uint32_t>(options_.result_rows);
  if (options_.neuron_radius > nmf::largest_neuron_radius(height_, width_)) {
    throw ConfigError(where() + "neuron_radius " + std::to_string(options_.neuron_radius) +
                      " is too large for " + std::to_string(height_) + "x" + std::to_string(width_) +
                      " frames");
  }

  nmf::CnmfModel empty;
  empty.height = height_;
  empty.width = width_;
  try {
    exchange_.init(empty, mode_, lag_, update_every_, init_frames_ - 1, first_lag_);
  } catch (const std::exception& e) {
    throw ConfigError(where() + e.what());
  }
  tracker_.init(options_, nb_);
  tracking_ = false;
  in_use_ = nullptr;
  frame_ = 0;
  prepared_ = ~std::uint64_t{0};
  model_ = nullptr;
  wait_ns_ = online_wait_ns_ = first_model_ns_ = last_frame_ns_ = 0;
  steady_ns_ = steady_wait_ns_ = steady_cpu_ns_ = 0;
  steady_frame_ = 0;
  first_model_cpu_ns_ = last_model_cpu_ns_ = 0;
  radius_used_.store(0, std::memory_order_relaxed);
  last_model_frame_ = 0;
  waits_ = first_model_frame_ = 0;
  seen_version_ = ~std::uint64_t{0};
  slots_used_ = 0;
  offset_ = 0.0f;
  init_largest_shift_ = 0.0f;
  // The ring covers max(L, first lag) + update_every frames (the slow path may sit in the
  // initialisation or in publish() that long in replay while the fast path keeps producing; see
  // ModelExchange).
  // Plus the frames the updater keeps in place for its new-neuron search (add_frame_kept): the
  // slow path releases a slot only once that many later frames have been added.
  kept_ = nmf::CnmfUpdater::residual_buffer(options_);
  // Plus room for excluded frames (the outlier test's, or marked bad by the source) the slow path
  // leaves out between them (a third of the frames).
  max_skip_ = kept_ / 2;
  ring_cap_ = std::max(lag_, first_lag_) + update_every_ + 4 + kept_ + max_skip_;
  // Hundreds of MiB at 512 x 512: on 2 MiB pages where the kernel allows, touched here, so the
  // per-frame copy into a slot takes no page fault and few TLB misses (a std::vector took
  // p50 245 us / p99 1.2 ms per 1 MiB copy at 30 Hz on the 2-core VM, this 72 / 320 us).
  ring_pixels_.assign(static_cast<std::size_t>(ring_cap_) * pixels_, 0.0f);
  ring_act_.assign(static_cast<std::size_t>(ring_cap_) * slots_, 0.0f);
  ring_bg_.assign(static_cast<std::size_t>(ring_cap_) * std::max(nb_, 1), 0.0f);
  ring_has_model_.assign(ring_cap_, 0);
  ring_next_slot_.assign(ring_cap_, 0);
  ring_frame_.assign(ring_cap_, 0);
  shifts_in_lane_ = in.lane_index("shifts");
  ring_shift_.assign(static_cast<std::size_t>(ring_cap_) * 2, 0.0f);
  ring_excluded_.assign(ring_cap_, 0);
  copy_head_.assign(std::max<std::uint32_t>(slots_, 1), 0.0f);
  copy_px_ = nullptr;
  added_pos_.assign(std::max<std::uint32_t>(kept_, 1), 0);
  added_head_ = added_n_ = 0;
  excluded_.store(0, std::memory_order_relaxed);
  excluded_added_.store(0, std::memory_order_relaxed);
  marked_.store(0, std::memory_order_relaxed);
  head_ = tail_ = 0;
  init_movie_.resize(pixels_, init_frames_);
  init_screen_ = nmf::CnmfBatchScreen{};
  init_marked_.assign(init_frames_, 0);
  initialised_ = false;
  final_model_ = empty;
  stop_ = false;
  slow_cpus_ = ctx.slow_cpus;
  slow_ = std::thread([this] { slow_loop(); });

  StreamSpec out = in;
  out.rows = slots_;
  out.cols = 1;
  out.lanes[0].name = "values";
  out.lanes[0].size = std::max(out.lanes[0].size, slots_);
  out.record_lane(0, "/traces", true);
  spikes_lane_ = out.add_lane("spikes", slots_);
  out.record_lane(spikes_lane_, "/spikes", true);
  raw_lane_ = out.add_lane("raw_traces", slots_);
  out.record_lane(raw_lane_, "/raw_traces", true);
  dff_lane_ = out.add_lane("dff", slots_);
  out.record_lane(dff_lane_, "/dff", true);
  bg_lane_ = out.add_lane("background", static_cast<std::uint32_t>(std::max(nb_, 1)));
  out.record_lane(bg_lane_, "/background/temporal", true);
  fit_lane_ = out.add_lane("fit_quality", 2);
  out.record_lane(fit_lane_, "/fit/quality", false);
  return out;
}

void OnlineCnmfStage::prepare(std::uint64_t n) {
  // Clock reads (vDSO, no system call): how long the fast path waits for the slow path's models,
  // and the wall time of the online phase (from the first model on), for the benchmarks.
  const std::int64_t t0 = std::chrono::steady_clock::now().time_since_epoch().count();
  const nmf::CnmfModel& m = exchange_.acquire(n);
  const std::int64_t t1 = std::chrono::steady_clock::now().time_since_epoch().count();
  if (t1 - t0 > 100'000) {  // > 0.1 ms: the fast path waited for a model
    wait_ns_ += t1 - t0;
    ++waits_;
    if (first_model_ns_ != 0) online_wait_ns_ += t1 - t0;  // after the first model
    if (steady_ns_ != 0) steady_wait_ns_ += t1 - t0;
  }
  if (exchange_.version() != seen_version_) {
    if (exchange_.version() > 0) {
      // Once per model (every update_every frames), between frames: one system call.
      timespec cpu{};
      ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
      last_model_cpu_ns_ = static_cast<std::int64_t>(cpu.tv_sec) * 1'000'000'000 + cpu.tv_nsec;
      last_model_frame_ = n;
      if (first_model_ns_ == 0) {
        first_model_ns_ = t1;
        first_model_frame_ = n;
        first_model_cpu_ns_ = last_model_cpu_ns_;
      } else if (steady_ns_ == 0 && exchange_.computed_from() != decltype(exchange_)::kNone &&
                 exchange_.computed_from() >= first_model_frame_) {
        steady_ns_ = t1;
        steady_frame_ = n;
        steady_cpu_ns_ = last_model_cpu_ns_;
      }
    }
    seen_version_ = exchange_.version();
    tracking_ = m.k() > 0 || m.nb() > 0;
    if (tracking_) tracker_.set_model(&m);
    slots_used_ = m.next_slot;
    k_.store(m.k(), std::memory_order_relaxed);
    // The slow path built this model on another core: read it once here, between frames, so the
    // frame that first uses it does not (2-8 ms instead of ~0.5 at 512 x 512, 500 neurons).
    nmf::touch_model(m);
  }
  model_ = &m;
  prepared_ = n;
}

void OnlineCnmfStage::do_after_frame() {
  if (copy_px_) finish_copy();
  prepare(frame_);
}

void OnlineCnmfStage::do_warm() {
  if (model_ && tracking_) warm_sink_ = nmf::touch_model(*model_) + tracker_.warm();
}

void OnlineCnmfStage::do_process(Frame& frame) {
  const std::uint64_t n = frame_++;
  if (prepared_ != n) prepare(n);  // the first frame, or a caller without after_frame()
  const nmf::CnmfModel& m = *model_;
  in_use_ = &m;
  last_frame_ns_ = std::chrono::steady_clock::now().time_since_epoch().count();
  // Hand the pixels to the slow path before lane 0 is overwritten with traces.
  const std::uint64_t head = head_.load(std::memory_order_relaxed);
  bool to_slow = true;
  if (head - tail_.load(std::memory_order_acquire) >= ring_cap_) {
    if (mode_ == RunMode::kReplay) {
      int spins = 0;
      while (head - tail_.load(std::memory_order_acquire) >= ring_cap_ &&
             !stop_.load(std::memory_order_relaxed)) {
        backoff(spins);
      }
    } else {
      to_slow = false;
      dropped_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  const std::uint32_t slot = static_cast<std::uint32_t>(head % ring_cap_);
  float* px = frame.data();
  // The model is non-negative (A c + b f): a recording whose values go below zero (ScanImage
  // int16 files with a dark level under 0, offset-subtracted movies) is lifted by the first
  // frame's minimum, for the whole stream (CaImAn subtracts the movie's minimum likewise).
  if (n == 0) {
    const float lo = *std::min_element(px, px + pixels_);
    offset_ = lo < 0 ? -lo : 0.0f;  // said by the slow path (no logging here)
  }
  if (offset_ > 0)
    for (std::uint32_t p = 0; p < pixels_; ++p) px[p] += offset_;
  float* act = ring_act_.data() + static_cast<std::size_t>(slot) * slots_;
  float* bgr = ring_bg_.data() + static_cast<std::size_t>(slot) * std::max(nb_, 1);
  const std::uint32_t used = static_cast<std::uint32_t>(slots_used_);
  double squared_norm = -1.0;  // the tracker's fit residual needs it: summed during the copy
  if (to_slow && defer_copy_) {
    // The copy for the slow path waits for after_frame(), outside the frame's latency (1 MiB
    // written to memory at 512 x 512: ~70 us at 30 Hz, several times that when the machine's
    // memory is busy). Only lane 0's first `used` floats are overwritten below (with the traces):
    // kept aside for it. The tracker then sums ||y||^2 itself (the same sum_squares).
    std::copy(px, px + used, copy_head_.data());
  } else if (to_slow) {
    // Streaming stores: this thread does not read the copy again, so it need not evict the
    // footprints and background it reads next (and a cold ring slot costs no read for ownership).
    squared_norm = nmf::copy_sum_squares(ring_pixels_.data() + static_cast<std::size_t>(slot) * pixels_, px, pixels_);
  }
  Lane& spk = frame.lane(spikes_lane_);
  Lane& raw = frame.lane(raw_lane_);
  Lane& dff = frame.lane(dff_lane_);
  Lane& bgl = frame.lane(bg_lane_);
  Lane& fit = frame.lane(fit_lane_);
  fit.data[0] = fit.data[1] = 0.0f;
  fit.size = 2;
  const bool marked = (frame.header.flags & kFrameMarkedBad) != 0;
  // 0 kept, 1 excluded by the outlier test, 2 marked bad (nmf::CnmfFrameOutput::exclusion);
  // before the first model only the mark.
  std::uint8_t exclusion = marked ? 2 : 0;
  if (tracking_) {
    tracker_.process(px, squared_norm, marked);
    const nmf::CnmfFrameOutput& o = tracker_.output();
    exclusion = o.exclusion();
    fit.data[0] = o.residual;
    fit.data[1] = exclusion;
    if (o.excluded) excluded_.fetch_add(1, std::memory_order_relaxed);
    if (marked) marked_.fetch_add(1, std::memory_order_relaxed);
    std::fill(px, px + used, 0.0f);
    std::fill(spk.data, spk.data + used, 0.0f);
    std::fill(raw.data, raw.data + used, 0.0f);
    std::fill(dff.data, dff.data + used, 0.0f);
    if (to_slow) std::fill(act, act + used, 0.0f);
    for (int k = 0; k < m.k(); ++k) {
      const std::int32_t s = m.slots[static_cast<std::size_t>(k)];
      if (s < 0) continue;
      px[s] = o.denoised(k);
      spk.data[s] = o.spikes(k);
      raw.data[s] = o.raw(k);
      dff.data[s] = o.dff(k);
      if (to_slow) act[s] = o.activation(k);
    }
    for (int b = 0; b < nb_; ++b) {
      bgl.data[b] = o.background(b);
      if (to_slow) bgr[b] = o.background(b);
    }
  } else {
    std::fill(px, px + used, 0.0f);
    std::fill(dff.data, dff.data + used, 0.0f);
    std::fill(bgl.data, bgl.data + std::max(nb_, 1), 0.0f);
  }
  frame.set_shape(used, 1);
  spk.size = used;
  raw.size = used;
  dff.size = used;
  bgl.size = static_cast<std::uint32_t>(std::max(nb_, 0));
  frame.header.model_version = exchange_.version();
  if (to_slow) {
    ring_has_model_[slot] = tracking_ && m.k() + m.nb() > 0 ? 1 : 0;
    ring_excluded_[slot] = exclusion;
    ring_next_slot_[slot] = m.next_slot;
    ring_frame_[slot] = n;
    if (shifts_in_lane_ >= 0 && frame.lane(shifts_in_lane_).size >= 2) {
      const float* shift = frame.lane(shifts_in_lane_).data;
      std::copy(shift, shift + 2, ring_shift_.data() + 2 * static_cast<std::size_t>(slot));
    }
    if (defer_copy_) {
      copy_px_ = px;
      copy_slot_ = slot;
      copy_used_ = used;
    } else {
      head_.store(head + 1, std::memory_order_release);
    }
  }
}

void OnlineCnmfStage::finish_copy() {
  float* dst = ring_pixels_.data() + static_cast<std::size_t>(copy_slot_) * pixels_;
  // From a 32-byte boundary on with streaming stores (copy_sum_squares; the sum is not needed),
  // the kept head and the few pixels up to the boundary before it.
  const std::uint32_t h = copy_used_, from = std::min(pixels_, (h + 7) / 8 * 8);
  nmf::copy_sum_squares(dst + from, copy_px_ + from, pixels_ - from);
  std::copy(copy_head_.data(), copy_head_.data() + h, dst);
  std::copy(copy_px_ + h, copy_px_ + from, dst + h);
  copy_px_ = nullptr;
  head_.store(head_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

void OnlineCnmfStage::slow_loop() {
  pin_current_thread(slow_cpus_);  // off the realtime CPUs, if the pipeline reserved some
  std::uint64_t pos = tail_.load(std::memory_order_relaxed);  // next ring position to process
  while (true) {
    int spins = 0;
    while (head_.load(std::memory_order_acquire) == pos) {
      // Look at the head again after seeing stop: the last frame may have landed in between.
      if (stop_.load(std::memory_order_acquire) && head_.load(std::memory_order_acquire) == pos) return;
      idle_backoff(spins);
    }
    const std::uint32_t slot = static_cast<std::uint32_t>(pos % ring_cap_);
    const std::uint64_t t = ring_frame_[slot];
    slow_pos_ = pos;
    try {
      // Live mode may have dropped frames: the update schedule stays on frame indices (t).
      slow_frame(t, slot);
    } catch (const std::exception& e) {
      slow_error_ = e.what();
      exchange_.stop();
      return;
    }
    ++pos;
    // Once initialised, the updater holds the last kept_ frames it was given in place: their
    // slots stay.
    const std::uint64_t release = initialised_ ? oldest_kept(pos) : pos;
    if (release > tail_.load(std::memory_order_relaxed)) tail_.store(release, std::memory_order_release);
    // Stopping: later frames would only feed updates no frame uses, but a recording that ended
    // before the first model still needs its initialisation (the frames up to it are all in the
    // ring) and, without a helper, the catch-up traces of the frames after it. Leaving at once
    // lost them when the end of the stream overtook the copy of the initialisation frames.
    if (exchange_.stopping()) {
      const bool needed = !initialised_ || (!catch_helper_.joinable() &&
                                            !ring_has_model_[static_cast<std::size_t>(pos % ring_cap_)]);
      if (!needed || pos >= head_.load(std::memory_order_acquire)) return;
    }
  }
}

std::uint64_t OnlineCnmfStage::oldest_kept(std::uint64_t pos) const {
  const std::uint64_t oldest = pos > kept_ ? pos - kept_ : 0;
  return added_n_ > 0 ? std::min(oldest, added_pos(added_n_)) : oldest;
}

int OnlineCnmfStage::init_seed_border_px() const {
  // At most a sixteenth of the frame's side: a small field that moved far keeps most of its area
  // for the initialisation (the rest is left to the online search).
  return std::min(static_cast<int>(std::floor(init_largest_shift_)), static_cast<int>(std::min(height_, width_) / 16));
}

void OnlineCnmfStage::slow_frame(std::uint64_t t, std::uint32_t slot) {
  const float* px = ring_pixels_.data() + static_cast<std::size_t>(slot) * pixels_;
  if (t == 0 && offset_ > 0)  // set by the fast path before it handed frame 0 over
    std::fprintf(stderr, "note: %spixel values go down to %g in the first frame; adding %g to every frame (the model is non-negative)\n",
                 where().c_str(), static_cast<double>(-offset_), static_cast<double>(offset_));
  if (t < init_frames_) {
    std::memcpy(init_movie_.col(static_cast<Eigen::Index>(t)).data(), px, sizeof(float) * pixels_);
    init_marked_[static_cast<std::size_t>(t)] = ring_excluded_[slot] == 2;
    if (shifts_in_lane_ >= 0) {  // this frame's slot, read while it is this frame's
      const float* sh = ring_shift_.data() + 2 * static_cast<std::size_t>(slot);
      init_largest_shift_ = std::max({init_largest_shift_, std::fabs(sh[0]), std::fabs(sh[1])});
    }
  } else if (initialised_) {
    if (!ring_has_model_[slot]) {
      // No model on the fast path yet: this frame is tracked with the initial model, for the
      // statistics and for the result file (by the helper if there is one, else here).
      int spins = 0;
      while (catch_helper_.joinable() && catch_next_.load(std::memory_order_acquire) <= slow_pos_) {
        if (catch_finished_.load(std::memory_order_acquire) &&
            catch_next_.load(std::memory_order_acquire) <= slow_pos_)
          catch_helper_.join();  // it stopped short (end of stream): track the rest here
        else
          idle_backoff(spins);
      }
      if (!catch_helper_.joinable()) track_catch_up(t, slot);
    }
    // An excluded frame (one the model could not explain) stays out of the statistics and the
    // new-neuron search, as long as the ring has room for the frames the updater holds.
    const std::uint32_t cap = static_cast<std::uint32_t>(added_pos_.size());
    const bool room = added_n_ < cap || slow_pos_ + 1 - added_pos(added_n_) < kept_ + max_skip_;
    if (ring_excluded_[slot] && room) {
      // Components estimated frame by frame until their model takes effect (gaps_) keep their
      // last value through it, so that their frames stay consecutive.
      for (Gap& g : gaps_)
        if (!g.values.empty() && g.first + g.values.size() == t) g.values.push_back(g.values.back());
    } else {
      if (ring_excluded_[slot]) excluded_added_.fetch_add(1, std::memory_order_relaxed);
      // The fast path's (or the catch-up's) activations for this frame, by slot.
      Eigen::Map<const Eigen::VectorXf> act(ring_act_.data() + static_cast<std::size_t>(slot) * slots_, slots_);
      Eigen::Map<const Eigen::VectorXf> bg(ring_bg_.data() + static_cast<std::size_t>(slot) * std::max(nb_, 1), std::max(nb_, 1));
      if (shifts_in_lane_ >= 0)
        updater_.set_motion(ring_shift_[2 * static_cast<std::size_t>(slot)], ring_shift_[2 * static_cast<std::size_t>(slot) + 1]);
      // Components found by updates whose model this frame did not have get an estimate.
      updater_.set_tracked_slots(ring_has_model_[slot] ? ring_next_slot_[slot] : init_.model.next_slot);
      updater_.add_frame_kept(px, act, bg.head(nb_));
      added_pos_[added_head_] = slow_pos_;
      added_head_ = (added_head_ + 1) % cap;
      added_n_ = std::min(added_n_ + 1, cap);
      for (const auto& [s, v] : updater_.untracked_last()) {
        if (s < 0 || static_cast<std::uint32_t>(s) >= slots_) continue;
        if (gaps_.size() < slots_) gaps_.resize(slots_);
        Gap& g = gaps_[static_cast<std::size_t>(s)];
        if (g.values.empty()) g.first = t;
        if (g.first + g.values.size() == t) g.values.push_back(v);  // consecutive frames only
      }
    }
  }
  if (!exchange_.is_update_frame(t)) {
    // An update frame inside the first model's lag (300 frames, ~590 at 512 x 512) gets no
    // update, its model being due before the first one's: the new-neuron search alone, its finds
    // in the first update's model. Without it no frame there was searched, and a neuron firing
    // only then went unfound. On frame indices only, as the updates (bit-identical replays).
    if (initialised_ && !frozen_ && !exchange_.stopping() && t >= init_frames_ && (t + 1) % update_every_ == 0) {
      updater_.search();
      record_finds(t);
    }
    return;
  }
  nmf::CnmfModel& back = exchange_.back();
  if (t + 1 < init_frames_) {
    back = exchange_.latest();
  } else if (t + 1 == init_frames_) {
    // No seeds in the strip the registration's edge copies reach: the largest whole-pixel shift
    // of the initialisation's frames (gathered below as they passed). 256 x 256 movies
    // with 6 px of motion (120 neurons at 1.1 radii, read noise 10; 9 seeds): F1 0.933-0.979 ->
    // 0.952-0.979 (mean +0.012, precision up to +0.04); 1-2 px of motion and no motion: identical.
    nmf::CnmfOptions io = options_;
    io.seed_border_px = init_seed_border_px();
    // Without the batch's frames the model cannot explain (light during the first frames).
    init_ = nmf::cnmf_initialize_screened(init_movie_, io, seeds_.cols() ? &seeds_ : nullptr, init_screen_, &init_marked_);
    if (init_screen_.marks_ignored > 0)
      std::fprintf(stderr, "note: %s%lld of the %u initialisation frames are marked bad; initialising on all of them (too few others)\n",
                   where().c_str(), static_cast<long long>(init_screen_.marks_ignored), init_frames_);
    marked_.fetch_add(static_cast<std::uint64_t>(std::count(init_screen_.excluded.begin(), init_screen_.excluded.end(), 2)),
                      std::memory_order_relaxed);
    seeds_ = Eigen::SparseMatrix<float>();  // used only by the initialisation
    updater_.init(options_, init_, init_movie_.leftCols(init_screen_.kept));  // at init_.neuron_radius (auto_radius)
    nmf::expand_screened_traces(init_, init_screen_);  // the result file's rows cover every frame
    excluded_.fetch_add(static_cast<std::uint64_t>(init_movie_.cols() - init_screen_.kept), std::memory_order_relaxed);
    radius_used_.store(init_.neuron_radius, std::memory_order_relaxed);
    back = init_.model;
    initialised_ = true;
    catch_tracker_.init(options_, init_.model.nb());
    catch_tracker_.set_model(&init_.model);
    catch_raw_.resize(init_.model.k(), first_lag_);
    catch_dff_.resize(init_.model.k(), first_lag_);
    catch_den_.resize(init_.model.k(), first_lag_);
    catch_spk_.resize(init_.model.k(), first_lag_);
    catch_bg_.resize(nb_, first_lag_);
    catch_fit_.resize(first_lag_, 2);
    catch_count_ = 0;
    if (options_.update_threads > 1) {
      catch_next_.store(slow_pos_ + 1, std::memory_order_relaxed);
      catch_finished_.store(false, std::memory_order_relaxed);
      catch_helper_ = std::thread([this, first = slow_pos_ + 1] { catch_loop(first); });
    }
  } else if (frozen_ || !initialised_ || exchange_.stopping()) {
    back = exchange_.latest();
  } else {
    updater_.update(back);
    record_finds(t);
    merged_.fetch_add(static_cast<std::uint64_t>(updater_.merged_last()), std::memory_order_relaxed);
    removed_.fetch_add(static_cast<std::uint64_t>(updater_.removed_last()), std::memory_order_relaxed);
    retired_.insert(retired_.end(), updater_.retired_last().begin(), updater_.retired_last().end());
    // Once every result row is taken (they are never reused), components found later are
    // tracked but neither recorded nor published: counted, and said once.
    const int unrecorded = back.unrecorded();
    if (unrecorded > 0 && unrecorded_.load(std::memory_order_relaxed) == 0)
      std::fprintf(stderr, "note: %sall %d result rows (cnmf.result_rows) are taken; components found from frame %llu on are tracked but not recorded or published\n",
                   where().c_str(), options_.result_rows, static_cast<unsigned long long>(t + 1));
    if (unrecorded > unrecorded_.load(std::memory_order_relaxed)) unrecorded_.store(unrecorded, std::memory_order_relaxed);
  }
  {
    std::lock_guard<std::mutex> lock(final_mutex_);
    final_model_ = back;
  }
  updates_.fetch_add(1, std::memory_order_relaxed);
  exchange_.publish(t);
  if (t + 1 == init_frames_) {
    init_movie_.resize(0, 0);  // the batch is no longer needed: memory stays flat
  }
}

void OnlineCnmfStage::record_finds(std::uint64_t t) {
  added_.fetch_add(static_cast<std::uint64_t>(updater_.added_last()), std::memory_order_relaxed);
  // The frame index of the `back`-th most recent frame added (its slot is still held).
  auto added_frame = [&](std::uint32_t back) { return ring_frame_[added_pos(back) % ring_cap_]; };
  for (const nmf::CnmfUpdater::Born& b : updater_.born_last()) {
    births_.push_back({b, t});
    // The detection's trace is over the last frames the updater was given. Where excluded frames
    // were left out between them (or this frame was), it is spread back onto frame indices up to
    // t, each excluded frame holding the value before it.
    std::vector<float>& tr = births_.back().born.trace;
    const std::uint32_t n = static_cast<std::uint32_t>(tr.size());
    if (n == 0 || n > added_n_) continue;
    const std::uint64_t first = added_frame(n);
    if (first + n == t + 1) continue;  // consecutive, ending at t
    std::vector<float> spread(static_cast<std::size_t>(t + 1 - first));
    std::uint32_t j = 0;
    for (std::uint64_t f = first; f <= t; ++f) {
      if (j < n && added_frame(n - j) == f) {
        spread[f - first] = tr[j++];
      } else {
        spread[f - first] = f > first ? spread[f - first - 1] : tr[0];
      }
    }
    tr = std::move(spread);
  }
}

void OnlineCnmfStage::track_catch_up(std::uint64_t t, std::uint32_t slot) {
  const float* px = ring_pixels_.data() + static_cast<std::size_t>(slot) * pixels_;
  catch_tracker_.process(px, -1.0, ring_excluded_[slot] == 2);  // the fast path's: the mark only
  const nmf::CnmfFrameOutput& o = catch_tracker_.output();
  ring_excluded_[slot] = o.exclusion();  // read by the slow path after this frame's catch_next_
  if (o.excluded) excluded_.fetch_add(1, std::memory_order_relaxed);
  if (o.marked) marked_.fetch_add(1, std::memory_order_relaxed);
  const nmf::CnmfModel& im = init_.model;
  float* act = ring_act_.data() + static_cast<std::size_t>(slot) * slots_;
  float* bg = ring_bg_.data() + static_cast<std::size_t>(slot) * std::max(nb_, 1);
  std::fill(act, act + slots_, 0.0f);
  for (int k = 0; k < im.k(); ++k)
    if (im.slots[static_cast<std::size_t>(k)] >= 0) act[im.slots[static_cast<std::size_t>(k)]] = o.activation(k);
  for (int b = 0; b < nb_; ++b) bg[b] = o.background(b);
  if (t == init_frames_ + catch_count_ && catch_count_ < static_cast<std::uint64_t>(catch_raw_.cols())) {
    const Eigen::Index c = static_cast<Eigen::Index>(catch_count_++);
    catch_raw_.col(c) = o.raw.head(im.k());
    catch_dff_.col(c) = o.dff.head(im.k());
    catch_den_.col(c) = o.denoised.head(im.k());
    catch_spk_.col(c) = o.spikes.head(im.k());
    if (nb_ > 0) catch_bg_.col(c) = o.background.head(nb_);
    catch_fit_(c, 0) = o.residual;
    catch_fit_(c, 1) = o.exclusion();
  }
}

void OnlineCnmfStage::catch_loop(std::uint64_t first) {
  pin_current_thread(slow_cpus_);
  std::uint64_t pos = first;
  int spins = 0;
  while (true) {
    const std::uint64_t head = head_.load(std::memory_order_acquire);
    if (pos == head) {
      // Look at the head again after seeing stop: the last frame may have landed in between.
      if (stop_.load(std::memory_order_acquire) && head_.load(std::memory_order_acquire) == pos) break;
      idle_backoff(spins);
      continue;
    }
    spins = 0;
    const std::uint32_t slot = static_cast<std::uint32_t>(pos % ring_cap_);
    if (ring_has_model_[slot]) break;  // the fast path tracks from here on
    track_catch_up(ring_frame_[slot], slot);
    catch_next_.store(++pos, std::memory_order_release);
  }
  catch_finished_.store(true, std::memory_order_release);
}

void OnlineCnmfStage::do_stop() {
  stop_.store(true, std::memory_order_release);
  exchange_.stop();
  if (slow_.joinable()) slow_.join();
  if (catch_helper_.joinable()) catch_helper_.join();
}

void OnlineCnmfStage::report(std::vector<std::pair<std::string, double>>& scalars) const {
  scalars.emplace_back("components", k_.load(std::memory_order_relaxed));
  scalars.emplace_back("model_updates", static_cast<double>(updates_.load(std::memory_order_relaxed)));
  scalars.emplace_back("slow_path_drops", static_cast<double>(dropped_.load(std::memory_order_relaxed)));
  const float radius = radius_used_.load(std::memory_order_relaxed);
  if (radius > 0) scalars.emplace_back("neuron_radius", radius);
  const int unrecorded = unrecorded_.load(std::memory_order_relaxed);
  if (unrecorded > 0) scalars.emplace_back("unrecorded_components", unrecorded);
  scalars.emplace_back("frames_excluded", static_cast<double>(excluded_.load(std::memory_order_relaxed)));
  scalars.emplace_back("frames_marked_bad", static_cast<double>(marked_.load(std::memory_order_relaxed)));
}

void OnlineCnmfStage::write_results(io::h5::File& f) {
  // The model of the last processed frame: what the traces were computed with, and the same
  // whatever the replay speed (the slow path may or may not have finished a later update).
  nmf::CnmfModel m;
  if (in_use_) {
    m = *in_use_;
  } else {
    std::lock_guard<std::mutex> lock(final_mutex_);
    m = final_model_;
  }
  // A recording that ended before the fast path had a model (shorter than init_frames plus the
  // first lag, ~30 s at 512 x 512): its traces are the initialisation's and the catch-up's, with
  // the initial model, and the sink sized the per-component datasets by the rows the fast path
  // filled, none. Without this such a file held no footprints and no traces.
  if (initialised_ && m.k() == 0 && init_.model.k() > 0) {
    m = init_.model;
    const hsize_t k0 = static_cast<hsize_t>(init_.model.k());
    for (const char* path : {"/traces", "/raw_traces", "/spikes"}) {
      if (!f.exists(path)) continue;
      const io::h5::Dims d = f.dims(path);
      if (d.size() != 2 || d[0] >= k0) continue;
      f.write<float>(path, std::vector<float>(static_cast<std::size_t>(k0 * d[1]), 0.0f), io::h5::Dims{k0, d[1]});
    }
  }
  const Eigen::Index P = static_cast<Eigen::Index>(pixels_);
  // Footprints by result slot: column s is the component that owns slot s, empty if it died.
  // As many columns as /traces has rows (a component added by the very last update never
  // reached the fast path and has no trace).
  std::int32_t used = std::max<std::int32_t>(m.next_slot, 0);
  if (f.exists("/traces")) {
    const io::h5::Dims d = f.dims("/traces");
    if (d.size() == 2) used = static_cast<std::int32_t>(d[0]);
  }
  // The final components in slot order (the order they appeared), and the rows of the others.
  std::vector<int> column_of(static_cast<std::size_t>(used), -1);  // slot -> component of m
  for (int k = 0; k < m.k(); ++k) {
    const std::int32_t s = m.slots[static_cast<std::size_t>(k)];
    if (s >= 0 && s < used) column_of[static_cast<std::size_t>(s)] = k;
  }
  std::vector<std::uint64_t> kept, gone;
  for (std::int32_t s = 0; s < used; ++s)
    (column_of[static_cast<std::size_t>(s)] >= 0 ? kept : gone).push_back(static_cast<std::uint64_t>(s));
  std::vector<Eigen::Triplet<float>> trip;
  const std::size_t K = kept.size();
  std::vector<std::int64_t> ids(K), slots(K);
  std::vector<float> g(K), g2(K, 0.0f);
  for (std::size_t j = 0; j < K; ++j) {
    const int k = column_of[kept[j]];
    for (Eigen::SparseMatrix<float>::InnerIterator it(m.footprints, k); it; ++it)
      trip.emplace_back(static_cast<int>(it.row()), static_cast<int>(j), it.value());
    ids[j] = static_cast<std::int64_t>(m.ids[static_cast<std::size_t>(k)]);
    slots[j] = static_cast<std::int64_t>(kept[j]);
    g[j] = m.g(k);
    if (m.g2.size() == m.k()) g2[j] = m.g2(k);
  }
  Eigen::SparseMatrix<float> a(P, static_cast<Eigen::Index>(K));
  a.setFromTriplets(trip.begin(), trip.end());
  io::write_csc(f, "/footprints", a);
  f.set_attr("/footprints", "layout", "CSC pixels x K, pixel = row * width + column");
  f.set_attr("/footprints", "height", static_cast<std::int64_t>(height_));
  f.set_attr("/footprints", "width", static_cast<std::int64_t>(width_));
  if (m.nb() > 0) f.write_matrix("/background/spatial", m.background);
  if (m.ring.active()) f.write_vector("/background/ring_baseline", m.ring.b0);
  f.write<std::int64_t>("/components/id", ids, {K});
  f.write<std::int64_t>("/components/slot", slots, {K});
  f.write<float>("/components/g", g, {K});
  f.write<float>("/components/g2", g2, {K});
  // Merged and removed components: the footprint each had when it went, its id and slot, the
  // id that absorbed it (-1: removed), the frame count of that update.
  {
    const std::size_t R = gone.size();
    std::vector<const nmf::CnmfUpdater::Retired*> rec(static_cast<std::size_t>(used), nullptr);
    for (const nmf::CnmfUpdater::Retired& r : retired_)
      if (r.slot >= 0 && r.slot < used) rec[static_cast<std::size_t>(r.slot)] = &r;
    std::vector<std::int64_t> rid(R, -1), rslot(R), into(R, -1), rframe(R, 0);
    std::vector<Eigen::Triplet<float>> rtrip;
    for (std::size_t j = 0; j < R; ++j) {
      rslot[j] = static_cast<std::int64_t>(gone[j]);
      const nmf::CnmfUpdater::Retired* r = rec[gone[j]];
      if (!r) continue;
      rid[j] = static_cast<std::int64_t>(r->id);
      into[j] = r->merged_into;
      rframe[j] = static_cast<std::int64_t>(r->frame);
      for (std::size_t q = 0; q < r->pixels.size(); ++q)
        if (r->values[q] != 0.0f) rtrip.emplace_back(r->pixels[q], static_cast<int>(j), r->values[q]);
    }
    Eigen::SparseMatrix<float> ra(P, static_cast<Eigen::Index>(R));
    ra.setFromTriplets(rtrip.begin(), rtrip.end());
    ra.makeCompressed();
    io::write_csc(f, "/retired/footprints", ra);
    f.write<std::int64_t>("/retired/id", rid, {R});
    f.write<std::int64_t>("/retired/slot", rslot, {R});
    f.write<std::int64_t>("/retired/merged_into", into, {R});
    f.write<std::int64_t>("/retired/frame", rframe, {R});
  }
  f.set_attr("/components", "ar_model",
             "c[t] = g c[t-1] + g2 c[t-2] + s[t]; AR(2) with rise: g = d + r, g2 = -d r (d, r the decay "
             "and rise factors per frame, exp(-1 / (rate * tau))); AR(1): g2 = 0, g = d");
  f.set_attr("/components", "added", static_cast<std::int64_t>(added_.load()));
  // The most components alive at once without a result row (all result_rows rows taken).
  f.set_attr("/components", "unrecorded_components", static_cast<std::int64_t>(unrecorded_.load()));
  f.set_attr("/components", "merged", static_cast<std::int64_t>(merged_.load()));
  f.set_attr("/components", "removed", static_cast<std::int64_t>(removed_.load()));
  f.set_attr("/components", "model_updates", static_cast<std::int64_t>(updates_.load()));
  f.set_attr("/components", "slow_path_drops", static_cast<std::int64_t>(dropped_.load()));
  f.set_attr("/components", "init_frames", static_cast<std::int64_t>(init_frames_));
  f.set_attr("/components", "update_every_frames", static_cast<std::int64_t>(update_every_));
  f.set_attr("/components", "model_lag_frames", static_cast<std::int64_t>(lag_));
  f.set_attr("/components", "first_model_lag_frames", static_cast<std::int64_t>(first_lag_));
  // Added to every pixel before the model saw it (0 unless the first frame had negative values).
  f.set_attr("/components", "data_offset", static_cast<double>(offset_));
  if (initialised_) {
    f.set_attr("/components", "init_seed_border_px", static_cast<std::int64_t>(init_seed_border_px()));
    // The soma radius the model ran at (auto_radius may have replaced the configured one) and the
    // estimate from the initialisation's components (0: not estimated).
    f.set_attr("/components", "neuron_radius", static_cast<double>(init_.neuron_radius));
    f.set_attr("/components", "neuron_radius_estimate", static_cast<double>(init_.radius_estimate));
  }
  // Timing of this run (not part of the replayed result: differs between runs).
  if (first_model_ns_ > 0) {
    f.set_attr("/components", "online_frames", static_cast<std::int64_t>(frame_ - first_model_frame_));
    f.set_attr("/components", "online_wall_s", static_cast<double>(last_frame_ns_ - first_model_ns_) * 1e-9);
    f.set_attr("/components", "online_cpu_frames", static_cast<std::int64_t>(last_model_frame_ - first_model_frame_));
    f.set_attr("/components", "online_cpu_s", static_cast<double>(last_model_cpu_ns_ - first_model_cpu_ns_) * 1e-9);
  }
  if (steady_ns_ > 0) {
    f.set_attr("/components", "steady_frames", static_cast<std::int64_t>(frame_ - steady_frame_));
    f.set_attr("/components", "steady_wall_s", static_cast<double>(last_frame_ns_ - steady_ns_) * 1e-9);
    f.set_attr("/components", "steady_model_wait_s", static_cast<double>(steady_wait_ns_) * 1e-9);
    f.set_attr("/components", "steady_cpu_frames", static_cast<std::int64_t>(last_model_frame_ - steady_frame_));
    f.set_attr("/components", "steady_cpu_s", static_cast<double>(last_model_cpu_ns_ - steady_cpu_ns_) * 1e-9);
  }
  if (f.exists("/fit/quality")) {
    f.set_attr("/fit/quality", "columns", std::string("residual,excluded"));
    f.set_attr("/fit/quality", "excluded_values", std::string("1: the model could not explain the frame; 2: marked bad by the source"));
    f.set_attr("/fit/quality", "frames_excluded", static_cast<std::int64_t>(excluded_.load()));
    f.set_attr("/fit/quality", "frames_marked_bad", static_cast<std::int64_t>(marked_.load()));
    f.set_attr("/fit/quality", "frames_excluded_but_added", static_cast<std::int64_t>(excluded_added_.load()));
    f.set_attr("/fit/quality", "outlier_residual_ratio", static_cast<double>(options_.outlier_residual_ratio));
  }
  f.set_attr("/components", "fast_path_model_waits", static_cast<std::int64_t>(waits_));
  f.set_attr("/components", "fast_path_model_wait_s", static_cast<double>(wait_ns_) * 1e-9);
  f.set_attr("/components", "online_model_wait_s", static_cast<double>(online_wait_ns_) * 1e-9);
  if (!slow_error_.empty()) f.set_attr("/components", "error", slow_error_);
  // The initialisation batch's traces for the frames the fast path saw before the first model.
  if (initialised_ && init_.traces.rows() > 0) {
    const nmf::CnmfModel& im = init_.model;
    const Eigen::Index K0 = init_.traces.rows(), T0 = init_.traces.cols();
    Eigen::MatrixXf raw(K0, T0), den(K0, T0), spk(K0, T0), dff(K0, T0);
    for (Eigen::Index k = 0; k < K0; ++k) {
      Eigen::VectorXf y = init_.traces.row(k).transpose().array() - im.baseline(k);
      Eigen::VectorXf c(T0), s(T0);
      nmf::oasis_ar2(y, im.g(k), im.g2.size() == im.g.size() ? im.g2(k) : 0.0f, im.s_min(k), c, s);
      s = (s.array() >= options_.spike_threshold_sigma * im.noise(k)).select(s, 0.0f);  // as the fast path
      raw.row(k) = y.transpose();
      den.row(k) = c.transpose();
      spk.row(k) = s.transpose();
    }
    // dF/F with the initialisation's constant baselines (the fast path's running ones start
    // there) and the background activations averaged as the fast path averages them.
    {
      const float alpha = static_cast<float>(1.0 / std::max(1.0, nmf::kDffBackgroundTauS * options_.frame_rate_hz));
      Eigen::VectorXf fs = nb_ > 0 ? Eigen::VectorXf(init_.background_traces.col(0)) : Eigen::VectorXf();
      for (Eigen::Index t = 0; t < T0; ++t) {
        if (nb_ > 0) fs += alpha * (init_.background_traces.col(t) - fs);
        for (Eigen::Index k = 0; k < K0; ++k)
          dff(k, t) = den(k, t) / nmf::resting_fluorescence(
                                      im, static_cast<int>(k), im.baseline(k),
                                      nmf::background_under_footprint(im, static_cast<int>(k), fs.data()));
      }
    }
    // Init components own slots 0..K0-1 (cnmf_initialize numbers them so).
    write_block(f, "/traces", den, 0);
    write_block(f, "/raw_traces", raw, 0);
    write_block(f, "/dff", dff, 0);
    write_block(f, "/spikes", spk, 0);
    if (nb_ > 0) write_block(f, "/background/temporal", init_.background_traces, 0);
    if (init_screen_.residual.size() == static_cast<std::size_t>(T0)) {
      Eigen::MatrixXf fit(T0, 2);
      for (Eigen::Index t = 0; t < T0; ++t) {
        fit(t, 0) = init_screen_.residual[static_cast<std::size_t>(t)];
        fit(t, 1) = init_screen_.excluded[static_cast<std::size_t>(t)];
      }
      write_block(f, "/fit/quality", fit, 0, 0);
    }
    const Eigen::Index nc = static_cast<Eigen::Index>(catch_count_);
    if (nc > 0) {
      write_block(f, "/traces", Eigen::MatrixXf(catch_den_.leftCols(nc)), init_frames_);
      write_block(f, "/raw_traces", Eigen::MatrixXf(catch_raw_.leftCols(nc)), init_frames_);
      write_block(f, "/dff", Eigen::MatrixXf(catch_dff_.leftCols(nc)), init_frames_);
      write_block(f, "/spikes", Eigen::MatrixXf(catch_spk_.leftCols(nc)), init_frames_);
      if (nb_ > 0) write_block(f, "/background/temporal", Eigen::MatrixXf(catch_bg_.leftCols(nc)), init_frames_);
      write_block(f, "/fit/quality", Eigen::MatrixXf(catch_fit_.topRows(nc)), 0, init_frames_);
    }
  }
  // A component found online: its activity over the buffer its detection used and over the
  // frames until its model took effect, before any model the fast path ran had it (zeros there
  // until now; the burst that got a sparsely firing neuron found was often its only activity):
  // the detection's trace, then the slow path's estimates (gaps_). Deconvolved as the fast path
  // would; dF/F over the resting fluorescence its own row shows once tracked. Not where the slow
  // path dropped frames (live overload): its buffer's frames are then not consecutive.
  if (dropped_.load() == 0 && f.exists("/traces")) {
    const std::uint64_t T = f.dims("/traces")[1];
    for (const Birth& b : births_) {
      const nmf::CnmfUpdater::Born& bn = b.born;
      const std::uint64_t n = bn.trace.size();
      if (bn.slot < 0 || bn.slot >= used || n == 0 || b.last + 1 < n || b.last >= T) continue;
      const std::uint64_t first = b.last + 1 - n;
      const Gap* gap = static_cast<std::size_t>(bn.slot) < gaps_.size() ? &gaps_[static_cast<std::size_t>(bn.slot)] : nullptr;
      // Up to the frame the model of the last processed frame was computed from: the slow path
      // processed those frames in every run (it may stop before later ones once the stream has
      // ended), so replays stay bit-identical.
      const std::uint64_t from = exchange_.computed_from();  // the model in use's
      const std::uint64_t upto = from == decltype(exchange_)::kNone ? 0 : std::min<std::uint64_t>(T, from + 1);
      const std::uint64_t extra = gap && gap->first == b.last + 1 && upto > b.last + 1
                                      ? std::min<std::uint64_t>(gap->values.size(), upto - b.last - 1)
                                      : 0;
      Eigen::VectorXf y(static_cast<Eigen::Index>(n + extra));
      y.head(static_cast<Eigen::Index>(n)) = Eigen::Map<const Eigen::VectorXf>(bn.trace.data(), static_cast<Eigen::Index>(n));
      // The estimates are activations; the detection's trace is over its baseline.
      if (extra > 0)
        y.tail(static_cast<Eigen::Index>(extra)) =
            (Eigen::Map<const Eigen::VectorXf>(gap->values.data(), static_cast<Eigen::Index>(extra)).array() - bn.base).cwiseMax(0.0f);
      Eigen::VectorXf c(y.size()), s(y.size());
      nmf::oasis_ar2(y, bn.g, bn.g2, bn.s_min, c, s);
      s = (s.array() >= options_.spike_threshold_sigma * bn.noise).select(s, 0.0f);
      const std::uint64_t row = static_cast<std::uint64_t>(bn.slot);
      write_block(f, "/raw_traces", Eigen::MatrixXf(y.transpose()), first, row);
      write_block(f, "/traces", Eigen::MatrixXf(c.transpose()), first, row);
      write_block(f, "/spikes", Eigen::MatrixXf(s.transpose()), first, row);
      if (f.exists("/dff")) {
        const std::uint64_t from = b.last + 1 + extra, len = std::min<std::uint64_t>(T - from, 30 * static_cast<std::uint64_t>(rate_hz_) + lag_);
        if (len == 0) continue;
        std::vector<float> tr(len), df(len), ratio;
        f.read_slab<float>("/traces", {row, from}, {1, len}, tr.data());
        f.read_slab<float>("/dff", {row, from}, {1, len}, df.data());
        for (std::uint64_t q = 0; q < len; ++q)
          if (tr[q] > 0 && df[q] > 1e-9f) ratio.push_back(tr[q] / df[q]);
        if (ratio.empty()) continue;
        std::nth_element(ratio.begin(), ratio.begin() + static_cast<std::ptrdiff_t>(ratio.size() / 2), ratio.end());
        write_block(f, "/dff", Eigen::MatrixXf(c.transpose() / ratio[ratio.size() / 2]), first, row);
      }
    }
  }
  // The per-slot rows: the final components' stay (row k is /footprints column k), the merged
  // and removed ones' go to /retired/ (zero from the frame their retirement took effect).
  for (const char* path : {"/traces", "/raw_traces", "/dff", "/spikes"}) {
    if (!f.exists(path)) continue;
    const io::h5::Dims d = f.dims(path);
    if (d.size() != 2 || d[0] != static_cast<std::uint64_t>(used)) continue;
    const std::string moved = std::string("/retired") + path;
    if (!gone.empty())
      f.split_rows(path, kept, moved, gone);
    else
      f.write<float>(moved, std::vector<float>(), {0, d[1]});
  }
}

RTNMF_REGISTER_STAGE("online_cnmf", "online CNMF (footprints, traces, OASIS spikes) for calcium imaging",
                     OnlineCnmfStage);

}  // namespace rtnmf::imaging
