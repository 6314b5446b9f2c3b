#include "engine/runtime/registry.h"

#include <time.h>

#include "engine/runtime/clock.h"

namespace rtnmf {

Registry& Registry::instance() {
  static Registry r;
  return r;
}

void Registry::add_stage(const std::string& type, std::string summary, StageFactory factory) {
  if (!stages_.emplace(type, StageEntry{std::move(summary), std::move(factory)}).second)
    throw std::runtime_error("stage type '" + type + "' is registered twice");
}

void Registry::add_source(const std::string& kind, std::string summary, SourceFactory factory) {
  if (!sources_.emplace(kind, SourceEntry{std::move(summary), std::move(factory)}).second)
    throw std::runtime_error("source kind '" + kind + "' is registered twice");
}

std::unique_ptr<Stage> Registry::make_stage(const v1::StageConfig& config) const {
  auto it = stages_.find(config.type());
  if (it == stages_.end()) {
    std::string known;
    for (auto& [k, _] : stages_) known += (known.empty() ? "" : ", ") + k;
    throw ConfigError("unknown stage type '" + config.type() + "' (known: " + known + ")");
  }
  return it->second.factory(config);
}

std::unique_ptr<Source> Registry::make_source(const std::string& kind) const {
  auto it = sources_.find(kind);
  if (it == sources_.end()) throw ConfigError("unknown source kind '" + kind + "'");
  return it->second.factory();
}

std::vector<std::pair<std::string, std::string>> Registry::stage_types() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& [k, e] : stages_) out.emplace_back(k, e.summary);
  return out;
}

std::vector<std::pair<std::string, std::string>> Registry::source_kinds() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& [k, e] : sources_) out.emplace_back(k, e.summary);
  return out;
}

StreamSpec Stage::start(const StreamSpec& in, const StageContext& ctx) {
  name_ = config_.name().empty() ? config_.type() : config_.name();
  latency_.reset();
  try {
    return do_start(in, ctx);
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception& e) {
    throw ConfigError(where() + e.what());
  }
}

std::string Stage::where() const {
  std::string n = config_.name().empty() ? config_.type() : config_.name();
  return "stage '" + n + "' (" + config_.type() + "): ";
}

std::int64_t Stage::clock_ns() { return now_ns(); }

void sleep_until_ns(std::int64_t deadline_ns) {
  // Sleep most of the way, then spin the last 100 µs: the kernel's timer slack would otherwise
  // add ~50 µs of jitter to every paced frame.
  constexpr std::int64_t kSpin = 100'000;
  std::int64_t now = now_ns();
  if (deadline_ns - now > kSpin) {
    timespec ts;
    std::int64_t wake = deadline_ns - kSpin;
    ts.tv_sec = wake / 1000000000LL;
    ts.tv_nsec = wake % 1000000000LL;
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
  }
  while (now_ns() < deadline_ns) {
  }
}

}  // namespace rtnmf
