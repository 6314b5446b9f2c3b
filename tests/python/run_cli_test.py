#!/usr/bin/python3
"""`rtnmf run` records a live run's results: with --out, and from the pipeline's `output` when no
--out is given. The file has what `rtnmf replay` writes (traces per frame, footprints, timing,
attributes; /timing/seq numbers the frames). `rtnmf replay` takes the pipeline's `output` too and
names the file it wrote; `--passes 2` seeds a second pass with the first one's footprints.
Usage: run_cli_test.py RTNMF_BINARY"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

PIPELINE = """
name: "live-imaging-test"
%s
publisher { disabled: true }
stream {
  id: "cam"
  overload: BLOCK
  source {
    pacing: MAX
    max_frames: 400
    synthetic { kind: IMAGING height: 64 width: 64 components: 8 rate_hz: 30 seed: 2 }
  }
  stage {
    type: "online_cnmf"
    name: "cnmf"
    imaging { neuron_radius: 4 init_frames: 100 update_every: 50 }
  }
}
"""


def run(args):
    return subprocess.run(args, capture_output=True, text=True, timeout=240)


def text(v):
    return v.decode() if isinstance(v, bytes) else v


def check(path, pipeline_file):
    with h5py.File(path, "r") as f:
        assert f.attrs["frames"] == 400, dict(f.attrs)
        assert text(f.attrs["input"]) == "live: " + pipeline_file, f.attrs["input"]
        assert f.attrs["height"] == 64 and f.attrs["width"] == 64
        assert "live-imaging-test" in text(f.attrs["pipeline"])
        assert np.array_equal(f["timing/seq"][()], np.arange(400)), f["timing/seq"][()][:10]
        assert f["timing/latency_ns"].shape == (400,)
        traces = f["traces"][()]
        assert traces.shape[1] == 400 and traces.shape[0] >= 4, traces.shape
        # The neurons found at initialisation have traces from the first online frames on.
        assert np.count_nonzero(traces[:, 100:].max(axis=1) > 0) >= 4
        assert f["footprints/shape"][()][0] == 64 * 64


def main():
    rtnmf = sys.argv[1]
    d = tempfile.mkdtemp(prefix="rtnmf-run-")
    atexit.register(shutil.rmtree, d, True)
    # --out
    p1 = os.path.join(d, "a.pbtxt")
    with open(p1, "w") as f:
        f.write(PIPELINE % "")
    out = os.path.join(d, "a.h5")
    r = run([rtnmf, "run", p1, "--out", out, "--quiet"])
    assert r.returncode == 0, r.stderr
    assert "results: " + out + " (400 frames)" in r.stderr, r.stderr
    check(out, p1)
    # the pipeline's own `output`
    out2 = os.path.join(d, "b.h5")
    p2 = os.path.join(d, "b.pbtxt")
    with open(p2, "w") as f:
        f.write(PIPELINE % ('output: "%s"' % out2))
    r = run([rtnmf, "run", p2, "--quiet"])
    assert r.returncode == 0, r.stderr
    check(out2, p2)
    # an unwritable path fails before anything runs, naming the file
    bad = os.path.join(d, "no-such-dir", "c.h5")
    r = run([rtnmf, "run", p1, "--out", bad, "--quiet"])
    assert r.returncode != 0 and bad in r.stderr, (r.returncode, r.stderr)
    # replay: the pipeline's `output` when there is no --out, announced like --out
    movie, truth = os.path.join(d, "m.tif"), os.path.join(d, "t.h5")
    r = run([rtnmf, "simulate", "calcium", "--out", movie, "--truth", truth, "--height", "48",
             "--width", "48", "--frames", "300", "--neurons", "5", "--seed", "4"])
    assert r.returncode == 0, r.stderr
    out3 = os.path.join(d, "c.h5")
    p3 = os.path.join(d, "c.pbtxt")
    with open(p3, "w") as f:
        f.write('name: "replay-output-test"\noutput: "%s"\npublisher { disabled: true }\n'
                'stream { id: "cam" source { imaging_file { path: "" } }\n'
                '  stage { type: "online_cnmf" name: "cnmf" imaging { neuron_radius: 4 init_frames: 100 '
                'update_every: 50 } } }\n' % out3)
    r = run([rtnmf, "replay", movie, "--pipeline", p3, "--quiet"])
    assert r.returncode == 0, r.stderr
    assert "results: " + out3 + " (300 frames)" in r.stderr, r.stderr
    with h5py.File(out3, "r") as f:
        assert f["traces"].shape[1] == 300 and text(f.attrs["input"]) == movie
        first = f["traces"][()]
    # replay --passes 2: the first pass's footprints seed the second, so every neuron the first
    # pass knew has its trace from the initialisation batch on; the scratch file is removed
    out4 = os.path.join(d, "passes.h5")
    r = run([rtnmf, "replay", movie, "--pipeline", p3, "--out", out4, "--passes", "2"])
    assert r.returncode == 0, r.stderr
    assert "pass 1 of 2" in r.stderr and "pass 2 of 2" in r.stderr, r.stderr
    assert "results: " + out4 + " (300 frames)" in r.stderr, r.stderr
    with h5py.File(out4, "r") as f:
        second = f["traces"][()]
        assert second.shape[1] == 300
        live = np.diff(f["footprints/indptr"][()]) > 0
    early = lambda t: int(np.count_nonzero(t[:, :100].max(axis=1) > 0))
    assert early(second) > early(first), (early(first), early(second))
    print("neurons with traces in the first 100 frames: pass 1 alone %d, --passes 2 %d" % (early(first), early(second)))
    # no neuron is added in the second pass (the first searched the whole movie): at most the
    # first pass's final components (its rows; merged and removed ones are under /retired/)
    assert np.count_nonzero(live) <= first.shape[0], (live, first.shape)
    assert not [n for n in os.listdir(tempfile.gettempdir()) if n.startswith("rtnmf_replay_pass1_")]
    # several streams: stream 0's datasets, the stages' results included, all under /<its id>/,
    # and the same as its single-stream replay's (the file held the footprints and the retired
    # components at the root beside /cam/traces, and the rows at the root were never split)
    p6 = os.path.join(d, "two.pbtxt")
    with open(p6, "w") as f:
        f.write('name: "two-streams"\npublisher { disabled: true }\n' + "".join(
            'stream { id: "%s" source { imaging_file { path: "%s" } }\n'
            '  stage { type: "online_cnmf" name: "cnmf" imaging { neuron_radius: 4 init_frames: 100 '
            'update_every: 50 } } }\n' % (sid, path) for sid, path in (("cam", ""), ("cam2", movie))))
    out8 = os.path.join(d, "two.h5")
    r = run([rtnmf, "replay", movie, "--pipeline", p6, "--out", out8, "--quiet"])
    assert r.returncode == 0, r.stderr
    with h5py.File(out8, "r") as f, h5py.File(out3, "r") as one:
        assert list(f.keys()) == ["cam"], list(f.keys())
        for name in ("traces", "dff", "footprints/data", "footprints/indptr", "components/id", "components/slot",
                     "retired/traces", "retired/slot", "background/spatial"):
            assert np.array_equal(f["cam/" + name][()], one[name][()]), name
        assert f["cam/footprints/shape"][1] == f["cam/traces"].shape[0]
    # a damaged movie: the first pass stops at the frame, keeps what came before it as the result
    cut = os.path.join(d, "cut.tif")
    with open(movie, "rb") as src, open(cut, "wb") as dst:
        data = src.read()
        dst.write(data[: len(data) * 7 // 8])
    out5 = os.path.join(d, "cut.h5")
    r = run([rtnmf, "replay", cut, "--pipeline", p3, "--out", out5, "--passes", "2", "--quiet"])
    assert r.returncode != 0 and "pass 1 ended with an error; no second pass, its results kept" in r.stderr, r.stderr
    assert "results: " + out5 in r.stderr, r.stderr
    with h5py.File(out5, "r") as f:
        assert 200 < f["traces"].shape[1] < 300, f["traces"].shape
    # a recording split over files: its directory (or a quoted pattern) is one input, the files in
    # name order; the files as separate arguments (a pattern the shell expanded) are refused with
    # the way to give them
    parts = os.path.join(d, "parts")
    os.mkdir(parts)
    shutil.copy(movie, os.path.join(parts, "rec_00001.tif"))
    r = run([rtnmf, "simulate", "calcium", "--out", os.path.join(parts, "rec_00002.tif"), "--truth",
             os.path.join(d, "t2.h5"), "--height", "48", "--width", "48", "--frames", "120",
             "--neurons", "5", "--seed", "4"])
    assert r.returncode == 0, r.stderr
    out6 = os.path.join(d, "parts.h5")
    for spec in (parts, os.path.join(parts, "rec_*.tif")):
        r = run([rtnmf, "replay", spec, "--pipeline", p3, "--out", out6, "--quiet"])
        assert r.returncode == 0, r.stderr
        assert "results: " + out6 + " (420 frames)" in r.stderr, r.stderr
        with h5py.File(out6, "r") as f:
            assert text(f.attrs["input"]) == spec and f["traces"].shape[1] == 420
            # the first file's frames are the single-file replay's, bit for bit, except where
            # that replay had zeros: a component found at its last update gets, at the end of a
            # longer run, the slow path's estimates for the frames before its model took effect
            both = f["traces"][:first.shape[0], :300]
            assert ((both == first) | (first == 0)).all() and np.array_equal(both[first != 0], first[first != 0])
    r = run([rtnmf, "replay", os.path.join(parts, "rec_00001.tif"), os.path.join(parts, "rec_00002.tif"),
             "--pipeline", p3, "--out", out6, "--quiet"])
    assert r.returncode != 0 and "expected one INPUT, got 2" in r.stderr and \
        "a recording split over files is one INPUT: its directory, or the pattern in quotes" in r.stderr, r.stderr
    r = run([rtnmf, "replay", movie, "--pipeline", p3, "--passes", "2"])
    assert r.returncode != 0 and "--passes 2 needs --out" in r.stderr, r.stderr
    r = run([rtnmf, "replay", movie, "--pipeline", p3, "--out", out4, "--passes", "3"])
    assert r.returncode != 0 and "--passes must be 1 or 2, not 3" in r.stderr, r.stderr
    p5 = os.path.join(d, "nocnmf.pbtxt")
    with open(p5, "w") as f:
        f.write('name: "no-cnmf"\npublisher { disabled: true }\n'
                'stream { id: "cam" source { imaging_file { path: "" } }\n'
                '  stage { type: "motion_correct" name: "motion" } }\n')
    r = run([rtnmf, "replay", movie, "--pipeline", p5, "--out", out4, "--passes", "2"])
    assert r.returncode != 0 and "--passes 2 needs a pipeline with an online_cnmf stage" in r.stderr, r.stderr
    # bidirectional-scan comb: odd lines of a raw movie displaced 3 px; motion.bidi_phase_auto
    # measures it on the first frames and the result file records it on /motion/shifts
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:64, 0:64]
    scene = np.full((64, 64), 100.0)
    for _ in range(25):
        cy, cx, sg = rng.uniform(0, 64), rng.uniform(0, 64), rng.uniform(1.5, 3.5)
        scene += 150 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sg * sg))
    frames = scene[None] + rng.normal(0, 10, (60, 64, 64))
    frames[:, 1::2, 3:] = frames[:, 1::2, :-3].copy()
    raw = os.path.join(d, "comb.raw")
    frames.astype("<f4").tofile(raw)
    out7 = os.path.join(d, "comb.h5")
    r = run([rtnmf, "replay", raw, "--pipeline", p5, "--out", out7, "--quiet", "--set", "source.height=64",
             "--set", "source.width=64", "--set", "source.dtype=float32", "--set", "motion.bidi_phase_auto=true"])
    assert r.returncode == 0, r.stderr
    # a raw movie has no frame rate: the guess is said
    assert "note: " + raw + " records no frame rate; assuming 30 Hz (set source.rate_hz)" in r.stderr, r.stderr
    with h5py.File(out7, "r") as f:
        a = f["motion/shifts"].attrs
        assert (a["bidi_phase_px"], a["bidi_phase_estimated"]) == (3, 1), dict(a)
    # rtnmf info: how the readers see a movie; --check reads every frame and names the first
    # damaged one
    import json
    r = run([rtnmf, "info", movie])
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["frames"], info["height"], info["width"], info["files"]) == (300, 48, 48, 1), info
    assert info["format"] == "tiff" and info["dtype"] == "uint16" and info["frame_rate_hz"] == 30, info
    r = run([rtnmf, "info", parts, "--check"])
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["frames"], info["files"], info["readable_frames"]) == (420, 2, 420) and "error" not in info, info
    r = run([rtnmf, "info", cut, "--check"])
    assert r.returncode == 1, (r.returncode, r.stderr)
    info = json.loads(r.stdout)
    assert 200 < info["readable_frames"] < 300, info
    assert info["error"].startswith(cut + ": frame %d" % info["readable_frames"]), info
    r = run([rtnmf, "info", movie, "--plane", "1"])
    assert r.returncode != 0 and movie + ": plane 1 requested but the file has 1 (not volumetric)" in r.stderr, r.stderr
    print("ok")


if __name__ == "__main__":
    main()
