#include "plugins/emg/builtin_pipelines.h"

#include "engine/runtime/config.h"

namespace rtnmf::emg {
namespace {

// Surface EMG (EDF/BDF/CSV/raw) in 4-sample blocks: band-pass 20-450 Hz (the upper edge drops
// to 0.45 x rate below 1 kHz), 50 Hz notch
// (--set condition.notch_hz=60 for 60 Hz mains), 6 Hz envelope at 100 Hz; synergies from a
// 10 s calibration window with the rank chosen by VAF >= 90 % once the next rank adds < 1.5 %,
// then updated online.
constexpr const char* kEmgSynergies = R"pb(
  name: "emg-synergies"
  stream {
    id: "emg"
    source { emg_file { path: "" block_samples: 4 } }
    model_lag_frames: 20
    stage {
      type: "emg_condition"
      name: "condition"
      emg { notch_hz: 50 envelope_hz: 6 envelope_rate_hz: 100 }
    }
    stage {
      type: "online_synergies"
      name: "nmf"
      nmf {
        vaf_threshold: 0.9
        vaf_gain: 0.015
        calibration_s: 10
        forgetting: 0.999
        update_every: 50
        normalize: "l2"
        vaf_window_s: 5
      }
    }
  }
)pb";

// Binned spike counts or ROI traces, neurons × time (CSV rows = bins, or HDF5 file.h5:/counts),
// one bin per frame at 20 bins/s (--set source.sample_rate=...); max(x, 0); assemblies from a
// 60 s calibration window (rank by VAF, or --set nmf.rank=K), updated online.
constexpr const char* kAssemblies = R"pb(
  name: "assemblies"
  stream {
    id: "spikes"
    source { emg_file { path: "" block_samples: 1 sample_rate: 20 } }
    model_lag_frames: 20
    stage {
      type: "spike_bin"
      name: "bin"
      emg { bin: 1 }
    }
    stage {
      type: "online_synergies"
      name: "nmf"
      nmf {
        vaf_threshold: 0.9
        calibration_s: 60
        forgetting: 0.999
        update_every: 20
        normalize: "l2"
        vaf_window_s: 30
      }
    }
  }
)pb";

const BuiltinPipelineRegistration kRegisterEmg(
    "emg-synergies", "EMG files -> conditioning -> online muscle synergies (VAF rank, warm start)",
    kEmgSynergies);
const BuiltinPipelineRegistration kRegisterAssemblies(
    "assemblies", "spike counts / ROI traces -> max(x,0) -> online neuronal assemblies",
    kAssemblies);

}  // namespace

const char* emg_builtin_pipeline(std::string_view name) {
  if (name == "emg-synergies") return kEmgSynergies;
  if (name == "assemblies") return kAssemblies;
  return nullptr;
}

}  // namespace rtnmf::emg
