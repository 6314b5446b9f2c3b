// Cache warming: reads one byte of every 64-byte line of a buffer (and its last byte), so that
// the next pass over it finds it in the caches. The sum only keeps the reads from being dropped.
// Used between frames by the fast path's components (the model, the tracker's state, the
// registration's buffers). Does not allocate.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rtnmf::nmf {

inline std::uint32_t touch_bytes(const void* p, std::size_t bytes) {
  if (p == nullptr || bytes == 0) return 0;
  const auto* c = static_cast<const volatile unsigned char*>(p);
  std::uint32_t acc = 0;
  for (std::size_t i = 0; i < bytes; i += 64) acc += c[i];
  return acc + c[bytes - 1];
}

}  // namespace rtnmf::nmf
