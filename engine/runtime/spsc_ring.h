// Bounded lock-free ring of small trivially copyable values (frame handles).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <type_traits>

namespace rtnmf {

// One producer pushes; one consumer pops. The producer may also evict the oldest element
// (drop_oldest overload policy): pops race on the read index through a CAS, so an element is
// taken exactly once. Why not moodycamel::ReaderWriterQueue: it has no way for the producer to
// take back the oldest element, which drop_oldest needs; bench/bm_queue.cc measures both.
template <typename T>
class SpscRing {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8);

 public:
  // Allocates a ring holding `capacity` elements (rounded up to a power of two internally, but
  // the bound enforced is exactly `capacity`).
  explicit SpscRing(std::uint32_t capacity) : capacity_(capacity) {
    if (capacity == 0) throw std::invalid_argument("SpscRing: capacity must be > 0");
    std::uint32_t n = 1;
    while (n < capacity) n <<= 1;
    mask_ = n - 1;
    slots_ = std::make_unique<std::atomic<T>[]>(n);
  }

  // Producer. Does not allocate. Returns false when the ring holds `capacity` elements.
  bool try_push(T v) {
    std::uint64_t h = head_.load(std::memory_order_relaxed);
    // The producer's cached copy of tail saves a cache-line transfer on most pushes.
    if (h - producer_tail_ >= capacity_) {
      producer_tail_ = tail_.load(std::memory_order_acquire);
      if (h - producer_tail_ >= capacity_) return false;
    }
    slots_[h & mask_].store(v, std::memory_order_relaxed);
    head_.store(h + 1, std::memory_order_release);
    return true;
  }

  // Consumer only. Does not allocate. False when empty.
  bool try_pop(T& out) {
    std::uint64_t t = tail_.load(std::memory_order_acquire);
    for (;;) {
      // >=: evictions by the producer can move tail past a stale cached head.
      if (t >= consumer_head_) {
        consumer_head_ = head_.load(std::memory_order_acquire);
        if (t >= consumer_head_) return false;
      }
      if (take(t, out)) return true;
    }
  }

  // Producer only: takes the oldest element back (drop_oldest). False when empty.
  bool try_evict(T& out) {
    const std::uint64_t h = head_.load(std::memory_order_relaxed);  // the producer's own index
    std::uint64_t t = tail_.load(std::memory_order_acquire);
    for (;;) {
      if (t == h) return false;
      if (take(t, out)) return true;
    }
  }

  // Approximate element count. Any thread.
  std::uint32_t size_approx() const {
    std::uint64_t h = head_.load(std::memory_order_acquire);
    std::uint64_t t = tail_.load(std::memory_order_acquire);
    return h > t ? static_cast<std::uint32_t>(h - t) : 0;
  }
  std::uint32_t capacity() const { return capacity_; }

 private:
  // Claims slot t for the caller; on failure `t` holds the current tail.
  bool take(std::uint64_t& t, T& out) {
    T v = slots_[t & mask_].load(std::memory_order_relaxed);
    if (tail_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel,
                                    std::memory_order_acquire)) {
      out = v;
      return true;
    }
    return false;
  }

  std::uint32_t capacity_;
  std::uint64_t mask_ = 0;
  std::unique_ptr<std::atomic<T>[]> slots_;
  alignas(64) std::atomic<std::uint64_t> head_{0};
  std::uint64_t producer_tail_ = 0;  // producer's cached tail
  alignas(64) std::atomic<std::uint64_t> tail_{0};
  std::uint64_t consumer_head_ = 0;  // consumer's cached head
};

}  // namespace rtnmf
