// Large, long-lived buffers on the fast path's side of a hand-off (the CNMF stage's pixel ring,
// ~700 MiB at 512 x 512): anonymous memory aligned to 2 MiB, advised for transparent huge pages
// (this kernel's default is "madvise") and written once at allocation so no page fault and far
// fewer TLB misses happen per frame; plus a copy that streams past the caches.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rtnmf {

class HugeBuffer {
 public:
  HugeBuffer() = default;
  ~HugeBuffer();
  HugeBuffer(const HugeBuffer&) = delete;
  HugeBuffer& operator=(const HugeBuffer&) = delete;
  HugeBuffer(HugeBuffer&& o) noexcept;
  HugeBuffer& operator=(HugeBuffer&& o) noexcept;

  // Replaces the contents with n copies of v (allocates; throws std::bad_alloc when the memory
  // cannot be mapped). n = 0 frees it. Where the kernel has no THP the advice is refused and the
  // buffer works on normal pages.
  void assign(std::size_t n, float v);
  float* data() { return data_; }
  const float* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  void release();
  float* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t mapped_ = 0;  // bytes mapped (rounded up to 2 MiB)
};

}  // namespace rtnmf
