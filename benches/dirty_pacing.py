#!/usr/bin/env python3
"""mm_dirty's pacing: how smooth the rate is and what it costs, for a few
pace steps, measured from the samples and from outside the process.

    .venv/bin/python benches/dirty_pacing.py [--rate 200] [--seconds 6] [--paces 1,2,1000]

From the samples: mm_dirty runs with --interval 0.01 and --json; the share
of 10 ms windows within 10% of the rate, and of 100 ms windows (ten samples
summed) within 2%. From outside (a referee the tool does not control): every
second this script reads the whole region through /proc/PID/mem and counts
the pages whose byte changed since the last read (every write changes it);
the region is larger than a second of writes, so no page is written twice
in a window. Reading 256 MB takes ~200 ms, so the outside view is good to a
few percent per second, not per 100 ms. (The kernel's soft-dirty bits
would be the natural referee; this kernel is built without them.) CPU: the
process's user + system time over the window, with 10 ms sampling on, so it
is not the default run's cost (benches/cpu_bench.py measures that). Needs
root (/proc/PID/mem).
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time

from _util import cpu_s

PAGE = 4096


def page_bytes(pid: int, addr: int, size: int) -> bytes:
    """The first byte of every 4 KiB page of the region, read from outside."""
    with open(f"/proc/{pid}/mem", "rb") as f:
        f.seek(addr)
        return f.read(size)[::PAGE]


def run(rate: int, pace_ms: float, seconds: float, size_mb: int) -> dict[str, float]:
    p = subprocess.Popen(
        [sys.executable, "-m", "migmon", "mm_dirty", "-m", str(size_mb), "-r", str(rate),
         "--interval", "0.01", "--pace-ms", str(pace_ms), "--json", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert p.stdout is not None
    cfg = json.loads(p.stdout.readline())
    addr, size = cfg["region_address"], size_mb << 20
    time.sleep(1.5)  # prefault and settle
    outside = []
    c0, t0 = cpu_s(p.pid), time.monotonic()
    before, last = page_bytes(p.pid, addr, size), time.monotonic()
    while time.monotonic() - t0 < seconds:
        time.sleep(max(0.0, 1.0 - (time.monotonic() - last)))
        now = time.monotonic()
        after = page_bytes(p.pid, addr, size)
        changed = sum(a != b for a, b in zip(before, after, strict=True))
        outside.append(changed * PAGE / (1 << 20) / (now - last))
        before, last = after, now
    cpu = cpu_s(p.pid) - c0
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=20)
    rates = [o["rate_mb_s"] for o in map(json.loads, out.splitlines()) if o["type"] == "sample"]
    rates = rates[150:]  # the samples after the 1.5 s of settling
    hundred = [statistics.mean(rates[i : i + 10]) for i in range(0, len(rates) - 9, 10)]

    def within(xs: list[float], tol: float) -> float:
        return 100.0 * sum(abs(x - rate) <= tol * rate for x in xs) / max(1, len(xs))

    return {
        "cpu_pct": 100.0 * cpu / seconds,
        "w10_within_10": within(rates, 0.10),
        "w100_within_2": within(hundred, 0.02),
        "outside_within_5": within(outside[1:], 0.05),
        "outside_median": statistics.median(outside[1:]),
        "outside_mean": statistics.mean(outside[1:]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--size", type=int, default=256, help="region, MB (over a second of writes)")
    ap.add_argument("--paces", default="0.1,1,2,1000")
    a = ap.parse_args()
    print(f"mm_dirty -r {a.rate}, sequential, {a.seconds:g} s per pace step")
    for pace in (float(x) for x in a.paces.split(",")):
        r = run(a.rate, pace, a.seconds, a.size)
        print(
            f"  pace {pace:6g} ms: CPU {r['cpu_pct']:5.2f}% of a core | samples: "
            f"{r['w10_within_10']:5.1f}% of 10 ms windows within 10%, "
            f"{r['w100_within_2']:5.1f}% of 100 ms within 2% | from outside: "
            f"{r['outside_within_5']:5.1f}% of 1 s windows within 5%, median "
            f"{r['outside_median']:.1f} MB/s, mean {r['outside_mean']:.1f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
