"""Prometheus metrics of a running tool (``--metrics [HOST:]PORT``).

Every long-running command can serve its figures in the OpenMetrics (or
Prometheus text) format, for a fleet's Prometheus to scrape. Nothing here
touches the measurement: the figures are read from what the run already
keeps (its live status, its counters) and from the items the command
receives anyway (events, pauses, samples), and they are put together only
when a scrape asks. The server answers one scrape at a time from one
thread of its own, and at most :data:`MAX_SCRAPES_PER_S` a second (the rest
get ``429``), so a scraper gone wild costs the guest little.

Names follow Prometheus' conventions: the ``migmon_`` prefix, units in the
names (seconds, bytes), ``_total`` counters, histograms whose buckets fit
migration outages and pauses (1 ms to 10 s) or round trips and page
requests (20 us to 1 s). Labels: ``role`` (the command) and ``peer``; a
one-way server names at most :data:`MAX_NAMED_PEERS` clients (the ones its
output names) and puts the rest under ``peer="other"``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from migmon.metrics.base import OUTAGE_BUCKETS_S, Histo, ToolMetrics
from migmon.metrics.tools import (
    MAX_NAMED_PEERS,
    DirtyMetrics,
    EchoMetrics,
    OneWayMetrics,
    ProbeMetrics,
    VmDstMetrics,
)

if TYPE_CHECKING:
    from migmon.metrics.serve import Exporter

__all__ = [
    "MAX_NAMED_PEERS",
    "MAX_SCRAPES_PER_S",
    "OUTAGE_BUCKETS_S",
    "DirtyMetrics",
    "EchoMetrics",
    "Exporter",
    "Histo",
    "OneWayMetrics",
    "ProbeMetrics",
    "ToolMetrics",
    "VmDstMetrics",
    "parse_address",
    "serving",
]

#: The server's names, imported when first asked for: the HTTP server and
#: prometheus_client cost start-up time a run without --metrics never needs.
_SERVE = ("MAX_SCRAPES_PER_S", "Exporter", "parse_address")


def __getattr__(name: str) -> Any:
    if name in _SERVE:
        from migmon.metrics import serve

        return getattr(serve, name)
    raise AttributeError(f"module 'migmon.metrics' has no attribute {name!r}")


@contextlib.contextmanager
def serving(where: str | None, linger_s: float = 0.0) -> Iterator[Exporter | None]:
    """A command's metrics server (None without ``--metrics``). After the
    run, still served for ``linger_s`` seconds so that the last scrape sees
    the final figures; a run that failed is counted first (an integrity
    failure)."""
    if where is None:
        yield None
        return
    from migmon.metrics.serve import Exporter

    ex = Exporter(where)
    try:
        yield ex
    except BaseException as e:
        if ex.metrics is not None:
            ex.metrics.failed(e)
        raise
    finally:
        if linger_s > 0:
            with contextlib.suppress(KeyboardInterrupt):
                time.sleep(linger_s)
        ex.close()
