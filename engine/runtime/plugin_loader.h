// Loading stage plugins (shared objects) with dlopen.
#pragma once

#include <cstdint>
#include <string>

namespace rtnmf {

class Registry;

// Bump when Stage, Source, Frame, StreamSpec, Registry or the proto messages change layout.
constexpr std::uint32_t kPluginAbiVersion = 4;  // 2: Stage::after_frame, StageContext::slow_cpus; 3: Stage::model_swaps; 4: Stage::warm

extern "C" {
// What a plugin's entry point returns. Plain C so the version can be read before anything else.
struct RtnmfPluginInfo {
  std::uint32_t abi_version;  // must equal kPluginAbiVersion
  const char* name;
  const char* version;
  // Registers the plugin's stages/sources. Called only after the ABI check passed.
  void (*register_all)(Registry* registry);
};
// Every plugin exports exactly this symbol.
typedef const RtnmfPluginInfo* (*RtnmfPluginEntryFn)();
}
constexpr const char* kPluginEntrySymbol = "rtnmf_plugin_entry";

// Loads the shared object at `path`, checks its ABI version, then lets it register. Throws
// ConfigError naming the file (and both versions on a mismatch). Main thread, before start.
// Loading the same path twice is a no-op.
void load_plugin(const std::string& path);

}  // namespace rtnmf

// Use in exactly one file of a plugin.
#define RTNMF_PLUGIN(plugin_name, plugin_version, register_fn)                                   \
  extern "C" __attribute__((visibility("default"))) const ::rtnmf::RtnmfPluginInfo*             \
  rtnmf_plugin_entry() {                                                                         \
    static const ::rtnmf::RtnmfPluginInfo info{::rtnmf::kPluginAbiVersion, plugin_name,          \
                                               plugin_version, register_fn};                     \
    return &info;                                                                                \
  }
