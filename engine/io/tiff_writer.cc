#include "engine/io/tiff_writer.h"

#include <tiffio.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <limits>

namespace rtnmf::io {
namespace {

int capture_error(TIFF*, void* user, const char* module, const char* fmt, va_list ap) {
  auto* out = static_cast<std::string*>(user);
  char buf[512];
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  *out = module ? std::string(module) + ": " + buf : std::string(buf);
  return 1;
}

template <typename T>
void round_clamp(const float* in, std::size_t n, char* out) {
  T* o = reinterpret_cast<T*>(out);
  const float lo = static_cast<float>(std::numeric_limits<T>::lowest());
  const float hi = static_cast<float>(std::numeric_limits<T>::max());
  for (std::size_t i = 0; i < n; ++i) {
    float v = std::nearbyint(in[i]);
    o[i] = static_cast<T>(std::clamp(v, lo, hi));
  }
}



}  // namespace

TiffWriter::TiffWriter(const std::string& path, std::uint32_t height, std::uint32_t width,
                       const TiffWriteOptions& options)
    : path_(path), height_(height), width_(width), options_(options) {
  switch (options.dtype) {
    case PixelType::kUint8:
    case PixelType::kUint16:
    case PixelType::kInt16:
    case PixelType::kFloat32:
      break;
    default:
      throw MovieError(path + ": TIFF writer supports uint8, uint16, int16 and float32 only");
  }
  if (height == 0 || width == 0) throw MovieError(path + ": empty frame shape");
  TIFFOpenOptions* oo = TIFFOpenOptionsAlloc();
  TIFFOpenOptionsSetErrorHandlerExtR(oo, &capture_error, &error_);
  error_.clear();
  tif_ = TIFFOpenExt(path.c_str(), options.bigtiff ? "w8" : "w", oo);
  TIFFOpenOptionsFree(oo);
  if (!tif_) throw MovieError(path + ": cannot create TIFF: " + error_);
  scratch_.resize(static_cast<std::size_t>(height) * width * pixel_type_bytes(options.dtype));
}

TiffWriter::~TiffWriter() {
  try {
    close();
  } catch (...) {
  }
}

void TiffWriter::write_frame(const float* frame) {
  const std::size_t n = static_cast<std::size_t>(height_) * width_;
  switch (options_.dtype) {
    case PixelType::kUint8: round_clamp<std::uint8_t>(frame, n, scratch_.data()); break;
    case PixelType::kUint16: round_clamp<std::uint16_t>(frame, n, scratch_.data()); break;
    case PixelType::kInt16: round_clamp<std::int16_t>(frame, n, scratch_.data()); break;
    default: std::memcpy(scratch_.data(), frame, n * sizeof(float)); break;
  }
  write_frame_raw(scratch_.data());
}

void TiffWriter::write_frame_raw(const void* pixels) {
  if (!tif_) throw MovieError(path_ + ": write after close");
  const std::uint16_t bits = static_cast<std::uint16_t>(8 * pixel_type_bytes(options_.dtype));
  const std::uint16_t fmt = options_.dtype == PixelType::kFloat32 ? SAMPLEFORMAT_IEEEFP
                            : options_.dtype == PixelType::kInt16 ? SAMPLEFORMAT_INT
                                                                  : SAMPLEFORMAT_UINT;
  TIFFSetField(tif_, TIFFTAG_IMAGEWIDTH, width_);
  TIFFSetField(tif_, TIFFTAG_IMAGELENGTH, height_);
  TIFFSetField(tif_, TIFFTAG_BITSPERSAMPLE, bits);
  TIFFSetField(tif_, TIFFTAG_SAMPLEFORMAT, fmt);
  TIFFSetField(tif_, TIFFTAG_SAMPLESPERPIXEL, 1);
  TIFFSetField(tif_, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
  TIFFSetField(tif_, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
  TIFFSetField(tif_, TIFFTAG_COMPRESSION, COMPRESSION_NONE);
  TIFFSetField(tif_, TIFFTAG_ROWSPERSTRIP, height_);
  if (frames_ == 0 && !options_.description.empty()) {
    TIFFSetField(tif_, TIFFTAG_IMAGEDESCRIPTION, options_.description.c_str());
  }
  if (!options_.software.empty()) TIFFSetField(tif_, TIFFTAG_SOFTWARE, options_.software.c_str());
  if (!options_.artist.empty() && frames_ == 0) TIFFSetField(tif_, TIFFTAG_ARTIST, options_.artist.c_str());
  const tmsize_t bytes =
      static_cast<tmsize_t>(height_) * width_ * static_cast<tmsize_t>(pixel_type_bytes(options_.dtype));
  error_.clear();
  if (TIFFWriteEncodedStrip(tif_, 0, const_cast<void*>(pixels), bytes) != bytes ||
      !TIFFWriteDirectory(tif_)) {
    throw MovieError(path_ + ": frame " + std::to_string(frames_) + ": write failed: " +
                         error_,
                     frames_);
  }
  ++frames_;
}

void TiffWriter::close() {
  if (tif_) {
    TIFFClose(tif_);
    tif_ = nullptr;
  }
}

}  // namespace rtnmf::io
