// Bad-frame lists (engine/io/frame_list.h) and the imaging_file source that marks their frames.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "engine/io/frame_list.h"
#include "engine/io/tiff_writer.h"
#include "engine/runtime/registry.h"

namespace rtnmf::io {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("rtnmf_fl_" + std::to_string(::getpid()) + "_" + name)).string();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// A v1 .npy file of n elements of `descr` (e.g. "<i8", "|b1") with the given raw bytes.
void write_npy_raw(const std::string& path, const std::string& descr, std::size_t n, const void* data, std::size_t bytes) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + std::to_string(n) + ",), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY\x01\x00", 8);
  const unsigned char len[2] = {static_cast<unsigned char>(header.size() & 0xff), static_cast<unsigned char>(header.size() >> 8)};
  out.write(reinterpret_cast<const char*>(len), 2);
  out << header;
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
}

std::string error_of(const std::string& path) {
  try {
    read_frame_list(path);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(FrameList, ReadsIndicesAndRangesFromText) {
  const std::string path = temp_path("stim.txt");
  write_text(path, "# stimulation frames\n120, 5\n300-303 7\t5  # repeated\n\n0\n");
  EXPECT_EQ(read_frame_list(path), (std::vector<std::uint64_t>{0, 5, 7, 120, 300, 301, 302, 303}));
  write_text(path, "# nothing marked\n");
  EXPECT_TRUE(read_frame_list(path).empty());
  write_text(path, "1\n2\nx1 4\n");
  EXPECT_EQ(error_of(path), path + ": line 3: 'x1' is not a frame index or range (N or A-B)");
  write_text(path, "-3\n");
  EXPECT_EQ(error_of(path), path + ": line 1: '-3' is not a frame index or range (N or A-B)");
  write_text(path, "1.5\n");
  EXPECT_EQ(error_of(path), path + ": line 1: '1.5' is not a frame index or range (N or A-B)");
  write_text(path, "10\n\n40-30\n");
  EXPECT_EQ(error_of(path), path + ": line 3: range 40-30 ends before it starts");
  std::filesystem::remove(path);
  EXPECT_EQ(error_of(path), path + ": cannot open for reading");
}

TEST(FrameList, ReadsSuite2pNpyIndicesAndBoolMasks) {
  const std::string path = temp_path("bad_frames.npy");
  const std::int64_t idx[4] = {9, 2, 2, 40};
  write_npy_raw(path, "<i8", 4, idx, sizeof idx);
  EXPECT_EQ(read_frame_list(path), (std::vector<std::uint64_t>{2, 9, 40}));
  const std::uint8_t mask[6] = {0, 1, 1, 0, 0, 1};  // a mask, not indices 0 and 1
  write_npy_raw(path, "|b1", 6, mask, sizeof mask);
  EXPECT_EQ(read_frame_list(path), (std::vector<std::uint64_t>{1, 2, 5}));
  const std::int32_t neg[3] = {4, 8, -2};
  write_npy_raw(path, "<i4", 3, neg, sizeof neg);
  EXPECT_EQ(error_of(path), path + ": element 2: -2 is not a frame index (a whole number >= 0)");
  const float frac[2] = {3.0f, 2.5f};
  write_npy_raw(path, "<f4", 2, frac, sizeof frac);
  EXPECT_EQ(error_of(path), path + ": element 1: 2.5 is not a frame index (a whole number >= 0)");
  std::filesystem::remove(path);
}

// The source marks exactly the listed frames (kFrameMarkedBad; flags are reset per frame by the
// pipeline, so the test clears them as it does); a list naming a frame past the movie's end, or
// a bad list, is refused at open with the file named.
TEST(ImagingFileSource, MarksTheFramesOfItsBadFrameList) {
  const std::string movie = temp_path("movie.tif"), list = temp_path("bad.txt");
  {
    TiffWriter w(movie, 8, 8);
    std::vector<float> fr(64, 3.0f);
    for (int t = 0; t < 12; ++t) w.write_frame(fr.data());
  }
  write_text(list, "3-4\n10\n");
  v1::SourceConfig cfg;
  cfg.mutable_imaging_file()->set_path(movie);
  cfg.mutable_imaging_file()->set_bad_frames(list);
  cfg.set_pacing(v1::MAX);
  std::unique_ptr<Source> src = Registry::instance().make_source("imaging_file");
  src->open(cfg, "img");
  Frame f;
  f.allocate({64});
  std::vector<std::uint64_t> marked;
  std::uint64_t frames = 0;
  while (true) {
    f.header = FrameHeader{};
    if (src->read(f) != ReadStatus::kFrame) break;
    ++frames;
    if (f.header.flags & kFrameMarkedBad) marked.push_back(f.header.seq);
  }
  EXPECT_EQ(frames, 12u);
  EXPECT_EQ(marked, (std::vector<std::uint64_t>{3, 4, 10}));
  auto refused = [&](const std::string& text) {
    write_text(list, text);
    std::unique_ptr<Source> s = Registry::instance().make_source("imaging_file");
    try {
      s->open(cfg, "img");
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("(opened)");
  };
  EXPECT_EQ(refused("2\n12\n"), "source.imaging_file.bad_frames: " + list + " lists frame 12, but " + movie +
                                    " has 12 frames (0-based indices)");
  EXPECT_EQ(refused("2\nseven\n"),
            "source.imaging_file.bad_frames: " + list + ": line 2: 'seven' is not a frame index or range (N or A-B)");
  std::filesystem::remove(movie);
  std::filesystem::remove(list);
}

}  // namespace
}  // namespace rtnmf::io
