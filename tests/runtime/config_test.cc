#include "engine/runtime/config.h"

#include <gtest/gtest.h>

#include <fstream>

namespace rtnmf {
namespace {

std::string error_of(const std::string& text) {
  try {
    parse_pipeline(text, "p.pbtxt");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Config, UnknownFieldIsReportedWithFileLineAndColumn) {
  EXPECT_EQ(error_of("name: \"x\"\nstream {\n  id: \"a\"\n  colour: 3\n}\n"),
            "p.pbtxt:4:9: Message type \"rtnmf.v1.StreamConfig\" has no field named \"colour\".");
}

TEST(Config, WrongValueTypeIsReportedWithItsLine) {
  EXPECT_EQ(error_of("stream {\n  id: \"a\"\n  queue_depth: \"many\"\n}\n"),
            "p.pbtxt:3:16: Expected integer, got: \"many\"");
}

TEST(Config, UnknownStageTypeNamesTheStageAndTheKnownTypes) {
  std::string e = error_of(
      "stream {\n  id: \"a\"\n  source { synthetic {} }\n  stage { type: \"rectfy\" }\n}\n");
  EXPECT_EQ(e.rfind("p.pbtxt:4: stream 'a'.stage[0].type: unknown stage type 'rectfy' (known: ",
                    0),
            0u)
      << e;
  EXPECT_NE(e.find("rectify"), std::string::npos);
}

TEST(Config, MissingSourceIsAnError) {
  EXPECT_EQ(error_of("stream {\n  id: \"a\"\n}\n"), "p.pbtxt:1: stream 'a'.source: missing");
}

TEST(Config, DuplicateStreamIdIsAnError) {
  EXPECT_EQ(error_of("stream { id: \"a\" source { synthetic {} } }\n"
                     "stream {\n  id: \"a\"\n  source { synthetic {} } }\n"),
            "p.pbtxt:3: stream 'a'.id: duplicate stream id");
}

TEST(Config, DuplicateStageNameAsksForDistinctNames) {
  EXPECT_EQ(error_of("stream { id: \"a\" source { synthetic {} }\n"
                     "  stage { type: \"rectify\" }\n  stage {\n    type: \"rectify\" } }\n"),
            "p.pbtxt:4: stream 'a'.stage[1].name: duplicate stage name 'rectify' (set distinct "
            "names)");
}

TEST(Config, QueueDepthOfOneIsRefused) {
  EXPECT_EQ(error_of("stream {\n  id: \"a\"\n  source { synthetic {} }\n  queue_depth: 1\n}\n"),
            "p.pbtxt:4: stream 'a'.queue_depth: must be between 2 and 65536 (or unset for 16)");
}

TEST(Config, StreamIdMustBeUsableAsATopic) {
  EXPECT_EQ(error_of("stream {\n  id: \"a/b\"\n  source { synthetic {} }\n}\n"),
            "p.pbtxt:2: stream 'a/b'.id: only letters, digits, '_' and '-' are allowed (it "
            "becomes a topic)");
}

TEST(Config, MissingFileIsNamed) {
  try {
    load_pipeline_file("/nonexistent/x.pbtxt");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "/nonexistent/x.pbtxt: cannot open pipeline file");
  }
}

TEST(Config, SetOverridesAStageParameterByName) {
  v1::PipelineConfig c = parse_pipeline(
      "stream { id: \"a\" source { synthetic { rate_hz: 30 } } stage { type: \"rectify\" name: "
      "\"rect\" rectify { threshold: 1 } } }",
      "p");
  apply_override(c, "rect.threshold=2.5");
  EXPECT_FLOAT_EQ(c.stream(0).stage(0).rectify().threshold(), 2.5f);
  apply_override(c, "source.rate_hz=100");
  EXPECT_DOUBLE_EQ(c.stream(0).source().synthetic().rate_hz(), 100);
  apply_override(c, "a.source.seed=9");
  EXPECT_EQ(c.stream(0).source().synthetic().seed(), 9u);
}

TEST(Config, SetRejectsUnknownNamesAndBadValues) {
  v1::PipelineConfig c = parse_pipeline(
      "stream { id: \"a\" source { synthetic {} } stage { type: \"rectify\" } }", "p");
  auto err = [&](const std::string& s) {
    try {
      apply_override(c, s);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(err("nope.threshold=1"), "--set nope.threshold: no stage or source named 'nope'");
  EXPECT_EQ(err("rectify.thresh=1"), "--set rectify.thresh: no parameter 'thresh'");
  EXPECT_EQ(err("rectify.threshold=abc"),
            "--set rectify.threshold: 'abc' is not a valid float for threshold");
  EXPECT_EQ(err("rectify"), "--set rectify: expected NAME.PARAM=VALUE");
}

}  // namespace
}  // namespace rtnmf
