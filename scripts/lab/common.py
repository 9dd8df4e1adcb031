"""Constants, logging and the shell the lab's modules share."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
AGENT = Path(__file__).resolve().parents[1] / "qemu_lab_agent.py"
#: The lab's entry script (run again inside the namespace).
ENTRY = Path(__file__).resolve().parents[1] / "qemu_lab.py"

NETNS = "mmlab"
BRIDGE = "mmbr0"
TAPS = ("mmtap0", "mmtap1")
HOST_IP = "10.77.0.1"
GUEST_IP = "10.77.0.2"
AGENT_PORT = 7000
MIGRATE_PORT = 4444

# Unpacked, not installed: they conflict with the preinstalled qemu-utils.
UNPACKED = [
    "qemu-system-x86",
    "qemu-system-common",
    "qemu-system-data",
    "seabios",
    "ipxe-qemu",
    "busybox-static",
]
# What the unpacked QEMU links against, and the capture tool: installed.
INSTALLED = [
    "libaio1",
    "libbpf1",
    "libcapstone4",
    "libfdt1",
    "libfuse3-3",
    "libglib2.0-0",
    "libgmp10",
    "libgnutls30",
    "libibverbs1",
    "libjpeg62-turbo",
    "libnuma1",
    "libpixman-1-0",
    "libpmem1",
    "libpng16-16",
    "librdmacm1",
    "libsasl2-2",
    "libseccomp2",
    "libslirp0",
    "liburing2",
    "libvdeplug2",
    "libzstd1",
    "tcpdump",
    "iproute2",
]
#: On a postcopy destination: every page request with the thread that
#: faulted, every page placed, and QEMU's own blocktime bookkeeping.
POSTCOPY_TRACE = (
    "postcopy_ram_fault_thread_request",
    "postcopy_place_page",
    "postcopy_place_page_zero",
    "mark_postcopy_blocktime_begin",
    "mark_postcopy_blocktime_end",
)
GUEST_MODULES = ["virtio_pci", "virtio_blk", "virtio_net", "crc32c_generic", "ext4"]


def log(msg: str) -> None:
    print(f"[lab {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(*argv: str | Path, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], check=check, text=True, **kw)
