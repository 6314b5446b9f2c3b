#include "tools/rtnmf/score_emg.h"

#include <cstdio>

#include "engine/io/h5.h"
#include "engine/sim/score_emg.h"
#include "tools/rtnmf/command.h"

namespace rtnmf::cli {

const char* const kScoreEmgUsage =
    R"(usage: rtnmf score emg --truth TRUTH.h5 --result RESULT.h5 [options]

Matches estimated synergies (or assemblies) to the planted ones one-to-one by cosine similarity
(Hungarian) and correlates the matched activations (best lag up to --max-lag envelope samples).
Prints JSON.

  --truth FILE        from `rtnmf simulate emg` (/truth/synergies, /truth/activations)
  --result FILE       a result file: /synergies (channels x K) and /activations (K x T) as written
                      by the emg-synergies / assemblies pipelines; `rtnmf fit` results (W, H) work
                      with --synergies /W --activations /H
  --synergies PATH    dataset of the estimated synergies (default /synergies)
  --activations PATH  dataset of the estimated activations (default /activations; "" to skip)
  --max-lag N         (default 20)
  --skip N            ignore the first N activation samples of both (e.g. the calibration window,
                      during which a streaming result holds zeros; default 0)
  --min-cosine C      exit with status 3 when the mean matched cosine is below C
)";

int run_score_emg(const std::vector<std::string>& args) {
  ArgParser p(args, {});
  p.check_known({"truth", "result", "synergies", "activations", "max-lag", "min-cosine", "skip"});
  std::vector<std::string> pos = p.positionals();
  std::string truth_path = p.get("truth"), result_path = p.get("result");
  // Also accept positionals: TRUTH RESULT.
  if (truth_path.empty() && !pos.empty()) truth_path = pos[0];
  if (result_path.empty() && pos.size() > 1) result_path = pos[1];
  if (truth_path.empty() || result_path.empty())
    throw UsageError("--truth and --result are required");
  io::h5::File truth = io::h5::File::open(truth_path);
  io::h5::File result = io::h5::File::open(result_path);
  Eigen::MatrixXf w_true = truth.read_matrix<float>("/truth/synergies");
  Eigen::MatrixXf h_true;
  if (truth.exists("/truth/activations")) h_true = truth.read_matrix<float>("/truth/activations");
  const std::string w_path = p.get("synergies", "/synergies");
  const std::string h_path = p.get("activations", "/activations");
  Eigen::MatrixXf w_est = result.read_matrix<float>(w_path);
  Eigen::MatrixXf h_est;
  if (!h_path.empty() && result.exists(h_path)) h_est = result.read_matrix<float>(h_path);
  if (w_est.rows() != w_true.rows() && w_est.cols() == w_true.rows()) w_est.transposeInPlace();
  if (h_est.size() > 0 && h_est.rows() != w_est.cols() && h_est.cols() == w_est.cols()) {
    h_est.transposeInPlace();
  }
  if (w_est.rows() != w_true.rows()) {
    throw std::runtime_error(result.where(w_path) + ": " + std::to_string(w_est.rows()) + " x " +
                             std::to_string(w_est.cols()) + " does not match the truth's " +
                             std::to_string(w_true.rows()) + " channels");
  }
  const int max_lag = static_cast<int>(p.get_int("max-lag", 20));
  const long long skip = p.get_int("skip", 0);
  if (skip < 0) throw UsageError("--skip must be >= 0");
  if (skip > 0) {
    if (h_true.cols() > skip) h_true = h_true.rightCols(h_true.cols() - skip).eval();
    if (h_est.cols() > skip) h_est = h_est.rightCols(h_est.cols() - skip).eval();
  }
  sim::SynergyScore s = sim::score_synergies(w_true, w_est, h_true, h_est, max_lag);
  std::printf("%s\n", sim::score_json(s).c_str());
  if (p.has("min-cosine") && s.mean_cosine < p.get_double("min-cosine", 0)) return 3;
  return 0;
}

}  // namespace rtnmf::cli
