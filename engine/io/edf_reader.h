// EDF, EDF+ (continuous), BDF and BDF+ recordings through Debian's libedf (edflib): physical
// values of the selected signals, which must share one sample rate.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rtnmf::io {

struct EdfOptions {
  std::vector<std::string> select;  // signal labels to keep, in this order (empty: all)
};

class EdfReader {
 public:
  EdfReader() = default;
  EdfReader(const EdfReader&) = delete;
  EdfReader& operator=(const EdfReader&) = delete;
  ~EdfReader() { close(); }

  // Opens the file, checks the selection and that the rates agree. Allocates. Throws
  // std::runtime_error naming the file and what edflib or the check reported. Source thread
  // (edflib's open/close are serialised by a process-wide mutex).
  void open(const std::string& path, const EdfOptions& options = {});
  void close();

  // Reads up to max_samples samples of every selected signal into `out` (channels ×
  // max_samples, column-major). Returns the count (0 at the end). Allocates only when
  // max_samples grows. Throws std::runtime_error naming the file and the block index when edflib
  // fails to read. Source thread.
  std::int64_t read(float* out, std::int64_t max_samples);

  int channels() const { return static_cast<int>(signals_.size()); }
  double sample_rate_hz() const { return sample_rate_hz_; }
  const std::vector<std::string>& channel_names() const { return names_; }
  // "EDF", "EDF+", "BDF" or "BDF+".
  const std::string& file_type() const { return file_type_; }
  std::int64_t total_samples() const { return total_samples_; }
  const std::vector<std::string>& units() const { return units_; }

 private:
  std::string path_;
  int handle_ = -1;
  std::vector<int> signals_;
  std::vector<std::string> names_, units_;
  std::string file_type_;
  double sample_rate_hz_ = 0;
  std::int64_t total_samples_ = 0, samples_read_ = 0, blocks_ = 0;
  std::vector<double> buffer_;
};

}  // namespace rtnmf::io
