// Imaging slow path at the size: a simulated 512 x 512 movie with 500 neurons (the
// simulator's defaults otherwise). Times the batch initialisation on the first 300 frames, the
// per-frame fold into the statistics (CnmfUpdater::add_frame) and one model update
// (CnmfUpdater::update: shapes, background, new neurons, merges, removals) after 100 frames,
// and a second update on the same frames, each with CnmfOptions::update_threads 1 and 2.
// The fast path is bm_imaging. Counters: components found, added by the update.
#include <benchmark/benchmark.h>

#include <memory>

#include "engine/nmf/cnmf.h"
#include "engine/sim/calcium.h"

namespace {

using rtnmf::nmf::CnmfInitResult;
using rtnmf::nmf::CnmfModel;
using rtnmf::nmf::CnmfOptions;
using rtnmf::nmf::CnmfTracker;
using rtnmf::nmf::CnmfUpdater;

constexpr int kSide = 512;
constexpr int kNeurons = 500;
constexpr int kInit = 300;
constexpr int kMore = 100;

struct Movie {
  Eigen::MatrixXf frames;  // P x (kInit + kMore)
  CnmfOptions options;
};

Movie& movie() {
  static Movie m = [] {
    Movie mv;
    rtnmf::sim::CalciumSimOptions so;
    so.height = so.width = kSide;
    so.frames = kInit + kMore;
    so.neurons = kNeurons;
    rtnmf::sim::CalciumSimulator sim(so);
    mv.frames.resize(static_cast<Eigen::Index>(kSide) * kSide, kInit + kMore);
    for (int t = 0; t < kInit + kMore; ++t) sim.render(static_cast<std::uint32_t>(t), mv.frames.col(t).data());
    mv.options.height = mv.options.width = kSide;
    mv.options.max_components = 1000;
    return mv;
  }();
  return m;
}

CnmfInitResult& initialised() {
  static CnmfInitResult r = rtnmf::nmf::cnmf_initialize(movie().frames.leftCols(kInit), movie().options);
  return r;
}

void BM_CnmfInitialize(benchmark::State& state) {
  Movie& mv = movie();
  int k = 0;
  for (auto _ : state) {
    CnmfInitResult r = rtnmf::nmf::cnmf_initialize(mv.frames.leftCols(kInit), mv.options);
    k = r.model.k();
  }
  state.counters["components"] = k;
}
BENCHMARK(BM_CnmfInitialize)->Unit(benchmark::kMillisecond)->Iterations(1);

// The updater after the initialisation, fed kMore frames with the fast path's activations.
struct Fed {
  CnmfUpdater updater;
  Eigen::MatrixXf act;  // by slot x kMore
  Eigen::MatrixXf bg;   // nb x kMore
};

std::unique_ptr<Fed> feed(bool add, int update_threads = 1) {
  Movie& mv = movie();
  CnmfInitResult& init = initialised();
  auto f = std::make_unique<Fed>();
  CnmfOptions options = mv.options;
  options.update_threads = update_threads;
  f->updater.init(options, init, mv.frames.leftCols(kInit));
  CnmfTracker tracker;
  tracker.init(mv.options, init.model.nb());
  tracker.set_model(&init.model);
  f->act = Eigen::MatrixXf::Zero(mv.options.result_rows, kMore);
  f->bg = Eigen::MatrixXf::Zero(init.model.nb(), kMore);
  for (int t = 0; t < kMore; ++t) {
    tracker.process(mv.frames.col(kInit + t).data());
    for (int k = 0; k < init.model.k(); ++k)
      f->act(init.model.slots[static_cast<std::size_t>(k)], t) = tracker.output().activation(k);
    f->bg.col(t) = tracker.output().background.head(init.model.nb());
    if (add) f->updater.add_frame(mv.frames.col(kInit + t).data(), f->act.col(t), f->bg.col(t));
  }
  return f;
}

// kept = 1: frames added in place (add_frame_kept, what the imaging stage does, reading them
// from its ring): no copy. kept = 0: add_frame copies each frame into the updater's ring.
void BM_CnmfUpdater_AddFrame(benchmark::State& state) {
  std::unique_ptr<Fed> f = feed(false);
  Movie& mv = movie();
  const bool kept = state.range(0) != 0;
  int t = 0;
  for (auto _ : state) {
    if (kept)
      f->updater.add_frame_kept(mv.frames.col(kInit + t).data(), f->act.col(t), f->bg.col(t));
    else
      f->updater.add_frame(mv.frames.col(kInit + t).data(), f->act.col(t), f->bg.col(t));
    t = (t + 1) % kMore;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CnmfUpdater_AddFrame)->Unit(benchmark::kMicrosecond)->ArgName("kept")->Arg(0)->Arg(1);

void BM_CnmfUpdater_Update(benchmark::State& state) {
  int added = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::unique_ptr<Fed> f = feed(true, static_cast<int>(state.range(0)));
    CnmfModel out;
    state.ResumeTiming();
    f->updater.update(out);
    added = f->updater.added_last();
  }
  state.counters["added"] = added;
}
BENCHMARK(BM_CnmfUpdater_Update)->Unit(benchmark::kMillisecond)->Iterations(3)->ArgName("threads")->Arg(1)->Arg(2);

// A second update on the same frames: the screening and the patch searches start from a model
// that already holds what the first update found (online, every update after the first).
void BM_CnmfUpdater_UpdateAgain(benchmark::State& state) {
  int added = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::unique_ptr<Fed> f = feed(true, static_cast<int>(state.range(0)));
    CnmfModel out;
    f->updater.update(out);
    state.ResumeTiming();
    f->updater.update(out);
    added = f->updater.added_last();
  }
  state.counters["added"] = added;
}
BENCHMARK(BM_CnmfUpdater_UpdateAgain)->Unit(benchmark::kMillisecond)->Iterations(3)->ArgName("threads")->Arg(1)->Arg(2);

}  // namespace

BENCHMARK_MAIN();
