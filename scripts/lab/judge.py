"""Judging each migration against the referees: the capture, QEMU's figures
and trace, the guest's own view; the switchover split into phases."""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from lab.common import TAPS
from lab.net import packet_times, rarp_times
from lab.qemu import Lab
from migmon.switchover import Switchover, explain_files
from migmon.switchover.report import text_lines

_TRACE_LINE = re.compile(r"^(\d+)@([\d.]+):(\w+) (.*)$")


def trace_points(trace_log: Path) -> Iterator[tuple[float, str, str]]:
    """A QEMU trace log's points: (host time, name, arguments)."""
    with open(trace_log, errors="replace") as f:
        for line in f:
            m = _TRACE_LINE.match(line)
            if m:
                yield float(m.group(2)), m.group(3), m.group(4)


_ADDR = re.compile(r"(?:HVA=|host=|addr: )0x([0-9a-f]+)")


@dataclass
class PageWaits:
    """The vCPU's waits for pages on a postcopy destination, from QEMU's
    trace: the referee for QEMU's postcopy-vcpu-blocktime.

    A wait runs from the fault thread's request for the page
    (`postcopy_ram_fault_thread_request`, naming the thread that faulted)
    to the page's arrival: the first of `postcopy_place_page(_zero)` and
    `mark_postcopy_blocktime_end` for it (with postcopy-preempt, a page
    placed from the preempt channel is marked before a later, redundant
    `postcopy_place_page` from the main stream). Beside it, what QEMU
    10.0's own bookkeeping (`mark_postcopy_blocktime_begin`/`_end`) cannot
    count."""

    #: (request, arrival, thread id) of every request whose page came.
    waits: list[tuple[float, float, int]] = field(default_factory=list)
    #: Requests whose wait QEMU 10.0 lost: it keeps one fault per vCPU, so
    #: a second fault on a vCPU before the first one's page is marked
    #: replaces it (the fault thread can read the vCPU's next fault before
    #: the thread that placed the page takes the lock; a retried fault
    #: repeats the address). Fixed in QEMU 10.1 (Peter Xu, "migration/
    #: postcopy: Optimize blocktime fault tracking with hashtable", its
    #: "Wrong Accounting on re-entrancies").
    replaced: int = 0
    #: Seconds of those lost waits (until the page came, or the next fault).
    replaced_s: float = 0.0
    #: Seconds from each vCPU request to QEMU's begin mark for it (QEMU
    #: starts its clock only then).
    request_to_begin_s: float = 0.0

    def vcpu_intervals(self, vcpus: set[int]) -> list[tuple[float, float]]:
        return [(a, b) for a, b, pid in self.waits if pid in vcpus]

    def vcpu_waited_s(self, vcpus: set[int]) -> float:
        """The vCPU threads' time waiting: per thread, the union of its
        waits (a page asked for again before it came is one wait)."""
        return sum(covered([(a, b) for a, b, pid in self.waits if pid == v]) for v in vcpus)


def page_waits(trace_log: Path, vcpus: set[int]) -> PageWaits:
    """Reads a postcopy destination's trace (see PageWaits)."""
    requests: list[tuple[float, int, int]] = []
    arrived: dict[int, float] = {}
    begins: list[tuple[float, int, int, bool]] = []  # time, cpu, page, already received
    marked: list[tuple[float, int]] = []  # a wait's end marked: time, page
    for t, name, rest in trace_points(trace_log):
        addr = _ADDR.search(rest)
        if not addr:
            continue
        page = int(addr.group(1), 16) & ~0xFFF
        if name == "postcopy_ram_fault_thread_request":
            pid_m = re.search(r"pid=(\d+)", rest)
            if pid_m:
                requests.append((t, page, int(pid_m.group(1))))
        elif name in ("postcopy_place_page", "postcopy_place_page_zero"):
            arrived.setdefault(page, t)
        elif name == "mark_postcopy_blocktime_end":
            arrived.setdefault(page, t)
            hit = re.search(r"affected_cpu: (\d+)", rest)
            if hit and hit.group(1) != "0":
                marked.append((t, page))
        elif name == "mark_postcopy_blocktime_begin":
            cpu_m = re.search(r"cpu: (\d+)", rest)
            got = re.search(r"already_received: (\d+)", rest)
            if cpu_m:
                begins.append((t, int(cpu_m.group(1)), page, bool(got and got.group(1) != "0")))
    out = PageWaits()
    for t, page, pid in requests:
        done = arrived.get(page)
        if done is not None and done >= t:
            out.waits.append((t, done, pid))
    # QEMU's begin marks against the vCPU requests they follow.
    asked = sorted((t, page) for t, page, pid in requests if pid in vcpus)
    for t, _, page, _ in begins:
        before = [r for r, p in asked if p == page and r <= t]
        if before:
            out.request_to_begin_s += t - before[-1]
    # QEMU 10.0's one-fault-per-vCPU book, replayed on its own marks.
    events = sorted([(t, 0, cpu, page, rcvd) for t, cpu, page, rcvd in begins]
                    + [(t, 1, -1, page, False) for t, page in marked])  # fmt: skip
    pending: dict[int, tuple[float, int]] = {}
    for t, kind, cpu, page, received in events:
        if kind == 1:
            pending = {c: v for c, v in pending.items() if v[1] != page}
            continue
        if cpu in pending:
            t0, old = pending[cpu]
            out.replaced += 1
            out.replaced_s += max(0.0, min(arrived.get(old, t), t) - t0)
        if received:
            pending.pop(cpu, None)
        else:
            pending[cpu] = (t, page)
    return out


def union(iv: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Intervals merged where they touch or overlap, in order."""
    out: list[tuple[float, float]] = []
    for lo, hi in sorted(iv):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def covered(iv: list[tuple[float, float]]) -> float:
    """Seconds the union of ``iv`` covers (a time counted once however many
    intervals hold it)."""
    return sum(hi - lo for lo, hi in union(iv))


def overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Seconds that the union of intervals ``a`` shares with that of ``b``."""
    total, ub = 0.0, union(b)
    for lo, hi in union(a):
        for blo, bhi in ub:
            total += max(0.0, min(hi, bhi) - max(lo, blo))
    return total


def match_wire(
    events: list[dict[str, Any]], replies: list[float], threshold_ms: float
) -> dict[str, Any]:
    """Every client event against the capture: the reply it starts at is on
    the wire, and the gap after it is the event's gap. (An event before the
    baseline is judged by the interval's floor, below the final threshold.)
    Also how many gaps on the wire exceed the final threshold."""
    matched, errors, unmatched_network, after = 0, [], 0, 0
    for e in events:
        # After the capture's last reply the referee saw nothing (the dump
        # is stopped last, but on a loaded machine it lost the last 150 ms).
        if not replies or e["start_unix_s"] > replies[-1] + 0.002:
            after += 1
            continue
        # The event's gap on the wire: of the replies within 2 ms of its
        # start, the one whose next reply is nearest the event's end (a
        # burst after a stall puts several within a millisecond, and the
        # nearest in time need not be the one before the gap).
        t = e["start_unix_s"]
        lo = bisect.bisect_left(replies, t - 0.002)
        hi = bisect.bisect_right(replies, t + 0.002)
        near = range(lo, min(hi, len(replies) - 1))
        if near:
            i = min(near, key=lambda k: abs((replies[k + 1] - replies[k]) * 1e3 - e["gap_ms"]))
            matched += 1
            errors.append(abs((replies[i + 1] - replies[i]) * 1e3 - e["gap_ms"]))
        elif not _clients_own(e):
            unmatched_network += 1
    wire = sum(1 for a, b in pairwise(replies) if (b - a) * 1e3 > threshold_ms)
    return {
        "threshold_ms": threshold_ms,
        "wire_gaps": wire,
        "mig_mon_events": len(events),
        "matched": matched,
        # Events the client says were mostly its own stall need no gap on
        # the wire (seen beside two busy loops and a 1 GB mm_dirty: two
        # 16-18 ms gaps, 15.4 ms of each the client's own).
        "clients_own": sum(1 for e in events if _clients_own(e)),
        "unmatched_network_events": unmatched_network,
        "after_the_capture": after,
        "max_gap_error_ms": round(max(errors), 3) if errors else None,
    }


def _clients_own(e: dict[str, Any]) -> bool:
    """An event the client flags as mostly its own stall (at least half of
    the blackout): a gap of the prober, not of the network."""
    return bool(e.get("client_stall_ms", 0.0) >= 0.5 * max(e.get("blackout_ms", 0.0), 1e-9))


def judge(
    migs: list[dict[str, Any]],
    client: list[dict[str, Any]],
    dirty: list[dict[str, Any]],
    replies: list[float],
) -> list[dict[str, Any]]:
    """Puts mig_mon's figures next to QEMU's and the wire's, per migration,
    with the checks on them."""
    events = [o for o in client if o.get("type") == "event"]
    pauses = [o for o in dirty if o.get("type") == "pause"]
    samples = [o for o in dirty if o.get("type") == "sample"]
    for m in migs:
        stop, resume = m["stop_unix_s"], m["resume_unix_s"]
        lo, hi = stop - 2.0, resume + 2.0
        # The outage of a migration is the reply gap that spans the stop:
        # the guest cannot answer between QEMU's STOP and RESUME.
        wire = [(a, (b - a) * 1e3) for a, b in pairwise(replies) if a <= stop and b >= resume]
        mine = [
            e
            for e in events
            if e["start_unix_s"] <= stop + 0.001
            and e["start_unix_s"] + e["gap_ms"] / 1e3 >= resume - 0.001
        ]
        m["wire_outage_ms"] = round(wire[0][1], 3) if wire else None
        m["mig_mon_outages"] = [
            {k: e[k] for k in ("start_unix_s", "gap_ms", "blackout_ms", "client_stall_ms", "open")}
            for e in mine
        ]
        m["mig_mon_spikes"] = sum(1 for e in events if lo <= e["start_unix_s"] <= hi) - len(mine)
        rates = m["dirty_pages_rate_mb_s"]
        if len(rates) > 1:
            mean = sum(rates) / len(rates)
            sd = math.sqrt(sum((r - mean) ** 2 for r in rates) / (len(rates) - 1))
            m["dirty_pages_rate_cv_pct"] = round(100 * sd / mean, 2)

        # Guest times to host times: the guest's clock is behind the host's
        # by an offset that grows by the stop at each migration (the guest's
        # clocks are frozen while the VM is stopped).
        def host_t(guest_t: float, m: dict[str, Any] = m) -> float:
            before = guest_t - m["offset_before_s"]
            return float(before if before < m["stop_unix_s"] else guest_t - m["offset_after_s"])

        near = [p for p in pauses if lo <= host_t(p["start_unix_s"]) <= hi]
        m["mm_dirty_pauses"] = [
            {
                "start_unix_s": round(host_t(p["start_unix_s"]), 6),
                "length_ms": round(p["length_ms"], 3),
            }
            for p in near
        ]
        at_stop = [p for p in m["mm_dirty_pauses"] if abs(p["start_unix_s"] - stop) < 0.02]
        m["switchover_pause"] = (
            {
                "from_stop_ms": round((at_stop[0]["start_unix_s"] - stop) * 1e3, 2),
                "length_ms": at_stop[0]["length_ms"],
            }
            if at_stop
            else None
        )
        m["mm_dirty_rates_mb_s"] = [
            round(s["rate_mb_s"], 1) for s in samples if lo <= host_t(s["unix_s"]) <= hi + 1
        ]
        checks = {
            "one_event_spans_the_stop": len(mine) == 1,
            "gap_matches_wire_1ms": len(mine) == 1
            and len(wire) == 1
            and abs(mine[0]["gap_ms"] - wire[0][1]) <= 1.0,
            "blackout_at_least_qemu_downtime": len(mine) == 1
            and mine[0]["blackout_ms"] >= m["downtime_ms"],
            "guest_clock_lag_is_stop_to_resume": abs(
                m["guest_clock_lag_ms"] - m["stop_to_resume_ms"]
            )
            <= m["guest_clock_lag_error_ms"] + 2.0,
            "pause_seen_at_stop": m["switchover_pause"] is not None,
        }
        m["checks"] = checks
    return migs


def after_resume(lab: Lab, m: dict[str, Any], s: Switchover) -> dict[str, Any] | None:
    """Where the time from RESUME to the first reply went, from the taps'
    captures: when the bridge first delivered a probe to the destination
    QEMU's tap, how many it still delivered to the old one, and how long
    the guest then took to answer."""
    if s.resume_unix_s is None or s.last_reply_unix_s is None or s.outage_ms is None:
        return None
    resume, end = s.resume_unix_s, s.last_reply_unix_s + s.outage_ms / 1e3
    new = packet_times(lab.lab / f"{m['dst_tap']}.pcap")
    old = packet_times(lab.lab / f"{TAPS[1] if m['dst_tap'] == TAPS[0] else TAPS[0]}.pcap")
    first = next((t for t in new if t >= resume), None)
    return {
        "first_probe_at_destination_ms": round((first - resume) * 1e3, 3) if first else None,
        "probes_to_destination_before_reply": sum(1 for t in new if resume <= t < end),
        "probes_to_old_tap_after_resume": sum(1 for t in old if resume <= t < end),
        "reply_after_first_probe_ms": round((end - first) * 1e3, 3) if first else None,
    }


def _boundary_s(s: Switchover, key: str) -> float | None:
    """When a switchover passed a boundary (Unix seconds). The phases count
    from the first boundary: the last reply, or QEMU's stop when the guest
    still answered after it began (then the last reply ends a phase: seen
    under load, 2-4 ms into the stop)."""
    ends = {p.key: (p.start_ms + p.length_ms) / 1e3 for p in s.phases}
    if key not in ends or s.last_reply_unix_s is None:
        return None
    return s.last_reply_unix_s - ends.get("last_reply", 0.0) + ends[key]


def switchovers(lab: Lab, report: dict[str, Any], probe_ms: float) -> None:
    """Each migration's outage split into QEMU's phases by `mig_mon
    switchover`'s own code, from the client's JSON, the QMP record and
    QEMU's trace; then the same from the capture, the wire's view, to check
    the ends and the announcement against it."""
    work = lab.lab
    qemu = [work / "qmp.jsonl"] + [
        q.trace_log for q in lab.started if q.trace_log and q.trace_log.exists()
    ]
    mine = explain_files([work / "client.json", work / "dirty.json", *qemu])
    wire = explain_files([work / "replies.pcap", *qemu])
    rarps = rarp_times(work / "replies.pcap")
    report["switchover_text"] = text_lines(mine, {})[2:]
    report["switchovers"] = [s.to_dict() for s in mine]
    migs = report["migrations"] + [p for p in report.get("postcopy", []) if "stop_unix_s" in p]
    for m in migs:
        s = next(
            (x for x in mine if x.stop_unix_s and abs(x.stop_unix_s - m["stop_unix_s"]) < 0.05),
            None,
        )
        w = next(
            (x for x in wire if x.stop_unix_s and abs(x.stop_unix_s - m["stop_unix_s"]) < 0.05),
            None,
        )
        checks = m.setdefault("checks", {})
        if m.get("kind", "").startswith("postcopy"):
            continue  # its probes (if any) are a client of their own
        if s is None or s.outage_ms is None:
            checks["switchover_found"] = False
            continue
        m["switchover"] = s.to_dict()
        total = sum(p.length_ms for p in s.phases)
        checks["switchover_found"] = True
        checks["switchover_phases_add_up"] = abs(total - s.outage_ms) <= probe_ms
        checks["switchover_stop_after_last_reply"] = s.checks.get("stop_after_last_reply", False)
        checks["switchover_resume_before_first_reply"] = s.checks.get(
            "resume_before_first_reply", False
        )
        ok_ends = (
            w is not None
            and w.last_reply_unix_s is not None
            and w.outage_ms is not None
            and s.last_reply_unix_s is not None
            and abs(w.last_reply_unix_s - s.last_reply_unix_s) <= 0.001
            and abs(w.outage_ms - s.outage_ms) <= 1.0
        )
        checks["switchover_ends_on_the_wire_1ms"] = ok_ends
        # QEMU holds what it sends while the VM is stopped: the first RARP
        # leaves once the VM runs again, between the announce and the end
        # of the vCPUs' start (seen: 0.14 ms, and 33 ms when starting them
        # took 33 ms).
        announced = _boundary_s(s, "announced")
        started = _boundary_s(s, "resume")
        first_rarp = next((t for t in rarps if s.stop_unix_s and t >= s.stop_unix_s), None)
        m["rarp_after_announced_ms"] = (
            round((first_rarp - announced) * 1e3, 3) if first_rarp and announced else None
        )
        if announced is not None and started is not None:
            checks["switchover_rarp_on_the_wire_1ms"] = (
                first_rarp is not None and announced - 0.001 <= first_rarp <= started + 0.001
            )
        m["after_resume"] = after_resume(lab, m, s)
