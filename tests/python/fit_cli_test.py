#!/usr/bin/python3
"""`rtnmf fit` and `rtnmf rank` from the command line: planted factors recovered into HDF5, and
bad input refused with the exact row and column. Usage: fit_cli_test.py RTNMF_BINARY"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np


def run(args):
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def main():
    rtnmf = sys.argv[1]
    d = tempfile.mkdtemp(prefix="rtnmf-fit-")
    atexit.register(shutil.rmtree, d, True)
    rng = np.random.default_rng(3)
    w = rng.random((30, 4)) ** 3          # sparse-ish, distinct columns
    h = rng.random((4, 400))
    np.save(os.path.join(d, "x.npy"), (w @ h).astype(np.float32))
    out = os.path.join(d, "fit.h5")
    r = run([rtnmf, "fit", os.path.join(d, "x.npy"), "--rank", "4", "--seed", "2",
             "--max-iter", "2000", "--out", out])
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        W, H = f["W"][()], f["H"][()]
        assert W.shape == (30, 4) and H.shape == (4, 400), (W.shape, H.shape)
        obj = f["objective"][()]
        # Non-increasing up to float32 rounding: near the noise-free optimum the objective is
        # ~1e-5 of its start and jitters at that level.
        assert np.all(np.diff(obj) <= 1e-5 * obj[0]), "objective increased"
    # Planted columns recovered (cosine after the best matching, greedy is enough here).
    wn = w / np.linalg.norm(w, axis=0)
    Wn = W / np.maximum(np.linalg.norm(W, axis=0), 1e-12)
    sim = wn.T @ Wn
    best = sim.max(axis=1)
    assert best.min() > 0.99, "planted factors not recovered: %s" % best

    # Bad input: a negative cell, named by row and column.
    bad = os.path.join(d, "bad.csv")
    with open(bad, "w") as f:
        f.write("a,b,c\n1,2,3\n4,-5,6\n")
    r = run([rtnmf, "fit", bad, "--rank", "1", "--out", os.path.join(d, "bad.h5")])
    assert r.returncode == 1, r.returncode
    assert r.stderr.strip() == ("rtnmf fit: error: %s: negative value -5 at row 2, column 2 "
                                "(1-based)" % bad), r.stderr

    # Rank selection writes its table.
    rk = os.path.join(d, "rank.h5")
    r = run([rtnmf, "rank", os.path.join(d, "x.npy"), "--ranks", "2:5", "--runs", "4",
             "--out", rk])
    assert r.returncode == 0, r.stderr
    with h5py.File(rk, "r") as f:
        assert len(f.keys()) > 0
    print("rtnmf fit/rank CLI: planted factors recovered, bad input named: OK")


if __name__ == "__main__":
    main()
