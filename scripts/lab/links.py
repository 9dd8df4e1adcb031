"""mig_mon vm against QEMU's own migration stream on tbf-shaped links."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lab.common import TAPS, log, sh
from lab.qemu import Lab, Qemu, json_objs
from lab.runs import migrate


def emulator_mbit(seconds: float, channels: int) -> float:
    """`mig_mon vm` precopy over this namespace's loopback (shaped like the
    migration stream), Mbit/s."""
    mig_mon = str(Path(sys.executable).parent / "mig_mon")
    port = "4455"
    dst = subprocess.Popen(
        [mig_mon, "vm", "-d", "-p", port, "--bind", "127.0.0.1", "-q", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        time.sleep(1.0)
        argv = [mig_mon, "vm", "-s", "-H", "127.0.0.1", "-p", port, "--duration", str(seconds)]
        argv += ["-q"] + (["--channels", str(channels)] if channels else [])
        sh(*argv, capture_output=True, timeout=seconds + 60)
        time.sleep(0.5)
    finally:
        dst.send_signal(signal.SIGINT)
        out, _ = dst.communicate(timeout=10)
    # What the destination received (the source's count includes what its
    # socket buffers took at the start: 4 channels "sent" 224 Mbit/s over a
    # 200 Mbit/s link in 4 s).
    session = next(o for o in json_objs(out) if o.get("type") == "session")
    return float(session["bytes"]) * 8 / 1e6 / float(session["duration_s"])


async def shaped_links(
    lab: Lab, vm: Qemu, args: argparse.Namespace, report: dict[str, Any]
) -> Qemu:
    """The `vm` emulator held against QEMU on the same shaped link: the
    migration stream's loopback in the lab's namespace shaped with tbf, QEMU
    migrating with max-bandwidth lifted (precopy, multifd 4), mig_mon vm
    precopy with 1 and 4 channels. Mbit/s throughout."""
    lifted = argparse.Namespace(**{**vars(args), "max_bandwidth_mb": 100_000})
    rows = []
    for mbit in args.links:
        burst = "256kb" if mbit <= 500 else "512kb"
        shape = ["tc", "qdisc", "replace", "dev", "lo", "root", "tbf"]
        sh(*shape, "rate", f"{mbit}mbit", "burst", burst, "latency", "50ms")
        try:
            emu1 = emulator_mbit(args.link_seconds, 0)
            emu4 = emulator_mbit(args.link_seconds, 4)
            qemu: dict[str, Any] = {}
            for channels in (0, 4):
                tap = TAPS[0] if vm.tap == TAPS[1] else TAPS[1]
                vm, info = await migrate(lab, vm, tap, lifted, multifd=channels)
                active_s = (info["total_time_ms"] - (info["setup_time_ms"] or 0)) / 1e3
                qemu[f"ch{channels}"] = {
                    "mbps_median": info["qemu_mbps_active_median"],
                    "avg_mbit": round(info["transferred_mb"] * 8 / active_s, 1),
                    "transferred_mb": info["transferred_mb"],
                    "total_time_ms": info["total_time_ms"],
                }
        finally:
            sh("tc", "qdisc", "del", "dev", "lo", "root", check=False)
        row = {
            "link_mbit": mbit,
            "emulator_mbit": round(emu1, 1),
            "emulator_4ch_mbit": round(emu4, 1),
            "qemu_mbit": qemu["ch0"]["mbps_median"],
            "qemu_multifd4_mbit": qemu["ch4"]["mbps_median"],
            "qemu": qemu,
        }
        for k, e, q in (("1ch", emu1, row["qemu_mbit"]), ("4ch", emu4, row["qemu_multifd4_mbit"])):
            row[f"emulator_vs_qemu_{k}_pct"] = round(100 * (e - q) / q, 1) if q else None
        log(
            f"link {mbit} Mbit/s: mig_mon vm {emu1:.0f} (4 channels {emu4:.0f}), QEMU "
            f"{row['qemu_mbit']} (multifd 4 {row['qemu_multifd4_mbit']}) Mbit/s"
        )
        rows.append(row)
    report["links"] = rows
    return vm
