#include "engine/io/tiff_reader.h"

#include <fcntl.h>
#include <tiffio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <regex>
#include <vector>

namespace rtnmf::io {
namespace {

// Per-file libtiff error/warning capture: the last error text goes into the message we throw.
int capture_error(TIFF*, void* user, const char* module, const char* fmt, va_list ap) {
  auto* out = static_cast<std::string*>(user);
  char buf[512];
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  *out = module ? std::string(module) + ": " + buf : std::string(buf);
  return 1;
}
int ignore_warning(TIFF*, void*, const char*, const char*, va_list) { return 1; }

std::string tag_string(TIFF* tif, ttag_t tag) {
  char* s = nullptr;
  if (TIFFGetField(tif, tag, &s) == 1 && s) return s;
  return {};
}

std::uint32_t int_after(const std::string& text, const char* key, std::uint32_t def) {
  std::size_t p = text.find(key);
  if (p == std::string::npos) return def;
  p += std::strlen(key);
  char* end = nullptr;
  long v = std::strtol(text.c_str() + p, &end, 10);
  return end != text.c_str() + p && v > 0 ? static_cast<std::uint32_t>(v) : def;
}

// The value after "key = " in ScanImage header text ("SI.hFastZ.enable = true"), or "" when absent.
std::string scanimage_value(const std::string& text, const std::string& key) {
  const std::regex re(std::regex_replace(key, std::regex(R"([.])"), R"(\.)") + R"(\s*=\s*([^\r\n]*))");
  std::smatch m;
  return std::regex_search(text, m, re) ? std::string(m[1]) : std::string();
}
bool scanimage_true(const std::string& v) { return v.rfind("true", 0) == 0 || v.rfind("1", 0) == 0; }
std::uint32_t scanimage_count(const std::string& v) {
  char* end = nullptr;
  const long n = std::strtol(v.c_str(), &end, 10);
  return end != v.c_str() && n > 0 ? static_cast<std::uint32_t>(n) : 0;
}

// ScanImage volumetric (fast z) acquisitions: pages per volume (slices, plus flyback frames when
// they were saved) and the slices among them. Planar files (fast z off; a slow z-stack is read as
// pages in time, as before): {1, 1}. Keys of ScanImage 2015-2016 (SI.hFastZ.enable,
// SI.hStackManager.numSlices) and 2020+ (SI.hStackManager.enable with stackMode 'fast',
// actualNumSlices); flyback frames are in the file unless SI.hFastZ.discardFlybackFrames.
struct Volume {
  std::uint32_t pages = 1, slices = 1;
};
Volume scanimage_volume(const std::string& text) {
  const bool fast = scanimage_true(scanimage_value(text, "SI.hFastZ.enable")) ||
                    (scanimage_true(scanimage_value(text, "SI.hStackManager.enable")) &&
                     scanimage_value(text, "SI.hStackManager.stackMode").find("fast") != std::string::npos);
  if (!fast) return {};
  std::uint32_t slices = scanimage_count(scanimage_value(text, "SI.hStackManager.actualNumSlices"));
  if (slices == 0) slices = scanimage_count(scanimage_value(text, "SI.hStackManager.numSlices"));
  if (slices == 0) return {};
  const std::string discard = scanimage_value(text, "SI.hFastZ.discardFlybackFrames");
  const std::uint32_t flyback = discard.empty() || scanimage_true(discard)
                                    ? 0 : scanimage_count(scanimage_value(text, "SI.hFastZ.numDiscardFlybackFrames"));
  return {slices + flyback, slices};
}

// ScanImage: "SI.hChannels.channelSave = [1;2]" (or "= 1"). Returns the number of saved channels.
std::uint32_t scanimage_channels(const std::string& text) {
  std::uint32_t n = 0;
  bool in_digit = false;
  for (char c : scanimage_value(text, "channelSave")) {
    const bool d = c >= '0' && c <= '9';
    if (d && !in_digit) ++n;
    in_digit = d;
  }
  return n == 0 ? 1 : n;
}

// ScanImage multi-ROI (mROI) pages stack the ROIs' scanfields top to bottom with the lines the
// scanner spends flying between them in between. The ROI group is JSON in the Artist tag
// ({"RoiGroups": {"imagingRoiGroup": {"rois": [{"scanfields": {"pixelResolutionXY": [w, h],
// ...}}, ...]}, ...}}): the (w, h) of each scanfield of the imaging group, in scan order.
std::vector<std::pair<std::uint32_t, std::uint32_t>> scanimage_roi_sizes(const std::string& json) {
  std::vector<std::pair<std::uint32_t, std::uint32_t>> sizes;
  const std::size_t key = json.find("\"imagingRoiGroup\"");
  if (key == std::string::npos) return sizes;
  const std::size_t open = json.find('{', key);
  if (open == std::string::npos) return sizes;
  // The group's object: to its matching brace (strings hold no braces in ScanImage's output
  // except names, which are skipped with the strings).
  std::size_t end = open;
  int depth = 0;
  bool in_string = false;
  for (; end < json.size(); ++end) {
    const char c = json[end];
    if (in_string) {
      if (c == '\\') ++end;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{') {
      ++depth;
    } else if (c == '}' && --depth == 0) {
      break;
    }
  }
  const std::string group = json.substr(open, end - open);
  static const std::regex res(R"re("pixelResolutionXY"\s*:\s*\[\s*([0-9]+)\s*,\s*([0-9]+)\s*\])re");
  for (auto it = std::sregex_iterator(group.begin(), group.end(), res); it != std::sregex_iterator(); ++it) {
    sizes.emplace_back(static_cast<std::uint32_t>(std::stoul((*it)[1])), static_cast<std::uint32_t>(std::stoul((*it)[2])));
  }
  return sizes;
}

class TiffMovie final : public MovieReader {
 public:
  TiffMovie(const std::string& path, const MovieOptions& options) {
    info_.path = path;
    info_.format = MovieFormat::kTiff;
    TIFFOpenOptions* oo = TIFFOpenOptionsAlloc();
    TIFFOpenOptionsSetErrorHandlerExtR(oo, &capture_error, &last_error_);
    TIFFOpenOptionsSetWarningHandlerExtR(oo, &ignore_warning, nullptr);
    // "m": no memory mapping, so a file truncated under us is a read error, not SIGBUS.
    tif_ = TIFFOpenExt(path.c_str(), "rm", oo);
    TIFFOpenOptionsFree(oo);
    if (!tif_) {
      throw MovieError(path + ": cannot open as TIFF" +
                       (last_error_.empty() ? std::string() : ": " + last_error_));
    }
    read_layout(path);
    const std::string desc = tag_string(tif_, TIFFTAG_IMAGEDESCRIPTION);
    const std::string software = tag_string(tif_, TIFFTAG_SOFTWARE);
    const std::string text = desc + "\n" + software;
    const std::string artist = tag_string(tif_, TIFFTAG_ARTIST);  // ScanImage's ROI group (JSON)
    const bool is_imagej = desc.rfind("ImageJ=", 0) == 0;
    const bool is_scanimage = text.find("SI.") != std::string::npos ||
                              text.find("scanimage") != std::string::npos ||
                              text.find("ScanImage") != std::string::npos;
    info_.description = TIFFIsBigEndian(tif_) ? "TIFF (big-endian)" : "TIFF";
    if (TIFFIsBigTIFF(tif_)) info_.description = "BigTIFF";
    if (is_imagej) info_.description += ", ImageJ";
    if (is_scanimage) info_.description += ", ScanImage";
    info_.frame_rate_hz = detail::frame_rate_from_text(text);

    // Walk the directory chain, remembering each page's offset for random access and, for pages
    // whose pixels are one uncompressed run in the file, where that run starts.
    for (;;) {
      page_offsets_.push_back(TIFFCurrentDirOffset(tif_));
      page_spans_.push_back(plain_span());
      if (TIFFLastDirectory(tif_)) break;
      last_error_.clear();
      if (!TIFFReadDirectory(tif_)) {
        chain_broken_ = true;
        chain_error_ = last_error_.empty() ? "directory chain points past the end of the file"
                                           : last_error_;
        break;
      }
    }
    std::uint64_t pages = page_offsets_.size();
    std::string plane_source;  // where the plane count came from, for the error text
    if (is_imagej) {
      channels_ = int_after(desc, "channels=", 1);
      // Hyperstacks are stored channel fastest, then slice, then frame (czt). Slices are planes
      // only beside frames= > 1: a plain stack (often a movie opened as an image sequence) says
      // slices=N alone, and those are time points.
      if (int_after(desc, "frames=", 1) > 1) volume_ = int_after(desc, "slices=", 1);
      slices_ = volume_;
      plane_source = "ImageJ slices=";
      const std::uint32_t images = int_after(desc, "images=", 1);
      // ImageJ stacks over 4 GB: one IFD, the other images follow contiguously.
      if (pages == 1 && images > 1 && !chain_broken_) {
        contiguous_ = true;
        pages = images;
      }
    } else if (is_scanimage) {
      channels_ = scanimage_channels(text);
      const Volume v = scanimage_volume(text);
      volume_ = v.pages;
      slices_ = v.slices;
      plane_source = "ScanImage fast z";
      if (v.slices > 1) {
        // Each plane is sampled once per volume: the scan's frame rate is per page.
        const std::string vr = scanimage_value(text, "SI.hRoiManager.scanVolumeRate");
        const double volume_rate = vr.empty() ? 0.0 : std::strtod(vr.c_str(), nullptr);
        info_.frame_rate_hz = volume_rate > 0 ? volume_rate : info_.frame_rate_hz / v.pages;
      }
    }
    if (channels_ == 0) channels_ = 1;
    if (volume_ == 0) volume_ = 1;
    if (slices_ == 0 || slices_ > volume_) slices_ = volume_;
    if (options.channel >= channels_) {
      throw MovieError(path + ": channel " + std::to_string(options.channel) +
                       " requested but the file has " + std::to_string(channels_));
    }
    if (options.plane >= slices_) {
      throw MovieError(path + ": plane " + std::to_string(options.plane) + " requested but the file has " +
                       std::to_string(slices_) + (slices_ == 1 ? " (not volumetric)" : " (" + plane_source + ")"));
    }
    channel_ = options.channel;
    plane_ = options.plane;
    if (is_scanimage && scanimage_true(scanimage_value(text, "SI.hRoiManager.mroiEnable")))
      setup_rois(path, scanimage_roi_sizes(artist), options.roi);
    if (options.roi > 0 && info_.rois == 1)
      throw MovieError(path + ": roi " + std::to_string(options.roi) + " requested but the file has 1 (not ScanImage multi-ROI)");
    info_.planes = slices_;
    if (slices_ > 1) info_.description += ", " + std::to_string(slices_) + " planes";
    info_.frames = static_cast<std::int64_t>(pages / (static_cast<std::uint64_t>(channels_) * volume_));
    if (chain_broken_) {
      // The first frame whose page could not be reached is damaged.
      damaged_at_ = info_.frames;
      damage_message_ = path + ": frame " + std::to_string(damaged_at_) + ": " + chain_error_;
    }
    if (contiguous_) setup_contiguous(path);
    if (!contiguous_ && std::any_of(page_spans_.begin(), page_spans_.end(), [](std::uint64_t o) { return o != kNoSpan; })) {
      raw_fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (raw_fd_ < 0) throw MovieError(path + ": cannot reopen for reading");
      swap_ = TIFFIsByteSwapped(tif_) != 0;
    }
    if (options.frame_rate_hz > 0) info_.frame_rate_hz = options.frame_rate_hz;
    if (info_.frames == 0) throw MovieError(path + ": no frames");
  }

  ~TiffMovie() override {
    if (raw_file_) std::fclose(raw_file_);
    if (raw_fd_ >= 0) ::close(raw_fd_);
    if (tif_) TIFFClose(tif_);
  }

  void read_frame(std::int64_t index, float* out) override {
    if (index < 0 || index >= info_.frames) {
      if (damaged_at_ >= 0 && index >= damaged_at_) {
        throw MovieError(info_.path + ": frame " + std::to_string(index) + ": " + chain_error_,
                         index);
      }
      throw MovieError(info_.path + ": frame " + std::to_string(index) + " out of range (" +
                           std::to_string(info_.frames) + " frames)",
                       index);
    }
    const std::uint64_t page = (static_cast<std::uint64_t>(index) * volume_ + plane_) * channels_ + channel_;
    if (!crop_.empty()) {
      // Multi-ROI: the whole page, then the selected ROIs' rows (their flyback lines dropped).
      read_page(index, page, page_buf_.data());
      float* dst = out;
      for (const Roi& r : crop_)
        for (std::uint32_t y = 0; y < r.height; ++y, dst += r.width)
          std::memcpy(dst, page_buf_.data() + static_cast<std::size_t>(r.row + y) * page_w_, sizeof(float) * r.width);
      return;
    }
    read_page(index, page, out);
  }

 private:
  struct Roi {
    std::uint32_t row = 0, height = 0, width = 0;  // first page row, rows, columns (from the left)
  };

  // Multi-ROI layout from the scanfield sizes; `roi` < 0: all of them stacked (same widths),
  // else that one. Sets the movie's frame shape.
  void setup_rois(const std::string& path, const std::vector<std::pair<std::uint32_t, std::uint32_t>>& sizes, int roi) {
    if (sizes.size() < 2) return;  // one ROI: the page is its image
    const std::string where = path + ": ScanImage multi-ROI: ";
    std::uint64_t rows = 0;
    std::string list;
    for (const auto& [w, h] : sizes) {
      if (w == 0 || h == 0 || w > page_w_)
        throw MovieError(where + "a ROI of " + std::to_string(h) + "x" + std::to_string(w) + " pixels on pages of " +
                         std::to_string(page_h_) + "x" + std::to_string(page_w_));
      rows += h;
      list += (list.empty() ? "" : " + ") + std::to_string(h);
    }
    const std::uint64_t n = sizes.size();
    if (rows > page_h_ || (page_h_ - rows) % (n - 1) != 0) {
      throw MovieError(where + std::to_string(n) + " ROIs of " + list + " rows do not fit pages of " +
                       std::to_string(page_h_) + " rows with equal gaps between them");
    }
    const std::uint32_t gap = static_cast<std::uint32_t>((page_h_ - rows) / (n - 1));
    std::vector<Roi> rois;
    std::uint32_t row = 0;
    for (const auto& [w, h] : sizes) {
      rois.push_back({row, h, w});
      row += h + gap;
    }
    if (roi >= static_cast<int>(n)) {
      throw MovieError(path + ": roi " + std::to_string(roi) + " requested but the file has " + std::to_string(n) +
                       " (ScanImage multi-ROI)");
    }
    if (roi >= 0) {
      crop_ = {rois[static_cast<std::size_t>(roi)]};
    } else {
      for (const Roi& r : rois) {
        if (r.width != rois[0].width) {
          throw MovieError(where + "ROIs " + std::to_string(rois[0].width) + " and " + std::to_string(r.width) +
                           " pixels wide cannot be stacked; choose one with source.imaging_file.roi");
        }
      }
      crop_ = std::move(rois);
    }
    info_.height = 0;
    for (const Roi& r : crop_) info_.height += r.height;
    info_.width = crop_[0].width;
    info_.rois = static_cast<std::uint32_t>(n);
    info_.description += ", " + std::to_string(n) + " ROIs (" + (roi >= 0 ? "ROI " + std::to_string(roi) : "stacked") +
                         ", " + std::to_string(gap) + " flyback lines between)";
    page_buf_.resize(static_cast<std::size_t>(page_w_) * page_h_);
  }

  // Page `page` (frame `index` in errors) as float into out[page_h_ * page_w_].
  void read_page(std::int64_t index, std::uint64_t page, float* out) {
    if (contiguous_) {
      read_contiguous(index, page, out);
      return;
    }
    if (raw_fd_ >= 0 && page_spans_[page] != kNoSpan) {
      read_span(index, page_spans_[page], out);
      return;
    }
    last_error_.clear();
    if (!TIFFSetSubDirectory(tif_, page_offsets_[page])) fail(index, "cannot read its directory");
    std::uint32_t w = 0, h = 0;
    std::uint16_t bps = 0, fmt = SAMPLEFORMAT_UINT, spp = 1;
    TIFFGetField(tif_, TIFFTAG_IMAGEWIDTH, &w);
    TIFFGetField(tif_, TIFFTAG_IMAGELENGTH, &h);
    TIFFGetFieldDefaulted(tif_, TIFFTAG_BITSPERSAMPLE, &bps);
    TIFFGetFieldDefaulted(tif_, TIFFTAG_SAMPLEFORMAT, &fmt);
    TIFFGetFieldDefaulted(tif_, TIFFTAG_SAMPLESPERPIXEL, &spp);
    if (w != page_w_ || h != page_h_ || bps != bits_ || fmt != sample_format_ || spp != 1) {
      fail(index, "page shape or pixel type differs from the first page (" + std::to_string(h) +
                      "x" + std::to_string(w) + ", " + std::to_string(bps) + " bits)");
    }
    const std::size_t bpp = pixel_type_bytes(info_.dtype);
    const std::size_t frame_bytes = static_cast<std::size_t>(w) * h * bpp;
    char* buf = scratch_.data();
    if (TIFFIsTiled(tif_)) {
      std::uint32_t tw = 0, th = 0;
      TIFFGetField(tif_, TIFFTAG_TILEWIDTH, &tw);
      TIFFGetField(tif_, TIFFTAG_TILELENGTH, &th);
      const tmsize_t tile_bytes = TIFFTileSize(tif_);
      if (tw == 0 || th == 0 || static_cast<std::size_t>(tile_bytes) > tile_.size()) {
        fail(index, "unsupported tile layout");
      }
      for (std::uint32_t y = 0; y < h; y += th) {
        for (std::uint32_t x = 0; x < w; x += tw) {
          const ttile_t t = TIFFComputeTile(tif_, x, y, 0, 0);
          if (TIFFReadEncodedTile(tif_, t, tile_.data(), tile_bytes) < 0) {
            fail(index, "truncated or unreadable tile data");
          }
          const std::uint32_t rows = std::min(th, h - y), cols = std::min(tw, w - x);
          for (std::uint32_t r = 0; r < rows; ++r) {
            std::memcpy(buf + ((static_cast<std::size_t>(y) + r) * w + x) * bpp,
                        tile_.data() + static_cast<std::size_t>(r) * tw * bpp, cols * bpp);
          }
        }
      }
    } else {
      const tstrip_t strips = TIFFNumberOfStrips(tif_);
      std::size_t offset = 0;
      for (tstrip_t s = 0; s < strips && offset < frame_bytes; ++s) {
        const tmsize_t n = TIFFReadEncodedStrip(tif_, s, buf + offset,
                                                static_cast<tmsize_t>(frame_bytes - offset));
        if (n < 0) fail(index, "truncated or unreadable strip data");
        offset += static_cast<std::size_t>(n);
      }
      if (offset != frame_bytes) fail(index, "truncated strip data");
    }
    // libtiff has already converted to native byte order.
    detail::convert_to_float(info_.dtype, buf, static_cast<std::size_t>(w) * h, false, out);
  }

  [[noreturn]] void fail(std::int64_t index, const std::string& what) {
    std::string msg = info_.path + ": frame " + std::to_string(index) + ": " + what;
    if (!last_error_.empty()) msg += " (" + last_error_ + ")";
    throw MovieError(msg, index);
  }

  void read_layout(const std::string& path) {
    std::uint16_t spp = 1, planar = PLANARCONFIG_CONTIG;
    TIFFGetField(tif_, TIFFTAG_IMAGEWIDTH, &info_.width);
    TIFFGetField(tif_, TIFFTAG_IMAGELENGTH, &info_.height);
    TIFFGetFieldDefaulted(tif_, TIFFTAG_BITSPERSAMPLE, &bits_);
    TIFFGetFieldDefaulted(tif_, TIFFTAG_SAMPLEFORMAT, &sample_format_);
    TIFFGetFieldDefaulted(tif_, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetFieldDefaulted(tif_, TIFFTAG_PLANARCONFIG, &planar);
    if (info_.width == 0 || info_.height == 0) throw MovieError(path + ": empty first page");
    page_w_ = info_.width;
    page_h_ = info_.height;
    if (spp != 1) {
      throw MovieError(path + ": " + std::to_string(spp) +
                       " samples per pixel; only single-sample (grey) movies are supported");
    }
    const bool is_float = sample_format_ == SAMPLEFORMAT_IEEEFP;
    const bool is_int = sample_format_ == SAMPLEFORMAT_INT;
    if (is_float && bits_ == 32) info_.dtype = PixelType::kFloat32;
    else if (is_float && bits_ == 64) info_.dtype = PixelType::kFloat64;
    else if (!is_float && bits_ == 8 && !is_int) info_.dtype = PixelType::kUint8;
    else if (!is_float && bits_ == 16) info_.dtype = is_int ? PixelType::kInt16 : PixelType::kUint16;
    else if (!is_float && bits_ == 32) info_.dtype = is_int ? PixelType::kInt32 : PixelType::kUint32;
    else {
      throw MovieError(path + ": unsupported pixel type (" + std::to_string(bits_) +
                       " bits, sample format " + std::to_string(sample_format_) + ")");
    }
    scratch_.resize(static_cast<std::size_t>(info_.width) * info_.height *
                    pixel_type_bytes(info_.dtype));
    if (TIFFIsTiled(tif_)) tile_.resize(static_cast<std::size_t>(TIFFTileSize(tif_)));
  }

  void setup_contiguous(const std::string& path) {
    TIFFSetSubDirectory(tif_, page_offsets_[0]);
    if (TIFFIsTiled(tif_)) throw MovieError(path + ": tiled ImageJ contiguous stack unsupported");
    std::uint16_t compression = COMPRESSION_NONE;
    TIFFGetFieldDefaulted(tif_, TIFFTAG_COMPRESSION, &compression);
    if (compression != COMPRESSION_NONE) {
      throw MovieError(path + ": compressed ImageJ contiguous stack unsupported");
    }
    std::uint64_t* offsets = nullptr;
    if (!TIFFGetField(tif_, TIFFTAG_STRIPOFFSETS, &offsets) || !offsets) {
      throw MovieError(path + ": ImageJ stack without strip offsets");
    }
    data_offset_ = offsets[0];
    swap_ = TIFFIsByteSwapped(tif_) != 0;
    raw_file_ = std::fopen(path.c_str(), "rb");
    if (!raw_file_) throw MovieError(path + ": cannot reopen for reading");
  }

  // File offset of the current directory's pixels when they are one uncompressed run of the first
  // page's shape and type (strips back to back: what ScanImage, ImageJ and most writers produce),
  // else kNoSpan. Such a frame is then one pread instead of libtiff's directory re-read and
  // 8 KiB read + seek pairs (~130 system calls, 0.3 ms per 512 x 512 frame on a small VM).
  std::uint64_t plain_span() {
    std::uint32_t w = 0, h = 0;
    std::uint16_t bps = 0, fmt = SAMPLEFORMAT_UINT, spp = 1, comp = COMPRESSION_NONE;
    std::uint16_t planar = PLANARCONFIG_CONTIG;
    TIFFGetField(tif_, TIFFTAG_IMAGEWIDTH, &w);
    TIFFGetField(tif_, TIFFTAG_IMAGELENGTH, &h);
    TIFFGetFieldDefaulted(tif_, TIFFTAG_BITSPERSAMPLE, &bps);
    TIFFGetFieldDefaulted(tif_, TIFFTAG_SAMPLEFORMAT, &fmt);
    TIFFGetFieldDefaulted(tif_, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetFieldDefaulted(tif_, TIFFTAG_COMPRESSION, &comp);
    TIFFGetFieldDefaulted(tif_, TIFFTAG_PLANARCONFIG, &planar);
    if (w != page_w_ || h != page_h_ || bps != bits_ || fmt != sample_format_ || spp != 1 ||
        comp != COMPRESSION_NONE || planar != PLANARCONFIG_CONTIG || TIFFIsTiled(tif_)) {
      return kNoSpan;
    }
    // Bit-reversed fill order (libtiff reverses it while reading) stays with libtiff.
    std::uint16_t fill = FILLORDER_MSB2LSB;
    TIFFGetFieldDefaulted(tif_, TIFFTAG_FILLORDER, &fill);
    if (bps % 8 != 0 || fill != FILLORDER_MSB2LSB) return kNoSpan;
    const std::uint64_t* offsets = nullptr;
    const std::uint64_t* counts = nullptr;
    if (!TIFFGetField(tif_, TIFFTAG_STRIPOFFSETS, &offsets) || !offsets ||
        !TIFFGetField(tif_, TIFFTAG_STRIPBYTECOUNTS, &counts) || !counts) {
      return kNoSpan;
    }
    const tstrip_t strips = TIFFNumberOfStrips(tif_);
    const std::uint64_t bytes = static_cast<std::uint64_t>(w) * h * (bps / 8);
    std::uint64_t total = 0;
    for (tstrip_t s = 0; s < strips; ++s) {
      if (offsets[s] != offsets[0] + total) return kNoSpan;
      total += counts[s];
    }
    return strips > 0 && total == bytes ? offsets[0] : kNoSpan;
  }

  void read_span(std::int64_t index, std::uint64_t offset, float* out) {
    const std::size_t n = static_cast<std::size_t>(page_w_) * page_h_;
    const std::size_t bytes = n * pixel_type_bytes(info_.dtype);
    std::size_t got = 0;
    while (got < bytes) {
      const ssize_t r = ::pread(raw_fd_, scratch_.data() + got, bytes - got, static_cast<off_t>(offset + got));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) fail(index, std::string("cannot read its pixels (") + std::strerror(errno) + ")");
      if (r == 0) {
        fail(index, "truncated strip data (file ends after " + std::to_string(got) + " of " +
                        std::to_string(bytes) + " bytes)");
      }
      got += static_cast<std::size_t>(r);
    }
    detail::convert_to_float(info_.dtype, scratch_.data(), n, swap_, out);
  }

  void read_contiguous(std::int64_t index, std::uint64_t page, float* out) {
    const std::size_t n = static_cast<std::size_t>(page_w_) * page_h_;
    const std::size_t bytes = n * pixel_type_bytes(info_.dtype);
    if (fseeko(raw_file_, static_cast<off_t>(data_offset_ + page * bytes), SEEK_SET) != 0 ||
        std::fread(scratch_.data(), 1, bytes, raw_file_) != bytes) {
      throw MovieError(info_.path + ": frame " + std::to_string(index) +
                           ": truncated (file ends inside the frame)",
                       index);
    }
    detail::convert_to_float(info_.dtype, scratch_.data(), n, swap_, out);
  }

  TIFF* tif_ = nullptr;
  std::string last_error_;
  static constexpr std::uint64_t kNoSpan = ~std::uint64_t{0};
  std::vector<std::uint64_t> page_offsets_;
  std::vector<std::uint64_t> page_spans_;  // file offset of each page's pixels, or kNoSpan
  int raw_fd_ = -1;
  bool chain_broken_ = false;
  std::string chain_error_;
  std::uint16_t bits_ = 8, sample_format_ = SAMPLEFORMAT_UINT;
  std::uint32_t channels_ = 1, channel_ = 0;
  // Volumetric files: pages per volume and channel (slices, plus saved flyback frames), the
  // slices among them, and the one read.
  std::uint32_t volume_ = 1, slices_ = 1, plane_ = 0;
  std::vector<char> scratch_, tile_;
  std::uint32_t page_w_ = 0, page_h_ = 0;  // the pages' shape (the frame's unless ROIs are cut out)
  std::vector<Roi> crop_;                  // multi-ROI: the ROIs read (stacked), in page order
  std::vector<float> page_buf_;            // multi-ROI: the page before the ROIs are cut out
  // ImageJ contiguous layout
  bool contiguous_ = false, swap_ = false;
  std::uint64_t data_offset_ = 0;
  std::FILE* raw_file_ = nullptr;
};

}  // namespace

std::unique_ptr<MovieReader> open_tiff_movie(const std::string& path, const MovieOptions& options) {
  return std::make_unique<TiffMovie>(path, options);
}

}  // namespace rtnmf::io
