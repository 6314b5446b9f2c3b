// Real-time pacing of file and synthetic sources.
#pragma once

#include <cstdint>

#include "config.pb.h"

namespace rtnmf {

class Pacer {
 public:
  // frames_per_second: the stream's natural frame (or block) rate. `default_realtime` chooses
  // the behaviour for PACING_UNSPECIFIED.
  void init(const v1::SourceConfig& cfg, double frames_per_second, bool default_realtime);
  // Waits until frame n is due (no-op when pacing is MAX). Source thread.
  void wait(std::uint64_t n);
  bool realtime() const { return period_ns_ > 0; }

 private:
  double period_ns_ = 0;
  std::int64_t t0_ = 0;
};

}  // namespace rtnmf
