#!/usr/bin/env python3
"""Precopy bandwidth on loopback, ours next to the original and to iperf3's
single TCP stream, alternating rounds so that the machine's noise hits all
three alike; medians and ratios.

    .venv/bin/python benches/precopy_bench.py --original /path/to/mig_mon [--seconds 5] [--rounds 5]

Each side runs as two processes (destination and source), as on two hosts.
Without --original the original is left out. Needs iperf3 (Debian).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time

from _util import OURS, free_port, stop


def background(cmd: list[str]) -> subprocess.Popen[str]:
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    time.sleep(1.0)
    return p


def ours(seconds: float) -> float:
    port = str(free_port())
    dst = background([*OURS, "vm", "-d", "-p", port, "--bind", "127.0.0.1", "-q"])
    try:
        out = subprocess.run(
            [*OURS, "vm", "-s", "-H", "127.0.0.1", "-p", port, "--duration", str(seconds),
             "--json", "-q"],
            capture_output=True, text=True, check=True, timeout=seconds + 30,
        ).stdout  # fmt: skip
    finally:
        stop(dst)
    summary = next(o for o in map(json.loads, out.splitlines()) if o["type"] == "summary")
    return float(summary["rate_mb_s"])


def original(binary: str, seconds: float) -> float:
    # It listens on 9008 (12323 in the wrong byte order) and runs until
    # killed; its source prints "Speed: N (MB/s)" every second.
    dst = background([binary, "vm", "-d"])
    try:
        # Its stdout is a pipe: line-buffered by stdbuf, or kill loses it.
        cmd = ["stdbuf", "-oL", binary, "vm", "-s", "-H", "127.0.0.1", "-t", "precopy"]
        src = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(seconds + 0.5)
        src.kill()
        out, _ = src.communicate()
    finally:
        stop(dst)
    speeds = [int(m) for m in re.findall(r"Speed: (\d+) \(MB/s\)", out)]
    return statistics.mean(speeds[: int(seconds)]) if speeds else 0.0


def iperf3(seconds: float) -> float:
    port = str(free_port())
    srv = background(["iperf3", "-s", "-1", "-p", port])
    try:
        out = subprocess.run(
            ["iperf3", "-c", "127.0.0.1", "-p", port, "-t", str(seconds), "-J"],
            capture_output=True, text=True, check=True, timeout=seconds + 30,
        ).stdout  # fmt: skip
    finally:
        stop(srv)
    bps = json.loads(out)["end"]["sum_received"]["bits_per_second"]
    return float(bps) / 8 / (1 << 20)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--original")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    if not shutil.which("iperf3"):
        print("iperf3 is not installed (apt-get install iperf3)", file=sys.stderr)
        return 1
    rows: dict[str, list[float]] = {"ours": [], "original": [], "iperf3": []}
    for r in range(a.rounds):
        rows["ours"].append(ours(a.seconds))
        if a.original:
            rows["original"].append(original(a.original, a.seconds))
        rows["iperf3"].append(iperf3(a.seconds))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rows.items() if v),
              flush=True)  # fmt: skip
    med = {k: statistics.median(v) for k, v in rows.items() if v}
    print("median MB/s: " + ", ".join(f"{k} {v:.0f}" for k, v in med.items()))
    if "original" in med:
        print(f"ours / original: {med['ours'] / med['original']:.2f}")
    print(f"ours / iperf3:   {med['ours'] / med['iperf3']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
