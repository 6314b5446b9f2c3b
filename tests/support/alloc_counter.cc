// Allocation counting for tests. In ordinary builds the C allocator itself is interposed
// (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign), so Eigen's and the standard
// library's allocations are all seen, whichever route they take. Sanitizer builds own the
// allocator; there counting is disabled and allocation_counting_available() says so.
#include "tests/support/alloc_counter.h"

#include <atomic>
#include <cstddef>

namespace {
thread_local std::uint64_t t_allocs = 0;
std::atomic<std::uint64_t> g_allocs{0};
inline void count_one() {
  ++t_allocs;
  g_allocs.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
namespace rtnmf::test {
bool allocation_counting_available() { return false; }
std::uint64_t thread_allocations() { return t_allocs; }
std::uint64_t process_allocations() { return g_allocs.load(std::memory_order_relaxed); }
}  // namespace rtnmf::test
#else
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);

void* malloc(std::size_t n) {
  count_one();
  return __libc_malloc(n);
}
void* calloc(std::size_t a, std::size_t b) {
  count_one();
  return __libc_calloc(a, b);
}
void* realloc(void* p, std::size_t n) {
  count_one();
  return __libc_realloc(p, n);
}
void free(void* p) { __libc_free(p); }
void* memalign(std::size_t align, std::size_t n) {
  count_one();
  return __libc_memalign(align, n);
}
void* aligned_alloc(std::size_t align, std::size_t n) {
  count_one();
  return __libc_memalign(align, n);
}
int posix_memalign(void** out, std::size_t align, std::size_t n) {
  count_one();
  void* p = __libc_memalign(align, n);
  if (!p) return 12;  // ENOMEM
  *out = p;
  return 0;
}
}  // extern "C"

namespace rtnmf::test {
bool allocation_counting_available() { return true; }
std::uint64_t thread_allocations() { return t_allocs; }
std::uint64_t process_allocations() { return g_allocs.load(std::memory_order_relaxed); }
}  // namespace rtnmf::test
#endif
