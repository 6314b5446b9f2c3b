// The rtnmf side of bench/compare_sklearn/compare.py (not a Google Benchmark: it has its own
// main). Reads .npy files written by the script, times only the computation, and prints one JSON
// object on stdout.
//
//   bm_nmf_compare_driver batch     X.npy K [--threads T] [--max-iter N] [--tol T] [--inner S] [--init nndsvd|nndsvda|random]
//                                   (prints exact and compressed-phase iteration counts)
//   bm_nmf_compare_driver online    X.npy K [--batch B] [--passes P] [--threads T]
//                                   [--init-block N] [--init-iter I] [--prune P]
//                                   [--min-work W] (OnlineNmfOptions::parallel_min_work)
//                                   [--nnls auto|hals|bpp] (activations solver)
//   bm_nmf_compare_driver transform X.npy W.npy [--sparse] [--samples S] [--reps R]
//
// X is features × samples (float32, C order), W features × K. Errors are ‖X − W H‖/‖X‖ with H
// recomputed for all samples against the final W (not timed), the same protocol the script uses
// for scikit-learn.
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstring>
#include <string>

#include "engine/io/matrix_io.h"
#include "engine/nmf/batch_nmf.h"
#include "engine/nmf/metrics.h"
#include "engine/nmf/nnls.h"
#include "engine/nmf/online_nmf.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// CPU seconds of the whole process (all threads): robust to other load on a shared machine.
double cpu_now() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

std::string opt(int argc, char** argv, const char* name, const char* def) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return def;
}

bool flag(int argc, char** argv, const char* name) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return true;
  return false;
}

int batch(int argc, char** argv) {
  Eigen::MatrixXf x = rtnmf::io::read_npy(argv[2]).values;
  rtnmf::nmf::BatchNmfOptions o;
  o.rank = std::stoi(argv[3]);
  o.threads = std::stoi(opt(argc, argv, "--threads", "2"));
  o.max_iter = std::stoi(opt(argc, argv, "--max-iter", "200"));
  o.tol = std::stod(opt(argc, argv, "--tol", "1e-4"));
  o.init = rtnmf::nmf::parse_init(opt(argc, argv, "--init", "nndsvda"));
  o.max_inner_sweeps = std::stoi(opt(argc, argv, "--inner", "0"));
  const auto t0 = Clock::now();
  const double c0 = cpu_now();
  rtnmf::nmf::NmfResult r = rtnmf::nmf::fit_nmf(x, o);
  const double s = seconds_since(t0), cpu = cpu_now() - c0;
  std::printf("{\"seconds\": %.6f, \"cpu_seconds\": %.6f, \"rel_err\": %.6f, \"iterations\": %d, "
              "\"compressed_iterations\": %d}\n",
              s, cpu, r.relative_error, r.iterations, r.compressed_iterations);
  return 0;
}

int online(int argc, char** argv) {
  Eigen::MatrixXf x = rtnmf::io::read_npy(argv[2]).values;
  const Eigen::Index k = std::stoi(argv[3]);
  const Eigen::Index b = std::stoi(opt(argc, argv, "--batch", "1024"));
  const int passes = std::stoi(opt(argc, argv, "--passes", "1"));
  const int threads = std::stoi(opt(argc, argv, "--threads", "2"));
  const auto t0 = Clock::now();
  const double c0 = cpu_now();
  // The start (OnlineNmf::initialize_from_data) on the first n0 samples, then the others stream
  // through in mini-batches of b. Its work (rounds × n0 samples) is bounded by one pass over the
  // data: n0 = min(4K, N/10), rounds = clamp(N/n0, 10, 30) — 30 rounds on 4K samples for the
  // small cases, 10 on 200 at N 2,000 (K 100), where 10 rounds on 400 took 1.4 of 2.3 s.
  // With prune_w (default 0.1 here) W's entries below a tenth of their column's largest are
  // dropped when the column stays footprint-like (≤ 25 % non-zero), and the start runs HALS
  // rounds that keep W sparse; where round 0 gives dense columns (synergies) it falls back to the
  // batch HALS start and nothing is pruned (see online_nmf.h).
  const Eigen::Index n0 = std::min<Eigen::Index>(
      x.cols(), std::stoll(opt(argc, argv, "--init-block",
                               std::to_string(std::max<Eigen::Index>(
                                   1, std::min<Eigen::Index>(4 * k, x.cols() / 10))).c_str())));
  const long auto_iter = std::clamp<long>(static_cast<long>(x.cols() / n0), 10, 30);
  const int init_iter =
      std::stoi(opt(argc, argv, "--init-iter", std::to_string(auto_iter).c_str()));
  rtnmf::nmf::OnlineNmfOptions oo;
  oo.activations.method = rtnmf::nmf::parse_nnls_method(opt(argc, argv, "--nnls", "auto").c_str());
  oo.activations.tol = 1e-3f;
  oo.threads = threads;
  oo.prune_w = std::stof(opt(argc, argv, "--prune", "0.1"));
  oo.parallel_min_work =
      std::stod(opt(argc, argv, "--min-work", std::to_string(oo.parallel_min_work).c_str()));
  rtnmf::nmf::OnlineNmf model(x.rows(), k, oo);
  const double start_err = model.initialize_from_data(x.leftCols(n0), init_iter, 0);
  const double init_s = seconds_since(t0), init_cpu = cpu_now() - c0;
  const double start_density = model.dictionary_density();
  Eigen::MatrixXf h = Eigen::MatrixXf::Zero(k, x.cols());
  for (int p = 0; p < passes; ++p) {
    for (Eigen::Index j = p == 0 ? n0 : 0; j < x.cols(); j += b) {
      const Eigen::Index n = std::min(b, x.cols() - j);
      model.partial_fit_batch(x.middleCols(j, n), h.middleCols(j, n));
    }
  }
  const double s = seconds_since(t0), cpu = cpu_now() - c0;
  std::fprintf(stderr,
               "online: init %.3f s (cpu %.3f s, err %.4f, W density %.4f), stream %.3f s (cpu "
               "%.3f s, W density %.4f, %s)\n",
               init_s, init_cpu, start_err, start_density, s - init_s, cpu - init_cpu,
               model.dictionary_density(), model.sparse_dictionary() ? "sparse" : "dense");
  Eigen::MatrixXf hall;
  rtnmf::nmf::solve_activations(x, model.dictionary(), hall, 0.f, 0.f, 100, 1e-4, threads);
  const double err = rtnmf::nmf::relative_error(x, model.dictionary(), hall);
  std::printf("{\"seconds\": %.6f, \"cpu_seconds\": %.6f, \"init_seconds\": %.6f, "
              "\"init_cpu_seconds\": %.6f, \"init_block\": %lld, \"init_iter\": %d, "
              "\"rel_err\": %.6f, \"samples\": %lld}\n",
              s, cpu, init_s, init_cpu, static_cast<long long>(n0), init_iter, err,
              static_cast<long long>(model.samples_seen()));
  return 0;
}

int transform(int argc, char** argv) {
  Eigen::MatrixXf x = rtnmf::io::read_npy(argv[2]).values;
  Eigen::MatrixXf w = rtnmf::io::read_npy(argv[3]).values;
  const bool sparse = flag(argc, argv, "--sparse");
  const int samples = std::stoi(opt(argc, argv, "--samples", "20"));
  const int reps = std::stoi(opt(argc, argv, "--reps", "50"));
  rtnmf::nmf::NnlsOptions o;
  o.method = rtnmf::nmf::NnlsMethod::kAuto;
  o.tol = 1e-4f;
  rtnmf::nmf::NnlsSolver solver(w.cols(), o);
  if (sparse) {
    Eigen::SparseMatrix<float> ws = w.sparseView();
    solver.set_dictionary(ws);
  } else {
    solver.set_dictionary(w);
  }
  Eigen::VectorXf h = Eigen::VectorXf::Zero(w.cols());
  double cold = 0, warm = 0, err = 0, cold_min = 1e30;
  for (int j = 0; j < samples; ++j) {
    const Eigen::VectorXf xj = x.col(j % x.cols());
    auto t0 = Clock::now();
    for (int r = 0; r < reps; ++r) solver.solve(xj, h, false);
    const double per = seconds_since(t0) / reps;
    cold += per;
    cold_min = std::min(cold_min, per);
    err += (xj - w * h).norm() / xj.norm();
  }
  // Warm: consecutive samples, each started from the previous sample's activations.
  h.setZero();
  auto t0 = Clock::now();
  for (int r = 0; r < reps; ++r)
    for (int j = 0; j < samples; ++j) solver.solve(x.col(j % x.cols()), h, true);
  warm = seconds_since(t0) / (reps * samples);
  // seconds_min: the fastest sample (each the mean of `reps` solves), the statistic the script
  // takes for scikit-learn (min over samples of one transform each).
  std::printf("{\"seconds\": %.9f, \"seconds_min\": %.9f, \"seconds_warm\": %.9f, "
              "\"rel_err\": %.6f, \"method\": \"%s\"}\n",
              cold / samples, cold_min, warm, err / samples,
              rtnmf::nmf::to_string(solver.resolved_method()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: %s batch|online X.npy K [options]\n       %s transform X.npy W.npy "
                 "[--sparse] [--samples S] [--reps R]\n",
                 argv[0], argv[0]);
    return 2;
  }
  try {
    const std::string mode = argv[1];
    if (mode == "batch") return batch(argc, argv);
    if (mode == "online") return online(argc, argv);
    if (mode == "transform") return transform(argc, argv);
    std::fprintf(stderr, "unknown mode '%s'\n", argv[1]);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
