// Time stamps: CLOCK_MONOTONIC nanoseconds, system-wide, so a subscriber on the same machine can
// subtract rtnmf's t_received_ns from its own receipt time.
#pragma once

#include <cstdint>
#include <ctime>

namespace rtnmf {

// Does not allocate; vDSO call, no syscall on Linux. Any thread.
inline std::int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

// Wall-clock nanoseconds since the epoch (for t_acquired_ns of synthetic sources).
inline std::int64_t wall_ns() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

// Busy-waits then sleeps until the monotonic deadline (source pacing). Source threads only.
void sleep_until_ns(std::int64_t deadline_ns);

}  // namespace rtnmf
