"""What every command's output shares: JSON Lines (one object per line,
each with a ``"type"``, built from the results' ``to_dict()`` so the keys
are the API's names), the end-of-run summary (plain lines, which parsers
and logs read; a table of the figures on a terminal), and the
:class:`Series` that every tool's parser returns. The tools' own lines,
JSON and parsers live beside each other in :mod:`migmon.output.dirty`,
:mod:`migmon.output.vm` and :mod:`migmon.output.downtime`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

__all__ = [
    "CLOCKS",
    "ParseError",
    "Series",
    "emit",
    "emit_config",
    "emit_json",
    "print_summary",
    "stamp",
    "summary_rows",
    "timestamps",
]


class ParseError(ValueError):
    """The input is not something mig_mon wrote (the message says why)."""


@dataclass
class Series:
    """One input's data, as columns of equal length.

    ``x`` is seconds from the start of the run. ``columns`` holds the
    y values by name (units in the names: ``rate_mb_s``, ``p99_us``...);
    ``events`` (downtime only) holds ``(x_s, gap_ms, blackout_ms)``;
    ``sessions`` (a destination's, when it names them) the session of each
    point, so that sessions are drawn apart; ``pauses`` (mm_dirty only)
    ``(x_s, length_ms)``; ``spans`` (QEMU's events) ``(x_s, length_ms,
    name)``, such as STOP -> RESUME. ``start_unix_s`` is the wall-clock time
    of x = 0 when the input says it (JSON, spike logs, QEMU's events), so
    that inputs of different tools can share one time axis.
    """

    kind: str
    label: str
    x: list[float] = field(default_factory=list)
    columns: dict[str, list[float]] = field(default_factory=dict)
    events: list[tuple[float, float, float]] = field(default_factory=list)
    sessions: list[int] = field(default_factory=list)
    pauses: list[tuple[float, float]] = field(default_factory=list)
    spans: list[tuple[float, float, str]] = field(default_factory=list)
    start_unix_s: float | None = None
    #: How long the run lasted, s, when the input says (a quiet run has no
    #: points but still a length).
    span_s: float | None = None
    #: What each session was, by its number (``preempt, 2 channels``).
    session_names: dict[int, str] = field(default_factory=dict)

    def add(self, x: float, **values: float) -> None:
        """Appends one point."""
        self.x.append(x)
        for k, v in values.items():
            self.columns.setdefault(k, []).append(v)


class _Result(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


def emit_json(obj: dict[str, Any], out: TextIO | None = None) -> None:
    """Writes one JSON line and flushes it, so a reader sees it at once."""
    stream = out if out is not None else sys.stdout
    stream.write(json.dumps(obj, separators=(",", ":")) + "\n")
    stream.flush()


#: What the config line says of the clocks behind the timestamps.
CLOCKS = {
    "elapsed": "monotonic (CLOCK_MONOTONIC) seconds from the run's start: elapsed_s, "
    "start_offset_s",
    "unix": "wall clock (CLOCK_REALTIME), Unix seconds to the microsecond: unix_s, "
    "start_unix_s, and every object's unix_s",
}


#: Set by --timestamps for one command's run: every text line starts with
#: the wall-clock time.
_TIMESTAMPS: ContextVar[bool] = ContextVar("migmon_timestamps", default=False)


@contextmanager
def timestamps(on: bool) -> Iterator[None]:
    """Within: text lines start with the wall-clock time when ``on``."""
    token = _TIMESTAMPS.set(on)
    try:
        yield
    finally:
        _TIMESTAMPS.reset(token)


def stamp() -> str:
    """The prefix of a text line with --timestamps (else empty)."""
    if not _TIMESTAMPS.get():
        return ""
    import datetime

    return datetime.datetime.now().strftime("[%Y-%m-%d %H:%M:%S.%f] ")


def unix_now() -> float:
    """Wall-clock now, Unix seconds to the microsecond."""
    import time

    return round(time.time(), 6)


def emit(result: _Result, out: TextIO | None = None, **extra: Any) -> None:
    """A result (its ``to_dict()``, with ``extra`` keys) as one JSON line,
    with a wall-clock ``unix_s`` when the result has none of its own."""
    head = {"type": extra.pop("type")} if "type" in extra else {}
    obj = head | result.to_dict() | extra
    obj.setdefault("unix_s", unix_now())
    emit_json(obj, out)


def emit_config(tool: str, config: _Result | None = None, **extra: Any) -> None:
    """The first JSON line of a run: the tool, its configuration, the
    clocks behind every timestamp and when the run started on the wall
    clock (``start_unix_s``; monotonic times count from the run's start)."""
    obj: dict[str, Any] = {"type": "config", "tool": tool}
    if config is not None:
        obj |= config.to_dict()
    obj |= extra
    obj |= {"start_unix_s": unix_now(), "clocks": CLOCKS}
    emit_json(obj)


#: Unit suffixes of the JSON keys, longest first, with the word a table says.
_UNITS = (
    ("_unix_s", ""),
    ("_mb_s", "MB/s"),
    ("_bytes", ""),
    ("_ns", ""),
    ("_ms", "ms"),
    ("_s", "s"),
    ("_pct", "%"),
)


def _bytes(v: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(v) >= size:
            return f"{v / size:,.1f} {unit}"
    return f"{v:,.0f} B"


def human(name: str, v: Any) -> str:
    """One figure in the unit a person reads, from its key's unit suffix."""
    if v is None:
        return "-"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if name == "unix_s" or name.endswith("_unix_s"):
        import datetime

        return datetime.datetime.fromtimestamp(v).strftime("%Y-%m-%d %H:%M:%S.%f")
    if name.endswith("_ns"):
        if v >= 1_000_000:
            return f"{v / 1e6:,.3f} ms"
        return f"{v / 1e3:,.1f} us" if v >= 1000 else f"{v:,.0f} ns"
    if name.endswith("_ms"):
        return f"{v:,.3f} ms"
    if name.endswith("_mb_s"):
        return f"{v:,.1f} MB/s"
    if name.endswith("_s"):
        return f"{v:,.3f} s"
    if name.endswith("_pct"):
        return f"{v:.2f} %"
    if name == "bytes" or name.endswith("_bytes"):
        return _bytes(v)
    return f"{v:,}" if isinstance(v, int) else f"{v:,.3f}"


def summary_rows(summary: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """The figures of a JSON summary as (name, value) rows in human units;
    nested objects (percentiles) flatten to ``latency.p99``; lists are left
    out (the events have their own table). A name keeps what its unit said
    where two would read alike (``cpu (%)``, ``cpu (s)``)."""
    rows: list[tuple[str, str]] = []
    for k, v in summary.items():
        # The buckets have their own table (the original's histogram).
        if k in ("type", "buckets_us") or isinstance(v, list):
            continue
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            rows += summary_rows(v, prefix=f"{name}.")
        else:
            rows.append((name, human(k, v)))
    bare = [_bare(name) for name, _ in rows]
    return [
        (b if bare.count(b) == 1 else _with_unit(name), value)
        for b, (name, value) in zip(bare, rows, strict=True)
    ]


def _bare(name: str) -> str:
    """A key without its unit suffix (the value says the unit)."""
    if name.rpartition(".")[2] == "unix_s":
        return name.removesuffix("unix_s") + "wall clock"
    for suffix, _ in _UNITS:
        if name.endswith(suffix) and name != suffix.lstrip("_"):
            return name.removesuffix(suffix) + (" (wall clock)" if suffix == "_unix_s" else "")
    return name


def _with_unit(name: str) -> str:
    for suffix, word in _UNITS:
        if name.endswith(suffix) and word:
            return f"{name.removesuffix(suffix)} ({word})"
    return name


def print_summary(
    title: str, summary: dict[str, Any], plain: list[str], out: TextIO, details: bool = False
) -> None:
    """The compact summary lines (what parsers, logs and people read at a
    glance); with ``details``, every figure of the JSON summary after them,
    as a table in human units."""
    for line in plain:
        out.write(stamp() + line + "\n")
    out.flush()
    if not details:
        return
    import io

    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in summary_rows(summary):
        table.add_row(name, value)
    # Drawn apart, so that with --timestamps every line carries its stamp.
    drawn = io.StringIO()
    Console(file=drawn, width=100, force_terminal=out.isatty()).print(table)
    for line in drawn.getvalue().splitlines():
        out.write(stamp() + line + "\n")
    out.flush()
