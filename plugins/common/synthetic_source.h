// Synthetic imaging frames or EMG blocks with planted components, for demos and benchmarks.
#pragma once

#include <Eigen/Core>
#include <random>
#include <vector>

#include "engine/runtime/pacer.h"
#include "engine/runtime/stage.h"

namespace rtnmf {

// Imaging: K Gaussian "neurons" with exponentially decaying calcium transients on a smooth
// background plus noise, quantised to the rig dtype. EMG: K synergies (channels × K, non-negative)
// recruited by smooth activations, each channel a band-limited noise carrier scaled by its drive.
// Everything random is drawn in open(); read() only indexes tables (no allocation).
class SyntheticSource : public Source {
 public:
  StreamSpec open(const v1::SourceConfig& config, const std::string& stream_id) override;
  ReadStatus read(Frame& frame) override;
  bool is_live() const override { return pacer_.realtime(); }

 private:
  void fill_imaging(Frame& f);
  void fill_emg(Frame& f);

  v1::SyntheticSource cfg_;
  Pacer pacer_;
  std::uint64_t seq_ = 0;
  std::uint32_t rows_ = 0, cols_ = 0, width_ = 0;
  std::mt19937_64 rng_;
  // Imaging.
  struct Blob {
    std::uint32_t y0, x0, h, w;
    std::vector<float> weights;  // h × w
  };
  std::vector<Blob> blobs_;
  Eigen::VectorXf background_;
  std::vector<Eigen::VectorXf> noise_bank_;
  Eigen::VectorXf calcium_;
  std::vector<float> spike_prob_;
  float decay_ = 0.95f;
  // EMG.
  Eigen::MatrixXf synergies_;       // channels × K
  Eigen::MatrixXf activation_table_;  // K × period
  Eigen::MatrixXf carrier_table_;     // channels × period
  std::uint64_t sample_ = 0;
  float scale_ = 1000.f;
  float noise_ = 0.1f;
  bool quantise_ = true;
};

}  // namespace rtnmf
