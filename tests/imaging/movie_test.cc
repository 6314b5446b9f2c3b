// Movie readers on small files generated here: TIFF, BigTIFF, ScanImage/ImageJ descriptions,
// HDF5 in both axis orders, raw; truncated files fail at the right frame.
#include <gtest/gtest.h>
#include <tiffio.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <tuple>
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

// A ScanImage-like TIFF in the scratch directory: `frames` pages of h x w (make_frame), the
// header text in the Software tag and, when given, the ROI group in the Artist tag.
std::string write_scanimage(const std::string& name, int frames, int h, int w, const std::string& software,
                            const std::string& artist = "") {
  const std::string path = temp_path(name);
  TiffWriteOptions o;
  o.software = software;
  o.artist = artist;
  write_tiff(path, frames, h, w, o);
  return path;
}

// A TIFF of `frames` 3 x 3 pages written with `o` that must read as a planar movie (one plane,
// every page a frame, in order). Returns its path.
std::string expect_planar_tiff(const std::string& name, const TiffWriteOptions& o, int frames) {
  const std::string path = temp_path(name);
  write_tiff(path, frames, 3, 3, o);
  auto m = open_movie(path);
  EXPECT_EQ(m->info().planes, 1u);
  expect_frames(*m, frames, 3, 3);
  return path;
}

// Reads `m` from its next frame until it throws, each frame checked against make_frame(t, h, w):
// how many were read, and the error (failed false: the movie ended without one).
struct ReadToError {
  int good = 0;
  bool failed = false;
  std::string what;
  std::int64_t index = -1;
};
ReadToError read_to_error(MovieReader& m, int h, int w) {
  ReadToError r;
  std::vector<float> out(static_cast<std::size_t>(h) * w);
  try {
    while (m.read_next(out.data())) {
      EXPECT_EQ(out, make_frame(r.good, h, w)) << "frame " << r.good;
      ++r.good;
    }
  } catch (const MovieError& e) {
    r.failed = true;
    r.what = e.what();
    r.index = e.frame_index();
  }
  return r;
}

// open_movie(spec, o) must fail with exactly `message`.
void expect_open_error(const std::string& spec, const MovieOptions& o, const std::string& message) {
  try {
    open_movie(spec, o);
    ADD_FAILURE() << spec << " opened; expected: " << message;
  } catch (const MovieError& e) {
    EXPECT_EQ(std::string(e.what()), message);
  }
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

// Volumetric files: pages are channel fastest, then plane (with flyback frames where saved), then
// volume. Each plane is a movie at the volume rate.
// ScanImage multi-ROI pages: the ROIs top to bottom in scan order, flyback lines between them;
// their sizes in the Artist tag's ROI group (JSON). Frame t of ROI (row0, h, w): rows
// row0 .. row0 + h - 1, columns 0 .. w - 1 of page t.
std::vector<float> roi_frame(int t, int row0, int h, int w) {
  std::vector<float> f;
  for (int r = row0; r < row0 + h; ++r)
    for (int c = 0; c < w; ++c) f.push_back(pixel_value(t, r, c));
  return f;
}
std::string roi_group_json(const std::vector<std::pair<int, int>>& sizes) {  // (w, h) per ROI
  std::string rois;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    rois += std::string(i ? ", " : "") + "{\"ver\": 1, \"classname\": \"scanimage.mroi.Roi\", \"name\": \"ROI " +
            std::to_string(i + 1) + "\", \"zs\": 0, \"scanfields\": {\"name\": \"Default {" + std::to_string(i) +
            "}\", \"centerXY\": [0, 0], \"sizeXY\": [1, 1], \"pixelResolutionXY\": [" +
            std::to_string(sizes[i].first) + ", " + std::to_string(sizes[i].second) + "]}}";
  }
  // The integration group after the imaging one holds scanfields too: not the ROIs read.
  return "{\"RoiGroups\": {\"imagingRoiGroup\": {\"ver\": 1, \"name\": \"MROI\", \"rois\": [" + rois +
         "]}, \"photostimRoiGroups\": null, \"integrationRoiGroup\": {\"rois\": [{\"scanfields\": "
         "{\"pixelResolutionXY\": [9, 9]}}]}}}";
}

// A ScanImage mROI movie of `frames` pages of h x w with the ROIs of `sizes` ((w, h) each).
std::string write_mroi(const std::string& name, const std::vector<std::pair<int, int>>& sizes, int frames, int h, int w) {
  return write_scanimage(name, frames, h, w, "SI.hRoiManager.scanFrameRate = 30\nSI.hRoiManager.mroiEnable = 1\n",
                         roi_group_json(sizes));
}

TEST(MovieReader, CutsTheROIsOfScanImageMultiRoiPages) {
  {
    // Three ROIs of 4, 3 and 4 rows (the last 4 pixels wide) with 2 flyback lines between them:
    // pages of 15 x 6.
    const std::string path = write_mroi("si_mroi.tif", {{6, 4}, {6, 3}, {4, 4}}, 5, 15, 6);
    expect_open_error(path, {}, path + ": ScanImage multi-ROI: ROIs 6 and 4 pixels wide cannot be stacked; "
                                       "choose one with source.imaging_file.roi");
    MovieOptions mo;
    for (const auto& [roi, row0, h, w] : {std::tuple{0, 0, 4, 6}, std::tuple{1, 6, 3, 6}, std::tuple{2, 11, 4, 4}}) {
      mo.roi = roi;
      auto m = open_movie(path, mo);
      EXPECT_EQ(m->info().rois, 3u);
      ASSERT_EQ(m->info().height, static_cast<std::uint32_t>(h));
      ASSERT_EQ(m->info().width, static_cast<std::uint32_t>(w));
      EXPECT_NE(m->info().description.find("3 ROIs (ROI " + std::to_string(roi) + ", 2 flyback lines between)"),
                std::string::npos) << m->info().description;
      std::vector<float> out(static_cast<std::size_t>(h) * w);
      for (int t = 0; t < 5; ++t) {
        m->read_frame(t, out.data());
        EXPECT_EQ(out, roi_frame(t, row0, h, w)) << "ROI " << roi << " frame " << t;
      }
    }
    mo.roi = 3;
    expect_open_error(path, mo, path + ": roi 3 requested but the file has 3 (ScanImage multi-ROI)");
    fs::remove(path);
  }
  {
    // Two equally wide ROIs of 4 rows, 3 flyback lines: stacked by default into 8 x 5 frames.
    const std::string path = write_mroi("si_mroi2.tif", {{5, 4}, {5, 4}}, 4, 11, 5);
    auto m = open_movie(path);
    EXPECT_EQ(m->info().rois, 2u);
    ASSERT_EQ(m->info().height, 8u);
    ASSERT_EQ(m->info().width, 5u);
    EXPECT_NE(m->info().description.find("2 ROIs (stacked, 3 flyback lines between)"), std::string::npos);
    std::vector<float> out(40);
    m->read_frame(3, out.data());
    std::vector<float> want = roi_frame(3, 0, 4, 5), second = roi_frame(3, 7, 4, 5);
    want.insert(want.end(), second.begin(), second.end());
    EXPECT_EQ(out, want);
    fs::remove(path);
  }
  {
    // ROI sizes that do not fit the page with equal gaps are refused, naming them.
    const std::string path = write_mroi("si_mroi_bad.tif", {{5, 4}, {5, 4}, {5, 4}}, 2, 13, 5);
    expect_open_error(path, {}, path + ": ScanImage multi-ROI: 3 ROIs of 4 + 4 + 4 rows do not fit pages of 13 "
                                       "rows with equal gaps between them");
    fs::remove(path);
  }
  {
    // One ROI (mROI on): the page is its image. A file that is not multi-ROI has no ROI 1.
    const std::string path = write_mroi("si_mroi1.tif", {{5, 6}}, 3, 6, 5);
    auto m = open_movie(path);
    expect_frames(*m, 3, 6, 5);
    MovieOptions mo;
    mo.roi = 0;
    expect_frames(*open_movie(path, mo), 3, 6, 5);
    mo.roi = 1;
    expect_open_error(path, mo, path + ": roi 1 requested but the file has 1 (not ScanImage multi-ROI)");
    fs::remove(path);
  }
}

TEST(MovieReader, SelectsOnePlaneOfVolumetricScanImageAndImageJFiles) {
  std::vector<float> out(9);
  {
    // ScanImage 2016: fast z, 3 slices + 1 saved flyback frame, 2 channels; 5 volumes = 40 pages.
    const std::string path = write_scanimage("si_fastz.tif", 40, 3, 3,
                                             "SI.hRoiManager.scanFrameRate = 30\nSI.hChannels.channelSave = [1;2]\n"
                                             "SI.hFastZ.enable = true\nSI.hFastZ.enableFieldCurveCorr = false\n"
                                             "SI.hFastZ.discardFlybackFrames = false\nSI.hFastZ.numDiscardFlybackFrames = 1\n"
                                             "SI.hStackManager.numSlices = 3\n");
    MovieOptions mo;
    mo.plane = 2;
    mo.channel = 1;
    auto m = open_movie(path, mo);
    EXPECT_EQ(m->info().frames, 5);
    EXPECT_EQ(m->info().planes, 3u);
    EXPECT_DOUBLE_EQ(m->info().frame_rate_hz, 7.5);  // 30 pages/s over 4 pages per volume
    EXPECT_NE(m->info().description.find("3 planes"), std::string::npos) << m->info().description;
    for (int t = 0; t < 5; ++t) {
      m->read_frame(t, out.data());
      EXPECT_EQ(out, make_frame((t * 4 + 2) * 2 + 1, 3, 3)) << "volume " << t;
    }
    mo.plane = 3;  // the flyback frame is not a plane
    expect_open_error(path, mo, path + ": plane 3 requested but the file has 3 (ScanImage fast z)");
    fs::remove(path);
  }
  {
    // ScanImage 2020+: the stack manager's fast mode, flyback frames discarded (not in the file),
    // the volume rate recorded.
    const std::string path = write_scanimage("si2020_fastz.tif", 12, 3, 3,
                                             "SI.hRoiManager.scanFrameRate = 30\nSI.hRoiManager.scanVolumeRate = 9.5\n"
                                             "SI.hChannels.channelSave = 1\nSI.hStackManager.enable = true\n"
                                             "SI.hStackManager.stackMode = 'fast'\nSI.hStackManager.actualNumSlices = 3\n"
                                             "SI.hFastZ.discardFlybackFrames = true\nSI.hFastZ.numDiscardFlybackFrames = 2\n");
    MovieOptions mo;
    mo.plane = 1;
    auto m = open_movie(path, mo);
    EXPECT_EQ(m->info().frames, 4);
    EXPECT_DOUBLE_EQ(m->info().frame_rate_hz, 9.5);
    m->read_frame(3, out.data());
    EXPECT_EQ(out, make_frame(3 * 3 + 1, 3, 3));
    fs::remove(path);
  }
  {
    // Fast z off: a planar recording, whatever numSlices says.
    TiffWriteOptions o;
    o.software = "SI.hRoiManager.scanFrameRate = 30\nSI.hFastZ.enable = false\nSI.hStackManager.numSlices = 5\n";
    const std::string path = expect_planar_tiff("si_planar.tif", o, 10);
    MovieOptions mo;
    mo.plane = 1;
    expect_open_error(path, mo, path + ": plane 1 requested but the file has 1 (not volumetric)");
    fs::remove(path);
  }
  {
    // ImageJ hyperstack, 2 channels x 3 slices x 4 frames, stored czt.
    const std::string path = temp_path("imagej_czt.tif");
    TiffWriteOptions o;
    o.description = "ImageJ=1.52p\nimages=24\nchannels=2\nslices=3\nframes=4\nhyperstack=true\nfinterval=0.1\n";
    write_tiff(path, 24, 3, 3, o);
    MovieOptions mo;
    mo.plane = 2;
    auto m = open_movie(path, mo);
    EXPECT_EQ(m->info().frames, 4);
    EXPECT_EQ(m->info().planes, 3u);
    EXPECT_NEAR(m->info().frame_rate_hz, 10.0, 1e-9);
    m->read_frame(1, out.data());
    EXPECT_EQ(out, make_frame((1 * 3 + 2) * 2 + 0, 3, 3));
    mo.plane = 3;
    expect_open_error(path, mo, path + ": plane 3 requested but the file has 3 (ImageJ slices=)");
    fs::remove(path);
  }
  {
    // A plain ImageJ stack (slices=N without frames=): the slices are the movie's frames.
    TiffWriteOptions o;
    o.description = "ImageJ=1.52p\nimages=6\nslices=6\nloop=false\n";
    fs::remove(expect_planar_tiff("imagej_stack.tif", o, 6));
  }
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
  const ReadToError r = read_to_error(*m, 16, 16);
  ASSERT_TRUE(r.failed) << "no error for a truncated file";
  const int good = r.good;
  EXPECT_EQ(r.index, good);
  EXPECT_EQ(r.what.rfind(path + ": frame " + std::to_string(good) + ": ", 0), 0u) << r.what;
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

// Writes `frames` uint16 (or float32) frames with libtiff in a given layout: byte order,
// rows per strip, compression, and whether the strips of a page go to the file in reverse order.
void write_libtiff(const std::string& path, int frames, int h, int w, bool big_endian,
                   std::uint32_t rows_per_strip, std::uint16_t compression, bool reverse_strips,
                   bool float32) {
  TIFF* tif = TIFFOpen(path.c_str(), big_endian ? "wb" : "wl");
  ASSERT_NE(tif, nullptr);
  const int bpp = float32 ? 4 : 2;
  for (int t = 0; t < frames; ++t) {
    TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, static_cast<std::uint32_t>(w));
    TIFFSetField(tif, TIFFTAG_IMAGELENGTH, static_cast<std::uint32_t>(h));
    TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, static_cast<std::uint16_t>(8 * bpp));
    TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT, float32 ? SAMPLEFORMAT_IEEEFP : SAMPLEFORMAT_UINT);
    TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, static_cast<std::uint16_t>(1));
    TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
    TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(tif, TIFFTAG_COMPRESSION, compression);
    TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, rows_per_strip);
    const std::vector<float> f = make_frame(t, h, w);
    std::vector<unsigned char> px(f.size() * bpp);
    for (std::size_t i = 0; i < f.size(); ++i) {
      if (float32) {
        std::memcpy(px.data() + 4 * i, &f[i], 4);
      } else {
        const auto v = static_cast<std::uint16_t>(f[i]);
        std::memcpy(px.data() + 2 * i, &v, 2);
      }
    }
    const int strips = (h + static_cast<int>(rows_per_strip) - 1) / static_cast<int>(rows_per_strip);
    for (int k = 0; k < strips; ++k) {
      const int s = reverse_strips ? strips - 1 - k : k;
      const int r0 = s * static_cast<int>(rows_per_strip);
      const int rows = std::min(static_cast<int>(rows_per_strip), h - r0);
      ASSERT_GE(TIFFWriteEncodedStrip(tif, static_cast<tstrip_t>(s), px.data() + static_cast<std::size_t>(r0) * w * bpp,
                                      static_cast<tmsize_t>(rows) * w * bpp), 0);
    }
    ASSERT_EQ(TIFFWriteDirectory(tif), 1);
  }
  TIFFClose(tif);
}

// Uncompressed pages whose strips lie back to back are read with one pread per frame, the rest
// through libtiff: both give the same pixels for every layout (byte order, strips, compression,
// strips stored out of order, float).
TEST(MovieReader, ReadsEveryStripLayoutAndByteOrderAlike) {
  struct Layout {
    const char* name;
    bool big_endian;
    std::uint32_t rows_per_strip;
    std::uint16_t compression;
    bool reverse;
    bool float32;
  };
  const Layout layouts[] = {
      {"le_one_strip", false, 12, COMPRESSION_NONE, false, false},
      {"be_one_strip", true, 12, COMPRESSION_NONE, false, false},
      {"le_strips_of_5", false, 5, COMPRESSION_NONE, false, false},
      {"be_strips_of_5", true, 5, COMPRESSION_NONE, false, false},
      {"le_strips_reversed", false, 4, COMPRESSION_NONE, true, false},
      {"le_lzw", false, 5, COMPRESSION_LZW, false, false},
      {"be_float32", true, 3, COMPRESSION_NONE, false, true},
  };
  for (const Layout& l : layouts) {
    SCOPED_TRACE(l.name);
    const std::string path = temp_path(std::string(l.name) + ".tif");
    write_libtiff(path, 3, 12, 10, l.big_endian, l.rows_per_strip, l.compression, l.reverse, l.float32);
    auto m = open_movie(path);
    expect_frames(*m, 3, 12, 10);
    std::vector<float> out(120);
    m->read_frame(1, out.data());  // random access after the sequential pass
    EXPECT_EQ(out, make_frame(1, 12, 10));
    fs::remove(path);
  }
}

// ScanImage writes each page's directory before its pixels: a file cut inside the last frame's
// pixels keeps that frame's directory, and reading it fails naming the frame and how much of it
// the file holds; the frames before it read.
TEST(MovieReader, DirectoryFirstTiffCutInsideTheLastPixelsNamesThatFrame) {
  const std::string path = temp_path("ifd_first.tif");
  const int frames = 4, h = 8, w = 8;
  const std::uint32_t bytes = h * w * 2;
  std::string file = std::string("II") + '\x2a' + '\0';
  auto put16 = [&](std::uint16_t v) { file.append(reinterpret_cast<const char*>(&v), 2); };
  auto put32 = [&](std::uint32_t v) { file.append(reinterpret_cast<const char*>(&v), 4); };
  put32(8);
  const std::uint32_t ifd_size = 2 + 10 * 12 + 4;
  for (int t = 0; t < frames; ++t) {
    const std::uint32_t ifd = static_cast<std::uint32_t>(file.size());
    const std::uint32_t data = ifd + ifd_size;
    auto entry = [&](std::uint16_t tag, std::uint16_t type, std::uint32_t value) {
      put16(tag);
      put16(type);
      put32(1);
      if (type == 3) {
        put16(static_cast<std::uint16_t>(value));
        put16(0);
      } else {
        put32(value);
      }
    };
    put16(10);
    entry(256, 3, w);
    entry(257, 3, h);
    entry(258, 3, 16);
    entry(259, 3, 1);
    entry(262, 3, 1);
    entry(273, 4, data);
    entry(277, 3, 1);
    entry(278, 4, h);
    entry(279, 4, bytes);
    entry(339, 3, 1);
    put32(t + 1 < frames ? data + bytes : 0);
    for (float v : make_frame(t, h, w)) put16(static_cast<std::uint16_t>(v));
  }
  {
    std::ofstream out(path, std::ios::binary);
    out.write(file.data(), static_cast<std::streamsize>(file.size()));
  }
  expect_frames(*open_movie(path), frames, h, w);
  fs::resize_file(path, file.size() - bytes + 40);  // 40 of frame 3's 128 bytes remain
  auto m = open_movie(path);
  ASSERT_EQ(m->info().frames, frames);
  std::vector<float> out(static_cast<std::size_t>(h) * w);
  for (int t = 0; t < 3; ++t) {
    ASSERT_TRUE(m->read_next(out.data()));
    EXPECT_EQ(out, make_frame(t, h, w));
  }
  try {
    m->read_next(out.data());
    FAIL() << "no error";
  } catch (const MovieError& e) {
    EXPECT_EQ(e.frame_index(), 3);
    EXPECT_STREQ(e.what(), (path + ": frame 3: truncated strip data (file ends after 40 of 128 bytes)").c_str());
  }
  fs::remove(path);
}

// A recording split over files (ScanImage's logFramesPerFile): a directory or a pattern is one
// movie, the files in name order.
// What a result file must not overwrite: the movie file itself (however the path is spelt, a
// dataset suffix ignored), a movie file in a directory given as the recording, a pattern's match.
TEST(MovieReader, SpecIncludesTheFilesItReadsAndTheNamesItWouldList) {
  const fs::path dir = temp_path("includes");
  fs::create_directories(dir);
  write_tiff((dir / "rec_1.tif").string(), 2, 3, 3, {});
  const std::string file = (dir / "rec_1.tif").string();
  EXPECT_TRUE(movie_spec_includes(file, file));
  EXPECT_TRUE(movie_spec_includes(file, (dir / "." / "rec_1.tif").string()));
  EXPECT_TRUE(movie_spec_includes(file + ":/mov", file));
  EXPECT_FALSE(movie_spec_includes(file, (dir / "rec_1.h5").string()));  // not there yet: another file
  EXPECT_TRUE(movie_spec_includes(dir.string(), (dir / "result.h5").string()));
  EXPECT_TRUE(movie_spec_includes(dir.string(), (dir / "rec_1.tif").string()));
  EXPECT_FALSE(movie_spec_includes(dir.string(), (dir / "result.txt").string()));  // not listed
  EXPECT_FALSE(movie_spec_includes(dir.string(), (dir / "sub" / "result.h5").string()));
  EXPECT_TRUE(movie_spec_includes((dir / "rec_*").string(), (dir / "rec_result.h5").string()));
  EXPECT_FALSE(movie_spec_includes((dir / "rec_*.tif").string(), (dir / "rec_result.h5").string()));
  EXPECT_FALSE(movie_spec_includes("/nonexistent/movie.tif", "/nonexistent/movie.tif"));
  fs::remove_all(dir);
}

TEST(MovieReader, ReadsARecordingSplitOverFilesAsOneMovie) {
  const fs::path dir = temp_path("split");
  fs::create_directories(dir);
  const int counts[3] = {4, 5, 3};
  auto write_part = [&](const std::string& name, int start, int n, int h, int w) {
    TiffWriter wr((dir / name).string(), h, w, {});
    for (int t = 0; t < n; ++t) wr.write_frame(make_frame(start + t, h, w).data());
  };
  write_part("rec_00001.tif", 0, counts[0], 6, 5);
  write_part("rec_00002.tif", 4, counts[1], 6, 5);
  write_part("rec_00003.tif", 9, counts[2], 6, 5);
  std::ofstream(dir / "notes.txt") << "not a movie\n";
  for (const std::string& spec : {dir.string(), (dir / "rec_*.tif").string()}) {
    auto m = open_movie(spec);
    EXPECT_EQ(m->info().files, 3u) << spec;
    EXPECT_EQ(m->info().path, spec);
    EXPECT_NE(m->info().description.find("3 files"), std::string::npos) << m->info().description;
    expect_frames(*m, 12, 6, 5);
    std::vector<float> out(30);
    m->read_frame(9, out.data());  // the first frame of the third file
    EXPECT_EQ(out, make_frame(9, 6, 5));
  }
  // One file matched: that file. A file whose name looks like a pattern is that file.
  EXPECT_EQ(open_movie((dir / "rec_00002*").string())->info().frames, 5);
  fs::copy_file(dir / "rec_00003.tif", dir / "take[1].tif");
  EXPECT_EQ(open_movie((dir / "take[1].tif").string())->info().files, 1u);
  fs::remove(dir / "take[1].tif");
  expect_open_error((dir / "nothing_*.tif").string(), {}, (dir / "nothing_*.tif").string() + ": no file matches");
  // A file of another frame shape is refused, naming both.
  write_part("rec_00004.tif", 12, 2, 6, 6);
  expect_open_error(dir.string(), {}, (dir / "rec_00004.tif").string() + ": frames are 6x6, " +
                                         (dir / "rec_00001.tif").string() + "'s are 6x5");
  fs::remove(dir / "rec_00004.tif");
  // The second file cut inside its third frame: the movie ends there, the error names the file,
  // its frame and the recording's; the frames before are read.
  const fs::path second = dir / "rec_00002.tif";
  fs::resize_file(second, 2 * (fs::file_size(second) / counts[1]) + 20);
  auto m = open_movie(dir.string());
  const ReadToError r = read_to_error(*m, 6, 5);
  EXPECT_TRUE(r.failed) << "no error for the cut file";
  const int good = r.good;
  EXPECT_EQ(r.index, good);
  const std::string local = std::to_string(good - counts[0]);
  EXPECT_EQ(r.what.rfind(second.string() + ": frame " + local + ": ", 0), 0u) << r.what;
  EXPECT_NE(r.what.find("(frame " + std::to_string(good) + " of the recording)"), std::string::npos) << r.what;
  EXPECT_GE(good, counts[0] + 1);
  EXPECT_LE(good, counts[0] + 2);
  fs::remove_all(dir);
  // HDF5 files with the dataset named once for all.
  const fs::path hdir = temp_path("split_h5");
  fs::create_directories(hdir);
  for (int part = 0; part < 2; ++part) {
    std::vector<std::uint16_t> v(3 * 4 * 4);
    for (int t = 0; t < 3; ++t)
      for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 4; ++c) v[(t * 4 + r) * 4 + c] = static_cast<std::uint16_t>(pixel_value(3 * part + t, r, c));
    h5::File f = h5::File::create((hdir / ("part" + std::to_string(part) + ".h5")).string());
    f.write<std::uint16_t>("/mov", v, {3, 4, 4});
  }
  auto h = open_movie((hdir / "part*.h5").string() + ":/mov");
  expect_frames(*h, 6, 4, 4);
  fs::remove_all(hdir);
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
  // Channels and planes are TIFF layouts: asked of an HDF5 stack, a clear refusal.
  MovieOptions layer;
  layer.channel = 1;
  expect_open_error(path + ":/mov", layer, path + ": channel 1 requested but HDF5 movies hold one channel");
  layer.channel = 0;
  layer.plane = 2;
  expect_open_error(path + ":/mov", layer, path + ": plane 2 requested but HDF5 movies hold one plane");
  layer.plane = 0;
  layer.roi = 1;
  expect_open_error(path + ":/mov", layer, path + ": roi 1 requested but HDF5 movies hold one field of view");
  layer.roi = 0;  // the one there is
  EXPECT_EQ(open_movie(path + ":/mov", layer)->info().frames, T);
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
