// `rtnmf simulate calcium --out MOVIE.tif --truth TRUTH.h5 [knobs]` (and `simulate emg ...`,
// which dispatches to the EMG family's run_simulate_emg).
#include <cstdio>
#include <string>
#include <vector>

#include "engine/io/tiff_writer.h"
#include "engine/sim/calcium.h"
#include "tools/rtnmf/command.h"
#include "tools/rtnmf/simulate_emg.h"

namespace rtnmf::cli {
namespace {

const char* kCalciumUsage = R"(usage: rtnmf simulate calcium --out MOVIE.tif --truth TRUTH.h5 [options]

Writes a ground-truth calcium-imaging movie (multi-page TIFF, uint16 unless --float) and its truth
(HDF5: /footprints CSC pixels x K, /traces and /spikes K x T, /background/{spatial,temporal},
/motion/shifts T x 2). Defaults: 128x128, 1000 frames at 30 Hz, 40 neurons (GCaMP6f-like).

  --height N --width N       frame shape (128 x 128)
  --frames N --rate HZ       length and frame rate (1000, 30)
  --neurons N                number of neurons (40)
  --radius PX                soma radius (5)
  --radius-jitter F          relative sd of the soma radius (0.2)
  --ellipticity F            largest relative difference of a soma's axes from its radius (0.25)
  --nucleus F                dimming of the nucleus: 0 none, 1 a dark centre (0.3)
  --irregularity F           outline irregularity: relative sd of angular harmonics 2-4 (0)
  --min-distance R           minimum centre distance in radii; < 2 lets somata overlap (1.6)
  --rate-hz HZ               mean firing rate (0.5)
  --tau-rise S --tau-decay S indicator kinetics (0.05, 0.4)
  --amplitude PHOTONS        fluorescence per spike at the soma peak (60)
  --baseline PHOTONS         resting fluorescence (40)
  --background PHOTONS       background level (100)
  --neuropil F --drift F     neuropil fluctuation and slow drift, relative (0.2, 0.05)
  --bleaching-tau S          bleaching time constant (0 = none)
  --noise PHOTONS            read noise sd (5); shot noise on unless --no-shot-noise
  --motion PX                rigid motion random walk (0 = none)
  --bg-components N          background components (2)
  --bg-scale PX              one-photon-like local background blobs of this scale (0 = off)
  --one-photon               one-photon preset (radius 7, bright local background: 16
                             components at 21 px, neuropil 0.5, noise 10, amplitude 80);
                             other options given override it
  --seed N                   random seed (1)
  --bigtiff                  write BigTIFF
  --float                    write float32 pixels
)";

int simulate_calcium(const std::vector<std::string>& args) {
  ArgParser p(args, {"bigtiff", "float", "no-shot-noise", "one-photon"});
  p.check_known({"out", "truth", "height", "width", "frames", "rate", "neurons", "radius",
                 "min-distance", "rate-hz", "tau-rise", "tau-decay", "amplitude", "baseline",
                 "background", "neuropil", "drift", "bleaching-tau", "noise", "motion", "seed",
                 "bigtiff", "float", "no-shot-noise", "one-photon", "bg-components", "bg-scale",
                 "radius-jitter", "ellipticity", "nucleus", "irregularity"});
  if (!p.has("out")) throw UsageError("--out MOVIE.tif is required");
  if (!p.has("truth")) throw UsageError("--truth TRUTH.h5 is required");
  sim::CalciumSimOptions o;
  if (p.has("one-photon")) o = sim::one_photon_options(o);
  auto pos = [&](const char* name, long long def) {
    const long long v = p.get_int(name, def);
    if (v <= 0) throw UsageError(std::string("--") + name + " must be > 0");
    return static_cast<std::uint32_t>(v);
  };
  o.height = pos("height", o.height);
  o.width = pos("width", o.width);
  o.frames = pos("frames", o.frames);
  o.frame_rate_hz = p.get_double("rate", o.frame_rate_hz);
  o.neurons = static_cast<std::uint32_t>(p.get_int("neurons", o.neurons));
  o.neuron_radius = static_cast<float>(p.get_double("radius", o.neuron_radius));
  o.radius_jitter = static_cast<float>(p.get_double("radius-jitter", o.radius_jitter));
  o.ellipticity = static_cast<float>(p.get_double("ellipticity", o.ellipticity));
  o.nucleus = static_cast<float>(p.get_double("nucleus", o.nucleus));
  o.irregularity = static_cast<float>(p.get_double("irregularity", o.irregularity));
  if (o.radius_jitter < 0 || o.irregularity < 0) throw UsageError("--radius-jitter and --irregularity must be >= 0");
  if (o.ellipticity < 0 || o.ellipticity >= 1) throw UsageError("--ellipticity must be in [0, 1)");
  if (o.nucleus < 0 || o.nucleus > 1) throw UsageError("--nucleus must be in [0, 1]");
  o.min_distance = static_cast<float>(p.get_double("min-distance", o.min_distance));
  o.firing_rate_hz = static_cast<float>(p.get_double("rate-hz", o.firing_rate_hz));
  o.tau_rise_s = static_cast<float>(p.get_double("tau-rise", o.tau_rise_s));
  o.tau_decay_s = static_cast<float>(p.get_double("tau-decay", o.tau_decay_s));
  o.spike_amplitude = static_cast<float>(p.get_double("amplitude", o.spike_amplitude));
  o.baseline = static_cast<float>(p.get_double("baseline", o.baseline));
  o.background = static_cast<float>(p.get_double("background", o.background));
  o.neuropil = static_cast<float>(p.get_double("neuropil", o.neuropil));
  o.drift = static_cast<float>(p.get_double("drift", o.drift));
  o.background_components = pos("bg-components", o.background_components);
  o.background_scale_px = static_cast<float>(p.get_double("bg-scale", o.background_scale_px));
  o.bleaching_tau_s = static_cast<float>(p.get_double("bleaching-tau", o.bleaching_tau_s));
  o.read_noise = static_cast<float>(p.get_double("noise", o.read_noise));
  o.shot_noise = !p.has("no-shot-noise");
  o.motion_px = static_cast<float>(p.get_double("motion", o.motion_px));
  o.seed = static_cast<std::uint64_t>(p.get_int("seed", 1));
  if (o.frame_rate_hz <= 0) throw UsageError("--rate must be > 0");
  if (o.tau_decay_s <= 0) throw UsageError("--tau-decay must be > 0");

  sim::CalciumSimulator simulator(o);
  io::TiffWriteOptions wo;
  wo.bigtiff = p.has("bigtiff");
  wo.dtype = p.has("float") ? io::PixelType::kFloat32 : io::PixelType::kUint16;
  // ScanImage-style header so readers pick up the frame rate.
  wo.software = "SI.hRoiManager.scanFrameRate = " + std::to_string(o.frame_rate_hz) + "\n";
  wo.description = "rtnmf simulate calcium seed=" + std::to_string(o.seed);
  const std::string out = p.get("out");
  io::TiffWriter writer(out, o.height, o.width, wo);
  std::vector<float> frame(static_cast<std::size_t>(o.height) * o.width);
  for (std::uint32_t t = 0; t < o.frames; ++t) {
    simulator.render(t, frame.data());
    writer.write_frame(frame.data());
  }
  writer.close();
  sim::write_calcium_truth(p.get("truth"), simulator.truth(), o);
  std::fprintf(stderr, "wrote %s (%u frames %ux%u, %u neurons) and %s\n", out.c_str(), o.frames,
               o.height, o.width, o.neurons, p.get("truth").c_str());
  return 0;
}

int simulate_cmd(const std::vector<std::string>& args) {
  if (args.empty()) throw UsageError("expected `calcium` or `emg`");
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "calcium") return simulate_calcium(rest);
  if (args[0] == "emg") return run_simulate_emg(rest);
  throw UsageError("unknown simulation '" + args[0] + "' (calcium, emg)");
}

const CommandRegistration kRegister(Command{
    "simulate", "ground-truth data: calcium movies or EMG/assemblies",
    std::string(kCalciumUsage) + "\n" + kSimulateEmgUsage, simulate_cmd});

}  // namespace
}  // namespace rtnmf::cli
