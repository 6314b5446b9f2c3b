#include "engine/runtime/realtime.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <cstring>
#include <thread>

namespace rtnmf {

namespace {

// SCHED_FIFO at `priority` for the calling thread: 0 or the error number.
int set_fifo(int priority) {
  sched_param sp{};
  sp.sched_priority = priority;
  return pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
}

}  // namespace

bool make_current_thread_realtime(int priority) {
  return priority <= 0 || set_fifo(priority) == 0;
}

bool pin_current_thread(const std::vector<unsigned>& cpus) {
  if (cpus.empty()) return true;
  cpu_set_t set;
  CPU_ZERO(&set);
  for (unsigned c : cpus) CPU_SET(c, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

std::vector<unsigned> cpus_outside(const std::vector<unsigned>& realtime) {
  std::vector<unsigned> out;
  if (realtime.empty()) return out;
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return out;
  for (unsigned c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &allowed) && std::find(realtime.begin(), realtime.end(), c) == realtime.end())
      out.push_back(c);
  return out;
}

std::string realtime_refusal(int priority) {
  if (priority < 1 || priority > kMaxRealtimePriority)
    return "priority must be between 1 and " + std::to_string(kMaxRealtimePriority);
  int rc = 0;
  std::thread probe([&] { rc = set_fifo(priority); });
  probe.join();
  return rc == 0 ? std::string() : std::string(std::strerror(rc));
}

unsigned default_spin_us() { return std::thread::hardware_concurrency() >= 4 ? 50 : 0; }

}  // namespace rtnmf
