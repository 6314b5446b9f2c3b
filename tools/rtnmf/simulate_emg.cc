#include "tools/rtnmf/simulate_emg.h"

#include <cstdio>

#include "engine/io/matrix_io.h"
#include "engine/sim/assemblies.h"
#include "engine/sim/emg_sim.h"
#include "tools/rtnmf/command.h"

namespace rtnmf::cli {

const char* const kSimulateEmgUsage =
    R"(usage: rtnmf simulate emg --out EMG.csv --truth TRUTH.h5 [options]

Simulated surface EMG: per-muscle band-limited noise carriers (each muscle its own band)
amplitude-modulated by synergy activations plus each muscle's own bursts, with slow
multiplicative drive noise, cross-talk to neighbouring channels, mains hum and baseline noise:
like real recordings, the envelopes are not exactly rank K (the planted rank explains ~95 %).
The CSV has a
header `t,EMG01,...` (time in seconds); the truth file holds /truth/synergies (channels x K,
channel_names attribute) and /truth/activations (K x T at the envelope rate).

  --channels N        muscles / channels (default 16)
  --synergies K       planted synergies (default 4)
  --rate HZ           sample rate (default 2000)
  --seconds S         duration (default 60)
  --seed N            (default 1)
  --envelope-rate HZ  rate of the truth activations (default 100)
  --mains HZ          hum frequency, 0 for none (default 50)
  --hum A             hum amplitude (default 0.1; a fully active muscle is ~1 rms)
  --noise S           baseline noise standard deviation (default 0.02)
  --crosstalk F       fraction seen on each neighbouring channel (default 0.1)
  --private F         each muscle's own bursts, mean relative to the synergy drive (default 0.2)
  --drive-noise S     sd of the multiplicative drive noise, 0 for none (default 0.15)
  --switch-at S       replace synergy 0 by a new one from S seconds on (default: never)

  --kind assemblies   binned spike counts with planted assemblies instead (CSV, one row per bin,
                      or OUT.npy: neurons x bins float32; truth: /truth/synergies = membership,
                      /truth/activations). Replay with --pipeline assemblies:
  --neurons N (100) --assemblies A (5) --members M (15) --bins T (4000) --bin-s S (0.05)
)";

int run_simulate_emg(const std::vector<std::string>& args) {
  ArgParser p(args, {});
  p.check_known({"out",     "truth",         "channels",  "synergies", "rate",    "seconds",
                 "seed",    "envelope-rate", "mains",     "hum",       "noise",   "crosstalk",
                 "private", "drive-noise",   "switch-at", "kind",      "neurons", "assemblies",
                 "members", "bins",          "bin-s"});
  if (!p.positionals().empty())
    throw UsageError("unexpected argument '" + p.positionals()[0] + "'");
  const std::string out = p.get("out");
  const std::string truth = p.get("truth");
  if (out.empty()) throw UsageError("--out is required");
  const std::string kind = p.get("kind", "emg");
  if (kind == "assemblies") {
    sim::AssemblySimConfig c;
    c.neurons = static_cast<int>(p.get_int("neurons", c.neurons));
    c.assemblies = static_cast<int>(p.get_int("assemblies", c.assemblies));
    c.members = static_cast<int>(p.get_int("members", c.members));
    c.bins = p.get_int("bins", c.bins);
    c.bin_s = p.get_double("bin-s", c.bin_s);
    c.seed = static_cast<std::uint64_t>(p.get_int("seed", 1));
    sim::AssemblySimulation s = sim::simulate_assemblies(c);
    if (out.size() > 4 && out.compare(out.size() - 4, 4, ".npy") == 0) {
      io::write_npy(out, s.counts);  // neurons × bins, float32
    } else {
      sim::write_assembly_csv(out, s);
    }
    if (!truth.empty()) sim::write_assembly_truth(truth, s);
    std::printf("wrote %s: %d neurons x %lld bins of %g s, %d assemblies%s%s\n", out.c_str(),
                c.neurons, static_cast<long long>(c.bins), c.bin_s, c.assemblies,
                truth.empty() ? "" : "; truth in ", truth.c_str());
    return 0;
  }
  if (kind != "emg") throw UsageError("--kind must be emg or assemblies, got '" + kind + "'");
  sim::EmgSimConfig c;
  c.channels = static_cast<int>(p.get_int("channels", c.channels));
  c.synergies = static_cast<int>(p.get_int("synergies", c.synergies));
  c.sample_rate_hz = p.get_double("rate", c.sample_rate_hz);
  c.duration_s = p.get_double("seconds", c.duration_s);
  c.seed = static_cast<std::uint64_t>(p.get_int("seed", 1));
  c.envelope_rate_hz = p.get_double("envelope-rate", c.envelope_rate_hz);
  c.mains_hz = p.get_double("mains", c.mains_hz);
  c.mains_amplitude = p.get_double("hum", c.mains_amplitude);
  c.noise = p.get_double("noise", c.noise);
  c.crosstalk = p.get_double("crosstalk", c.crosstalk);
  c.private_drive = p.get_double("private", c.private_drive);
  c.drive_noise = p.get_double("drive-noise", c.drive_noise);
  c.switch_at_s = p.get_double("switch-at", c.switch_at_s);
  sim::EmgSimulation s = sim::simulate_emg(c);
  sim::write_emg_csv(out, s);
  if (!truth.empty()) sim::write_emg_truth(truth, s);
  std::printf("wrote %s: %d channels x %lld samples at %g Hz, %d synergies%s%s\n", out.c_str(),
              c.channels, static_cast<long long>(s.emg.cols()), c.sample_rate_hz, c.synergies,
              truth.empty() ? "" : "; truth in ", truth.c_str());
  return 0;
}

}  // namespace rtnmf::cli
