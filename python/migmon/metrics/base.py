"""What every tool's metrics share: the bucket bounds, a histogram, the
families of one scrape and the base class that puts them together."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from migmon.errors import ConfigError

#: Upper bounds of the outage and pause buckets, seconds: 1 ms to 10 s.
OUTAGE_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip


def prometheus() -> Any:
    """The prometheus_client package (the ``metrics`` extra), or one line."""
    try:
        import prometheus_client.core
    except ImportError:
        raise ConfigError(
            "--metrics needs the prometheus_client package: pip install 'mig_mon[metrics]'"
        ) from None
    return prometheus_client


class Histo:
    """A histogram's buckets (not cumulative) and sum, seconds."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value_s: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value_s)] += 1
        self.sum += value_s

    def add(self, counts: Sequence[int], sum_s: float) -> None:
        for i, c in enumerate(counts):
            self.counts[i] += c
        self.sum += sum_s

    def plus(self, other: Histo) -> Histo:
        h = Histo(self.bounds)
        h.add(self.counts, self.sum)
        h.add(other.counts, other.sum)
        return h

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative, as Prometheus has them, ending with ``+Inf``."""
        out, total = [], 0
        for bound, c in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += c
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return out


class Families:
    """The metric families of one scrape, added to by name."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.core = prometheus().core
        self.base = labels
        self.out: dict[str, Any] = {}

    def _family(self, kind: str, name: str, doc: str, keys: list[str], **kw: Any) -> Any:
        fam = self.out.get(name)
        if fam is None:
            cls = {
                "counter": self.core.CounterMetricFamily,
                "gauge": self.core.GaugeMetricFamily,
                "histogram": self.core.HistogramMetricFamily,
            }[kind]
            fam = self.out[name] = cls(name, doc, labels=keys, **kw)
        return fam

    def _labels(self, extra: dict[str, str]) -> tuple[list[str], list[str]]:
        labels = {**self.base, **extra}
        return list(labels), list(labels.values())

    def counter(self, name: str, doc: str, value: float, **labels: str) -> None:
        keys, values = self._labels(labels)
        self._family("counter", name, doc, keys).add_metric(values, value)

    def gauge(self, name: str, doc: str, value: float, **labels: str) -> None:
        keys, values = self._labels(labels)
        self._family("gauge", name, doc, keys).add_metric(values, value)

    def histogram(self, name: str, doc: str, h: Histo, **labels: str) -> None:
        keys, values = self._labels(labels)
        self._family("histogram", name, doc, keys).add_metric(values, h.buckets(), h.sum)


class ToolMetrics:
    """What every tool's metrics share: the labels, the lock between the
    command's thread (which observes) and the server's (which collects),
    and the ``info`` gauge. A subclass observes items and adds families."""

    role = ""

    def __init__(self, peer: str = "") -> None:
        self.peer = peer
        self.lock = threading.Lock()

    def observe(self, item: Any) -> None:
        """Takes note of an item the command received (an event, a sample)."""

    def failed(self, error: BaseException) -> None:
        """The run ended with an error (a corruption, a lost peer)."""

    def add(self, f: Families) -> None:
        """Adds the tool's families to a scrape."""

    def collect(self) -> Iterable[Any]:
        labels = {"role": self.role}
        if self.peer:
            labels["peer"] = self.peer
        f = Families(labels)
        from migmon import __version__

        f.gauge("migmon_info", "The mig_mon that measures (always 1).", 1, version=__version__)
        with self.lock:
            self.add(f)
        return list(f.out.values())
