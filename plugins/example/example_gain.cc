// An example out-of-tree plugin: a stage that multiplies every sample by a gain.
// Built as a MODULE (plugins/example/CMakeLists.txt) and loaded from a pipeline config:
//   plugin: "build/plugins/example/librtnmf_example_plugin.so"
//   stream { ... stage { type: "example_gain" plugin { values { key: "gain" value: "2.5" } } } }
#include <cstdlib>
#include <string>

#include "engine/runtime/plugin_loader.h"
#include "engine/runtime/registry.h"

namespace {

class ExampleGainStage : public rtnmf::Stage {
 public:
  using Stage::Stage;

 protected:
  // Parses the plugin's parameters once into a plain member (no look-ups per frame).
  rtnmf::StreamSpec do_start(const rtnmf::StreamSpec& in, const rtnmf::StageContext&) override {
    for (const auto& kv : config().plugin().values()) {
      if (kv.key() != "gain")
        throw rtnmf::ConfigError(where() + "unknown parameter '" + kv.key() + "' (known: gain)");
      char* end = nullptr;
      gain_ = std::strtof(kv.value().c_str(), &end);
      if (end == kv.value().c_str() || *end != '\0')
        throw rtnmf::ConfigError(where() + "gain: '" + kv.value() + "' is not a number");
    }
    return in;
  }
  void do_process(rtnmf::Frame& f) override { f.values_flat() *= gain_; }

 private:
  float gain_ = 1.0f;
};

void register_all(rtnmf::Registry* registry) {
  registry->add_stage("example_gain", "multiplies samples by plugin value 'gain' (example plugin)",
                      [](const rtnmf::v1::StageConfig& c) -> std::unique_ptr<rtnmf::Stage> {
                        return std::make_unique<ExampleGainStage>(c);
                      });
}

}  // namespace

#ifdef RTNMF_EXAMPLE_FAKE_ABI
// The test copy claims another ABI version so the loader's refusal can be exercised.
extern "C" __attribute__((visibility("default"))) const rtnmf::RtnmfPluginInfo*
rtnmf_plugin_entry() {
  static const rtnmf::RtnmfPluginInfo info{RTNMF_EXAMPLE_FAKE_ABI, "example_gain", "0.1",
                                           register_all};
  return &info;
}
#else
RTNMF_PLUGIN("example_gain", "0.1", register_all)
#endif
