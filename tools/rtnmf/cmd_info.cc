// `rtnmf info MOVIE`: what the movie readers make of a file (frames, shape, type, rate, channels,
// planes, files), as JSON, and with --check whether every frame can be read.
#include <cstdio>
#include <string>
#include <vector>

#include "engine/io/movie.h"
#include "tools/rtnmf/command.h"

namespace rtnmf::cli {
namespace {

const char* kUsage = R"(usage: rtnmf info MOVIE [options]

Prints, as JSON, how rtnmf reads a movie: frames, height, width, pixel type, frame rate (0: none
in the file), planes, ROIs, files and the reader's description (TIFF/BigTIFF/ImageJ/ScanImage, HDF5
axis order). MOVIE is what `rtnmf replay` takes: file.tif, file.h5[:/dataset], a raw file, a
directory or a quoted pattern of a recording split over files.

  --channel N      multi-channel TIFF: the channel read (0)
  --plane N        volumetric TIFF: the plane read (0)
  --roi N          ScanImage multi-ROI TIFF: the ROI read (default: all, stacked)
  --hdf5-order O   auto (default), thw or hwt
  --height H --width W --dtype T --header-bytes N --big-endian   raw binary layout
  --rate HZ        frame rate to assume or override
  --check          read every frame: "readable_frames" and, at the first damaged frame, "error"
                   (exit status 1)
)";

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += c;
    else if (c == '\n') out += "\\n";
    else if (static_cast<unsigned char>(c) < 0x20) out += ' ';
    else out += c;
  }
  return out + "\"";
}

int info_cmd(const std::vector<std::string>& args) {
  ArgParser p(args, {"check", "big-endian"});
  p.check_known({"channel", "plane", "roi", "hdf5-order", "height", "width", "dtype", "header-bytes", "big-endian", "rate",
                 "check"});
  if (p.positionals().size() != 1) throw UsageError("expected one MOVIE");
  io::MovieOptions o;
  auto count = [&](const char* name) {
    const long long v = p.get_int(name, 0);
    if (v < 0) throw UsageError(std::string("--") + name + " must be >= 0");
    return v;
  };
  o.channel = static_cast<std::uint32_t>(count("channel"));
  o.plane = static_cast<std::uint32_t>(count("plane"));
  if (p.has("roi")) o.roi = static_cast<int>(count("roi"));
  o.hdf5_order = p.get("hdf5-order", "auto");
  o.raw_height = static_cast<std::uint32_t>(count("height"));
  o.raw_width = static_cast<std::uint32_t>(count("width"));
  o.raw_dtype = p.get("dtype", "uint16");
  o.raw_header_bytes = static_cast<std::uint64_t>(count("header-bytes"));
  o.raw_big_endian = p.has("big-endian");
  o.frame_rate_hz = p.get_double("rate", 0);
  std::unique_ptr<io::MovieReader> m = io::open_movie(p.positionals()[0], o);
  const io::MovieInfo& in = m->info();
  const char* format = in.format == io::MovieFormat::kTiff ? "tiff" : in.format == io::MovieFormat::kHdf5 ? "hdf5" : "raw";
  std::string out = "{\n";
  out += "  \"path\": " + json_string(in.path) + ",\n";
  out += std::string("  \"format\": \"") + format + "\",\n";
  out += "  \"frames\": " + std::to_string(in.frames) + ",\n";
  out += "  \"height\": " + std::to_string(in.height) + ",\n";
  out += "  \"width\": " + std::to_string(in.width) + ",\n";
  out += std::string("  \"dtype\": \"") + io::pixel_type_name(in.dtype) + "\",\n";
  char rate[64];
  std::snprintf(rate, sizeof rate, "%.6g", in.frame_rate_hz);
  out += std::string("  \"frame_rate_hz\": ") + rate + ",\n";
  out += "  \"planes\": " + std::to_string(in.planes) + ",\n";
  out += "  \"rois\": " + std::to_string(in.rois) + ",\n";
  out += "  \"files\": " + std::to_string(in.files) + ",\n";
  out += "  \"description\": " + json_string(in.description);
  int status = 0;
  if (p.has("check")) {
    std::vector<float> frame(static_cast<std::size_t>(in.height) * in.width);
    std::int64_t good = 0;
    std::string error;
    try {
      while (m->read_next(frame.data())) ++good;
    } catch (const io::MovieError& e) {
      error = e.what();
      status = 1;
    }
    out += ",\n  \"readable_frames\": " + std::to_string(good);
    if (!error.empty()) out += ",\n  \"error\": " + json_string(error);
  }
  out += "\n}\n";
  std::fputs(out.c_str(), stdout);
  return status;
}

const CommandRegistration kRegister(Command{"info", "how rtnmf reads a movie (frames, shape, rate, planes), --check reads it all",
                                            kUsage, info_cmd});

}  // namespace
}  // namespace rtnmf::cli
