"""Output: the original tool's text lines (existing parsers depend on them
byte for byte) and JSON objects with units in every key.

JSON output is JSON Lines: one object per line, each with a ``"type"``
(``config``, ``sample``, ``summary``, ``error``, ...) so a consumer can
dispatch on it.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from migmon._core import (
    ClientSummary,
    DirtySample,
    DirtySummary,
    DowntimeEvent,
    EchoStats,
    Percentiles,
    ProbeSummary,
    VmDstSample,
    VmSessionSummary,
    VmSrcSample,
    VmSrcSummary,
)

__all__ = [
    "ORIGINAL_BUCKET_LABELS_US",
    "dirty_sample_json",
    "dirty_sample_line",
    "dirty_summary_json",
    "dirty_summary_lines",
    "emit_json",
    "latency_buckets_lines",
    "percentiles_json",
]

#: The original's 21 bucket labels: 1, 2, 4 ... 1048576 us.
ORIGINAL_BUCKET_LABELS_US = [1 << i for i in range(21)]


def emit_json(obj: dict[str, Any], out: TextIO | None = None) -> None:
    """Writes one JSON line and flushes it, so a reader sees it at once."""
    stream = out if out is not None else sys.stdout
    stream.write(json.dumps(obj, separators=(",", ":")) + "\n")
    stream.flush()


def percentiles_json(p: Percentiles | None) -> dict[str, Any] | None:
    """Latency figures in ns, as a JSON-ready dict."""
    if p is None:
        return None
    return {
        "count": p.count,
        "min_ns": p.min_ns,
        "mean_ns": round(p.mean_ns, 1),
        "p50_ns": p.p50_ns,
        "p90_ns": p.p90_ns,
        "p99_ns": p.p99_ns,
        "p99_9_ns": p.p999_ns,
        "p99_99_ns": p.p9999_ns,
        "max_ns": p.max_ns,
    }


def dirty_sample_line(s: DirtySample) -> str:
    """The original's per-second line; with latencies, its ``lat (us)`` tail."""
    line = (
        f"dirty-rate: {s.rate_mb_s:.0f} (MB/s), time (ms): {s.duration_ms}, load: {s.load_pct:.2f}%"
    )
    if s.latency is not None:
        p = s.latency
        line += f", lat (us): p50={p.p50_ns // 1000} p99={p.p99_ns // 1000} max={p.max_ns // 1000}"
    return line


def dirty_sample_json(s: DirtySample) -> dict[str, Any]:
    """One interval as a JSON-ready dict."""
    return {
        "type": "sample",
        "index": s.index,
        "elapsed_s": round(s.elapsed_s, 6),
        "duration_ms": s.duration_ms,
        "bytes": s.bytes,
        "rate_mb_s": round(s.rate_mb_s, 3),
        "load_pct": round(s.load_pct, 2),
        "latency": percentiles_json(s.latency),
    }


def latency_buckets_lines(buckets: list[int]) -> list[str]:
    """The original's histogram, printed when it stops: a heading and 21 lines."""
    lines = ["Memory Latencies:"]
    for label, count in zip(ORIGINAL_BUCKET_LABELS_US, buckets, strict=True):
        lines.append(f"{label:12d} (us): {count}")
    return lines


def _fmt_us(ns: int | float) -> str:
    return f"{ns / 1000:.1f}"


def dirty_summary_lines(s: DirtySummary, verify: bool) -> list[str]:
    """A short plain-text summary of a whole run."""
    mb = s.bytes / (1 << 20)
    lines = [
        f"Summary: dirtied {mb:.0f} MB in {s.duration_s:.3f} s, "
        f"average {s.rate_mb_s:.0f} (MB/s), prefault {s.prefault_s:.3f} s",
    ]
    if s.samples:
        rates = [x.rate_mb_s for x in s.samples]
        lines.append(
            f"Per-interval rate (MB/s): min={min(rates):.0f} max={max(rates):.0f} "
            f"over {len(rates)} intervals"
        )
    if not s.completed_prefault:
        lines.append("Integrity: not checked (stopped while prefaulting)")
    elif verify:
        lines.append(f"Integrity: OK, {s.verified_pages} pages checked at the end")
    else:
        lines.append("Integrity: not checked (--no-verify)")
    if s.latency is not None and s.latency.count:
        p = s.latency
        lines.append(
            f"Latency (us): min={_fmt_us(p.min_ns)} p50={_fmt_us(p.p50_ns)} "
            f"p90={_fmt_us(p.p90_ns)} p99={_fmt_us(p.p99_ns)} p99.9={_fmt_us(p.p999_ns)} "
            f"p99.99={_fmt_us(p.p9999_ns)} max={_fmt_us(p.max_ns)}"
        )
    return lines


def dirty_summary_json(s: DirtySummary, verify: bool) -> dict[str, Any]:
    """The whole run as a JSON-ready dict."""
    return {
        "type": "summary",
        "prefault_s": round(s.prefault_s, 6),
        "duration_s": round(s.duration_s, 6),
        "bytes": s.bytes,
        "rate_mb_s": round(s.rate_mb_s, 3),
        "intervals": len(s.samples),
        "completed_prefault": s.completed_prefault,
        "verified": verify and s.completed_prefault,
        "verified_pages": s.verified_pages,
        "latency": percentiles_json(s.latency),
        "buckets_us": None
        if s.buckets is None
        else {str(label): n for label, n in zip(ORIGINAL_BUCKET_LABELS_US, s.buckets, strict=True)},
    }


# ---- downtime ---------------------------------------------------------------

#: What the original writes as the delay of its spike log's first line (-1
#: as an unsigned 64-bit number); its plotting script only reads the time.
SPIKE_LOG_MARKER = 18446744073709551615


def _ms(ns: int | float) -> str:
    return f"{ns / 1e6:.3f}"


def wall_time(unix_s: float) -> str:
    """Local wall-clock time with milliseconds."""
    import datetime

    t = datetime.datetime.fromtimestamp(unix_s)
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def status_line(now_ms: int, max_gap_ns: int, cur_gap_ns: int, extra: str = "") -> str:
    """The original's live line ``[now_ms] max_delay: X (ms), cur: Y (ms)``."""
    max_ms, cur_ms = max_gap_ns // 1_000_000, cur_gap_ns // 1_000_000
    return f"[{now_ms}] max_delay: {max_ms} (ms), cur: {cur_ms} (ms){extra}"


def event_line(e: DowntimeEvent) -> str:
    """One downtime event, on its own line."""
    who = f" from {e.peer}" if e.peer else ""
    return (
        f"downtime{who}: at {wall_time(e.start_unix_s)}, gap {_ms(e.gap_ns)} (ms), "
        f"blackout ~{_ms(e.blackout_ns)} (ms) +/-{_ms(e.resolution_ns)}, "
        f"probes missed {e.probes_missed}"
    )


def event_json(e: DowntimeEvent) -> dict[str, Any]:
    """One downtime event as a JSON-ready dict."""
    return {
        "type": "event",
        "index": e.index,
        "peer": e.peer,
        "start_unix_s": round(e.start_unix_s, 6),
        "start_offset_s": round(e.start_offset_s, 6),
        "gap_ms": round(e.gap_ns / 1e6, 3),
        "blackout_ms": round(e.blackout_ns / 1e6, 3),
        "resolution_ms": round(e.resolution_ns / 1e6, 3),
        "probes_missed": e.probes_missed,
    }


def events_table(events: list[DowntimeEvent]) -> list[str]:
    """The events as a plain table."""
    if not events:
        return []
    lines = [f"  {'#':>3}  {'start':23}  {'gap (ms)':>10}  {'blackout (ms)':>13}  {'missed':>6}"]
    for e in events:
        lines.append(
            f"  {e.index:>3}  {wall_time(e.start_unix_s):23}  {_ms(e.gap_ns):>10}  "
            f"{_ms(e.blackout_ns):>13}  {e.probes_missed:>6}"
        )
    return lines


def _rtt_us(p: Percentiles) -> str:
    def us(v: float) -> str:
        return f"{v / 1000:.1f}"

    return (
        f"min={us(p.min_ns)} avg={us(p.mean_ns)} p50={us(p.p50_ns)} p90={us(p.p90_ns)} "
        f"p99={us(p.p99_ns)} p99.9={us(p.p999_ns)} max={us(p.max_ns)}"
    )


def probe_summary_lines(s: ProbeSummary) -> list[str]:
    """The end-of-run summary of a probing client."""
    lines = []
    if s.one_way:
        lines.append(
            f"Summary: sent {s.sent} in {s.duration_s:.3f} s (one way), send errors {s.send_errors}"
        )
    else:
        pct = 100.0 * s.lost / s.sent if s.sent else 0.0
        lines.append(
            f"Summary: sent {s.sent}, received {s.received}, lost {s.lost} ({pct:.2f}%), "
            f"duplicates {s.duplicates}, reordered {s.reordered}, refused {s.refused}, "
            f"in {s.duration_s:.3f} s"
        )
        if s.rtt is not None and s.rtt.count:
            lines.append(f"RTT (us): {_rtt_us(s.rtt)}")
    j = s.send_jitter
    lines.append(
        f"Send jitter (us): p50={j.p50_ns / 1000:.1f} p99={j.p99_ns / 1000:.1f} "
        f"max={j.max_ns / 1000:.1f}"
    )
    if not s.one_way:
        thr = "-" if s.threshold_ns is None else _ms(s.threshold_ns)
        lines.append(
            f"Downtime events: {len(s.events)} (threshold {thr} (ms), "
            f"resolution +/-{_ms(s.interval_ns)} (ms))"
        )
        lines.extend(events_table(s.events))
        lines.append(
            f"Total downtime: {_ms(s.total_downtime_ns)} (ms), "
            f"worst: {_ms(s.worst_downtime_ns)} (ms)"
        )
        if s.threshold_ns is not None and s.open_gap_ns >= s.threshold_ns:
            lines.append(f"Outage still open at the end: no reply for {_ms(s.open_gap_ns)} (ms)")
    return lines


def _pct_json(p: Percentiles | None) -> dict[str, Any] | None:
    return percentiles_json(p)


def probe_summary_json(s: ProbeSummary) -> dict[str, Any]:
    """The whole probe run as a JSON-ready dict."""
    return {
        "type": "summary",
        "duration_s": round(s.duration_s, 6),
        "interval_ms": s.interval_ns / 1e6,
        "one_way": s.one_way,
        "sent": s.sent,
        "received": s.received,
        "lost": s.lost,
        "duplicates": s.duplicates,
        "reordered": s.reordered,
        "refused": s.refused,
        "foreign": s.foreign,
        "send_errors": s.send_errors,
        "skipped": s.skipped,
        "rtt": _pct_json(s.rtt),
        "send_jitter": _pct_json(s.send_jitter),
        "baseline_gap_ms": None if s.baseline_gap_ns is None else s.baseline_gap_ns / 1e6,
        "threshold_ms": None if s.threshold_ns is None else s.threshold_ns / 1e6,
        "max_gap_ms": s.max_gap_ns / 1e6,
        "total_downtime_ms": s.total_downtime_ns / 1e6,
        "worst_downtime_ms": s.worst_downtime_ns / 1e6,
        "open_gap_ms": s.open_gap_ns / 1e6,
        "events": [event_json(e) for e in s.events],
    }


def client_summary_lines(c: ClientSummary) -> list[str]:
    """A one-way server's summary of one client."""
    lines = [
        f"Client {c.peer}: packets {c.packets}, probes {c.probes}, lost {c.lost}, "
        f"reordered {c.reordered}, max_delay {_ms(c.max_gap_ns)} (ms), events {len(c.events)}"
    ]
    lines.extend(events_table(c.events))
    if c.events:
        total = sum(e.blackout_ns for e in c.events)
        worst = max(e.blackout_ns for e in c.events)
        lines.append(f"  Total downtime: {_ms(total)} (ms), worst: {_ms(worst)} (ms)")
    return lines


def client_summary_json(c: ClientSummary) -> dict[str, Any]:
    """A one-way server's figures for one client, JSON-ready."""
    return {
        "peer": c.peer,
        "packets": c.packets,
        "probes": c.probes,
        "lost": c.lost,
        "reordered": c.reordered,
        "max_gap_ms": c.max_gap_ns / 1e6,
        "threshold_ms": None if c.threshold_ns is None else c.threshold_ns / 1e6,
        "events": [event_json(e) for e in c.events],
    }


def echo_stats_json(s: EchoStats) -> dict[str, Any]:
    """An echo server's counters, JSON-ready."""
    return {
        "type": "summary",
        "packets": s.packets,
        "bytes": s.bytes,
        "probes": s.probes,
        "send_errors": s.send_errors,
        "clients": s.clients,
    }


# ---- vm ------------------------------------------------------------------------


def vm_speed_line(s: VmSrcSample) -> str:
    """The original's ``Speed: N (MB/s)`` with our figures after a comma."""
    line = f"Speed: {int(s.rate_mb_s)} (MB/s)"
    if s.channel_mb_s:
        line += ", channels: " + " ".join(f"{c:.0f}" for c in s.channel_mb_s) + " (MB/s)"
    if s.requests:
        line += f", requests: {s.requests}"
    return line


def vm_latency_line(s: VmDstSample, with_session: bool) -> str:
    """The original's ``Latency: average X (us), max: Y (us)`` and more."""
    p = s.latency
    line = (
        f"Latency: average {int(p.mean_ns // 1000)} (us), max: {p.max_ns // 1000} (us), "
        f"p50: {p.p50_ns / 1000:.1f} p99: {p.p99_ns / 1000:.1f} (us), requests: {p.count}"
    )
    if with_session:
        line += f", session: {s.session}"
    return line


def vm_src_sample_json(s: VmSrcSample) -> dict[str, Any]:
    """A source interval, JSON-ready."""
    return {
        "type": "sample",
        "index": s.index,
        "elapsed_s": round(s.elapsed_s, 6),
        "duration_ms": s.duration_ms,
        "bytes": s.bytes,
        "rate_mb_s": round(s.rate_mb_s, 3),
        "channel_mb_s": [round(c, 3) for c in s.channel_mb_s],
        "requests": s.requests,
    }


def vm_src_summary_lines(s: VmSrcSummary) -> list[str]:
    """A source's summary."""
    return [
        f"Summary: sent {s.bytes / (1 << 20):.0f} MB in {s.duration_s:.3f} s, "
        f"average {s.rate_mb_s:.0f} (MB/s), peak {s.peak_mb_s:.0f} (MB/s), "
        f"requests answered {s.requests}, channels {s.channels}, "
        f"preempt {'yes' if s.preempt else 'no'}, end: {s.end_reason}"
    ]


def vm_src_summary_json(s: VmSrcSummary) -> dict[str, Any]:
    """A source's summary, JSON-ready."""
    return {
        "type": "summary",
        "duration_s": round(s.duration_s, 6),
        "bytes": s.bytes,
        "rate_mb_s": round(s.rate_mb_s, 3),
        "peak_mb_s": round(s.peak_mb_s, 3),
        "requests": s.requests,
        "channels": s.channels,
        "preempt": s.preempt,
        "end_reason": s.end_reason,
        "intervals": len(s.samples),
    }


def vm_dst_sample_json(s: VmDstSample) -> dict[str, Any]:
    """A destination interval, JSON-ready."""
    return {
        "type": "sample",
        "session": s.session,
        "elapsed_s": round(s.elapsed_s, 6),
        "duration_ms": s.duration_ms,
        "bytes": s.bytes,
        "rate_mb_s": round(s.rate_mb_s, 3),
        "latency": percentiles_json(s.latency),
    }


def vm_session_lines(s: VmSessionSummary) -> list[str]:
    """A destination session's summary."""
    p = s.latency
    line = (
        f"Session {s.session} from {s.peer}: received {s.bytes / (1 << 20):.0f} MB in "
        f"{s.duration_s:.3f} s, channels {s.channels}, preempt {'yes' if s.preempt else 'no'}, "
        f"end: {s.reason}"
    )
    lines = [line]
    if p.count:
        lines.append(f"  Page requests: {p.count}, latency (us): {_rtt_us(p)}")
    return lines


def vm_session_json(s: VmSessionSummary) -> dict[str, Any]:
    """A destination session's summary, JSON-ready."""
    return {
        "type": "session",
        "session": s.session,
        "peer": s.peer,
        "duration_s": round(s.duration_s, 6),
        "bytes": s.bytes,
        "channels": s.channels,
        "preempt": s.preempt,
        "latency": percentiles_json(s.latency),
        "reason": s.reason,
    }


# ---- summaries on a terminal ---------------------------------------------------


def summary_rows(summary: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """The figures of a JSON summary as (name, value) rows; nested objects
    (percentiles) flatten to ``latency.p99_ns``; lists are left out (the
    events have their own table)."""
    rows: list[tuple[str, str]] = []
    for k, v in summary.items():
        # The buckets have their own table (the original's histogram).
        if k in ("type", "buckets_us") or isinstance(v, list):
            continue
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            rows += summary_rows(v, prefix=f"{name}.")
        elif isinstance(v, float):
            rows.append((name, f"{v:,.3f}"))
        elif isinstance(v, int) and not isinstance(v, bool):
            rows.append((name, f"{v:,}"))
        else:
            rows.append((name, "-" if v is None else str(v)))
    return rows


def print_summary(title: str, summary: dict[str, Any], plain: list[str], out: TextIO) -> None:
    """On a terminal, a table of every figure of the JSON summary; otherwise
    the plain lines (which parsers and logs read)."""
    if not out.isatty():
        for line in plain:
            out.write(line + "\n")
        out.flush()
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in summary_rows(summary):
        table.add_row(name, value)
    console = Console(file=out)
    console.print(table)
    for line in plain:
        if line.startswith("  ") or line.startswith("Downtime events"):
            console.print(line, highlight=False, markup=False)
