"""``vm``'s output: the original's lines (``Speed: N (MB/s)`` on the
source, ``Latency: average X (us), max: Y (us)`` on the destination) with
our figures after a comma, the session and run summaries, and the parsers
of those lines (for plots), tested as a pair."""

from __future__ import annotations

import re
from typing import Any

from migmon import Percentiles, VmDstSample, VmSessionSummary, VmSrcSample, VmSrcSummary
from migmon.output import Series

__all__ = [
    "LATENCY_RE",
    "SPEED_RE",
    "host_of",
    "latency_line",
    "parse_dst_json",
    "parse_dst_text",
    "parse_src_json",
    "parse_src_text",
    "session_lines",
    "speed_line",
    "src_summary_lines",
]

#: The source's per-interval line.
SPEED_RE = re.compile(r"^Speed:\s*(\d+)\s*\(MB/s\)(?:,\s*channels:\s*([\d.\s]+)\s*\(MB/s\))?")
#: The destination's per-interval line.
LATENCY_RE = re.compile(
    r"^Latency:\s*average\s*(\d+)\s*\(us\),\s*max:\s*(\d+)\s*\(us\)"
    r"(?:,\s*p50:\s*([\d.]+)\s*p99:\s*([\d.]+)\s*\(us\))?"
    r"(?:,\s*requests:\s*\d+)?(?:,\s*session:\s*(\d+))?"
)


def host_of(peer: str) -> str:
    """``1.2.3.4:5`` or ``[::1]:5`` -> the address, as the original prints it."""
    return peer.rsplit(":", 1)[0].strip("[]")


def speed_line(s: VmSrcSample) -> str:
    """The original's ``Speed: N (MB/s)`` with our figures after a comma."""
    line = f"Speed: {int(s.rate_mb_s)} (MB/s)"
    if s.channel_mb_s:
        line += ", channels: " + " ".join(f"{c:.0f}" for c in s.channel_mb_s) + " (MB/s)"
    if s.requests:
        line += f", requests: {s.requests}"
    return line


def latency_line(s: VmDstSample, with_session: bool) -> str:
    """The original's ``Latency: average X (us), max: Y (us)`` and more."""
    p = s.latency
    line = (
        f"Latency: average {int(p.mean_ns // 1000)} (us), max: {p.max_ns // 1000} (us), "
        f"p50: {p.p50_ns / 1000:.1f} p99: {p.p99_ns / 1000:.1f} (us), requests: {p.count}"
    )
    if with_session:
        line += f", session: {s.session}"
    return line


def rtt_us(p: Percentiles) -> str:
    """Latency percentiles in us, on one line."""

    def us(v: float) -> str:
        return f"{v / 1000:.1f}"

    return (
        f"min={us(p.min_ns)} avg={us(p.mean_ns)} p50={us(p.p50_ns)} p90={us(p.p90_ns)} "
        f"p99={us(p.p99_ns)} p99.9={us(p.p99_9_ns)} max={us(p.max_ns)}"
    )


def src_summary_lines(s: VmSrcSummary) -> list[str]:
    """A source's summary."""
    return [
        f"Summary: sent {s.bytes / (1 << 20):.0f} MB in {s.duration_s:.3f} s, "
        f"average {s.rate_mb_s:.0f} (MB/s), peak {s.peak_mb_s:.0f} (MB/s), "
        f"requests answered {s.requests}, channels {s.channels}, "
        f"preempt {'yes' if s.preempt else 'no'}, end: {s.end_reason}"
    ]


def session_lines(s: VmSessionSummary) -> list[str]:
    """A destination session's summary."""
    p = s.latency
    lines = [
        f"Session {s.session} from {s.peer}: received {s.bytes / (1 << 20):.0f} MB in "
        f"{s.duration_s:.3f} s, channels {s.channels}, preempt {'yes' if s.preempt else 'no'}, "
        f"end: {s.reason}"
    ]
    if p.count:
        lines.append(f"  Page requests: {p.count}, latency (us): {rtt_us(p)}")
    return lines


def parse_src_text(lines: list[str], label: str) -> Series:
    """A source's ``Speed:`` lines as a series, one a second."""
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


def parse_dst_text(lines: list[str], label: str) -> Series:
    """A destination's ``Latency:`` lines as a series, one a second per
    session (a line names its session when several run at once)."""
    s = Series("vm_dst", label)
    seen: dict[int, int] = {}
    # One source after another: each "Connected from" starts a session
    # (lines name their session only when several run at once).
    current = -1
    for line in lines:
        if line.startswith("Connected from"):
            current += 1
            continue
        m = LATENCY_RE.match(line)
        if not m:
            continue
        session = int(m.group(5)) if m.group(5) is not None else max(current, 0)
        seen[session] = seen.get(session, 0) + 1
        values = {"avg_us": float(m.group(1)), "max_us": float(m.group(2))}
        if m.group(3) is not None:
            values |= {"p50_us": float(m.group(3)), "p99_us": float(m.group(4))}
        s.add(float(seen[session]), **values)
        s.sessions.append(session)
    return s


def parse_src_json(objs: list[dict[str, Any]], label: str) -> Series:
    """``vm -s --json`` samples as a series."""
    s = Series("vm_src", label)
    for o in objs:
        if o.get("type") == "sample":
            values = {"rate_mb_s": o["rate_mb_s"]}
            for k, v in enumerate(o.get("channel_mb_s", [])):
                values[f"channel{k}_mb_s"] = v
            s.add(o["elapsed_s"], **values)
    return s


def parse_dst_json(objs: list[dict[str, Any]], label: str) -> Series:
    """``vm -d --json`` samples with page requests as a series."""
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
            s.sessions.append(int(o.get("session", 0)))
        elif o.get("type") == "session" and isinstance(o.get("session"), int):
            s.session_names[o["session"]] = _settings(o)
    return s


def _settings(o: dict[str, Any]) -> str:
    """A session's settings in a few words: ``preempt, 2 channels``."""
    parts = []
    if o.get("preempt"):
        parts.append("preempt")
    ch = o.get("channels")
    if isinstance(ch, int) and ch > 0:
        parts.append(f"{ch} channel{'s' if ch > 1 else ''}")
    return ", ".join(parts) or "one stream"
