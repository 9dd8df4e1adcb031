"""The host's wall clock against its monotonic clock, through a lab run.

The lab's referees stamp wall-clock (Unix) time: tcpdump's captures, QEMU's
QMP events and trace lines, the lab's own ``time.time()``. mig_mon's client
measures its gaps on the monotonic clock. A time daemon that steps the wall
clock puts its steps into the referees' figures and not into mig_mon's: on
a CI machine the wall clock once jumped 3.7 s in the middle of a migration
(the guest then seemed to lag 3.7 s and none of its pauses lined up with
QEMU's STOP) and then gained about 0.5% in small steps (every capture's gap
0.5-1.5 ms longer than the client's). Stepping only moves the wall clock
against the monotonic one, so a sampler of the two tells each step, and
:meth:`WallClock.steady` puts a wall time back on the wall clock as it would
read had nobody stepped it since the lab began: the judging then compares
like with like. :func:`steady_files` does it to the files the judging reads.
"""

from __future__ import annotations

import bisect
import itertools
import json
import re
import struct
import threading
import time
from pathlib import Path
from typing import Any

#: A reading whose two wall-clock reads are further apart than this was
#: interrupted between them: not used.
_TIGHT_NS = 20_000
#: A change of offset between two readings above this is a step.
STEP_MS = 0.2


class WallClock:
    """Samples the wall clock minus the monotonic clock every ``period_s``
    on a thread of its own (about 1% of a core at 10 ms under CPython)."""

    def __init__(self, period_s: float = 0.01) -> None:
        self.period_s = period_s
        #: (wall seconds, wall minus monotonic seconds), in the order read.
        self.samples: list[tuple[float, float]] = []
        self._walls: list[float] = []  # running maximum, for bisect
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wallclock", daemon=True)
        self._lock = threading.Lock()

    @classmethod
    def of(cls, samples: list[tuple[float, float]]) -> WallClock:
        """A clock that read ``samples`` (wall, wall minus monotonic)."""
        c = cls()
        for wall, off in samples:
            c._add(wall, off)
        return c

    def start(self) -> WallClock:
        self._read()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self._read()

    def _read(self) -> None:
        best: tuple[int, int, int] | None = None
        for _ in range(3):
            w1 = time.time_ns()
            m = time.monotonic_ns()
            w2 = time.time_ns()
            if best is None or w2 - w1 < best[2] - best[0]:
                best = (w1, m, w2)
        assert best is not None
        w1, m, w2 = best
        if w2 - w1 > _TIGHT_NS:
            return
        wall = (w1 + w2) / 2e9
        self._add(wall, wall - m / 1e9)

    def _add(self, wall: float, off: float) -> None:
        with self._lock:
            self.samples.append((wall, off))
            self._walls.append(max(wall, self._walls[-1]) if self._walls else wall)

    def shift(self, t: float) -> float:
        """Seconds to add to wall time ``t`` to undo the steps taken since
        the first reading (0.0 when the clock was never stepped)."""
        with self._lock:
            if not self.samples:
                return 0.0
            k = max(bisect.bisect_right(self._walls, t) - 1, 0)
            return self.samples[0][1] - self.samples[k][1]

    def steady(self, t: float) -> float:
        return t + self.shift(t)

    def steps(self) -> list[tuple[float, float]]:
        """(wall time, ms) of each step above :data:`STEP_MS`."""
        with self._lock:
            s = list(self.samples)
        return [
            (b[0], (b[1] - a[1]) * 1e3)
            for a, b in itertools.pairwise(s)
            if abs(b[1] - a[1]) * 1e3 > STEP_MS
        ]

    def summary(self) -> dict[str, Any]:
        with self._lock:
            offs = [o for _, o in self.samples]
        steps = self.steps()
        return {
            "samples": len(offs),
            "moved_ms": round((offs[-1] - offs[0]) * 1e3, 3) if offs else 0.0,
            "steps": len(steps),
            "largest_step_ms": round(max((abs(d) for _, d in steps), default=0.0), 3),
            "stepped_ms": round(sum(d for _, d in steps), 3),
        }

    @property
    def stepped(self) -> bool:
        with self._lock:
            offs = [o for _, o in self.samples]
        return bool(offs) and max(abs(o - offs[0]) for o in offs) * 1e3 > STEP_MS


_TRACE_TIME = re.compile(rb"^(\d+@)(\d{9,11}\.\d{1,9})(:)", re.M)


def steady_files(clock: WallClock, paths: list[Path]) -> list[Path]:
    """Rewrites each file's wall-clock times onto the steady clock, in
    place: pcap captures, QEMU trace logs, JSON lines (every ``*unix_s``
    field and every QEMU ``timestamp``; an event with ``gap_ms``, measured
    on the monotonic clock and put on the wall clock when it ended, moves
    whole by the shift at its end). Files that do not exist are passed
    over; returns those rewritten."""
    done = []
    for p in paths:
        if not p.exists():
            continue
        data = p.read_bytes()
        if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            new = _steady_pcap(clock, data)
        elif _TRACE_TIME.search(data):
            new = _TRACE_TIME.sub(
                lambda m: (
                    m.group(1) + f"{clock.steady(float(m.group(2))):.6f}".encode() + m.group(3)
                ),
                data,
            )
        else:
            new = _steady_json_lines(clock, data)
        if new != data:
            p.write_bytes(new)
            done.append(p)
    return done


def _steady_pcap(clock: WallClock, data: bytes) -> bytes:
    """A little-endian classic pcap (as tcpdump -w writes), microseconds
    or nanoseconds."""
    out = bytearray(data)
    scale = 1e9 if data[:4] == b"\x4d\x3c\xb2\xa1" else 1e6
    off = 24
    while off + 16 <= len(out):
        sec, frac, incl, _ = struct.unpack_from("<IIII", out, off)
        s, f = divmod(round(clock.steady(sec + frac / scale) * scale), int(scale))
        struct.pack_into("<II", out, off, s, f)
        off += 16 + incl
    return bytes(out)


def _steady_json_lines(clock: WallClock, data: bytes) -> bytes:
    lines = []
    for line in data.decode(errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            lines.append(line)  # text between the JSON (a tool's own lines)
            continue
        lines.append(json.dumps(_steady_obj(clock, obj)))
    return ("\n".join(lines) + "\n").encode() if lines else data


def _steady_obj(clock: WallClock, o: Any) -> Any:
    if isinstance(o, list):
        return [_steady_obj(clock, x) for x in o]
    if not isinstance(o, dict):
        return o
    if set(o) == {"seconds", "microseconds"}:
        sec, us = divmod(round(clock.steady(o["seconds"] + o["microseconds"] / 1e6) * 1e6), 10**6)
        return {"seconds": sec, "microseconds": us}
    gap = o.get("gap_ms")
    end_shift = (
        clock.shift(o["start_unix_s"] + gap / 1e3)
        if isinstance(o.get("start_unix_s"), (int, float)) and isinstance(gap, (int, float))
        else None
    )
    out = {}
    for k, v in o.items():
        if k.endswith("unix_s") and isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = round(v + end_shift if end_shift is not None else clock.steady(v), 6)
        else:
            out[k] = _steady_obj(clock, v)
    return out


#: The lab's own wall-clock times in a migration's record.
_TIMES = ("start_unix_s", "stop_unix_s", "resume_unix_s", "switched_to_postcopy_unix_s")


def steady_migration(clock: WallClock, m: dict[str, Any]) -> None:
    """A migration's record onto the steady clock: its wall times, and the
    guest's offsets from the host's clock (measured at ``*_at_unix_s``)."""
    for k in _TIMES:
        if isinstance(m.get(k), (int, float)):
            m[k] = clock.steady(m[k])
    for k in ("offset_before", "offset_after"):
        at = m.get(f"{k}_at_unix_s")
        if isinstance(at, (int, float)):
            m[f"{k}_s"] -= clock.shift(at)
    if "offset_before_s" in m and "offset_after_s" in m:
        m["guest_clock_lag_ms"] = round((m["offset_before_s"] - m["offset_after_s"]) * 1e3, 2)
