// `rtnmf rank`: rank selection table (error, VAF, consensus stability) over a range of K.
#include <cstdio>

#include "engine/io/h5.h"
#include "engine/io/matrix_io.h"
#include "engine/nmf/rank_selection.h"
#include "tools/rtnmf/command.h"

namespace rtnmf::cli {
namespace {

const char* const kRankUsage = R"(usage: rtnmf rank INPUT --ranks MIN:MAX --out RANK.h5 [options]

For every rank K in MIN..MAX, fits NMF --runs times from seeded random starts and reports the
best run's relative error, VAF and R2, and the stability of the clustering of samples (argmax
of H per sample) across runs: Brunet et al.'s consensus matrix, its cophenetic correlation and
Kim & Park's dispersion. Recommends
  - by VAF (muscle synergies): the smallest K with VAF >= --vaf-threshold;
  - by cophenetic (clustering-style data): the largest K whose stability, cophenetic x
    dispersion, is within 0.01 of the best K's (Brunet's "last stable K"; the dispersion falls
    above the true rank even where the cophenetic coefficient stays near 1).

INPUT      data.csv | data.tsv | data.npy | file.h5:/dataset. Rows are FEATURES, columns are
           SAMPLES; pass --transpose when the file has one sample per row.

options
  --ranks MIN:MAX          range of K (default 2:10)
  --runs N                 seeded runs per K (default 30)
  --vaf-threshold V        VAF threshold for the synergy rule (default 0.9)
  --loss frobenius|kl      loss (default frobenius)
  --max-iter N --tol T     per run (defaults 200, 1e-4)
  --seed S                 base seed (default 0)
  --threads N              runs in parallel (default 2)
  --keep-consensus         also write each K's consensus matrix (samples x samples)
  --transpose              transpose INPUT after reading
  --out RANK.h5            output: /rank, /relative_error, /vaf, /r_squared, /cophenetic,
                           /dispersion (one entry per K), recommendations as attributes of /
)";

int run_rank(const std::vector<std::string>& args) {
  ArgParser p(args, {"transpose", "keep-consensus"});
  p.check_known({"ranks", "runs", "vaf-threshold", "loss", "max-iter", "tol", "seed", "threads",
                 "keep-consensus", "transpose", "out"});
  if (p.positionals().size() != 1) throw UsageError("expected exactly one INPUT");
  if (!p.has("out")) throw UsageError("option --out is required");
  const std::string input = p.positionals()[0], out_path = p.get("out");
  nmf::RankSelectionOptions o;
  const std::string ranks = p.get("ranks", "2:10");
  const size_t colon = ranks.find(':');
  try {
    if (colon == std::string::npos) throw std::invalid_argument(ranks);
    size_t a = 0, b = 0;
    o.min_rank = std::stoll(ranks.substr(0, colon), &a);
    o.max_rank = std::stoll(ranks.substr(colon + 1), &b);
    if (a != colon || b != ranks.size() - colon - 1) throw std::invalid_argument(ranks);
  } catch (const std::exception&) {
    throw UsageError("option --ranks: '" + ranks + "' is not MIN:MAX");
  }
  if (o.min_rank < 1 || o.max_rank < o.min_rank)
    throw UsageError("option --ranks: need 1 <= MIN <= MAX");
  o.runs = static_cast<int>(p.get_int("runs", 30));
  if (o.runs < 1) throw UsageError("option --runs must be at least 1");
  o.vaf_threshold = p.get_double("vaf-threshold", 0.9);
  o.seed = static_cast<std::uint64_t>(p.get_int("seed", 0));
  o.keep_consensus = p.has("keep-consensus");
  try {
    o.nmf.loss = nmf::parse_loss(p.get("loss", "frobenius"));
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  o.nmf.max_iter = static_cast<int>(p.get_int("max-iter", 200));
  o.nmf.tol = p.get_double("tol", 1e-4);
  o.nmf.threads = static_cast<int>(p.get_int("threads", 2));
  if (o.nmf.threads < 1) throw UsageError("option --threads must be at least 1");
  const bool transpose = p.has("transpose");

  io::LoadedMatrix data = io::read_matrix(input);
  Eigen::MatrixXf x = transpose ? Eigen::MatrixXf(data.values.transpose()) : data.values;
  std::printf("rtnmf rank: %lld features x %lld samples, K %lld..%lld, %d runs each\n",
              static_cast<long long>(x.rows()), static_cast<long long>(x.cols()),
              static_cast<long long>(o.min_rank), static_cast<long long>(o.max_rank), o.runs);
  std::printf("%4s  %10s  %8s  %8s  %10s  %10s\n", "K", "rel.error", "VAF", "R2", "cophenetic",
              "dispersion");
  std::fflush(stdout);
  nmf::RankSelection s = nmf::select_rank(x, o, [](const nmf::RankRow& r) {
    std::printf("%4lld  %10.6f  %8.4f  %8.4f  %10.4f  %10.4f\n", static_cast<long long>(r.rank),
                r.relative_error, r.vaf, r.r_squared, r.cophenetic, r.dispersion);
    std::fflush(stdout);
  });
  if (s.recommended_by_vaf > 0) {
    std::printf("recommended by VAF >= %.3f: K = %lld\n", o.vaf_threshold,
                static_cast<long long>(s.recommended_by_vaf));
  } else {
    std::printf("recommended by VAF >= %.3f: none in range (raise --ranks MAX)\n",
                o.vaf_threshold);
  }
  std::printf("recommended by cophenetic: K = %lld\n",
              static_cast<long long>(s.recommended_by_cophenetic));

  io::h5::File f = io::h5::File::create(out_path);
  std::vector<std::int64_t> k;
  std::vector<double> err, vaf, r2, coph, disp;
  for (const auto& r : s.rows) {
    k.push_back(r.rank);
    err.push_back(r.relative_error);
    vaf.push_back(r.vaf);
    r2.push_back(r.r_squared);
    coph.push_back(r.cophenetic);
    disp.push_back(r.dispersion);
  }
  const io::h5::Dims d{k.size()};
  f.write<std::int64_t>("/rank", k, d);
  f.write<double>("/relative_error", err, d);
  f.write<double>("/vaf", vaf, d);
  f.write<double>("/r_squared", r2, d);
  f.write<double>("/cophenetic", coph, d);
  f.write<double>("/dispersion", disp, d);
  for (size_t i = 0; i < s.consensus.size(); ++i)
    f.write_matrix("/consensus/K" + std::to_string(k[i]), s.consensus[i]);
  f.set_attr("/", "tool", "rtnmf rank");
  f.set_attr("/", "input", input);
  f.set_attr("/", "transpose", std::int64_t{transpose});
  f.set_attr("/", "runs", static_cast<std::int64_t>(o.runs));
  f.set_attr("/", "seed", static_cast<std::int64_t>(o.seed));
  f.set_attr("/", "loss", nmf::to_string(o.nmf.loss));
  f.set_attr("/", "max_iter", static_cast<std::int64_t>(o.nmf.max_iter));
  f.set_attr("/", "tol", o.nmf.tol);
  f.set_attr("/", "vaf_threshold", o.vaf_threshold);
  f.set_attr("/", "recommended_by_vaf", static_cast<std::int64_t>(s.recommended_by_vaf));
  f.set_attr("/", "recommended_by_cophenetic",
             static_cast<std::int64_t>(s.recommended_by_cophenetic));
  std::printf("wrote %s\n", out_path.c_str());
  return 0;
}

CommandRegistration kRank(Command{"rank",
                                  "choose the NMF rank: error, VAF, consensus stability per K",
                                  kRankUsage, run_rank});

}  // namespace
}  // namespace rtnmf::cli
