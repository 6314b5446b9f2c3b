#include "engine/runtime/dtype.h"

#include <cmath>
#include <cstring>

namespace rtnmf {

std::size_t dtype_size(v1::DType dtype) {
  switch (dtype) {
    case v1::DTYPE_UINT8:
      return 1;
    case v1::DTYPE_UINT16:
    case v1::DTYPE_INT16:
      return 2;
    case v1::DTYPE_INT32:
    case v1::DTYPE_FLOAT32:
      return 4;
    case v1::DTYPE_FLOAT64:
      return 8;
    default:
      return 0;
  }
}

std::string dtype_name(v1::DType dtype) {
  switch (dtype) {
    case v1::DTYPE_UINT8:
      return "uint8";
    case v1::DTYPE_UINT16:
      return "uint16";
    case v1::DTYPE_INT16:
      return "int16";
    case v1::DTYPE_INT32:
      return "int32";
    case v1::DTYPE_FLOAT32:
      return "float32";
    case v1::DTYPE_FLOAT64:
      return "float64";
    default:
      return "unspecified";
  }
}

bool parse_dtype(const std::string& t, v1::DType* out) {
  if (t == "uint16" || t == "u16") *out = v1::DTYPE_UINT16;
  else if (t == "int16" || t == "i16") *out = v1::DTYPE_INT16;
  else if (t == "int32" || t == "i32") *out = v1::DTYPE_INT32;
  else if (t == "float32" || t == "f32" || t == "float") *out = v1::DTYPE_FLOAT32;
  else if (t == "float64" || t == "f64" || t == "double") *out = v1::DTYPE_FLOAT64;
  else if (t == "uint8" || t == "u8") *out = v1::DTYPE_UINT8;
  else return false;
  return true;
}

namespace {
template <typename T>
std::size_t convert(const unsigned char* src, std::size_t n, float* dst, bool swap) {
  std::size_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    unsigned char b[sizeof(T)];
    std::memcpy(b, src + i * sizeof(T), sizeof(T));
    if (swap)
      for (std::size_t k = 0; k < sizeof(T) / 2; ++k) std::swap(b[k], b[sizeof(T) - 1 - k]);
    T v;
    std::memcpy(&v, b, sizeof(T));
    dst[i] = static_cast<float>(v);
    if constexpr (std::is_floating_point_v<T>) {
      if (!std::isfinite(dst[i])) ++bad;
    }
  }
  return bad;
}
}  // namespace

std::size_t convert_to_float(const void* src, v1::DType dtype, std::size_t n, float* dst,
                             bool big_endian) {
  const auto* p = static_cast<const unsigned char*>(src);
  switch (dtype) {
    case v1::DTYPE_UINT8:
      return convert<std::uint8_t>(p, n, dst, false);
    case v1::DTYPE_UINT16:
      return convert<std::uint16_t>(p, n, dst, big_endian);
    case v1::DTYPE_INT16:
      return convert<std::int16_t>(p, n, dst, big_endian);
    case v1::DTYPE_INT32:
      return convert<std::int32_t>(p, n, dst, big_endian);
    case v1::DTYPE_FLOAT32:
      return convert<float>(p, n, dst, big_endian);
    case v1::DTYPE_FLOAT64:
      return convert<double>(p, n, dst, big_endian);
    default:
      return n;
  }
}

void channel_major_to_column_major(const float* src, std::uint32_t channels,
                                   std::uint32_t samples, float* dst) {
  for (std::uint32_t c = 0; c < channels; ++c)
    for (std::uint32_t s = 0; s < samples; ++s) dst[s * channels + c] = src[c * samples + s];
}

}  // namespace rtnmf
