"""Pictures of runs: downtime events (each a stem at its reply gap, its
blackout shaded on the time axis), dirty rate, load and latency percentiles,
precopy bandwidth (per multifd channel) and page-request latency. Several
inputs of the same kind overlay: one colour per input (per session of a
destination), one line style per statistic, the legend outside the data.
Rates and gaps start at zero with headroom above the highest value, so
noise does not look like a trend and a steady line does not lie on the
frame; latencies are on a log scale (p50 and p99 a decade apart stay
apart). A downtime run without events is drawn as a flat line that says
so; events that crowd a small part of a long run get a zoom beside the
whole run. Sessions of a destination are never joined and are named by
their settings.

Needs matplotlib (``pip install 'mig_mon[plot]'``). Figures are built
without pyplot, so no display is needed; every function returns the
:class:`matplotlib.figure.Figure` for a caller to save or embed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from migmon.errors import ConfigError
from migmon.parse import Series, parse_file

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["MatplotlibMissing", "plot_files", "plot_series"]

INSTALL_HINT = "matplotlib is not installed; install it with: pip install 'mig_mon[plot]'"

#: One line style per statistic, the same in every plot.
STYLES: dict[str, Literal["-", "--", "-.", ":"]] = {
    "total": "-",
    "rate_mb_s": "-",
    "load_pct": "-",
    "avg_us": "-",
    "p50_us": "-.",
    "p99_us": "--",
    "max_us": ":",
}
#: Multifd channels: thin lines in the input's colour, one dash pattern each.
CHANNEL_STYLES = [(0, (5, 2)), (0, (2, 2)), (0, (8, 2, 2, 2)), (0, (1, 1))]
#: How many label rows events that crowd one another are spread over.
LABEL_ROWS = 4


class MatplotlibMissing(ImportError):
    """Plotting was asked for without matplotlib."""


def _figure(rows: int, share_x: bool = True) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MatplotlibMissing(INSTALL_HINT) from None
    fig = Figure(figsize=(12, 3.2 * rows), layout="constrained")
    fig.subplots(rows, 1, sharex=share_x, squeeze=False)
    return fig


def _colour(i: int) -> str:
    return f"C{i % 10}"


def _groups(series: Sequence[Series]) -> Iterator[tuple[str, str, Series]]:
    """(label, colour, series) per input, and per session of an input that
    names several: each drawn apart, in a colour of its own."""
    i = 0
    many = len(series) > 1
    for s in series:
        sessions = sorted(set(s.sessions))
        if len(sessions) <= 1:
            yield (s.label if many else ""), _colour(i), s
            i += 1
            continue
        for sess in sessions:
            keep = [k for k, v in enumerate(s.sessions) if v == sess]
            what = s.session_names.get(sess)
            name = f"session {sess}" + (f" ({what})" if what else "")
            part = Series(s.kind, f"{s.label}: {name}" if many else name)
            part.x = [s.x[k] for k in keep]
            part.columns = {c: [v[k] for k in keep] for c, v in s.columns.items()}
            yield part.label, _colour(i), part
            i += 1


def _name(group: str, stat: str) -> str:
    return f"{group}: {stat}" if group else stat


def _finish(fig: Figure, title: str) -> Figure:
    for ax in fig.axes:
        ax.grid(True, alpha=0.3)
        if len(ax.get_lines()) > 1 and ax.get_legend_handles_labels()[0]:
            # Outside the data, to the right of the axes.
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    fig.axes[-1].set_xlabel("Time (s)")
    fig.suptitle(title)
    return fig


def _from_zero(ax: Axes) -> None:
    ax.set_ylim(bottom=0)


def _headroom(ax: Axes, values: Sequence[float], factor: float = 1.25) -> None:
    """From zero to a quarter above the highest value, so a steady line
    does not lie on the frame."""
    top = max((v for v in values if v == v), default=0.0)
    ax.set_ylim(0, top * factor if top > 0 else 1.0)


def _latency_scale(ax: Axes, values: Sequence[float]) -> None:
    """Latencies on a log axis (p50 and p99 a decade apart stay apart),
    from half the smallest positive value to a few times the highest;
    zeros (a text line's "0 us") are not drawn."""
    ys = [float(v) for v in values if v == v and v > 0]
    ax.set_yscale("log", nonpositive="mask")
    if ys:
        ax.set_ylim(min(ys) / 2, max(ys) * 4)


def _lat_values(series: Sequence[Series], cols: Sequence[str]) -> list[float]:
    return [v for s in series for c in cols for v in s.columns.get(c, [])]


def _plot_downtime(series: Sequence[Series]) -> Figure:
    """The whole run, and beside it a zoom on the events when they crowd a
    small part of it; a run without events is a flat line that says so."""
    spans = [s.span_s for s in series if s.span_s is not None]
    xs_all = [e[0] for s in series for e in s.events]
    run = max([*spans, *(x + 0.001 for x in xs_all)], default=0.0)
    ends = [e[0] + e[2] / 1e3 for s in series for e in s.events]
    lo, hi = (min(xs_all), max(ends)) if xs_all else (0.0, 0.0)
    zoom = bool(xs_all) and run > 0 and (hi - lo) < 0.2 * run
    fig = _figure(2 if zoom else 1, share_x=False)
    axes = fig.axes
    for ax in axes:
        events = []
        for group, colour, s in _groups(series):
            xs = [e[0] for e in s.events]
            gaps = [e[1] for e in s.events]
            if not xs:
                continue
            ax.vlines(xs, 0, gaps, colors=colour, lw=1.5)
            ax.plot(xs, gaps, linestyle="none", marker="o", color=colour, label=group or "event")
            # The blackout is time without the network: shaded on the time
            # axis, all of an input's in one collection (a patch each took
            # 10-20 ms: 1000 events, 20 s).
            ax.broken_barh(
                [(x, blackout / 1000) for x, _, blackout in s.events],
                (0, 1),
                transform=ax.get_xaxis_transform(),
                facecolors=colour,
                alpha=0.15,
                lw=0,
            )
            events += [(x, gap, blackout, colour) for x, gap, blackout in s.events]
        is_zoom = zoom and ax is axes[1]
        rows = _label_events(ax, events, None if is_zoom else run)
        ax.set_ylabel("Reply gap (ms)")
        # Room above the highest stem for its label rows.
        top = max((e[1] for e in events), default=1.0)
        ax.set_ylim(0, top * (1.25 + 0.22 * rows))
    if not xs_all:
        ax = axes[0]
        end = run or 1.0
        ax.plot([0, end], [0, 0], "-", color="C2", lw=2)
        ax.set_xlim(0, end)
        ax.text(
            0.5, 0.5, "no downtime events", transform=ax.transAxes, ha="center",
            va="center", fontsize="large", color="C2",
        )  # fmt: skip
        ax.set_title("the whole run" if run else "the run (no end time in this input)")
    elif zoom:
        axes[0].set_xlim(0, run)
        axes[0].set_title("the whole run", fontsize="medium")
        margin = max(0.25 * (hi - lo), 0.05)
        axes[1].set_xlim(max(0.0, lo - margin), hi + margin)
        axes[1].set_title("zoom on the events", fontsize="medium")
    else:
        axes[0].set_xlim(0, run)
    return _finish(fig, "Network downtime events (stem: reply gap; shaded: blackout)")


#: At most this many events are labelled (the longest): more would hide the data.
MAX_LABELS = 8


def _label_events(
    ax: Axes, events: list[tuple[float, float, float, str]], span: float | None = None
) -> int:
    """Labels the longest events (at most :data:`MAX_LABELS`) with their gap
    and blackout in a band above the stems, joined to the marker by a thin
    line; labels closer than a label's width (a fifth of the axis, ``span``
    seconds) take successive rows of the band, so none overlap. Returns how
    many rows were used."""
    if not events:
        return 0
    shown = sorted(sorted(events, key=lambda e: -e[1])[:MAX_LABELS])
    span = span or ((shown[-1][0] - shown[0][0]) or 1.0)
    top = max(e[1] for e in events)
    row, last_x, used = 0, None, 1
    for x, gap, blackout, colour in shown:
        crowded = last_x is not None and x - last_x < 0.22 * span
        row = (row + 1) % LABEL_ROWS if crowded else 0
        used = max(used, row + 1)
        last_x = x
        ax.annotate(
            f"gap {gap:.0f} ms, blackout {blackout:.0f} ms",
            (x, gap),
            xytext=(x, top * (1.1 + 0.22 * row)),
            fontsize="x-small",
            color=colour,
            arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.5, "alpha": 0.6},
        )
    if len(events) > len(shown):
        ax.text(
            0.99, 0.97, f"{len(shown)} longest of {len(events)} events labelled",
            transform=ax.transAxes, ha="right", va="top", fontsize="x-small",
        )  # fmt: skip
    return used


def _plot_dirty(series: Sequence[Series]) -> Figure:
    has_lat = any("p50_us" in s.columns for s in series)
    fig = _figure(3 if has_lat else 2)
    rate_ax, load_ax = fig.axes[0], fig.axes[1]
    for group, colour, s in _groups(series):
        rate_ax.plot(
            s.x, s.columns.get("rate_mb_s", []), "-", color=colour, label=_name(group, "dirty rate")
        )
        load_ax.plot(
            s.x, s.columns.get("load_pct", []), "-", color=colour, label=_name(group, "load")
        )
        if has_lat and "p50_us" in s.columns:
            for col in ("p50_us", "p99_us", "max_us"):
                fig.axes[2].plot(
                    s.x,
                    s.columns[col],
                    STYLES[col],
                    color=colour,
                    label=_name(group, col.removesuffix("_us")),
                )
    rate_ax.set_ylabel("Dirty rate (MB/s)")
    load_ax.set_ylabel("Load (%)")
    _headroom(rate_ax, [v for s in series for v in s.columns.get("rate_mb_s", [])])
    _headroom(load_ax, [v for s in series for v in s.columns.get("load_pct", [])])
    if has_lat:
        fig.axes[2].set_ylabel("Access latency (us)")
        _latency_scale(fig.axes[2], _lat_values(series, ("p50_us", "p99_us", "max_us")))
    return _finish(fig, "mm_dirty")


def _plot_vm_src(series: Sequence[Series]) -> Figure:
    fig = _figure(1)
    ax = fig.axes[0]
    for group, colour, s in _groups(series):
        ax.plot(s.x, s.columns["rate_mb_s"], "-", color=colour, label=_name(group, "total"))
        channels = sorted(k for k in s.columns if k.startswith("channel"))
        for k, name in enumerate(channels):
            ax.plot(
                s.x,
                s.columns[name],
                color=colour,
                lw=0.8,
                alpha=0.8,
                linestyle=CHANNEL_STYLES[k % len(CHANNEL_STYLES)],
                label=_name(group, name.removesuffix("_mb_s")),
            )
    ax.set_ylabel("Precopy bandwidth (MB/s)")
    _from_zero(ax)
    return _finish(fig, "Precopy bandwidth")


def _plot_vm_dst(series: Sequence[Series]) -> Figure:
    """One colour per input or session (named by its settings), one line
    style per statistic: two short legends rather than one per pair."""
    from matplotlib.lines import Line2D

    fig = _figure(1)
    ax = fig.axes[0]
    groups = list(_groups(series))
    stats = [
        c for c in ("avg_us", "p50_us", "p99_us", "max_us") if any(c in s.columns for s in series)
    ]
    for _, colour, s in groups:
        for col in stats:
            if col in s.columns:
                # A session of a second or two has one or two points: marked.
                marker = "o" if len(s.x) < 5 else None
                ax.plot(s.x, s.columns[col], STYLES[col], color=colour, marker=marker, ms=3)
    ax.set_ylabel("Page-request latency (us)")
    _latency_scale(ax, _lat_values(series, stats))
    fig = _finish(fig, "Postcopy page-request latency")
    handles = []
    for c in stats:
        line = Line2D([], [], color="0.3", label=c.removesuffix("_us"))
        line.set_linestyle(STYLES[c])
        handles.append(line)
    first = ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
        title="statistic",
    )  # fmt: skip
    if len(groups) > 1 or (groups and groups[0][0]):
        ax.add_artist(first)
        ax.legend(
            handles=[Line2D([], [], color=c, label=g or "run") for g, c, _ in groups],
            loc="lower left", bbox_to_anchor=(1.01, 0.0), fontsize="small",
        )  # fmt: skip
    return fig


_PLOTTERS: dict[str, Any] = {
    "downtime": _plot_downtime,
    "dirty": _plot_dirty,
    "vm_src": _plot_vm_src,
    "vm_dst": _plot_vm_dst,
}


#: The rows of a timeline, top to bottom, and what each shows.
_TIMELINE_ROWS = {
    "downtime": "Reply gap (ms)",
    "dirty": "Dirty rate (MB/s)",
    "vm_src": "Precopy (MB/s)",
    "vm_dst": "Page request p99 (us)",
}


def _plot_timeline(series: Sequence[Series]) -> Figure:
    """Inputs of different tools on one wall-clock axis: a row per tool,
    mm_dirty's pauses and QEMU's STOP -> RESUME shaded where they were."""
    for s in series:
        if s.start_unix_s is None:
            raise ConfigError(
                f"{s.label} has no wall-clock times; give --json output (or a spike log) "
                "to put it on a timeline with other tools"
            )
    # Time 0: the earliest start of a mig_mon run (QEMU's events may go back
    # to its own start, long before).
    starts = [s.start_unix_s for s in series if s.kind != "qemu" and s.start_unix_s is not None]
    t0 = min(starts or [s.start_unix_s for s in series if s.start_unix_s is not None])
    rows = [k for k in _TIMELINE_ROWS if any(s.kind == k for s in series)]
    if not rows:
        raise ConfigError("QEMU's events alone have nothing to plot: give mig_mon output too")
    fig = _figure(len(rows))
    axes = dict(zip(rows, fig.axes, strict=True))
    for i, s in enumerate(series):
        shift = (s.start_unix_s or t0) - t0
        xs = [x + shift for x in s.x]
        colour = _colour(i)
        if s.kind == "downtime":
            ax = axes["downtime"]
            ex = [e[0] + shift for e in s.events]
            ax.vlines(ex, 0, [e[1] for e in s.events], colors=colour, lw=1.5)
            ax.plot(ex, [e[1] for e in s.events], "o", color=colour, label=f"{s.label}: event")
        elif s.kind == "dirty":
            ax = axes["dirty"]
            ax.plot(
                xs,
                s.columns.get("rate_mb_s", []),
                "-",
                color=colour,
                label=f"{s.label}: dirty rate",
            )
            if s.pauses:
                ax.broken_barh(
                    [(x + shift, length_ms / 1e3) for x, length_ms in s.pauses],
                    (0, 1),
                    transform=ax.get_xaxis_transform(),
                    facecolors="purple",
                    alpha=0.3,
                    lw=0,
                    label=f"{s.label}: pause",
                )
        elif s.kind == "vm_src":
            axes["vm_src"].plot(
                xs, s.columns["rate_mb_s"], "-", color=colour, label=f"{s.label}: precopy"
            )
        elif s.kind == "vm_dst":
            axes["vm_dst"].plot(
                xs, s.columns.get("p99_us", []), "--", color=colour, label=f"{s.label}: p99"
            )
        for k, (x, length_ms, name) in enumerate(s.spans):
            for j, ax in enumerate(fig.axes):
                # At least a hairline: a STOP -> RESUME of 20 ms in a minute.
                ax.axvspan(
                    x + shift,
                    x + shift + max(length_ms / 1e3, 1e-3),
                    color="orange",
                    alpha=0.5,
                    lw=1,
                    ec="orange",
                    label=f"{s.label}: {name}" if k == 0 and j == 0 else None,
                )
    for kind, ax in axes.items():
        ax.set_ylabel(_TIMELINE_ROWS[kind])
        if kind == "vm_dst":
            _latency_scale(ax, _lat_values([s for s in series if s.kind == "vm_dst"], ["p99_us"]))
        else:
            # Headroom, so a steady rate does not sit on the frame.
            ax.set_ylim(0, ax.get_ylim()[1] * 1.1)
    fig = _finish(fig, "Timeline (wall clock)")
    for ax in fig.axes:
        if ax.get_legend() is None and ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    from datetime import datetime, timezone

    start = datetime.fromtimestamp(t0, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    fig.axes[-1].set_xlabel(f"Time (s) from {start} UTC")
    return fig


def plot_series(series: Sequence[Series]) -> Figure:
    """One figure for parsed inputs: inputs of one kind overlaid; inputs of
    different tools (QEMU's events among them) on one wall-clock timeline."""
    if not series:
        raise ConfigError("nothing to plot")
    kinds = {s.kind for s in series}
    if len(kinds) > 1 or kinds == {"qemu"}:
        return _plot_timeline(series)
    if all(not s.x for s in series) and series[0].kind != "downtime":
        raise ConfigError("no data points in " + ", ".join(s.label for s in series))
    return _PLOTTERS[series[0].kind](series)  # type: ignore[no-any-return]


def plot_files(paths: Sequence[str | Path]) -> Figure:
    """Parses each file (see :mod:`migmon.parse`) and plots them together."""
    return plot_series([parse_file(p) for p in paths])
