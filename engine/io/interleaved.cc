#include "engine/io/interleaved.h"

#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <stdexcept>

namespace rtnmf::io {
namespace {

const char* type_name(InterleavedOptions::Type t) {
  switch (t) {
    case InterleavedOptions::Type::kInt16:
      return "int16";
    case InterleavedOptions::Type::kInt32:
      return "int32";
    case InterleavedOptions::Type::kFloat32:
      return "float32";
  }
  return "?";
}

template <typename T>
T load(const unsigned char* p, bool swap) {
  unsigned char b[sizeof(T)];
  std::memcpy(b, p, sizeof(T));
  if (swap) {
    for (std::size_t i = 0; i < sizeof(T) / 2; ++i) std::swap(b[i], b[sizeof(T) - 1 - i]);
  }
  T v;
  std::memcpy(&v, b, sizeof(T));
  return v;
}

}  // namespace

void InterleavedReader::open(const std::string& path, const InterleavedOptions& options) {
  path_ = path;
  options_ = options;
  if (options.channels < 1) {
    throw std::runtime_error(path + ": channel count must be >= 1, got " +
                             std::to_string(options.channels));
  }
  if (!(options.sample_rate_hz > 0)) {
    throw std::runtime_error(path + ": sample rate must be positive (set source.sample_rate)");
  }
  bytes_per_value_ = options.type == InterleavedOptions::Type::kInt16 ? 2 : 4;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw std::runtime_error(path + ": cannot open");
  const std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
  if (size < options.header_bytes) {
    throw std::runtime_error(path + ": file of " + std::to_string(size) +
                             " bytes is shorter than its header of " +
                             std::to_string(options.header_bytes) + " bytes");
  }
  const std::uint64_t frame = static_cast<std::uint64_t>(bytes_per_value_) * options.channels;
  total_samples_ = (size - options.header_bytes) / frame;
  trailing_bytes_ = (size - options.header_bytes) % frame;
  file_.reset(std::fopen(path.c_str(), "rb"));
  if (!file_) throw std::runtime_error(path + ": cannot open");
  if (options.header_bytes > 0 &&
      std::fseek(file_.get(), static_cast<long>(options.header_bytes), SEEK_SET) != 0) {
    throw std::runtime_error(path + ": cannot skip the header");
  }
  samples_read_ = 0;
  blocks_ = 0;
  trailing_reported_ = false;
  error_.clear();
}

std::int64_t InterleavedReader::read(float* out, std::int64_t max_samples) {
  const int nc = options_.channels;
  const std::uint64_t left = total_samples_ - samples_read_;
  const std::uint64_t n = std::min<std::uint64_t>(left, static_cast<std::uint64_t>(max_samples));
  if (n == 0) {
    if (trailing_bytes_ > 0 && !trailing_reported_) {
      trailing_reported_ = true;
      error_ = path_ + ": block " + std::to_string(blocks_) +
               ": truncated file: " + std::to_string(trailing_bytes_) +
               " trailing bytes after sample " + std::to_string(samples_read_) +
               " (one sample of " + std::to_string(nc) + " " + type_name(options_.type) +
               " channels is " + std::to_string(nc * bytes_per_value_) + " bytes)";
      ++blocks_;
      return -1;
    }
    return 0;
  }
  const std::size_t bytes = n * nc * bytes_per_value_;
  if (buffer_.size() < bytes) buffer_.resize(bytes);
  if (std::fread(buffer_.data(), 1, bytes, file_.get()) != bytes) {
    throw std::runtime_error(path_ + ": read error at sample " + std::to_string(samples_read_));
  }
  const std::uint64_t block = blocks_++;
  const std::uint64_t first = samples_read_;
  samples_read_ += n;
  const bool swap = options_.big_endian;
  const float scale = static_cast<float>(options_.scale);
  const unsigned char* p = buffer_.data();
  const std::size_t count = n * nc;
  switch (options_.type) {
    case InterleavedOptions::Type::kInt16:
      for (std::size_t i = 0; i < count; ++i) out[i] = scale * load<std::int16_t>(p + 2 * i, swap);
      break;
    case InterleavedOptions::Type::kInt32:
      for (std::size_t i = 0; i < count; ++i) {
        out[i] = static_cast<float>(options_.scale * load<std::int32_t>(p + 4 * i, swap));
      }
      break;
    case InterleavedOptions::Type::kFloat32:
      for (std::size_t i = 0; i < count; ++i) {
        const float v = load<float>(p + 4 * i, swap);
        if (!std::isfinite(v)) {
          const std::uint64_t s = first + i / nc;
          error_ = path_ + ": block " + std::to_string(block) + ": channel " +
                   std::to_string(i % nc) + ": " + (std::isnan(v) ? "NaN" : "Inf") + " at sample " +
                   std::to_string(s);
          return -1;
        }
        out[i] = scale * v;
      }
      break;
  }
  return static_cast<std::int64_t>(n);
}

}  // namespace rtnmf::io
