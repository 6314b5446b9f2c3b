// How steady is this machine for paced, memory-bound work? A fixed pass over a few MiB (the
// order of what the imaging fast path moves per frame), run at a frame rate on one CPU under
// SCHED_FIFO — the setting of `rtnmf replay --speed realtime --rt-priority P --rt-cpus N` — and
// timed. On a quiet dedicated machine every pass takes about the same time; on a shared VM the
// passes slow down in stretches (other guests on the host's cores and memory), and that alone
// sets a floor under the per-frame latency tail rtnmf can show there. bench/imaging_replay.py
// runs it before its paced replay so each 30 Hz figure comes with the machine's own.
//
//   build/bench/rt_jitter [--cpu 1] [--priority 80] [--rate 30] [--seconds 20] [--work-kb 3072]
//
// Prints one JSON object: work_us and wake_late_us p50/p99/max, slow_passes (> 2 x the median
// pass), longest_slow_run (consecutive slow passes) and the first slow stretches.
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/runtime/clock.h"
#include "engine/runtime/realtime.h"

namespace {

struct Options {
  int cpu = 1;
  int priority = 80;
  double rate = 30;
  double seconds = 20;
  int work_kb = 3072;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "rt_jitter: %s\nusage: rt_jitter [--cpu N] [--priority P (0: normal scheduling)] "
               "[--rate HZ] [--seconds S] [--work-kb KB]\n",
               why);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage(("missing value after " + a).c_str());
    char* end = nullptr;
    const double v = std::strtod(argv[++i], &end);
    if (*end != '\0') usage(("not a number after " + a + ": " + argv[i]).c_str());
    if (a == "--cpu") o.cpu = static_cast<int>(v);
    else if (a == "--priority") o.priority = static_cast<int>(v);
    else if (a == "--rate") o.rate = v;
    else if (a == "--seconds") o.seconds = v;
    else if (a == "--work-kb") o.work_kb = static_cast<int>(v);
    else usage(("unknown option " + a).c_str());
  }
  if (o.rate <= 0 || o.seconds <= 0 || o.work_kb < 4 || o.cpu < 0) usage("rate, seconds, work-kb and cpu must be positive");
  return o;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  if (!rtnmf::pin_current_thread({static_cast<unsigned>(o.cpu)})) usage("cannot pin to that CPU");
  if (o.priority > 0 && !rtnmf::make_current_thread_realtime(o.priority)) {
    std::fprintf(stderr, "rt_jitter: SCHED_FIFO %d refused (%s)\n", o.priority,
                 rtnmf::realtime_refusal(o.priority).c_str());
    return 1;
  }
  // Two buffers of work_kb / 2: one read, one read and written, as a frame stage does.
  const std::size_t n = static_cast<std::size_t>(o.work_kb) * 1024 / 2 / sizeof(float);
  std::vector<float> a(n, 1.0f), b(n, 2.0f);
  const auto ticks = static_cast<std::size_t>(o.seconds * o.rate);
  const auto period = static_cast<std::int64_t>(1e9 / o.rate);
  std::vector<double> work(ticks), late(ticks);
  float sink = 0;
  std::int64_t next = rtnmf::now_ns() + period;
  for (std::size_t t = 0; t < ticks; ++t, next += period) {
    timespec ts{static_cast<time_t>(next / 1000000000), static_cast<long>(next % 1000000000)};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
    const std::int64_t t0 = rtnmf::now_ns();
    float acc = 0;
    for (std::size_t i = 0; i < n; ++i) {
      b[i] = 0.999f * b[i] + 0.001f * a[i];
      acc += b[i];
    }
    const std::int64_t t1 = rtnmf::now_ns();
    sink += acc;
    work[t] = static_cast<double>(t1 - t0) / 1e3;
    late[t] = static_cast<double>(t0 - next) / 1e3;
  }
  const double med = percentile(work, 50);
  std::size_t slow = 0, run = 0, longest = 0;
  std::string stretches;
  int listed = 0;
  for (std::size_t t = 0; t <= ticks; ++t) {
    if (t < ticks && work[t] > 2 * med) {
      ++slow;
      ++run;
      continue;
    }
    if (run >= 3 && listed < 10) {
      stretches += std::string(listed++ ? ", " : "") + "[" + std::to_string(t - run) + ", " + std::to_string(run) + "]";
    }
    longest = std::max(longest, run);
    run = 0;
  }
  std::printf(
      "{\"cpu\": %d, \"priority\": %d, \"rate_hz\": %g, \"passes\": %zu, \"work_kb\": %d,\n"
      " \"work_us\": {\"p50\": %.1f, \"p99\": %.1f, \"max\": %.1f},\n"
      " \"wake_late_us\": {\"p50\": %.1f, \"p99\": %.1f, \"max\": %.1f},\n"
      " \"slow_passes\": %zu, \"longest_slow_run\": %zu, \"slow_stretches_first_pass_and_length\": [%s],\n"
      " \"checksum\": %g}\n",
      o.cpu, o.priority, o.rate, ticks, o.work_kb, med, percentile(work, 99),
      *std::max_element(work.begin(), work.end()), percentile(late, 50), percentile(late, 99),
      *std::max_element(late.begin(), late.end()), slow, longest, stretches.c_str(),
      static_cast<double>(sink));
  return 0;
}
