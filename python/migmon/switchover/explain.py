"""Each migration's outage split into QEMU's switchover phases.

A switchover is found by QEMU's marks (the source's STOP or its trace's
``src-downtime-start``; the destination's RESUME or ``dst-*-bh-vm-started``
when the source's are missing), and its outage is the probes' gap that spans
it. Between the last reply before the outage and the first after it, every
boundary that some input gives cuts the outage into consecutive phases, so
the phases add up to the outage by construction; what the checks test is
that QEMU's marks fall inside the gap, in their order. Where an input is
missing, the phases it would split stay one phase and the note says which
input would split them.

"The part nothing explains" is the time outside STOP..RESUME that one probe
interval does not account for: the guest was running (or should have been)
and the network or the guest itself did not answer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from migmon.switchover.sources import Inputs, Mark, Outage

__all__ = ["BOUNDARIES", "Clock", "Phase", "Switchover", "explain"]


@dataclass(frozen=True)
class Boundary:
    key: str
    label: str
    #: QEMU's names for it, best first.
    names: tuple[str, ...]
    #: What gives it, for the note when it is missing.
    given_by: str


_TRACE = "QEMU's trace (-msg timestamp=on -trace vmstate_downtime_*)"
_PROBES = "a client or server --json, or a capture"
#: The boundaries of a switchover, in the order QEMU passes them.
BOUNDARIES = (
    Boundary("last_reply", "last reply before the outage", (), _PROBES),
    Boundary("stop", "QEMU stops the guest", ("src-downtime-start", "STOP"), "the QMP record"),
    Boundary("vm_stopped", "vCPUs stopped", ("src-vm-stopped",), _TRACE),
    Boundary("ram_saved", "final RAM saved", ("src-iterable-saved",), _TRACE),
    Boundary("devices_saved", "device state saved", ("src-non-iterable-saved",), _TRACE),
    Boundary(
        "src_done",
        "source done",
        ("src-downtime-end", "MIGRATION:completed", "MIGRATION:postcopy-active"),
        "the QMP record or QEMU's trace",
    ),
    Boundary(
        "dst_loaded",
        "destination loaded",
        ("dst-precopy-loadvm-completed", "dst-postcopy-loadvm-completed"),
        _TRACE,
    ),
    Boundary(
        "bh_enter", "destination starts", ("dst-precopy-bh-enter", "dst-postcopy-bh-enter"), _TRACE
    ),
    Boundary(
        "announced",
        "announced (RARP)",
        ("dst-precopy-bh-announced", "dst-postcopy-bh-announced"),
        _TRACE,
    ),
    Boundary(
        "resume",
        "vCPUs started (RESUME)",
        ("dst-precopy-bh-vm-started", "dst-postcopy-bh-vm-started", "RESUME"),
        "the QMP record",
    ),
    Boundary("first_reply", "first reply after the resume", (), _PROBES),
)
_BY_KEY = {b.key: b for b in BOUNDARIES}
_START_NAMES = ("src-downtime-start", "STOP")
_END_NAMES = ("dst-precopy-bh-vm-started", "dst-postcopy-bh-vm-started", "RESUME")
#: Marks within this of each other start the same switchover.
_SAME_SWITCHOVER_S = 0.5


@dataclass(frozen=True)
class Clock:
    """The clock an input's times are on: its name, the seconds to add to
    put them on the reference clock, and how far they may still be from it,
    ms (0 for the reference: all inputs of one host)."""

    name: str = "local"
    offset_s: float = 0.0
    error_ms: float = 0.0


@dataclass(frozen=True)
class Phase:
    """One part of an outage: from the boundary before it to ``key``'s."""

    key: str
    label: str
    start_ms: float
    length_ms: float
    uncertainty_ms: float
    sources: tuple[str, ...]
    #: The devices that took longest here (QEMU's trace), ``(idstr, ms)``.
    devices: tuple[tuple[str, float], ...] = ()
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["devices"] = [{"idstr": i, "ms": ms} for i, ms in self.devices]
        d["sources"] = list(self.sources)
        return d


@dataclass(frozen=True)
class Switchover:
    """One migration's switchover and the outage around it."""

    index: int
    kind: str
    status: str
    stop_unix_s: float | None
    resume_unix_s: float | None
    outage_ms: float | None
    outage_source: str | None
    last_reply_unix_s: float | None
    resolution_ms: float | None
    client_stall_ms: float
    phases: tuple[Phase, ...]
    stop_to_resume_ms: float | None
    qemu_downtime_ms: float | None
    guest_pause_ms: float | None
    after_resume_ms: float | None
    unexplained_ms: float | None
    checks: dict[str, bool] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    also_seen: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["phases"] = [p.to_dict() for p in self.phases]
        d["notes"] = list(self.notes)
        d["also_seen"] = [{"source": s, "outage_ms": ms} for s, ms in self.also_seen]
        return d


def explain(inputs: Inputs, clocks: dict[str, Clock] | None = None) -> list[Switchover]:
    """The switchovers in ``inputs``, in time order. ``clocks`` names the
    clock of an input (by file name) when it is not the reference."""
    clocks = clocks or {}
    marks = sorted(inputs.marks, key=lambda m: m.t)
    anchors = [m for m in marks if m.name in _START_NAMES] or [
        m for m in marks if m.name in _END_NAMES
    ]
    starts: list[float] = []
    for m in anchors:
        if not starts or m.t - starts[-1] > _SAME_SWITCHOVER_S:
            starts.append(m.t)
    out: list[Switchover] = []
    used: set[Outage] = set()
    for i, t0 in enumerate(starts):
        t_next = starts[i + 1] if i + 1 < len(starts) else float("inf")
        # From a little before the anchor (the trace's start precedes QMP's
        # STOP) to the next switchover.
        window = [m for m in marks if t0 - 0.05 <= m.t < t_next - 0.05]
        out.append(_one(len(out) + 1, window, inputs, clocks, used))
    # Outages at no switchover that QEMU recorded: when QEMU recorded none,
    # each outage stands alone (nothing splits it).
    if not starts:
        for o in _preferred(inputs.outages):
            out.append(_one(len(out) + 1, [], Inputs(outages=[o]), clocks, used))
    return out


def _preferred(outages: list[Outage]) -> list[Outage]:
    return sorted(outages, key=lambda o: o.last_s)


def _error(source: str, clocks: dict[str, Clock]) -> float:
    base = source.split(":")[0]
    c = clocks.get(base) or clocks.get(source)
    return c.error_ms if c else 0.0


def _pick(window: list[Mark], b: Boundary, before: float | None) -> Mark | None:
    for name in b.names:
        for m in window:
            if m.name != name:
                continue
            if name.startswith("MIGRATION:") and m.role == "dst":
                continue
            if name == "MIGRATION:completed" and before is not None and m.t > before:
                continue  # the destination's, or postcopy's end
            return m
    return None


def _one(
    index: int,
    window: list[Mark],
    inputs: Inputs,
    clocks: dict[str, Clock],
    used: set[Outage],
) -> Switchover:
    notes: list[str] = []
    names = {m.name for m in window}
    kind = "postcopy" if any("postcopy" in n for n in names) else "precopy" if window else "unknown"
    stop_guess = next((m.t for m in window if m.name in _START_NAMES), None)
    if kind == "precopy" and _multifd(inputs, stop_guess):
        kind = "precopy, multifd"
    status = "completed"
    for bad in ("failed", "cancelled"):
        if f"MIGRATION:{bad}" in names:
            status = bad
    resume_mark = next((m for n in _BY_KEY["resume"].names for m in window if m.name == n), None)
    stop_mark = next((m for n in _BY_KEY["stop"].names for m in window if m.name == n), None)
    if status != "completed":
        notes.append(f"the migration {status}: no switchover to split")
    elif window and resume_mark is None:
        notes.append(
            "no RESUME nor dst-*-bh-vm-started: give the destination's QMP record or trace"
        )
    if window and stop_mark is None:
        notes.append("no STOP nor src-downtime-start: give the source's QMP record or trace")
    found: dict[str, Mark] = {}
    for b in BOUNDARIES[1:-1]:
        m = _pick(window, b, resume_mark.t if resume_mark else None)
        if m is not None:
            found[b.key] = m
    # The outage: the gap that spans the switchover (mig_mon's own first,
    # then a capture, then a spike log), or the only one.
    lo = stop_mark.t if stop_mark else resume_mark.t if resume_mark else None
    hi = resume_mark.t if resume_mark else lo
    spanning: list[Outage] = []
    if lo is not None and hi is not None:
        for o in inputs.outages:
            slack = o.resolution_ms / 1e3 + 0.001
            if o.last_s <= lo + slack and o.first_s >= hi - slack:
                spanning.append(o)
    elif inputs.outages and not window:
        spanning = list(inputs.outages)
    spanning.sort(key=lambda o: (_rank(inputs, o.source), o.resolution_ms))
    outage = spanning[0] if spanning else None
    if outage is not None:
        used.add(outage)
    elif lo is not None and status == "completed":
        notes.append("no probe gap spans the switchover: give " + _PROBES)
    also = tuple(
        (o.source, round(o.gap_ms, 3))
        for o in spanning[1:]
        if o.source != outage.source  # type: ignore[union-attr]
    )
    # The boundaries, in time order, with their clocks' uncertainty.
    points: list[tuple[float, str, tuple[str, ...], float]] = []
    if outage is not None:
        err = _error(outage.source, clocks)
        points.append((outage.last_s, "last_reply", (outage.source,), err))
    for key, m in found.items():
        points.append((m.t, key, (m.source,), _error(m.source, clocks)))
    if outage is not None:
        points.append(
            (outage.first_s, "first_reply", (outage.source,), _error(outage.source, clocks))
        )
    points.sort(key=lambda p: p[0])
    order = [b.key for b in BOUNDARIES]
    # The guest runs until its vCPUs are stopped: a last reply between
    # QEMU's stop and that is in order.
    halted = found.get("vm_stopped")
    seen = [
        p[1]
        for p in points
        if not (p[1] == "last_reply" and halted is not None and p[0] <= halted.t)
    ]
    if seen != sorted(seen, key=order.index):
        notes.append(
            "out of QEMU's order: "
            + " < ".join(_BY_KEY[k].label for k in seen)
            + " (clocks of different hosts, or logs of another run?)"
        )
    phases = _phases(points, window, clocks, notes)
    t_ref = points[0][0] if points else None
    stop_t = stop_mark.t if stop_mark else None
    resume_t = resume_mark.t if resume_mark else None
    res = outage.resolution_ms if outage else None
    after = (outage.first_s - resume_t) * 1e3 if outage and resume_t else None
    before = (stop_t - outage.last_s) * 1e3 if outage and stop_t else None
    unexplained = None
    if after is not None and before is not None and res is not None:
        unexplained = max(0.0, after - res) + max(0.0, before - res)
    checks: dict[str, bool] = {}
    if outage is not None and stop_t is not None:
        # Against the vCPUs' stop where the trace has it (the guest answers
        # until then: seen under TCG, a reply 0.3 ms after QEMU's stop).
        halted_t = halted.t if halted is not None else stop_t
        checks["stop_after_last_reply"] = (
            halted_t >= outage.last_s - _error(outage.source, clocks) / 1e3
        )
    if outage is not None and resume_t is not None:
        checks["resume_before_first_reply"] = (
            resume_t <= outage.first_s + _error(outage.source, clocks) / 1e3
        )
    if outage is not None and outage.client_stall_ms > 0:
        notes.append(
            f"the client itself stalled {outage.client_stall_ms:.1f} ms during the gap: "
            "part of it is the prober's, not the guest's"
        )
    if outage is not None and outage.resolution_ms >= 1000:
        notes.append("the outage is known to the whole second (a spike log): no phase is split")
    return Switchover(
        index=index,
        kind=kind,
        status=status,
        stop_unix_s=stop_t,
        resume_unix_s=resume_t,
        outage_ms=round(outage.gap_ms, 3) if outage else None,
        outage_source=outage.source if outage else None,
        last_reply_unix_s=outage.last_s if outage else None,
        resolution_ms=res,
        client_stall_ms=outage.client_stall_ms if outage else 0.0,
        phases=phases if t_ref is not None else (),
        stop_to_resume_ms=_ms(stop_t, resume_t),
        qemu_downtime_ms=_qemu_downtime(inputs, stop_t, resume_t),
        guest_pause_ms=_guest_pause(inputs, stop_t),
        after_resume_ms=_r(after),
        unexplained_ms=_r(unexplained),
        checks=checks,
        notes=tuple(notes),
        also_seen=also,
    )


def _rank(inputs: Inputs, source: str) -> int:
    kind = inputs.kinds.get(source, "")
    return 0 if kind.startswith("mig_mon") else 1 if kind == "packet capture" else 2


def _r(v: float | None) -> float | None:
    return round(v, 3) if v is not None else None


def _ms(a: float | None, b: float | None) -> float | None:
    return round((b - a) * 1e3, 3) if a is not None and b is not None else None


def _phases(
    points: list[tuple[float, str, tuple[str, ...], float]],
    window: list[Mark],
    clocks: dict[str, Clock],
    notes: list[str],
) -> tuple[Phase, ...]:
    if len(points) < 2:
        return ()
    t0 = points[0][0]
    order = [b.key for b in BOUNDARIES]
    phases: list[Phase] = []
    prev = points[0]
    pending_merge: list[str] = []
    for p in points[1:]:
        length = (p[0] - prev[0]) * 1e3
        unc = prev[3] + p[3]
        if unc and length < unc and p is not points[-1]:
            # The clocks cannot tell these apart: one phase with the next.
            pending_merge.append(_BY_KEY[p[1]].label)
            continue
        skipped = [
            _BY_KEY[k]
            for k in order[order.index(prev[1]) + 1 : order.index(p[1])]
            if k in order and order.index(prev[1]) < order.index(p[1])
        ]
        note_parts = []
        present = {q[1] for q in points}
        missing = [b for b in skipped if b.key not in present]
        if missing and p[1] != "first_reply" and prev[1] != "last_reply":
            givers = sorted({b.given_by for b in missing})
            note_parts.append(
                "not split at "
                + ", ".join(b.label for b in missing)
                + "; "
                + " or ".join(givers)
                + " would split it"
            )
        if pending_merge:
            note_parts.append(
                "includes " + ", ".join(pending_merge) + f": the clocks agree only to {unc:.2f} ms"
            )
            pending_merge = []
        phases.append(
            Phase(
                key=p[1],
                label="-> " + _BY_KEY[p[1]].label,
                start_ms=round((prev[0] - t0) * 1e3, 3),
                length_ms=round(length, 3),
                uncertainty_ms=round(unc, 3),
                sources=tuple(dict.fromkeys(prev[2] + p[2])),
                devices=_devices(window, p[1], prev[0], p[0]),
                note="; ".join(note_parts) or None,
            )
        )
        prev = p
    return tuple(phases)


def _devices(window: list[Mark], key: str, lo: float, hi: float) -> tuple[tuple[str, float], ...]:
    trace = {
        "ram_saved": ("vmstate_downtime_save", "iterable"),
        "devices_saved": ("vmstate_downtime_save", "non-iterable"),
        "dst_loaded": ("vmstate_downtime_load", None),
    }.get(key)
    if trace is None:
        return ()
    name, typ = trace
    devs = [
        (str(m.detail["idstr"]), m.detail["us"] / 1e3)
        for m in window
        if m.name == name
        and (typ is None or m.detail.get("type") == typ)
        and lo - 0.001 <= m.t <= hi + 0.001
    ]
    devs.sort(key=lambda d: -d[1])
    return tuple((i, round(ms, 3)) for i, ms in devs[:3])


def _qemu_downtime(inputs: Inputs, stop: float | None, resume: float | None) -> float | None:
    """QEMU's own ``downtime`` from the first completed query-migrate of the
    source after the switchover."""
    if stop is None:
        return None
    for t, role, q in sorted(inputs.queries, key=lambda x: x[0]):
        if t >= stop and role in ("src", "") and q.get("status") == "completed":
            d = q.get("downtime")
            if isinstance(d, (int, float)) and not isinstance(d, bool):
                if t - stop > 60:
                    return None
                return float(d)
    return None


def _multifd(inputs: Inputs, stop: float | None) -> bool:
    """Whether the source's query-migrate after the stop counted multifd
    bytes (the record says so; the events do not)."""
    if stop is None:
        return False
    for t, role, q in sorted(inputs.queries, key=lambda x: x[0]):
        if t >= stop and role in ("src", "") and q.get("status") == "completed":
            ram = q.get("ram")
            mb = ram.get("multifd-bytes") if isinstance(ram, dict) else None
            return isinstance(mb, (int, float)) and mb > 0 and t - stop <= 60
    return False


def _guest_pause(inputs: Inputs, stop: float | None) -> float | None:
    """The guest's longest pause (mm_dirty) starting within 2 s of the
    stop (its clock may be off by that much; give an offset if more)."""
    if stop is None:
        return None
    near = [p.length_ms for p in inputs.pauses if abs(p.start_s - stop) <= 2.0]
    return round(max(near), 3) if near else None
