"""The QEMU lab's guard against a host whose wall clock is stepped while it
judges: the captures', QEMU's and the lab's wall-clock times go back onto
the clock as it ran before the steps (scripts/lab/hostclock.py)."""

from __future__ import annotations

import json
import struct
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from lab.hostclock import WallClock, steady_files, steady_migration

T0 = 1_764_000_000.0

# Wall minus monotonic: constant, then the wall clock stepped +3.7 s at
# T0+10, then +0.5 ms at T0+20.
STEPPED = [(T0 + i * 0.5, 100.0) for i in range(20)]
STEPPED += [(T0 + 10 + 3.7 + i * 0.5, 103.7) for i in range(20)]
STEPPED += [(T0 + 20 + 3.7005 + i * 0.5, 103.7005) for i in range(20)]


def test_steady_undoes_the_steps() -> None:
    c = WallClock.of(STEPPED)
    assert c.stepped
    assert c.steady(T0 + 5) == pytest.approx(T0 + 5)
    # 1 s after the big step, the wall clock reads 3.7 s ahead.
    assert c.steady(T0 + 11 + 3.7) == pytest.approx(T0 + 11, abs=1e-9)
    assert c.steady(T0 + 21 + 3.7005) == pytest.approx(T0 + 21, abs=1e-9)
    s = c.summary()
    assert s["steps"] == 2 and s["largest_step_ms"] == pytest.approx(3700)
    assert s["moved_ms"] == pytest.approx(3700.5)


def test_an_unstepped_clock_changes_nothing(tmp_path: Path) -> None:
    c = WallClock.of([(T0 + i * 0.01, 50.0 + i * 1e-8) for i in range(100)])
    assert not c.stepped and c.summary()["steps"] == 0
    f = tmp_path / "client.json"
    f.write_text(json.dumps({"type": "event", "start_unix_s": T0 + 0.3, "gap_ms": 100.0}) + "\n")
    steady_files(c, [f])
    assert json.loads(f.read_bytes())["start_unix_s"] == pytest.approx(T0 + 0.3, abs=1e-6)


def test_the_real_sampler_sees_a_quiet_clock() -> None:
    c = WallClock(period_s=0.005).start()
    time.sleep(0.2)
    c.stop()
    s = c.summary()
    assert s["samples"] >= 10
    assert abs(s["moved_ms"]) < 0.2, s


def _pcap(times: list[float]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for t in times:
        sec, us = divmod(round(t * 1e6), 10**6)
        out += struct.pack("<IIII", sec, us, 4, 4) + b"abcd"
    return out


def _pcap_times(data: bytes) -> list[float]:
    out, off = [], 24
    while off + 16 <= len(data):
        sec, us, incl, _ = struct.unpack_from("<IIII", data, off)
        out.append(sec + us / 1e6)
        off += 16 + incl
    return out


def test_files_go_onto_the_steady_clock(tmp_path: Path) -> None:
    c = WallClock.of(STEPPED)
    pcap = tmp_path / "replies.pcap"
    pcap.write_bytes(_pcap([T0 + 9.9, T0 + 10.2 + 3.7]))
    trace = tmp_path / "q2.trace.log"
    trace.write_text(
        f"123@{T0 + 9.95:.6f}:vmstate_downtime_checkpoint src-vm-stopped\n"
        f"123@{T0 + 10.1 + 3.7:.6f}:vmstate_downtime_checkpoint dst-vm-started\n"
        "a line of its own\n"
    )
    qmp = tmp_path / "qmp.jsonl"
    sec, us = divmod(round((T0 + 10.15 + 3.7) * 1e6), 10**6)
    qmp.write_text(
        json.dumps(
            {
                "type": "qmp_event",
                "unix_s": T0 + 10.16 + 3.7,
                "event": {"event": "RESUME", "timestamp": {"seconds": sec, "microseconds": us}},
            }
        )
        + "\n"
    )
    # The client's event: measured on the monotonic clock (300 ms), put on
    # the wall clock when it ended, after the step.
    client = tmp_path / "client.json"
    client.write_text(
        "not json\n"
        + json.dumps({"type": "event", "start_unix_s": T0 + 9.9 + 3.7, "gap_ms": 300.0})
        + "\n"
    )
    assert len(steady_files(c, [pcap, trace, qmp, client, tmp_path / "absent"])) == 4
    got = _pcap_times(pcap.read_bytes())
    assert got[0] == pytest.approx(T0 + 9.9, abs=2e-6)
    assert got[1] - got[0] == pytest.approx(0.3, abs=2e-6)  # the wire's gap, unstepped
    lines = trace.read_text().splitlines()
    assert lines[0].startswith(f"123@{T0 + 9.95:.6f}:")
    assert lines[1].startswith(f"123@{T0 + 10.1:.6f}:") and lines[2] == "a line of its own"
    q = json.loads(qmp.read_text())
    assert q["unix_s"] == pytest.approx(T0 + 10.16, abs=1e-6)
    ts = q["event"]["timestamp"]
    assert ts["seconds"] + ts["microseconds"] / 1e6 == pytest.approx(T0 + 10.15, abs=2e-6)
    text = client.read_text().splitlines()
    assert text[0] == "not json"
    ev = json.loads(text[1])
    assert ev["start_unix_s"] == pytest.approx(T0 + 9.9, abs=1e-6)  # on the wire's time
    assert ev["gap_ms"] == 300.0


def test_a_migration_record_and_the_guest_offsets() -> None:
    c = WallClock.of(STEPPED)
    # The guest's clock runs on: measured against a host clock stepped +3.7 s
    # between the two readings, it seemed to fall 3.7 s behind.
    m = {
        "start_unix_s": T0 + 8.0, "stop_unix_s": T0 + 9.0, "resume_unix_s": T0 + 9.1 + 3.7,
        "offset_before_s": -0.002, "offset_before_at_unix_s": T0 + 7.9,
        "offset_after_s": -0.002 - 0.1 - 3.7, "offset_after_at_unix_s": T0 + 12 + 3.7,
    }  # fmt: skip
    steady_migration(c, m)
    assert m["resume_unix_s"] == pytest.approx(T0 + 9.1)
    assert m["guest_clock_lag_ms"] == pytest.approx(100.0, abs=1e-6)
