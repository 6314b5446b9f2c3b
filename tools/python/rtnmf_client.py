#!/usr/bin/python3
"""Python client for a running rtnmf pipeline (pyzmq + protobuf, Debian's python3-zmq and
python3-protobuf).

    # print activations of stream cam0 as they arrive
    /usr/bin/python3 tools/python/rtnmf_client.py sub tcp://127.0.0.1:5555 --topic act/cam0
    # live plot of the first components (needs python3-matplotlib)
    /usr/bin/python3 tools/python/rtnmf_client.py plot tcp://127.0.0.1:5555 --stream emg0
    # control: stats, freeze the model for closed loop, stop
    /usr/bin/python3 tools/python/rtnmf_client.py control tcp://127.0.0.1:5556 stats
    /usr/bin/python3 tools/python/rtnmf_client.py control tcp://127.0.0.1:5556 freeze --stream emg0

In your own code:

    from rtnmf_client import Subscriber
    for topic, msg in Subscriber("tcp://127.0.0.1:5555", "act/").messages():
        print(topic, msg.seq, list(msg.values)[:4])

The protobuf modules are generated at build time into <build>/python; set RTNMF_PY (or pass
--proto-dir) if your build folder is not ./build.
"""
import argparse
import os
import sys
import time


def _import_protos(proto_dir=None):
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [proto_dir, os.environ.get("RTNMF_PY"),
                  os.path.join(here, "..", "..", "build", "python"), os.path.join(os.getcwd(), "build", "python")]
    for c in candidates:
        if c and os.path.exists(os.path.join(c, "messages_pb2.py")):
            sys.path.insert(0, os.path.abspath(c))
            break
    try:
        import messages_pb2  # noqa: F401
    except ImportError as e:
        raise SystemExit("rtnmf_client: cannot import the generated protobuf modules (%s); build "
                         "rtnmf first or set RTNMF_PY=<build>/python" % e)
    import messages_pb2 as m
    return m


def _clock_ns():
    # rtnmf stamps t_received_ns with CLOCK_MONOTONIC, system-wide on Linux.
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class Subscriber:
    """Receives [topic][protobuf] messages from an rtnmf publisher and decodes them."""

    def __init__(self, endpoint, topic="", proto_dir=None, timeout_ms=200):
        import zmq
        self.pb = _import_protos(proto_dir)
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
        self.sock.setsockopt_string(zmq.SUBSCRIBE, topic)
        self.sock.connect(endpoint)

    def decode(self, topic, body):
        pb = self.pb
        if topic.startswith("act/"):
            msg = pb.Activations()
        elif topic == "stats":
            msg = pb.Stats()
        elif topic.startswith("model/"):
            msg = pb.ModelSnapshot()
        elif topic.startswith("event/"):
            msg = pb.Event()
        else:
            return None
        msg.ParseFromString(body)
        return msg

    def messages(self, count=0, seconds=0):
        """Yields (topic, message, receipt_ns); stops after `count` messages or `seconds`."""
        import zmq
        n = 0
        t0 = time.monotonic()
        while (not count or n < count) and (not seconds or time.monotonic() - t0 < seconds):
            try:
                parts = self.sock.recv_multipart()
            except zmq.Again:
                continue
            if len(parts) < 2:
                continue
            topic = parts[0].decode("utf-8", "replace")
            msg = self.decode(topic, parts[1])
            if msg is None:
                continue
            if len(parts) == 3 and getattr(msg, "values_in_next_part", False):
                # Large outputs (raw pixels) travel as a third frame of float32.
                import array
                raw = array.array("f")
                raw.frombytes(parts[2])
                msg.values.extend(raw)
            n += 1
            yield topic, msg, _clock_ns()


class Control:
    """Request/reply control of a running pipeline (typed Command / Reply messages)."""

    def __init__(self, endpoint, proto_dir=None, timeout_ms=2000):
        import zmq
        self.pb = _import_protos(proto_dir)
        self.sock = zmq.Context.instance().socket(zmq.REQ)
        self.sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    def _call(self, cmd):
        self.sock.send(cmd.SerializeToString())
        reply = self.pb.Reply()
        reply.ParseFromString(self.sock.recv())
        return reply

    def stats(self):
        cmd = self.pb.Command()
        cmd.get_stats.SetInParent()
        return self._call(cmd)

    def stop(self):
        cmd = self.pb.Command()
        cmd.stop.SetInParent()
        return self._call(cmd)

    def freeze(self, stream_id, frozen=True):
        cmd = self.pb.Command()
        cmd.freeze.stream_id = stream_id
        cmd.freeze.frozen = frozen
        return self._call(cmd)

    def model(self):
        cmd = self.pb.Command()
        cmd.get_model.SetInParent()
        return self._call(cmd)


def format_activations(topic, msg, t_ns):
    """One line for an Activations message received at t_ns (CLOCK_MONOTONIC): seq, latency,
    the first values and, when the pipeline makes them (calcium imaging), the first dF/F and the
    frame's motion correction (flagged when its shift was held), and a flag when the model could
    not explain the frame (its values held)."""
    lat_us = (t_ns - msg.t_received_ns) / 1e3
    line = "%s seq %d latency %.0f us values[%d]: %s" % (
        topic, msg.seq, lat_us, len(msg.values), " ".join("%.3g" % v for v in list(msg.values)[:6]))
    if len(msg.dff):
        line += " dff[%d]: %s" % (len(msg.dff), " ".join("%.3g" % v for v in list(msg.dff)[:6]))
    if msg.HasField("motion"):
        line += " shift %.2f %.2f" % (msg.motion.dy, msg.motion.dx)
        if msg.motion.held:
            line += " (held: registration rejected this frame)"
    if msg.excluded:
        line += " excluded: the model could not explain this frame, or the rig marked it bad (values held)"
    return line


def _cmd_sub(a):
    sub = Subscriber(a.endpoint, a.topic, a.proto_dir)
    for topic, msg, t in sub.messages(a.count, a.seconds):
        if topic.startswith("act/"):
            print(format_activations(topic, msg, t))
        elif topic == "stats":
            for s in msg.streams:
                print("stats %s: in %d processed %d dropped %d rejected %d" % (
                    s.stream_id, s.frames_in, s.frames_processed, s.frames_dropped,
                    s.frames_rejected))
        else:
            print(topic, str(msg).replace("\n", " ")[:200])
        sys.stdout.flush()


def _cmd_plot(a):
    import collections
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("plot needs matplotlib: apt-get install python3-matplotlib")
    sub = Subscriber(a.endpoint, "act/" + a.stream, a.proto_dir, timeout_ms=50)
    hist = collections.deque(maxlen=a.window)
    plt.ion()
    fig, ax = plt.subplots()
    lines = None
    last = time.monotonic()
    for _, msg, _ in sub.messages(seconds=a.seconds):
        hist.append(list(msg.dff if a.dff else msg.values)[:a.components])
        if time.monotonic() - last < 0.1 or not hist:
            continue
        last = time.monotonic()
        cols = list(zip(*hist))
        if lines is None:
            lines = [ax.plot(c, label="component %d" % i)[0] for i, c in enumerate(cols)]
            ax.legend(loc="upper left")
            ax.set_xlabel("frames (last %d)" % a.window)
            ax.set_title("act/" + a.stream)
        for ln, c in zip(lines, cols):
            ln.set_data(range(len(c)), c)
        ax.relim()
        ax.autoscale_view()
        plt.pause(0.001)


def _cmd_control(a):
    c = Control(a.endpoint, a.proto_dir)
    if a.what == "stats":
        r = c.stats()
    elif a.what == "stop":
        r = c.stop()
    elif a.what in ("freeze", "unfreeze"):
        r = c.freeze(a.stream, a.what == "freeze")
    else:
        r = c.model()
    print(r)
    return 0 if r.ok else 1


def main(argv=None):
    p = argparse.ArgumentParser(description="rtnmf Python client")
    p.add_argument("--proto-dir", help="folder with the generated *_pb2.py (default: build/python)")
    sp = p.add_subparsers(dest="cmd", required=True)
    s = sp.add_parser("sub", help="print messages")
    s.add_argument("endpoint")
    s.add_argument("--topic", default="")
    s.add_argument("--count", type=int, default=0)
    s.add_argument("--seconds", type=float, default=0)
    s = sp.add_parser("plot", help="live plot of a stream's activations")
    s.add_argument("endpoint")
    s.add_argument("--stream", required=True)
    s.add_argument("--components", type=int, default=8)
    s.add_argument("--dff", action="store_true", help="plot dF/F (calcium imaging) instead of the values")
    s.add_argument("--window", type=int, default=500)
    s.add_argument("--seconds", type=float, default=0)
    s = sp.add_parser("control", help="send a control command")
    s.add_argument("endpoint")
    s.add_argument("what", choices=["stats", "stop", "freeze", "unfreeze", "model"])
    s.add_argument("--stream", default="")
    a = p.parse_args(argv)
    return {"sub": _cmd_sub, "plot": _cmd_plot, "control": _cmd_control}[a.cmd](a) or 0


if __name__ == "__main__":
    sys.exit(main())
