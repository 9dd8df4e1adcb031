"""The exceptions mig_mon raises; every one derives from :class:`MigmonError`."""

from migmon._core import (
    ConfigError,
    CorruptionError,
    MigmonError,
    NetworkError,
    ProtocolError,
    ResourceError,
)

__all__ = [
    "ConfigError",
    "CorruptionError",
    "MigmonError",
    "NetworkError",
    "ProtocolError",
    "ResourceError",
]
