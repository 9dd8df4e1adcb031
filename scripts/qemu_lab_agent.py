"""The QEMU lab's agent inside the guest: runs what the lab asks, over TCP.

It is copied into the guest's root image and started by the guest's init. One
request per connection, a JSON line in, a JSON line out:

- ``{"op": "run", "argv": [...], "timeout": s}``: run to the end, return
  ``rc``, ``stdout``, ``stderr``.
- ``{"op": "spawn", "name": n, "argv": [...]}``: start in the background, its
  output going to ``/run/lab/<n>.out`` and ``/run/lab/<n>.err``.
- ``{"op": "signal", "name": n, "sig": 15}``: send a signal to a spawned one.
- ``{"op": "wait", "name": n, "timeout": s}``: wait for it, return its ``rc``
  and its output.
- ``{"op": "time"}``: the guest's wall clock (to line up the two clocks).
- ``{"op": "settime", "unix_s": t}``: set it (the RTC gives whole seconds).
- ``{"op": "clock"}``: the kernel's clocksource, the ones it has, and its
  messages about clocks and timekeeping since the last ``clock`` (a
  clocksource the watchdog drops changes how the guest's clock keeps time).

Standard library only: the guest has the host's Python but nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from typing import Any

PORT = 7000
spawned: dict[str, subprocess.Popen[bytes]] = {}


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


#: Where spawned programs' output goes (the guest's /tmp is a scratch tmpfs
#: that may hide a checkout under /tmp).
WORK = "/run/lab"


def _output(name: str, stream: str) -> str:
    return f"{WORK}/{name}.{stream}"


_CLOCK_WORDS = ("clocksource", "tsc", "timekeeping", "clockevent", "hpet", "watchdog")


def _clock_messages() -> list[str]:
    """The kernel's log records about clocks not read before (/dev/kmsg keeps
    a reader's place in its file description)."""
    global _kmsg
    if _kmsg is None:
        try:
            _kmsg = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return []
    out = []
    while True:
        try:
            rec = os.read(_kmsg, 8192).decode(errors="replace")
        except BlockingIOError:
            break
        except OSError:  # EPIPE: records overwritten before they were read
            continue
        head, _, text = rec.partition(";")
        if any(w in text.lower() for w in _CLOCK_WORDS):
            usec = head.split(",")[2] if head.count(",") >= 2 else "0"
            out.append(f"[{int(usec) / 1e6:.3f}] {text.strip()}")
    return out


_kmsg: int | None = None
_CS = "/sys/devices/system/clocksource/clocksource0"


def handle(req: dict[str, Any]) -> dict[str, Any]:
    op = req.get("op")
    if op == "time":
        return {"unix_s": time.time(), "mono_s": time.monotonic()}
    if op == "settime":
        # The guest's RTC has whole seconds; the lab sets the host's time.
        time.clock_settime(time.CLOCK_REALTIME, req["unix_s"])
        return {"unix_s": time.time()}
    if op == "clock":
        return {
            "clocksource": _read(f"{_CS}/current_clocksource").strip(),
            "available": _read(f"{_CS}/available_clocksource").split(),
            "messages": _clock_messages(),
        }
    if op == "run":
        try:
            done = subprocess.run(
                req["argv"], capture_output=True, timeout=req.get("timeout", 120), check=False
            )
        except subprocess.TimeoutExpired:
            return {"error": "timeout"}
        return {
            "rc": done.returncode,
            "stdout": done.stdout.decode(errors="replace"),
            "stderr": done.stderr.decode(errors="replace"),
        }
    if op == "spawn":
        name = req["name"]
        out = open(_output(name, "out"), "wb")  # noqa: SIM115 - the child owns it
        err = open(_output(name, "err"), "wb")  # noqa: SIM115
        spawned[name] = subprocess.Popen(req["argv"], stdout=out, stderr=err)
        out.close()
        err.close()
        return {"pid": spawned[name].pid}
    if op == "signal":
        p = spawned[req["name"]]
        if p.poll() is None:
            p.send_signal(req.get("sig", signal.SIGTERM))
        return {"ok": True}
    if op == "wait":
        p = spawned[req["name"]]
        try:
            rc = p.wait(timeout=req.get("timeout", 60))
        except subprocess.TimeoutExpired:
            return {"error": "timeout"}
        name = req["name"]
        return {
            "rc": rc,
            "stdout": _read(_output(name, "out")),
            "stderr": _read(_output(name, "err")),
        }
    return {"error": f"unknown op {op!r}"}


def serve(conn: socket.socket) -> None:
    with conn:
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        try:
            reply = handle(json.loads(data))
        except Exception as e:  # the lab wants to hear about it, not a dead agent
            reply = {"error": f"{type(e).__name__}: {e}"}
        conn.sendall(json.dumps(reply).encode() + b"\n")


def main() -> None:
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("0.0.0.0", PORT))
    lsock.listen(16)
    print(f"lab agent listening on {PORT}", flush=True)
    os.environ.setdefault("HOME", WORK)
    while True:
        conn, _ = lsock.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
