"""The exceptions mig_mon raises, one class per kind of failure, all under
:class:`MigmonError`. The Rust core raises these very classes (its one error
type maps each category to one of them). A bad value is also a
``ValueError``; a failure of the machine or the network is also an
``OSError`` (``errno`` is set when the operating system gave one)."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CorruptionError",
    "InternalError",
    "MigmonError",
    "NetworkError",
    "ProtocolError",
    "ResourceError",
]


class MigmonError(Exception):
    """Base class of every mig_mon error."""


class ConfigError(MigmonError, ValueError):
    """A value given to mig_mon is out of range or malformed. From the
    core, ``field`` names the configuration field at fault (None when no
    one field is) and ``reason`` says what is wrong without naming it."""

    field: str | None = None
    reason: str | None = None


class ResourceError(MigmonError, OSError):
    """The machine cannot give what was asked (memory, huge pages, a port,
    a thread). From the core, ``reason`` says what, and ``skipped_by``
    names the configuration field whose setting skips this check (None when
    none does)."""

    skipped_by: str | None = None
    reason: str | None = None


class NetworkError(MigmonError, OSError):
    """A socket call failed (address, bind, connect, send, receive)."""


class ProtocolError(MigmonError):
    """A peer broke the protocol or went away."""


class CorruptionError(MigmonError):
    """A page did not hold the value last written to it; ``page``,
    ``offset``, ``expected`` and ``found`` say where and what."""

    page: int
    offset: int
    expected: int
    found: int


class InternalError(MigmonError):
    """A bug of mig_mon's own (a thread panicked); please report it."""
