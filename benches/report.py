#!/usr/bin/env python3
"""The side-by-side performance report: every figure next to a peer in the
same run, in alternating rounds, as ratios; then each ratio against the
baseline kept in the repository (benches/baseline.json).

    scripts/bench.sh [--rounds 3] [--seconds 3] [--original BIN] [--out DIR]
    scripts/bench.sh --write-baseline        # two runs; medians and their spread

What it runs:

- the criterion benches of the core (`cargo bench --bench core -- --quick`):
  frames against memcpy, the page-request round trip against bare socket
  calls, the histogram against a Vec, the probe against a bare copy and a
  bare UDP echo, the pacer against Instant::now();
- precopy on loopback against iperf3's single stream (and the original,
  with --original), alternating;
- the probe round trip at 1 ms against sockperf's UDP ping-pong;
- CPU: mm_dirty at 200 MB/s and an idle server_rr (against the original's
  with --original), and a C program that only sleeps 1 ms in a loop (the
  machine's floor for 1000 wake-ups a second) when cc is there;
- start-up: `mig_mon --version` and `mig_mon mm_dirty -h` against
  `python -c pass`.

A peer that is not installed (iperf3, sockperf, cc) leaves its rows out and
says so. Writes DIR/report.json and DIR/report.md. A ratio that moved from
the baseline's by more than the baseline's own run-to-run spread (at least
5%) is marked.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cpu_bench
import downtime_bench
import precopy_bench
from _util import OURS

ROOT = Path(__file__).resolve().parent.parent
BASELINE = Path(__file__).resolve().parent / "baseline.json"

#: criterion figures: (name, ours, peer), both as group/function.
CRITERION = [
    ("frames: encode vs memcpy", "frames/encode", "frames/peer_memcpy"),
    ("frames: decode vs memcpy", "frames/decode", "frames/peer_memcpy"),
    ("page request round trip vs bare read/write", "page_request/round_trip",
     "page_request/peer_bare_read_write"),
    ("histogram: record 1000 vs Vec push", "histogram/record_1000", "histogram/peer_vec_push_1000"),
    ("histogram: percentiles vs sort 1000", "histogram/percentiles", "histogram/peer_sort_1000"),
    ("probe: encode+decode vs 24-byte copy", "probe/encode_decode", "probe/peer_copy_24_bytes"),
    ("probe: UDP echo turnaround vs bare echo", "probe/echo_turnaround", "probe/peer_echo_bare"),
    ("pacer: one step vs Instant::now", "pacer/advance", "pacer/peer_instant_now"),
]  # fmt: skip


def machine() -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit + ("+changes" if dirty else ""),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def criterion_rows(quick: bool) -> list[dict[str, Any]]:
    """The core benches once, their mean times (ns) and ratios to peers."""
    args = ["cargo", "bench", "--locked", "--bench", "core", "--", "--noplot"]
    if quick:
        args.append("--quick")
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        print(r.stderr[-2000:], file=sys.stderr)
        raise SystemExit("bench: cargo bench --bench core failed")
    base = ROOT / "target" / "criterion"

    def mean_ns(name: str) -> float:
        est = json.loads((base / name / "new" / "estimates.json").read_text())
        return float(est["mean"]["point_estimate"])

    rows = []
    for label, ours, peer in CRITERION:
        a, b = mean_ns(ours), mean_ns(peer)
        # Time per operation: lower is better, so the ratio is ours / peer.
        rows.append(row(label, [a], [b], "ns", lower_is_better=True))
    return rows


def row(
    label: str, ours: list[float], peer: list[float], unit: str, lower_is_better: bool
) -> dict[str, Any]:
    """One figure: per-round values, medians, the ratio of medians, and the
    spread of the per-round ratios (max - min, relative)."""
    ratios = [a / b for a, b in zip(ours, peer, strict=True) if b]
    mo, mp = statistics.median(ours), statistics.median(peer)
    return {
        "figure": label,
        "unit": unit,
        "lower_is_better": lower_is_better,
        "ours": ours,
        "peer": peer,
        "ours_median": mo,
        "peer_median": mp,
        "ratio": mo / mp if mp else None,
        "round_spread": (max(ratios) - min(ratios)) / statistics.median(ratios)
        if len(ratios) > 1
        else None,
    }


def alternating(rounds: int, ours: Any, peer: Any) -> tuple[list[float], list[float]]:
    a, b = [], []
    for i in range(rounds):
        # Alternate which goes first, so a slow patch of the machine is shared.
        if i % 2 == 0:
            a.append(ours())
            b.append(peer())
        else:
            b.append(peer())
            a.append(ours())
    return a, b


def build_sleeper(folder: str) -> list[str] | None:
    return cpu_bench.build_sleeper(folder)


def python_rows(a: argparse.Namespace, notes: list[str]) -> list[dict[str, Any]]:
    rows = []
    s = a.seconds
    if shutil.which("iperf3"):
        o, p = alternating(a.rounds, lambda: precopy_bench.ours(s), lambda: precopy_bench.iperf3(s))
        rows.append(row("precopy MB/s vs iperf3 single stream", o, p, "MB/s", False))
    else:
        notes.append("iperf3 is not installed (apt-get install iperf3): no precopy row")
    if a.original:
        o, p = alternating(
            a.rounds,
            lambda: precopy_bench.ours(s),
            lambda: precopy_bench.original(a.original, s),
        )
        rows.append(row("precopy MB/s vs the original", o, p, "MB/s", False))
    if shutil.which("sockperf"):
        o, p = alternating(
            a.rounds,
            lambda: downtime_bench.ours(s, 1.0)[0],
            lambda: downtime_bench.sockperf(s, 1000),
        )
        rows.append(row("probe RTT p50 us at 1 ms vs sockperf", o, p, "us", True))
    else:
        notes.append("sockperf is not installed (apt-get install sockperf): no probe RTT row")
    dirty = [*OURS, "mm_dirty", "-m", "256", "-r", "200"]
    with tempfile.TemporaryDirectory() as tmp:
        sleeper = build_sleeper(tmp)
        if a.original:
            orig = [a.original, "mm_dirty", "-m", "256", "-r", "200"]
            o, p = alternating(
                a.rounds, lambda: cpu_bench.window(dirty, s), lambda: cpu_bench.window(orig, s)
            )
            rows.append(row("mm_dirty 200 MB/s CPU s vs the original", o, p, "CPU s", True))
        if sleeper:
            o, p = alternating(
                a.rounds, lambda: cpu_bench.window(dirty, s), lambda: cpu_bench.window(sleeper, s)
            )
            rows.append(row("mm_dirty 200 MB/s CPU s vs a 1 ms sleeper in C", o, p, "CPU s", True))
        else:
            notes.append("no C compiler: the 1 ms sleeper floor is not measured")
    pass_ = [sys.executable, "-c", "pass"]
    for label, cmd in (
        ("start-up ms: --version vs python -c pass", [*OURS, "--version"]),
        ("start-up ms: mm_dirty -h vs python -c pass", [*OURS, "mm_dirty", "-h"]),
    ):
        o, p = alternating(
            a.rounds,
            lambda cmd=cmd: cpu_bench.startup(cmd, runs=5),  # type: ignore[misc]
            lambda: cpu_bench.startup(pass_, runs=5),
        )
        rows.append(row(label, o, p, "ms", True))
    return rows


def compare(rows: list[dict[str, Any]], baseline: dict[str, Any] | None) -> None:
    """Each ratio against the baseline's; moved when beyond its spread."""
    if not baseline:
        return
    base = {r["figure"]: r for r in baseline["rows"]}
    for r in rows:
        b = base.get(r["figure"])
        if not b or r["ratio"] is None or b.get("ratio") is None:
            continue
        change = r["ratio"] / b["ratio"] - 1
        tolerance = max(0.05, b.get("spread") or 0.0)
        r["baseline_ratio"] = b["ratio"]
        r["change"] = change
        worse = change > 0 if r["lower_is_better"] else change < 0
        r["moved"] = ("worse" if worse else "better") if abs(change) > tolerance else None


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    out = [
        f"# mig_mon performance report ({m['commit']}, {m['date']})",
        "",
        f"{m['cpus']} CPUs, {m['cpu']}, Linux {m['kernel']}, Python {m['python']}; "
        f"{report['rounds']} alternating rounds of {report['seconds']:g} s; "
        f"command: `{report['command']}`",
        "",
        "| figure | ours | peer | ratio | baseline | change |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
        base = f"{r['baseline_ratio']:.2f}x" if r.get("baseline_ratio") else "-"
        if r.get("change") is not None:
            change = f"{100 * r['change']:+.0f}%" + (f" **{r['moved']}**" if r["moved"] else "")
        else:
            change = "-"
        out.append(
            f"| {r['figure']} | {r['ours_median']:.4g} {r['unit']} | "
            f"{r['peer_median']:.4g} {r['unit']} | {ratio} | {base} | {change} |"
        )
    out += [
        "",
        "ratio: ours / peer (time, CPU, latency: lower is better; MB/s: higher is better). "
        "change: the ratio against the baseline's; **worse**/**better** when it moved by "
        "more than the baseline's run-to-run spread (at least 5%).",
    ]
    out += [f"- {n}" for n in report["notes"]]
    return "\n".join(out) + "\n"


def run_once(a: argparse.Namespace) -> dict[str, Any]:
    notes: list[str] = []
    if a.smoke:
        # CI runs the cargo benches once with `cargo bench -- --test`.
        notes.append("smoke run: the cargo benches are left to `cargo bench -- --test`")
        rows = python_rows(a, notes)
    else:
        rows = criterion_rows(a.quick) + ([] if a.core_only else python_rows(a, notes))
    return {
        "machine": machine(),
        "rounds": a.rounds,
        "seconds": a.seconds,
        "command": "scripts/bench.sh " + " ".join(sys.argv[1:]),
        "rows": rows,
        "notes": notes,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--original", help="the original mig_mon binary, for its rows")
    ap.add_argument("--out", default=str(ROOT / "bench-report"))
    ap.add_argument(
        "--quick",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="criterion's --quick (the default)",
    )
    ap.add_argument("--core-only", action="store_true", help="only the cargo benches")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="one short round of everything (CI: that none rots), no baseline",
    )
    ap.add_argument(
        "--write-baseline",
        action="store_true",
        help="run twice; keep the medians and their spread in benches/baseline.json",
    )
    a = ap.parse_args()
    if a.smoke:
        a.rounds, a.seconds = 1, 1.0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    report = run_once(a)
    if a.write_baseline:
        second = run_once(a)
        for r, s in zip(report["rows"], second["rows"], strict=True):
            r2 = s["ratio"]
            r["spread"] = abs(r["ratio"] - r2) / r["ratio"] if r["ratio"] and r2 else None
            r["ratio_second_run"] = r2
        BASELINE.write_text(json.dumps(report, indent=1) + "\n")
        print(f"baseline written: {BASELINE}")
    elif not a.smoke:
        baseline = json.loads(BASELINE.read_text()) if BASELINE.exists() else None
        if baseline is None:
            report["notes"].append("no baseline yet: scripts/bench.sh --write-baseline")
        compare(report["rows"], baseline)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    md = markdown(report)
    (out / "report.md").write_text(md)
    print(md)
    print(f"wrote {out / 'report.json'} and {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    sys.exit(main())
