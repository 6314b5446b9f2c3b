// Counts heap allocations (every route into the C allocator: operator new, Eigen's aligned
// malloc, std containers) so tests can prove a hot path does not allocate. Linked into every test
// executable. Sanitizer builds own the allocator: there allocation_counting_available() is false
// and tests that need the count skip.
#pragma once

#include <cstdint>

namespace rtnmf::test {

bool allocation_counting_available();

// Number of allocation / new[] calls made by the calling thread since it started.
// Thread-local, so other threads (sources, publishers) do not disturb a measurement.
std::uint64_t thread_allocations();
// Same, summed over every thread of the process.
std::uint64_t process_allocations();

// Counts allocations on the calling thread between construction and count().
class AllocationGuard {
 public:
  AllocationGuard() : start_(thread_allocations()) {}
  std::uint64_t count() const { return thread_allocations() - start_; }

 private:
  std::uint64_t start_;
};

}  // namespace rtnmf::test
