"""``mig_mon plot`` and :mod:`migmon.plot`: every input kind, from our
output and from hand-written samples of the original's formats, becomes a
figure whose plotted data equals the parsed data."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from plot_inputs import (
    ORIGINAL_DIRTY,
    ORIGINAL_DIRTY_L,
    ORIGINAL_SPIKE_LOG,
    ORIGINAL_VM_DST,
    ORIGINAL_VM_SRC,
    lines_of,
    spans_of,
    write,
)

from conftest import assert_one_line_error, free_port, popen_cli, run_cli, stop_for
from migmon.parse import ParseError, parse_file, parse_text
from migmon.plot import plot_files, plot_series


def test_original_spike_log(tmp_path: Path) -> None:
    s = parse_text(ORIGINAL_SPIKE_LOG, "spike.log")
    assert s.kind == "downtime"
    assert s.x == [12.0, 30.0] and s.columns["delay_ms"] == [312.0, 1020.0]
    fig = plot_series([s])
    assert lines_of(fig) == [(s.x, s.columns["delay_ms"])]
    # -1 as the marker (as some writers put it) reads the same.
    s2 = parse_text(ORIGINAL_SPIKE_LOG.replace("18446744073709551615", "-1"))
    assert s2.x == s.x


def test_original_mm_dirty_text_with_and_without_latencies() -> None:
    s = parse_text(ORIGINAL_DIRTY)
    assert s.kind == "dirty"
    assert s.columns["rate_mb_s"] == [500, 498, 502]
    assert s.x == pytest.approx([1.0, 2.001, 3.0])
    fig = plot_series([s])
    assert len(fig.axes) == 2
    assert lines_of(fig, 0) == [(s.x, s.columns["rate_mb_s"])]
    assert lines_of(fig, 1) == [(s.x, s.columns["load_pct"])]
    s = parse_text(ORIGINAL_DIRTY_L)
    fig = plot_series([s])
    # Latencies on a log axis: p50 and p99 a decade apart stay apart.
    assert len(fig.axes) == 3 and fig.axes[2].get_yscale() == "log"
    assert [y for _, y in lines_of(fig, 2)] == [[1, 1], [3, 9], [40, 2100]]
    lo, hi = fig.axes[2].get_ylim()
    assert lo <= 0.5 and hi >= 2100


def test_original_vm_text() -> None:
    src = parse_text(ORIGINAL_VM_SRC)
    assert src.kind == "vm_src" and src.columns["rate_mb_s"] == [2900, 3010]
    assert lines_of(plot_series([src])) == [([1.0, 2.0], [2900.0, 3010.0])]
    dst = parse_text(ORIGINAL_VM_DST)
    assert dst.kind == "vm_dst"
    fig = plot_series([dst])
    assert [y for _, y in lines_of(fig)] == [[52, 47, 61], [2012, 3100, 2500]]


def test_overlay_has_a_legend_named_after_the_files(tmp_path: Path) -> None:
    a = write(tmp_path, "no-preempt.txt", ORIGINAL_VM_DST)
    b = write(tmp_path, "preempt.txt", ORIGINAL_VM_DST.replace("average 52", "average 30"))
    fig = plot_files([a, b])
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(x.startswith("no-preempt.txt") for x in labels)
    assert any(x.startswith("preempt.txt") for x in labels)


def test_our_json_of_mm_dirty_and_vm(tmp_path: Path) -> None:
    p = run_cli(
        "mm_dirty",
        "-m",
        "32",
        "-r",
        "100",
        "-L",
        "--duration",
        "2.2",
        "--interval",
        "0.5",
        "--json",
    )
    dirty = write(tmp_path, "dirty.json", p.stdout)
    s = parse_file(dirty)
    assert s.kind == "dirty" and len(s.x) == 4 and "p99_us" in s.columns
    fig = plot_files([dirty])
    assert lines_of(fig, 0) == [(s.x, s.columns["rate_mb_s"])]

    port = str(free_port(socket.SOCK_STREAM))
    port_proc = popen_cli("vm", "-d", "-p", port, "--json", "--interval", "0.5")
    try:
        time.sleep(1.0)
        src = run_cli(
            *("vm", "-s", "-H", "127.0.0.1", "-p", port, "-t", "precopy", "-t", "postcopy"),
            *("--channels", "2", "--duration", "2", "--interval", "0.5", "--json"),
        )
    finally:
        port_proc.send_signal(signal.SIGTERM)
        dst_out, _ = port_proc.communicate(timeout=15)
    src_file = write(tmp_path, "src.json", src.stdout)
    s = parse_file(src_file)
    assert s.kind == "vm_src" and {"channel0_mb_s", "channel1_mb_s"} <= set(s.columns)
    fig = plot_files([src_file])
    assert lines_of(fig)[0] == (s.x, s.columns["rate_mb_s"])
    assert len(lines_of(fig)) == 3  # total and two channels
    dst_file = write(tmp_path, "dst.json", dst_out)
    d = parse_file(dst_file)
    assert d.kind == "vm_dst" and len(d.x) >= 3
    assert lines_of(plot_files([dst_file]))[0] == (d.x, d.columns["avg_us"])


def test_our_json_of_a_downtime_run(tmp_path: Path) -> None:
    port = str(free_port(socket.SOCK_DGRAM))
    srv = popen_cli("server_rr", "-p", port)
    try:
        time.sleep(1.0)
        cli = popen_cli("client", "127.0.0.1", "10", "-p", port, "--duration", "2.5", "--json")
        time.sleep(1.0)
        stop_for(srv.pid, 0.3)
        out, _ = cli.communicate(timeout=30)
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.communicate(timeout=10)
    f = write(tmp_path, "client.json", out)
    s = parse_file(f)
    # The stop is one event; a busy machine may add a short stall of the
    # client's own (reported too, and drawn like any event).
    assert s.kind == "downtime" and len([e for e in s.events if e[1] >= 100]) == 1
    fig = plot_files([f])
    drawn = [(x, y) for xs, ys in lines_of(fig) for x, y in zip(xs, ys, strict=True)]
    assert sorted(drawn) == sorted((e[0], e[1]) for e in s.events)
    # The event is labelled with its blackout.
    assert any("ms" in t.get_text() for t in fig.axes[0].texts)


@pytest.mark.parametrize("ext", [".png", ".svg", ".pdf"])
def test_cli_writes_each_image_type(tmp_path: Path, ext: str) -> None:
    src = write(tmp_path, "spike.log", ORIGINAL_SPIKE_LOG)
    out = tmp_path / f"out{ext}"
    p = run_cli("plot", str(src), "-o", str(out))
    assert p.returncode == 0, p.stderr
    head = out.read_bytes()[:5]
    assert head.startswith({".png": b"\x89PNG", ".svg": b"<?xml", ".pdf": b"%PDF"}[ext])


def test_unreadable_inputs(tmp_path: Path) -> None:
    junk = write(tmp_path, "junk.txt", "hello\nworld\n")
    err = assert_one_line_error(run_cli("plot", str(junk), "-o", str(tmp_path / "x.png")), code=2)
    assert "junk.txt" in err and "not a spike log" in err
    assert_one_line_error(run_cli("plot", str(tmp_path / "missing"), "-o", str(tmp_path / "x.png")))
    a = write(tmp_path, "a.log", ORIGINAL_SPIKE_LOG)
    b = write(tmp_path, "b.txt", ORIGINAL_DIRTY)
    err = assert_one_line_error(run_cli("plot", str(a), str(b), "-o", str(tmp_path / "x.png")))
    assert "b.txt has no wall-clock times" in err
    assert_one_line_error(run_cli("plot", str(a), "-o", str(tmp_path / "x.gif")), code=2)
    with pytest.raises(ParseError):
        parse_text('{"type":"sample"}\n')


def test_without_matplotlib_says_how_to_install(tmp_path: Path) -> None:
    # A stand-in package that fails to import, ahead of the real one.
    fake = tmp_path / "fake" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    src = write(tmp_path, "spike.log", ORIGINAL_SPIKE_LOG)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "fake"))
    p = subprocess.run(
        [sys.executable, "-m", "migmon", "plot", str(src), "-o", str(tmp_path / "x.png")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    err = assert_one_line_error(p, code=1)
    assert "pip install 'mig_mon[plot]'" in err


CLIENT_JSON = """\
{"type":"config","tool":"client","interval_ms":5.0,"start_unix_s":1700000100.0}
{"type":"event","index":0,"start_unix_s":1700000105.5,"start_offset_s":5.5,"gap_ms":120.0,"blackout_ms":115.0}
{"type":"summary","sent":10}
"""
DIRTY_JSON = """\
{"type":"config","tool":"mm_dirty","start_unix_s":1700000098.0}
{"type":"sample","index":0,"elapsed_s":1.0,"unix_s":1700000099.0,"rate_mb_s":100.0,"load_pct":5.0}
{"type":"pause","index":0,"start_unix_s":1700000107.4,"start_offset_s":9.4,"length_ms":40.0,"threads":[0]}
{"type":"sample","index":1,"elapsed_s":10.0,"unix_s":1700000108.0,"rate_mb_s":90.0,"load_pct":5.0}
"""
QMP_EVENTS = """\
{"event": "STOP", "timestamp": {"seconds": 1700000105, "microseconds": 510000}}
{"event": "MIGRATION", "timestamp": {"seconds": 1700000105, "microseconds": 560000}}
{"event": "RESUME", "timestamp": {"seconds": 1700000105, "microseconds": 580000}}
"""
VIRSH_EVENTS = """\
2023-11-14 22:15:05.510+0000: event STOP for domain 'guest': <null>
2023-11-14 22:15:05.580+0000: event RESUME for domain 'guest': <null>
"""


def test_timeline_of_different_tools_and_qemu_events(tmp_path: Path) -> None:
    """Inputs of different tools share one wall-clock axis: the client's
    event, mm_dirty's pause and QEMU's STOP -> RESUME land where they were."""
    files = []
    for name, text in (("c.json", CLIENT_JSON), ("d.json", DIRTY_JSON), ("q.json", QMP_EVENTS)):
        (tmp_path / name).write_text(text)
        files.append(tmp_path / name)
    q = parse_file(files[2])
    assert q.kind == "qemu" and q.spans == [(0.0, pytest.approx(70.0), "STOP -> RESUME")]
    fig = plot_files(files)
    rate_ax = fig.axes[1]
    assert [ax.get_ylabel() for ax in fig.axes[:2]] == ["Reply gap (ms)", "Dirty rate (MB/s)"]
    # Time 0 is the earliest start (mm_dirty's): the client's event at +7.5 s.
    stems = fig.axes[0].lines[0]
    assert list(stems.get_xdata()) == [pytest.approx(7.5)]
    assert list(rate_ax.lines[0].get_xdata()) == [pytest.approx(1.0), pytest.approx(10.0)]
    spans = spans_of(rate_ax)
    # mm_dirty's pause (9.4 s, 40 ms) and QEMU's stop (7.51 s, 70 ms).
    assert (pytest.approx(9.4), pytest.approx(0.04)) in spans
    assert (pytest.approx(7.51), pytest.approx(0.07)) in spans
    assert "2023-11-14 22:14:58" in fig.axes[-1].get_xlabel()
    v = tmp_path / "v.log"
    v.write_text(VIRSH_EVENTS)
    assert parse_file(v).spans == [(0.0, pytest.approx(70.0), "STOP -> RESUME")]
    out = tmp_path / "t.png"
    r = run_cli("plot", *map(str, files), "-o", str(out))
    assert r.returncode == 0 and out.stat().st_size > 10_000


def test_timeline_needs_wall_clock_times(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(CLIENT_JSON)
    (tmp_path / "d.txt").write_text(ORIGINAL_DIRTY)
    r = run_cli("plot", str(tmp_path / "c.json"), str(tmp_path / "d.txt"))
    assert "d.txt has no wall-clock times" in assert_one_line_error(r, code=2)
    (tmp_path / "q.json").write_text(QMP_EVENTS)
    r = run_cli("plot", str(tmp_path / "q.json"))
    assert "QEMU's events alone" in assert_one_line_error(r, code=2)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (
            '{"type":"config","tool":"mm_dirty"}\n{"type":"sample"}\n',
            "line 2: no 'rate_mb_s' where the format has one",
        ),
        (
            '{"type":"config","tool":"client"}\n\n{"type":"event","gap_ms":1}\n',
            "line 3: no 'start_offset_s'",
        ),
        ('{"type":"config","tool":"mm_dirty"}\n[1, 2]\n', "line 2: not a JSON object"),
        ('{"type":"config","tool":"mm_dirty"}\n{"type":"sample",\n', "line 2: not JSON"),
        (
            '{"type":"config","tool":"mm_dirty"}\n'
            '{"type":"sample","elapsed_s":1,"rate_mb_s":null,"load_pct":1}\n',
            "line 2: rate_mb_s is null, not a number",
        ),
        (
            '{"type":"config","tool":"mm_dirty"}\n'
            '{"type":"sample","elapsed_s":true,"rate_mb_s":1,"load_pct":1}\n',
            "line 2: time is true, not a number",
        ),
        ('{"event":"STOP","timestamp":{"seconds":"x","microseconds":0}}\n', "line 1:"),
        ("\x00\x01binary", "binary data"),
    ],
)
def test_malformed_input_names_the_file_and_the_line(tmp_path: Path, text: str, why: str) -> None:
    f = tmp_path / "bad.json"
    f.write_text(text)
    err = assert_one_line_error(run_cli("plot", str(f), "-o", str(tmp_path / "x.png")), code=2)
    assert "bad.json" in err and why in err, err


def test_inputs_that_never_end_are_refused(tmp_path: Path) -> None:
    err = assert_one_line_error(run_cli("plot", "/dev/zero", "-o", str(tmp_path / "x.png")))
    assert "/dev/zero: a device" in err
    big = tmp_path / "big.log"
    with open(big, "wb") as f:
        f.truncate(257 * 2**20)  # sparse: no disk used
    r = run_cli("plot", str(big), "-o", str(tmp_path / "x.png"))
    err = assert_one_line_error(r, code=2)
    assert "more than 256 MB" in err or "binary data" in err
