// Hands immutable models from a slow-path thread to the fast path (triple buffer).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <immintrin.h>
#include <stdexcept>
#include <string>
#include <thread>

#include "engine/runtime/stage.h"

namespace rtnmf {

// Three model buffers: the fast path reads `front`, the slow path writes `back`, and a
// published model waits in `middle` until the fast path takes it at a frame boundary.
//
// Timing contract (DESIGN.md §1), with n the stage's frame index (0, 1, 2, ...):
// - the slow path calls publish(t) after it has folded frames <= t into back();
// - kReplay: the update published with computed_from = t takes effect exactly at frame t + L.
//   The fast path waits for it if the slow path is late, and the slow path waits for the fast
//   path to take one model before publishing the next, so no model is ever skipped: a replay is
//   bit-identical whatever the speed or load, provided the slow path's schedule depends on frame
//   indices only (see is_update_frame).
// - kLive: a published model is taken at the next frame boundary; swap_frame() records where.
// - Optionally the first model (e.g. an initialisation on the first frames, much slower than an
//   update) gets its own, larger lag: init(..., first_update, first_lag). No update is scheduled
//   before frame first_update; the one published after it takes effect at first_update +
//   first_lag, and the regular schedule resumes with the first update frame n whose n + L comes
//   later. Frames before then use the initial model (typically empty).
template <typename Model>
class ModelExchange {
 public:
  // Allocates three copies of `initial` (version 0). L must be >= 1 in replay mode: the update
  // from frame t cannot be ready before frame t has been processed. Throws std::invalid_argument.
  // first_update = kNone: every update frame uses lag L. Else first_lag must be >= L.
  void init(const Model& initial, RunMode mode, std::uint32_t lag, std::uint32_t update_every,
            std::uint64_t first_update = kNone, std::uint32_t first_lag = 0) {
    if (mode == RunMode::kReplay && lag == 0)
      throw std::invalid_argument("model lag must be >= 1 frame in replay mode");
    if (update_every == 0) throw std::invalid_argument("update_every must be >= 1");
    if (first_update != kNone && first_lag < lag)
      throw std::invalid_argument("the first model's lag (" + std::to_string(first_lag) +
                                  ") must be >= the model lag (" + std::to_string(lag) + ")");
    first_ = first_update;
    first_lag_ = first_lag;
    for (auto& s : slots_) {
      s.model = initial;
      s.version = 0;
      s.computed_from = kNone;
    }
    mode_ = mode;
    lag_ = lag;
    update_every_ = update_every;
    front_ = 0;
    back_ = 1;
    middle_.store(2, std::memory_order_relaxed);
    published_ = 0;
    stop_.store(false);
  }

  // The schedule both sides follow: the slow path publishes after frame n when this is true.
  bool is_update_frame(std::uint64_t n) const {
    if (first_ == kNone) return (n + 1) % update_every_ == 0;
    if (n <= first_) return n == first_;
    return (n + 1) % update_every_ == 0 && n + lag_ > first_ + first_lag_;
  }
  // The frame at which the update published after frame n (an update frame) takes effect.
  std::uint64_t effect_frame(std::uint64_t n) const { return n == first_ ? n + first_lag_ : n + lag_; }

  // Fast path, at the start of frame n. Returns the model to use for this frame (immutable until
  // the next call). Does not allocate or lock; in replay mode it may spin-wait for a late update.
  const Model& acquire(std::uint64_t n) {
    if (mode_ == RunMode::kLive) {
      if (middle_.load(std::memory_order_acquire) & kFresh) take(n);
      return slots_[front_].model;
    }
    std::uint64_t due = kNone;
    if (first_ != kNone && n == first_ + first_lag_) {
      due = first_;
    } else if (n >= lag_ && n - lag_ != first_ && is_update_frame(n - lag_)) {
      due = n - lag_;
    }
    if (due != kNone) {
      int spins = 0;
      while (!stopping()) {
        std::uint32_t m = middle_.load(std::memory_order_acquire);
        if ((m & kFresh) && slots_[m & kIndex].computed_from == due) {
          take(n);
          break;
        }
        backoff(spins);
      }
      if (!stopping()) ++waits_checked_;
    }
    return slots_[front_].model;
  }

  // Slow path: the buffer to build the next model in. It holds the previously published model
  // two versions back, so copy from latest() first if updates are incremental.
  Model& back() { return slots_[back_].model; }
  // Slow path: the most recently published model (or the initial one).
  const Model& latest() const { return slots_[last_published_].model; }

  // Slow path: publishes back() as the model computed from frames <= computed_from.
  // kReplay: waits until the fast path has taken the previous model. Returns false if stopping.
  bool publish(std::uint64_t computed_from) {
    int spins = 0;
    if (mode_ == RunMode::kReplay) {
      while (middle_.load(std::memory_order_acquire) & kFresh) {
        if (stopping()) return false;
        backoff(spins);
      }
    }
    slots_[back_].computed_from = computed_from;
    slots_[back_].version = ++published_;
    last_published_ = back_;
    std::uint32_t old = middle_.exchange(back_ | kFresh, std::memory_order_acq_rel);
    back_ = old & kIndex;
    return true;
  }

  // Wakes both sides out of any wait (shutdown). Any thread.
  void stop() { stop_.store(true, std::memory_order_release); }
  bool stopping() const { return stop_.load(std::memory_order_acquire); }

  // Fast-path thread (or after it stopped): version of the model in use, its computed_from, the
  // frame index at which it took effect, and the number of swaps so far.
  std::uint64_t version() const { return slots_[front_].version; }
  std::uint64_t computed_from() const { return slots_[front_].computed_from; }
  std::uint64_t swap_frame() const { return swap_frame_; }
  std::uint64_t swaps() const { return swaps_.load(std::memory_order_relaxed); }
  // Any thread.
  std::uint64_t version_relaxed() const { return version_seen_.load(std::memory_order_relaxed); }

  static constexpr std::uint64_t kNone = ~std::uint64_t{0};

 private:
  static constexpr std::uint32_t kFresh = 4;
  static constexpr std::uint32_t kIndex = 3;
  struct Slot {
    Model model;
    std::uint64_t version = 0;
    std::uint64_t computed_from = kNone;
  };

  void take(std::uint64_t n) {
    std::uint32_t m = middle_.exchange(front_, std::memory_order_acq_rel);
    front_ = m & kIndex;
    swap_frame_ = n;
    swaps_.fetch_add(1, std::memory_order_relaxed);
    version_seen_.store(slots_[front_].version, std::memory_order_relaxed);
  }
  // Replay-mode waits (a late model, or the fast path yet to take the previous one): spin
  // briefly, then sleep. The other side may need milliseconds (an update) or seconds (an imaging
  // initialisation at --speed max); a thread yielding in a loop keeps a core busy that, on a small
  // machine, the side it waits for needs.
  static void backoff(int& spins) {
    if (++spins < 2000) {
      _mm_pause();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  Slot slots_[3];
  std::uint32_t front_ = 0;  // fast path only
  std::uint32_t back_ = 1;   // slow path only
  std::uint32_t last_published_ = 0;  // slow path only
  std::atomic<std::uint32_t> middle_{2};
  std::uint64_t published_ = 0;      // slow path only
  std::uint64_t swap_frame_ = 0;     // fast path only
  std::uint64_t waits_checked_ = 0;  // fast path only
  std::atomic<std::uint64_t> swaps_{0};
  std::atomic<std::uint64_t> version_seen_{0};
  RunMode mode_ = RunMode::kReplay;
  std::uint32_t lag_ = 1;
  std::uint32_t update_every_ = 1;
  std::uint64_t first_ = kNone;
  std::uint32_t first_lag_ = 0;
  std::atomic<bool> stop_{false};
};

}  // namespace rtnmf
