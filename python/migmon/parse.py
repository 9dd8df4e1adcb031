"""Reading what mig_mon (ours and the original) writes, for plots and
automation: spike logs, ``mm_dirty`` text, ``vm`` source and destination
text, and our ``--json`` output of every sub-tool. The kind is recognised
by content, not by file name; each tool's parser lives beside the code
that writes the format (:mod:`migmon.output`). Pure Python: no plotting
library needed.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from migmon.output import ParseError, Series, dirty, downtime, vm

__all__ = ["KINDS", "ParseError", "Series", "parse_file", "parse_text"]

#: The prefix --timestamps puts on text lines.
_STAMP = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+\] ")

#: What a series can hold ("qemu": QEMU's events, for a shared time axis).
KINDS = ("downtime", "dirty", "vm_src", "vm_dst", "qemu")

#: A line of ``virsh qemu-monitor-event --timestamp``.
_VIRSH_EVENT = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)([+-]\d{4}): event (\w+) for domain"
)


#: The most a plot reads from one input: a day of mm_dirty --json at one
#: sample a second is about 30 MB.
MAX_INPUT_BYTES = 256 * 2**20


def read_input(
    path: Path, error: Callable[[str], Exception] = ParseError, limit: int = MAX_INPUT_BYTES
) -> bytes:
    """A file's bytes, for a reader of mig_mon's inputs: a device (which may
    never end) or more than ``limit`` bytes is ``error``, as is a file that
    cannot be read."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            raise error(f"{path}: a device, not mig_mon output")
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise error(f"{path}: {e.strerror or e}") from None
    if len(data) > limit:
        raise error(f"{path}: more than {limit >> 20} MB, not mig_mon output")
    return data


def parse_file(path: str | Path) -> Series:
    """Parses one file; raises :class:`ParseError` with the reason."""
    p = Path(path)
    data = read_input(p)
    if b"\0" in data:
        raise ParseError(f"{p}: binary data, not mig_mon output")
    return parse_text(data.decode(errors="replace"), label=p.name)


def parse_text(text: str, label: str = "input") -> Series:
    """Recognises and parses one output."""
    try:
        return _parse_text(text.lstrip("\ufeff"), label)
    except OverflowError as e:
        raise ParseError(f"{label}: a number too large ({e})") from None
    except RecursionError:
        raise ParseError(f"{label}: nested too deeply") from None


def _parse_text(text: str, label: str) -> Series:
    numbered = [
        (n, _STAMP.sub("", x.strip())) for n, x in enumerate(text.splitlines(), 1) if x.strip()
    ]
    lines = [x for _, x in numbered]
    if not lines:
        raise ParseError(f"{label}: empty")
    if lines[0].startswith("{"):
        return _parse_json(numbered, label)
    if _VIRSH_EVENT.match(lines[0]):
        return _parse_virsh_events(lines, label)
    if all(downtime.SPIKE_RE.match(x) for x in lines):
        return downtime.parse_spike_log(lines, label)
    if any(dirty.DIRTY_RE.search(x) for x in lines):
        return dirty.parse_text(lines, label)
    if any(vm.SPEED_RE.match(x) for x in lines):
        return vm.parse_src_text(lines, label)
    if any(vm.LATENCY_RE.match(x) for x in lines):
        return vm.parse_dst_text(lines, label)
    raise ParseError(f"{label}: not a spike log, mm_dirty or vm output, nor mig_mon --json output")


#: What a parser raises on input of the right kind but the wrong shape.
_MALFORMED = (
    KeyError,
    TypeError,
    ValueError,
    AttributeError,
    IndexError,
    OverflowError,
    ParseError,
)


def json_objects(
    numbered: Iterable[tuple[int, str]],
    label: str,
    error: Callable[[str], Exception] | None = ParseError,
) -> list[dict[str, Any]]:
    """Each ``(line number, text)`` as a JSON object: the one JSON Lines
    reader of mig_mon's own. A line that is not an object raises ``error``
    naming it (None: the line is skipped, for output mixed with text)."""
    objs: list[dict[str, Any]] = []
    for n, line in numbered:
        why = None
        try:
            o = json.loads(line)
        except json.JSONDecodeError as e:
            why = f"not JSON ({e.msg})"
        except RecursionError:
            why = "JSON nested too deeply"
        else:
            if not isinstance(o, dict):
                why = "not a JSON object"
        if why is None:
            objs.append(o)
        elif error is not None:
            raise error(f"{label}: line {n}: {why}") from None
    return objs


def json_objects_in(text: str) -> list[dict[str, Any]]:
    """The JSON objects among a tool's output lines; the text lines between
    them and a line cut off are passed over."""
    lines = enumerate(text.splitlines(), 1)
    return json_objects(((n, x) for n, x in lines if x.startswith("{")), "output", None)


def _parse_json(numbered: list[tuple[int, str]], label: str) -> Series:
    objs = json_objects(numbered, label)
    parser = _json_parser(objs, label)
    try:
        s = parser(objs)
        _check_numbers(s)
    except _MALFORMED as e:
        # Which line: the first that fails on its own (with the config).
        for i in range(len(objs)):
            try:
                _check_numbers(parser([objs[0], objs[i]] if i else objs[:1]))
            except _MALFORMED:
                raise ParseError(f"{label}: line {numbered[i][0]}: {_what(e)}") from None
        raise ParseError(f"{label}: {_what(e)}") from None
    if s.kind != "qemu":
        s.start_unix_s = _wall_clock_of_zero(objs)
    return s


def _json_parser(
    objs: list[dict[str, Any]], label: str
) -> Callable[[list[dict[str, Any]]], Series]:
    """The parser for these JSON Lines, by their first object."""
    first = objs[0]
    if "event" in first and "timestamp" in first:
        return lambda objs: _qemu_events(
            [
                (o["timestamp"]["seconds"] + o["timestamp"]["microseconds"] / 1e6, o["event"])
                for o in objs
                if "event" in o and "timestamp" in o
            ],
            label,
        )
    if first.get("type") != "config":
        raise ParseError(f"{label}: JSON without a mig_mon config line")
    tool, role = first.get("tool"), first.get("role")
    if tool == "mm_dirty":
        return lambda objs: dirty.parse_json(objs, label)
    if tool in ("client", "server"):
        return lambda objs: downtime.parse_json(objs, label)
    if tool == "vm" and role == "src":
        return lambda objs: vm.parse_src_json(objs, label)
    if tool == "vm" and role == "dst":
        return lambda objs: vm.parse_dst_json(objs, label)
    raise ParseError(f"{label}: JSON of '{tool}' has nothing to plot")


def _check_numbers(s: Series) -> None:
    """Every plotted value is a number (JSON's true and null are not)."""
    columns = {"time": s.x, **s.columns}
    for name, values in columns.items():
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ParseError(f"{name} is {json.dumps(v)}, not a number")
            if not math.isfinite(float(v)):
                raise ParseError(f"{name} is not a finite number")
    for tup in (*s.events, *s.pauses):
        for v in tup:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ParseError(f"an event value is {json.dumps(v)}, not a number")
            if not math.isfinite(float(v)):
                raise ParseError("an event value is not a finite number")


def _what(e: BaseException) -> str:
    if isinstance(e, KeyError):
        return f"no {e.args[0]!r} where the format has one"
    if isinstance(e, ParseError):
        return str(e)
    return f"a value of the wrong kind ({e})"


def _wall_clock_of_zero(objs: list[dict[str, Any]]) -> float | None:
    """The wall-clock time of x = 0, from an object that carries both
    clocks (mm_dirty's elapsed time starts after the prefault, later than
    the config's start_unix_s); the config's start when none does."""
    for o in objs[1:]:
        for wall, mono in (("unix_s", "elapsed_s"), ("start_unix_s", "start_offset_s")):
            w, m = o.get(wall), o.get(mono)
            if isinstance(w, (int, float)) and isinstance(m, (int, float)):
                return float(w - m)
    start = objs[0].get("start_unix_s")
    return float(start) if isinstance(start, (int, float)) else None


def _parse_virsh_events(lines: list[str], label: str) -> Series:
    from datetime import datetime

    stamped = []
    for line in lines:
        m = _VIRSH_EVENT.match(line)
        if m:
            try:
                when = datetime.strptime(m.group(1) + m.group(2), "%Y-%m-%d %H:%M:%S.%f%z")
            except ValueError:
                raise ParseError(f"{label}: an impossible date or zone: {m.group(1)}") from None
            stamped.append((when.timestamp(), m.group(3)))
    return _qemu_events(stamped, label)


def _qemu_events(stamped: list[tuple[float, str]], label: str) -> Series:
    """QEMU's events (QMP JSON as QEMU sends them, or virsh's event log):
    each STOP with the RESUME after it becomes a span; a STOP without one
    is a span of length 0."""
    s = Series("qemu", label)
    if not stamped:
        raise ParseError(f"{label}: no QEMU events")
    stamped.sort()
    s.start_unix_s = stamped[0][0]
    stop: float | None = None
    for t, name in stamped:
        x = t - s.start_unix_s
        s.add(x)
        if name == "STOP" and stop is None:
            stop = x
        elif name == "RESUME" and stop is not None:
            s.spans.append((stop, (x - stop) * 1e3, "STOP -> RESUME"))
            stop = None
    if stop is not None:
        s.spans.append((stop, 0.0, "STOP"))
    return s
