"""Reading what mig_mon (ours and the original) writes, for plots and
automation: spike logs, ``mm_dirty`` text, ``vm`` source and destination
text, and our ``--json`` output of every sub-tool. The kind is recognised
by content, not by file name; each tool's parser lives beside the code
that writes the format (:mod:`migmon.output`). Pure Python: no plotting
library needed.
"""

from __future__ import annotations

import json
import re
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


def parse_file(path: str | Path) -> Series:
    """Parses one file; raises :class:`ParseError` with the reason."""
    p = Path(path)
    try:
        text = p.read_text(errors="replace")
    except OSError as e:
        raise ParseError(f"{p}: {e.strerror or e}") from None
    return parse_text(text, label=p.name)


def parse_text(text: str, label: str = "input") -> Series:
    """Recognises and parses one output."""
    lines = [_STAMP.sub("", x.strip()) for x in text.splitlines() if x.strip()]
    if not lines:
        raise ParseError(f"{label}: empty")
    if lines[0].startswith("{"):
        return _parse_json(lines, label)
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


def _parse_json(lines: list[str], label: str) -> Series:
    try:
        objs = [json.loads(x) for x in lines]
    except json.JSONDecodeError as e:
        raise ParseError(f"{label}: not JSON Lines ({e.msg}, line {e.lineno})") from None
    if objs and isinstance(objs[0], dict) and "event" in objs[0] and "timestamp" in objs[0]:
        return _qemu_events(
            [(o["timestamp"]["seconds"] + o["timestamp"]["microseconds"] / 1e6, o["event"])
             for o in objs if isinstance(o, dict) and "event" in o and "timestamp" in o],
            label,
        )  # fmt: skip
    if not objs or not isinstance(objs[0], dict) or objs[0].get("type") != "config":
        raise ParseError(f"{label}: JSON without a mig_mon config line")
    tool, role = objs[0].get("tool"), objs[0].get("role")
    if tool == "mm_dirty":
        s = dirty.parse_json(objs, label)
    elif tool in ("client", "server"):
        s = downtime.parse_json(objs, label)
    elif tool == "vm" and role == "src":
        s = vm.parse_src_json(objs, label)
    elif tool == "vm" and role == "dst":
        s = vm.parse_dst_json(objs, label)
    else:
        raise ParseError(f"{label}: JSON of '{tool}' has nothing to plot")
    s.start_unix_s = _wall_clock_of_zero(objs)
    return s


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
            when = datetime.strptime(m.group(1) + m.group(2), "%Y-%m-%d %H:%M:%S.%f%z")
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
