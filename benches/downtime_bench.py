#!/usr/bin/env python3
"""Downtime probe bench: send-deadline jitter at 1 ms and our UDP round trip
next to sockperf's UDP ping-pong at the same message rate, side by side in
one run, alternating rounds so machine noise hits both.

    .venv/bin/python benches/downtime_bench.py [--rounds 3] [--seconds 5]

Needs sockperf (Debian package). Both servers run as separate processes on
loopback, as an echo server in a guest would.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

from _util import free_port

import migmon


def ours(seconds: float, interval_ms: float) -> tuple[float, float, float]:
    """(rtt p50 us, jitter p50 us, jitter p99 us) against our server_rr."""
    port = free_port(socket.SOCK_DGRAM)
    srv = subprocess.Popen(
        [sys.executable, "-m", "migmon", "server_rr", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        r = migmon.probe("127.0.0.1", interval_ms, port=port, duration_s=seconds)
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.wait(10)
    assert r.rtt is not None and r.received > 0, "no replies"
    return r.rtt.p50_ns / 1000, r.send_jitter.p50_ns / 1000, r.send_jitter.p99_ns / 1000


def sockperf(seconds: float, mps: int | str) -> float:
    """sockperf UDP ping-pong full round trip p50 (us) at `mps` messages/s."""
    port = free_port(socket.SOCK_DGRAM)
    srv = subprocess.Popen(
        ["sockperf", "server", "-i", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        out = subprocess.run(
            [
                "sockperf",
                "ping-pong",
                "-i",
                "127.0.0.1",
                "-p",
                str(port),
                "--mps",
                str(mps),
                "-t",
                str(int(seconds)),
                "--full-rtt",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.wait(10)
    m = re.search(r"percentile 50\.000 =\s*([\d.]+)", out)
    assert m, out
    return float(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--interval-ms", type=float, default=1.0)
    a = ap.parse_args()
    if shutil.which("sockperf") is None:
        print("sockperf is not installed (apt-get install sockperf)", file=sys.stderr)
        return 1
    mps = round(1000 / a.interval_ms)
    rows = []
    for i in range(a.rounds):
        rtt, j50, j99 = ours(a.seconds, a.interval_ms)
        peer = sockperf(a.seconds, mps)
        rows.append((rtt, j50, j99, peer))
        print(
            f"round {i}: ours rtt p50 {rtt:7.1f} us | sockperf full rtt p50 {peer:7.1f} us | "
            f"ratio {rtt / peer:.2f}x | send jitter p50 {j50:.1f} us p99 {j99:.1f} us"
        )
    med = [statistics.median(c) for c in zip(*rows, strict=True)]
    back_to_back = sockperf(a.seconds, "max")
    print(
        f"median over {a.rounds} rounds at {a.interval_ms:g} ms ({mps} msg/s): "
        f"ours {med[0]:.1f} us, sockperf {med[3]:.1f} us, ratio {med[0] / med[3]:.2f}x; "
        f"send-deadline jitter p50 {med[1]:.1f} us, p99 {med[2]:.1f} us"
    )
    print(
        f"for reference, sockperf back-to-back (mps=max, CPUs never idle): "
        f"full rtt p50 {back_to_back:.1f} us; ours / that = {med[0] / back_to_back:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
