// parallel_blocks on kept helper threads: the blocks and what they cover, helpers reused across
// calls, nested calls (from the caller's block and from a helper's), concurrent callers, and an
// exception in a helper's block reaching the caller.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "engine/nmf/batch_nmf.h"

namespace rtnmf::nmf::detail {
namespace {

using Blocks = std::vector<std::pair<Eigen::Index, Eigen::Index>>;

Blocks blocks_of(int threads, Eigen::Index n) {
  std::mutex m;
  Blocks out;
  parallel_blocks(threads, n, [&](Eigen::Index b, Eigen::Index e) {
    std::lock_guard<std::mutex> lock(m);
    out.emplace_back(b, e);
  });
  std::sort(out.begin(), out.end());
  return out;
}

TEST(ParallelBlocks, SplitsIntoTheDocumentedContiguousBlocks) {
  EXPECT_EQ(blocks_of(3, 10), (Blocks{{0, 4}, {4, 8}, {8, 10}}));
  EXPECT_EQ(blocks_of(4, 4), (Blocks{{0, 1}, {1, 2}, {2, 3}, {3, 4}}));
  EXPECT_EQ(blocks_of(8, 3), (Blocks{{0, 1}, {1, 2}, {2, 3}}));  // no more threads than items
  EXPECT_EQ(blocks_of(1, 7), (Blocks{{0, 7}}));
  EXPECT_EQ(blocks_of(2, 0), (Blocks{{0, 0}}));  // one (empty) call on the caller
  // 4 items on 3 threads: chunks of 2, the third block empty and skipped.
  EXPECT_EQ(blocks_of(3, 4), (Blocks{{0, 2}, {2, 4}}));
}

TEST(ParallelBlocks, ReusesTheCallersHelperThreads) {
  std::thread caller([] {
    std::set<std::thread::id> first, second;
    std::mutex m;
    auto record = [&](std::set<std::thread::id>& ids) {
      parallel_blocks(3, 3, [&](Eigen::Index, Eigen::Index) {
        std::lock_guard<std::mutex> lock(m);
        ids.insert(std::this_thread::get_id());
      });
    };
    record(first);
    record(second);
    EXPECT_EQ(first.size(), 3u);
    EXPECT_EQ(first, second);  // same helpers (and the caller) both times
    EXPECT_EQ(first.count(std::this_thread::get_id()), 1u);
  });
  caller.join();
}

TEST(ParallelBlocks, NestedCallsFromTheCallersAndAHelpersBlockComplete) {
  std::vector<std::atomic<int>> hits(40);
  parallel_blocks(2, 4, [&](Eigen::Index b, Eigen::Index e) {
    for (Eigen::Index i = b; i < e; ++i)
      parallel_blocks(2, 10, [&](Eigen::Index b2, Eigen::Index e2) {
        for (Eigen::Index j = b2; j < e2; ++j) hits[static_cast<std::size_t>(i * 10 + j)]++;
      });
  });
  for (std::size_t i = 0; i < hits.size(); ++i) EXPECT_EQ(hits[i].load(), 1) << i;
}

TEST(ParallelBlocks, ConcurrentCallersEachGetTheirOwnBlocks) {
  auto work = [] {
    for (int rep = 0; rep < 200; ++rep) {
      std::vector<int> v(97, 0);
      parallel_blocks(3, 97, [&](Eigen::Index b, Eigen::Index e) {
        for (Eigen::Index i = b; i < e; ++i) v[static_cast<std::size_t>(i)] += static_cast<int>(i);
      });
      for (int i = 0; i < 97; ++i) ASSERT_EQ(v[static_cast<std::size_t>(i)], i);
    }
  };
  std::thread a(work), b(work);
  a.join();
  b.join();
}

TEST(ParallelBlocks, AnExceptionInAHelpersBlockReachesTheCallerAndThePoolStaysUsable) {
  try {
    parallel_blocks(3, 3, [](Eigen::Index b, Eigen::Index) {
      if (b == 0) throw std::runtime_error("block 0 failed");
    });
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "block 0 failed");
  }
  EXPECT_EQ(blocks_of(3, 6), (Blocks{{0, 2}, {2, 4}, {4, 6}}));
}

}  // namespace
}  // namespace rtnmf::nmf::detail
