#include "engine/runtime/latency_histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace rtnmf {

int LatencyHistogram::bucket_of(std::uint64_t ns) {
  if (ns < (1u << kSubBits)) return static_cast<int>(ns);
  int msb = 63 - std::countl_zero(ns);
  int shift = msb - kSubBits;
  int sub = static_cast<int>((ns >> shift) & ((1u << kSubBits) - 1));
  int b = ((shift + 1) << kSubBits) + sub;
  return std::min(b, kBuckets - 1);
}

double LatencyHistogram::bucket_upper(int b) {
  if (b < (1 << kSubBits)) return b + 1;
  int shift = (b >> kSubBits) - 1;
  int sub = b & ((1 << kSubBits) - 1);
  return std::ldexp(static_cast<double>((1 << kSubBits) + sub + 1), shift);
}

void LatencyHistogram::record(std::int64_t ns) {
  std::uint64_t v = ns < 0 ? 0 : static_cast<std::uint64_t>(ns);
  auto& c = counts_[bucket_of(v)];
  c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  sum_.store(sum_.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
  if (v > max_.load(std::memory_order_relaxed)) max_.store(v, std::memory_order_relaxed);
  total_.store(total_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

double LatencyHistogram::quantile(double q) const {
  std::uint64_t total = total_.load(std::memory_order_acquire);
  if (total == 0) return 0;
  if (q >= 1.0) return static_cast<double>(max_.load(std::memory_order_relaxed));
  auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total)));
  rank = std::max<std::uint64_t>(rank, 1);
  std::uint64_t seen = 0;
  for (int b = 0; b < kBuckets; ++b) {
    seen += counts_[b].load(std::memory_order_relaxed);
    if (seen >= rank)
      return std::min(bucket_upper(b), static_cast<double>(max_.load(std::memory_order_relaxed)));
  }
  return static_cast<double>(max_.load(std::memory_order_relaxed));
}

LatencyHistogram::Summary LatencyHistogram::summary() const {
  Summary s;
  s.count = total_.load(std::memory_order_acquire);
  if (s.count == 0) return s;
  s.p50_ns = quantile(0.5);
  s.p99_ns = quantile(0.99);
  s.p999_ns = quantile(0.999);
  s.max_ns = static_cast<double>(max_.load(std::memory_order_relaxed));
  s.mean_ns = static_cast<double>(sum_.load(std::memory_order_relaxed)) / s.count;
  return s;
}

void LatencyHistogram::reset() {
  for (auto& c : counts_) c.store(0, std::memory_order_relaxed);
  total_.store(0, std::memory_order_relaxed);
  max_.store(0, std::memory_order_relaxed);
  sum_.store(0, std::memory_order_relaxed);
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  for (int b = 0; b < kBuckets; ++b)
    counts_[b].fetch_add(other.counts_[b].load(std::memory_order_relaxed),
                         std::memory_order_relaxed);
  sum_.fetch_add(other.sum_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  std::uint64_t m = other.max_.load(std::memory_order_relaxed);
  if (m > max_.load(std::memory_order_relaxed)) max_.store(m, std::memory_order_relaxed);
  total_.fetch_add(other.total_.load(std::memory_order_relaxed), std::memory_order_release);
}

void LatencyHistogram::read_counts(Counts& out) const {
  out.total = 0;
  for (int b = 0; b < kBuckets; ++b) {
    out.c[b] = counts_[b].load(std::memory_order_relaxed);
    out.total += out.c[b];
  }
}

LatencyHistogram::Summary LatencyHistogram::summarize(const Counts& counts) {
  Summary s;
  s.count = counts.total;
  if (s.count == 0) return s;
  auto q = [&](double p) {
    auto rank = std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(std::ceil(p * static_cast<double>(counts.total))));
    std::uint64_t seen = 0;
    for (int b = 0; b < kBuckets; ++b) {
      seen += counts.c[b];
      if (seen >= rank) return bucket_upper(b);
    }
    return bucket_upper(kBuckets - 1);
  };
  s.p50_ns = q(0.5);
  s.p99_ns = q(0.99);
  s.p999_ns = q(0.999);
  s.max_ns = q(1.0);
  double sum = 0;
  for (int b = 0; b < kBuckets; ++b) sum += static_cast<double>(counts.c[b]) * bucket_upper(b);
  s.mean_ns = sum / static_cast<double>(counts.total);
  return s;
}

LatencyHistogram::Summary HistogramWindow::update(const LatencyHistogram& h) {
  h.read_counts(cur_);
  LatencyHistogram::Counts delta;
  for (int b = 0; b < LatencyHistogram::kBuckets; ++b) {
    delta.c[b] = cur_.c[b] >= prev_.c[b] ? cur_.c[b] - prev_.c[b] : 0;
    delta.total += delta.c[b];
  }
  prev_ = cur_;
  return LatencyHistogram::summarize(delta);
}

}  // namespace rtnmf
