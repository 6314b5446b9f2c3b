// Sample types from rigs, converted to float once, at the source.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "frame.pb.h"

namespace rtnmf {

// Bytes per sample; 0 for DTYPE_UNSPECIFIED or unknown values.
std::size_t dtype_size(v1::DType dtype);
// "uint16", "float32", ... ("unspecified" for 0).
std::string dtype_name(v1::DType dtype);
// Parses "uint16" / "u16" / "int16" / "i16" / "int32" / "float32" / "f32" / "float64" / "uint8".
// Returns false for anything else.
bool parse_dtype(const std::string& text, v1::DType* out);

// Converts n little-endian (or big-endian) samples to float. Does not allocate. Returns the number
// of non-finite samples written (NaN/Inf from float inputs); callers reject such frames.
std::size_t convert_to_float(const void* src, v1::DType dtype, std::size_t n, float* dst,
                             bool big_endian = false);

// Converts a channel-major block (ch0 s0..sS, ch1 s0..) into rtnmf's column-major
// channels × samples layout (one sample of all channels contiguous). Does not allocate.
void channel_major_to_column_major(const float* src, std::uint32_t channels,
                                   std::uint32_t samples, float* dst);

}  // namespace rtnmf
