#include "engine/runtime/plugin_loader.h"

#include <dlfcn.h>

#include <set>

#include "engine/runtime/registry.h"

namespace rtnmf {

void load_plugin(const std::string& path) {
  static std::set<std::string> loaded;
  if (loaded.count(path)) return;
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* err = dlerror();
    throw ConfigError("plugin " + path + ": cannot load: " + (err ? err : "unknown error"));
  }
  auto entry = reinterpret_cast<RtnmfPluginEntryFn>(dlsym(handle, kPluginEntrySymbol));
  if (!entry) {
    dlclose(handle);
    throw ConfigError("plugin " + path + ": no entry point '" + kPluginEntrySymbol +
                      "' (is it an rtnmf plugin?)");
  }
  const RtnmfPluginInfo* info = entry();
  if (!info || info->abi_version != kPluginAbiVersion) {
    std::string got = info ? std::to_string(info->abi_version) : "none";
    dlclose(handle);
    throw ConfigError("plugin " + path + ": ABI version " + got + " does not match rtnmf's " +
                      std::to_string(kPluginAbiVersion) + "; rebuild the plugin against this rtnmf");
  }
  if (!info->register_all) throw ConfigError("plugin " + path + ": no registration function");
  info->register_all(&Registry::instance());
  loaded.insert(path);  // the handle stays open for the life of the process
}

}  // namespace rtnmf
