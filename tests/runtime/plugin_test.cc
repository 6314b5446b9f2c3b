#include "engine/runtime/plugin_loader.h"

#include <gtest/gtest.h>

#include "engine/runtime/config.h"
#include "engine/runtime/pipeline.h"
#include "engine/runtime/registry.h"
#include "tests/runtime/test_util.h"

namespace rtnmf {
namespace {

const std::string kPluginDir = std::string(RTNMF_BUILD_DIR) + "/plugins/example/";

TEST(Plugin, MismatchedAbiIsRefusedNamingBothVersions) {
  const std::string path = kPluginDir + "librtnmf_example_plugin_bad_abi.so";
  try {
    load_plugin(path);
    FAIL() << "loaded a plugin with the wrong ABI";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "plugin " + path +
                  ": ABI version 999 does not match rtnmf's 4; rebuild the plugin against this "
                  "rtnmf");
  }
  EXPECT_FALSE(Registry::instance().has_stage("example_gain"));
}

TEST(Plugin, MissingFileIsAClearError) {
  try {
    load_plugin("/nonexistent/libnothing.so");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("plugin /nonexistent/libnothing.so: cannot load: ", 0),
              0u);
  }
}

TEST(Plugin, ExamplePluginLoadsFromAConfigAndItsStageRuns) {
  const std::string path = kPluginDir + "librtnmf_example_plugin.so";
  std::string text = R"(
plugin: ")" + path + R"("
publisher { disabled: true }
stream { id: "p" overload: BLOCK
  source { pacing: MAX max_frames: 50 synthetic { kind: EMG channels: 4 block_samples: 2 seed: 1 } }
  stage { type: "example_gain" plugin { values { key: "gain" value: "0" } } }
})";
  // Parsing loads the plugin, so its stage type validates.
  Pipeline p(parse_pipeline(text, "plugin.pbtxt"));
  test::CollectSink* out = test::run_collecting(p, "p", 30);
  ASSERT_NE(out, nullptr) << "the pipeline did not end";
  ASSERT_EQ(out->seqs().size(), 50u);
  for (float v : out->values()) ASSERT_EQ(v, 0.f);  // gain 0 zeroes everything
}

}  // namespace
}  // namespace rtnmf
