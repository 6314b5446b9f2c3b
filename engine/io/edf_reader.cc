#include "engine/io/edf_reader.h"

#include <edflib.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <stdexcept>

namespace rtnmf::io {
namespace {

std::mutex& edf_mutex() {
  static std::mutex m;
  return m;
}

std::string open_error(int code) {
  switch (code) {
    case EDFLIB_MALLOC_ERROR:
      return "out of memory";
    case EDFLIB_NO_SUCH_FILE_OR_DIRECTORY:
      return "no such file";
    case EDFLIB_FILE_CONTAINS_FORMAT_ERRORS:
      return "not a valid EDF/BDF file (format errors in the header)";
    case EDFLIB_MAXFILES_REACHED:
      return "too many EDF files open";
    case EDFLIB_FILE_READ_ERROR:
      return "read error";
    case EDFLIB_FILE_ALREADY_OPENED:
      return "file already opened";
    case EDFLIB_FILETYPE_ERROR:
      return "unknown file type";
    case EDFLIB_NUMBER_OF_SIGNALS_INVALID:
      return "invalid number of signals";
    case EDFLIB_FILE_IS_DISCONTINUOUS:
      return "EDF+D/BDF+D (discontinuous) recordings are not supported";
    default:
      return "edflib error " + std::to_string(code);
  }
}

std::string trimmed(const char* s) {
  std::string out(s);
  while (!out.empty() && out.back() == ' ') out.pop_back();
  while (!out.empty() && out.front() == ' ') out.erase(out.begin());
  return out;
}

std::string rate_text(double r) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g Hz", r);
  return buf;
}

}  // namespace

void EdfReader::open(const std::string& path, const EdfOptions& options) {
  close();
  path_ = path;
  auto hdr = std::make_unique<edf_hdr_struct>();
  {
    std::lock_guard<std::mutex> lock(edf_mutex());
    if (edfopen_file_readonly(path.c_str(), hdr.get(), EDFLIB_DO_NOT_READ_ANNOTATIONS) != 0) {
      throw std::runtime_error(path + ": " + open_error(hdr->filetype));
    }
  }
  handle_ = hdr->handle;
  static const char* kTypes[] = {"EDF", "EDF+", "BDF", "BDF+"};
  file_type_ = hdr->filetype >= 0 && hdr->filetype <= 3 ? kTypes[hdr->filetype] : "EDF";
  std::vector<std::string> labels;
  for (int i = 0; i < hdr->edfsignals; ++i) labels.push_back(trimmed(hdr->signalparam[i].label));
  signals_.clear();
  if (options.select.empty()) {
    for (int i = 0; i < hdr->edfsignals; ++i) signals_.push_back(i);
  } else {
    for (const std::string& name : options.select) {
      auto it = std::find(labels.begin(), labels.end(), name);
      if (it == labels.end()) {
        std::string known;
        for (const auto& l : labels) known += (known.empty() ? "" : ", ") + l;
        close();
        throw std::runtime_error(path + ": no signal '" + name + "' (signals: " + known + ")");
      }
      signals_.push_back(static_cast<int>(it - labels.begin()));
    }
  }
  if (signals_.empty()) {
    close();
    throw std::runtime_error(path + ": no signals");
  }
  names_.clear();
  units_.clear();
  total_samples_ = -1;
  const double record_s = static_cast<double>(hdr->datarecord_duration) / EDFLIB_TIME_DIMENSION;
  for (int s : signals_) {
    const edf_param_struct& p = hdr->signalparam[s];
    const double rate = p.smp_in_datarecord / record_s;
    if (names_.empty()) {
      sample_rate_hz_ = rate;
    } else if (std::abs(rate - sample_rate_hz_) > 1e-9 * rate) {
      const std::string msg = path + ": signals have different sample rates ('" + names_[0] + "' " +
                              rate_text(sample_rate_hz_) + ", '" + labels[s] + "' " +
                              rate_text(rate) + "); select signals of one rate with source.select";
      close();
      throw std::runtime_error(msg);
    }
    names_.push_back(labels[s]);
    units_.push_back(trimmed(p.physdimension));
    total_samples_ =
        total_samples_ < 0 ? p.smp_in_file : std::min<std::int64_t>(total_samples_, p.smp_in_file);
  }
  samples_read_ = 0;
  blocks_ = 0;
}

void EdfReader::close() {
  if (handle_ >= 0) {
    std::lock_guard<std::mutex> lock(edf_mutex());
    edfclose_file(handle_);
    handle_ = -1;
  }
}

std::int64_t EdfReader::read(float* out, std::int64_t max_samples) {
  if (handle_ < 0) throw std::runtime_error(path_ + ": not open");
  const std::int64_t n = std::min(max_samples, total_samples_ - samples_read_);
  if (n <= 0) return 0;
  if (static_cast<std::int64_t>(buffer_.size()) < n) buffer_.resize(n);
  const int nc = channels();
  for (int c = 0; c < nc; ++c) {
    const int got =
        edfread_physical_samples(handle_, signals_[c], static_cast<int>(n), buffer_.data());
    if (got != n) {
      throw std::runtime_error(path_ + ": block " + std::to_string(blocks_) + ": signal '" +
                               names_[c] + "': read " + std::to_string(got) + " of " +
                               std::to_string(n) + " samples");
    }
    for (std::int64_t t = 0; t < n; ++t) out[t * nc + c] = static_cast<float>(buffer_[t]);
  }
  samples_read_ += n;
  ++blocks_;
  return n;
}

}  // namespace rtnmf::io
