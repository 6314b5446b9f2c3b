// A frame's squared norm, alone or in the same pass as a copy of it: the tracker's fit residual
// needs ||y||^2, and the online CNMF stage reads every frame once anyway to hand it to the slow
// path. Both give the same value bit for bit (float products summed in one fixed order of
// vector lanes, then in double). No allocation.
#pragma once

#include <cstddef>

namespace rtnmf::nmf {

double sum_squares(const float* src, std::size_t n);
// dst[0, n) = src[0, n) (non-temporal stores where dst is 32-byte aligned: the copy is for
// another thread) and returns sum_squares(src, n).
double copy_sum_squares(float* dst, const float* src, std::size_t n);

}  // namespace rtnmf::nmf
