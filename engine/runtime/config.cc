#include "engine/runtime/config.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/reflection.h>
#include <google/protobuf/text_format.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <thread>
#include <sstream>

#include "engine/runtime/plugin_loader.h"
#include "engine/runtime/registry.h"

namespace rtnmf {

namespace pb = google::protobuf;

namespace {

class CollectErrors : public pb::io::ErrorCollector {
 public:
  explicit CollectErrors(std::string origin) : origin_(std::move(origin)) {}
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    if (first_.empty())
      first_ = origin_ + ":" + std::to_string(line + 1) + ":" + std::to_string(column + 1) +
               ": " + message;
  }
  void AddWarning(int, pb::io::ColumnNumber, const std::string&) override {}
  const std::string& first() const { return first_; }

 private:
  std::string origin_;
  std::string first_;
};

// Locates fields in the parsed text for error messages. A null tree (no text) yields line 0.
struct Where {
  const pb::TextFormat::ParseInfoTree* tree = nullptr;
  std::string origin;

  int line_of(const pb::Message& msg, const char* field, int index = -1) const {
    if (!tree) return 0;
    const pb::FieldDescriptor* fd = msg.GetDescriptor()->FindFieldByName(field);
    if (!fd) return 0;
    pb::TextFormat::ParseLocation loc = tree->GetLocation(fd, index);
    return loc.line + 1;
  }
  Where nested(const pb::Message& msg, const char* field, int index = -1) const {
    Where w{nullptr, origin};
    if (tree) {
      const pb::FieldDescriptor* fd = msg.GetDescriptor()->FindFieldByName(field);
      if (fd) w.tree = tree->GetTreeForNested(fd, index);
    }
    return w;
  }
  [[noreturn]] void fail(int line, const std::string& field, const std::string& reason) const {
    std::string where = origin;
    if (line > 0) where += ":" + std::to_string(line);
    throw ConfigError(where + ": " + field + ": " + reason);
  }
};

std::map<std::string, std::pair<std::string, std::string>>& builtin_table() {
  static std::map<std::string, std::pair<std::string, std::string>> table;
  return table;
}

void validate_impl(const v1::PipelineConfig& cfg, const Where& w) {
  if (cfg.stream_size() == 0) w.fail(1, "stream", "a pipeline needs at least one stream");
  // Plugins first: their stage types are checked below.
  for (int i = 0; i < cfg.plugin_size(); ++i) {
    try {
      load_plugin(cfg.plugin(i));
    } catch (const ConfigError& e) {
      w.fail(w.line_of(cfg, "plugin", i), "plugin", e.what());
    }
  }
  const Registry& reg = Registry::instance();
  std::set<std::string> ids;
  for (int i = 0; i < cfg.stream_size(); ++i) {
    const v1::StreamConfig& s = cfg.stream(i);
    Where ws = w.nested(cfg, "stream", i);
    int sline = w.line_of(cfg, "stream", i);
    std::string sname = "stream[" + std::to_string(i) + "]";
    if (s.id().empty()) w.fail(sline, sname + ".id", "missing (every stream needs an id)");
    sname = "stream '" + s.id() + "'";
    for (char c : s.id())
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'))
        ws.fail(ws.line_of(s, "id"), sname + ".id",
                "only letters, digits, '_' and '-' are allowed (it becomes a topic)");
    if (!ids.insert(s.id()).second)
      ws.fail(ws.line_of(s, "id"), sname + ".id", "duplicate stream id");
    if (!s.has_source()) ws.fail(sline, sname + ".source", "missing");
    Where wsrc = ws.nested(s, "source");
    std::string kind = source_kind(s.source());
    if (kind.empty())
      ws.fail(ws.line_of(s, "source"), sname + ".source",
              "no source kind set (synthetic, raw, zmq, imaging_file, emg_file, plugin)");
    if (kind == "plugin") {
      const std::string* type = plugin_value(s.source().plugin(), "type");
      if (!type)
        wsrc.fail(wsrc.line_of(s.source(), "plugin"), sname + ".source.plugin",
                  "needs a values { key: \"type\" value: \"...\" } naming the plugin source");
      kind = *type;
    }
    if (!reg.has_source(kind)) {
      std::string known;
      for (auto& [k, _] : reg.source_kinds()) known += (known.empty() ? "" : ", ") + k;
      wsrc.fail(wsrc.line_of(s.source(), kind.c_str()), sname + ".source." + kind,
                "unknown source kind (known: " + known + ")");
    }
    if (s.source().speed() < 0)
      wsrc.fail(wsrc.line_of(s.source(), "speed"), sname + ".source.speed", "must be >= 0");
    if (s.queue_depth() == 1 || s.queue_depth() > 65536)
      ws.fail(ws.line_of(s, "queue_depth"), sname + ".queue_depth",
              "must be between 2 and 65536 (or unset for 16)");
    if (s.publish_queue_depth() == 1 || s.publish_queue_depth() > 65536)
      ws.fail(ws.line_of(s, "publish_queue_depth"), sname + ".publish_queue_depth",
              "must be between 2 and 65536 (or unset)");
    std::set<std::string> names;
    for (int j = 0; j < s.stage_size(); ++j) {
      const v1::StageConfig& st = s.stage(j);
      int line = ws.line_of(s, "stage", j);
      Where wst = ws.nested(s, "stage", j);
      std::string where = sname + ".stage[" + std::to_string(j) + "]";
      if (st.type().empty()) ws.fail(line, where + ".type", "missing");
      if (!reg.has_stage(st.type())) {
        std::string known;
        for (auto& [k, _] : reg.stage_types()) known += (known.empty() ? "" : ", ") + k;
        wst.fail(wst.line_of(st, "type"), where + ".type",
                 "unknown stage type '" + st.type() + "' (known: " + known + ")");
      }
      if (!names.insert(stage_name(st)).second)
        wst.fail(wst.line_of(st, st.name().empty() ? "type" : "name"), where + ".name",
                 "duplicate stage name '" + stage_name(st) + "' (set distinct names)");
    }
  }
  const unsigned cpus = std::thread::hardware_concurrency();
  for (int i = 0; i < cfg.realtime_cpus_size(); ++i)
    if (cpus > 0 && cfg.realtime_cpus(i) >= cpus)
      w.fail(w.line_of(cfg, "realtime_cpus", i), "realtime_cpus",
             "CPU " + std::to_string(cfg.realtime_cpus(i)) + " does not exist (this machine has " +
                 std::to_string(cpus) + ", numbered from 0)");
  if (cfg.realtime_priority() > 98)
    w.fail(w.line_of(cfg, "realtime_priority"), "realtime_priority",
           "must be between 1 and 98 (or 0 for normal scheduling)");
  const v1::PublisherConfig& p = cfg.publisher();
  if (p.stats_interval_s() < 0)
    w.nested(cfg, "publisher").fail(w.nested(cfg, "publisher").line_of(p, "stats_interval_s"),
                                    "publisher.stats_interval_s", "must be >= 0");
}

}  // namespace

const std::string* plugin_value(const v1::PluginParams& params, const std::string& key) {
  const std::string* found = nullptr;
  for (const auto& kv : params.values())
    if (kv.key() == key) found = &kv.value();
  return found;
}

std::string stage_name(const v1::StageConfig& stage) {
  return stage.name().empty() ? stage.type() : stage.name();
}

std::string source_kind(const v1::SourceConfig& source) {
  const pb::OneofDescriptor* od = source.GetDescriptor()->FindOneofByName("kind");
  const pb::FieldDescriptor* fd = source.GetReflection()->GetOneofFieldDescriptor(source, od);
  return fd ? fd->name() : std::string();
}

v1::PipelineConfig parse_pipeline(const std::string& text, const std::string& origin) {
  v1::PipelineConfig cfg;
  pb::TextFormat::Parser parser;
  CollectErrors errors(origin);
  parser.RecordErrorsTo(&errors);
  pb::TextFormat::ParseInfoTree tree;
  parser.WriteLocationsTo(&tree);
  if (!parser.ParseFromString(text, &cfg)) {
    // protobuf's message is "line:col: reason"; keep the file:line: prefix style.
    throw ConfigError(errors.first().empty() ? origin + ": cannot parse pipeline" : errors.first());
  }
  validate_impl(cfg, Where{&tree, origin});
  return cfg;
}

v1::PipelineConfig load_pipeline_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot open pipeline file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_pipeline(ss.str(), path);
}

void validate_pipeline(const v1::PipelineConfig& config, const std::string& text,
                       const std::string& origin) {
  if (text.empty()) {
    validate_impl(config, Where{nullptr, origin});
    return;
  }
  v1::PipelineConfig reparsed;
  pb::TextFormat::Parser parser;
  pb::TextFormat::ParseInfoTree tree;
  parser.WriteLocationsTo(&tree);
  parser.ParseFromString(text, &reparsed);
  validate_impl(config, Where{&tree, origin});
}

namespace {

// Finds a singular field called `name` inside `msg` or its set (or, failing that, any) nested
// messages, depth first, without touching `msg`. On success `chain` holds the message fields
// leading to it and `out` the field itself.
bool find_field(const pb::Message& msg, const std::string& name,
                std::vector<const pb::FieldDescriptor*>& chain, const pb::FieldDescriptor** out,
                bool only_set) {
  const pb::Descriptor* d = msg.GetDescriptor();
  if (const pb::FieldDescriptor* fd = d->FindFieldByName(name); fd && !fd->is_repeated()) {
    *out = fd;
    return true;
  }
  const pb::Reflection* r = msg.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* fd = d->field(i);
    if (fd->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE || fd->is_repeated()) continue;
    if (only_set && !r->HasField(msg, fd)) continue;
    chain.push_back(fd);
    if (find_field(r->GetMessage(msg, fd), name, chain, out, only_set)) return true;
    chain.pop_back();
  }
  return false;
}

// Walks `chain` from `msg`, creating the nested messages on the way. Returns the last one.
pb::Message* descend(pb::Message* msg, const std::vector<const pb::FieldDescriptor*>& chain) {
  for (const pb::FieldDescriptor* fd : chain) msg = msg->GetReflection()->MutableMessage(msg, fd);
  return msg;
}

void set_field(pb::Message* root, const std::vector<std::string>& path, const std::string& value,
               const std::string& what) {
  pb::Message* msg = root;
  const pb::FieldDescriptor* fd = nullptr;
  for (size_t i = 0; i < path.size(); ++i) {
    const pb::FieldDescriptor* f = nullptr;
    pb::Message* holder = nullptr;
    if (i == 0) {
      std::vector<const pb::FieldDescriptor*> chain;
      if (find_field(*msg, path[i], chain, &f, true) ||
          (chain.clear(), find_field(*msg, path[i], chain, &f, false)))
        holder = descend(msg, chain);
    } else {
      f = msg->GetDescriptor()->FindFieldByName(path[i]);
      holder = f ? msg : nullptr;
    }
    if (!holder || !f) throw ConfigError("--set " + what + ": no parameter '" + path[i] + "'");
    if (i + 1 < path.size()) {
      if (f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE)
        throw ConfigError("--set " + what + ": '" + path[i] + "' is not a message");
      msg = holder->GetReflection()->MutableMessage(holder, f);
    } else {
      msg = holder;
      fd = f;
    }
  }
  if (fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE)
    throw ConfigError("--set " + what + ": '" + fd->name() + "' is a message, name a field in it");
  std::string text = value;
  const bool numeric = fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_FLOAT ||
                       fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_DOUBLE ||
                       fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_INT32 ||
                       fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_INT64 ||
                       fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_UINT32 ||
                       fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_UINT64;
  if (numeric) {
    // The text-format parser takes identifiers such as "abc" for floats; insist on a number.
    char* end = nullptr;
    std::strtod(value.c_str(), &end);
    if (value.empty() || end != value.c_str() + value.size())
      throw ConfigError("--set " + what + ": '" + value + "' is not a valid " + fd->type_name() +
                        " for " + fd->name());
  }
  if (fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING) {
    std::string quoted = "\"";
    for (char c : value) {
      if (c == '"' || c == '\\') quoted += '\\';
      quoted += c;
    }
    text = quoted + "\"";
  }
  if (!pb::TextFormat::ParseFieldValueFromString(text, fd, msg))
    throw ConfigError("--set " + what + ": '" + value + "' is not a valid " + fd->type_name() +
                      " for " + fd->name());
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

}  // namespace

void apply_override(v1::PipelineConfig& config, const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError("--set " + assignment + ": expected NAME.PARAM=VALUE");
  std::string path = assignment.substr(0, eq);
  std::string value = assignment.substr(eq + 1);
  std::vector<std::string> parts = split(path, '.');
  if (parts.size() < 2) throw ConfigError("--set " + path + ": expected NAME.PARAM=VALUE");

  // Optional leading stream id.
  std::vector<v1::StreamConfig*> streams;
  size_t first = 0;
  for (auto& s : *config.mutable_stream())
    if (s.id() == parts[0] && parts.size() >= 3) {
      streams.push_back(&s);
      first = 1;
    }
  if (streams.empty())
    for (auto& s : *config.mutable_stream()) streams.push_back(&s);
  const std::string& target = parts[first];
  std::vector<std::string> field_path(parts.begin() + first + 1, parts.end());

  std::vector<pb::Message*> hits;
  std::vector<v1::PluginParams*> plugin_hits;
  for (v1::StreamConfig* s : streams) {
    if (target == "source") {
      hits.push_back(s->mutable_source());
      continue;
    }
    for (auto& st : *s->mutable_stage())
      if (stage_name(st) == target) {
        if (st.has_plugin() && field_path.size() == 1)
          plugin_hits.push_back(st.mutable_plugin());
        else
          hits.push_back(&st);
      }
  }
  if (hits.size() + plugin_hits.size() == 0)
    throw ConfigError("--set " + path + ": no stage or source named '" + target + "'");
  if (hits.size() + plugin_hits.size() > 1)
    throw ConfigError("--set " + path + ": '" + target +
                      "' is ambiguous across streams; prefix the stream id");
  if (!plugin_hits.empty()) {
    v1::KeyValue* kv = plugin_hits[0]->add_values();
    kv->set_key(field_path[0]);
    kv->set_value(value);
    return;
  }
  set_field(hits[0], field_path, value, path);
}

BuiltinPipelineRegistration::BuiltinPipelineRegistration(const std::string& name,
                                                         std::string summary, std::string text) {
  builtin_table()[name] = {std::move(summary), std::move(text)};
}

std::string builtin_pipeline(const std::string& name) {
  auto it = builtin_table().find(name);
  return it == builtin_table().end() ? std::string() : it->second.second;
}

std::vector<std::pair<std::string, std::string>> builtin_pipelines() {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& [k, v] : builtin_table()) out.emplace_back(k, v.first);
  return out;
}

}  // namespace rtnmf
