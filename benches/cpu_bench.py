#!/usr/bin/env python3
"""What mig_mon costs the machine it measures: CPU time of each tool, side by
side with the original C tool in one run (alternating rounds), and start-up
time. Issue #10's targets are ratios to the original, so give its binary:

    .venv/bin/python benches/cpu_bench.py --original /path/to/mig_mon [--seconds 8]

CPU is user + system time from /proc/PID/stat, counted over a window that
starts after start-up and prefault (as in shared/ORIGINAL.md): from second 2
to second 2 + SECONDS. Without --original only our figures are printed.

The floor: mm_dirty's default pacing wakes its thread 1000 times a second,
and a wake-up's cost is the machine's, not the tool's. So the mm_dirty rows
are set beside a C program (compiled here with `cc`, if there is one) that
does nothing but sleep 1 ms in a loop, measured the same way in the same
run: what ours costs beyond the original and beyond that floor is the
tool's own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from _util import OURS, cpu_s, free_port, stop


def window(cmd: list[str], seconds: float, warm: float = 2.0) -> float:
    """CPU seconds `cmd` uses from second `warm` to `warm + seconds`."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(warm)
        a = cpu_s(p.pid)
        time.sleep(seconds)
        return cpu_s(p.pid) - a
    finally:
        stop(p)


def with_peer(peer: list[str], cmd: list[str], seconds: float) -> float:
    """CPU of `cmd` while `peer` runs (a server for a client, or a client
    feeding a server)."""
    q = subprocess.Popen(peer, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        return window(cmd, seconds)
    finally:
        stop(q)


# Nothing but 1 ms sleeps: what 1000 wake-ups a second cost on this machine.
SLEEPER_C = r"""
#include <time.h>
int main(void) {
    struct timespec d = {0, 1000000};
    for (;;)
        clock_nanosleep(CLOCK_MONOTONIC, 0, &d, 0);
}
"""


def build_sleeper(folder: str) -> list[str] | None:
    """The floor's program, or None without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src, exe = os.path.join(folder, "sleeper.c"), os.path.join(folder, "sleeper")
    with open(src, "w") as f:
        f.write(SLEEPER_C)
    subprocess.run([cc, "-O2", "-o", exe, src], check=True)
    return [exe]


def startup(cmd: list[str], runs: int = 15) -> float:
    """Median wall time of `cmd`, ms."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def first_line(cmd: list[str], runs: int = 5) -> float:
    """Median time from starting `cmd` to its first dirty-rate line, ms."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert p.stdout is not None
        for line in p.stdout:
            if line.startswith("dirty-rate:"):
                times.append((time.perf_counter() - t) * 1000)
                break
        p.kill()
        p.wait()
    return statistics.median(times)


def scenarios(orig: str | None, seconds: float) -> list[tuple[str, Callable[[list[str]], float]]]:
    def dirty(rate: str, pattern: str, pace: str = "") -> Callable[[list[str]], float]:
        def f(tool: list[str]) -> float:
            extra = ["--pace-ms", pace] if pace and tool == OURS else []
            cmd = [*tool, "mm_dirty", "-m", "512", "-r", rate, "-p", pattern, *extra]
            return window(cmd, seconds)

        return f

    # The original has no port option: it listens on 12323 in the wrong byte
    # order, 9008 on the wire. Ours is told the port.
    def port_args(tool: list[str], port: str) -> list[str]:
        return ["-p", port] if tool == OURS else []

    def port_for(tool: list[str]) -> str:
        return str(free_port(socket.SOCK_DGRAM)) if tool == OURS else "9008"

    def server_rr(tool: list[str]) -> float:
        port = port_for(tool)
        # Our client drives both servers at 1 ms, so only the server differs.
        return with_peer(
            [*OURS, "client", "127.0.0.1", "1", "-p", port, "-q"],
            [*tool, "server_rr", *port_args(tool, port)],
            seconds,
        )

    def client(tool: list[str]) -> float:
        port = port_for(tool)
        # Against our echo server, the same for both clients.
        cmd = (
            [*tool, "client", "127.0.0.1", "1", "-p", port]
            if tool == OURS
            else [*tool, "client_rr", "127.0.0.1", "1", "/dev/null"]
        )
        return with_peer([*OURS, "server_rr", "-p", port, "-q"], cmd, seconds)

    def idle_server(tool: list[str]) -> float:
        return window([*tool, "server_rr", *port_args(tool, port_for(tool))], seconds)

    out: list[tuple[str, Callable[[list[str]], float]]] = []
    for rate in ("20", "200", "2000"):
        for pattern in ("sequential", "random"):
            out.append((f"mm_dirty -r {rate} {pattern}", dirty(rate, pattern)))
    for rate in ("200", "2000"):
        out.append((f"mm_dirty -r {rate} --pace-ms 1000", dirty(rate, "sequential", "1000")))
    out += [
        ("server_rr at 1 ms probes", server_rr),
        ("client at 1 ms", client),
        ("idle server_rr", idle_server),
    ]
    return out


def cpu_rows(orig: list[str] | None, sleeper: list[str] | None, a: argparse.Namespace) -> None:
    print(f"CPU seconds over {a.seconds:g} s (start-up and prefault excluded)")
    if sleeper is None:
        print("  (no C compiler: the 1 ms wake-up floor is not measured)")
    for name, fn in scenarios(a.original, a.seconds):
        if a.only not in name:
            continue
        # The floor is for the 1 ms default pacing only.
        floor_here = sleeper if name.startswith("mm_dirty") and "pace" not in name else None
        ours, theirs, floor = [], [], []
        for _ in range(a.rounds):
            ours.append(fn(OURS))
            if orig:
                theirs.append(fn(orig))
            if floor_here:
                floor.append(window(floor_here, a.seconds))
        o = statistics.median(ours)
        line = f"  {name:28} ours {o:6.3f} s ({100 * o / a.seconds:5.2f}% of a core)"
        if orig:
            t = statistics.median(theirs)
            line += f"  original {t:6.3f} s  ours-original {o - t:+.3f} s"
            line += f" ({100 * (o - t) / a.seconds:+.2f}% of a core)"
            if floor:
                f = statistics.median(floor)
                line += f"  1 ms sleeper {100 * f / a.seconds:.2f}%,"
                line += f" ours-original-sleeper {100 * (o - t - f) / a.seconds:+.2f}%"
        print(line, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--original", help="the original mig_mon binary, for ratios")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--only", default="", help="run the scenarios whose name contains this")
    ap.add_argument("--no-startup", action="store_true", help="skip the start-up figures")
    a = ap.parse_args()
    orig = [a.original] if a.original else None
    with tempfile.TemporaryDirectory() as tmp:
        sleeper = build_sleeper(tmp)
        cpu_rows(orig, sleeper, a)
    if a.no_startup:
        return 0
    print("Start-up, median of 15 runs:")
    print(f"  mig_mon --version      {startup([*OURS[:1], '-m', 'migmon', '--version']):6.1f} ms")
    script = os.path.join(os.path.dirname(sys.executable), "mig_mon")
    if os.path.exists(script):
        print(f"  mig_mon (script) -v    {startup([script, '--version']):6.1f} ms")
        for sub in ("mm_dirty", "client", "vm"):
            print(f"  mig_mon {sub} -h{'':{12 - len(sub)}}{startup([script, sub, '-h']):6.1f} ms")
    print(f"  python -c pass         {startup([sys.executable, '-c', 'pass']):6.1f} ms")
    dirty = ["mm_dirty", "-m", "64", "-r", "100"]
    print("First dirty-rate line (64 MB, prefault ~10 ms, one interval of 1 s), median of 5:")
    ours_first = first_line([*OURS, *dirty])
    print(f"  ours                   {ours_first:6.1f} ms")
    if a.original:
        # The original's stdout is a pipe here: line-buffered by stdbuf.
        theirs = first_line(["stdbuf", "-oL", a.original, *dirty])
        late = ours_first - theirs
        print(f"  original               {theirs:6.1f} ms  (ours later by {late:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
