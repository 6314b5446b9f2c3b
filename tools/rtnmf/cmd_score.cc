// `rtnmf score --truth TRUTH.h5 RESULT.h5`: scores a result against simulator ground truth. The
// truth file's kind decides: calcium truth (/footprints) is scored here; synergy/assembly truth
// (/truth/synergies) goes to the EMG family's run_score_emg.
#include <cstdio>
#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "engine/io/h5.h"
#include "engine/io/movie_h5.h"
#include "engine/sim/calcium.h"
#include "engine/sim/score_imaging.h"
#include "tools/rtnmf/command.h"
#include "tools/rtnmf/score_emg.h"

namespace rtnmf::cli {
namespace {

const char* kImagingUsage = R"(usage: rtnmf score --truth TRUTH.h5 RESULT.h5 [options]

Calcium imaging (truth from `rtnmf simulate calcium`): matches result footprints to true ones
one-to-one (Hungarian on mask overlap, Jaccard >= --min-iou), then prints JSON with precision,
recall, F1, footprint cosine, trace correlation and spike-detection F1 of matched pairs.
Result columns with an empty footprint are ignored (files of rtnmf before 2026-11-30 kept merged
and removed components as empty columns; now they are under /retired/ and not scored); each
pair's "found" is the result file's column (the /footprints column and /traces row).

  --min-iou J          mask overlap needed for a match (0.3)
  --skip N             ignore the first N frames in trace and spike figures (0)
  --traces DATASET     the result's K x T dataset correlated with the true traces (/traces;
                       /dff: dF/F, which bleaching does not fade; /raw_traces)
  --spike-tolerance N  frames (2)
  --spike-threshold F  count s > F * max(s) of each component as a spike (0: every reported spike)
  --out FILE.json      also write the JSON there
  --min-f1 F           exit with status 3 when F1 is below F

Synergies / assemblies: when TRUTH.h5 holds /truth/synergies the arguments go to `score emg`.
)";

int score_imaging_cmd(const std::vector<std::string>& args) {
  ArgParser p(args, {});
  p.check_known({"truth", "result", "min-iou", "skip", "traces", "spike-tolerance", "spike-threshold", "out",
                 "min-f1"});
  std::string result = p.get("result");
  if (result.empty()) {
    if (p.positionals().size() != 1) throw UsageError("expected one RESULT.h5");
    result = p.positionals()[0];
  }
  sim::CalciumTruth truth = sim::read_calcium_truth(p.get("truth"));
  io::h5::File rf = io::h5::File::open(result);
  Eigen::SparseMatrix<float> fa = io::read_csc(rf, "/footprints");
  std::string traces = p.get("traces", "/traces");
  if (!traces.empty() && traces[0] != '/') traces.insert(traces.begin(), '/');
  if (p.has("traces") && !rf.exists(traces)) throw UsageError(result + ": no dataset " + traces + " (--traces)");
  Eigen::MatrixXf fc = rf.exists(traces) ? rf.read_matrix<float>(traces) : Eigen::MatrixXf();
  Eigen::MatrixXf fs = rf.exists("/spikes") ? rf.read_matrix<float>("/spikes") : Eigen::MatrixXf();
  // Keep the columns with a footprint (and the matching trace rows).
  std::vector<int> keep;
  for (int k = 0; k < fa.cols(); ++k)
    if (fa.col(k).nonZeros() > 0) keep.push_back(k);
  Eigen::SparseMatrix<float> a(fa.rows(), static_cast<Eigen::Index>(keep.size()));
  std::vector<Eigen::Triplet<float>> trip;
  Eigen::MatrixXf c(keep.size(), fc.cols()), s(keep.size(), fs.cols());
  for (std::size_t j = 0; j < keep.size(); ++j) {
    for (Eigen::SparseMatrix<float>::InnerIterator it(fa, keep[j]); it; ++it)
      trip.emplace_back(static_cast<int>(it.row()), static_cast<int>(j), it.value());
    if (keep[j] < fc.rows()) c.row(static_cast<Eigen::Index>(j)) = fc.row(keep[j]);
    else c.row(static_cast<Eigen::Index>(j)).setZero();
    if (keep[j] < fs.rows()) s.row(static_cast<Eigen::Index>(j)) = fs.row(keep[j]);
    else if (fs.cols() > 0) s.row(static_cast<Eigen::Index>(j)).setZero();
  }
  a.setFromTriplets(trip.begin(), trip.end());
  const long long skip = p.get_int("skip", 0);
  if (skip < 0) throw UsageError("--skip must be >= 0");
  auto tail = [&](const Eigen::MatrixXf& m) -> Eigen::MatrixXf {
    if (m.cols() <= skip) return Eigen::MatrixXf(m.rows(), 0);
    return m.rightCols(m.cols() - skip);
  };
  sim::ImagingScoreOptions o;
  o.min_iou = p.get_double("min-iou", o.min_iou);
  o.spike_tolerance = static_cast<int>(p.get_int("spike-tolerance", o.spike_tolerance));
  o.spike_threshold = static_cast<float>(p.get_double("spike-threshold", o.spike_threshold));
  const Eigen::Index T = std::min(truth.traces.cols(), c.cols());
  sim::ImagingScore sc = sim::score_imaging(
      truth.footprints, tail(truth.traces.leftCols(T)), tail(truth.spikes.leftCols(std::min(truth.spikes.cols(), T))),
      a, tail(c.leftCols(T)), tail(s.leftCols(std::min(s.cols(), T))), o);
  // Name the result file's own columns in the pairs (the /footprints column and /traces row a
  // user would look up), not positions among the non-empty ones.
  for (sim::MatchedPair& pr : sc.pairs) pr.found = keep[static_cast<std::size_t>(pr.found)];
  const std::string json = sc.to_json();
  std::fputs(json.c_str(), stdout);
  if (p.has("out")) {
    std::ofstream f(p.get("out"));
    f << json;
    if (!f) throw std::runtime_error(p.get("out") + ": cannot write");
  }
  if (p.has("min-f1") && sc.f1 < p.get_double("min-f1", 0)) return 3;
  return 0;
}

int score_cmd(const std::vector<std::string>& args) {
  if (!args.empty() && args[0] == "emg") {
    return run_score_emg(std::vector<std::string>(args.begin() + 1, args.end()));
  }
  ArgParser p(args, {});
  if (!p.has("truth")) throw UsageError("--truth TRUTH.h5 is required");
  const std::string truth = p.get("truth");
  bool emg = false;
  {
    io::h5::File f = io::h5::File::open(truth);
    emg = f.exists("/truth/synergies") || f.exists("/truth");
    if (!emg && !f.exists("/footprints")) {
      throw UsageError(truth + ": neither calcium truth (/footprints) nor synergy truth "
                               "(/truth/synergies)");
    }
  }
  if (emg) {
    // `score --truth T R` -> `score emg --truth T --result R`.
    std::vector<std::string> fwd = args;
    for (const std::string& pos : p.positionals()) {
      for (std::size_t i = fwd.size(); i-- > 0;) {
        if (fwd[i] == pos && (i == 0 || fwd[i - 1].rfind("--", 0) != 0 ||
                              fwd[i - 1].find('=') != std::string::npos)) {
          fwd.erase(fwd.begin() + static_cast<std::ptrdiff_t>(i));
          fwd.push_back("--result");
          fwd.push_back(pos);
          break;
        }
      }
    }
    return run_score_emg(fwd);
  }
  return score_imaging_cmd(args);
}

const CommandRegistration kRegister(Command{
    "score", "score a result against simulator ground truth (imaging, synergies, assemblies)",
    std::string(kImagingUsage) + "\n" + kScoreEmgUsage, score_cmd});

}  // namespace
}  // namespace rtnmf::cli
