"""mig_mon: a toolset for VM live-migration testing and debugging.

The public API; import from here, never from ``migmon._core``.

* :func:`mm_dirty` / :class:`DirtyWorkload`: a paced memory dirty workload
  with an integrity check and access-latency histograms.
* :class:`EchoServer` (in the guest) and :func:`probe` / :class:`Prober`
  (outside): guest network downtime from UDP probes; :class:`OneWayServer`.
* :class:`VmDestination` and :func:`vm_source` / :class:`VmSource`:
  emulated live-migration streams (precopy, postcopy, multifd, preempt).
"""

from migmon._core import Percentiles, __version__, parse_size_mb
from migmon.dirty import DirtyOptions, DirtySample, DirtySummary, DirtyWorkload, mm_dirty
from migmon.downtime import (
    DowntimeEvent,
    EchoServer,
    OneWayServer,
    Prober,
    ProbeSummary,
    probe,
)
from migmon.errors import (
    ConfigError,
    CorruptionError,
    MigmonError,
    NetworkError,
    ProtocolError,
    ResourceError,
)
from migmon.vm import VmDestination, VmSource, VmSrcSummary, vm_source

__all__ = [
    "ConfigError",
    "CorruptionError",
    "DirtyOptions",
    "DirtySample",
    "DirtySummary",
    "DirtyWorkload",
    "DowntimeEvent",
    "EchoServer",
    "MigmonError",
    "NetworkError",
    "OneWayServer",
    "Percentiles",
    "ProbeSummary",
    "Prober",
    "ProtocolError",
    "ResourceError",
    "VmDestination",
    "VmSource",
    "VmSrcSummary",
    "__version__",
    "mm_dirty",
    "parse_size_mb",
    "probe",
    "vm_source",
]
