// Real-time scheduling for the threads that carry frames (source, processing, publisher and
// ZeroMQ's I/O thread). On a shared or small machine a frame's hops wait for a CPU behind
// whatever else runs (a compile, a GUI); SCHED_FIFO lets them preempt it. Slow-path threads
// (footprint / synergy updates) keep normal scheduling so they cannot starve the machine.
#pragma once

#include <string>
#include <vector>

namespace rtnmf {

// Largest priority rtnmf uses: 99 is left to the kernel's own watchdog threads.
constexpr int kMaxRealtimePriority = 98;

// Whether this process may run threads under SCHED_FIFO at `priority` (tried on a short-lived
// probe thread, so the caller's scheduling is untouched). Returns "" when allowed, otherwise the
// reason (e.g. "Operation not permitted").
std::string realtime_refusal(int priority);

// Puts the calling thread under SCHED_FIFO at `priority` (0: leaves it alone). Returns false
// when the kernel refuses. Call at the start of a thread, never per frame.
bool make_current_thread_realtime(int priority);

// Pins the calling thread to `cpus` (empty: leaves it alone). Returns false when refused.
bool pin_current_thread(const std::vector<unsigned>& cpus);

// The CPUs this process may use that are not in `realtime` (empty when `realtime` is empty or
// covers them all). Slow-path threads (footprint updates, result-file writers) run there so that
// they neither preempt nor, between frames, evict the caches of the frame-carrying threads pinned
// to `realtime`.
std::vector<unsigned> cpus_outside(const std::vector<unsigned>& realtime);

// How long a consumer thread spins for the next frame before it sleeps when the configuration
// leaves it unset: 50 µs with 4 or more hardware threads, otherwise 0 — on a 2-core machine the
// spinning threads hold both CPUs while ZeroMQ's I/O threads wait to move the frame on.
unsigned default_spin_us();

}  // namespace rtnmf
