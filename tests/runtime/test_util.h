// Helpers for runtime tests: parse a pipeline, collect its output.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/runtime/clock.h"
#include "engine/runtime/config.h"
#include "engine/runtime/pipeline.h"

namespace rtnmf::test {

// Records every frame a stream produces (seq and lane 0), on the sink thread.
class CollectSink : public ResultSink {
 public:
  void begin(const StreamSpec& spec) override { spec_ = spec; }
  void write(const Frame& f) override {
    std::lock_guard<std::mutex> lock(mutex_);
    seqs_.push_back(f.header.seq);
    if (f.header.flags & kFrameMarkedBad) marked_.push_back(f.header.seq);
    values_.insert(values_.end(), f.data(), f.data() + f.lane(0).size);
  }
  void end() override { ended_ = true; }
  std::vector<std::uint64_t> seqs() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return seqs_;
  }
  // The seqs of the frames that arrived marked bad (kFrameMarkedBad).
  std::vector<std::uint64_t> marked() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return marked_;
  }
  std::vector<float> values() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return values_;
  }
  bool ended() const { return ended_; }

 private:
  mutable std::mutex mutex_;
  StreamSpec spec_;
  std::vector<std::uint64_t> seqs_, marked_;
  std::vector<float> values_;
  std::atomic<bool> ended_{false};
};

// Waits for `pred` until the deadline; returns its last value.
template <typename Pred>
bool wait_for(Pred pred, double seconds) {
  const std::int64_t deadline = now_ns() + static_cast<std::int64_t>(seconds * 1e9);
  while (now_ns() < deadline) {
    if (pred()) return true;
    sleep_until_ns(now_ns() + 1'000'000);
  }
  return pred();
}

// Attaches a CollectSink to `stream`, starts the pipeline and waits up to `seconds` for every
// source to end; the pipeline is joined either way. Returns the sink (owned by the pipeline), or
// null when the pipeline did not end in time (then it was stopped).
inline CollectSink* run_collecting(Pipeline& p, const std::string& stream, double seconds) {
  auto sink = std::make_unique<CollectSink>();
  CollectSink* out = sink.get();
  p.add_sink(stream, std::move(sink));
  p.start();
  const bool ended = p.wait(static_cast<std::int64_t>(seconds * 1e9));
  if (!ended) p.request_stop();
  p.join();
  return ended ? out : nullptr;
}

}  // namespace rtnmf::test
