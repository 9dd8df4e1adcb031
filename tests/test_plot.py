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

from conftest import assert_one_line_error, free_port, popen_cli, run_cli
from migmon.parse import ParseError, parse_file, parse_text
from migmon.plot import plot_files, plot_series

ORIGINAL_SPIKE_LOG = """\
1700000000,18446744073709551615
1700000012,312
1700000030,1020
"""

ORIGINAL_DIRTY = """\
Binary version: \t0.2.5
Test memory size: \t512 (MB)
+------------------------+
|   Start Dirty Memory   |
+------------------------+
dirty-rate: 500 (MB/s), time (ms): 1000, load: 12.50%
dirty-rate: 498 (MB/s), time (ms): 1001, load: 12.71%
dirty-rate: 502 (MB/s), time (ms): 999, load: 12.40%
"""

ORIGINAL_DIRTY_L = """\
dirty-rate: 500 (MB/s), time (ms): 1000, load: 12.50%, lat (us): p50=1 p99=3 max=40
dirty-rate: 499 (MB/s), time (ms): 1000, load: 12.60%, lat (us): p50=1 p99=9 max=2100
"""

ORIGINAL_VM_SRC = """\
Start emulation of src VM.
Connected to dst VM 10.0.0.2.
Starting PRECOPY streaming test...
Speed: 2900 (MB/s)
Speed: 3010 (MB/s)
"""

ORIGINAL_VM_DST = """\
Start emulation of dst VM.
Connected from src VM 10.0.0.1.
Starting POSTCOPY request-response test...
Latency: average 52 (us), max: 2012 (us)
Latency: average 47 (us), max: 3100 (us)
Latency: average 61 (us), max: 2500 (us)
"""


def lines_of(fig: object, ax: int = 0) -> list[tuple[list[float], list[float]]]:
    a = fig.axes[ax]  # type: ignore[attr-defined]
    return [(list(x.get_xdata()), list(x.get_ydata())) for x in a.get_lines()]


def spans_of(ax: object) -> list[tuple[float, float]]:
    """(x, width) of every shaded span: patches (axvspan) and the bars of
    the collections that shade many at once (broken_barh)."""
    out = [(p.get_x(), p.get_width()) for p in ax.patches]  # type: ignore[attr-defined]
    for c in ax.collections:  # type: ignore[attr-defined]
        if type(c).__name__ == "LineCollection":
            continue
        for path in c.get_paths():
            xs = path.vertices[:, 0]
            out.append((float(xs.min()), float(xs.max() - xs.min())))
    return out


def write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text)
    return p


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
            "vm",
            "-s",
            "-H",
            "127.0.0.1",
            "-p",
            port,
            "-t",
            "precopy",
            "-t",
            "postcopy",
            "--channels",
            "2",
            "--duration",
            "2",
            "--interval",
            "0.5",
            "--json",
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
        os.kill(srv.pid, signal.SIGSTOP)
        time.sleep(0.3)
        os.kill(srv.pid, signal.SIGCONT)
        out, _ = cli.communicate(timeout=30)
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.communicate(timeout=10)
    f = write(tmp_path, "client.json", out)
    s = parse_file(f)
    assert s.kind == "downtime" and len(s.events) == 1
    fig = plot_files([f])
    assert lines_of(fig) == [([s.events[0][0]], [s.events[0][1]])]
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


# ---- what a person reads at a glance -----------------------------------------


ORIGINAL_DST_TWO_SESSIONS = """\
Latency: average 52 (us), max: 2012 (us), p50: 0.4 p99: 90.0 (us), requests: 9, session: 0
Latency: average 47 (us), max: 3100 (us), p50: 0.5 p99: 80.0 (us), requests: 9, session: 1
Latency: average 61 (us), max: 2500 (us), p50: 0.6 p99: 70.0 (us), requests: 9, session: 0
Latency: average 40 (us), max: 1500 (us), p50: 0.7 p99: 60.0 (us), requests: 9, session: 1
"""

CLUSTERED_SPIKES = """\
1700000000,18446744073709551615
1700000010,300
1700000010,120
1700000011,200
1700000030,50
"""


def test_events_are_stems_not_a_series_and_labels_do_not_collide() -> None:
    s = parse_text(CLUSTERED_SPIKES)
    fig = plot_series([s])
    ax = fig.axes[0]
    (markers,) = ax.get_lines()
    assert markers.get_linestyle() == "None"  # no line joins separate events
    stems = [c for c in ax.collections if type(c).__name__ == "LineCollection"]
    assert len(stems) == 1  # the stems, one collection
    assert ax.get_ylim()[0] == 0
    labels = [(t.xyann, t.xy) for t in ax.texts]
    assert all("gap" in t.get_text() and "blackout" in t.get_text() for t in ax.texts)
    # The three crowded events' labels sit on different rows, inside the axes.
    assert len({at[1] for at, xy in labels if xy[0] <= 11}) == 3
    assert all(at[1] < ax.get_ylim()[1] for at, _ in labels)
    # The blackout is shaded on the time axis, as long as it lasted (one
    # collection for all of an input's).
    assert len(spans_of(ax)) == 4


def test_rates_start_at_zero_and_overlays_have_one_colour_per_file(tmp_path: Path) -> None:
    a = write(tmp_path, "a.txt", ORIGINAL_DIRTY_L)
    b = write(tmp_path, "b.txt", ORIGINAL_DIRTY_L.replace("500 (MB/s)", "450 (MB/s)"))
    fig = plot_files([a, b])
    assert fig.axes[0].get_ylim()[0] == 0 and fig.axes[1].get_ylim()[0] == 0
    lat = fig.axes[2].get_lines()
    colours = {ln.get_label().split(":")[0]: set() for ln in lat}
    styles: dict[str, set[str]] = {}
    for ln in lat:
        name, stat = ln.get_label().split(": ")
        colours[name].add(ln.get_color())
        styles.setdefault(stat, set()).add(ln.get_linestyle())
    assert all(len(c) == 1 for c in colours.values())  # one colour per file
    assert len({c for cs in colours.values() for c in cs}) == 2
    assert all(len(st) == 1 for st in styles.values())  # one style per statistic
    assert len({next(iter(st)) for st in styles.values()}) == 3
    # The legend sits outside the axes (to their right).
    legend = fig.axes[2].get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().x0 > fig.axes[2].bbox.x1 - 1


def _by_colour_and_style(fig: object) -> dict[tuple[str, str], list[float]]:
    return {
        (ln.get_color(), ln.get_linestyle()): list(ln.get_ydata())
        for ln in fig.axes[0].get_lines()  # type: ignore[attr-defined]
    }


def _legend_texts(fig: object) -> list[str]:
    ax = fig.axes[0]  # type: ignore[attr-defined]
    return [
        t.get_text() for c in ax.get_children() if hasattr(c, "get_texts") for t in c.get_texts()
    ]


def test_destination_sessions_are_drawn_apart() -> None:
    s = parse_text(ORIGINAL_DST_TWO_SESSIONS, "dst.txt")
    assert s.sessions == [0, 1, 0, 1]
    fig = plot_series([s])
    lines = _by_colour_and_style(fig)
    # A colour per session, a line style per statistic.
    assert lines[("C0", "-")] == [52, 61]
    assert lines[("C1", "-")] == [47, 40]
    # Sub-microsecond p50 from the text is kept and drawn.
    assert lines[("C0", "-.")] == [0.4, 0.6]
    texts = _legend_texts(fig)
    assert "session 0" in texts and "session 1" in texts
    assert {"avg", "p50", "p99", "max"} <= set(texts)


def test_destination_sessions_one_after_another_are_not_joined() -> None:
    text = (
        "Start emulation of dst VM.\nConnected from src VM 127.0.0.1.\n"
        "Latency: average 21 (us), max: 2795 (us), p50: 19.7 p99: 34.7 (us), requests: 9\n"
        "Latency: average 22 (us), max: 2000 (us), p50: 19.0 p99: 30.0 (us), requests: 9\n"
        "Dropped connection from src VM 127.0.0.1.\nConnected from src VM 127.0.0.1.\n"
        "Latency: average 90 (us), max: 5169 (us), p50: 25.8 p99: 1830.9 (us), requests: 9\n"
    )
    s = parse_text(text, "dst.txt")
    assert s.sessions == [0, 0, 1]
    lines = _by_colour_and_style(plot_series([s]))
    assert lines[("C0", "-")] == [21, 22] and lines[("C1", "-")] == [90]


def test_destination_json_sessions_are_named_by_their_settings() -> None:
    objs = [
        '{"type":"config","tool":"vm","role":"dst","start_unix_s":1796000000.0}',
        '{"type":"sample","session":0,"elapsed_s":1.0,"latency":{"count":5,"mean_ns":20000,'
        '"max_ns":90000,"p50_ns":19000,"p99_ns":40000}}',
        '{"type":"sample","session":1,"elapsed_s":2.0,"latency":{"count":5,"mean_ns":30000,'
        '"max_ns":99000,"p50_ns":29000,"p99_ns":50000}}',
        '{"type":"session","session":0,"channels":0,"preempt":false}',
        '{"type":"session","session":1,"channels":2,"preempt":true}',
    ]
    s = parse_text("\n".join(objs), "dst.json")
    texts = _legend_texts(plot_series([s]))
    assert "session 0 (one stream)" in texts and "session 1 (preempt, 2 channels)" in texts
    assert len(texts) == 2 + 4  # two sessions, four statistics: not eight pairs


def test_a_quiet_run_is_plotted_as_such(tmp_path: Path) -> None:
    quiet = write(
        tmp_path, "client.json",
        '{"type":"config","tool":"client","start_unix_s":1796000000.0}\n'
        '{"type":"summary","duration_s":30.0,"sent":3000,"received":3000,"events":[]}\n',
    )  # fmt: skip
    fig = plot_files([quiet])
    ax = fig.axes[0]
    assert ax.get_xlim() == (0.0, 30.0)
    assert any(t.get_text() == "no downtime events" for t in ax.texts)
    log = write(tmp_path, "spike.log", "1700000000,18446744073709551615\n")
    assert any(t.get_text() == "no downtime events" for t in plot_files([log]).axes[0].texts)


def test_one_event_in_a_long_run_gets_a_zoom_beside_the_run(tmp_path: Path) -> None:
    ev = (
        '{"type":"event","start_offset_s":7.7,"start_unix_s":1796000007.7,"gap_ms":228.0,'
        '"blackout_ms":223.0}'
    )
    f = write(
        tmp_path, "client.json",
        '{"type":"config","tool":"client","start_unix_s":1796000000.0}\n' + ev + "\n"
        '{"type":"summary","duration_s":12.0}\n',
    )  # fmt: skip
    fig = plot_files([f])
    assert len(fig.axes) == 2
    assert fig.axes[0].get_xlim() == (0.0, 12.0)  # the whole run
    lo, hi = fig.axes[1].get_xlim()
    assert 7.0 < lo < 7.7 and 7.93 < hi < 8.5  # the zoom holds the event and its blackout


def test_a_steady_rate_has_headroom() -> None:
    s = parse_text(ORIGINAL_DIRTY)
    fig = plot_series([s])
    assert fig.axes[0].get_ylim()[1] >= 1.2 * 502


def test_default_output_name(tmp_path: Path) -> None:
    src = write(tmp_path, "spike.log", ORIGINAL_SPIKE_LOG)
    p = run_cli("plot", str(src), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "spike.png").read_bytes().startswith(b"\x89PNG")


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
