// The median of the last N values pushed: the reference of the per-frame outlier tests (motion
// correction's correlation peaks, the online CNMF's fit residuals). Fixed storage, no allocation.
#pragma once

#include <algorithm>
#include <array>

namespace rtnmf::nmf {

template <int N>
class WindowMedian {
 public:
  void clear() { n_ = pos_ = 0; }
  void push(float v) {
    values_[static_cast<std::size_t>(pos_)] = v;
    pos_ = (pos_ + 1) % N;
    n_ = std::min(n_ + 1, N);
  }
  int size() const { return n_; }
  // The middle value (the upper of the two middle ones for an even count); size() > 0.
  float median() {
    std::copy(values_.begin(), values_.begin() + n_, scratch_.begin());
    const auto mid = scratch_.begin() + n_ / 2;
    std::nth_element(scratch_.begin(), mid, scratch_.begin() + n_);
    return *mid;
  }

 private:
  std::array<float, N> values_{}, scratch_{};
  int n_ = 0, pos_ = 0;
};

}  // namespace rtnmf::nmf
