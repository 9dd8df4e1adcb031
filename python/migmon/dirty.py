"""The memory dirty workload (``mm_dirty``) from Python.

Two forms:

* :func:`mm_dirty` blocks until the run ends (``duration_s``) and returns a
  :class:`DirtySummary`; ``on_sample`` sees every interval as it comes.
* :class:`DirtyWorkload` runs in the background: a context manager with
  :meth:`~DirtyWorkload.stop`, and :meth:`~DirtyWorkload.samples` to read the
  intervals while it runs.

The work happens in Rust threads; Python only polls in slices of 100 ms, so
the GIL stays free and a KeyboardInterrupt stops the run cleanly.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType

from migmon._background import drain
from migmon._core import DirtyRun, DirtySample, DirtySummary, parse_size_mb

__all__ = ["DirtyOptions", "DirtySample", "DirtySummary", "DirtyWorkload", "mm_dirty"]

_POLL_S = 0.1


@dataclass(frozen=True)
class DirtyOptions:
    """A validated ``mm_dirty`` configuration (sizes in MB, rates in MB/s)."""

    size_mb: int = 512
    rate_mb_s: int | None = None
    pattern: str = "sequential"
    page_size: str = "4k"
    threads: int = 1
    record_latency: bool = False
    verify: bool = True
    duration_s: float | None = None
    interval_s: float = 1.0
    force: bool = False
    seed: int | None = None

    @staticmethod
    def size(value: int | str) -> int:
        """MB from an int or the original's size syntax (``512``, ``16G``)."""
        return value if isinstance(value, int) else parse_size_mb(value)

    def start(self) -> DirtyRun:
        """Maps the region and starts prefaulting and dirtying."""
        return DirtyRun(
            size_mb=self.size_mb,
            rate_mb_s=self.rate_mb_s,
            pattern=self.pattern,
            page_size=self.page_size,
            threads=self.threads,
            record_latency=self.record_latency,
            verify=self.verify,
            interval_ms=max(1, round(self.interval_s * 1000)),
            duration_ms=None if self.duration_s is None else max(1, round(self.duration_s * 1000)),
            force=self.force,
            seed=self.seed,
        )


def _options(
    size_mb: int | str,
    rate_mb_s: int | str | None,
    **kw: object,
) -> DirtyOptions:
    rate = None if rate_mb_s is None else DirtyOptions.size(rate_mb_s)
    return DirtyOptions(size_mb=DirtyOptions.size(size_mb), rate_mb_s=rate, **kw)  # type: ignore[arg-type]


class DirtyWorkload:
    """A dirty workload in the background.

    >>> with DirtyWorkload(size_mb=64, rate_mb_s=100) as w:
    ...     w.wait_prefaulted()
    ...     time.sleep(2)
    ...     summary = w.stop()
    """

    def __init__(
        self,
        size_mb: int | str = 512,
        rate_mb_s: int | str | None = None,
        *,
        pattern: str = "sequential",
        page_size: str = "4k",
        threads: int = 1,
        record_latency: bool = False,
        verify: bool = True,
        duration_s: float | None = None,
        interval_s: float = 1.0,
        force: bool = False,
        seed: int | None = None,
    ) -> None:
        self.options = _options(
            size_mb,
            rate_mb_s,
            pattern=pattern,
            page_size=page_size,
            threads=threads,
            record_latency=record_latency,
            verify=verify,
            duration_s=duration_s,
            interval_s=interval_s,
            force=force,
            seed=seed,
        )
        self._run: DirtyRun | None = None
        self._summary: DirtySummary | None = None

    @classmethod
    def from_options(cls, options: DirtyOptions) -> DirtyWorkload:
        """A workload for an already validated configuration."""
        w = cls.__new__(cls)
        w.options = options
        w._run = None
        w._summary = None
        return w

    def start(self) -> DirtyWorkload:
        """Starts the run (once); returns self."""
        if self._run is None:
            self._run = self.options.start()
        return self

    @property
    def run(self) -> DirtyRun:
        """The underlying extension object (started on first use)."""
        self.start()
        assert self._run is not None
        return self._run

    @property
    def phase(self) -> str:
        """``prefaulting``, ``dirtying``, ``stopping`` or ``done``."""
        return self.run.phase

    @property
    def done(self) -> bool:
        """True once the run ended (duration reached, stopped, or corruption)."""
        return self.run.done

    @property
    def region_address(self) -> int:
        """Address of the dirtied region in this process."""
        return self.run.region_address

    def wait_prefaulted(self, timeout_s: float | None = None) -> bool:
        """Waits until every page is prefaulted; False on timeout or end."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.run.phase == "prefaulting":
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return self.run.phase == "dirtying"

    def samples(self) -> list[DirtySample]:
        """The intervals completed since the last call, without waiting."""
        return drain(self.run.next_sample)

    def iter_samples(self) -> Iterator[DirtySample]:
        """Yields each interval as it completes, until the run ends."""
        while True:
            s = self.run.next_sample(_POLL_S)
            if s is not None:
                yield s
            elif self.run.done:
                return

    def stop(self) -> DirtySummary:
        """Ends the run (idempotent) and returns the summary.

        Raises :class:`~migmon.errors.CorruptionError` if a page lost its content.
        """
        if self._summary is None:
            self._summary = self.run.stop()
        return self._summary

    def __enter__(self) -> DirtyWorkload:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._summary is None and self._run is not None:
            if exc_type is None:
                self.stop()
            else:
                # Do not hide the original exception behind a late one.
                with contextlib.suppress(Exception):
                    self._run.stop()


def mm_dirty(
    size_mb: int | str = 512,
    rate_mb_s: int | str | None = None,
    *,
    duration_s: float,
    pattern: str = "sequential",
    page_size: str = "4k",
    threads: int = 1,
    record_latency: bool = False,
    verify: bool = True,
    interval_s: float = 1.0,
    force: bool = False,
    seed: int | None = None,
    on_sample: Callable[[DirtySample], None] | None = None,
) -> DirtySummary:
    """Runs a dirty workload for ``duration_s`` seconds and returns its summary.

    A KeyboardInterrupt stops the run (threads joined, memory unmapped) and
    propagates.
    """
    w = DirtyWorkload(
        size_mb,
        rate_mb_s,
        pattern=pattern,
        page_size=page_size,
        threads=threads,
        record_latency=record_latency,
        verify=verify,
        duration_s=duration_s,
        interval_s=interval_s,
        force=force,
        seed=seed,
    )
    with w:
        for s in w.iter_samples():
            if on_sample is not None:
                on_sample(s)
        return w.stop()
