// Queue hop latency and throughput: rtnmf's SPSC ring and FrameChannel beside
// moodycamel::ReaderWriterQueue and a mutex + condition-variable queue (the baseline).
//
//   ./build/bench/bm_queue --benchmark_format=json
#include <benchmark/benchmark.h>
#include <readerwriterqueue/readerwriterqueue.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/runtime/channel.h"
#include "engine/runtime/clock.h"
#include "engine/runtime/spsc_ring.h"

namespace {

class MutexQueue {
 public:
  explicit MutexQueue(size_t cap) : cap_(cap) {}
  bool try_push(std::int64_t v) {
    std::lock_guard<std::mutex> l(m_);
    if (q_.size() >= cap_) return false;
    q_.push_back(v);
    cv_.notify_one();
    return true;
  }
  std::int64_t pop() {
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [&] { return !q_.empty(); });
    std::int64_t v = q_.front();
    q_.pop_front();
    return v;
  }

 private:
  size_t cap_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::int64_t> q_;
};

// One hop: the producer stamps now_ns(), the spinning consumer measures now_ns() - stamp.
// Reports median and p99 of the hop latency in counters (ns). Ping-pong paced so queues stay
// short (latency, not throughput).
template <typename Push, typename Pop>
void hop_latency(benchmark::State& state, Push push, Pop pop) {
  constexpr int kN = 20000;
  std::vector<std::int64_t> lat;
  lat.reserve(kN);
  for (auto _ : state) {
    lat.clear();
    std::atomic<bool> ready{false};
    std::thread consumer([&] {
      ready = true;
      for (int i = 0; i < kN; ++i) {
        std::int64_t t = pop();
        lat.push_back(rtnmf::now_ns() - t);
      }
    });
    while (!ready) {
    }
    for (int i = 0; i < kN; ++i) {
      // ~2 µs between messages.
      std::int64_t until = rtnmf::now_ns() + 2000;
      while (rtnmf::now_ns() < until) {
      }
      while (!push(rtnmf::now_ns())) {
      }
    }
    consumer.join();
  }
  std::sort(lat.begin(), lat.end());
  state.counters["p50_ns"] = static_cast<double>(lat[lat.size() / 2]);
  state.counters["p99_ns"] = static_cast<double>(lat[lat.size() * 99 / 100]);
  state.SetItemsProcessed(state.iterations() * kN);
}

void BM_Queue_HopLatency_SpscRing(benchmark::State& state) {
  rtnmf::SpscRing<std::int64_t> q(1024);
  hop_latency(
      state, [&](std::int64_t v) { return q.try_push(v); },
      [&] {
        std::int64_t v;
        while (!q.try_pop(v)) {
        }
        return v;
      });
}

void BM_Queue_HopLatency_ReaderWriterQueue(benchmark::State& state) {
  moodycamel::ReaderWriterQueue<std::int64_t> q(1024);
  hop_latency(
      state, [&](std::int64_t v) { return q.try_enqueue(v); },
      [&] {
        std::int64_t v;
        while (!q.try_dequeue(v)) {
        }
        return v;
      });
}

void BM_Queue_HopLatency_MutexCondvar(benchmark::State& state) {
  MutexQueue q(1024);
  hop_latency(state, [&](std::int64_t v) { return q.try_push(v); }, [&] { return q.pop(); });
}

// The real hop: FrameChannel carrying frame handles, spinning consumer.
void BM_Queue_HopLatency_FrameChannel(benchmark::State& state) {
  rtnmf::FrameChannel ch(16, {256}, rtnmf::OverloadPolicy::kBlock, 1'000'000'000);
  hop_latency(
      state,
      [&](std::int64_t v) {
        rtnmf::Frame* f = ch.acquire();
        f->header.t_received_ns = v;
        ch.push(f);
        return true;
      },
      [&] {
        rtnmf::Frame* f = nullptr;
        while (!(f = ch.pop(1'000'000'000))) {
        }
        std::int64_t v = f->header.t_received_ns;
        ch.release(f);
        return v;
      });
}

// Throughput: items per second through a bounded queue, back to back.
template <typename Push, typename Pop>
void throughput(benchmark::State& state, Push push, Pop pop) {
  constexpr int kN = 1'000'000;
  for (auto _ : state) {
    std::thread consumer([&] {
      for (int i = 0; i < kN; ++i) pop();
    });
    for (int i = 0; i < kN; ++i)
      while (!push(i)) {
      }
    consumer.join();
  }
  state.SetItemsProcessed(state.iterations() * kN);
}

void BM_Queue_Throughput_SpscRing(benchmark::State& state) {
  rtnmf::SpscRing<std::int64_t> q(1024);
  throughput(
      state, [&](std::int64_t v) { return q.try_push(v); },
      [&] {
        std::int64_t v;
        while (!q.try_pop(v)) {
        }
      });
}

void BM_Queue_Throughput_ReaderWriterQueue(benchmark::State& state) {
  moodycamel::ReaderWriterQueue<std::int64_t> q(1024);
  throughput(
      state, [&](std::int64_t v) { return q.try_enqueue(v); },
      [&] {
        std::int64_t v;
        while (!q.try_dequeue(v)) {
        }
      });
}

void BM_Queue_Throughput_MutexCondvar(benchmark::State& state) {
  MutexQueue q(1024);
  throughput(state, [&](std::int64_t v) { return q.try_push(v); }, [&] { q.pop(); });
}

BENCHMARK(BM_Queue_HopLatency_SpscRing)->Iterations(3)->UseRealTime();
BENCHMARK(BM_Queue_HopLatency_ReaderWriterQueue)->Iterations(3)->UseRealTime();
BENCHMARK(BM_Queue_HopLatency_FrameChannel)->Iterations(3)->UseRealTime();
BENCHMARK(BM_Queue_HopLatency_MutexCondvar)->Iterations(3)->UseRealTime();
BENCHMARK(BM_Queue_Throughput_SpscRing)->Iterations(3)->UseRealTime();
BENCHMARK(BM_Queue_Throughput_ReaderWriterQueue)->Iterations(3)->UseRealTime();
BENCHMARK(BM_Queue_Throughput_MutexCondvar)->Iterations(3)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
