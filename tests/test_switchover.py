"""`mig_mon switchover`: an outage split into QEMU's phases. The QEMU side
is real: tests/data holds the trace logs (-msg timestamp=on, -trace
vmstate_downtime_*) and QMP events of one local migration under QEMU 10.0.2
(TCG, no guest OS); the probes' side is written here around it, with known
lengths. The lab (test_qemu_lab.py) does the same with a real guest, real
probes and a capture."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_one_line_error, cli, json_lines
from migmon.switchover import Clock, explain_files
from migmon.switchover.sources import SourceError

DATA = Path(__file__).parent / "data"
SRC = DATA / "qemu10-src.trace.log"
DST = DATA / "qemu10-dst.trace.log"
EVENTS = DATA / "qemu10-events.jsonl"
#: From the logs: QEMU's STOP event and the destination's vm-started.
STOP = 1796038012.328545
TRACE_START = 1796038012.328442
VM_STARTED = 1796038012.342217


def client_json(path: Path, events: list[tuple[float, float]], interval_ms: float = 5.0) -> Path:
    """A client --json with outages ``(last_reply_unix_s, gap_ms)``."""
    lines: list[dict[str, Any]] = [
        {"type": "config", "tool": "client", "interval_ms": interval_ms, "start_unix_s": 1.79e9}
    ]
    for i, (last, gap) in enumerate(events):
        lines.append(
            {
                "type": "event",
                "index": i,
                "peer": "10.0.0.2:12323",
                "start_unix_s": last,
                "start_offset_s": 1.0,
                "gap_ms": gap,
                "blackout_ms": gap - interval_ms,
                "resolution_ms": interval_ms,
                "probes_missed": int(gap / interval_ms),
                "client_stall_ms": 0.0,
                "open": False,
            }
        )
    path.write_text("".join(json.dumps(o) + "\n" for o in lines))
    return path


def test_phases_split_the_outage_and_add_up(tmp_path: Path) -> None:
    last = TRACE_START - 0.0031
    gap = (VM_STARTED - last) * 1e3 + 120.0
    client = client_json(tmp_path / "client.json", [(last, gap)])
    [s] = explain_files([client, EVENTS, SRC, DST])
    assert s.kind == "precopy" and s.status == "completed"
    assert s.outage_ms == pytest.approx(gap, abs=1e-3)
    keys = [p.key for p in s.phases]
    assert keys == [
        "stop", "vm_stopped", "ram_saved", "devices_saved", "src_done", "dst_loaded",
        "bh_enter", "announced", "resume", "first_reply",
    ]  # fmt: skip
    # The phases are consecutive and add up to the gap.
    assert sum(p.length_ms for p in s.phases) == pytest.approx(gap, abs=0.01)
    for a, b in zip(s.phases, s.phases[1:], strict=False):
        assert b.start_ms == pytest.approx(a.start_ms + a.length_ms, abs=0.002)
    first = s.phases[0]
    assert first.length_ms == pytest.approx(3.1, abs=0.001)  # last reply -> trace's start
    assert s.phases[-1].length_ms == pytest.approx(120.0, abs=0.01)
    assert s.after_resume_ms == pytest.approx(120.0, abs=0.01)
    # Beyond one 5 ms probe interval after the resume; the 3.1 ms before
    # the stop is within one.
    assert s.unexplained_ms == pytest.approx(115.0, abs=0.01)
    assert s.stop_to_resume_ms == pytest.approx((VM_STARTED - TRACE_START) * 1e3, abs=0.001)
    # The devices QEMU's trace names, longest first.
    devices = next(p for p in s.phases if p.key == "devices_saved").devices
    assert devices[0][0] == "0000:00:02.0/virtio-net" and devices[0][1] == pytest.approx(1.215)
    loaded = next(p for p in s.phases if p.key == "dst_loaded").devices
    assert loaded[0][0] == "0000:00:02.0/virtio-net"
    assert s.checks == {"stop_after_last_reply": True, "resume_before_first_reply": True}


def test_qmp_alone_leaves_the_trace_phases_whole(tmp_path: Path) -> None:
    last = STOP - 0.002
    client = client_json(tmp_path / "client.json", [(last, 200.0)])
    [s] = explain_files([client, EVENTS])
    assert [p.key for p in s.phases] == ["stop", "src_done", "resume", "first_reply"]
    src_done = s.phases[1]
    assert src_done.note and "would split it" in src_done.note and "trace" in src_done.note
    assert sum(p.length_ms for p in s.phases) == pytest.approx(200.0, abs=0.01)


def test_probes_alone_give_one_phase_and_say_what_is_missing(tmp_path: Path) -> None:
    client = client_json(tmp_path / "client.json", [(STOP, 180.0), (STOP + 10, 30.0)])
    sws = explain_files([client])
    assert len(sws) == 2
    assert [len(s.phases) for s in sws] == [1, 1]
    assert sws[0].phases[0].length_ms == pytest.approx(180.0)


def test_an_outage_not_around_the_switchover_is_not_taken(tmp_path: Path) -> None:
    # A gap that ended before QEMU stopped the guest (another run's log).
    client = client_json(tmp_path / "client.json", [(STOP - 5.0, 100.0)])
    [s] = explain_files([client, EVENTS, SRC, DST])
    assert s.outage_ms is None
    assert any("no probe gap spans" in n for n in s.notes)
    assert s.phases[0].key == "vm_stopped"  # QEMU's phases are still told


def test_stop_before_the_last_reply_fails_the_check(tmp_path: Path) -> None:
    # The probes say the guest answered 2 ms after QEMU stopped it: the
    # clocks disagree (another host), which the check must catch.
    last = TRACE_START + 0.0045
    client = client_json(tmp_path / "client.json", [(last, 150.0)], interval_ms=5.0)
    [s] = explain_files([client, SRC, DST])
    assert s.checks["stop_after_last_reply"] is False
    assert any("out of QEMU's order" in n for n in s.notes)
    r = cli("switchover", str(client), str(SRC), str(DST))
    assert r.returncode == 3, r
    assert "checks FAILED: stop_after_last_reply" in r.stdout


def test_a_clock_offset_and_its_error(tmp_path: Path) -> None:
    # The prober's clock is 0.5 s ahead: with the offset given, the same
    # breakdown; with an error of 1 ms, phases finer than that are merged.
    last = TRACE_START - 0.0031
    client = client_json(tmp_path / "client.json", [(last + 0.5, 140.0)])
    [plain] = explain_files([client, SRC, DST])
    assert plain.outage_ms is None
    [s] = explain_files([client, SRC, DST], {"client.json": Clock("prober", -0.5, 0.0)})
    assert s.outage_ms == pytest.approx(140.0)
    [coarse] = explain_files([client, SRC, DST], {"client.json": Clock("prober", -0.5, 5.0)})
    assert len(coarse.phases) < len(s.phases)
    assert any(p.note and "clocks agree only" in p.note for p in coarse.phases)
    assert sum(p.length_ms for p in coarse.phases) == pytest.approx(140.0, abs=0.01)


def test_two_migrations_and_a_failed_one(tmp_path: Path) -> None:
    evs = [json.loads(x) for x in EVENTS.read_text().splitlines()]

    def shifted(dt: float) -> list[dict[str, Any]]:
        out = []
        for e in evs:
            e = json.loads(json.dumps(e))
            e["timestamp"]["seconds"] += int(dt)
            out.append(e)
        return out

    failed = [
        {"timestamp": {"seconds": 1796038100, "microseconds": 0}, "event": "STOP"},
        {
            "timestamp": {"seconds": 1796038100, "microseconds": 5000},
            "event": "MIGRATION",
            "data": {"status": "failed"},
        },
    ]
    log = tmp_path / "events.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in [*evs, *shifted(30), *failed]))
    client = client_json(
        tmp_path / "client.json", [(STOP - 0.001, 100.0), (STOP + 30 - 0.001, 100.0)]
    )
    sws = explain_files([client, log])
    assert [s.status for s in sws] == ["completed", "completed", "failed"]
    assert [s.outage_ms for s in sws[:2]] == [100.0, 100.0]
    assert any("failed" in n for n in sws[2].notes)
    r = cli("switchover", str(client), str(log))
    assert r.returncode == 0, r
    assert (
        "migration 3 (unknown, failed)" in r.stdout or "migration 3 (precopy, failed)" in r.stdout
    )


def test_qmp_record_gives_qemu_downtime_and_virsh_log_is_read(tmp_path: Path) -> None:
    rec = tmp_path / "qmp.jsonl"
    objs: list[dict[str, Any]] = [{"type": "config", "tool": "qmp_record"}]
    for e in (json.loads(x) for x in EVENTS.read_text().splitlines()):
        role = "dst" if e["event"] == "RESUME" else "src"
        objs.append({"type": "qmp_event", "role": role, "unix_s": 1.79e9, "event": e})
    objs.append(
        {
            "type": "query_migrate",
            "role": "src",
            "unix_s": STOP + 0.1,
            "reply": {
                "status": "completed",
                "downtime": 12,
                "total-time": 51,
                "ram": {"multifd-bytes": 4096},
            },
        }
    )
    rec.write_text("".join(json.dumps(o) + "\n" for o in objs))
    client = client_json(tmp_path / "client.json", [(STOP - 0.002, 90.0)])
    [s] = explain_files([client, rec])
    assert s.qemu_downtime_ms == 12.0
    assert s.kind == "precopy, multifd"  # from the record's query-migrate
    virsh = tmp_path / "virsh.log"
    virsh.write_text(
        "2026-11-30 10:00:00.100000+0000: event STOP for domain 'g': <null>\n"
        "2026-11-30 10:00:00.160000+0000: event RESUME for domain 'g': <null>\n"
    )
    t = 1796032800.1  # 2026-11-30 10:00:00.1 UTC
    client2 = client_json(tmp_path / "c2.json", [(t - 0.003, 150.0)])
    [v] = explain_files([client2, virsh])
    assert v.stop_to_resume_ms == pytest.approx(60.0, abs=0.01)
    assert v.outage_ms == 150.0


def test_json_and_plot_output(tmp_path: Path) -> None:
    client = client_json(tmp_path / "client.json", [(TRACE_START - 0.002, 150.0)])
    png = tmp_path / "phases.png"
    r = cli(
        "switchover", str(client), str(EVENTS), str(SRC), str(DST), "--json", "--plot", str(png)
    )
    assert r.returncode == 0, r
    [obj] = json_lines(r.stdout)
    assert obj["type"] == "switchover" and obj["outage_ms"] == 150.0
    assert sum(p["length_ms"] for p in obj["phases"]) == pytest.approx(150.0, abs=0.01)
    assert "device state saved" in r.stderr  # the text goes to stderr with --json
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("vmstate_downtime_checkpoint src-downtime-start\n", "without timestamps"),
        ('{"type": "config", "tool": "vm", "role": "src"}\n', "says nothing of a switchover"),
        ('{"timestamp": {"seconds": 1e400, "microseconds": 0}, "event": "STOP"}\n', "not"),
        ('{"timestamp": {"seconds": 99, "microseconds": 0}, "event": "STOP"}\n', "Unix time"),
        ("[" * 100000 + "\n", "not mig_mon"),
        ("{" * 100000 + "\n", "not JSON"),
        ('{"a": ' * 5000 + "1" + "}" * 5000 + "\n", "line 1"),
        (
            "2026-13-45 10:00:00.1+0000: event STOP for domain 'g': <null>\n",
            "impossible date",
        ),
        ("hello\n", "not mig_mon --json"),
        ("", "empty"),
        ("123@1796038012.1:some_other_trace x\n", "without the downtime trace points"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, content: str, needle: str) -> None:
    f = tmp_path / "in.log"
    f.write_text(content)
    r = cli("switchover", str(f))
    err = assert_one_line_error(r, 2)
    assert needle in err, err


def test_bad_flags(tmp_path: Path) -> None:
    assert_one_line_error(cli("switchover", str(SRC), "--clock", "nosuch=a,0,1"), 2)
    assert_one_line_error(cli("switchover", str(SRC), "--clock", f"{SRC.name}=a,x"), 2)
    assert_one_line_error(cli("switchover", str(SRC), "--plot", str(tmp_path / "a.txt")), 2)
    assert_one_line_error(cli("switchover", str(tmp_path / "missing.json")), 2)
    assert_one_line_error(cli("switchover", "/dev/null"), 2)
    with pytest.raises(SourceError):
        explain_files([tmp_path])


def test_qmp_record_refuses_bad_monitors(tmp_path: Path) -> None:
    out = tmp_path / "qmp.jsonl"
    assert_one_line_error(cli("qmp_record", "host:notaport", "-o", str(out)), 2)
    assert_one_line_error(cli("qmp_record", "a", "b", "-o", str(out), "--poll-ms", "0"), 2)
    r = cli("qmp_record", "unix:/nonexistent/qmp.sock", "--duration", "0.1", "-o", str(out))
    err = assert_one_line_error(r, 1)
    assert "cannot reach the src QMP monitor" in err
    assert not out.exists()  # nothing written for a monitor never reached
    # The client checks --qmp before it probes.
    r = cli("client", "127.0.0.1", "10", "--qmp", "a", "--qmp", "b", "--qmp", "c")
    assert "at most two monitors" in assert_one_line_error(r, 2)


QEMU = Path(__file__).resolve().parent.parent / ".lab/x-10.0/usr/bin/qemu-system-x86_64"
#: Marks a test that needs the QEMU the lab unpacks (tests/test_qemu_lab.py
#: runs first in a full run: checked when the test runs, not when collected).
needs_qemu = pytest.mark.qemu


@pytest.fixture
def qemu_pair(tmp_path: Path) -> Iterator[Path]:
    """Two real QEMU 10 processes (TCG, no guest OS), the second waiting
    for a migration on tmp_path/mig.sock; each has a monitor for the
    recorder (ROLE.qmp) and one to drive it (ROLE.drive), and logs the
    downtime trace points to ROLE.log."""
    if not QEMU.exists():
        pytest.skip("no QEMU 10 unpacked by the lab (.lab/x-10.0): run tests/test_qemu_lab.py")
    share = QEMU.parent.parent / "share"
    base = [
        str(QEMU), "-L", str(share / "qemu"), "-L", str(share / "seabios"),
        "-machine", "pc", "-accel", "tcg", "-m", "64", "-nodefaults", "-display", "none",
        "-msg", "timestamp=on", "-trace", "vmstate_downtime_checkpoint",
        "-trace", "vmstate_downtime_save", "-trace", "vmstate_downtime_load",
    ]  # fmt: skip
    procs = []
    for role in ("src", "dst"):
        argv = [*base, "-D", str(tmp_path / f"{role}.log")]
        for sock in ("qmp", "drive"):
            argv += ["-qmp", f"unix:{tmp_path / role}.{sock},server=on,wait=off"]
        if role == "dst":
            argv += ["-incoming", f"unix:{tmp_path / 'mig.sock'}"]
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        for role in ("src", "dst"):
            for _ in range(200):
                if (tmp_path / f"{role}.drive").exists():
                    break
                time.sleep(0.05)
        yield tmp_path
    finally:
        for p in procs:
            p.kill()
            p.wait()


async def _migrate(d: Path) -> None:
    from qemu.qmp import QMPClient

    c = QMPClient("test")
    await c.connect(str(d / "src.drive"))
    await c.execute("migrate", {"uri": f"unix:{d / 'mig.sock'}"})
    for _ in range(600):
        q = await c.execute("query-migrate")
        if isinstance(q, dict) and q.get("status") in ("completed", "failed"):
            break
        await asyncio.sleep(0.05)
    await c.disconnect()


@needs_qemu
def test_recorder_against_a_real_qemu_migration(qemu_pair: Path) -> None:
    """The recorder on two real QEMU 10 monitors, a real migration, and the
    breakdown of what it and QEMU's trace wrote."""
    from migmon.switchover import QmpRecorder

    d = qemu_pair
    out = d / "qmp.jsonl"
    mon = {r: f"unix:{d / r}.qmp" for r in ("src", "dst")}
    with QmpRecorder(out, mon, poll_s=0.05, trace=True):
        asyncio.run(_migrate(d))
        time.sleep(0.5)
    objs = json_lines(out.read_text())
    names = [o["event"]["event"] for o in objs if o["type"] == "qmp_event"]
    assert "STOP" in names and "RESUME" in names
    # The events capability was turned on by the recorder.
    assert "MIGRATION" in names
    assert any(o["type"] == "query_migrate" for o in objs)
    [s] = explain_files([out, d / "src.log", d / "dst.log"])
    assert s.status == "completed" and s.qemu_downtime_ms is not None
    assert {"vm_stopped", "ram_saved", "devices_saved", "dst_loaded", "resume"} <= {
        p.key for p in s.phases
    }


@needs_qemu
def test_client_qmp_splits_an_outage_around_a_real_migration(qemu_pair: Path) -> None:
    """`client --qmp`: the echo server is stopped (SIGSTOP) for a known time
    around a real migration of an empty guest, so the client's outage spans
    QEMU's STOP..RESUME; at the end the client prints the breakdown."""
    import signal

    from conftest import free_port, popen_cli

    d = qemu_pair
    port = free_port(socket.SOCK_DGRAM)
    echo = popen_cli("server_rr", "-p", str(port))
    client = popen_cli(
        "client", "127.0.0.1", "5", "-p", str(port), "--json",
        "--qmp", f"unix:{d / 'src.qmp'}", "--qmp", f"unix:{d / 'dst.qmp'}",
        "--qmp-out", str(d / "qmp.jsonl"),
    )  # fmt: skip
    try:
        time.sleep(1.5)
        echo.send_signal(signal.SIGSTOP)
        time.sleep(0.2)
        asyncio.run(_migrate(d))
        time.sleep(0.2)
        echo.send_signal(signal.SIGCONT)
        time.sleep(1.0)
        client.send_signal(signal.SIGINT)
        out, err = client.communicate(timeout=30)
    finally:
        echo.send_signal(signal.SIGCONT)
        echo.terminate()
        echo.wait(10)
    assert client.returncode == 0, err
    [s] = [o for o in json_lines(out) if o["type"] == "switchover"]
    assert s["outage_ms"] >= 400
    assert s["checks"] == {"stop_after_last_reply": True, "resume_before_first_reply": True}
    assert sum(p["length_ms"] for p in s["phases"]) == pytest.approx(s["outage_ms"], abs=0.01)
    assert "first reply after the resume" in err
