"""Live-migration stream emulation (``vm``) from Python.

* :class:`VmDestination` serves sources in the background (a context
  manager; ``port=0`` binds any free port) and reports per-session samples
  and summaries, page-request latencies included.
* :func:`vm_source` runs a source for ``duration_s`` and returns its
  :class:`VmSrcSummary`; :class:`VmSource` runs one in the background.

The sockets live in Rust threads; Python only polls in short slices.
"""

from __future__ import annotations

from collections.abc import Callable

from migmon._background import Background, drain
from migmon._core import (
    VmConnected,
    VmDropped,
    VmDstSample,
    VmPostcopy,
    VmRejected,
    VmSessionSummary,
    VmSrcSample,
    VmSrcSummary,
)
from migmon._core import VmDestination as _VmDestination
from migmon._core import VmSource as _VmSource

__all__ = [
    "VmConnected",
    "VmDestination",
    "VmDropped",
    "VmDstSample",
    "VmPostcopy",
    "VmRejected",
    "VmSessionSummary",
    "VmSource",
    "VmSrcSample",
    "VmSrcSummary",
    "vm_source",
]

DstMessage = VmConnected | VmPostcopy | VmDstSample | VmDropped | VmRejected


class VmDestination(Background):
    """The emulated destination in the background."""

    def __init__(
        self,
        *,
        bind: str | None = None,
        port: int = 12323,
        vm_size_gb: int = 1024,
        interval_s: float = 1.0,
    ) -> None:
        self._d = _VmDestination(
            bind=bind,
            port=port,
            vm_size_gb=vm_size_gb,
            interval_ms=max(1, round(interval_s * 1000)),
        )
        self._final: list[VmSessionSummary] | None = None

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return self._d.port

    @property
    def address(self) -> str:
        """The bound address."""
        return self._d.address

    @property
    def active(self) -> int:
        """Sessions running now."""
        return self._d.active

    def next_message(self, timeout_s: float = 0.1) -> DstMessage | None:
        """The next message, waiting up to ``timeout_s``."""
        return self._d.next_message(timeout_s)

    def messages(self) -> list[DstMessage]:
        """Everything that happened since the last call, without waiting."""
        return drain(self._d.next_message)

    def finished(self) -> list[VmSessionSummary]:
        """Sessions that ended so far."""
        return self._final if self._final is not None else self._d.finished()

    def stop(self) -> list[VmSessionSummary]:
        """Closes every connection (idempotent); returns every session's summary."""
        if self._final is None:
            self._final = self._d.stop()
        return self._final


class VmSource(Background):
    """The emulated source in the background."""

    def __init__(
        self,
        host: str,
        *,
        port: int = 12323,
        vm_size_gb: int = 1024,
        precopy: bool = True,
        postcopy: bool = False,
        channels: int = 0,
        preempt: bool = False,
        requests_on_main: bool = False,
        max_bandwidth_mb_s: int | None = None,
        duration_s: float | None = None,
        interval_s: float = 1.0,
    ) -> None:
        self._s = _VmSource(
            host,
            port=port,
            vm_size_gb=vm_size_gb,
            precopy=precopy,
            postcopy=postcopy,
            channels=channels,
            preempt=preempt,
            requests_on_main=requests_on_main,
            max_bandwidth_mb_s=max_bandwidth_mb_s,
            duration_s=duration_s,
            interval_ms=max(1, round(interval_s * 1000)),
        )
        self._summary: VmSrcSummary | None = None

    @property
    def done(self) -> bool:
        """True once the run ended (duration, stop, or the destination left)."""
        return self._s.done

    def next_sample(self, timeout_s: float = 0.1) -> VmSrcSample | None:
        """The next interval, waiting up to ``timeout_s``."""
        return self._s.next_sample(timeout_s)

    def samples(self) -> list[VmSrcSample]:
        """The intervals completed since the last call, without waiting."""
        return drain(self._s.next_sample)

    def stop(self) -> VmSrcSummary:
        """Ends the run (idempotent) and returns the summary."""
        if self._summary is None:
            self._summary = self._s.stop()
        return self._summary


def vm_source(
    host: str,
    *,
    duration_s: float,
    port: int = 12323,
    vm_size_gb: int = 1024,
    precopy: bool = True,
    postcopy: bool = False,
    channels: int = 0,
    preempt: bool = False,
    requests_on_main: bool = False,
    max_bandwidth_mb_s: int | None = None,
    interval_s: float = 1.0,
    on_sample: Callable[[VmSrcSample], None] | None = None,
) -> VmSrcSummary:
    """Runs a source for ``duration_s`` seconds and returns its summary.
    A KeyboardInterrupt stops it and propagates."""
    with VmSource(
        host,
        port=port,
        vm_size_gb=vm_size_gb,
        precopy=precopy,
        postcopy=postcopy,
        channels=channels,
        preempt=preempt,
        requests_on_main=requests_on_main,
        max_bandwidth_mb_s=max_bandwidth_mb_s,
        duration_s=duration_s,
        interval_s=interval_s,
    ) as src:
        while True:
            s = src.next_sample(0.1)
            if s is not None:
                if on_sample is not None:
                    on_sample(s)
            elif src.done:
                break
        return src.stop()
