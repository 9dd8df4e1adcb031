"""What the bench scripts share: how to start mig_mon, free ports, a
process's CPU time, and output read as JSON lines. The scripts run as
``python benches/NAME.py``, so this folder is on their path."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from typing import Any

from migmon.parse import json_objects_in

#: mig_mon as this interpreter runs it (the venv's package).
OURS = [sys.executable, "-m", "migmon"]
TICK = os.sysconf("SC_CLK_TCK")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free on 127.0.0.1 now, for TCP (the default) or UDP."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


#: The JSON objects among a tool's output lines (mig_mon's own reader).
json_lines = json_objects_in


def stop(p: subprocess.Popen[Any], sig: int = signal.SIGINT) -> None:
    """Ends a process started for a bench: ``sig``, then SIGKILL after 10 s."""
    p.send_signal(sig)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
