#include "engine/io/movie.h"

#include <hdf5.h>
#include <fnmatch.h>
#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <regex>
#include <vector>

#include "engine/io/h5.h"
#include "engine/io/tiff_reader.h"

namespace rtnmf::io {

const char* pixel_type_name(PixelType t) {
  switch (t) {
    case PixelType::kUint8: return "uint8";
    case PixelType::kUint16: return "uint16";
    case PixelType::kInt16: return "int16";
    case PixelType::kUint32: return "uint32";
    case PixelType::kInt32: return "int32";
    case PixelType::kFloat32: return "float32";
    case PixelType::kFloat64: return "float64";
  }
  return "?";
}

PixelType parse_pixel_type(const std::string& name) {
  for (PixelType t : {PixelType::kUint8, PixelType::kUint16, PixelType::kInt16, PixelType::kUint32,
                      PixelType::kInt32, PixelType::kFloat32, PixelType::kFloat64}) {
    if (name == pixel_type_name(t)) return t;
  }
  if (name == "float") return PixelType::kFloat32;
  if (name == "double") return PixelType::kFloat64;
  throw std::invalid_argument("unknown dtype '" + name +
                              "' (uint8, uint16, int16, uint32, int32, float32, float64)");
}

std::size_t pixel_type_bytes(PixelType t) {
  switch (t) {
    case PixelType::kUint8: return 1;
    case PixelType::kUint16:
    case PixelType::kInt16: return 2;
    case PixelType::kUint32:
    case PixelType::kInt32:
    case PixelType::kFloat32: return 4;
    case PixelType::kFloat64: return 8;
  }
  return 0;
}

bool MovieReader::read_next(float* out) {
  if (info_.frames >= 0 && next_ >= info_.frames) {
    if (damaged_at_ >= 0 && next_ >= damaged_at_) throw MovieError(damage_message_, damaged_at_);
    return false;
  }
  read_frame(next_, out);
  ++next_;
  return true;
}

namespace detail {

namespace {
template <typename T>
void convert(const void* src, std::size_t n, bool swap, float* out) {
  const unsigned char* p = static_cast<const unsigned char*>(src);
  for (std::size_t i = 0; i < n; ++i) {
    unsigned char b[sizeof(T)];
    std::memcpy(b, p + i * sizeof(T), sizeof(T));
    if (swap) std::reverse(b, b + sizeof(T));
    T v;
    std::memcpy(&v, b, sizeof(T));
    out[i] = static_cast<float>(v);
  }
}
}  // namespace

void convert_to_float(PixelType t, const void* src, std::size_t n, bool swap, float* out) {
  switch (t) {
    case PixelType::kUint8: convert<std::uint8_t>(src, n, false, out); break;
    case PixelType::kUint16: convert<std::uint16_t>(src, n, swap, out); break;
    case PixelType::kInt16: convert<std::int16_t>(src, n, swap, out); break;
    case PixelType::kUint32: convert<std::uint32_t>(src, n, swap, out); break;
    case PixelType::kInt32: convert<std::int32_t>(src, n, swap, out); break;
    case PixelType::kFloat32: convert<float>(src, n, swap, out); break;
    case PixelType::kFloat64: convert<double>(src, n, swap, out); break;
  }
}

double frame_rate_from_text(const std::string& text) {
  static const std::regex si(R"(scanFrameRate\s*=\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?))");
  static const std::regex fint(R"((?:^|\n)finterval=([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?))");
  static const std::regex fps(R"((?:^|\n)fps=([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?))");
  std::smatch m;
  if (std::regex_search(text, m, si)) return std::stod(m[1]);
  if (std::regex_search(text, m, fps)) return std::stod(m[1]);
  if (std::regex_search(text, m, fint)) {
    double dt = std::stod(m[1]);
    return dt > 0 ? 1.0 / dt : 0.0;
  }
  return 0.0;
}

}  // namespace detail

namespace {

bool ends_with(const std::string& s, const char* suffix) {
  const std::size_t n = std::strlen(suffix);
  if (s.size() < n) return false;
  for (std::size_t i = 0; i < n; ++i) {
    if (std::tolower(static_cast<unsigned char>(s[s.size() - n + i])) != suffix[i]) return false;
  }
  return true;
}

class RawMovie final : public MovieReader {
 public:
  RawMovie(const std::string& path, const MovieOptions& o) {
    info_.path = path;
    info_.format = MovieFormat::kRaw;
    info_.description = "raw";
    info_.height = o.raw_height;
    info_.width = o.raw_width;
    try {
      info_.dtype = parse_pixel_type(o.raw_dtype);
    } catch (const std::invalid_argument& e) {
      throw MovieError(path + ": " + e.what());
    }
    if (info_.height == 0 || info_.width == 0) {
      throw MovieError(path + ": raw movies need a frame shape (height and width)");
    }
    info_.frame_rate_hz = o.frame_rate_hz;
    header_ = o.raw_header_bytes;
    swap_ = o.raw_big_endian;
    if (swap_ && pixel_type_bytes(info_.dtype) == 1) swap_ = false;
    file_ = std::fopen(path.c_str(), "rb");
    if (!file_) throw MovieError(path + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (fstat(fileno(file_), &st) != 0) throw MovieError(path + ": cannot stat");
    frame_bytes_ = static_cast<std::uint64_t>(info_.height) * info_.width *
                   pixel_type_bytes(info_.dtype);
    const std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
    if (size < header_) throw MovieError(path + ": shorter than its header");
    info_.frames = static_cast<std::int64_t>((size - header_) / frame_bytes_);
    const std::uint64_t rest = (size - header_) % frame_bytes_;
    if (rest != 0) {
      damaged_at_ = info_.frames;
      damage_message_ = path + ": frame " + std::to_string(damaged_at_) +
                        ": truncated (file ends after " + std::to_string(rest) + " of " +
                        std::to_string(frame_bytes_) + " bytes)";
    }
    scratch_.resize(frame_bytes_);
  }
  ~RawMovie() override {
    if (file_) std::fclose(file_);
  }

  void read_frame(std::int64_t index, float* out) override {
    if (index < 0 || index >= info_.frames) {
      if (damaged_at_ >= 0 && index == damaged_at_) throw MovieError(damage_message_, index);
      throw MovieError(info_.path + ": frame " + std::to_string(index) + " out of range (" +
                           std::to_string(info_.frames) + " frames)",
                       index);
    }
    const std::uint64_t off = header_ + static_cast<std::uint64_t>(index) * frame_bytes_;
    if (fseeko(file_, static_cast<off_t>(off), SEEK_SET) != 0 ||
        std::fread(scratch_.data(), 1, frame_bytes_, file_) != frame_bytes_) {
      throw MovieError(info_.path + ": frame " + std::to_string(index) + ": read failed", index);
    }
    detail::convert_to_float(info_.dtype, scratch_.data(),
                             static_cast<std::size_t>(info_.height) * info_.width, swap_, out);
  }

 private:
  std::FILE* file_ = nullptr;
  std::uint64_t header_ = 0, frame_bytes_ = 0;
  bool swap_ = false;
  std::vector<char> scratch_;
};

class Hdf5Movie final : public MovieReader {
 public:
  Hdf5Movie(const std::string& path, std::string dataset, const MovieOptions& o)
      : file_(open_file(path)) {
    info_.path = path;
    info_.format = MovieFormat::kHdf5;
    if (dataset.empty()) dataset = find_single_3d(path);
    dataset_ = dataset;
    h5::Dims d;
    try {
      d = file_.dims(dataset);
    } catch (const std::exception& e) {
      throw MovieError(e.what());
    }
    if (d.size() != 3) {
      throw MovieError(file_.where(dataset) + ": expected a 3-d movie (T x H x W or H x W x T), found " +
                       std::to_string(d.size()) + " dimensions");
    }
    dims_ = d;
    std::string order = o.hdf5_order;
    if (order == "auto") order = detect_order(d);
    if (order == "thw") {
      hwt_ = false;
      info_.frames = static_cast<std::int64_t>(d[0]);
      info_.height = static_cast<std::uint32_t>(d[1]);
      info_.width = static_cast<std::uint32_t>(d[2]);
      info_.description = "HDF5 T x H x W";
    } else if (order == "hwt") {
      hwt_ = true;
      info_.frames = static_cast<std::int64_t>(d[2]);
      info_.height = static_cast<std::uint32_t>(d[0]);
      info_.width = static_cast<std::uint32_t>(d[1]);
      info_.description = "HDF5 H x W x T";
    } else {
      throw MovieError(path + ": hdf5 order '" + o.hdf5_order + "' (auto, thw or hwt)");
    }
    info_.dtype = stored_type();
    if (file_.has_attr(dataset, "frame_rate")) info_.frame_rate_hz = file_.attr_double(dataset, "frame_rate");
    else if (file_.has_attr("/", "frame_rate")) info_.frame_rate_hz = file_.attr_double("/", "frame_rate");
    else if (file_.has_attr("/", "fr")) info_.frame_rate_hz = file_.attr_double("/", "fr");
    if (o.frame_rate_hz > 0) info_.frame_rate_hz = o.frame_rate_hz;
  }

  void read_frame(std::int64_t index, float* out) override {
    if (index < 0 || index >= info_.frames) {
      throw MovieError(info_.path + ": frame " + std::to_string(index) + " out of range (" +
                           std::to_string(info_.frames) + " frames)",
                       index);
    }
    const std::uint64_t t = static_cast<std::uint64_t>(index);
    try {
      if (hwt_) {
        // An H x W x 1 slab is already row-major H x W.
        file_.read_slab<float>(dataset_, {0, 0, t}, {dims_[0], dims_[1], 1}, out);
      } else {
        file_.read_slab<float>(dataset_, {t, 0, 0}, {1, dims_[1], dims_[2]}, out);
      }
    } catch (const std::exception& e) {
      throw MovieError(info_.path + ": frame " + std::to_string(index) + ": " + e.what(), index);
    }
  }

 private:
  static h5::File open_file(const std::string& path) {
    try {
      return h5::File::open(path);
    } catch (const std::exception& e) {
      throw MovieError(e.what());
    }
  }

  std::string find_single_3d(const std::string& path) {
    std::vector<std::string> found;
    for (const std::string& name : file_.list("/")) {
      const std::string p = "/" + name;
      if (file_.is_dataset(p) && file_.dims(p).size() == 3) found.push_back(p);
    }
    if (found.size() != 1) {
      throw MovieError(path + ": name the dataset (file.h5:/dataset); " +
                       std::to_string(found.size()) + " 3-d datasets at the root");
    }
    return found[0];
  }

  // Chunk shape when it tells (chunks of one frame), else the interpretation whose image aspect
  // ratio is closer to square (ties: T x H x W, the CaImAn/suite2p order).
  std::string detect_order(const h5::Dims& d) {
    h5::Handle ds = file_.open_dataset(dataset_);
    hid_t plist = H5Dget_create_plist(ds.get());
    if (plist >= 0) {
      if (H5Pget_layout(plist) == H5D_CHUNKED) {
        hsize_t c[3] = {0, 0, 0};
        if (H5Pget_chunk(plist, 3, c) == 3) {
          if (c[0] == 1 && c[2] > 1 && d[0] > 1) {
            H5Pclose(plist);
            return "thw";
          }
          if (c[2] == 1 && c[0] > 1 && d[2] > 1) {
            H5Pclose(plist);
            return "hwt";
          }
        }
      }
      H5Pclose(plist);
    }
    auto aspect = [](std::uint64_t a, std::uint64_t b) {
      return static_cast<double>(std::max(a, b)) / static_cast<double>(std::max<std::uint64_t>(1, std::min(a, b)));
    };
    return aspect(d[0], d[1]) < aspect(d[1], d[2]) ? "hwt" : "thw";
  }

  PixelType stored_type() {
    h5::Handle ds = file_.open_dataset(dataset_);
    hid_t type = H5Dget_type(ds.get());
    PixelType t = PixelType::kFloat32;
    const H5T_class_t cls = H5Tget_class(type);
    const std::size_t size = H5Tget_size(type);
    if (cls == H5T_FLOAT) {
      t = size == 8 ? PixelType::kFloat64 : PixelType::kFloat32;
    } else if (cls == H5T_INTEGER) {
      const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
      if (size == 1) t = PixelType::kUint8;
      else if (size == 2) t = is_signed ? PixelType::kInt16 : PixelType::kUint16;
      else t = is_signed ? PixelType::kInt32 : PixelType::kUint32;
    } else {
      H5Tclose(type);
      throw MovieError(file_.where(dataset_) + ": not a numeric dataset");
    }
    H5Tclose(type);
    return t;
  }

  h5::File file_;
  std::string dataset_;
  h5::Dims dims_;
  bool hwt_ = false;
};

}  // namespace

namespace {

// Several files read as one movie (open_movie with a directory or a pattern).
class ConcatMovie final : public MovieReader {
 public:
  ConcatMovie(const std::string& spec, const std::vector<std::string>& paths, const std::string& dataset,
              const MovieOptions& options) {
    std::int64_t total = 0;
    for (const std::string& p : paths) {
      std::unique_ptr<MovieReader> m = open_movie(dataset.empty() ? p : p + ":" + dataset, options);
      const MovieInfo& mi = m->info();
      if (!parts_.empty() && (mi.height != info_.height || mi.width != info_.width)) {
        throw MovieError(p + ": frames are " + std::to_string(mi.height) + "x" + std::to_string(mi.width) + ", " +
                         paths.front() + "'s are " + std::to_string(info_.height) + "x" + std::to_string(info_.width));
      }
      if (parts_.empty()) info_ = mi;
      starts_.push_back(total);
      total += mi.frames;
      const std::int64_t damaged = m->damaged_at();
      const std::string message = m->damage_message();
      parts_.push_back(std::move(m));
      if (damaged >= 0) {
        // This file ends the movie: frames after its damage are not reachable.
        damaged_at_ = starts_.back() + damaged;
        damage_message_ = in_movie(message, damaged_at_);
        break;
      }
    }
    info_.frames = total;
    info_.path = spec;
    info_.files = static_cast<std::uint32_t>(paths.size());
    info_.description += ", " + std::to_string(paths.size()) + " files";
  }

  void read_frame(std::int64_t index, float* out) override {
    if (index < 0 || index >= info_.frames) {
      if (damaged_at_ >= 0 && index >= damaged_at_) throw MovieError(damage_message_, damaged_at_);
      throw MovieError(info_.path + ": frame " + std::to_string(index) + " out of range (" +
                           std::to_string(info_.frames) + " frames in " + std::to_string(info_.files) + " files)",
                       index);
    }
    const std::size_t k = static_cast<std::size_t>(std::upper_bound(starts_.begin(), starts_.end(), index) - starts_.begin() - 1);
    try {
      parts_[k]->read_frame(index - starts_[k], out);
    } catch (const MovieError& e) {
      throw MovieError(in_movie(e.what(), index), index);
    }
  }

 private:
  std::string in_movie(const std::string& what, std::int64_t index) const {
    return what + " (frame " + std::to_string(index) + " of the recording)";
  }
  std::vector<std::unique_ptr<MovieReader>> parts_;
  std::vector<std::int64_t> starts_;  // the movie's index of each file's first frame
};

// File names open_movie reads by their extension (a directory's movies are those).
bool is_tiff_name(const std::string& name) {
  return ends_with(name, ".tif") || ends_with(name, ".tiff") || ends_with(name, ".btf") || ends_with(name, ".tf8");
}
bool is_hdf5_name(const std::string& name) {
  return ends_with(name, ".h5") || ends_with(name, ".hdf5") || ends_with(name, ".hdf");
}

// A movie spec taken apart: the path, the dataset ("file.h5:/dataset": a ':' followed by '/', so
// Windows-free POSIX paths stay intact), and whether the path is a directory or a pattern.
struct SpecParts {
  std::string path, dataset;
  bool exists = false, directory = false, pattern = false;
};
SpecParts split_spec(const std::string& spec) {
  SpecParts s;
  s.path = spec;
  if (std::size_t colon = spec.rfind(":/"); colon != std::string::npos && colon > 0) {
    s.path = spec.substr(0, colon);
    s.dataset = spec.substr(colon + 1);
  }
  struct stat st {};
  s.exists = ::stat(s.path.c_str(), &st) == 0;  // "take[2].tif" is a file, not a pattern
  s.directory = s.exists && S_ISDIR(st.st_mode);
  s.pattern = !s.exists && s.path.find_first_of("*?[") != std::string::npos;
  return s;
}

// A directory's movie files or a pattern's matches, in name order.
std::vector<std::string> list_files(const SpecParts& s) {
  std::vector<std::string> files;
  if (s.pattern) {
    glob_t g{};
    const int rc = ::glob(s.path.c_str(), 0, nullptr, &g);  // sorted by name
    for (std::size_t i = 0; rc == 0 && i < g.gl_pathc; ++i) files.emplace_back(g.gl_pathv[i]);
    globfree(&g);
  } else if (s.directory) {
    for (const auto& e : std::filesystem::directory_iterator(s.path)) {
      const std::string name = e.path().filename().string();
      if (e.is_regular_file() && (is_tiff_name(name) || is_hdf5_name(name))) files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
  }
  return files;
}

}  // namespace

bool movie_spec_includes(const std::string& spec, const std::string& path) {
  const SpecParts s = split_spec(spec);
  std::error_code ec;
  if (s.pattern) {
    auto absolute = [&](const std::string& x) { return std::filesystem::absolute(x, ec).lexically_normal().string(); };
    return ::fnmatch(absolute(s.path).c_str(), absolute(path).c_str(), 0) == 0;
  }
  const std::filesystem::path p(path);
  if (s.directory) {
    const std::filesystem::path dir = p.has_parent_path() ? p.parent_path() : std::filesystem::path(".");
    const std::string name = p.filename().string();
    return std::filesystem::equivalent(dir, s.path, ec) && (is_tiff_name(name) || is_hdf5_name(name));
  }
  return s.exists && std::filesystem::exists(p, ec) && std::filesystem::equivalent(p, s.path, ec);
}

std::unique_ptr<MovieReader> open_movie(const std::string& spec, const MovieOptions& options) {
  const SpecParts parts = split_spec(spec);
  const std::string& path = parts.path;
  const std::string& dataset = parts.dataset;
  const bool exists = parts.exists;
  // A directory or a pattern: the files in name order, as one movie.
  const std::vector<std::string> files = list_files(parts);
  if (parts.pattern && files.empty()) throw MovieError(path + ": no file matches");
  if (parts.directory && files.empty())
    throw MovieError(path + ": directory holds no movie file (.tif, .tiff, .btf, .tf8, .h5, .hdf5, .hdf)");
  if (files.size() > 1) return std::make_unique<ConcatMovie>(path, files, dataset, options);
  if (files.size() == 1) return open_movie(dataset.empty() ? files[0] : files[0] + ":" + dataset, options);
  if (!exists) throw MovieError(path + ": no such file");
  // Channels and planes are TIFF page layouts; an HDF5 or raw movie is one T x H x W stack.
  auto single_stack = [&](const char* kind) {
    if (options.channel > 0)
      throw MovieError(path + ": channel " + std::to_string(options.channel) + " requested but " + kind +
                       " movies hold one channel");
    if (options.plane > 0)
      throw MovieError(path + ": plane " + std::to_string(options.plane) + " requested but " + kind +
                       " movies hold one plane");
    if (options.roi > 0)
      throw MovieError(path + ": roi " + std::to_string(options.roi) + " requested but " + kind +
                       " movies hold one field of view");
  };
  if (!dataset.empty() || is_hdf5_name(path)) {
    single_stack("HDF5");
    return std::make_unique<Hdf5Movie>(path, dataset, options);
  }
  if (is_tiff_name(path)) return open_tiff_movie(path, options);
  if (options.raw_height > 0 && options.raw_width > 0) {
    single_stack("raw");
    return std::make_unique<RawMovie>(path, options);
  }
  // Sniff: TIFF magic, HDF5 signature.
  unsigned char magic[8] = {};
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    std::size_t n = std::fread(magic, 1, sizeof magic, f);
    std::fclose(f);
    if (n >= 4 && ((magic[0] == 'I' && magic[1] == 'I') || (magic[0] == 'M' && magic[1] == 'M'))) {
      return open_tiff_movie(path, options);
    }
    if (n == 8 && std::memcmp(magic, "\x89HDF\r\n\x1a\n", 8) == 0) {
      single_stack("HDF5");
      return std::make_unique<Hdf5Movie>(path, dataset, options);
    }
  }
  throw MovieError(path + ": unknown movie format (TIFF, HDF5 file.h5:/dataset, or raw with a "
                          "height and width)");
}

}  // namespace rtnmf::io
