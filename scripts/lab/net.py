"""The lab's network namespace, bridge and taps, and packet captures."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from lab.common import BRIDGE, HOST_IP, NETNS, TAPS, sh


def net_up() -> None:
    net_down()
    ip = ["ip", "-n", NETNS]
    sh("ip", "netns", "add", NETNS)
    sh(*ip, "link", "set", "lo", "up")
    sh(*ip, "link", "add", BRIDGE, "type", "bridge", "forward_delay", "0", "stp_state", "0")
    sh(*ip, "addr", "add", f"{HOST_IP}/24", "dev", BRIDGE)
    sh(*ip, "link", "set", BRIDGE, "up")
    for tap in TAPS:
        sh(*ip, "tuntap", "add", "dev", tap, "mode", "tap")
        sh(*ip, "link", "set", tap, "master", BRIDGE, "up")


def net_down() -> None:
    """Ends everything left in the lab's namespace, then the namespace."""
    r = sh("ip", "netns", "pids", NETNS, capture_output=True, check=False)
    pids = [int(p) for p in r.stdout.split()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 3
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if Path(f"/proc/{p}").exists()]
            time.sleep(0.05)
    sh("ip", "netns", "del", NETNS, check=False, stderr=subprocess.DEVNULL)


def reply_times(pcap: Path) -> list[float]:
    """Arrival times of the guest's echo replies, from the capture."""
    r = sh("tcpdump", "-tt", "-n", "-r", pcap, capture_output=True)
    return [float(line.split()[0]) for line in r.stdout.splitlines() if " UDP" in line]


def capture(iface: str, out: Path, bpf: str) -> subprocess.Popen[bytes]:
    """tcpdump on ``iface`` into ``out``, once it listens."""
    dump = subprocess.Popen(
        ["tcpdump", "-i", iface, "-n", "-U", "-w", str(out), bpf], stderr=subprocess.PIPE
    )
    assert dump.stderr is not None
    dump.stderr.readline()  # "listening on ..."
    return dump


def packet_times(pcap: Path) -> list[float]:
    """Every packet's time in a capture."""
    r = sh("tcpdump", "-tt", "-n", "-r", pcap, capture_output=True)
    return [float(line.split()[0]) for line in r.stdout.splitlines() if line.strip()]


def rarp_times(pcap: Path) -> list[float]:
    """When QEMU's announcements (RARP) crossed the bridge, from the capture."""
    r = sh("tcpdump", "-tt", "-n", "-r", pcap, "rarp", capture_output=True)
    return [float(line.split()[0]) for line in r.stdout.splitlines() if line.strip()]
