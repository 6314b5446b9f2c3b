#include "engine/nmf/cnmf_driver.h"

#include <algorithm>
#include <map>
#include <memory>

namespace rtnmf::nmf {

CnmfRunResult run_cnmf_online(const std::function<void(std::uint32_t, float*)>& frame,
                              std::uint32_t frames, const CnmfOptions& options,
                              const CnmfRunOptions& run) {
  const Eigen::Index P = static_cast<Eigen::Index>(options.height) * options.width;
  const std::uint32_t t0 = std::min(run.init_frames, frames);
  Eigen::MatrixXf first(P, t0);
  for (std::uint32_t t = 0; t < t0; ++t) frame(t, first.col(t).data());
  // Without the batch's frames the model cannot explain (as the online_cnmf stage initialises).
  CnmfBatchScreen screen;
  CnmfInitResult init = cnmf_initialize_screened(first, options, nullptr, screen);
  const int nb = init.model.nb();
  CnmfUpdater updater;
  updater.init(options, init, first.leftCols(screen.kept));
  const bool screened = screen.kept < static_cast<Eigen::Index>(t0);  // `first` was compacted
  // Models live in a small list so the tracker's pointer stays valid until it switches.
  std::vector<std::unique_ptr<CnmfModel>> models;
  models.push_back(std::make_unique<CnmfModel>(init.model));
  CnmfTracker tracker;
  tracker.init(options, nb);
  tracker.set_model(models.back().get());
  struct Rows {
    std::vector<float> raw, den, spk;
  };
  std::map<std::uint64_t, Rows> rows;
  CnmfRunResult res;
  res.background = Eigen::MatrixXf::Zero(nb, frames);
  Eigen::VectorXf y(P);
  Eigen::VectorXf by_slot = Eigen::VectorXf::Zero(std::max(1, options.result_rows));
  std::unique_ptr<CnmfModel> pending;
  for (std::uint32_t t = 0; t < frames; ++t) {
    if (pending) {
      models.push_back(std::move(pending));
      tracker.set_model(models.back().get());
      if (models.size() > 3) models.erase(models.begin());
    }
    if (t < t0 && !screened) y = first.col(t);
    else frame(t, y.data());
    tracker.process(y.data());
    const CnmfModel& m = *tracker.model();
    const CnmfFrameOutput& out = tracker.output();
    for (int k = 0; k < m.k(); ++k) {
      Rows& r = rows[m.ids[static_cast<std::size_t>(k)]];
      r.raw.resize(t, 0.0f);
      r.den.resize(t, 0.0f);
      r.spk.resize(t, 0.0f);
      r.raw.push_back(out.raw(k));
      r.den.push_back(out.denoised(k));
      r.spk.push_back(out.spikes(k));
    }
    res.background.col(t) = out.background.head(nb);
    if (t >= t0 && !out.excluded) {  // an excluded frame stays out of the statistics
      by_slot.setZero();
      for (int k = 0; k < m.k(); ++k)
        if (m.slots[static_cast<std::size_t>(k)] >= 0) by_slot(m.slots[static_cast<std::size_t>(k)]) = out.activation(k);
      updater.add_frame(y.data(), by_slot, out.background.head(nb));
      if ((t + 1 - t0) % run.update_every == 0) {
        pending = std::make_unique<CnmfModel>();
        updater.update(*pending);
        res.added += updater.added_last();
        res.merged += updater.merged_last();
        res.removed += updater.removed_last();
      }
    }
  }
  res.model = *tracker.model();
  const int K = res.model.k();
  res.raw = Eigen::MatrixXf::Zero(K, frames);
  res.denoised = Eigen::MatrixXf::Zero(K, frames);
  res.spikes = Eigen::MatrixXf::Zero(K, frames);
  for (int k = 0; k < K; ++k) {
    const Rows& r = rows[res.model.ids[static_cast<std::size_t>(k)]];
    for (std::size_t t = 0; t < r.raw.size() && t < frames; ++t) {
      res.raw(k, static_cast<Eigen::Index>(t)) = r.raw[t];
      res.denoised(k, static_cast<Eigen::Index>(t)) = r.den[t];
      res.spikes(k, static_cast<Eigen::Index>(t)) = r.spk[t];
    }
  }
  return res;
}

}  // namespace rtnmf::nmf
