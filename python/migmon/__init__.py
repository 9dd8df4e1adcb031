"""mig_mon: a toolset for VM live-migration testing and debugging.

The public API; import from here, never from ``migmon._core``. Each tool
has one configuration class, checked when it is built, and one background
run built from it (or from the same keyword arguments):

* :class:`DirtyConfig` / :class:`DirtyWorkload`: a paced memory dirty
  workload with an integrity check and access-latency histograms.
* :class:`EchoServerConfig` / :class:`EchoServer` (in the guest) and
  :class:`ProbeConfig` / :class:`Prober` (outside): guest network downtime
  from UDP probes; :class:`OneWayServer` measures a one-way stream.
* :class:`VmDestinationConfig` / :class:`VmDestination` and
  :class:`VmSourceConfig` / :class:`VmSource`: emulated live-migration
  streams (precopy, postcopy, multifd, preempt).

Every run has the same shape: ``next(timeout_s)``, ``drain()``,
iteration until it ends, ``done``, ``request_stop()``, ``stop()`` (the
same result every time), ``wait()`` and ``with``. Results are frozen
classes whose attributes are the JSON keys; ``to_dict()`` gives them all.
:func:`mm_dirty`, :func:`probe` and :func:`vm_source` run one to its end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from migmon._core import (
    DEFAULT_PORT,
    Baseline,
    ClientSummary,
    DirtyConfig,
    DirtyPause,
    DirtySample,
    DirtySummary,
    DirtyWorkload,
    DowntimeEvent,
    EchoServer,
    EchoServerConfig,
    EchoStats,
    NewClient,
    NoReply,
    OneWayServer,
    OneWayServerConfig,
    OneWaySummary,
    Percentiles,
    ProbeConfig,
    Prober,
    ProbeStatus,
    ProbeSummary,
    VmConnected,
    VmDestination,
    VmDestinationConfig,
    VmDstSample,
    VmPostcopy,
    VmRejected,
    VmSessionSummary,
    VmSource,
    VmSourceConfig,
    VmSrcSample,
    VmSrcSummary,
    __version__,
    parse_size_mb,
)
from migmon.errors import (
    ConfigError,
    CorruptionError,
    InternalError,
    MigmonError,
    NetworkError,
    ProtocolError,
    ResourceError,
)

__all__ = [
    "DEFAULT_PORT",
    "Baseline",
    "ClientSummary",
    "ConfigError",
    "CorruptionError",
    "DirtyConfig",
    "DirtyPause",
    "DirtySample",
    "DirtySummary",
    "DirtyWorkload",
    "DowntimeEvent",
    "EchoServer",
    "EchoServerConfig",
    "EchoStats",
    "InternalError",
    "MigmonError",
    "NetworkError",
    "NewClient",
    "NoReply",
    "OneWayServer",
    "OneWayServerConfig",
    "OneWaySummary",
    "Percentiles",
    "ProbeConfig",
    "ProbeStatus",
    "ProbeSummary",
    "Prober",
    "ProtocolError",
    "ResourceError",
    "VmConnected",
    "VmDestination",
    "VmDestinationConfig",
    "VmDstSample",
    "VmPostcopy",
    "VmRejected",
    "VmSessionSummary",
    "VmSource",
    "VmSourceConfig",
    "VmSrcSample",
    "VmSrcSummary",
    "__version__",
    "mm_dirty",
    "outage_over",
    "parse_size_mb",
    "pause_over",
    "probe",
    "vm_source",
]


def _to_end(
    run_class: Callable[..., Any],
    on_item: Callable[[Any], None] | None,
    ends: tuple[str, ...],
    config: dict[str, Any],
) -> Any:
    """Runs ``run_class(**config)`` to its end, feeding every item to
    ``on_item``, and returns its result. The run must end by itself (one of
    ``ends`` given); a KeyboardInterrupt stops it and propagates."""
    if all(config.get(k) is None for k in ends):
        name = run_class.__name__
        raise ConfigError(f"give {' or '.join(ends)} (or use {name} to run open-ended)")
    with run_class(**config) as run:
        for item in run:
            if on_item is not None:
                on_item(item)
        return run.stop()


def mm_dirty(
    size_mb: int | str = 512,
    rate_mb_s: int | str | None = None,
    *,
    on_sample: Callable[[DirtySample | DirtyPause], None] | None = None,
    **config: Any,
) -> DirtySummary:
    """Runs a dirty workload to its end (give ``duration_s``) and returns
    its summary; ``on_sample`` sees every interval and every pause as it is
    reported. Keyword arguments are :class:`DirtyConfig`'s."""
    config |= {"size_mb": size_mb, "rate_mb_s": rate_mb_s}
    summary: DirtySummary = _to_end(DirtyWorkload, on_sample, ("duration_s",), config)
    return summary


def probe(
    server: str,
    interval_ms: float = 1000.0,
    *,
    on_event: Callable[[Baseline | DowntimeEvent | NoReply], None] | None = None,
    **config: Any,
) -> ProbeSummary:
    """Probes ``server`` until ``count`` probes were sent or ``duration_s``
    passed and returns the summary; ``on_event`` sees every message.
    Keyword arguments are :class:`ProbeConfig`'s."""
    config |= {"server": server, "interval_ms": interval_ms}
    summary: ProbeSummary = _to_end(Prober, on_event, ("count", "duration_s"), config)
    return summary


def vm_source(
    host: str,
    *,
    on_sample: Callable[[VmSrcSample], None] | None = None,
    **config: Any,
) -> VmSrcSummary:
    """Runs an emulated source for ``duration_s`` and returns its summary;
    keyword arguments are :class:`VmSourceConfig`'s."""
    config |= {"host": host}
    summary: VmSrcSummary = _to_end(VmSource, on_sample, ("duration_s",), config)
    return summary


def outage_over(
    summary: ProbeSummary | OneWaySummary, max_downtime_ms: float
) -> DowntimeEvent | None:
    """The first outage whose blackout, less the part the client says was
    its own stall, is longer than ``max_downtime_ms``; None when every one
    kept to it (the verdict of ``client --max-downtime-ms``)."""
    if isinstance(summary, OneWaySummary):
        events = [e for c in summary.clients for e in c.events]
    else:
        events = list(summary.events)
    for e in sorted(events, key=lambda e: e.start_unix_s):
        if e.blackout_ms - e.client_stall_ms > max_downtime_ms:
            return e
    return None


def pause_over(summary: DirtySummary, max_pause_ms: float) -> DirtyPause | None:
    """The first pause of the workload longer than ``max_pause_ms``; None
    when every one kept to it (the verdict of ``mm_dirty --max-pause-ms``)."""
    return next((p for p in summary.pause_events if p.length_ms > max_pause_ms), None)
