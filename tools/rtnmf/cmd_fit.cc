// `rtnmf fit`: batch NMF of a data matrix, result to HDF5.
#include <chrono>
#include <cstdio>

#include "engine/io/h5.h"
#include "engine/io/matrix_io.h"
#include "engine/nmf/batch_nmf.h"
#include "engine/nmf/metrics.h"
#include "tools/rtnmf/command.h"

namespace rtnmf::cli {
namespace {

const char* const kFitUsage = R"(usage: rtnmf fit INPUT --rank K --out RESULT.h5 [options]

Batch non-negative matrix factorisation X ~ W H (W, H >= 0).

INPUT      data.csv | data.tsv (optional header row of names) | data.npy | file.h5:/dataset
           Orientation: rows are FEATURES (muscles, pixels, channels) and columns are SAMPLES
           (time points, trials). If your file has one sample per row (e.g. time x muscles),
           pass --transpose. Negative, NaN, infinite or empty input is an error naming the
           row and column (1-based, as stored in the file).

options
  --rank K                 number of components (required)
  --loss frobenius|kl|beta loss (default frobenius: accelerated HALS; kl/beta: multiplicative)
  --beta B                 beta for --loss beta (0 Itakura-Saito, 1 KL, 2 Frobenius)
  --l1-w X --l2-w X        L1 / L2 penalty on W (default 0)
  --l1-h X --l2-h X        L1 / L2 penalty on H (default 0)
  --init nndsvd|nndsvda|random|FILE.h5
                           initialisation (default nndsvda); FILE.h5 warm-starts from the W
                           (and H, if present and of the right shape) of an earlier result
  --seed S                 seed for random init and randomized SVD (default 0)
  --max-iter N             iteration cap (default 200)
  --tol T                  stop when the relative objective change is below T (default 1e-4)
  --normalize l1|l2|none   scale W's columns to unit norm, H rescaled (default l2)
  --threads N              threads for the large products (default 2)
  --compress auto|on|off   frobenius only: first fit X projected on its leading range
                           (randomised, rank K + 10; products cost K + 10 rows instead of
                           all of X), then exact iterations on X until --tol holds, so the
                           reported error is the real one. auto (default): only with
                           --init nndsvd|nndsvda, for a large X (rows x cols >= 2^24) with
                           K + 10 <= min(rows, cols) / 8 that is not a short X (<= 2048 rows)
                           with K <= 40
  --transpose              transpose INPUT after reading (rows = samples in the file)
  --out RESULT.h5          output: /W (features x K), /H (K x samples), /objective (initial
                           point, [end of the compressed phase,] then each exact iteration),
                           /compressed_objective (when compressed), parameters and fit
                           statistics as attributes of /
)";

int run_fit(const std::vector<std::string>& args) {
  ArgParser p(args, {"transpose"});
  p.check_known({"rank", "loss", "beta", "l1-w", "l2-w", "l1-h", "l2-h", "init", "seed",
                 "max-iter", "tol", "normalize", "threads", "compress", "transpose", "out"});
  if (p.positionals().size() != 1) throw UsageError("expected exactly one INPUT");
  const std::string input = p.positionals()[0];
  if (!p.has("rank")) throw UsageError("option --rank is required");
  if (!p.has("out")) throw UsageError("option --out is required");
  const std::string out_path = p.get("out");

  nmf::BatchNmfOptions o;
  o.rank = p.get_int("rank", 0);
  if (o.rank < 1) throw UsageError("option --rank must be at least 1");
  try {
    o.loss = nmf::parse_loss(p.get("loss", "frobenius"));
    o.normalize = nmf::parse_normalization(p.get("normalize", "l2"));
    o.compress = nmf::parse_compression(p.get("compress", "auto"));
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  o.beta = static_cast<float>(p.get_double("beta", o.loss == nmf::NmfLoss::kBeta ? 2.0 : 2.0));
  o.l1_w = static_cast<float>(p.get_double("l1-w", 0));
  o.l2_w = static_cast<float>(p.get_double("l2-w", 0));
  o.l1_h = static_cast<float>(p.get_double("l1-h", 0));
  o.l2_h = static_cast<float>(p.get_double("l2-h", 0));
  o.seed = static_cast<std::uint64_t>(p.get_int("seed", 0));
  o.max_iter = static_cast<int>(p.get_int("max-iter", 200));
  o.tol = p.get_double("tol", 1e-4);
  o.threads = static_cast<int>(p.get_int("threads", 2));
  if (o.threads < 1) throw UsageError("option --threads must be at least 1");
  const bool transpose = p.has("transpose");

  io::LoadedMatrix data = io::read_matrix(input);
  Eigen::MatrixXf x = transpose ? Eigen::MatrixXf(data.values.transpose()) : data.values;

  const std::string init = p.get("init", "nndsvda");
  Eigen::MatrixXf w0, h0;
  const Eigen::MatrixXf* w0p = nullptr;
  const Eigen::MatrixXf* h0p = nullptr;
  if (init.size() > 3 && (init.ends_with(".h5") || init.ends_with(".hdf5"))) {
    io::h5::File f = io::h5::File::open(init);
    if (!f.is_dataset("/W")) throw std::runtime_error(init + ": no /W to warm-start from");
    w0 = f.read_matrix<float>("/W");
    if (w0.rows() != x.rows() || w0.cols() != o.rank)
      throw std::runtime_error(init + ": /W is " + std::to_string(w0.rows()) + "x" +
                               std::to_string(w0.cols()) + ", expected " +
                               std::to_string(x.rows()) + "x" + std::to_string(o.rank));
    w0p = &w0;
    if (f.is_dataset("/H")) {
      h0 = f.read_matrix<float>("/H");
      if (h0.rows() == o.rank && h0.cols() == x.cols()) h0p = &h0;
    }
    o.init = nmf::NmfInit::kGiven;
  } else {
    try {
      o.init = nmf::parse_init(init);
    } catch (const std::invalid_argument& e) {
      throw UsageError(e.what());
    }
  }

  try {
    nmf::uses_compression(x.rows(), x.cols(), o);  // --compress on where it cannot run
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("option --compress: ") + e.what());
  }
  const auto t0 = std::chrono::steady_clock::now();
  nmf::NmfResult r = nmf::fit_nmf(x, o, w0p, h0p);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double v = nmf::vaf(x, r.w, r.h);
  const double r2 = nmf::r_squared(x, r.w, r.h);

  io::h5::File f = io::h5::File::create(out_path);
  f.write_matrix("/W", r.w);
  f.write_matrix("/H", r.h);
  f.write<double>("/objective", r.objective, {r.objective.size()});
  if (!r.compressed_objective.empty())
    f.write<double>("/compressed_objective", r.compressed_objective,
                    {r.compressed_objective.size()});
  f.set_attr("/", "tool", "rtnmf fit");
  f.set_attr("/", "input", input);
  f.set_attr("/", "transpose", std::int64_t{transpose});
  f.set_attr("/", "orientation", "W: features x K, H: K x samples");
  f.set_attr("/", "rank", static_cast<std::int64_t>(o.rank));
  f.set_attr("/", "loss", nmf::to_string(o.loss));
  f.set_attr("/", "beta", static_cast<double>(o.loss == nmf::NmfLoss::kKullbackLeibler ? 1.f
                                                                                       : o.beta));
  f.set_attr("/", "init", o.init == nmf::NmfInit::kGiven ? "file:" + init : nmf::to_string(o.init));
  f.set_attr("/", "seed", static_cast<std::int64_t>(o.seed));
  f.set_attr("/", "max_iter", static_cast<std::int64_t>(o.max_iter));
  f.set_attr("/", "tol", o.tol);
  f.set_attr("/", "l1_w", static_cast<double>(o.l1_w));
  f.set_attr("/", "l2_w", static_cast<double>(o.l2_w));
  f.set_attr("/", "l1_h", static_cast<double>(o.l1_h));
  f.set_attr("/", "l2_h", static_cast<double>(o.l2_h));
  f.set_attr("/", "normalize", nmf::to_string(o.normalize));
  f.set_attr("/", "threads", static_cast<std::int64_t>(o.threads));
  f.set_attr("/", "compress", nmf::to_string(o.compress));
  f.set_attr("/", "compressed_iterations", static_cast<std::int64_t>(r.compressed_iterations));
  f.set_attr("/", "iterations", static_cast<std::int64_t>(r.iterations));
  f.set_attr("/", "converged", std::int64_t{r.converged});
  f.set_attr("/", "relative_error", r.relative_error);
  f.set_attr("/", "vaf", v);
  f.set_attr("/", "r_squared", r2);
  f.set_attr("/", "seconds", seconds);
  if (!data.column_names.empty()) {
    std::string names;
    for (size_t i = 0; i < data.column_names.size(); ++i)
      names += (i ? "\n" : "") + data.column_names[i];
    f.set_attr("/", transpose ? "feature_names" : "sample_names", names);
  }
  std::printf("rtnmf fit: %lld x %lld, rank %lld, %s: relative error %.6f, VAF %.4f, R2 %.4f, "
              "%s%d iterations%s, %.3f s -> %s\n",
              static_cast<long long>(x.rows()), static_cast<long long>(x.cols()),
              static_cast<long long>(o.rank), nmf::to_string(o.loss).c_str(), r.relative_error,
              v, r2,
              r.compressed_iterations > 0
                  ? (std::to_string(r.compressed_iterations) + " compressed + ").c_str()
                  : "",
              r.iterations, r.converged ? " (converged)" : " (iteration cap)", seconds,
              out_path.c_str());
  return 0;
}

CommandRegistration kFit(Command{"fit", "batch NMF of a matrix (CSV, .npy, HDF5) -> RESULT.h5",
                                 kFitUsage, run_fit});

}  // namespace
}  // namespace rtnmf::cli
