// Pipeline configuration: Protocol Buffers text format checked against proto/config.proto.
#pragma once

#include <string>
#include <vector>

#include "config.pb.h"
#include "engine/runtime/stage.h"

namespace rtnmf {

// Parses pipeline text. `origin` names the text in errors (a file path, or "<builtin:NAME>").
// Throws ConfigError "origin:line: field: reason" (line 1-based) on syntax errors, unknown fields
// and invalid values (see validate_pipeline). Allocates; call before anything starts.
v1::PipelineConfig parse_pipeline(const std::string& text, const std::string& origin);
// Reads and parses a *.pbtxt file. Throws ConfigError naming the file.
v1::PipelineConfig load_pipeline_file(const std::string& path);

// Checks what the schema cannot: unique stream ids and stage names, a source per stream, known
// stage types and source kinds, sane numbers. `text` (may be empty) is used to report line numbers.
// Throws ConfigError "origin:line: field: reason".
void validate_pipeline(const v1::PipelineConfig& config, const std::string& text,
                       const std::string& origin);

// Applies `--set path=value` overrides. path is `stage.field[.field...]`, `stream.stage.field`,
// `source.field` or `stream.source.field`; stage names are StageConfig.name (default: type).
// The field is looked up by name inside the stage's parameter messages (or, for plugin stages,
// set in its PluginParams map). Throws ConfigError "--set path: reason".
void apply_override(v1::PipelineConfig& config, const std::string& assignment);

// The value of `key` in plugin parameters (the last one wins), or null when absent.
const std::string* plugin_value(const v1::PluginParams& params, const std::string& key);

// The effective name of a stage (its `name`, or its `type` when unnamed).
std::string stage_name(const v1::StageConfig& stage);
// The name of the SourceConfig oneof case that is set ("synthetic", "raw", ...), or "".
std::string source_kind(const v1::SourceConfig& source);

// Built-in pipelines (`rtnmf replay --pipeline NAME`, `rtnmf demo`). Families add theirs with a
// static BuiltinPipelineRegistration. Text is a PipelineConfig in text format.
struct BuiltinPipelineRegistration {
  BuiltinPipelineRegistration(const std::string& name, std::string summary, std::string text);
};
// The text of a built-in pipeline, or "" when unknown.
std::string builtin_pipeline(const std::string& name);
std::vector<std::pair<std::string, std::string>> builtin_pipelines();  // name, summary

}  // namespace rtnmf
