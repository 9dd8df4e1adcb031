"""Helpers shared by the sub-commands: one-line errors, signals, output."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import TextIO


def fail_line(msg: str) -> None:
    """Prints ``mig_mon: msg`` as a single line on stderr."""
    one = " ".join(str(msg).split())
    with contextlib.suppress(OSError):
        sys.stderr.write(f"mig_mon: {one}\n")
        sys.stderr.flush()


def say(line: str, out: TextIO) -> None:
    """Writes one line and flushes, so a pipe reader sees it at once."""
    out.write(line + "\n")
    out.flush()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turns SIGTERM into KeyboardInterrupt (as SIGINT already is) for the
    block, so either ends a run through the same clean path."""
    old = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def ignore_signals() -> None:
    """While wrapping up, a second Ctrl-C or SIGTERM must not cut the
    summary in half."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextlib.contextmanager
def quiet_broken_pipe() -> Iterator[None]:
    """``mig_mon ... | head`` ends quietly when the reader goes away."""
    try:
        yield
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            sys.stdout = open("/dev/null", "w")  # noqa: SIM115
