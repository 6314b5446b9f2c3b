#include "engine/runtime/channel.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "engine/runtime/spsc_ring.h"

namespace rtnmf {
namespace {

TEST(SpscRing, EnforcesItsExactCapacity) {
  SpscRing<std::uint32_t> ring(5);
  for (std::uint32_t i = 0; i < 5; ++i) EXPECT_TRUE(ring.try_push(i));
  EXPECT_FALSE(ring.try_push(99));
  std::uint32_t v;
  ASSERT_TRUE(ring.try_pop(v));
  EXPECT_EQ(v, 0u);
  EXPECT_TRUE(ring.try_push(5));
  EXPECT_EQ(ring.size_approx(), 5u);
}

// Producer pushes 0..N-1; the consumer must see each exactly once, in order.
TEST(FrameChannel, BlockPolicyLosesNothingOverAMillionFramesAndKeepsOrder) {
  constexpr std::uint64_t kFrames = 1'000'000;
  FrameChannel ch(8, {4}, OverloadPolicy::kBlock, 20'000);
  std::thread producer([&] {
    for (std::uint64_t i = 0; i < kFrames; ++i) {
      Frame* f = ch.acquire();
      ASSERT_NE(f, nullptr);
      f->header.seq = i;
      f->data()[0] = static_cast<float>(i & 0xffff);
      ch.push(f);
    }
    ch.close();
  });
  std::uint64_t expected = 0;
  bool in_order = true;
  for (;;) {
    Frame* f = ch.pop(1'000'000'000);
    if (!f) {
      if (ch.closed_and_drained()) break;
      continue;
    }
    if (f->header.seq != expected ||
        f->data()[0] != static_cast<float>(expected & 0xffff))
      in_order = false;
    ++expected;
    ch.release(f);
  }
  producer.join();
  EXPECT_TRUE(in_order);
  EXPECT_EQ(expected, kFrames);
  EXPECT_EQ(ch.dropped(), 0u);
}

// The consumer holds off while the producer overruns the queue: the channel must keep exactly
// the newest `depth` frames (its whole pool) and count every other one as dropped.
TEST(FrameChannel, DropOldestKeepsTheNewestAndCountsEveryDrop) {
  constexpr std::uint32_t kDepth = 4;
  constexpr std::uint64_t kFrames = 1000;
  FrameChannel ch(kDepth, {1}, OverloadPolicy::kDropOldest, 0);
  for (std::uint64_t i = 0; i < kFrames; ++i) {
    Frame* f = ch.acquire();
    ASSERT_NE(f, nullptr);
    f->header.seq = i;
    ch.push(f);
  }
  ch.close();
  std::vector<std::uint64_t> got;
  while (Frame* f = ch.pop(0)) {
    got.push_back(f->header.seq);
    ch.release(f);
  }
  ASSERT_EQ(got.size(), kDepth);
  for (std::uint32_t i = 0; i < kDepth; ++i) EXPECT_EQ(got[i], kFrames - kDepth + i);
  EXPECT_EQ(ch.dropped(), kFrames - kDepth);
}

// Concurrent overload: every frame is either received or counted as dropped, never both,
// never neither, and received frames stay in order.
TEST(FrameChannel, DropOldestAccountsForEveryFrameUnderConcurrentOverload) {
  constexpr std::uint64_t kFrames = 200'000;
  FrameChannel ch(4, {1}, OverloadPolicy::kDropOldest, 1000);
  std::thread producer([&] {
    for (std::uint64_t i = 0; i < kFrames; ++i) {
      Frame* f = ch.acquire();
      f->header.seq = i;
      ch.push(f);
    }
    ch.close();
  });
  std::uint64_t received = 0, last = 0;
  bool ordered = true, first = true;
  for (;;) {
    Frame* f = ch.pop(100'000'000);
    if (!f) {
      if (ch.closed_and_drained()) break;
      continue;
    }
    if (!first && f->header.seq <= last) ordered = false;
    last = f->header.seq;
    first = false;
    ++received;
    // A slow consumer: touch the frame a while.
    for (int k = 0; k < 50; ++k) asm volatile("" ::: "memory");
    ch.release(f);
  }
  producer.join();
  EXPECT_TRUE(ordered);
  EXPECT_EQ(received + ch.dropped(), kFrames);
}

TEST(FrameChannel, CancelReleasesAProducerBlockedOnAFullQueue) {
  FrameChannel ch(2, {1}, OverloadPolicy::kBlock, 0);
  std::atomic<bool> returned_null{false};
  std::thread producer([&] {
    for (;;) {
      Frame* f = ch.acquire();
      if (!f) {
        returned_null = true;
        return;
      }
      ch.push(f);
    }
  });
  // The producer fills the pool and blocks; it must not hang once the consumer cancels.
  while (ch.depth() < 2) std::this_thread::yield();
  ch.cancel();
  producer.join();
  EXPECT_TRUE(returned_null);
}

}  // namespace
}  // namespace rtnmf
