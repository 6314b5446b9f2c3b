#include "engine/nmf/squares.h"

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace rtnmf::nmf {
namespace {

// Blocks of 32 floats into four accumulators of 8 lanes, which are then summed in lane order,
// and the tail in double; with `dst`, each block is also streamed there.
double sum_blocks(float* dst, const float* src, std::size_t n) {
  std::size_t i = 0;
  double s = 0;
#ifdef __AVX2__
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (; i + 32 <= n; i += 32) {
    const __m256 a = _mm256_loadu_ps(src + i), b = _mm256_loadu_ps(src + i + 8);
    const __m256 c = _mm256_loadu_ps(src + i + 16), d = _mm256_loadu_ps(src + i + 24);
    if (dst) {
      _mm256_stream_ps(dst + i, a);
      _mm256_stream_ps(dst + i + 8, b);
      _mm256_stream_ps(dst + i + 16, c);
      _mm256_stream_ps(dst + i + 24, d);
    }
    s0 = _mm256_fmadd_ps(a, a, s0);
    s1 = _mm256_fmadd_ps(b, b, s1);
    s2 = _mm256_fmadd_ps(c, c, s2);
    s3 = _mm256_fmadd_ps(d, d, s3);
  }
  if (dst) _mm_sfence();  // order the streaming stores before later ones (another thread reads dst)
  alignas(32) float lanes[32];
  _mm256_store_ps(lanes, s0);
  _mm256_store_ps(lanes + 8, s1);
  _mm256_store_ps(lanes + 16, s2);
  _mm256_store_ps(lanes + 24, s3);
  for (float l : lanes) s += l;
#else
  (void)dst;
#endif
  for (; i < n; ++i) s += static_cast<double>(src[i]) * src[i];
  return s;
}

}  // namespace

double sum_squares(const float* src, std::size_t n) { return sum_blocks(nullptr, src, n); }

double copy_sum_squares(float* dst, const float* src, std::size_t n) {
#ifdef __AVX2__
  if ((reinterpret_cast<std::uintptr_t>(dst) & 31) == 0) {
    const double s = sum_blocks(dst, src, n);
    const std::size_t done = n / 32 * 32;
    if (done < n) std::memcpy(dst + done, src + done, (n - done) * sizeof(float));
    return s;
  }
#endif
  std::memcpy(dst, src, n * sizeof(float));
  return sum_squares(src, n);
}

}  // namespace rtnmf::nmf
