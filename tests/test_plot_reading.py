"""Plots as a person reads them at a glance: stems not series, rates from
zero with headroom, sessions apart and named, a quiet run drawn as one,
an event zoomed beside its run."""

from __future__ import annotations

from pathlib import Path

from plot_inputs import (
    ORIGINAL_DIRTY,
    ORIGINAL_DIRTY_L,
    ORIGINAL_SPIKE_LOG,
    spans_of,
    write,
)

from conftest import run_cli
from migmon.parse import parse_text
from migmon.plot import plot_files, plot_series

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
