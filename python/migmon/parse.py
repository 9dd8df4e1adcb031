"""Reading what mig_mon (ours and the original) writes, for plots and
automation: spike logs, ``mm_dirty`` text, ``vm`` source and destination
text, and our ``--json`` output of every sub-tool. The kind is recognised
by content, not by file name; each tool's parser lives beside the code
that writes the format (:mod:`migmon.output`). Pure Python: no plotting
library needed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from migmon.output import ParseError, Series, dirty, downtime, vm

__all__ = ["KINDS", "ParseError", "Series", "parse_file", "parse_text"]

#: The prefix --timestamps puts on text lines.
_STAMP = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+\] ")

#: What a series can hold.
KINDS = ("downtime", "dirty", "vm_src", "vm_dst")


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
    lines = [_STAMP.sub("", x.strip()) for x in text.splitlines() if x.strip()]
    if not lines:
        raise ParseError(f"{label}: empty")
    if lines[0].startswith("{"):
        return _parse_json(lines, label)
    if all(downtime.SPIKE_RE.match(x) for x in lines):
        return downtime.parse_spike_log(lines, label)
    if any(dirty.DIRTY_RE.search(x) for x in lines):
        return dirty.parse_text(lines, label)
    if any(vm.SPEED_RE.match(x) for x in lines):
        return vm.parse_src_text(lines, label)
    if any(vm.LATENCY_RE.match(x) for x in lines):
        return vm.parse_dst_text(lines, label)
    raise ParseError(f"{label}: not a spike log, mm_dirty or vm output, nor mig_mon --json output")


def _parse_json(lines: list[str], label: str) -> Series:
    try:
        objs = [json.loads(x) for x in lines]
    except json.JSONDecodeError as e:
        raise ParseError(f"{label}: not JSON Lines ({e.msg}, line {e.lineno})") from None
    if not objs or not isinstance(objs[0], dict) or objs[0].get("type") != "config":
        raise ParseError(f"{label}: JSON without a mig_mon config line")
    tool, role = objs[0].get("tool"), objs[0].get("role")
    if tool == "mm_dirty":
        return dirty.parse_json(objs, label)
    if tool in ("client", "server"):
        return downtime.parse_json(objs, label)
    if tool == "vm" and role == "src":
        return vm.parse_src_json(objs, label)
    if tool == "vm" and role == "dst":
        return vm.parse_dst_json(objs, label)
    raise ParseError(f"{label}: JSON of '{tool}' has nothing to plot")
