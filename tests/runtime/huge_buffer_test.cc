// HugeBuffer (2 MiB-aligned, huge-page-advised, pre-touched), used for the CNMF stage's pixel
// ring; cpus_outside, which keeps slow-path threads off the CPUs reserved for frame-carrying
// threads.
#include "engine/runtime/huge_buffer.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "engine/runtime/realtime.h"

namespace rtnmf {
namespace {

TEST(HugeBuffer, IsAlignedFilledMovableAndFreedByAnEmptyAssign) {
  HugeBuffer b;
  EXPECT_EQ(b.data(), nullptr);
  const std::size_t n = (std::size_t{3} << 20) / sizeof(float) + 7;  // 3 MiB + 7 floats
  b.assign(n, 2.5f);
  ASSERT_NE(b.data(), nullptr);
  EXPECT_EQ(b.size(), n);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(b.data()) % (std::uintptr_t{2} << 20), 0u);
  EXPECT_EQ(b.data()[0], 2.5f);
  EXPECT_EQ(b.data()[n - 1], 2.5f);
  b.data()[n - 1] = -1.0f;  // the whole range is writable
  HugeBuffer c(std::move(b));
  EXPECT_EQ(b.data(), nullptr);
  EXPECT_EQ(b.size(), 0u);
  EXPECT_EQ(c.size(), n);
  EXPECT_EQ(c.data()[n - 1], -1.0f);
  HugeBuffer d;
  d = std::move(c);
  EXPECT_EQ(d.size(), n);
  d.assign(10, 0.0f);  // reassigning maps afresh
  EXPECT_EQ(d.size(), 10u);
  EXPECT_EQ(d.data()[9], 0.0f);
  d.assign(0, 0.0f);
  EXPECT_EQ(d.data(), nullptr);
  EXPECT_EQ(d.size(), 0u);
}

TEST(Realtime, CpusOutsideIsTheRestOfTheAllowedSet) {
  EXPECT_TRUE(cpus_outside({}).empty());
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
  std::vector<unsigned> all;
  for (unsigned c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &allowed)) all.push_back(c);
  EXPECT_TRUE(cpus_outside(all).empty());
  if (all.size() >= 2) {
    const std::vector<unsigned> rest(all.begin() + 1, all.end());
    EXPECT_EQ(cpus_outside({all[0]}), rest);
  }
}

}  // namespace
}  // namespace rtnmf
