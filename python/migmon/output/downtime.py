"""The downtime tools' output: the original's lines (``listening on UDP
port ...``, the baseline lines, the live ``[now_ms] max_delay: X (ms),
cur: Y (ms)``), its spike log (``epoch_seconds,delay_ms`` after a marker
line), our event lines and summaries, and the spike log's parser."""

from __future__ import annotations

import contextlib
import datetime
import errno
import os
import re
import stat
import time
from typing import Any, TextIO

from migmon import ClientSummary, DowntimeEvent, EchoStats, ProbeSummary
from migmon.errors import ResourceError
from migmon.output import Series
from migmon.output.vm import rtt_us

__all__ = [
    "SPIKE_LOG_MARKER",
    "SPIKE_MARKERS",
    "SPIKE_RE",
    "SpikeLog",
    "client_summary_lines",
    "echo_summary_line",
    "event_line",
    "events_table",
    "parse_json",
    "parse_spike_log",
    "probe_summary_lines",
    "status_line",
    "wall_time",
]

#: What the original writes as the delay of its spike log's first line (-1
#: as an unsigned 64-bit number); its plotting script only reads the time.
SPIKE_LOG_MARKER = 18446744073709551615
#: A spike log line.
SPIKE_RE = re.compile(r"^(\d+),(-?\d+)$")
#: The delays that mark a spike log's start (ours and the original's).
SPIKE_MARKERS = {str(SPIKE_LOG_MARKER), "-1"}


class SpikeLog:
    """The original's spike log: ``epoch_seconds,delay_ms`` lines, the first
    a marker; flushed at every line so nothing is lost on a signal."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        #: Why writing stopped mid-run (a full disk), if it did.
        self.error: str | None = None
        self._f = _open_log(path) if path else None

    def marker(self) -> None:
        self._write(f"{int(time.time())},{SPIKE_LOG_MARKER}")

    def spike(self, gap_ms: float) -> None:
        self._write(f"{int(time.time())},{int(gap_ms)}")

    def _write(self, line: str) -> None:
        if self._f is None:
            return
        try:
            self._f.write(line + "\n")
            self._f.flush()
        except OSError as e:
            # The run goes on (its summary still counts every event); the
            # command reports the incomplete log at the end.
            why = e.strerror or str(e)
            self.error = f"spike log {self.path}: {why}; lines from {line!r} on are missing"
            with contextlib.suppress(OSError):
                self._f.close()
            self._f = None

    def close(self) -> None:
        if self._f is not None:
            try:
                self._f.close()
            except OSError as e:
                self.error = f"spike log {self.path}: {e.strerror or e}"
            self._f = None


def _open_log(path: str) -> TextIO:
    """Opens a spike log, refusing up front what cannot hold one: a kernel
    interface file (/proc, /sys), a device other than /dev/null, a
    directory, a FIFO nobody reads."""
    real = os.path.realpath(path)
    # /dev/stdout and the like resolve to /proc/PID/fd/...: what they point
    # at is judged below.
    if real.startswith(("/proc/", "/sys/")) and "/fd/" not in real:
        raise ResourceError(f"spike log {path}: a kernel interface file, not a log")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise ResourceError(f"spike log {path}: {e.strerror}") from None
    if st is not None and stat.S_ISFIFO(st.st_mode):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            why = "a FIFO that nobody reads" if e.errno == errno.ENXIO else e.strerror
            raise ResourceError(f"spike log {path}: {why}") from None
        os.set_blocking(fd, True)
        return os.fdopen(fd, "w")
    tty = stat.S_ISCHR(st.st_mode) and real.startswith(("/dev/pts/", "/dev/tty")) if st else False
    if st is not None and not stat.S_ISREG(st.st_mode) and real != os.devnull and not tty:
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a device"
        raise ResourceError(f"spike log {path}: {kind}, not a regular file or a FIFO")
    try:
        return open(path, "w")
    except OSError as e:
        raise ResourceError(f"spike log {path}: {e.strerror}") from None


def _ms(v: float) -> str:
    return f"{v:.3f}"


def wall_time(unix_s: float) -> str:
    """Local wall-clock time with milliseconds."""
    t = datetime.datetime.fromtimestamp(unix_s)
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def status_line(now_ms: int, max_gap_ms: float, cur_gap_ms: float, extra: str = "") -> str:
    """The original's live line ``[now_ms] max_delay: X (ms), cur: Y (ms)``."""
    return f"[{now_ms}] max_delay: {int(max_gap_ms)} (ms), cur: {int(cur_gap_ms)} (ms){extra}"


def event_line(e: DowntimeEvent) -> str:
    """One downtime event, on its own line."""
    who = f" from {e.peer}" if e.peer else ""
    line = (
        f"downtime{who}: at {wall_time(e.start_unix_s)}, gap {_ms(e.gap_ms)} (ms), "
        f"blackout ~{_ms(e.blackout_ms)} (ms) +/-{_ms(e.resolution_ms)}, "
        f"probes missed {e.probes_missed}"
    )
    if e.client_stall_ms > 0:
        line += f", the client itself stalled {_ms(e.client_stall_ms)} (ms)"
    if e.open:
        line += ", still going on at the end"
    return line


def events_table(events: list[DowntimeEvent]) -> list[str]:
    """The events as a plain table."""
    if not events:
        return []
    lines = [f"  {'#':>3}  {'start':23}  {'gap (ms)':>10}  {'blackout (ms)':>13}  {'missed':>6}"]
    for e in events:
        lines.append(
            f"  {e.index:>3}  {wall_time(e.start_unix_s):23}  {_ms(e.gap_ms):>10}  "
            f"{_ms(e.blackout_ms):>13}  {e.probes_missed:>6}"
        )
    return lines


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
            lines.append(f"RTT (us): {rtt_us(s.rtt)}")
    j = s.send_jitter
    lines.append(
        f"Send jitter (us): p50={j.p50_ns / 1000:.1f} p99={j.p99_ns / 1000:.1f} "
        f"max={j.max_ns / 1000:.1f}"
    )
    if not s.one_way:
        thr = "-" if s.threshold_ms is None else _ms(s.threshold_ms)
        stalled = (
            f", {s.client_stalled_events} while the client itself stalled"
            if s.client_stalled_events
            else ""
        )
        lines.append(
            f"Downtime events: {s.event_count} (threshold {thr} (ms), "
            f"resolution +/-{_ms(s.interval_ms)} (ms)){stalled}"
        )
        lines.extend(events_table(s.events))
        if s.event_count > len(s.events):
            lines.append(
                f"  ... and {s.event_count - len(s.events)} more events, not listed "
                "(counted in the totals)"
            )
        lines.append(
            f"Total downtime: {_ms(s.total_downtime_ms)} (ms), "
            f"worst: {_ms(s.worst_downtime_ms)} (ms)"
        )
        if any(e.open for e in s.events):
            lines.append(
                f"Outage still open at the end: no reply for {_ms(s.open_gap_ms)} (ms), "
                "counted in the total"
            )
    return lines


def client_summary_lines(c: ClientSummary) -> list[str]:
    """A one-way server's summary of one client."""
    lines = [
        f"Client {c.peer}: packets {c.packets}, probes {c.probes}, lost {c.lost}, "
        f"reordered {c.reordered}, max_delay {_ms(c.max_gap_ms)} (ms), events {c.event_count}"
        + (f", sequence restarts {c.restarts}" if c.restarts else "")
    ]
    lines.extend(events_table(c.events))
    if c.events:
        total = sum(e.blackout_ms for e in c.events)
        worst = max(e.blackout_ms for e in c.events)
        lines.append(f"  Total downtime: {_ms(total)} (ms), worst: {_ms(worst)} (ms)")
    return lines


def echo_summary_line(st: EchoStats) -> str:
    """An echo server's summary."""
    return (
        f"Summary: echoed {st.packets} packets ({st.bytes} bytes, {st.probes} mig_mon probes) "
        f"to {st.clients} clients, send errors {st.send_errors}"
    )


def parse_spike_log(lines: list[str], label: str) -> Series:
    """A spike log (ours or the original's) as a series; x is seconds from
    its first line."""
    s = Series("downtime", label)
    start: int | None = None
    for line in lines:
        m = SPIKE_RE.match(line)
        assert m is not None
        t, delay = int(m.group(1)), m.group(2)
        if start is None:
            start = t
            s.start_unix_s = float(t)
        if delay in SPIKE_MARKERS:
            continue
        x = float(t - start)
        s.add(x, delay_ms=float(delay))
        s.events.append((x, float(delay), float(delay)))
    return s


def parse_json(objs: list[dict[str, Any]], label: str) -> Series:
    """The events of ``client --json`` or ``server --json`` as a series."""
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
    for o in objs:
        d = o.get("duration_s") if o.get("type") == "summary" else None
        if isinstance(d, (int, float)) and not isinstance(d, bool) and d >= 0:
            s.span_s = float(d)
    return s
