#include "engine/runtime/huge_buffer.h"

#include <sys/mman.h>

#include <algorithm>
#include <new>
#include <utility>

namespace rtnmf {
namespace {
constexpr std::size_t kHuge = std::size_t{2} << 20;
}

HugeBuffer::~HugeBuffer() { release(); }

HugeBuffer::HugeBuffer(HugeBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      mapped_(std::exchange(o.mapped_, 0)) {}

HugeBuffer& HugeBuffer::operator=(HugeBuffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    mapped_ = std::exchange(o.mapped_, 0);
  }
  return *this;
}

void HugeBuffer::release() {
  if (data_) munmap(data_, mapped_);
  data_ = nullptr;
  size_ = mapped_ = 0;
}

void HugeBuffer::assign(std::size_t n, float v) {
  release();
  if (n == 0) return;
  const std::size_t bytes = (n * sizeof(float) + kHuge - 1) / kHuge * kHuge;
  // Map one huge page more than needed and trim, so the buffer starts on a 2 MiB boundary.
  void* p = mmap(nullptr, bytes + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  const auto raw = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t start = (raw + kHuge - 1) / kHuge * kHuge;
  if (start > raw) munmap(p, start - raw);
  const std::uintptr_t end = start + bytes, raw_end = raw + bytes + kHuge;
  if (raw_end > end) munmap(reinterpret_cast<void*>(end), raw_end - end);
  data_ = reinterpret_cast<float*>(start);
  mapped_ = bytes;
  size_ = n;
#ifdef MADV_HUGEPAGE
  (void)madvise(data_, mapped_, MADV_HUGEPAGE);  // best effort
#endif
  std::fill(data_, data_ + n, v);
}

}  // namespace rtnmf
