// ModelExchange's replay rule with a separate first-model lag: the first update takes effect at
// first_update + first_lag, no update is scheduled before it, later ones at t + L, and the
// frames at which versions change do not depend on how slow the slow path is.
#include "engine/runtime/model_exchange.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace rtnmf {
namespace {

TEST(ModelExchange, FirstUpdateGetsItsOwnLagAndTheScheduleResumesAfterIt) {
  ModelExchange<int> ex;
  // Updates every 10 frames, lag 3; the first one after frame 19, taking effect 25 frames later.
  ex.init(0, RunMode::kReplay, 3, 10, 19, 25);
  std::vector<std::uint64_t> updates;
  for (std::uint64_t n = 0; n < 80; ++n)
    if (ex.is_update_frame(n)) updates.push_back(n);
  // 19 (first, effect 44); 29 and 39 would take effect at 32 and 42, before 44: not scheduled;
  // 49 -> 52, 59 -> 62, ...
  EXPECT_EQ(updates, (std::vector<std::uint64_t>{19, 49, 59, 69, 79}));
  EXPECT_EQ(ex.effect_frame(19), 44u);
  EXPECT_EQ(ex.effect_frame(49), 52u);
}

TEST(ModelExchange, FirstLagBelowTheModelLagIsRejected) {
  ModelExchange<int> ex;
  try {
    ex.init(0, RunMode::kReplay, 30, 100, 299, 10);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "the first model's lag (10) must be >= the model lag (30)");
  }
}

// A slow path that publishes model value = computed_from + 1000 after a delay; the fast path
// records the model it sees at every frame. Whatever the delay, each version starts exactly at
// its effect frame.
std::vector<int> run_replay(int slow_delay_us) {
  ModelExchange<int> ex;
  ex.init(-1, RunMode::kReplay, 3, 10, 19, 25);
  constexpr std::uint64_t kFrames = 90;
  std::thread slow([&] {
    for (std::uint64_t t = 0; t < kFrames; ++t) {
      if (!ex.is_update_frame(t)) continue;
      std::this_thread::sleep_for(std::chrono::microseconds(slow_delay_us));
      ex.back() = static_cast<int>(t) + 1000;
      if (!ex.publish(t)) return;
    }
  });
  std::vector<int> seen;
  for (std::uint64_t n = 0; n < kFrames; ++n) seen.push_back(ex.acquire(n));
  ex.stop();
  slow.join();
  return seen;
}

TEST(ModelExchange, ReplayTakesTheFirstModelAtItsOwnLagWhateverTheSlowPathSpeed) {
  const std::vector<int> fast = run_replay(0);
  const std::vector<int> slow = run_replay(3000);
  EXPECT_EQ(fast, slow);
  for (std::uint64_t n = 0; n < fast.size(); ++n) {
    int want = -1;
    if (n >= 44) want = 1019;
    if (n >= 52) want = 1049;
    if (n >= 62) want = 1059;
    if (n >= 72) want = 1069;
    if (n >= 82) want = 1079;
    EXPECT_EQ(fast[n], want) << "frame " << n;
  }
}

}  // namespace
}  // namespace rtnmf
