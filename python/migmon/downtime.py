"""Guest network downtime from Python: the echo server to run in the guest,
the probing client to run outside, and the one-way server.

* :func:`probe` blocks until ``count`` probes or ``duration_s`` and returns a
  :class:`ProbeSummary` (events, loss, RTT percentiles).
* :class:`Prober` runs in the background; :meth:`Prober.messages` returns
  the events (and the baseline) as they happen.
* :class:`EchoServer` / :class:`OneWayServer` serve in the background as
  context managers; ``port`` tells the bound port (pass ``port=0`` for any).

The sockets live in Rust threads; Python only polls in short slices, so the
GIL stays free and a KeyboardInterrupt stops a blocking call cleanly.
"""

from __future__ import annotations

from collections.abc import Callable

from migmon._background import Background, drain
from migmon._core import (
    DEFAULT_PORT,
    Baseline,
    ClientSummary,
    DowntimeEvent,
    EchoStats,
    NewClient,
    NoReply,
    ProbeRun,
    ProbeStatus,
    ProbeSummary,
)
from migmon._core import EchoServer as _EchoServer
from migmon._core import OneWayServer as _OneWayServer

__all__ = [
    "DEFAULT_PORT",
    "Baseline",
    "ClientSummary",
    "DowntimeEvent",
    "EchoServer",
    "EchoStats",
    "NewClient",
    "NoReply",
    "OneWayServer",
    "ProbeStatus",
    "ProbeSummary",
    "Prober",
    "probe",
]

_POLL_S = 0.1

ProbeMessage = Baseline | DowntimeEvent | NoReply
ServerMessage = NewClient | Baseline | DowntimeEvent


class EchoServer(Background):
    """UDP echo server (``server_rr``): every datagram back unchanged."""

    def __init__(self, *, bind: str | None = None, port: int = DEFAULT_PORT) -> None:
        self._srv = _EchoServer(bind=bind, port=port)
        self._final: EchoStats | None = None

    @property
    def port(self) -> int:
        """The bound UDP port."""
        return self._srv.port

    @property
    def address(self) -> str:
        """The bound address, ``ip:port``."""
        return self._srv.address

    def stats(self) -> EchoStats:
        """Counters so far."""
        return self._final if self._final is not None else self._srv.stats()

    def new_clients(self) -> list[str]:
        """Clients seen for the first time since the last call."""
        return self._srv.take_new_clients()

    def stop(self) -> EchoStats:
        """Stops serving (idempotent); returns the final counters."""
        if self._final is None:
            self._final = self._srv.stop()
        return self._final


class OneWayServer(Background):
    """One-way server (``server``): measures the gaps in each client's stream."""

    def __init__(
        self,
        *,
        bind: str | None = None,
        port: int = DEFAULT_PORT,
        threshold_ms: float | None = None,
    ) -> None:
        self._srv = _OneWayServer(bind=bind, port=port, threshold_ms=threshold_ms)
        self._final: list[ClientSummary] | None = None

    @property
    def port(self) -> int:
        """The bound UDP port."""
        return self._srv.port

    @property
    def address(self) -> str:
        """The bound address, ``ip:port``."""
        return self._srv.address

    def next_message(self, timeout_s: float = _POLL_S) -> ServerMessage | None:
        """The next NewClient, Baseline or DowntimeEvent, waiting up to ``timeout_s``."""
        return self._srv.next_message(timeout_s)

    def messages(self) -> list[ServerMessage]:
        """Everything that happened since the last call, without waiting."""
        return drain(self._srv.next_message)

    def clients(self) -> list[ClientSummary]:
        """Every client's figures."""
        return self._final if self._final is not None else self._srv.clients()

    def stop(self) -> list[ClientSummary]:
        """Stops (idempotent); returns every client's figures."""
        if self._final is None:
            self._final = self._srv.stop()
        return self._final


class Prober(Background):
    """Probes an echo server (or, ``one_way``, feeds a one-way server) in
    the background."""

    def __init__(
        self,
        host: str,
        interval_ms: float = 1000.0,
        *,
        port: int = DEFAULT_PORT,
        threshold_ms: float | None = None,
        count: int | None = None,
        duration_s: float | None = None,
        one_way: bool = False,
    ) -> None:
        self._run = ProbeRun(
            host,
            port=port,
            interval_ms=interval_ms,
            threshold_ms=threshold_ms,
            count=count,
            duration_s=duration_s,
            one_way=one_way,
        )
        self._summary: ProbeSummary | None = None

    @property
    def status(self) -> ProbeStatus:
        """Live figures (sent, received, gaps, last RTT)."""
        return self._run.status

    @property
    def done(self) -> bool:
        """True once ``count`` or ``duration_s`` was reached, or stopped."""
        return self._run.done

    def next_message(self, timeout_s: float = _POLL_S) -> ProbeMessage | None:
        """The next Baseline, DowntimeEvent or NoReply, waiting up to ``timeout_s``."""
        return self._run.next_message(timeout_s)

    def messages(self) -> list[ProbeMessage]:
        """Everything that happened since the last call, without waiting."""
        return drain(self._run.next_message)

    def stop(self) -> ProbeSummary:
        """Ends the run (idempotent) and returns the summary."""
        if self._summary is None:
            self._summary = self._run.stop()
        return self._summary


def probe(
    host: str,
    interval_ms: float = 1000.0,
    *,
    port: int = DEFAULT_PORT,
    count: int | None = None,
    duration_s: float | None = None,
    threshold_ms: float | None = None,
    one_way: bool = False,
    on_event: Callable[[ProbeMessage], None] | None = None,
) -> ProbeSummary:
    """Probes ``host`` until ``count`` probes were sent or ``duration_s``
    passed, and returns the summary. ``on_event`` sees every message as it
    happens. A KeyboardInterrupt stops the run and propagates."""
    if count is None and duration_s is None:
        raise ValueError("probe() needs count or duration_s (use Prober to run open-ended)")
    with Prober(
        host,
        interval_ms,
        port=port,
        threshold_ms=threshold_ms,
        count=count,
        duration_s=duration_s,
        one_way=one_way,
    ) as p:
        while True:
            m = p.next_message(_POLL_S)
            if m is not None:
                if on_event is not None:
                    on_event(m)
            elif p.done:
                break
        for m in p.messages():
            if on_event is not None:
                on_event(m)
        return p.stop()
