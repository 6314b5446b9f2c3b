#include "engine/runtime/channel.h"

#include <immintrin.h>

#include <stdexcept>
#include <utility>

#include "engine/runtime/clock.h"

namespace rtnmf {

FrameChannel::FrameChannel(std::uint32_t depth, const std::vector<std::uint32_t>& lane_capacities,
                           OverloadPolicy policy, std::int64_t spin_ns)
    : pool_(depth >= 2 ? depth : throw std::invalid_argument("FrameChannel: depth must be >= 2"),
            lane_capacities),
      full_(depth),
      free_(depth),
      policy_(policy),
      spin_ns_(spin_ns) {
  for (std::uint32_t i = 0; i < pool_.size(); ++i) free_.try_push(i);
}

void FrameChannel::wake(std::atomic<bool>& waiting, moodycamel::spsc_sema::LightweightSemaphore& sem) {
  // Pairs with the fence in the waiting side: either it sees our push, or we see its flag.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (waiting.load(std::memory_order_relaxed)) sem.signal();
}

Frame* FrameChannel::acquire() {
  if (spare_) return std::exchange(spare_, nullptr);
  std::uint32_t h;
  if (free_.try_pop(h)) return &pool_[h];
  if (policy_ == OverloadPolicy::kDropOldest) {
    if (full_.try_evict(h)) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return &pool_[h];
    }
    // The consumer holds frames beyond its share; fall through and wait like kBlock.
  }
  std::int64_t spin_until = now_ns() + spin_ns_;
  for (;;) {
    if (cancelled_.load(std::memory_order_acquire)) return nullptr;
    if (free_.try_pop(h)) return &pool_[h];
    if (now_ns() < spin_until) {
      _mm_pause();
      continue;
    }
    producer_waiting_.store(true, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (free_.try_pop(h)) {
      producer_waiting_.store(false, std::memory_order_relaxed);
      return &pool_[h];
    }
    if (cancelled_.load(std::memory_order_acquire)) {
      producer_waiting_.store(false, std::memory_order_relaxed);
      return nullptr;
    }
    producer_sem_.wait(10'000);  // µs; bounded so a lost wake-up costs at most 10 ms
    producer_waiting_.store(false, std::memory_order_relaxed);
  }
}

void FrameChannel::push(Frame* f) {
  // Cannot fail: `full` holds the whole pool.
  full_.try_push(f->index());
  pushed_.fetch_add(1, std::memory_order_relaxed);
  wake(consumer_waiting_, consumer_sem_);
  if (doorbell_) doorbell_->signal();  // a syscall only when the consumer sleeps
}

// The producer keeps an unused frame for its next acquire(): pushing it into `free` would make
// two producers of that ring.
void FrameChannel::give_back(Frame* f) { spare_ = f; }

void FrameChannel::close() {
  closed_.store(true, std::memory_order_release);
  consumer_waiting_.store(true, std::memory_order_relaxed);
  consumer_sem_.signal();
  if (doorbell_) doorbell_->signal();
}

bool FrameChannel::closed_and_drained() const {
  return closed_.load(std::memory_order_acquire) && full_.size_approx() == 0;
}

Frame* FrameChannel::pop(std::int64_t timeout_ns) {
  std::uint32_t h;
  if (full_.try_pop(h)) return &pool_[h];
  std::int64_t start = now_ns();
  std::int64_t deadline = start + timeout_ns;
  std::int64_t spin_until = start + std::min(spin_ns_, timeout_ns);
  for (;;) {
    if (full_.try_pop(h)) return &pool_[h];
    if (closed_.load(std::memory_order_acquire)) {
      // close() happens after the last push: one more look decides.
      if (full_.try_pop(h)) return &pool_[h];
      return nullptr;
    }
    std::int64_t now = now_ns();
    if (now >= deadline) return nullptr;
    if (now < spin_until) {
      _mm_pause();
      continue;
    }
    consumer_waiting_.store(true, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (full_.try_pop(h)) {
      consumer_waiting_.store(false, std::memory_order_relaxed);
      return &pool_[h];
    }
    std::int64_t wait_us = std::max<std::int64_t>(1, (deadline - now) / 1000);
    consumer_sem_.wait(std::min<std::int64_t>(wait_us, 10'000));
    consumer_waiting_.store(false, std::memory_order_relaxed);
  }
}

void FrameChannel::release(Frame* f) {
  free_.try_push(f->index());
  wake(producer_waiting_, producer_sem_);
}

void FrameChannel::cancel() {
  cancelled_.store(true, std::memory_order_release);
  producer_waiting_.store(true, std::memory_order_relaxed);
  producer_sem_.signal();
}

}  // namespace rtnmf
