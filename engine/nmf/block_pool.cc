#include "engine/nmf/block_pool.h"

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace rtnmf::nmf::detail {
namespace {

class BlockPool {
 public:
  ~BlockPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    work_.notify_all();
    for (auto& t : helpers_) t.join();
  }

  bool busy() const { return busy_; }

  void run(int blocks, void (*task)(void*, int), void* ctx) {
    busy_ = true;
    const int helpers = blocks - 1;
    while (static_cast<int>(helpers_.size()) < helpers) {
      const int index = static_cast<int>(helpers_.size());
      helpers_.emplace_back([this, index] { helper_loop(index); });
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = task;
      ctx_ = ctx;
      active_ = helpers;
      remaining_ = helpers;
      error_ = nullptr;
      ++generation_;
    }
    work_.notify_all();
    std::exception_ptr own;
    try {
      task(ctx, blocks - 1);
    } catch (...) {
      own = std::current_exception();
    }
    std::exception_ptr first;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [this] { return remaining_ == 0; });
      first = error_ ? error_ : own;
      error_ = nullptr;
    }
    busy_ = false;
    if (first) std::rethrow_exception(first);
  }

 private:
  void helper_loop(int index) {
    std::uint64_t seen = 0;
    for (;;) {
      void (*task)(void*, int) = nullptr;
      void* ctx = nullptr;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        // A call needing fewer helpers leaves this one parked; the next call that needs it has a
        // newer generation.
        work_.wait(lock, [&] { return stop_ || (generation_ != seen && index < active_); });
        if (stop_) return;
        seen = generation_;
        task = task_;
        ctx = ctx_;
      }
      std::exception_ptr err;
      try {
        task(ctx, index);
      } catch (...) {
        err = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (err && !error_) error_ = err;
        if (--remaining_ == 0) done_.notify_one();
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable work_, done_;
  std::vector<std::thread> helpers_;
  void (*task_)(void*, int) = nullptr;
  void* ctx_ = nullptr;
  int active_ = 0, remaining_ = 0;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
  bool busy_ = false;  // owner thread only
  std::exception_ptr error_;
};

void run_spawned(int blocks, void (*task)(void*, int), void* ctx) {
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(blocks));
  threads.reserve(static_cast<std::size_t>(blocks - 1));
  for (int b = 0; b < blocks - 1; ++b) {
    threads.emplace_back([&, b] {
      try {
        task(ctx, b);
      } catch (...) {
        errors[static_cast<std::size_t>(b)] = std::current_exception();
      }
    });
  }
  try {
    task(ctx, blocks - 1);
  } catch (...) {
    errors[static_cast<std::size_t>(blocks - 1)] = std::current_exception();
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace

void run_blocks(int blocks, void (*task)(void*, int), void* ctx) {
  if (blocks <= 1) {
    if (blocks == 1) task(ctx, 0);
    return;
  }
  thread_local std::unique_ptr<BlockPool> pool;
  if (pool && pool->busy()) {
    run_spawned(blocks, task, ctx);
    return;
  }
  if (!pool) pool = std::make_unique<BlockPool>();
  pool->run(blocks, task, ctx);
}

}  // namespace rtnmf::nmf::detail
