"""``mm_dirty``'s output: the original's lines byte for byte (header,
banners, ``dirty-rate: ...`` per interval, the latency histogram at exit),
our summary lines, and the parser that reads the per-interval lines back
(for plots), tested as a pair."""

from __future__ import annotations

import re
from typing import Any

from migmon import DirtyConfig, DirtyPause, DirtySample, DirtySummary, __version__
from migmon.output import Series

__all__ = [
    "BANNER_DIRTY",
    "BANNER_PREFAULT",
    "DIRTY_RE",
    "header_lines",
    "latency_buckets_lines",
    "parse_json",
    "parse_text",
    "pause_line",
    "sample_line",
    "summary_lines",
]

_RULE = "+------------------------+"
BANNER_PREFAULT = [_RULE, "|   Prefault Memory      |", _RULE]
BANNER_DIRTY = [_RULE, "|   Start Dirty Memory   |", _RULE]

#: One ``dirty-rate:`` line: rate, time (ms), load, and with -L the latencies.
DIRTY_RE = re.compile(
    r"dirty-rate:\s*([\d.]+)\s*\(MB/s\),\s*time \(ms\):\s*(\d+),\s*load:\s*([\d.]+)%"
    r"(?:,\s*lat \(us\):\s*p50=(\d+)\s+p99=(\d+)\s+max=(\d+))?"
)


def header_lines(cfg: DirtyConfig, page_size_bytes: int) -> list[str]:
    """The original's header."""
    rate = "Maximum" if cfg.rate_mb_s is None else f"{cfg.rate_mb_s} (MB/s)"
    lines = [
        f"Binary version: \t{__version__}",
        f"Test memory size: \t{cfg.size_mb} (MB)",
        f"Backend page size: \t{page_size_bytes} (Bytes)",
        "Dirty step size: \t4096 (Bytes)",
        f"Dirty memory rate: \t{rate}",
        f"Dirty pattern: \t\t{cfg.pattern}",
        f"Recording latencies: \t{'yes' if cfg.record_latency else 'no'}",
    ]
    if cfg.threads > 1:
        lines.append(f"Dirty threads: \t\t{cfg.threads}")
    return lines


def sample_line(s: DirtySample) -> str:
    """The original's per-second line; with latencies, its ``lat (us)`` tail."""
    line = (
        f"dirty-rate: {s.rate_mb_s:.0f} (MB/s), time (ms): {s.duration_ms}, load: {s.load_pct:.2f}%"
    )
    if s.latency is not None:
        p = s.latency
        line += f", lat (us): p50={p.p50_ns // 1000} p99={p.p99_ns // 1000} max={p.max_ns // 1000}"
    return line


def pause_line(p: DirtyPause) -> str:
    """A pause, on its own line, when it is over."""
    import datetime

    t = datetime.datetime.fromtimestamp(p.start_unix_s)
    at = t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"
    threads = ",".join(str(x) for x in p.threads)
    return f"pause: at {at}, {p.length_ms:.3f} (ms) without dirtying, threads {threads}"


def latency_buckets_lines(buckets_us: dict[int, int]) -> list[str]:
    """The original's histogram, printed when it stops: a heading and 21 lines."""
    lines = ["Memory Latencies:"]
    for label, count in sorted(buckets_us.items()):
        lines.append(f"{label:12d} (us): {count}")
    return lines


def _us(ns: int | float) -> str:
    return f"{ns / 1000:.1f}"


def summary_lines(s: DirtySummary) -> list[str]:
    """A short plain-text summary of a whole run."""
    mb = s.bytes / (1 << 20)
    lines = [
        f"Summary: dirtied {mb:.0f} MB in {s.duration_s:.3f} s, "
        f"average {s.rate_mb_s:.0f} (MB/s), prefault {s.prefault_s:.3f} s",
    ]
    if s.completed_prefault:
        lines.append(f"CPU (mig_mon itself): {s.cpu_s:.3f} s, {s.cpu_pct:.2f}% of a core")
        lines.append(
            f"Pauses: {s.pauses}, total {s.paused_ms:.3f} (ms), longest {s.pause_max_ms:.3f} (ms)"
        )
    if s.samples:
        rates = [x.rate_mb_s for x in s.samples]
        lines.append(
            f"Per-interval rate (MB/s): min={min(rates):.0f} max={max(rates):.0f} "
            f"over {len(rates)} intervals"
        )
    if not s.completed_prefault:
        lines.append("Integrity: not checked (stopped while prefaulting)")
    elif s.verified:
        lines.append(f"Integrity: OK, {s.verified_pages} pages checked at the end")
    else:
        lines.append("Integrity: not checked (--no-verify)")
    if s.latency is not None and s.latency.count:
        p = s.latency
        lines.append(
            f"Latency (us): min={_us(p.min_ns)} p50={_us(p.p50_ns)} "
            f"p90={_us(p.p90_ns)} p99={_us(p.p99_ns)} p99.9={_us(p.p99_9_ns)} "
            f"p99.99={_us(p.p99_99_ns)} max={_us(p.max_ns)}"
        )
    return lines


def parse_text(lines: list[str], label: str) -> Series:
    """The ``dirty-rate:`` lines (ours or the original's) as a series; x is
    the sum of the intervals' lengths."""
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


def parse_json(objs: list[dict[str, Any]], label: str) -> Series:
    """``mm_dirty --json`` samples as a series."""
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
        elif o.get("type") == "pause":
            s.pauses.append((o["start_offset_s"], o["length_ms"]))
    return s
