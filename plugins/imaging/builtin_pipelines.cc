#include "plugins/imaging/builtin_pipelines.h"

#include "engine/runtime/config.h"

namespace rtnmf::imaging {
namespace {

// Two-photon GCaMP6 at ~30 Hz: rigid motion correction, then online CNMF with a rank-2
// background, somata of radius ~5 px, a 300-frame initialisation and updates every 100 frames,
// each taking effect 100 frames after the frame it ends on (model lag = update_every: an update
// runs beside the next 100 frames; with a lag of 30 the fast path at --speed max waited for each
// one). Override with --set, e.g. --set cnmf.neuron_radius=7,
// --set cnmf.decay_time_s=1.0 (GCaMP6s), --set source.rate_hz=15.
// Input queue of 4 frames (default 16): 133 ms at 30 Hz, ample for a fast path that never stalls
// on the model updates; at --speed max the reader then runs only a few frames ahead, so the frame
// the fast path reads (1 MB at 512 x 512) was written moments ago and is still in the shared cache
// rather than 16 MB back, behind the slow path's ring traffic. 512 x 512 benchmark, 7 interleaved
// pairs depth 16 / 4: median online rate 968 / 1,033 frames/s, CPU per online frame 1.91 / 1.77 ms.
constexpr const char* kCalcium2p = R"pb(
name: "calcium-2p"
stream {
  id: "imaging"
  source { imaging_file { path: "" } }
  model_lag_frames: 100
  queue_depth: 4
  stage {
    type: "motion_correct"
    name: "motion"
    imaging { template_frames: 30 template_tau_s: 10 }
  }
  stage {
    type: "online_cnmf"
    name: "cnmf"
    imaging {
      neuron_radius: 5
      auto_radius: true
      background_components: 2
      init_frames: 300
      update_every: 100
      min_pnr: 6
      min_corr: 0.4
      min_snr: 3
      min_space_corr: 0.6
      decay_time_s: 0.4
      forgetting_s: 100
    }
  }
}
)pb";

// One-photon (miniscope) data: larger, blurrier cells on a strong, structured background.
// Motion correction, then online CNMF with the CNMF-E ring background (radius 1.75 soma
// radii, plus a constant baseline; the rank-4 low-rank background is used only for the
// initialisation's first seeding, its refinement already works on the ring-free movie) and bigger
// somata, checked against the data only downwards (auto_radius_max: proto/imaging.proto). Model
// lag as calcium-2p.
constexpr const char* kCalcium1p = R"pb(
name: "calcium-1p"
stream {
  id: "imaging"
  source { imaging_file { path: "" } }
  model_lag_frames: 100
  queue_depth: 4
  stage {
    type: "motion_correct"
    name: "motion"
    imaging { template_frames: 30 template_tau_s: 10 }
  }
  stage {
    type: "online_cnmf"
    name: "cnmf"
    imaging {
      neuron_radius: 7
      auto_radius: true
      auto_radius_max: 7
      background_components: 4
      ring_background: true
      init_frames: 300
      update_every: 100
      min_pnr: 8
      min_corr: 0.6
      min_snr: 3
      min_space_corr: 0.6
      decay_time_s: 0.6
      forgetting_s: 100
    }
  }
}
)pb";

const BuiltinPipelineRegistration kRegister2p(
    "calcium-2p", "two-photon movie -> motion correction -> online CNMF + OASIS", kCalcium2p);
const BuiltinPipelineRegistration kRegister1p(
    "calcium-1p", "one-photon movie -> motion correction -> online CNMF (ring background) + OASIS",
    kCalcium1p);

}  // namespace

const char* imaging_builtin_pipeline(std::string_view name) {
  if (name == "calcium-2p") return kCalcium2p;
  if (name == "calcium-1p") return kCalcium1p;
  return nullptr;
}

}  // namespace rtnmf::imaging
