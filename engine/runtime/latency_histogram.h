// Log-linear latency histogram: one writer thread records, any thread reads a snapshot.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace rtnmf {

// Buckets of 1/16 octave from 1 ns to ~68 s: relative error < 4.5 %. record() is wait-free, does
// not allocate, and uses relaxed single-writer increments (one writer thread per histogram).
class LatencyHistogram {
 public:
  static constexpr int kSubBits = 4;
  static constexpr int kBuckets = 36 << kSubBits;

  void record(std::int64_t ns);
  // Any thread. Consistent enough for monitoring (counts may be read mid-update).
  struct Summary {
    std::uint64_t count = 0;
    double p50_ns = 0, p99_ns = 0, p999_ns = 0, max_ns = 0, mean_ns = 0;
  };
  Summary summary() const;
  // Quantile q in [0,1] in nanoseconds (upper edge of the bucket; exact max for q = 1).
  double quantile(double q) const;
  void reset();  // writer thread only (or when no writer runs)
  // Adds another histogram's counts to this one (between runs / for reports).
  void merge(const LatencyHistogram& other);

  // Counts only, for windowed summaries (see HistogramWindow).
  struct Counts {
    std::array<std::uint64_t, kBuckets> c{};
    std::uint64_t total = 0;
  };
  void read_counts(Counts& out) const;
  static Summary summarize(const Counts& counts);

 private:
  static int bucket_of(std::uint64_t ns);
  static double bucket_upper(int b);
  std::array<std::atomic<std::uint64_t>, kBuckets> counts_{};
  std::atomic<std::uint64_t> total_{0};
  std::atomic<std::uint64_t> max_{0};
  std::atomic<std::uint64_t> sum_{0};
};

// Summaries over the interval since the previous update() (e.g. the last second). Reader side
// only; one window per reader.
class HistogramWindow {
 public:
  LatencyHistogram::Summary update(const LatencyHistogram& h);

 private:
  LatencyHistogram::Counts prev_;
  LatencyHistogram::Counts cur_;
};

}  // namespace rtnmf
