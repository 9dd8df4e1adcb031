"""Pictures of runs: downtime over time (each event marked with its
length), dirty rate, load and latency percentiles, precopy bandwidth (per
multifd channel) and page-request latency. Several inputs of the same kind
overlay, with a legend named after them.

Needs matplotlib (``pip install 'mig_mon[plot]'``). Figures are built
without pyplot, so no display is needed; every function returns the
:class:`matplotlib.figure.Figure` for a caller to save or embed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migmon.errors import ConfigError
from migmon.parse import Series, parse_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["MatplotlibMissing", "plot_files", "plot_series"]

INSTALL_HINT = "matplotlib is not installed; install it with: pip install 'mig_mon[plot]'"


class MatplotlibMissing(ImportError):
    """Plotting was asked for without matplotlib."""


def _figure(rows: int) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MatplotlibMissing(INSTALL_HINT) from None
    fig = Figure(figsize=(11, 3.2 * rows), layout="constrained")
    fig.subplots(rows, 1, sharex=True, squeeze=False)
    return fig


def _finish(fig: Figure, title: str, many: bool) -> Figure:
    for ax in fig.axes:
        ax.grid(True, alpha=0.3)
        if many or len(ax.get_lines()) > 1:
            ax.legend(fontsize="small")
    fig.axes[-1].set_xlabel("Time (s)")
    fig.suptitle(title)
    return fig


def _plot_downtime(series: Sequence[Series], many: bool) -> Figure:
    fig = _figure(1)
    ax = fig.axes[0]
    for s in series:
        xs = [e[0] for e in s.events]
        ys = [e[1] for e in s.events]
        (line,) = ax.plot(xs, ys, "o-", label=s.label)
        for x, gap, blackout in s.events:
            ax.annotate(
                f"{blackout:.0f} ms", (x, gap), textcoords="offset points", xytext=(4, 6),
                fontsize="x-small", color=line.get_color(),
            )  # fmt: skip
    ax.set_ylabel("Downtime gap (ms)")
    return _finish(fig, "Network downtime events", many)


def _plot_dirty(series: Sequence[Series], many: bool) -> Figure:
    has_lat = any("p50_us" in s.columns for s in series)
    fig = _figure(3 if has_lat else 2)
    rate_ax, load_ax = fig.axes[0], fig.axes[1]
    for s in series:
        tag = f"{s.label}: " if many else ""
        rate_ax.plot(s.x, s.columns.get("rate_mb_s", []), label=f"{tag}dirty rate")
        load_ax.plot(s.x, s.columns.get("load_pct", []), label=f"{tag}load")
        if has_lat and "p50_us" in s.columns:
            lat_ax = fig.axes[2]
            for col in ("p50_us", "p99_us", "max_us"):
                lat_ax.plot(s.x, s.columns[col], label=f"{tag}{col.removesuffix('_us')}")
    rate_ax.set_ylabel("Dirty rate (MB/s)")
    load_ax.set_ylabel("Load (%)")
    if has_lat:
        fig.axes[2].set_ylabel("Access latency (us)")
        fig.axes[2].set_yscale("log")
    return _finish(fig, "mm_dirty", many)


def _plot_vm_src(series: Sequence[Series], many: bool) -> Figure:
    fig = _figure(1)
    ax = fig.axes[0]
    for s in series:
        tag = f"{s.label}: " if many else ""
        ax.plot(s.x, s.columns["rate_mb_s"], label=f"{tag}total")
        for name in sorted(k for k in s.columns if k.startswith("channel")):
            ax.plot(s.x, s.columns[name], label=f"{tag}{name.removesuffix('_mb_s')}", lw=0.8)
    ax.set_ylabel("Precopy bandwidth (MB/s)")
    return _finish(fig, "Precopy bandwidth", many)


def _plot_vm_dst(series: Sequence[Series], many: bool) -> Figure:
    fig = _figure(1)
    ax = fig.axes[0]
    for s in series:
        tag = f"{s.label}: " if many else ""
        for col in ("avg_us", "p50_us", "p99_us", "max_us"):
            if col in s.columns:
                ax.plot(s.x, s.columns[col], label=f"{tag}{col.removesuffix('_us')}")
    ax.set_ylabel("Page-request latency (us)")
    ax.set_yscale("log")
    return _finish(fig, "Postcopy page-request latency", many)


_PLOTTERS: dict[str, Any] = {
    "downtime": _plot_downtime,
    "dirty": _plot_dirty,
    "vm_src": _plot_vm_src,
    "vm_dst": _plot_vm_dst,
}


def plot_series(series: Sequence[Series]) -> Figure:
    """One figure for parsed inputs of one kind (overlaid)."""
    if not series:
        raise ConfigError("nothing to plot")
    kinds = {s.kind for s in series}
    if len(kinds) > 1:
        raise ConfigError(
            "cannot overlay inputs of different kinds: "
            + ", ".join(f"{s.label} ({s.kind})" for s in series)
        )
    if all(not s.x for s in series):
        raise ConfigError("no data points in " + ", ".join(s.label for s in series))
    return _PLOTTERS[series[0].kind](series, len(series) > 1)  # type: ignore[no-any-return]


def plot_files(paths: Sequence[str | Path]) -> Figure:
    """Parses each file (see :mod:`migmon.parse`) and plots them together."""
    return plot_series([parse_file(p) for p in paths])
