#!/usr/bin/python3
"""End-to-end imaging benchmark: `rtnmf replay` of a simulated movie through calcium-2p.

Simulates a movie (default 512 x 512, 500 neurons, 2000 frames; reused when it exists), replays it
at --speed max and, unless --no-realtime, at real time (30 Hz pacing, with --rt-priority /
--rt-cpus for the frame-carrying threads), and prints one JSON object. Per run:
- frames_per_s: frames / wall time of the replay process (end to end: reading, the batch
  initialisation and the wait for it included);
- online_frames_per_s: the online phase alone, frames from the one where the first model took
  effect to the last / the fast path's wall time between them (attributes online_frames,
  online_wall_s written by the online_cnmf stage); with fast_path_model_wait_s, the time the fast
  path spent waiting for slow-path models (replay waits so that results are bit-identical), and
  online_model_wait_s, the part of it after the first model (inside online_wall_s);
- online_cpu_ms_per_frame: CPU time of the whole process (all threads) per online frame, from
  the first model's frame to the last model's (attributes online_cpu_s, online_cpu_frames): the
  work the rate is made of, far less disturbed by the VM's slow stretches than wall times;
- steady_frames_per_s, steady_cpu_ms_per_frame, steady_model_wait_s: the same from the first
  model the slow path computed from frames tracked with a model, i.e. once it has caught up with
  the frames buffered during the initialisation (~590 at 512 x 512, 30 Hz), to the end
  (attributes steady_*): the rate a long stream runs at. The online phase of a 2,000-frame movie
  spends its first hundreds of milliseconds on that catch-up;
- CPU seconds, peak RSS;
- per-frame latency (received -> activations published, /timing/latency_ns) p50/p99/max over the
  whole run, after the first model took effect, and over the second half (steady state). At
  --speed max frames queue behind the one in process, so latency there is not per-frame cost;
- accuracy from `rtnmf score`.
Before the paced run, bench/rt_jitter (built beside the benchmarks) times a fixed memory-bound
pass at 30 Hz on the same CPU and priority for --jitter-seconds: `machine_jitter` in the output is
the machine's own tail for such work at that moment (a shared VM slows down in stretches), to read
the paced run's p99 against.

  /usr/bin/python3 bench/imaging_replay.py --rtnmf build/tools/rtnmf --dir /tmp/imgbench
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

import h5py
import numpy as np


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def percentiles(ns):
    if len(ns) == 0:
        return None
    us = np.asarray(ns, dtype=np.float64) / 1e3
    return {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)),
            "max_us": float(us.max()), "frames": int(len(us))}


def replay(args, movie, out, speed):
    cmd = ["/usr/bin/time", "-v", args.rtnmf, "replay", movie, "--pipeline", args.pipeline,
           "--out", out, "--speed", speed, "--no-publish", "--quiet"]
    if speed != "max" and args.rt_priority > 0:
        cmd += ["--rt-priority", str(args.rt_priority)]
        if args.rt_cpus:
            cmd += ["--rt-cpus", args.rt_cpus]
    for s in args.set:
        cmd += ["--set", s]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit("replay failed:\n" + p.stderr[-4000:])
    def field(name):
        m = re.search(re.escape(name) + r":\s*([0-9.:]+)", p.stderr)
        return m.group(1) if m else None
    with h5py.File(out, "r") as f:
        lat = f["/timing/latency_ns"][()]
        comp = f["/components"].attrs
        first = int(comp.get("init_frames", 0)) + int(comp.get("first_model_lag_frames",
                                                                comp.get("model_lag_frames", 0)))
        k = int(f["/components/id"].shape[0])  # the final model's components
        online_frames = int(comp.get("online_frames", 0))
        online_wall = float(comp.get("online_wall_s", 0.0))
        waits = int(comp.get("fast_path_model_waits", 0))
        wait_s = float(comp.get("fast_path_model_wait_s", 0.0))
        online_wait_s = float(comp.get("online_model_wait_s", 0.0))
        cpu_frames = int(comp.get("online_cpu_frames", 0))
        cpu_online = float(comp.get("online_cpu_s", 0.0))
        steady_frames = int(comp.get("steady_frames", 0))
        steady_wall = float(comp.get("steady_wall_s", 0.0))
        steady_wait_s = float(comp.get("steady_model_wait_s", 0.0))
        steady_cpu_frames = int(comp.get("steady_cpu_frames", 0))
        steady_cpu = float(comp.get("steady_cpu_s", 0.0))
    n = len(lat)
    return {
        "speed": speed,
        "frames": int(n),
        "wall_s": round(wall, 2),
        "frames_per_s": round(n / wall, 1),
        "online_frames": online_frames,
        "online_wall_s": round(online_wall, 3),
        "online_frames_per_s": round(online_frames / online_wall, 1) if online_wall > 0 else None,
        "fast_path_model_waits": waits,
        "fast_path_model_wait_s": round(wait_s, 3),
        "online_model_wait_s": round(online_wait_s, 3),
        # CPU time of the whole process (every thread) per online frame: what the rate is made of,
        # far steadier than the wall time on a shared VM; cores / this bounds the online rate.
        "online_cpu_ms_per_frame": round(1e3 * cpu_online / cpu_frames, 3) if cpu_frames > 0 else None,
        # The steady state: from the first model the slow path computed after catching up with
        # the frames buffered during the initialisation (attributes steady_*).
        "steady_frames": steady_frames,
        "steady_frames_per_s": round(steady_frames / steady_wall, 1) if steady_wall > 0 else None,
        "steady_model_wait_s": round(steady_wait_s, 3),
        "steady_cpu_ms_per_frame": round(1e3 * steady_cpu / steady_cpu_frames, 3) if steady_cpu_frames > 0 else None,
        "cpu_s": round(float(field("User time (seconds)")) + float(field("System time (seconds)")), 2),
        "peak_rss_mb": round(int(field("Maximum resident set size (kbytes)")) / 1024, 1),
        "first_model_frame": first,
        "latency_all": percentiles(lat),
        "latency_after_first_model": percentiles(lat[first:]),
        # Steady state: the second half (any backlog from the first model cleared).
        "latency_second_half": percentiles(lat[n // 2:]),
        "components": k,
    }


def machine_jitter(args):
    exe = args.rt_jitter or os.path.join(os.path.dirname(os.path.abspath(args.rtnmf)), "..", "bench", "rt_jitter")
    if not os.path.exists(exe):
        return {"skipped": f"{exe} not found (cmake --build build --target rt_jitter)"}
    cpu = args.rt_cpus.split(",")[0].split("-")[0] if args.rt_cpus else "0"
    cmd = [exe, "--cpu", cpu, "--priority", str(max(args.rt_priority, 0)), "--rate", "30",
           "--seconds", str(args.jitter_seconds)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return {"skipped": p.stderr.strip()}
    return json.loads(p.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rtnmf", default="build/tools/rtnmf")
    ap.add_argument("--dir", default="/tmp/rtnmf_imaging_bench")
    ap.add_argument("--pipeline", default="calcium-2p")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--neurons", type=int, default=500)
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--no-realtime", action="store_true")
    ap.add_argument("--no-score", action="store_true")
    ap.add_argument("--no-max", action="store_true", help="skip the --speed max run")
    ap.add_argument("--rt-priority", type=int, default=80,
                    help="SCHED_FIFO priority for the paced run (0 = normal scheduling)")
    ap.add_argument("--rt-cpus", default="1", help="CPU list the paced run's frame threads use")
    ap.add_argument("--rt-jitter", default=None,
                    help="rt_jitter binary (default: bench/rt_jitter beside the rtnmf build)")
    ap.add_argument("--jitter-seconds", type=float, default=20,
                    help="how long rt_jitter runs before the paced replay (0 = not run)")
    ap.add_argument("--set", action="append", default=[], help="replay --set override (repeatable)")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    tag = f"{args.size}x{args.size}_{args.neurons}n_{args.frames}f"
    movie = os.path.join(args.dir, f"movie_{tag}.tif")
    truth = os.path.join(args.dir, f"truth_{tag}.h5")
    if not (os.path.exists(movie) and os.path.exists(truth)):
        run([args.rtnmf, "simulate", "calcium", "--out", movie, "--truth", truth, "--height",
             str(args.size), "--width", str(args.size), "--neurons", str(args.neurons),
             "--frames", str(args.frames)])
    load = os.getloadavg()
    res = {"movie": movie, "size": args.size, "neurons": args.neurons, "pipeline": args.pipeline,
           "overrides": args.set,
           "loadavg_before": [round(x, 2) for x in load], "runs": []}
    speeds = ([] if args.no_max else ["max"]) + ([] if args.no_realtime else ["realtime"])
    for speed in speeds:
        if speed == "realtime" and args.jitter_seconds > 0:
            res["machine_jitter"] = machine_jitter(args)
        out = os.path.join(args.dir, f"result_{tag}_{speed}.h5")
        r = replay(args, movie, out, speed)
        if not args.no_score:
            s = json.loads(run([args.rtnmf, "score", "--truth", truth, out]).stdout)
            r["score"] = {k: s[k] for k in ("f1", "precision", "recall", "median_footprint_cosine",
                                            "median_trace_correlation", "median_spike_f1") if k in s}
        res["runs"].append(r)
    res["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
