#!/usr/bin/python3
"""End to end: `rtnmf run` publishes, the Python client receives activations, queries stats over
the control socket and stops the pipeline. Usage: client_test.py RTNMF_BINARY PROTO_DIR"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools",
                                "python"))
import rtnmf_client  # noqa: E402


def main():
    rtnmf, proto_dir = sys.argv[1], sys.argv[2]
    # The sockets' files in a directory of this run, removed at exit (with whatever rtnmf left).
    tag = tempfile.mkdtemp(prefix="rtnmf-pytest-")
    atexit.register(shutil.rmtree, tag, True)
    pub = "ipc://%s/pub" % tag
    ctl = "ipc://%s/ctl" % tag
    with tempfile.NamedTemporaryFile("w", suffix=".pbtxt", delete=False) as f:
        f.write('publisher { endpoint: "%s" control_endpoint: "%s" }\n'
                'stream { id: "py" source { pacing: REALTIME synthetic { kind: EMG channels: 8 '
                'block_samples: 4 rate_hz: 2000 } } stage { type: "rectify" } }\n' % (pub, ctl))
        cfg = f.name
    proc = subprocess.Popen([rtnmf, "run", cfg, "--quiet", "--seconds", "60"],
                            stderr=subprocess.PIPE, text=True)
    try:
        sub = rtnmf_client.Subscriber(pub, "act/py", proto_dir)
        got = []
        for topic, msg, _ in sub.messages(count=50, seconds=30):
            assert topic == "act/py", topic
            assert len(msg.values) == 8 * 4, len(msg.values)
            assert min(msg.values) >= 0, "rectified values must be >= 0"
            got.append(msg.seq)
        assert len(got) == 50, "received %d of 50 activations" % len(got)
        assert got == sorted(got), "seq out of order"
        ctl_client = rtnmf_client.Control(ctl, proto_dir)
        r = ctl_client.stats()
        assert r.ok and r.stats.streams[0].stream_id == "py", r
        assert r.stats.streams[0].frames_processed >= 50, r
        assert ctl_client.stop().ok
        rc = proc.wait(timeout=30)
        err = proc.stderr.read()
        assert rc == 0, "rtnmf exited %d: %s" % (rc, err)
        assert "stream py:" in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
        os.unlink(cfg)
    print("python client: 50 activations in order, stats and stop over control: OK")
    sigint_stops_cleanly(rtnmf, proto_dir, tag)


def sigint_stops_cleanly(rtnmf, proto_dir, tag):
    """Ctrl-C: rtnmf stops its sources, accounts for every frame and prints the summary."""
    import signal
    pub = "ipc://%s/pub2" % tag
    with tempfile.NamedTemporaryFile("w", suffix=".pbtxt", delete=False) as f:
        f.write('publisher { endpoint: "%s" control_endpoint: "none" }\n'
                'stream { id: "sig" source { pacing: REALTIME synthetic { kind: IMAGING '
                'height: 64 width: 64 rate_hz: 200 } } stage { type: "rectify" } }\n' % pub)
        cfg = f.name
    proc = subprocess.Popen([rtnmf, "run", cfg, "--quiet"], stderr=subprocess.PIPE, text=True)
    try:
        sub = rtnmf_client.Subscriber(pub, "act/sig", proto_dir)
        n = sum(1 for _ in sub.messages(count=20, seconds=30))
        assert n == 20, "received %d of 20" % n
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
        err = proc.stderr.read()
        assert rc == 0, "rtnmf exited %d after SIGINT: %s" % (rc, err)
        assert "stopping" in err and "stream sig:" in err, err
        # frames in = processed + dropped (overload) + discarded at stop: nothing unaccounted for.
        import re
        line = [l for l in err.splitlines() if l.startswith("stream sig:")][0]
        def count(what):
            m = re.search(r"(\d+) " + what, line)
            return int(m.group(1)) if m else 0
        assert count("frames in") == (count("processed") + count("dropped") +
                                      count("queued at stop discarded")), line
    finally:
        if proc.poll() is None:
            proc.kill()
        os.unlink(cfg)
    print("SIGINT: clean stop with summary: OK")


def check_format(proto_dir):
    """`rtnmf_client sub` prints dF/F and motion beside the values when a message carries them."""
    pb = rtnmf_client._import_protos(proto_dir)
    msg = pb.Activations(seq=7, t_received_ns=1000)
    msg.values.extend([1.0, 2.5])
    line = rtnmf_client.format_activations("act/cam", msg, 3000)
    assert line == "act/cam seq 7 latency 2 us values[2]: 1 2.5", line
    msg.dff.extend([0.25, 0.5, 1.5])
    line = rtnmf_client.format_activations("act/cam", msg, 3000)
    assert line == "act/cam seq 7 latency 2 us values[2]: 1 2.5 dff[3]: 0.25 0.5 1.5", line
    msg.motion.dy, msg.motion.dx, msg.motion.held = 1.5, -0.25, True
    line = rtnmf_client.format_activations("act/cam", msg, 3000)
    assert line.endswith("dff[3]: 0.25 0.5 1.5 shift 1.50 -0.25 (held: registration rejected this frame)"), line
    msg.excluded = True
    line = rtnmf_client.format_activations("act/cam", msg, 3000)
    assert line.endswith("(held: registration rejected this frame) excluded: the model could not explain this frame, or the rig marked it bad (values held)"), line
    print("sub line with dF/F and motion: OK")


if __name__ == "__main__":
    check_format(sys.argv[2])
    main()
