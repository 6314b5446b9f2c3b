// Helper threads for detail::parallel_blocks, kept between calls.
//
// Each thread that calls run_blocks gets its own helpers (created on its first call, parked on a
// condition variable between calls, joined when that thread exits), so they inherit its CPU
// affinity (the slow path pins itself before its first update) and callers on different threads
// never wait for each other. Spawning a std::thread per block and call cost the online CNMF slow
// path ~20 thread creations per update (clone, a fresh 8 MiB stack whose pages fault in, the
// stack released with madvise on exit: ~800 threads per 2,000-frame replay).
#pragma once

namespace rtnmf::nmf::detail {

// Runs task(ctx, b) for every b in [0, blocks): block blocks - 1 on the calling thread, the
// others on its helpers, and returns when all are done. A call made while the caller's helpers
// are busy (a block of the caller itself calling run_blocks again) runs on freshly spawned threads
// instead. The first exception a block throws is rethrown here after every block has finished.
void run_blocks(int blocks, void (*task)(void*, int), void* ctx);

}  // namespace rtnmf::nmf::detail
