// Long runs (label `soak`). RTNMF_SOAK_SCALE (default 1) scales their length; CI runs them short.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "engine/runtime/config.h"
#include "engine/runtime/pipeline.h"
#include "tests/runtime/test_util.h"
#include "tests/support/soak.h"
#include "tests/support/scratch.h"

namespace rtnmf {
namespace {

double soak_scale() { return test::soak_scale(0.001); }

long rss_kib() {
  std::ifstream f("/proc/self/statm");
  long pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

// Memory must not grow with stream length: RSS after the warm-up and at the end of a long
// stream (two streams, publisher on, overload on the publish queue) stay within 2 MiB.
TEST(PipelineSoak, MemoryStaysFlatOverALongStream) {
  const auto frames = static_cast<std::uint64_t>(4'000'000 * soak_scale());
  std::string text = R"(
publisher { endpoint: "ipc://)" + rtnmf::test::scratch_path("soak.sock") + R"(" control_endpoint: "none" }
stream { id: "emg" overload: BLOCK
  source { pacing: MAX max_frames: )" + std::to_string(frames) + R"(
    synthetic { kind: EMG channels: 64 block_samples: 4 } }
  stage { type: "rectify" } stage { type: "trigger" trigger { threshold: 1000 } } }
stream { id: "img" overload: DROP_OLDEST
  source { pacing: MAX max_frames: )" + std::to_string(frames / 100) + R"(
    synthetic { kind: IMAGING height: 128 width: 128 } }
  stage { type: "rectify" } })";
  Pipeline p(parse_pipeline(text, "soak.pbtxt"));
  p.start();
  long warm = 0;
  ASSERT_TRUE(test::wait_for([&] { return p.stats().streams(0).frames_processed() > frames / 10; },
                             600));
  warm = rss_kib();
  ASSERT_TRUE(p.wait(1800'000'000'000));
  const long end = rss_kib();
  p.join();
  v1::Stats st = p.stats();
  EXPECT_EQ(st.streams(0).frames_processed(), frames);
  EXPECT_LT(end - warm, 2048) << "RSS grew from " << warm << " KiB to " << end << " KiB";
  RecordProperty("rss_warm_kib", static_cast<int>(warm));
  RecordProperty("rss_end_kib", static_cast<int>(end));
}

}  // namespace
}  // namespace rtnmf
