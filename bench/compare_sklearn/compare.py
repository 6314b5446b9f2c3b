#!/usr/bin/python3
"""rtnmf against scikit-learn on the same seeded data: wall time and ||X - WH|| / ||X||.

Run with Debian's interpreter (python3-sklearn, and libopenblas0-pthread so numpy uses OpenBLAS):

    /usr/bin/python3 bench/compare_sklearn/compare.py --driver build-nmf/bench/bm_nmf_compare_driver
    /usr/bin/python3 bench/compare_sklearn/compare.py --quick     # skips the 65,536 x 2,000 case
    /usr/bin/python3 bench/compare_sklearn/compare.py --only 2 --tasks online  # one row, ~1 min

Cases (features x samples, rank): 512 x 20,000 (K 20); 64 x 200,000 (K 6); 65,536 x 2,000 with a
sparse W (K 100, localised 12 x 12 footprints on a 256 x 256 image). X = W H + Gaussian noise
(10 % of the RMS), clipped at 0. scikit-learn factorises samples x features, so it gets X.T (the
same matrix; the error is the same number).

Rows of the table
  batch      sklearn NMF(solver='cd', init=nndsvda, tol=1e-4, max_iter=200) vs rtnmf fit_nmf
             (accelerated HALS, nndsvda, tol 1e-4, max_iter 200, 2 threads, float32; one fused
             pass over X per iteration when M <= 2048 and K <= 40; on the 65,536 x 2,000 case
             (compress=auto) first HALS on X projected on its leading range (rank K+10, from the
             NNDSVDa randomised SVD; Erichson et al. 2018), then exact HALS iterations on X until
             the tolerance holds, so the reported error is the exact one). Time includes init
             and input checks.
  online     sklearn MiniBatchNMF(batch_size=1024, init=nndsvda, tol=1e-4, max_iter=200; 10 on
             the 65,536 x 2,000 case, --minibatch-large-max-iter) vs rtnmf OnlineNmf (Mairal
             et al., mini-batches of 1024, one pass, 2 threads above parallel_min_work,
             prune_w 0.1). rtnmf's start (initialize_from_data) on the first n0 = min(4K, N/10)
             samples, clamp(N/n0, 10, 30) HALS rounds (30 on 4K for K 20 and K 6, 10 on 200 for
             K 100). Where the first round gives footprint-like columns, W is pruned (entries
             below a tenth of their column's largest dropped) and handled as sparse; otherwise
             the batch HALS start (seeded random W, one sweep per factor) and a dense W. The
             start's statistics seed the online model; the other samples stream once. Time
             includes the start. Error: H recomputed for all samples with the final W on both
             sides (not timed).
  1-sample   activations of one sample with the planted W: sklearn NMF.transform on one row
             (components_ set to the planted W) vs rtnmf NnlsSolver::solve, cold start (and
             warm start from the previous sample, the streaming case). Cold: the fastest
             sample on both sides (rtnmf: each sample the mean of repeated solves); warm: mean.
The rtnmf side runs in a separate process (bm_nmf_compare_driver) on .npy files in a temp dir.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np


def blas_info():
    lines = []
    try:
        from threadpoolctl import threadpool_info
        for pool in threadpool_info():
            lines.append("%s %s (%s, %d threads): %s" % (
                pool.get("internal_api"), pool.get("version"), pool.get("threading_layer", "?"),
                pool.get("num_threads", 0), pool.get("filepath")))
    except Exception as e:  # threadpoolctl missing: fall back to numpy's build config
        lines.append("threadpoolctl unavailable (%s)" % e)
    return lines


def make_case(name, features, samples, k, seed, sparse_w):
    rng = np.random.default_rng(seed)
    if sparse_w:
        side = int(round(np.sqrt(features)))
        w = np.zeros((features, k), dtype=np.float64)
        foot = 12
        for j in range(k):
            r0, c0 = rng.integers(0, side - foot, size=2)
            img = np.zeros((side, side))
            img[r0:r0 + foot, c0:c0 + foot] = 0.5 + rng.random((foot, foot))
            w[:, j] = img.ravel()
    else:
        w = rng.random((features, k)) * (rng.random((features, k)) < 0.5)
    h = rng.random((k, samples)) * (rng.random((k, samples)) < 0.4)
    x = w @ h
    rms = np.sqrt(np.mean(x ** 2))
    x += 0.1 * rms * rng.standard_normal(x.shape)
    np.maximum(x, 0, out=x)
    return dict(name=name, x=x.astype(np.float32), w=w.astype(np.float32), k=k, sparse=sparse_w)


def rel_err(x, w, h):
    return float(np.linalg.norm(x - w @ h) / np.linalg.norm(x))


def it_note(ours):
    """Iterations of rtnmf's batch fit: exact ones, plus those of the compressed phase if any."""
    c = ours.get("compressed_iterations", 0)
    return ("%d compressed + %d exact it" % (c, ours["iterations"]) if c
            else "%d it" % ours["iterations"])


def run_driver(driver, args):
    out = subprocess.run([driver] + [str(a) for a in args], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--driver", default=None, help="path to bm_nmf_compare_driver")
    ap.add_argument("--quick", action="store_true", help="skip the 65,536 x 2,000 case")
    ap.add_argument("--skip-sklearn-batch-large", action="store_true",
                    help="do not run sklearn NMF(cd) on 65,536 x 2,000 (~3 min); still runs rtnmf")
    ap.add_argument("--minibatch-large-max-iter", type=int, default=10,
                    help="max_iter (epochs) for sklearn MiniBatchNMF on 65,536 x 2,000 (default 10)")
    ap.add_argument("--rtnmf-only", action="store_true", help="skip every scikit-learn run")
    ap.add_argument("--only", default=None, help="comma list of case indices to run (0,1,2)")
    ap.add_argument("--tasks", default="batch,online,1-sample",
                    help="comma list of rows to run: batch, online, 1-sample (default all)")
    args = ap.parse_args()

    driver = args.driver
    if driver is None:
        here = os.path.dirname(os.path.abspath(__file__))
        root = os.path.dirname(os.path.dirname(here))
        for cand in ("build-nmf", "build", "build-release"):
            p = os.path.join(root, cand, "bench", "bm_nmf_compare_driver")
            if os.path.exists(p):
                driver = p
                break
    if driver is None or not os.path.exists(driver):
        sys.exit("bm_nmf_compare_driver not found: build it (cmake --build BUILD --target "
                 "bm_nmf_compare_driver) and pass --driver PATH")

    import sklearn
    from sklearn.decomposition import NMF, MiniBatchNMF
    print("python %s, numpy %s, scikit-learn %s" % (sys.version.split()[0], np.__version__,
                                                    sklearn.__version__))
    for line in blas_info():
        print("BLAS: " + line)
    print("rtnmf driver: %s" % driver)
    sys.stdout.flush()

    cases = [("512x20000 K20", 512, 20000, 20, 1, False),
             ("64x200000 K6", 64, 200000, 6, 2, False),
             ("65536x2000 K100 sparse W", 65536, 2000, 100, 3, True)]
    if args.quick:
        cases = cases[:2]
    if args.only:
        keep = [int(i) for i in args.only.split(",")]
        cases = [c for i, c in enumerate(cases) if i in keep]

    tasks = set(args.tasks.split(","))
    rows = []
    with tempfile.TemporaryDirectory(prefix="rtnmf_cmp_") as tmp:
        for (name, m, n, k, seed, sparse) in cases:
            c = make_case(name, m, n, k, seed, sparse)
            x, w = c["x"], c["w"]
            xp = os.path.join(tmp, "x.npy")
            wp = os.path.join(tmp, "w.npy")
            np.save(xp, x)
            np.save(wp, w)
            xs = x.T  # samples x features for scikit-learn
            print("\n== %s" % name)
            sys.stdout.flush()

            # ---- batch ----
            if "batch" in tasks:
                ours = run_driver(driver, ["batch", xp, k, "--threads", 2, "--max-iter", 200,
                                           "--tol", "1e-4"])
                rows.append((name, "batch", "rtnmf HALS", ours["seconds"], ours["cpu_seconds"],
                             ours["rel_err"], it_note(ours)))
                print("rtnmf batch: %.3f s (cpu %.3f s) err %.4f (%s)" % (
                    ours["seconds"], ours["cpu_seconds"], ours["rel_err"], it_note(ours)))
                sys.stdout.flush()
                model = None
                if not args.rtnmf_only and not (sparse and args.skip_sklearn_batch_large):
                    model = NMF(n_components=k, solver="cd", init="nndsvda", tol=1e-4, max_iter=200,
                                random_state=0)
                    t0, c0 = time.perf_counter(), time.process_time()
                    hs = model.fit_transform(xs)
                    ts, cs = time.perf_counter() - t0, time.process_time() - c0
                    es = rel_err(xs, hs, model.components_)
                    rows.append((name, "batch", "sklearn NMF(cd)", ts, cs, es,
                                 "%d it" % model.n_iter_))
                    print("sklearn NMF(cd): %.3f s (cpu %.3f s) err %.4f (%d it)" % (ts, cs, es,
                                                                                 model.n_iter_))
                    sys.stdout.flush()

            # ---- online ----
            if "online" in tasks:
                ours = run_driver(driver, ["online", xp, k, "--batch", 1024, "--passes", 1,
                                           "--threads", 2])
                rows.append((name, "online", "rtnmf OnlineNmf", ours["seconds"],
                             ours["cpu_seconds"],
                             ours["rel_err"], "1 pass, start %d it on %d" % (
                                 ours["init_iter"], ours["init_block"])))
                print("rtnmf online: %.3f s (cpu %.3f s) err %.4f" % (ours["seconds"],
                                                                      ours["cpu_seconds"],
                                                                      ours["rel_err"]))
                sys.stdout.flush()
                if not args.rtnmf_only:
                    # The large case would run for hours at max_iter=200 (each epoch is two
                    # mini-batches of 65,536 x 1,024 at K 100, many MU steps each): bounded, and the
                    # bound is printed in the note column.
                    mb_iter = args.minibatch_large_max_iter if sparse else 200
                    mb = MiniBatchNMF(n_components=k, batch_size=1024, init="nndsvda",
                                      random_state=0, tol=1e-4, max_iter=mb_iter)
                    t0, c0 = time.perf_counter(), time.process_time()
                    mb.fit(xs)
                    ts, cs = time.perf_counter() - t0, time.process_time() - c0
                    hs = mb.transform(xs)
                    es = rel_err(xs, hs, mb.components_)
                    rows.append((name, "online", "sklearn MiniBatchNMF", ts, cs, es,
                                 "%d ep (max_iter %d)" % (mb.n_iter_, mb_iter)))
                    print("sklearn MiniBatchNMF: %.3f s (cpu %.3f s) err %.4f" % (ts, cs, es))
                    sys.stdout.flush()

            # ---- single-sample activations with the planted W ----
            if "1-sample" in tasks:
                samples = 5 if sparse else 20
                ours = run_driver(driver, ["transform", xp, wp, "--samples", samples, "--reps",
                                           5 if sparse else 50] + (["--sparse"] if sparse else []))
                rows.append((name, "1-sample", "rtnmf NNLS cold (%s)" % ours["method"],
                             ours["seconds_min"], float("nan"), ours["rel_err"],
                             "min of %d (mean %s)" % (samples,
                                                      "%.2f us" % (ours["seconds"] * 1e6))))
                rows.append((name, "1-sample", "rtnmf NNLS warm (%s)" % ours["method"],
                             ours["seconds_warm"], float("nan"), float("nan"), ""))
                print("1-sample rtnmf: %.2f us (warm %.2f us) err %.4f" % (
                    ours["seconds"] * 1e6, ours["seconds_warm"] * 1e6, ours["rel_err"]))
                if args.rtnmf_only:
                    continue
                tm = NMF(n_components=k, solver="cd", init="custom", tol=1e-4, max_iter=1)
                # A fitted model with the planted W: one iteration on a tiny slice to set the fitted
                # attributes, then components_ := planted W and the default 200 iterations back.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tm.fit(xs[:8].astype(np.float64), W=np.full((8, k), 0.1),
                           H=w.T.astype(np.float64) + 1e-3)
                tm.components_ = w.T.astype(np.float64)
                tm.max_iter = 200
                errs, times = [], []
                for j in range(samples):
                    xj = xs[j:j + 1].astype(np.float64)
                    t0 = time.perf_counter()
                    hj = tm.transform(xj)
                    times.append(time.perf_counter() - t0)
                    errs.append(rel_err(xj, hj, tm.components_))
                rows.append((name, "1-sample", "sklearn transform", float(np.min(times)),
                             float("nan"), float(np.mean(errs)), "min of %d" % samples))
                print("1-sample sklearn: %.3f ms (min %.3f ms) err %.4f" % (
                    np.mean(times) * 1e3, np.min(times) * 1e3, np.mean(errs)))
                sys.stdout.flush()

    def fmt(t):
        if t != t:
            return ""
        return "%.3f s" % t if t >= 0.1 else ("%.3f ms" % (t * 1e3) if t >= 1e-4 else
                                              "%.2f us" % (t * 1e6))

    print("\nwall = elapsed time; cpu = process CPU time (all threads), steadier than wall on a"
          " shared machine.\nspeedup = sklearn / rtnmf on wall time, and on cpu time when both"
          " sides have it.")
    try:
        print("load average at the end: %.2f %.2f %.2f" % os.getloadavg())
    except OSError:
        pass
    print("%-26s %-9s %-26s %11s %11s %9s %17s  %s" % ("case", "task", "method", "wall", "cpu",
                                                     "rel.err", "speedup wall/cpu", "note"))
    for (case, task, method, t, c, e, note) in rows:
        base = [r for r in rows if r[0] == case and r[1] == task and r[2].startswith("sklearn")]
        speed = ""
        if base and not method.startswith("sklearn"):
            b = base[0]
            speed = "%.1fx" % (b[3] / t)
            if c == c and b[4] == b[4]:
                speed += " / %.1fx" % (b[4] / c)
        es = "" if e != e else "%.4f" % e
        print("%-26s %-9s %-26s %11s %11s %9s %17s  %s" % (case, task, method, fmt(t), fmt(c), es,
                                                         speed, note))

if __name__ == "__main__":
    main()
