"""The lab's run from start to end, and its command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import lab as package
from lab.common import ENTRY, NETNS, ROOT, log, sh
from lab.fetch import QEMU_SUITES, fetch, qemu_version
from lab.guest import build_guest
from lab.hostclock import steady_files, steady_migration
from lab.judge import switchovers
from lab.links import shaped_links
from lab.net import net_down, net_up
from lab.qemu import Lab, accel_choice
from lab.report import plot, text_report
from lab.runs import boot, dirty_rate_check, migrations, postcopy_run
from migmon.switchover import explain_files
from migmon.switchover.report import plot_switchovers


async def run_lab(args: argparse.Namespace, built: dict[str, str]) -> dict[str, Any]:
    accel, why = accel_choice()
    lab = Lab(
        Path(args.lab_dir),
        Path(built["x"]),
        Path(built["kernel"]),
        Path(built["initrd"]),
        Path(built["image"]),
        accel,
        args.guest_mb,
        trace=args.qemu != "7.2",
    )
    report: dict[str, Any] = {
        "qemu": built["qemu"],
        "accel_reason": why,
        "settings": {
            k: getattr(args, k)
            for k in (
                "migrations",
                "probe_ms",
                "downtime_limit_ms",
                "max_bandwidth_mb",
                "migration_dirty_rate",
                "guest_mb",
            )
        },
    }
    (lab.lab / "qmp.jsonl").unlink(missing_ok=True)
    for old in lab.lab.glob("q*.trace.log"):
        old.unlink()
    vm = await boot(lab, report)
    try:
        report["dirty_rate"] = []
        for pattern in ("sequential", "random"):
            for rate in args.dirty_rates:
                r = await dirty_rate_check(vm, pattern, rate, 512)
                log(
                    f"dirty rate {pattern} {rate} MB/s: QEMU {r['qemu_dirty_rate_mb_s']} "
                    f"(expected {r['expected_qemu_mb_s']}, {r['error_pct']:+}%)"
                )
                report["dirty_rate"].append(r)
        vm = await migrations(lab, vm, args, report)
        if args.links:
            vm = await shaped_links(lab, vm, args, report)
        report["postcopy"] = []
        kinds = [False] * args.postcopy_runs + [True] * args.preempt_runs if args.postcopy else []
        for n, preempt in enumerate(kinds, start=1):
            try:
                vm, info = await postcopy_run(lab, vm, args, n, preempt)
                report["postcopy"].append(info)
            except (RuntimeError, TimeoutError, OSError) as e:
                # Said in the report, with what the guest printed: under TCG
                # with QEMU 7.2 the guest's kernel has crashed on the
                # destination in postcopy (corrupted memory). The guest is
                # gone: no further runs.
                panics = [
                    f.name
                    for f in lab.serial
                    if f.exists() and re.search(rb"Kernel panic|Oops", f.read_bytes())
                ]
                report["postcopy"].append(
                    {
                        "kind": "postcopy-preempt" if preempt else "postcopy",
                        "error": f"{type(e).__name__}: {e}"[:500],
                        "guest_oops_in": panics,
                        "checks": {"completed": False},
                    }
                )
                log(f"postcopy {n} failed: {e}; guest oops in {panics or 'no log'}")
                break
    finally:
        await lab.stop(vm)
        lab.wall.stop()
    report["host_clock"] = lab.wall.summary()
    if lab.wall.stepped:
        steady_files(
            lab.wall,
            [lab.lab / "qmp.jsonl", *(q.trace_log for q in lab.started if q.trace_log)],
        )
        for p in report.get("postcopy", []):
            steady_migration(lab.wall, p)
    switchovers(lab, report, args.probe_ms)
    cw = report["client_vs_wire"]
    checks = {
        "dirty_rate_within_10pct": all(abs(r["error_pct"]) <= 10 for r in report["dirty_rate"]),
        "mm_dirty_integrity_ok": report["mm_dirty"]["verified"] is True
        and report["mm_dirty"]["exit"] == 0,
        # Each event is on the wire, but those the client flags as its own.
        "every_event_on_the_wire": cw["unmatched_network_events"] == 0,
        "events_within_1ms_of_wire": (cw["max_gap_error_ms"] or 0.0) <= 1.0,
    }
    for i, m in enumerate(report["migrations"], start=1):
        checks |= {f"migration{i}.{k}": v for k, v in m["checks"].items()}
    for i, p in enumerate(report.get("postcopy", []), start=1):
        checks |= {f"postcopy{i}.{k}": v for k, v in p["checks"].items()}
    report["checks"] = checks
    report["ok"] = all(checks.values())
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=(package.__doc__ or "").split("\n\n")[0])
    ap.add_argument("--lab-dir", default=str(ROOT / ".lab"))
    ap.add_argument(
        "--qemu",
        choices=sorted(QEMU_SUITES),
        default="10.0",
        help="QEMU version: 10.0 from bookworm-backports (the lab's own apt lists), or 7.2",
    )
    ap.add_argument("--migrations", type=int, default=3)
    ap.add_argument("--guest-mb", type=int, default=1536)
    ap.add_argument("--dirty-rates", type=int, nargs="+", default=[50, 200])
    ap.add_argument("--migration-dirty-rate", type=int, default=100)
    ap.add_argument("--probe-ms", type=float, default=5.0)
    ap.add_argument(
        "--postcopy",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="end with postcopy migrations, the guest's network probed through them "
        "(default: on with QEMU 10.0; 7.2's guest crashed in most postcopy runs)",
    )
    ap.add_argument(
        "--postcopy-runs",
        type=int,
        default=1,
        metavar="N",
        help="with --postcopy: this many postcopy migrations, one after another",
    )
    ap.add_argument(
        "--preempt-runs",
        type=int,
        default=1,
        metavar="N",
        help="with --postcopy: then this many with postcopy-preempt (page requests "
        "answered on a channel of their own)",
    )
    ap.add_argument("--postcopy-dirty-rate", type=int, default=200)
    ap.add_argument(
        "--postcopy-probes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --postcopy: server_rr in the guest and the client outside during it",
    )
    ap.add_argument(
        "--links",
        type=int,
        nargs="*",
        default=[],
        metavar="MBIT",
        help="after the migrations, shape the migration stream's link with tbf at each "
        "rate and hold mig_mon vm against QEMU's own throughput on it (e.g. 200 1000)",
    )
    ap.add_argument("--link-seconds", type=float, default=4.0)
    ap.add_argument(
        "--multifd",
        type=int,
        nargs="*",
        default=[2, 4],
        metavar="N",
        help="after the precopy migrations, one multifd migration with each of these "
        "channel counts (none: --multifd)",
    )
    ap.add_argument("--downtime-limit-ms", type=int, default=300)
    ap.add_argument("--max-bandwidth-mb", type=int, default=256)
    ap.add_argument("--migration-timeout", type=float, default=300)
    ap.add_argument("--json", help="write the report here")
    ap.add_argument("--plot", help="write the plot here (PNG; needs matplotlib)")
    ap.add_argument("--inner", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.postcopy is None:
        args.postcopy = args.qemu != "7.2"
    if args.inner:
        report = asyncio.run(run_lab(args, json.loads(args.inner)))
        Path(args.lab_dir, "report.json").write_text(json.dumps(report, indent=1))
        return 0
    # SIGTERM, like Ctrl-C, still removes the namespace and what runs in it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        print("qemu_lab: needs root (network namespace, taps)", file=sys.stderr)
        return 2
    lab = Path(args.lab_dir)
    lab.mkdir(parents=True, exist_ok=True)
    x = fetch(lab, args.qemu)
    kernel, initrd, image = build_guest(lab, x, Path(sys.executable))
    built = {
        "x": str(x),
        "kernel": str(kernel),
        "initrd": str(initrd),
        "image": str(image),
        "qemu": qemu_version(x),
    }
    (lab / "report.json").unlink(missing_ok=True)
    net_up()
    try:
        argv = [sys.executable, str(ENTRY), *sys.argv[1:], "--inner", json.dumps(built)]
        rc = sh("ip", "netns", "exec", NETNS, *argv, check=False).returncode
    finally:
        net_down()
    if rc != 0 or not (lab / "report.json").exists():
        print(f"qemu_lab: the run failed (exit {rc}); logs in {lab}", file=sys.stderr)
        return 1
    report = json.loads((lab / "report.json").read_text())
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if args.plot:
        plot(report, lab, Path(args.plot))
        # The same run through `mig_mon plot`: the client (host), mm_dirty
        # (guest) and QEMU's events on one wall-clock axis.
        timeline = Path(args.plot).with_name(Path(args.plot).stem + "-timeline.png")
        mig_mon = str(Path(sys.executable).parent / "mig_mon")
        files = [str(lab / n) for n in ("client.json", "dirty.json", "qemu-events.jsonl")]
        sh(mig_mon, "plot", *files, "-o", timeline)
        # Each migration's outage cut into QEMU's phases.
        phases = Path(args.plot).with_name(Path(args.plot).stem + "-switchover.png")
        sws = explain_files(
            [lab / "client.json", lab / "qmp.jsonl", *sorted(lab.glob("q*.trace.log"))]
        )
        version = re.search(r"version (\S+)", report["qemu"])
        qemu = f"QEMU {version.group(1)}" if version else report["qemu"]
        plot_switchovers(
            sws,
            phases,
            f"Where each migration's outage went ({qemu}, {report['guest']['accel'].upper()})",
        )
        log(f"plots: {args.plot}, {timeline}, {phases}")
    print(text_report(report))
    # What this run left, for a person to open.
    written = [args.json, args.plot] if args.json or args.plot else []
    if args.plot:
        stem = Path(args.plot)
        written += [
            str(stem.with_name(stem.stem + "-timeline.png")),
            str(stem.with_name(stem.stem + "-switchover.png")),
        ]
    kept = sorted(
        str(p)
        for pat in ("*.json", "*.jsonl", "*.pcap", "q*.trace.log", "q*.serial.log")
        for p in lab.glob(pat)
    )
    print("files written: " + ", ".join(str(w) for w in written if w))
    print(f"in the lab folder ({lab}; rm -rf it to free the space): " + ", ".join(kept))
    return 0 if report["ok"] else 3


if __name__ == "__main__":
    sys.exit(main())
