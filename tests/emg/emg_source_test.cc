// The "emg_file" source through the registry: format detection, shapes and rates, channel names
// handed to the stages, rejected blocks counted (or ending the stream with stop_on_bad_input),
// and configuration errors before anything starts.
#include <edflib.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "engine/runtime/registry.h"
#include "plugins/emg/channel_names.h"
#include "tests/support/scratch.h"

namespace rtnmf {
namespace {

std::string temp_path(const std::string& name) {
  return rtnmf::test::scratch_path(name);
}

v1::SourceConfig source_for(const std::string& path) {
  v1::SourceConfig c;
  c.set_pacing(v1::MAX);
  c.mutable_emg_file()->set_path(path);
  return c;
}

Frame frame_for(const StreamSpec& spec) {
  Frame f;
  f.allocate({spec.rows * spec.cols});
  return f;
}

TEST(EmgFileSource, ReadsEdfBlocksAndPublishesChannelNames) {
  const std::string p = temp_path("rec.edf");
  const int h = edfopen_file_writeonly(p.c_str(), EDFLIB_FILETYPE_EDFPLUS, 2);
  ASSERT_GE(h, 0);
  for (int s = 0; s < 2; ++s) {
    edf_set_samplefrequency(h, s, 1000);
    edf_set_physical_maximum(h, s, 100.0);
    edf_set_physical_minimum(h, s, -100.0);
    edf_set_digital_maximum(h, s, 32767);
    edf_set_digital_minimum(h, s, -32768);
    edf_set_label(h, s, s == 0 ? "Biceps" : "Triceps");
  }
  std::vector<double> buf(1000);
  for (int sec = 0; sec < 2; ++sec)
    for (int s = 0; s < 2; ++s) {
      for (int i = 0; i < 1000; ++i) buf[i] = s == 0 ? 10.0 : -10.0;
      ASSERT_EQ(edfwrite_physical_samples(h, buf.data()), 0);
    }
  edfclose_file(h);

  std::unique_ptr<Source> src = Registry::instance().make_source("emg_file");
  v1::SourceConfig cfg = source_for(p);
  cfg.mutable_emg_file()->set_block_samples(8);
  StreamSpec spec = src->open(cfg, "arm");
  EXPECT_EQ(spec.rows, 2u);
  EXPECT_EQ(spec.cols, 8u);
  EXPECT_DOUBLE_EQ(spec.sample_rate_hz, 1000.0);
  EXPECT_EQ(src->frame_count(), 250u);
  EXPECT_EQ(emg::detail::channel_names("arm", 2), (std::vector<std::string>{"Biceps", "Triceps"}));
  Frame f = frame_for(spec);
  int frames = 0;
  ReadStatus st;
  while ((st = src->read(f)) == ReadStatus::kFrame) {
    EXPECT_EQ(f.header.seq, static_cast<std::uint64_t>(frames));
    EXPECT_NEAR(f.values()(0, 0), 10.0f, 0.01f);
    EXPECT_NEAR(f.values()(1, 7), -10.0f, 0.01f);
    ++frames;
  }
  EXPECT_EQ(st, ReadStatus::kEnd);
  EXPECT_EQ(frames, 250);
}

TEST(EmgFileSource, RejectedBlocksAreCountedOrEndTheStreamWhenAsked) {
  const std::string p = temp_path("nan.bin");
  std::vector<float> v(3 * 16, 1.0f);
  v[3 * 6 + 1] = std::nanf("");  // sample 6: block 1 of 4-sample blocks
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(v.data()), v.size() * 4);
  for (bool stop : {false, true}) {
    std::unique_ptr<Source> src = Registry::instance().make_source("emg_file");
    v1::SourceConfig cfg = source_for(p);
    cfg.mutable_emg_file()->set_channels(3);
    cfg.mutable_emg_file()->set_sample_rate(500);
    cfg.mutable_emg_file()->set_dtype(v1::DTYPE_FLOAT32);
    cfg.mutable_emg_file()->set_stop_on_bad_input(stop);
    StreamSpec spec = src->open(cfg, "raw");
    EXPECT_EQ(spec.rows, 3u);
    Frame f = frame_for(spec);
    EXPECT_EQ(src->read(f), ReadStatus::kFrame);
    EXPECT_EQ(src->read(f), stop ? ReadStatus::kError : ReadStatus::kRejected);
    EXPECT_EQ(src->error(), p + ": block 1: channel 1: NaN at sample 6");
    if (!stop) {
      EXPECT_EQ(src->rejected(), 1u);
      EXPECT_EQ(src->read(f), ReadStatus::kFrame);
      EXPECT_EQ(f.header.seq, 2u);  // the gap shows which block was lost
      EXPECT_EQ(src->read(f), ReadStatus::kFrame);
      EXPECT_EQ(src->read(f), ReadStatus::kEnd);
    }
  }
}

TEST(EmgFileSource, ConfigurationErrorsNameTheFieldOrFile) {
  auto open_error = [](const v1::SourceConfig& cfg) -> std::string {
    std::unique_ptr<Source> src = Registry::instance().make_source("emg_file");
    try {
      src->open(cfg, "s");
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_EQ(open_error(source_for("")), "source.emg_file.path: missing");
  const std::string odd = temp_path("rec.xyz");
  std::ofstream(odd) << "x";
  EXPECT_EQ(open_error(source_for(odd)),
            "source.emg_file.format: cannot tell the format of '" + odd +
                "' from its extension; set format (EDF, CSV, INTERLEAVED, NPY, HDF5)");
  const std::string bin = temp_path("rec.bin");
  std::ofstream(bin) << "abcd";
  v1::SourceConfig raw = source_for(bin);
  raw.mutable_emg_file()->set_channels(2);
  raw.mutable_emg_file()->set_sample_rate(100);
  EXPECT_EQ(open_error(raw),
            "source.emg_file.dtype: interleaved files need DTYPE_INT16, DTYPE_INT32 or "
            "DTYPE_FLOAT32");
  const std::string csv = temp_path("norate.csv");
  std::ofstream(csv) << "a,b\n1,2\n";
  EXPECT_EQ(open_error(source_for(csv)),
            csv + ": no time column (t, time, time_s) and no sample rate; set source.sample_rate");
  v1::SourceConfig npy = source_for(temp_path("counts.npy"));
  EXPECT_EQ(open_error(npy),
            "source.emg_file.sample_rate: required for matrices (bins per second)");
}

}  // namespace
}  // namespace rtnmf
