// Source "emg_file": multichannel recordings from EDF/EDF+/BDF/BDF+, CSV, raw interleaved
// binary, and HDF5 matrices (spike counts / ROI traces), as channels × block_samples frames.
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/io/csv_stream.h"
#include "engine/io/edf_reader.h"
#include "engine/io/interleaved.h"
#include "engine/io/matrix_io.h"
#include "engine/runtime/pacer.h"
#include "engine/runtime/registry.h"
#include "plugins/emg/channel_names.h"

namespace rtnmf::emg {
namespace detail {

namespace {
std::mutex& names_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, std::vector<std::string>>& names_table() {
  static std::map<std::string, std::vector<std::string>> t;
  return t;
}
}  // namespace

void set_channel_names(const std::string& stream_id, std::vector<std::string> names) {
  std::lock_guard<std::mutex> lock(names_mutex());
  names_table()[stream_id] = std::move(names);
}

std::vector<std::string> channel_names(const std::string& stream_id, int channels) {
  {
    std::lock_guard<std::mutex> lock(names_mutex());
    auto it = names_table().find(stream_id);
    if (it != names_table().end() && static_cast<int>(it->second.size()) == channels) {
      return it->second;
    }
  }
  std::vector<std::string> out;
  for (int c = 0; c < channels; ++c) out.push_back("ch" + std::to_string(c + 1));
  return out;
}

}  // namespace detail

namespace {

using Format = v1::EmgFileSource::Format;

std::string extension(const std::string& path) {
  const std::size_t dot = path.rfind('.');
  const std::size_t colon = path.find(".h5:");
  if (colon != std::string::npos) return "h5";
  if (dot == std::string::npos) return "";
  std::string e = path.substr(dot + 1);
  for (char& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return e;
}

// Matrices (spike counts, ROI traces: small) are read whole at open through io::read_matrix
// (NumPy .npy or an HDF5 dataset file.h5:/path), channels × time unless `transpose`.
class MatrixReader {
 public:
  void open(const std::string& spec, const std::string& dataset, bool transpose) {
    std::string where = spec;
    const bool h5 =
        spec.find(".h5") != std::string::npos || spec.find(".hdf5") != std::string::npos;
    if (h5 && spec.find(':') == std::string::npos) {
      if (dataset.empty()) {
        throw ConfigError(spec + ": give the dataset as file.h5:/path or source.emg_file.dataset");
      }
      where = spec + ":" + dataset;
    }
    io::LoadedMatrix m = io::read_matrix(where, /*validate=*/false);
    m_ = std::move(m.values);
    if (transpose) m_.transposeInPlace();
    where_ = where;
    pos_ = 0;
    block_ = 0;
  }
  std::int64_t read(float* out, std::int64_t max_samples) {
    const std::int64_t n = std::min<std::int64_t>(max_samples, m_.cols() - pos_);
    if (n <= 0) return 0;
    const std::int64_t first = pos_;
    pos_ += n;
    const Eigen::Index nc = m_.rows();
    for (std::int64_t t = 0; t < n; ++t) {
      for (Eigen::Index c = 0; c < nc; ++c) {
        const float v = m_(c, first + t);
        if (!std::isfinite(v)) {
          error_ = where_ + ": block " + std::to_string(block_) + ": row " + std::to_string(c) +
                   ", column " + std::to_string(first + t) + ": not a finite number";
          ++block_;
          return -1;
        }
        out[t * nc + c] = v;
      }
    }
    ++block_;
    return n;
  }
  int channels() const { return static_cast<int>(m_.rows()); }
  std::int64_t samples() const { return m_.cols(); }
  const std::string& error() const { return error_; }

 private:
  Eigen::MatrixXf m_;
  std::string where_, error_;
  std::int64_t pos_ = 0, block_ = 0;
};

class EmgFileSource : public Source {
 public:
  StreamSpec open(const v1::SourceConfig& config, const std::string& stream_id) override {
    cfg_ = config.emg_file();
    const std::string& path = cfg_.path();
    if (path.empty()) throw ConfigError("source.emg_file.path: missing");
    Format fmt = cfg_.format();
    if (fmt == v1::EmgFileSource::FORMAT_AUTO) {
      const std::string e = extension(path);
      fmt = (e == "edf" || e == "bdf" || e == "rec")   ? v1::EmgFileSource::EDF
            : (e == "csv" || e == "tsv" || e == "txt") ? v1::EmgFileSource::CSV
            : (e == "bin" || e == "raw" || e == "dat" || e == "i16")
                ? v1::EmgFileSource::INTERLEAVED
            : (e == "h5" || e == "hdf5") ? v1::EmgFileSource::HDF5
            : (e == "npy")               ? v1::EmgFileSource::NPY
                                         : v1::EmgFileSource::FORMAT_AUTO;
      if (fmt == v1::EmgFileSource::FORMAT_AUTO) {
        throw ConfigError("source.emg_file.format: cannot tell the format of '" + path +
                          "' from its extension; set format (EDF, CSV, INTERLEAVED, NPY, HDF5)");
      }
    }
    format_ = fmt;
    const bool matrix = fmt == v1::EmgFileSource::HDF5 || fmt == v1::EmgFileSource::NPY;
    block_ = cfg_.block_samples() ? cfg_.block_samples() : (matrix ? 1 : 4);
    std::vector<std::string> names;
    double rate = cfg_.sample_rate();
    try {
      switch (fmt) {
        case v1::EmgFileSource::EDF: {
          io::EdfOptions o;
          o.select.assign(cfg_.select().begin(), cfg_.select().end());
          edf_.open(path, o);
          channels_ = edf_.channels();
          names = edf_.channel_names();
          if (rate <= 0) rate = edf_.sample_rate_hz();
          break;
        }
        case v1::EmgFileSource::CSV: {
          io::CsvStreamOptions o;
          o.time_column = cfg_.time_column();
          o.select.assign(cfg_.select().begin(), cfg_.select().end());
          o.sample_rate_hz = rate;
          csv_.open(path, o);
          channels_ = csv_.channels();
          names = csv_.channel_names();
          rate = csv_.sample_rate_hz();
          break;
        }
        case v1::EmgFileSource::INTERLEAVED: {
          io::InterleavedOptions o;
          o.channels = static_cast<int>(cfg_.channels());
          o.sample_rate_hz = rate;
          o.scale = cfg_.scale() != 0 ? cfg_.scale() : 1.0;
          o.header_bytes = cfg_.header_bytes();
          o.big_endian = cfg_.big_endian();
          switch (cfg_.dtype()) {
            case v1::DTYPE_INT16:
              o.type = io::InterleavedOptions::Type::kInt16;
              break;
            case v1::DTYPE_INT32:
              o.type = io::InterleavedOptions::Type::kInt32;
              break;
            case v1::DTYPE_FLOAT32:
              o.type = io::InterleavedOptions::Type::kFloat32;
              break;
            default:
              throw ConfigError(
                  "source.emg_file.dtype: interleaved files need DTYPE_INT16, "
                  "DTYPE_INT32 or DTYPE_FLOAT32");
          }
          raw_.open(path, o);
          channels_ = raw_.channels();
          break;
        }
        case v1::EmgFileSource::HDF5:
        case v1::EmgFileSource::NPY:
          if (rate <= 0) {
            throw ConfigError(
                "source.emg_file.sample_rate: required for matrices (bins per "
                "second)");
          }
          matrix_.open(path, cfg_.dataset(), cfg_.transpose());
          channels_ = matrix_.channels();
          break;
        default:
          throw ConfigError("source.emg_file.format: " + v1::EmgFileSource::Format_Name(fmt) +
                            " is not supported");
      }
    } catch (const ConfigError&) {
      throw;
    } catch (const std::exception& e) {
      throw ConfigError(e.what());
    }
    if (names.empty()) {
      for (int c = 0; c < channels_; ++c) names.push_back("ch" + std::to_string(c + 1));
    }
    detail::set_channel_names(stream_id, names);
    pacer_.init(config, rate / block_, false);
    return StreamSpec::make(stream_id, static_cast<std::uint32_t>(channels_), block_, rate);
  }

  // Blocks in the file when its length is known (EDF/BDF, raw, matrices; CSV: 0 = unknown).
  std::uint64_t frame_count() const override {
    std::uint64_t samples = 0;
    switch (format_) {
      case v1::EmgFileSource::EDF:
        samples = static_cast<std::uint64_t>(std::max<std::int64_t>(0, edf_.total_samples()));
        break;
      case v1::EmgFileSource::INTERLEAVED:
        samples = raw_.total_samples();
        break;
      case v1::EmgFileSource::HDF5:
      case v1::EmgFileSource::NPY:
        samples = static_cast<std::uint64_t>(matrix_.samples());
        break;
      default:
        return 0;
    }
    return (samples + block_ - 1) / block_;
  }

  ReadStatus read(Frame& frame) override {
    pacer_.wait(index_);
    std::int64_t n = 0;
    try {
      switch (format_) {
        case v1::EmgFileSource::EDF:
          n = edf_.read(frame.data(), block_);
          break;
        case v1::EmgFileSource::CSV:
          n = csv_.read(frame.data(), block_);
          if (n < 0) error_ = csv_.error();
          break;
        case v1::EmgFileSource::INTERLEAVED:
          n = raw_.read(frame.data(), block_);
          if (n < 0) error_ = raw_.error();
          break;
        default:
          n = matrix_.read(frame.data(), block_);
          if (n < 0) error_ = matrix_.error();
          break;
      }
    } catch (const std::exception& e) {
      error_ = e.what();
      return ReadStatus::kError;
    }
    const std::uint64_t i = index_++;
    if (n == 0) return ReadStatus::kEnd;
    if (n < 0) {
      if (cfg_.stop_on_bad_input()) return ReadStatus::kError;
      rejected_.fetch_add(1, std::memory_order_relaxed);
      return ReadStatus::kRejected;
    }
    frame.header.seq = i;
    frame.set_shape(static_cast<std::uint32_t>(channels_), static_cast<std::uint32_t>(n));
    return ReadStatus::kFrame;
  }

 private:
  v1::EmgFileSource cfg_;
  Format format_ = v1::EmgFileSource::FORMAT_AUTO;
  std::uint32_t block_ = 4;
  int channels_ = 0;
  io::EdfReader edf_;
  io::CsvStreamReader csv_;
  io::InterleavedReader raw_;
  MatrixReader matrix_;
  std::uint64_t index_ = 0;
  Pacer pacer_;
};

}  // namespace

RTNMF_REGISTER_SOURCE("emg_file",
                      "multichannel files: EDF/BDF (edflib), CSV, raw interleaved, HDF5 matrices",
                      EmgFileSource);

}  // namespace rtnmf::emg
