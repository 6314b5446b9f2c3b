// Stages and sources are created by name. Built-ins self-register with RTNMF_REGISTER_STAGE /
// RTNMF_REGISTER_SOURCE; plugins register through their entry point (plugin_loader.h).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/runtime/stage.h"

namespace rtnmf {

using StageFactory = std::function<std::unique_ptr<Stage>(const v1::StageConfig&)>;
using SourceFactory = std::function<std::unique_ptr<Source>()>;

class Registry {
 public:
  // The process-wide registry. Registration happens at static-initialisation time and plugin
  // load time (single-threaded); look-ups happen before streams start.
  static Registry& instance();

  // Throws std::runtime_error if the name is taken.
  void add_stage(const std::string& type, std::string summary, StageFactory factory);
  // `kind` is the SourceConfig oneof field name ("synthetic", "raw", "zmq", "imaging_file", ...)
  // or, for plugin sources, the value of the "type" key of their PluginParams.
  void add_source(const std::string& kind, std::string summary, SourceFactory factory);

  // Throws ConfigError naming the unknown type and listing the known ones.
  std::unique_ptr<Stage> make_stage(const v1::StageConfig& config) const;
  std::unique_ptr<Source> make_source(const std::string& kind) const;

  bool has_stage(const std::string& type) const { return stages_.count(type) != 0; }
  bool has_source(const std::string& kind) const { return sources_.count(kind) != 0; }
  std::vector<std::pair<std::string, std::string>> stage_types() const;
  std::vector<std::pair<std::string, std::string>> source_kinds() const;

 private:
  struct StageEntry {
    std::string summary;
    StageFactory factory;
  };
  struct SourceEntry {
    std::string summary;
    SourceFactory factory;
  };
  std::map<std::string, StageEntry> stages_;
  std::map<std::string, SourceEntry> sources_;
};

struct StageRegistration {
  StageRegistration(const std::string& type, std::string summary, StageFactory factory) {
    Registry::instance().add_stage(type, std::move(summary), std::move(factory));
  }
};
struct SourceRegistration {
  SourceRegistration(const std::string& kind, std::string summary, SourceFactory factory) {
    Registry::instance().add_source(kind, std::move(summary), std::move(factory));
  }
};

#define RTNMF_CONCAT_INNER(a, b) a##b
#define RTNMF_CONCAT(a, b) RTNMF_CONCAT_INNER(a, b)
// One line per built-in stage: RTNMF_REGISTER_STAGE("rectify", "max(x - t, 0)", RectifyStage);
#define RTNMF_REGISTER_STAGE(type, summary, Class)                                      \
  static ::rtnmf::StageRegistration RTNMF_CONCAT(rtnmf_stage_reg_, __LINE__)(           \
      type, summary, [](const ::rtnmf::v1::StageConfig& c) -> std::unique_ptr<::rtnmf::Stage> { \
        return std::make_unique<Class>(c);                                              \
      })
#define RTNMF_REGISTER_SOURCE(kind, summary, Class)                               \
  static ::rtnmf::SourceRegistration RTNMF_CONCAT(rtnmf_source_reg_, __LINE__)(   \
      kind, summary, []() -> std::unique_ptr<::rtnmf::Source> { return std::make_unique<Class>(); })

}  // namespace rtnmf
