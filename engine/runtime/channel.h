// A bounded single-producer / single-consumer hop carrying preallocated frames.
#pragma once

#include <atomic>
#include <readerwriterqueue/atomicops.h>
#include <cstdint>
#include <vector>

#include "engine/runtime/frame.h"
#include "engine/runtime/spsc_ring.h"

namespace rtnmf {

enum class OverloadPolicy {
  kBlock,       // producer waits for a free frame: nothing is ever dropped (replay)
  kDropOldest,  // producer evicts the oldest queued frame and counts it (live)
};

// Frames circulate producer → consumer through `full`, and back through `free`; both rings are
// SPSC. The channel owns exactly `depth` frames (>= 2), counting the one being filled and the one
// being consumed, so it never holds more than `depth` frames whatever the load. Both rings can
// hold the whole pool, so push() never fails; with kDropOldest the producer gets a frame without
// waiting as long as the consumer holds at most one.
class FrameChannel {
 public:
  // Allocates the pool of `depth` frames (>= 2; throws std::invalid_argument otherwise).
  // `lane_capacities` are floats per lane.
  FrameChannel(std::uint32_t depth, const std::vector<std::uint32_t>& lane_capacities,
               OverloadPolicy policy, std::int64_t spin_ns = 200'000);

  // --- producer thread ---
  // A free frame to fill. kBlock: waits until one is free; returns nullptr if the channel was
  // cancelled. kDropOldest: takes the oldest queued frame when none is free (counted in
  // dropped()). Does not allocate.
  Frame* acquire();
  // Hands a filled frame (from acquire) to the consumer. Does not allocate; never blocks.
  void push(Frame* f);
  // Returns a frame from acquire() unused (e.g. the source had nothing).
  void give_back(Frame* f);
  // No more frames will be pushed; the consumer drains what is queued, then pop() returns null.
  void close();

  // --- consumer thread ---
  // The next frame, waiting up to timeout_ns (spinning first for spin_ns). nullptr on timeout or
  // when closed and drained (check closed_and_drained()). Does not allocate.
  Frame* pop(std::int64_t timeout_ns);
  // Returns a consumed frame to the producer side. Does not allocate.
  void release(Frame* f);
  // The consumer is going away: wakes and fails a blocked producer.
  void cancel();

  // Also signal `doorbell` on every push (a consumer that watches several channels sleeps on
  // one semaphore). Set before the producer starts.
  void set_doorbell(moodycamel::spsc_sema::LightweightSemaphore* doorbell) { doorbell_ = doorbell; }

  // --- any thread ---
  bool closed_and_drained() const;
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }
  std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  std::uint64_t pushed() const { return pushed_.load(std::memory_order_relaxed); }
  std::uint32_t depth() const { return full_.size_approx(); }
  std::uint32_t capacity() const { return full_.capacity(); }
  OverloadPolicy policy() const { return policy_; }

 private:
  void wake(std::atomic<bool>& waiting, moodycamel::spsc_sema::LightweightSemaphore& sem);
  FramePool pool_;
  SpscRing<std::uint32_t> full_;
  SpscRing<std::uint32_t> free_;
  OverloadPolicy policy_;
  std::int64_t spin_ns_;
  std::atomic<bool> closed_{false};
  std::atomic<bool> cancelled_{false};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> pushed_{0};
  alignas(64) std::atomic<bool> consumer_waiting_{false};
  alignas(64) std::atomic<bool> producer_waiting_{false};
  moodycamel::spsc_sema::LightweightSemaphore consumer_sem_;
  moodycamel::spsc_sema::LightweightSemaphore producer_sem_;
  moodycamel::spsc_sema::LightweightSemaphore* doorbell_ = nullptr;
  Frame* spare_ = nullptr;  // producer only: a frame handed back unused
};

}  // namespace rtnmf
