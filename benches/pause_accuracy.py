#!/usr/bin/env python3
"""mm_dirty's pause detection against a pause of known length: the process
is stopped with SIGSTOP for 50, 200 and 1000 ms (the stop measured here,
between the two signals), at 10 and 1000 MB/s, in both patterns; each run
must report exactly one pause of that length. Then a quiet run, where none
may be reported.

    .venv/bin/python benches/pause_accuracy.py [--quiet-s 60]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time


def run(
    rate: int, pattern: str, stop_ms: float | None, seconds: float
) -> tuple[float, list[float]]:
    p = subprocess.Popen(
        [sys.executable, "-m", "migmon", "mm_dirty", "-m", "256", "-r", str(rate), "-p", pattern,
         "-T", "2", "--json", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    time.sleep(1.5)
    stopped = 0.0
    if stop_ms is not None:
        t = time.perf_counter()
        os.kill(p.pid, signal.SIGSTOP)
        time.sleep(stop_ms / 1000)
        os.kill(p.pid, signal.SIGCONT)
        stopped = (time.perf_counter() - t) * 1000
    time.sleep(seconds)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=30)
    pauses = [o["length_ms"] for o in map(json.loads, out.splitlines()) if o["type"] == "pause"]
    return stopped, pauses


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quiet-s", type=float, default=60.0)
    a = ap.parse_args()
    worst = 0.0
    for pattern in ("sequential", "random"):
        for rate in (10, 1000):
            for ms in (50.0, 200.0, 1000.0):
                stopped, pauses = run(rate, pattern, ms, 1.0)
                err = pauses[0] - stopped if len(pauses) == 1 else float("nan")
                worst = max(worst, abs(err)) if len(pauses) == 1 else worst
                print(f"{pattern:10} {rate:5} MB/s stopped {stopped:7.1f} ms: "
                      f"{len(pauses)} pause(s) {', '.join(f'{x:.1f}' for x in pauses)} ms, "
                      f"error {err:+.1f} ms", flush=True)  # fmt: skip
    print(f"worst error of a single reported pause: {worst:.1f} ms")
    _, pauses = run(200, "sequential", None, a.quiet_s)
    print(f"quiet run of {a.quiet_s:g} s at 200 MB/s, 2 threads: {len(pauses)} pause(s) {pauses}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
