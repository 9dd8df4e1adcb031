"""Reading what mig_mon (ours and the original) writes, for plots and
automation: spike logs, ``mm_dirty`` text, ``vm`` source and destination
text, and our ``--json`` output of every sub-tool. The kind is recognised
by content, not by file name. Pure Python: no plotting library needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from migmon.output.dirty import DIRTY_RE
from migmon.output.downtime import SPIKE_MARKERS, SPIKE_RE
from migmon.output.vm import LATENCY_RE, SPEED_RE

__all__ = ["KINDS", "ParseError", "Series", "parse_file", "parse_text"]

#: What a series can hold.
KINDS = ("downtime", "dirty", "vm_src", "vm_dst")

MARKERS = SPIKE_MARKERS


class ParseError(ValueError):
    """The input is not something mig_mon wrote (the message says why)."""


@dataclass
class Series:
    """One input's data, as columns of equal length.

    ``x`` is seconds from the start of the run. ``columns`` holds the
    y values by name (units in the names: ``rate_mb_s``, ``p99_us``...);
    ``events`` (downtime only) holds ``(x_s, gap_ms, blackout_ms)``.
    """

    kind: str
    label: str
    x: list[float] = field(default_factory=list)
    columns: dict[str, list[float]] = field(default_factory=dict)
    events: list[tuple[float, float, float]] = field(default_factory=list)

    def add(self, x: float, **values: float) -> None:
        """Appends one point."""
        self.x.append(x)
        for k, v in values.items():
            self.columns.setdefault(k, []).append(v)


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
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    if not lines:
        raise ParseError(f"{label}: empty")
    if lines[0].startswith("{"):
        return _parse_json(lines, label)
    if all(SPIKE_RE.match(x) for x in lines):
        return _parse_spike_log(lines, label)
    if any(DIRTY_RE.search(x) for x in lines):
        return _parse_dirty_text(lines, label)
    if any(SPEED_RE.match(x) for x in lines):
        return _parse_speed_text(lines, label)
    if any(LATENCY_RE.match(x) for x in lines):
        return _parse_latency_text(lines, label)
    raise ParseError(f"{label}: not a spike log, mm_dirty or vm output, nor mig_mon --json output")


def _parse_spike_log(lines: list[str], label: str) -> Series:
    s = Series("downtime", label)
    start: int | None = None
    for line in lines:
        m = SPIKE_RE.match(line)
        assert m is not None
        t, delay = int(m.group(1)), m.group(2)
        if start is None:
            start = t
        if delay in MARKERS:
            continue
        x = float(t - start)
        s.add(x, delay_ms=float(delay))
        s.events.append((x, float(delay), float(delay)))
    return s


def _parse_dirty_text(lines: list[str], label: str) -> Series:
    s = Series("dirty", label)
    t = 0.0
    for line in lines:
        m = DIRTY_RE.search(line)
        if not m:
            continue
        t += int(m.group(2)) / 1000
        values = {"rate_mb_s": float(m.group(1)), "load_pct": float(m.group(3))}
        if m.group(4) is not None:
            values |= {
                "p50_us": float(m.group(4)),
                "p99_us": float(m.group(5)),
                "max_us": float(m.group(6)),
            }
        s.add(t, **values)
    return s


def _parse_speed_text(lines: list[str], label: str) -> Series:
    s = Series("vm_src", label)
    for i, line in enumerate(x for x in lines if SPEED_RE.match(x)):
        m = SPEED_RE.match(line)
        assert m is not None
        values = {"rate_mb_s": float(m.group(1))}
        if m.group(2):
            for k, v in enumerate(m.group(2).split()):
                values[f"channel{k}_mb_s"] = float(v)
        s.add(float(i + 1), **values)
    return s


def _parse_latency_text(lines: list[str], label: str) -> Series:
    s = Series("vm_dst", label)
    for i, line in enumerate(x for x in lines if LATENCY_RE.match(x)):
        m = LATENCY_RE.match(line)
        assert m is not None
        values = {"avg_us": float(m.group(1)), "max_us": float(m.group(2))}
        if m.group(3) is not None:
            values |= {"p50_us": float(m.group(3)), "p99_us": float(m.group(4))}
        s.add(float(i + 1), **values)
    return s


def _parse_json(lines: list[str], label: str) -> Series:
    try:
        objs = [json.loads(x) for x in lines]
    except json.JSONDecodeError as e:
        raise ParseError(f"{label}: not JSON Lines ({e.msg}, line {e.lineno})") from None
    if not objs or not isinstance(objs[0], dict) or objs[0].get("type") != "config":
        raise ParseError(f"{label}: JSON without a mig_mon config line")
    tool, role = objs[0].get("tool"), objs[0].get("role")
    if tool == "mm_dirty":
        s = Series("dirty", label)
        for o in objs:
            if o.get("type") == "sample":
                values = {"rate_mb_s": o["rate_mb_s"], "load_pct": o["load_pct"]}
                if o.get("latency"):
                    lat = o["latency"]
                    values |= {
                        "p50_us": lat["p50_ns"] / 1000,
                        "p99_us": lat["p99_ns"] / 1000,
                        "max_us": lat["max_ns"] / 1000,
                    }
                s.add(o["elapsed_s"], **values)
        return s
    if tool in ("client", "server"):
        s = Series("downtime", label)
        events = [o for o in objs if o.get("type") == "event"]
        if not events:  # a summary may still carry them (server's per client)
            for o in objs:
                if o.get("type") == "summary":
                    events += o.get("events", [])
                    for c in o.get("clients", []):
                        events += c.get("events", [])
        for ev in events:
            s.add(ev["start_offset_s"], delay_ms=ev["gap_ms"])
            s.events.append((ev["start_offset_s"], ev["gap_ms"], ev["blackout_ms"]))
        return s
    if tool == "vm" and role == "src":
        s = Series("vm_src", label)
        for o in objs:
            if o.get("type") == "sample":
                values = {"rate_mb_s": o["rate_mb_s"]}
                for k, v in enumerate(o.get("channel_mb_s", [])):
                    values[f"channel{k}_mb_s"] = v
                s.add(o["elapsed_s"], **values)
        return s
    if tool == "vm" and role == "dst":
        s = Series("vm_dst", label)
        for o in objs:
            lat = o.get("latency") if o.get("type") == "sample" else None
            if lat and lat.get("count"):
                s.add(
                    o["elapsed_s"],
                    avg_us=lat["mean_ns"] / 1000,
                    max_us=lat["max_ns"] / 1000,
                    p50_us=lat["p50_ns"] / 1000,
                    p99_us=lat["p99_ns"] / 1000,
                )
        return s
    raise ParseError(f"{label}: JSON of '{tool}' has nothing to plot")
