// Raw interleaved multichannel binary (sample-major: ch0 s0, ch1 s0, ..., ch0 s1, ...) of int16,
// int32 or float32, little- or big-endian, with an optional header to skip. Channel count and
// rate come from the caller.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace rtnmf::io {

struct InterleavedOptions {
  enum class Type { kInt16, kInt32, kFloat32 };
  int channels = 0;
  Type type = Type::kInt16;
  double sample_rate_hz = 0;
  double scale = 1.0;  // physical value = scale * stored value
  std::uint64_t header_bytes = 0;
  bool big_endian = false;
};

class InterleavedReader {
 public:
  // Opens and validates (channels >= 1, rate > 0, file longer than its header). Allocates.
  // Throws std::runtime_error naming the file and the problem. Source thread.
  void open(const std::string& path, const InterleavedOptions& options);

  // Reads up to max_samples samples into `out` (channels × max_samples, column-major). Returns
  // the count (0 at the end), or -1 for a rejected block: a float block holding NaN/Inf (error()
  // names the block index, the channel and the sample), or the trailing bytes of a truncated
  // file (reported once, then 0). Allocates only when max_samples grows. Throws
  // std::runtime_error on I/O failure. Source thread.
  std::int64_t read(float* out, std::int64_t max_samples);

  int channels() const { return options_.channels; }
  double sample_rate_hz() const { return options_.sample_rate_hz; }
  // Whole samples in the file (after the header).
  std::uint64_t total_samples() const { return total_samples_; }
  const std::string& error() const { return error_; }

 private:
  std::string path_;
  InterleavedOptions options_;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file_{nullptr, &std::fclose};
  int bytes_per_value_ = 2;
  std::uint64_t total_samples_ = 0, samples_read_ = 0, trailing_bytes_ = 0;
  std::uint64_t blocks_ = 0;
  bool trailing_reported_ = false;
  std::vector<unsigned char> buffer_;
  std::string error_;
};

}  // namespace rtnmf::io
