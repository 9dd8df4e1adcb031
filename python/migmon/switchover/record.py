"""QEMU's side of a migration, recorded while it runs: the QMP events of a
source and a destination monitor (with the ``events`` migration capability
on), ``query-migrate`` a few times a second while a migration is under way,
and, when asked, QEMU's downtime trace points turned on (they print to
QEMU's log: ``-D FILE`` or libvirt's domain log, with ``-msg
timestamp=on``). Everything is written as JSON Lines with the wall-clock
time of each object, on the same clock as mig_mon's own output.

Uses the QEMU project's own QMP library (``qemu.qmp``, the ``qmp`` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from migmon.errors import ConfigError, NetworkError

__all__ = ["TRACE_EVENTS", "QmpRecorder", "parse_monitor"]

#: The trace points the breakdown reads (QEMU 8.2 and later).
TRACE_EVENTS = (
    "vmstate_downtime_checkpoint",
    "vmstate_downtime_save",
    "vmstate_downtime_load",
    "qemu_announce_self_iter",
)
_ACTIVE = {
    "setup",
    "active",
    "device",
    "pre-switchover",
    "postcopy-active",
    "postcopy-paused",
    "postcopy-recover",
    "postcopy-recover-setup",
    "wait-unplug",
    "cancelling",
    "colo",
}


def parse_monitor(addr: str) -> str | tuple[str, int]:
    """A QMP monitor's address: ``unix:PATH``, a path, or ``HOST:PORT``."""
    if addr.startswith("unix:"):
        addr = addr[5:]
        if not addr:
            raise ConfigError("a QMP monitor 'unix:' needs a path")
        return addr
    if addr.startswith("tcp:"):
        addr = addr[4:]
    elif "/" in addr or ":" not in addr:
        return addr
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"a QMP monitor is unix:PATH, PATH or HOST:PORT, not '{addr}'")
    return (host, int(port))


class QmpRecorder:
    """Records QMP monitors to ``out`` (a path or a text stream) until
    :meth:`stop`; a context manager. ``monitors`` maps a role (``src``,
    ``dst``) to an address (see :func:`parse_monitor`)."""

    def __init__(
        self,
        out: str | Path | TextIO,
        monitors: dict[str, str],
        *,
        trace: bool = False,
        poll_s: float = 0.2,
        connect_timeout_s: float = 5.0,
    ) -> None:
        if not monitors:
            raise ConfigError("give at least one QMP monitor")
        for role in monitors:
            if role not in ("src", "dst"):
                raise ConfigError(f"a monitor's role is src or dst, not '{role}'")
        if not 0.01 <= poll_s <= 60:
            raise ConfigError(f"the query-migrate period must be 0.01-60 s, not {poll_s:g}")
        self.addresses = {r: parse_monitor(a) for r, a in monitors.items()}
        self.monitors = monitors
        self.trace = trace
        self.poll_s = poll_s
        self.connect_timeout_s = connect_timeout_s
        self._own = isinstance(out, (str, Path))
        self._target = out
        self._out: TextIO | None = None if isinstance(out, (str, Path)) else out
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        #: Objects written, by type.
        self.counts: dict[str, int] = {}
        #: What a monitor refused (the events capability while a migration
        #: runs, a trace point an old QEMU lacks), one line each.
        self.warnings: list[str] = []

    def _write(self, obj: dict[str, Any]) -> None:
        with self._lock:
            if self._out is None:
                assert isinstance(self._target, (str, Path))
                self._out = open(self._target, "a")  # noqa: SIM115
            self._out.write(json.dumps(obj, separators=(",", ":")) + "\n")
            self._out.flush()
            self.counts[obj["type"]] = self.counts.get(obj["type"], 0) + 1

    def start(self) -> QmpRecorder:
        """Connects to every monitor (raises if one cannot be reached) and
        records in a thread of its own."""
        try:
            import qemu.qmp  # noqa: F401
        except ImportError:
            raise ConfigError(
                "recording QMP needs the QEMU project's library: pip install 'mig_mon[qmp]'"
            ) from None
        self._thread = threading.Thread(target=self._main, name="qmp-record", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            err, self._error = self._error, None
            self._close()
            raise err
        return self

    def stop(self) -> None:
        """Stops recording (what was written stays) and closes the file."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._close()

    def _close(self) -> None:
        if self._own and self._out is not None and not self._out.closed:
            self._out.close()

    def __enter__(self) -> QmpRecorder:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _main(self) -> None:
        try:
            asyncio.run(self._record())
        except BaseException as e:
            if not self._ready.is_set():
                self._error = e
            else:
                self.warnings.append(f"recording ended: {e}")
        finally:
            self._ready.set()

    async def _record(self) -> None:
        from qemu.qmp import QMPClient
        from qemu.qmp.error import QMPError

        clients: dict[str, Any] = {}
        try:
            for role, addr in self.addresses.items():
                c = QMPClient(f"mig_mon-{role}")
                deadline = time.monotonic() + self.connect_timeout_s
                while True:
                    try:
                        left = max(0.05, deadline - time.monotonic())
                        await asyncio.wait_for(c.connect(addr), left)
                        break
                    except (OSError, asyncio.TimeoutError, QMPError) as e:
                        # A QEMU just started may have bound its socket but
                        # not yet listen()ed: refused for a moment.
                        refused = "refused" in str(e).lower()
                        if refused and time.monotonic() + 0.05 < deadline:
                            await asyncio.sleep(0.05)
                            continue
                        raise NetworkError(
                            f"cannot reach the {role} QMP monitor {self.monitors[role]}: "
                            f"{getattr(e, 'strerror', None) or e or 'timed out'}"
                        ) from None
                clients[role] = c
            # The file is written once every monitor answered.
            self._write(
                {
                    "type": "config",
                    "tool": "qmp_record",
                    "start_unix_s": time.time(),
                    "monitors": [{"role": r, "address": a} for r, a in self.monitors.items()],
                    "trace": self.trace,
                    "poll_s": self.poll_s,
                }
            )
            for role, c in clients.items():
                await self._enable(role, c)
            self._ready.set()
            pumps = [asyncio.create_task(self._pump(r, c)) for r, c in clients.items()]
            last_status: dict[str, str] = {}
            while not self._stop.is_set():
                for role, c in clients.items():
                    with contextlib.suppress(QMPError, OSError, asyncio.TimeoutError):
                        q = await asyncio.wait_for(c.execute("query-migrate"), 2)
                        status = q.get("status", "none") if isinstance(q, dict) else "none"
                        if status in _ACTIVE or status != last_status.get(role, "none"):
                            self._write(
                                {
                                    "type": "query_migrate",
                                    "role": role,
                                    "unix_s": time.time(),
                                    "reply": q,
                                }
                            )
                        last_status[role] = status
                await asyncio.sleep(self.poll_s)
            for p in pumps:
                p.cancel()
        finally:
            for c in clients.values():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(c.disconnect(), 2)

    async def _enable(self, role: str, c: Any) -> None:
        from qemu.qmp.error import QMPError

        caps = [{"capability": "events", "state": True}]
        try:
            await c.execute("migrate-set-capabilities", {"capabilities": caps})
        except QMPError as e:
            self.warnings.append(f"{role}: the events capability stays as it was ({e})")
        if self.trace:
            for name in TRACE_EVENTS:
                try:
                    await c.execute("trace-event-set-state", {"name": name, "enable": True})
                except QMPError as e:
                    self.warnings.append(f"{role}: trace point {name} not turned on ({e})")

    async def _pump(self, role: str, c: Any) -> None:
        async for ev in c.events:
            self._write(
                {"type": "qmp_event", "role": role, "unix_s": time.time(), "event": dict(ev)}
            )
