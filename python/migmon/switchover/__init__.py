"""Why a guest was unreachable: each migration's outage split into QEMU's
switchover phases, from what mig_mon and QEMU wrote.

* :func:`explain_files` reads any mix of mig_mon's and QEMU's output (see
  :mod:`migmon.switchover.sources`) and returns one :class:`Switchover` per
  migration, with its :class:`Phase` list; results are frozen, with
  ``to_dict()``.
* :class:`QmpRecorder` records QEMU's side while a migration runs (a
  context manager; needs the ``qmp`` extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from migmon.switchover.explain import Clock, Phase, Switchover, explain
from migmon.switchover.record import QmpRecorder
from migmon.switchover.sources import Inputs, SourceError, read_inputs

__all__ = [
    "Clock",
    "Inputs",
    "Phase",
    "QmpRecorder",
    "SourceError",
    "Switchover",
    "explain",
    "explain_files",
    "read_inputs",
]


def explain_files(
    paths: Sequence[str | Path], clocks: dict[str, Clock] | None = None
) -> list[Switchover]:
    """The switchovers in these files. ``clocks`` maps a file (its name as
    given, or its base name) to the clock it was written on, when that is
    not the reference clock; raises :class:`SourceError` for an input that
    cannot be read."""
    clocks = clocks or {}
    offsets = {k: c.offset_s for k, c in clocks.items() if c.offset_s}
    inputs = read_inputs(list(paths), offsets)
    by_name = {Path(k).name: c for k, c in clocks.items()}
    return explain(inputs, by_name)
