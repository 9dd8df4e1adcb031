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

from migmon._core import DirtySample, DirtySummary, Percentiles

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
