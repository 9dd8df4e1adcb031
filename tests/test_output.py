"""Each tool's output module writes a format and reads it back: the writer
and the parser are tested as a pair, on real results, and the text formats
also against lines as the original tool prints them (the referee)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

import migmon
from migmon.output import dirty as out_dirty
from migmon.output import downtime as out_downtime
from migmon.output import emit, emit_json
from migmon.output import vm as out_vm
from migmon.parse import parse_text


@pytest.fixture(scope="module")
def dirty_run() -> migmon.DirtySummary:
    return migmon.mm_dirty(16, 200, duration_s=0.65, interval_s=0.1, record_latency=True)


def test_dirty_text_pair(dirty_run: migmon.DirtySummary) -> None:
    lines = [out_dirty.sample_line(s) for s in dirty_run.samples]
    series = parse_text("\n".join(lines))
    assert series.kind == "dirty"
    assert series.columns["rate_mb_s"] == [round(s.rate_mb_s) for s in dirty_run.samples]
    assert series.columns["load_pct"] == [round(s.load_pct, 2) for s in dirty_run.samples]
    assert series.columns["p99_us"] == [
        s.latency.p99_ns // 1000 for s in dirty_run.samples if s.latency
    ]
    assert series.x[-1] == pytest.approx(sum(s.duration_ms for s in dirty_run.samples) / 1000)


def test_dirty_text_reads_the_originals_lines() -> None:
    # The original's printf: "dirty-rate: %.0f (MB/s), time (ms): %lu, load: %.2f%%".
    original = ["dirty-rate: 100 (MB/s), time (ms): 1000, load: 0.42%"] * 3
    series = parse_text("\n".join(["Binary version: \t0.2", *original]))
    assert series.columns["rate_mb_s"] == [100.0] * 3
    assert series.x == [1.0, 2.0, 3.0]


def test_dirty_json_pair(dirty_run: migmon.DirtySummary) -> None:
    buf = io.StringIO()
    emit_json({"type": "config", "tool": "mm_dirty"}, buf)
    for s in dirty_run.samples:
        emit(s, buf)
    emit(dirty_run, buf)
    objs = [json.loads(x) for x in buf.getvalue().splitlines()]
    # The summary line is to_dict(), plus the wall-clock time it was written.
    last = objs[-1]
    assert last.pop("unix_s") > 1.6e9
    assert last == json.loads(json.dumps(dirty_run.to_dict()))
    series = parse_text(buf.getvalue())
    assert series.x == [s.elapsed_s for s in dirty_run.samples]
    assert series.columns["rate_mb_s"] == [s.rate_mb_s for s in dirty_run.samples]


def test_dirty_buckets_lines(dirty_run: migmon.DirtySummary) -> None:
    assert dirty_run.buckets_us is not None
    lines = out_dirty.latency_buckets_lines(dirty_run.buckets_us)
    assert lines[0] == "Memory Latencies:" and len(lines) == 22
    assert sum(int(x.rsplit(": ", 1)[1]) for x in lines[1:]) == dirty_run.bytes // 4096


@pytest.fixture(scope="module")
def vm_run() -> tuple[migmon.VmSrcSummary, list[migmon.VmDstSample]]:
    with migmon.VmDestination(bind="127.0.0.1", port=0, vm_size_gb=1, interval_s=0.2) as d:
        s = migmon.vm_source(
            "127.0.0.1", port=d.port, vm_size_gb=1, postcopy=True, duration_s=0.9, interval_s=0.2
        )
        d.stop()
        samples = [m for m in d.drain() if isinstance(m, migmon.VmDstSample)]
    return s, samples


def test_vm_text_pairs(vm_run: tuple[migmon.VmSrcSummary, list[migmon.VmDstSample]]) -> None:
    src, dst = vm_run
    series = parse_text("\n".join(out_vm.speed_line(s) for s in src.samples))
    assert series.kind == "vm_src"
    assert series.columns["rate_mb_s"] == [int(s.rate_mb_s) for s in src.samples]
    with_requests = [s for s in dst if s.latency.count]
    assert with_requests
    series = parse_text("\n".join(out_vm.latency_line(s, False) for s in with_requests))
    assert series.kind == "vm_dst"
    assert series.columns["max_us"] == [s.latency.max_ns // 1000 for s in with_requests]
    assert series.columns["p50_us"] == [round(s.latency.p50_ns / 1000, 1) for s in with_requests]
    # The original's destination line alone (no tail) still reads.
    assert parse_text("Latency: average 40 (us), max: 90 (us)").columns["avg_us"] == [40.0]


def test_vm_json_pairs(vm_run: tuple[migmon.VmSrcSummary, list[migmon.VmDstSample]]) -> None:
    src, dst = vm_run
    buf = io.StringIO()
    emit_json({"type": "config", "tool": "vm", "role": "src"}, buf)
    for s in src.samples:
        emit(s, buf)
    assert parse_text(buf.getvalue()).columns["rate_mb_s"] == [s.rate_mb_s for s in src.samples]
    buf = io.StringIO()
    emit_json({"type": "config", "tool": "vm", "role": "dst"}, buf)
    for d in dst:
        emit(d, buf)
    series = parse_text(buf.getvalue())
    assert series.columns["p99_us"] == [d.latency.p99_ns / 1000 for d in dst if d.latency.count]


def test_spike_log_pair(tmp_path: Path) -> None:
    path = str(tmp_path / "spike.log")
    log = out_downtime.SpikeLog(path)
    log.marker()
    log.spike(301.7)
    log.spike(12.2)
    log.close()
    text = Path(path).read_text()
    assert text.splitlines()[0].endswith(f",{out_downtime.SPIKE_LOG_MARKER}")
    series = parse_text(text)
    assert series.kind == "downtime"
    assert series.columns["delay_ms"] == [301.0, 12.0]


def test_downtime_json_pair() -> None:
    with migmon.EchoServer(bind="127.0.0.1", port=0) as srv:
        r = migmon.probe("127.0.0.1", 2, port=srv.port, count=30)
    buf = io.StringIO()
    emit_json({"type": "config", "tool": "client"}, buf)
    emit(r, buf)
    series = parse_text(buf.getvalue())
    assert series.events == [(e.start_offset_s, e.gap_ms, e.blackout_ms) for e in r.events]
    lines = out_downtime.probe_summary_lines(r)
    assert lines[0].startswith(f"Summary: sent {r.sent}, received {r.received}")
    assert any(x.startswith("Total downtime: ") for x in lines)


def test_one_timeline_every_json_object_has_wall_clock_time(tmp_path: Path) -> None:
    from conftest import run_cli

    p = run_cli("mm_dirty", "-m", "16", "-r", "50", "--duration", "0.7", "--interval", "0.2",
                "--json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    objs = [json.loads(x) for x in p.stdout.splitlines()]
    cfg = objs[0]
    assert cfg["type"] == "config" and "clocks" in cfg and cfg["start_unix_s"] > 1.6e9
    for o in objs[1:]:
        assert o["unix_s"] >= cfg["start_unix_s"], o
    samples = [o for o in objs if o["type"] == "sample"]
    # elapsed_s and unix_s advance together (to a few ms).
    d_elapsed = samples[-1]["elapsed_s"] - samples[0]["elapsed_s"]
    d_unix = samples[-1]["unix_s"] - samples[0]["unix_s"]
    assert abs(d_elapsed - d_unix) < 0.05


def test_timestamped_text_still_parses(tmp_path: Path) -> None:
    from conftest import run_cli

    p = run_cli("mm_dirty", "-m", "16", "-r", "50", "--duration", "0.7", "--interval", "0.2",
                "--timestamps")  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert all(line.startswith("[20") for line in p.stdout.splitlines() if line)
    series = parse_text(p.stdout)
    assert series.kind == "dirty" and len(series.x) == 3


def test_details_table_names_each_figure_once_in_its_unit() -> None:
    """--details: no name twice (cpu_pct and cpu_s were both "cpu"), small
    byte counts in B/KiB (3600 was "0.0 MiB"), Unix times as wall-clock
    dates (not "1,796,030,368.754 s"), and every line stamped under
    --timestamps."""
    from conftest import run_cli
    from migmon.output import summary_rows

    rows = dict(
        summary_rows(
            {"cpu_pct": 3.2, "cpu_s": 1.5, "bytes": 3600, "start_unix_s": 1.7e9, "rate_mb_s": 5}
        )
    )
    assert rows["cpu (%)"] == "3.20 %" and rows["cpu (s)"] == "1.500 s"
    assert rows["bytes"] == "3.5 KiB"
    assert re.fullmatch(r"20\d\d-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", rows["start (wall clock)"])
    assert rows["rate"] == "5.0 MB/s"
    p = run_cli("mm_dirty", "-m", "32", "-r", "100", "--duration", "1", "--details", "--timestamps")
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    title = next(i for i, line in enumerate(out) if "mm_dirty summary" in line)
    lines = [line for line in out[title:] if line.strip()]
    assert len(lines) > 5 and all(line.startswith("[20") for line in lines), lines
    names = [line.split("│")[1].strip() for line in lines if line.count("│") == 3]
    assert len(names) == len(set(names)) > 5, names
