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

from migmon.metrics.base import OUTAGE_BUCKETS_S, Histo, ToolMetrics
from migmon.metrics.serve import MAX_SCRAPES_PER_S, Exporter, parse_address, serving
from migmon.metrics.tools import (
    MAX_NAMED_PEERS,
    DirtyMetrics,
    EchoMetrics,
    OneWayMetrics,
    ProbeMetrics,
    VmDstMetrics,
)

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
