// Movie readers on small files generated here: TIFF, BigTIFF, ScanImage/ImageJ descriptions,
// HDF5 in both axis orders, raw; truncated files fail at the right frame.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "engine/io/h5.h"
#include "engine/io/movie.h"
#include "engine/io/tiff_writer.h"

namespace rtnmf::io {
namespace {

namespace fs = std::filesystem;

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() /
          ("rtnmf_movie_" + std::to_string(::getpid()) + "_" + name)).string();
}

// Frame t, pixel (r, c): distinct values that fit in uint16.
float pixel_value(int t, int r, int c) { return static_cast<float>(t * 1000 + r * 17 + c); }

std::vector<float> make_frame(int t, int h, int w) {
  std::vector<float> f(static_cast<std::size_t>(h) * w);
  for (int r = 0; r < h; ++r)
    for (int c = 0; c < w; ++c) f[static_cast<std::size_t>(r) * w + c] = pixel_value(t, r, c);
  return f;
}

void write_tiff(const std::string& path, int frames, int h, int w, const TiffWriteOptions& o) {
  TiffWriter wr(path, h, w, o);
  for (int t = 0; t < frames; ++t) wr.write_frame(make_frame(t, h, w).data());
}

void expect_frames(MovieReader& m, int frames, int h, int w) {
  ASSERT_EQ(m.info().frames, frames);
  ASSERT_EQ(m.info().height, static_cast<std::uint32_t>(h));
  ASSERT_EQ(m.info().width, static_cast<std::uint32_t>(w));
  std::vector<float> out(static_cast<std::size_t>(h) * w);
  int t = 0;
  while (m.read_next(out.data())) {
    EXPECT_EQ(out, make_frame(t, h, w)) << "frame " << t;
    ++t;
  }
  EXPECT_EQ(t, frames);
}

TEST(MovieReader, ReadsMultiPageTiffOfEachPixelType) {
  for (PixelType dt : {PixelType::kUint16, PixelType::kInt16, PixelType::kFloat32}) {
    const std::string path = temp_path(std::string("types_") + pixel_type_name(dt) + ".tif");
    TiffWriteOptions o;
    o.dtype = dt;
    write_tiff(path, 6, 5, 7, o);
    auto m = open_movie(path);
    EXPECT_EQ(m->info().dtype, dt);
    EXPECT_EQ(m->info().frame_rate_hz, 0.0);
    expect_frames(*m, 6, 5, 7);
    fs::remove(path);
  }
}

TEST(MovieReader, ReadsBigTiffAndRandomAccess) {
  const std::string path = temp_path("big.tif");
  TiffWriteOptions o;
  o.bigtiff = true;
  write_tiff(path, 9, 4, 3, o);
  auto m = open_movie(path);
  EXPECT_NE(m->info().description.find("BigTIFF"), std::string::npos);
  std::vector<float> out(12);
  m->read_frame(7, out.data());
  EXPECT_EQ(out, make_frame(7, 4, 3));
  m->read_frame(2, out.data());
  EXPECT_EQ(out, make_frame(2, 4, 3));
  expect_frames(*m, 9, 4, 3);
  fs::remove(path);
}

TEST(MovieReader, TakesScanImageFrameRateFromSoftwareOrDescription) {
  const std::string p1 = temp_path("si2016.tif");
  TiffWriteOptions o;
  o.software = "SI.LINE_FORMAT_VERSION = 1\nSI.hRoiManager.scanFrameRate = 30.0\n"
               "SI.hChannels.channelSave = 1\n";
  write_tiff(p1, 3, 4, 4, o);
  EXPECT_DOUBLE_EQ(open_movie(p1)->info().frame_rate_hz, 30.0);

  const std::string p2 = temp_path("si5.tif");
  TiffWriteOptions o2;
  o2.description = "scanimage.SI.hRoiManager.scanFrameRate = 15.253\nframeNumbers = 1\n";
  write_tiff(p2, 3, 4, 4, o2);
  auto m = open_movie(p2);
  EXPECT_DOUBLE_EQ(m->info().frame_rate_hz, 15.253);
  EXPECT_NE(m->info().description.find("ScanImage"), std::string::npos);
  fs::remove(p1);
  fs::remove(p2);
}

TEST(MovieReader, SelectsOneChannelOfInterleavedScanImageTiff) {
  const std::string path = temp_path("si2ch.tif");
  TiffWriteOptions o;
  o.software = "SI.hRoiManager.scanFrameRate = 30\nSI.hChannels.channelSave = [1;2]\n";
  write_tiff(path, 8, 3, 3, o);  // pages: t0c0 t0c1 t1c0 ...
  MovieOptions mo;
  mo.channel = 1;
  auto m = open_movie(path, mo);
  ASSERT_EQ(m->info().frames, 4);
  std::vector<float> out(9);
  m->read_frame(2, out.data());
  EXPECT_EQ(out, make_frame(5, 3, 3));
  fs::remove(path);
}

TEST(MovieReader, ReadsImageJHyperstackFrameInterval) {
  const std::string path = temp_path("imagej.tif");
  TiffWriteOptions o;
  o.description = "ImageJ=1.48v\nimages=5\nframes=5\nfinterval=0.05\nloop=false\n";
  write_tiff(path, 5, 6, 4, o);
  auto m = open_movie(path);
  EXPECT_NEAR(m->info().frame_rate_hz, 20.0, 1e-9);
  EXPECT_NE(m->info().description.find("ImageJ"), std::string::npos);
  expect_frames(*m, 5, 6, 4);
  fs::remove(path);
}

TEST(MovieReader, TruncatedTiffNamesTheFrameAndKeepsTheEarlierOnes) {
  const std::string path = temp_path("trunc.tif");
  write_tiff(path, 10, 16, 16, {});
  const auto full = fs::file_size(path);
  // Each page is 512 bytes of pixels plus its directory; cut inside page 6's pixels.
  const std::uintmax_t page = full / 10;
  fs::resize_file(path, 6 * page + 100);
  auto m = open_movie(path);
  std::vector<float> out(256);
  int good = 0;
  try {
    while (m->read_next(out.data())) {
      EXPECT_EQ(out, make_frame(good, 16, 16));
      ++good;
    }
    FAIL() << "no error for a truncated file";
  } catch (const MovieError& e) {
    EXPECT_EQ(e.frame_index(), good);
    EXPECT_EQ(std::string(e.what()).rfind(path + ": frame " + std::to_string(good) + ": ", 0), 0u)
        << e.what();
  }
  EXPECT_GE(good, 5);
  EXPECT_LE(good, 6);
  fs::remove(path);
}

TEST(MovieReader, TruncatedPixelDataOfALastPageIsAnErrorAtThatFrame) {
  // Directory written before its pixels are cut: rewrite a file whose last strip lies past EOF.
  const std::string path = temp_path("trunc_strip.tif");
  write_tiff(path, 4, 32, 32, {});
  // Damage page 3's pixels by overwriting its strip offset region? Simpler: truncate to
  // just before the last directory and check the error names frame 3.
  const auto full = fs::file_size(path);
  fs::resize_file(path, full - 200);
  auto m = open_movie(path);
  std::vector<float> out(1024);
  for (int t = 0; t < 3; ++t) {
    ASSERT_TRUE(m->read_next(out.data()));
    EXPECT_EQ(out, make_frame(t, 32, 32));
  }
  try {
    m->read_next(out.data());
    FAIL() << "no error";
  } catch (const MovieError& e) {
    EXPECT_EQ(e.frame_index(), 3);
    EXPECT_EQ(std::string(e.what()).rfind(path + ": frame 3: ", 0), 0u) << e.what();
  }
  fs::remove(path);
}

TEST(MovieReader, ReadsHdf5InBothAxisOrders) {
  const int T = 5, H = 16, W = 12;
  std::vector<std::uint16_t> thw(T * H * W), hwt(T * H * W);
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < H; ++r)
      for (int c = 0; c < W; ++c) {
        thw[(t * H + r) * W + c] = static_cast<std::uint16_t>(pixel_value(t, r, c));
        hwt[(r * W + c) * T + t] = static_cast<std::uint16_t>(pixel_value(t, r, c));
      }
  const std::string path = temp_path("mov.h5");
  {
    h5::File f = h5::File::create(path);
    f.write<std::uint16_t>("/mov", thw, {T, H, W});
    f.write<std::uint16_t>("/imaging", hwt, {H, W, T});
    f.set_attr("/mov", "frame_rate", 30.0);
  }
  auto a = open_movie(path + ":/mov");
  EXPECT_EQ(a->info().dtype, PixelType::kUint16);
  EXPECT_DOUBLE_EQ(a->info().frame_rate_hz, 30.0);
  expect_frames(*a, T, H, W);
  MovieOptions o;
  o.hdf5_order = "hwt";
  auto b = open_movie(path + ":/imaging", o);
  expect_frames(*b, T, H, W);
  fs::remove(path);
}

TEST(MovieReader, AutoDetectsHdf5AxisOrderFromShape) {
  const std::string path = temp_path("auto.h5");
  {
    h5::File f = h5::File::create(path);
    std::vector<float> z(128 * 96 * 10, 0.f);
    f.write<float>("/hwt", z, {128, 96, 10});
    f.write<float>("/thw", z, {10, 128, 96});
  }
  auto a = open_movie(path + ":/hwt");
  EXPECT_EQ(a->info().frames, 10);
  EXPECT_EQ(a->info().height, 128u);
  auto b = open_movie(path + ":/thw");
  EXPECT_EQ(b->info().frames, 10);
  EXPECT_EQ(b->info().width, 96u);
  fs::remove(path);
}

TEST(MovieReader, ReadsRawBinaryAndReportsAPartialLastFrame) {
  const std::string path = temp_path("mov.raw");
  {
    std::ofstream f(path, std::ios::binary);
    const char header[16] = "RTNMF-RAW-HEAD";
    f.write(header, 16);
    for (int t = 0; t < 4; ++t) {
      std::vector<float> fr = make_frame(t, 3, 5);
      for (float v : fr) {
        // big-endian int16
        const std::int16_t s = static_cast<std::int16_t>(v);
        const char b[2] = {static_cast<char>((s >> 8) & 0xff), static_cast<char>(s & 0xff)};
        f.write(b, 2);
      }
    }
    f.write("xyz", 3);  // a partial fifth frame
  }
  MovieOptions o;
  o.raw_height = 3;
  o.raw_width = 5;
  o.raw_dtype = "int16";
  o.raw_header_bytes = 16;
  o.raw_big_endian = true;
  auto m = open_movie(path, o);
  std::vector<float> out(15);
  for (int t = 0; t < 4; ++t) {
    ASSERT_TRUE(m->read_next(out.data()));
    EXPECT_EQ(out, make_frame(t, 3, 5));
  }
  try {
    m->read_next(out.data());
    FAIL() << "no error";
  } catch (const MovieError& e) {
    EXPECT_STREQ(e.what(), (path + ": frame 4: truncated (file ends after 3 of 30 bytes)").c_str());
    EXPECT_EQ(e.frame_index(), 4);
  }
  fs::remove(path);
}

TEST(MovieReader, MissingFileAndUnknownFormatAreClearErrors) {
  try {
    open_movie("/nonexistent/x.tif");
    FAIL();
  } catch (const MovieError& e) {
    EXPECT_STREQ(e.what(), "/nonexistent/x.tif: no such file");
  }
  const std::string path = temp_path("junk.bin");
  { std::ofstream(path) << "hello world"; }
  EXPECT_THROW(open_movie(path), MovieError);
  fs::remove(path);
}

TEST(MovieReader, ParsesFrameRateText) {
  EXPECT_DOUBLE_EQ(detail::frame_rate_from_text("SI.hRoiManager.scanFrameRate = 30.0"), 30.0);
  EXPECT_DOUBLE_EQ(detail::frame_rate_from_text("ImageJ=1.5\nfps=7.5\n"), 7.5);
  EXPECT_DOUBLE_EQ(detail::frame_rate_from_text("nothing here"), 0.0);
}

}  // namespace
}  // namespace rtnmf::io
