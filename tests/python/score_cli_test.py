#!/usr/bin/python3
"""`rtnmf score` on a result file whose columns include removed components (empty footprints):
every true neuron is matched, and each pair names the result file's own column (the /footprints
column and /traces row), not its position among the non-empty ones. Usage: score_cli_test.py
RTNMF_BINARY"""
import atexit
import json
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
    d = tempfile.mkdtemp(prefix="rtnmf-score-")
    atexit.register(shutil.rmtree, d, True)
    movie, truth = os.path.join(d, "m.tif"), os.path.join(d, "t.h5")
    r = run([rtnmf, "simulate", "calcium", "--out", movie, "--truth", truth, "--height", "48",
             "--width", "48", "--frames", "200", "--neurons", "6", "--seed", "5"])
    assert r.returncode == 0, r.stderr
    with h5py.File(truth, "r") as f:
        shape = f["footprints/shape"][()]
        data, indices, indptr = (f["footprints/" + k][()] for k in ("data", "indices", "indptr"))
        traces, spikes = f["traces"][()], f["spikes"][()]
    pixels, k = int(shape[0]), int(shape[1])
    # The result: true neuron j in column slot[j], in reverse order, with empty columns (dead
    # components) at 0, 3 and the end.
    slots = [1, 2, 4, 5, 6, 7][:k][::-1]
    cols = max(slots) + 2
    r_data, r_idx, r_ptr = [], [], [0]
    r_traces = np.zeros((cols, traces.shape[1]), np.float32)
    r_spikes = np.zeros((cols, spikes.shape[1]), np.float32)
    owner = {s: j for j, s in enumerate(slots)}
    for c in range(cols):
        if c in owner:
            j = owner[c]
            r_data += list(data[indptr[j]:indptr[j + 1]])
            r_idx += list(indices[indptr[j]:indptr[j + 1]])
            r_traces[c] = traces[j]
            r_spikes[c] = spikes[j]
        r_ptr.append(len(r_data))
    result = os.path.join(d, "r.h5")
    with h5py.File(result, "w") as f:
        f["footprints/data"] = np.asarray(r_data, np.float32)
        f["footprints/indices"] = np.asarray(r_idx, np.int32)
        f["footprints/indptr"] = np.asarray(r_ptr, np.int64)
        f["footprints/shape"] = np.asarray([pixels, cols], np.int64)
        f["traces"] = r_traces
        f["spikes"] = r_spikes
    r = run([rtnmf, "score", "--truth", truth, result])
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["n_found"] == k and s["n_matched"] == k and s["f1"] == 1.0, s
    got = {p["truth"]: p["found"] for p in s["pairs"]}
    assert got == {j: slots[j] for j in range(k)}, (got, slots)
    for p in s["pairs"]:
        assert p["trace_correlation"] > 0.999, p
    print("score CLI: %d pairs name their result columns" % k)


if __name__ == "__main__":
    main()
