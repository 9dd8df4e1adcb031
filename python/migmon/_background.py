"""What the background objects share: leaving a ``with`` block stops them,
and a poll with a zero timeout drains what has happened so far."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

_B = TypeVar("_B", bound="Background")
_T = TypeVar("_T")


class Background:
    """Base of objects that run in Rust threads until :meth:`stop`."""

    def stop(self) -> Any:
        """Ends the run (idempotent) and returns its result."""
        raise NotImplementedError

    def __enter__(self: _B) -> _B:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def drain(poll: Callable[[float], _T | None]) -> list[_T]:
    """Everything ``poll`` has ready now, without waiting."""
    out: list[_T] = []
    while (item := poll(0.0)) is not None:
        out.append(item)
    return out
