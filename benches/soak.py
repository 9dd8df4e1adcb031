#!/usr/bin/env python3
"""Soak: every tool running together for a long time on loopback, watched
from outside. A UDP probe pair (`client` at 1 ms against `server_rr`) and a
vm pair (`--channels 2 --preempt`, precopy and postcopy) run for
``--minutes``; every minute the RSS, open descriptors, threads and CPU of
each process are recorded; at the end each is stopped with SIGINT and its
summary read. None of these should grow, and the probe pair should report
no loss, no refusals and no events that the machine's own load (recorded
beside them) does not explain.

    .venv/bin/python benches/soak.py [--minutes 30] [--vm-rate 500M] [--json FILE]

The vm stream is capped (``--vm-rate``, default 500 MB/s) so that the two
pairs share this 2-core machine without one starving the other; give
``--vm-rate 0`` for an uncapped stream.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _util import OURS, cpu_s, free_port, json_lines


def proc_figures(pid: int) -> dict[str, float]:
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(x.split()[1]) for x in f if x.startswith("VmRSS")) / 1024
    return {
        "rss_mb": round(rss, 1),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": len(os.listdir(f"/proc/{pid}/task")),
        "cpu_s": cpu_s(pid),
    }


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--vm-rate", default="500M", help="vm stream cap (0: none)")
    ap.add_argument("--json", help="write the report here")
    a = ap.parse_args()
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"mig_mon_soak_{os.getpid()}"
    work.mkdir()
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str, *args: str) -> None:
        procs[name] = subprocess.Popen(
            [*OURS, *args],
            stdout=open(work / f"{name}.out", "wb"),  # noqa: SIM115
            stderr=open(work / f"{name}.err", "wb"),  # noqa: SIM115
        )

    start("server_rr", "server_rr", "-p", str(udp), "--json", "-q")
    start("vm_dst", "vm", "-d", "-p", str(tcp), "--bind", "127.0.0.1", "--json", "-q")
    time.sleep(1.0)
    start("client", "client", "127.0.0.1", "1", "-p", str(udp), "--json", "-q")
    vm_args = [
        *("vm", "-s", "-H", "127.0.0.1", "-p", str(tcp)),
        *("-t", "precopy", "-t", "postcopy", "--channels", "2", "--preempt", "--json", "-q"),
    ]
    if a.vm_rate not in ("0", ""):
        vm_args += ["--max-bandwidth", a.vm_rate]
    start("vm_src", *vm_args)
    samples: list[dict[str, Any]] = []
    t0 = time.monotonic()
    end = t0 + a.minutes * 60
    try:
        while time.monotonic() < end:
            time.sleep(min(60.0, max(0.0, end - time.monotonic())))
            row: dict[str, Any] = {
                "minute": round((time.monotonic() - t0) / 60, 2),
                "loadavg": loadavg(),
            }
            for name, p in procs.items():
                if p.poll() is not None:
                    row[name] = {"exited": p.returncode}
                else:
                    row[name] = proc_figures(p.pid)
            samples.append(row)
            print(json.dumps(row), flush=True)
    finally:
        for name in ("client", "vm_src", "vm_dst", "server_rr"):
            p = procs[name]
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
    summaries = {}
    for name in procs:
        objs = json_lines((work / f"{name}.out").read_text())
        summaries[name] = [o for o in objs if o.get("type") == "summary"]
    client = (summaries["client"] or [{}])[-1]
    src = (summaries["vm_src"] or [{}])[-1]
    report = {
        "minutes": a.minutes,
        "vm_rate": a.vm_rate,
        "samples": samples,
        "client": {
            k: client.get(k)
            for k in (
                "sent",
                "received",
                "lost",
                "refused",
                "duplicates",
                "send_errors",
                "client_stalled_events",
                "total_downtime_ms",
                "worst_downtime_ms",
                "max_gap_ms",
            )
        }
        | {"events": len(client.get("events", []))},
        "client_events": client.get("events", []),
        "vm_src": {k: src.get(k) for k in ("bytes", "rate_mb_s", "requests", "end", "end_reason")},
        "growth": {
            name: {
                k: round(samples[-1][name][k] - samples[0][name][k], 2)
                for k in ("rss_mb", "fds", "threads")
            }
            for name in procs
            if samples and "rss_mb" in samples[0][name] and "rss_mb" in samples[-1][name]
        },
        "work_dir": str(work),
    }
    print(json.dumps({k: v for k, v in report.items() if k not in ("samples",)}, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
