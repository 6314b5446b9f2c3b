// Source kind "imaging_file": calcium-imaging movies (TIFF/BigTIFF incl. ScanImage and ImageJ,
// HDF5 T x H x W or H x W x T, raw binary) through engine/io/movie.h. A damaged or truncated file
// ends the stream with an error naming the file and the frame index; the frames before it have
// been delivered.
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "engine/io/frame_list.h"
#include "engine/io/movie.h"
#include "engine/runtime/pacer.h"
#include "engine/runtime/registry.h"

namespace rtnmf::imaging {
namespace {

class ImagingFileSource : public Source {
 public:
  StreamSpec open(const v1::SourceConfig& config, const std::string& stream_id) override {
    const v1::ImagingFileSource& c = config.imaging_file();
    if (c.path().empty()) throw ConfigError("source.imaging_file.path: missing");
    io::MovieOptions o;
    if (!c.hdf5_order().empty()) o.hdf5_order = c.hdf5_order();
    o.channel = c.channel();
    o.plane = c.plane();
    if (c.has_roi()) o.roi = static_cast<int>(c.roi());
    o.raw_height = c.height();
    o.raw_width = c.width();
    if (!c.dtype().empty()) o.raw_dtype = c.dtype();
    o.raw_header_bytes = c.header_bytes();
    o.raw_big_endian = c.big_endian();
    o.frame_rate_hz = c.rate_hz();
    try {
      movie_ = io::open_movie(c.path(), o);
    } catch (const std::exception& e) {
      throw ConfigError(std::string("source.imaging_file: ") + e.what());
    }
    const io::MovieInfo& in = movie_->info();
    const double rate = in.frame_rate_hz > 0 ? in.frame_rate_hz : 30.0;
    // The rate sets the indicator's decay in frames, the baselines' time constants and the pacing:
    // say when it is a guess.
    if (in.frame_rate_hz <= 0)
      std::fprintf(stderr, "note: %s records no frame rate; assuming 30 Hz (set source.rate_hz)\n", c.path().c_str());
    StreamSpec spec = StreamSpec::make(stream_id, in.height * in.width, 1, rate);
    spec.height = in.height;
    spec.width = in.width;
    pacer_.init(config, rate, false);
    max_frames_ = config.max_frames();
    bad_frames_.clear();
    if (!c.bad_frames().empty()) {
      try {
        bad_frames_ = io::read_frame_list(c.bad_frames());
      } catch (const std::exception& e) {
        throw ConfigError(std::string("source.imaging_file.bad_frames: ") + e.what());
      }
      const std::uint64_t n = in.frames > 0 ? static_cast<std::uint64_t>(in.frames) : 0;  // 0: not known
      if (n > 0 && !bad_frames_.empty() && bad_frames_.back() >= n)
        throw ConfigError("source.imaging_file.bad_frames: " + c.bad_frames() + " lists frame " +
                          std::to_string(bad_frames_.back()) + ", but " + c.path() + " has " + std::to_string(n) +
                          " frames (0-based indices)");
    }
    marks_ = io::FrameListCursor(&bad_frames_);
    return spec;
  }

  // Source thread. Converts to float once here (the only copy).
  ReadStatus read(Frame& frame) override {
    if (max_frames_ && index_ >= max_frames_) return ReadStatus::kEnd;
    pacer_.wait(index_);
    frame.set_shape(movie_->info().height * movie_->info().width, 1);
    try {
      if (!movie_->read_next(frame.data())) return ReadStatus::kEnd;
    } catch (const std::exception& e) {
      error_ = e.what();
      return ReadStatus::kError;
    }
    if (marks_.contains(index_)) frame.header.flags |= kFrameMarkedBad;
    frame.header.seq = index_++;
    return ReadStatus::kFrame;
  }

  std::uint64_t frame_count() const override {
    const std::int64_t n = movie_ ? movie_->info().frames : 0;
    const std::uint64_t u = n > 0 ? static_cast<std::uint64_t>(n) : 0;
    return max_frames_ ? std::min(u, max_frames_) : u;
  }

 private:
  std::unique_ptr<io::MovieReader> movie_;
  Pacer pacer_;
  std::uint64_t index_ = 0, max_frames_ = 0;
  std::vector<std::uint64_t> bad_frames_;  // sorted
  io::FrameListCursor marks_;
};

}  // namespace

RTNMF_REGISTER_SOURCE("imaging_file",
                      "calcium-imaging movie: TIFF/BigTIFF (ScanImage, ImageJ), HDF5, raw",
                      ImagingFileSource);

}  // namespace rtnmf::imaging
