"""Reading what mig_mon and QEMU write, for the switchover breakdown: every
input becomes :class:`Mark` values (a named instant on one clock) and
:class:`Outage` values (a gap the probes saw).

What is read, recognised by content, not by name:

* mig_mon ``client`` and one-way ``server`` ``--json``: each downtime event
  is an outage from the last arrival before it to the first after it.
* spike logs (ours and the original's): outages to the whole second.
* ``mm_dirty --json``: the guest's own pauses (on the guest's clock).
* ``mig_mon qmp_record`` output: QMP events and ``query-migrate`` replies of
  a source and a destination, with their roles.
* raw QMP event logs (one QEMU event object a line, as QEMU sends them) and
  ``virsh qemu-monitor-event --timestamp`` logs: the role of each event is
  told by the event (STOP ends the source's run, RESUME starts the
  destination's).
* QEMU logs with trace lines (``-msg timestamp=on``, ``PID@SECONDS.US:``):
  ``vmstate_downtime_checkpoint``, ``vmstate_downtime_save`` and ``_load``
  (per device) and ``qemu_announce_self_iter``; other lines (a libvirt
  domain log's) are skipped.
* a packet capture (pcap; needs the ``pcap`` extra, dpkt): RARP frames and
  the echo replies of the probes.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from migmon.parse import json_objects, read_input

__all__ = ["Inputs", "Mark", "Outage", "Pause", "SourceError", "read_inputs"]

#: The most read from one input.
MAX_INPUT_BYTES = 512 * 2**20

#: A QEMU trace line with -msg timestamp=on: ``PID@UNIX_SECONDS.US:name args``.
_TRACE = re.compile(r"^(\d+)@(\d{9,11}\.\d{1,9}):(\w+)(?: (.*))?$")
#: The same trace points without a timestamp (-msg timestamp=off).
_TRACE_BARE = re.compile(
    r"^(?:\d+@)?(vmstate_downtime_checkpoint|vmstate_downtime_save|vmstate_downtime_load"
    r"|qemu_announce_self_iter)\b"
)
_DOWNTIME_DEV = re.compile(r"type=(\S+) idstr=(\S+) instance_id=(\d+) downtime=(-?\d+)")
#: A line of ``virsh qemu-monitor-event --timestamp``.
_VIRSH = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)([+-]\d{4}): event (\w+) for domain '?[^:]*'?: ?(.*)$"
)
_SPIKE = re.compile(r"^(\d+),(-?\d+)$")
#: Unix seconds a timestamp may hold (2001-2100): outside is not a clock.
_SANE_UNIX = (1.0e9, 4.1e9)


class SourceError(ValueError):
    """An input that cannot be read as any of the kinds (the message says
    which file and why)."""


@dataclass(frozen=True)
class Mark:
    """One instant: ``name`` is QEMU's (``STOP``, ``src-vm-stopped``,
    ``MIGRATION:completed``...) or ours; ``role`` is ``src``, ``dst`` or
    ``""``; ``t`` is Unix seconds on the input's clock."""

    t: float
    name: str
    role: str
    source: str
    detail: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Outage:
    """A gap the probes (or the wire) saw: from the last arrival before it
    to the first after it, Unix seconds; ``resolution_ms`` is how exact the
    two ends are (one probe interval)."""

    last_s: float
    first_s: float
    resolution_ms: float
    source: str
    client_stall_ms: float = 0.0
    open: bool = False
    peer: str | None = None

    @property
    def gap_ms(self) -> float:
        return (self.first_s - self.last_s) * 1e3


@dataclass(frozen=True)
class Pause:
    """A pause the guest saw of itself (mm_dirty), on the guest's clock."""

    start_s: float
    length_ms: float
    source: str


@dataclass
class Inputs:
    """Everything read, with the name of each file's kind."""

    marks: list[Mark] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)
    pauses: list[Pause] = field(default_factory=list)
    #: The last query-migrate reply of each source QEMU (label -> reply).
    queries: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)

    def extend(self, other: Inputs) -> None:
        self.marks += other.marks
        self.outages += other.outages
        self.pauses += other.pauses
        self.queries += other.queries
        self.kinds |= other.kinds


def read_inputs(paths: list[str | Path], offsets: dict[str, float] | None = None) -> Inputs:
    """Reads every file; ``offsets`` (by file name as given, or its base
    name) are seconds added to that file's times (its clock's error against
    the reference)."""
    out = Inputs()
    for p in paths:
        one = read_one(p)
        off = _offset_for(p, offsets or {})
        if off:
            one = _shifted(one, off)
        out.extend(one)
    return out


def _offset_for(p: str | Path, offsets: dict[str, float]) -> float:
    for key in (str(p), Path(p).name):
        if key in offsets:
            return offsets[key]
    return 0.0


def _shifted(i: Inputs, off: float) -> Inputs:
    return Inputs(
        marks=[Mark(m.t + off, m.name, m.role, m.source, m.detail) for m in i.marks],
        outages=[
            Outage(
                o.last_s + off,
                o.first_s + off,
                o.resolution_ms,
                o.source,
                o.client_stall_ms,
                o.open,
                o.peer,
            )
            for o in i.outages
        ],
        pauses=[Pause(p.start_s + off, p.length_ms, p.source) for p in i.pauses],
        queries=[(t + off, s, q) for t, s, q in i.queries],
        kinds=i.kinds,
    )


def read_one(path: str | Path) -> Inputs:
    p = Path(path)
    label = p.name
    data = read_input(p, SourceError, MAX_INPUT_BYTES)
    if data[:4] in (
        b"\xd4\xc3\xb2\xa1",
        b"\xa1\xb2\xc3\xd4",
        b"\x4d\x3c\xb2\xa1",
        b"\xa1\xb2\x3c\x4d",
    ):
        return _read_pcap(data, label)
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        raise SourceError(
            f"{label}: pcapng; write the capture as pcap (tcpdump -w, tshark -F pcap)"
        )
    if b"\0" in data:
        raise SourceError(f"{label}: binary data, not a log mig_mon or QEMU wrote")
    text = data.decode(errors="replace").lstrip("\ufeff")
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    if not lines:
        raise SourceError(f"{label}: empty")
    try:
        return _read_text(lines, label)
    except (KeyError, TypeError, ValueError, OverflowError, RecursionError) as e:
        if isinstance(e, SourceError):
            raise
        raise SourceError(f"{label}: {_what(e)}") from None


def _what(e: BaseException) -> str:
    if isinstance(e, KeyError):
        return f"no {e.args[0]!r} where the format has one"
    if isinstance(e, RecursionError):
        return "JSON nested too deeply"
    return f"a value of the wrong kind ({e})"


def _read_text(lines: list[str], label: str) -> Inputs:
    if lines[0].startswith("{"):
        return _read_json(lines, label)
    if _VIRSH.match(lines[0]):
        return _read_virsh(lines, label)
    if all(_SPIKE.match(x) for x in lines):
        return _read_spike_log(lines, label)
    traced = [m for m in map(_TRACE.match, lines) if m]
    if traced:
        return _read_trace(traced, label)
    if any(_TRACE_BARE.match(x) for x in lines):
        raise SourceError(
            f"{label}: QEMU trace lines without timestamps; run QEMU with -msg timestamp=on"
        )
    raise SourceError(
        f"{label}: not mig_mon --json, a spike log, a QMP record or event log, a virsh "
        "event log, a QEMU log with trace lines, nor a pcap"
    )


def _num(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{what} is {json.dumps(v)[:40]}, not a number")
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"{what} is not finite")
    return f


def _unix(v: Any, what: str) -> float:
    t = _num(v, what)
    if not _SANE_UNIX[0] <= t <= _SANE_UNIX[1]:
        raise ValueError(f"{what} {t:.0f} is not a Unix time")
    return t


def _objs(lines: list[str], label: str) -> list[dict[str, Any]]:
    return json_objects(enumerate(lines, 1), label, SourceError)


def _qmp_time(e: dict[str, Any]) -> float:
    ts = e["timestamp"]
    if not isinstance(ts, dict):
        raise ValueError("timestamp is not an object")
    return _unix(_num(ts["seconds"], "seconds") + _num(ts["microseconds"], "us") / 1e6, "time")


def _qmp_mark(e: dict[str, Any], role: str, label: str) -> Mark | None:
    name = e["event"]
    if not isinstance(name, str):
        raise ValueError("event is not a name")
    data = e.get("data") if isinstance(e.get("data"), dict) else {}
    assert isinstance(data, dict)
    if name == "MIGRATION":
        name = f"MIGRATION:{data.get('status')}"
    elif name == "MIGRATION_PASS":
        name = f"MIGRATION_PASS:{data.get('pass')}"
    elif name not in ("STOP", "RESUME"):
        return None
    if not role:
        role = {"STOP": "src", "RESUME": "dst"}.get(name, "")
    return Mark(_qmp_time(e), name, role, label, data)


def _read_json(lines: list[str], label: str) -> Inputs:
    objs = _objs(lines, label)
    first = objs[0]
    out = Inputs()
    if "event" in first and "timestamp" in first:
        out.kinds[label] = "QMP event log"
        for o in objs:
            if "event" in o and "timestamp" in o:
                m = _qmp_mark(o, "", label)
                if m:
                    out.marks.append(m)
        return out
    if first.get("type") != "config":
        raise SourceError(f"{label}: JSON without a mig_mon config line nor QMP events")
    tool = first.get("tool")
    if tool == "qmp_record":
        out.kinds[label] = "QMP record"
        for o in objs[1:]:
            role = str(o.get("role", ""))
            if o.get("type") == "qmp_event":
                m = _qmp_mark(o["event"], role, f"{label}:{role}")
                if m:
                    out.marks.append(m)
            elif o.get("type") == "query_migrate" and isinstance(o.get("reply"), dict):
                out.queries.append((_unix(o["unix_s"], "unix_s"), role, o["reply"]))
        return out
    if tool in ("client", "server"):
        out.kinds[label] = f"mig_mon {tool}"
        events = [o for o in objs if o.get("type") == "event"]
        for o in objs:
            if not events and o.get("type") == "summary":
                events += o.get("events", [])
                for c in o.get("clients", []):
                    events += c.get("events", [])
        for ev in events:
            last = _unix(ev["start_unix_s"], "start_unix_s")
            gap = _num(ev["gap_ms"], "gap_ms")
            out.outages.append(
                Outage(
                    last,
                    last + gap / 1e3,
                    _num(ev.get("resolution_ms", 0.0), "resolution_ms"),
                    label,
                    _num(ev.get("client_stall_ms", 0.0), "client_stall_ms"),
                    bool(ev.get("open", False)),
                    ev.get("peer") if isinstance(ev.get("peer"), str) else None,
                )
            )
        return out
    if tool == "mm_dirty":
        out.kinds[label] = "mig_mon mm_dirty"
        for o in objs:
            if o.get("type") == "pause":
                out.pauses.append(
                    Pause(
                        _unix(o["start_unix_s"], "start_unix_s"),
                        _num(o["length_ms"], "length_ms"),
                        label,
                    )
                )
        return out
    raise SourceError(f"{label}: mig_mon JSON of '{tool}' says nothing of a switchover")


def _read_virsh(lines: list[str], label: str) -> Inputs:
    out = Inputs()
    out.kinds[label] = "virsh event log"
    for line in lines:
        m = _VIRSH.match(line)
        if not m:
            continue
        try:
            when = datetime.strptime(m.group(1) + m.group(2), "%Y-%m-%d %H:%M:%S.%f%z")
        except ValueError:
            raise SourceError(f"{label}: an impossible date or zone: {m.group(1)}") from None
        data: dict[str, Any] = {}
        try:
            parsed = json.loads(m.group(4)) if m.group(4).startswith("{") else None
            if isinstance(parsed, dict):
                data = parsed
        except (json.JSONDecodeError, RecursionError):
            pass
        ev = {"event": m.group(3), "data": data}
        t = _unix(when.timestamp(), "time")
        mark = _qmp_mark({**ev, "timestamp": {"seconds": int(t), "microseconds": 0}}, "", label)
        if mark:
            out.marks.append(Mark(t, mark.name, mark.role, label, data))
    return out


def _read_spike_log(lines: list[str], label: str) -> Inputs:
    out = Inputs()
    out.kinds[label] = "spike log (whole seconds)"
    for line in lines:
        m = _SPIKE.match(line)
        assert m is not None
        t, delay = int(m.group(1)), m.group(2)
        if delay in ("-1", "18446744073709551615"):
            continue
        end = _unix(float(t), "time")
        # The line is written when the gap ends, to the whole second.
        out.outages.append(Outage(end - int(delay) / 1e3, end, 1000.0, label))
    return out


def _read_trace(matches: list[re.Match[str]], label: str) -> Inputs:
    out = Inputs()
    out.kinds[label] = "QEMU trace log"
    for m in matches:
        pid, t, name, args = m.group(1), _unix(float(m.group(2)), "time"), m.group(3), m.group(4)
        src = f"{label}:{pid}"
        args = args or ""
        if name == "vmstate_downtime_checkpoint":
            stage = args.strip()
            role = "src" if stage.startswith("src-") else "dst" if stage.startswith("dst-") else ""
            out.marks.append(Mark(t, stage, role, src, {"pid": int(pid)}))
        elif name in ("vmstate_downtime_save", "vmstate_downtime_load"):
            d = _DOWNTIME_DEV.search(args)
            if d:
                role = "src" if name.endswith("save") else "dst"
                detail = {
                    "pid": int(pid),
                    "type": d.group(1),
                    "idstr": d.group(2),
                    "instance_id": int(d.group(3)),
                    "us": int(d.group(4)),
                }
                out.marks.append(Mark(t, name, role, src, detail))
        elif name == "qemu_announce_self_iter":
            out.marks.append(Mark(t, "announce", "dst", src, {"pid": int(pid), "args": args}))
    if not out.marks:
        raise SourceError(
            f"{label}: a QEMU log without the downtime trace points; run QEMU with "
            "-trace vmstate_downtime_* -trace qemu_announce_self_iter"
        )
    return out


#: The UDP port the echo server answers from by default.
ECHO_PORT = 12323


def _read_pcap(data: bytes, label: str) -> Inputs:
    try:
        import io

        import dpkt  # type: ignore[import-untyped]
    except ImportError:
        raise SourceError(
            f"{label}: reading a pcap needs dpkt: pip install 'mig_mon[pcap]'"
        ) from None
    out = Inputs()
    out.kinds[label] = "packet capture"
    replies: list[float] = []
    try:
        reader = dpkt.pcap.Reader(io.BytesIO(data))
        linktype = reader.datalink()
        for ts, buf in reader:
            t = float(ts)
            if linktype == dpkt.pcap.DLT_EN10MB:
                eth = dpkt.ethernet.Ethernet(buf)
                if eth.type == 0x8035:
                    out.marks.append(Mark(t, "rarp", "dst", label, {}))
                    continue
                ip = eth.data
            elif linktype in (dpkt.pcap.DLT_RAW, 101, 12):
                ip = dpkt.ip.IP(buf)
            elif linktype == dpkt.pcap.DLT_LINUX_SLL:
                ip = dpkt.sll.SLL(buf).data
            else:
                raise SourceError(f"{label}: link type {linktype} is not Ethernet nor raw IP")
            udp = getattr(ip, "data", None)
            if isinstance(udp, dpkt.udp.UDP) and udp.sport == ECHO_PORT:
                replies.append(t)
    except SourceError:
        raise
    except (dpkt.dpkt.UnpackError, ValueError, struct_error()) as e:
        raise SourceError(f"{label}: a damaged capture ({e})") from None
    replies.sort()
    if len(replies) >= 3:
        gaps = sorted(b - a for a, b in pairwise(replies))
        interval = gaps[len(gaps) // 2]
        for a, b in pairwise(replies):
            if b - a > max(4 * interval, 0.02):
                out.outages.append(Outage(a, b, interval * 1e3, label))
    return out


def struct_error() -> type[Exception]:
    import struct

    return struct.error
