// Soak tests (label `soak`): RTNMF_SOAK_SCALE (default 1) scales their length; CI runs them short.
#pragma once

#include <algorithm>
#include <cstdlib>

namespace rtnmf::test {

// The RTNMF_SOAK_SCALE factor, never below `floor` (so a tiny scale still runs something).
inline double soak_scale(double floor = 0.01) {
  const char* s = std::getenv("RTNMF_SOAK_SCALE");
  return s ? std::max(floor, std::atof(s)) : 1.0;
}

}  // namespace rtnmf::test
