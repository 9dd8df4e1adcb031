"""Inputs the plot tests share: the original tool's outputs, and readers of
what a figure drew."""

from __future__ import annotations

from pathlib import Path

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
