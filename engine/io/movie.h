// Imaging movies on disk: multi-page TIFF / BigTIFF (ScanImage, ImageJ hyperstacks), HDF5 datasets
// (T x H x W or H x W x T) and raw binary. One reader interface for all of them.
//
//   MovieOptions opts;                                   // defaults suit most files
//   std::unique_ptr<MovieReader> m = open_movie("rec.h5:/mov", opts);
//   std::vector<float> frame(m->info().height * m->info().width);
//   while (m->read_next(frame.data())) { ... }           // pixel index = row * width + column
//
// Errors: open_movie throws MovieError naming the file and what is wrong (missing, unsupported
// pixel type, bad shape). A damaged or truncated file opens: the frames before the damage read
// normally and reading the damaged frame throws MovieError whose message names the file and the
// frame index ("rec.tif: frame 7: ..."), with frame_index() set.
// Threads: a reader is used by one thread at a time (the source thread). HDF5 readers share the
// process-wide HDF5 library, which is not thread-safe (see engine/io/h5.h).
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

namespace rtnmf::io {

enum class PixelType { kUint8, kUint16, kInt16, kUint32, kInt32, kFloat32, kFloat64 };

// "uint16", "float32", ... (the names MovieOptions::raw_dtype accepts).
const char* pixel_type_name(PixelType t);
// Parses a dtype name ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64");
// throws std::invalid_argument naming the text otherwise.
PixelType parse_pixel_type(const std::string& name);
std::size_t pixel_type_bytes(PixelType t);

// A reading error. frame_index() is the frame that could not be read, or -1 for open errors.
class MovieError : public std::runtime_error {
 public:
  MovieError(const std::string& what, std::int64_t frame_index = -1)
      : std::runtime_error(what), frame_index_(frame_index) {}
  std::int64_t frame_index() const { return frame_index_; }

 private:
  std::int64_t frame_index_;
};

enum class MovieFormat { kTiff, kHdf5, kRaw };

struct MovieInfo {
  std::string path;          // the file (without ":/dataset")
  MovieFormat format = MovieFormat::kTiff;
  std::int64_t frames = -1;  // readable frames (TIFF/HDF5/raw: known at open)
  std::uint32_t height = 0;
  std::uint32_t width = 0;
  PixelType dtype = PixelType::kUint16;
  double frame_rate_hz = 0;  // 0 = not recorded in the file (volumetric: the volume rate)
  std::uint32_t planes = 1;  // planes of a volumetric TIFF (the one read: MovieOptions::plane)
  std::uint32_t rois = 1;    // ROIs of a ScanImage multi-ROI TIFF (read: MovieOptions::roi)
  std::string description;   // e.g. "ScanImage", "ImageJ", "BigTIFF", "HDF5 T x H x W"
  std::uint32_t files = 1;    // files the movie spans (a directory or a pattern)
};

// How to interpret a file. Everything has a default; only raw files need a shape.
struct MovieOptions {
  // HDF5 axis order: "auto" (default), "thw" or "hwt". auto: an `axes`/`DIMENSION_LABELS`-like
  // attribute when present, otherwise T x H x W unless the last axis is the only one longer than
  // both others' (SIMA and MATLAB write H x W x T).
  std::string hdf5_order = "auto";
  // Raw binary: one frame is height x width of raw_dtype, row-major, after header_bytes.
  std::uint32_t raw_height = 0;
  std::uint32_t raw_width = 0;
  std::string raw_dtype = "uint16";
  std::uint64_t raw_header_bytes = 0;
  bool raw_big_endian = false;
  // Multi-channel TIFFs (ImageJ "channels=N", ScanImage channelSave): which channel (0-based).
  std::uint32_t channel = 0;
  // Volumetric TIFFs (ImageJ hyperstacks with "slices=N", ScanImage fast z): which plane
  // (0-based). Each plane is a movie of its own, sampled once per volume (suite2p's nplanes).
  std::uint32_t plane = 0;
  // ScanImage multi-ROI TIFFs (SI.hRoiManager.mroiEnable; pages hold the ROIs top to bottom with
  // flyback lines between): which ROI (0-based, in scan order), or -1 (default) for all of them
  // stacked without the flyback lines (they must be equally wide).
  int roi = -1;
  // Overrides the frame rate found in the file (0 = keep the file's).
  double frame_rate_hz = 0;
};

class MovieReader {
 public:
  virtual ~MovieReader() = default;
  const MovieInfo& info() const { return info_; }

  // Reads frame `index` as float into out[height * width] (row-major). Does not allocate for
  // TIFF/raw (scratch is sized at open); HDF5 may allocate inside the library. Throws MovieError
  // naming the file and the frame index when the frame is missing or damaged.
  virtual void read_frame(std::int64_t index, float* out) = 0;

  // Reads the next frame (starting at 0). Returns false at the end of the movie; throws
  // MovieError (as read_frame) when the next frame is damaged. Same allocation rules.
  bool read_next(float* out);
  std::int64_t next_index() const { return next_; }
  void seek(std::int64_t index) { next_ = index; }
  // The first frame found damaged at open (-1: none) and the error it gives.
  std::int64_t damaged_at() const { return damaged_at_; }
  const std::string& damage_message() const { return damage_message_; }

 protected:
  MovieInfo info_;
  // Set by readers that found damage at open (e.g. a TIFF whose directory chain points past the
  // end of the file): frames >= damaged_at_ throw damage_message_.
  std::int64_t damaged_at_ = -1;
  std::string damage_message_;

 private:
  std::int64_t next_ = 0;
};

// Opens a movie. `spec` is "file.tif" / "file.tiff" / "file.btf", "file.h5:/dataset" (or
// "file.h5" with a single 3-d dataset), or a raw file ("*.raw", "*.bin", "*.dat", needs
// raw_height/raw_width). A recording split over several files (ScanImage writes one every
// logFramesPerFile frames) is one movie: `spec` a directory (its TIFF / HDF5 files, in name
// order) or a pattern with * ? [ (glob, in name order; "session_*.h5:/mov" applies the dataset
// to each). The files must share the frame shape; the first one's rate and description hold;
// frame i of the movie is frame i - (frames of the files before) of its file, and an error in a
// file names that file, its frame and the movie's frame (a file damaged at its end ends the
// movie there: later files are not reached). Allocates; throws MovieError naming the file.
std::unique_ptr<MovieReader> open_movie(const std::string& spec, const MovieOptions& options = {});

// Whether `path` (existing or not) is, or as a new file would become, part of the movie `spec`
// names: the same file as a single-file spec (a dataset suffix ignored), a movie file in a
// directory spec, a match of a pattern spec. For refusing to write results over a recording.
bool movie_spec_includes(const std::string& spec, const std::string& path);

namespace detail {
// Converts `count` pixels of type t from `src` to float. Does not allocate.
void convert_to_float(PixelType t, const void* src, std::size_t count, bool swap_bytes, float* out);
// Looks for a frame rate in TIFF description/software text (ScanImage "scanFrameRate = 30",
// ImageJ "finterval=0.033" or "fps=30"). Returns 0 when none. Allocates.
double frame_rate_from_text(const std::string& text);
}  // namespace detail

}  // namespace rtnmf::io
