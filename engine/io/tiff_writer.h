// Writes multi-page TIFF / BigTIFF movies (the simulator's output, test files). Uncompressed,
// one strip per page, minisblack, one sample per pixel.
#pragma once

#include <cstdint>
#include <string>

#include "engine/io/movie.h"

struct tiff;

namespace rtnmf::io {

struct TiffWriteOptions {
  PixelType dtype = PixelType::kUint16;  // kUint8, kUint16, kInt16, kFloat32
  bool bigtiff = false;
  std::string description;  // ImageDescription of the first page (e.g. ScanImage/ImageJ text)
  std::string software;     // Software tag of every page (ScanImage writes its header here)
  std::string artist;       // Artist tag of the first page (ScanImage: the ROI group, JSON)
};

class TiffWriter {
 public:
  // Creates (truncates) the file. Allocates; throws MovieError naming the file.
  TiffWriter(const std::string& path, std::uint32_t height, std::uint32_t width,
             const TiffWriteOptions& options = {});
  ~TiffWriter();
  TiffWriter(const TiffWriter&) = delete;
  TiffWriter& operator=(const TiffWriter&) = delete;

  // Appends one frame (row-major height x width floats), rounded and clamped to the pixel type.
  // Does not allocate (scratch sized at construction; libtiff may). Throws MovieError on failure.
  void write_frame(const float* frame);
  // Appends one frame already in the pixel type (height*width elements).
  void write_frame_raw(const void* pixels);
  // Flushes and closes; further writes throw. Called by the destructor.
  void close();
  std::int64_t frames() const { return frames_; }

 private:
  std::string path_;
  std::uint32_t height_, width_;
  TiffWriteOptions options_;
  struct tiff* tif_ = nullptr;
  std::int64_t frames_ = 0;
  std::string scratch_;
  std::string error_;  // last libtiff error for this file
};

}  // namespace rtnmf::io
