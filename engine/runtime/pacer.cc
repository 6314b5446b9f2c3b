#include "engine/runtime/pacer.h"

#include "engine/runtime/clock.h"

namespace rtnmf {

void Pacer::init(const v1::SourceConfig& cfg, double frames_per_second, bool default_realtime) {
  bool realtime = cfg.pacing() == v1::REALTIME ||
                  (cfg.pacing() == v1::PACING_UNSPECIFIED && default_realtime);
  double speed = cfg.speed() > 0 ? cfg.speed() : 1.0;
  period_ns_ = (realtime && frames_per_second > 0) ? 1e9 / (frames_per_second * speed) : 0;
  t0_ = 0;
}

void Pacer::wait(std::uint64_t n) {
  if (period_ns_ <= 0) return;
  if (t0_ == 0) t0_ = now_ns();
  sleep_until_ns(t0_ + static_cast<std::int64_t>(static_cast<double>(n) * period_ns_));
}

}  // namespace rtnmf
