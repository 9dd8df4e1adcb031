"""mig_mon in a real QEMU guest across real live migrations, judged by QEMU's
own figures and a packet capture (scripts/qemu_lab.py does the work; this
test asserts its checks). Needs root: it makes a network namespace and taps,
and fetches QEMU and a kernel from Debian's packages into .lab/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (netns, taps, apt)"),
]


def test_real_migrations(tmp_path: Path) -> None:
    out = tmp_path / "lab.json"
    png = tmp_path / "lab.png"
    p = subprocess.run(
        [sys.executable, str(ROOT / "scripts/qemu_lab.py"), "--migrations", "3",
         "--multifd", "2", "4", "--json", str(out), "--plot", str(png)],
        capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    print(p.stdout)
    print(p.stderr[-4000:], file=sys.stderr)
    assert out.exists(), f"the lab did not finish (exit {p.returncode})"
    report = json.loads(out.read_text())
    failed = [k for k, ok in report["checks"].items() if not ok]
    assert not failed, f"lab checks failed: {failed}\n{p.stdout}"
    assert p.returncode == 0
    kinds = [m["kind"] for m in report["migrations"]]
    assert kinds == ["precopy"] * 3 + ["multifd 2", "multifd 4"], kinds
    # The multifd migrations sent their pages over the channels.
    assert all(m["multifd_bytes"] > 0 for m in report["migrations"][3:])
    assert png.stat().st_size > 10_000
    # `mig_mon plot` put the client, the guest's mm_dirty and QEMU's events
    # on one wall-clock axis.
    assert (tmp_path / "lab-timeline.png").stat().st_size > 10_000
    # Every figure the report promises is there, for every migration.
    for m in report["migrations"]:
        for key in ("total_time_ms", "downtime_ms", "stop_to_resume_ms", "transferred_mb",
                    "dirty_syncs", "dirty_pages_rate_mb_s", "wire_outage_ms",
                    "guest_clock_lag_ms", "mig_mon_outages"):  # fmt: skip
            assert m[key] is not None, key
        # The outage split into QEMU's phases (mig_mon switchover), and
        # where the time after RESUME went (the taps' captures).
        phases = m["switchover"]["phases"]
        assert {"ram_saved", "devices_saved", "dst_loaded", "resume", "first_reply"} <= {
            ph["key"] for ph in phases
        }
        assert m["after_resume"]["first_probe_at_destination_ms"] is not None
    # Then a postcopy migration and a postcopy-preempt one, the guest's
    # network probed through each (its checks are in report["checks"]:
    # completed, integrity, QEMU's blocktime against its trace).
    assert [pc["kind"] for pc in report["postcopy"]] == ["postcopy", "postcopy-preempt"]
    for pc in report["postcopy"]:
        assert pc["probes"]["received"] > 0 and pc["postcopy_requests"] > 0, pc
    assert report["qemu"].startswith("QEMU emulator version 10.0")
    assert "where each outage went" in p.stdout
    assert (tmp_path / "lab-switchover.png").stat().st_size > 10_000
