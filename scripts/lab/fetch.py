"""Fetching QEMU, the kernel and busybox with apt lists of the lab's own."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from lab.common import INSTALLED, UNPACKED, log, sh

#: QEMU versions the lab runs: 10.0 from bookworm-backports (the default),
#: 7.2 from bookworm itself (for comparison).
QEMU_SUITES = {"10.0": "bookworm-backports", "7.2": "bookworm"}
#: Unpacked from the backports suite when the lab runs QEMU 10.0.
FROM_BACKPORTS = {"qemu-system-x86", "qemu-system-common", "qemu-system-data", "seabios"}


def _debian_uri() -> str:
    """The Debian mirror this machine's apt already uses (read from its own
    configuration, which the lab never changes)."""
    texts = [p.read_text() for p in Path("/etc/apt/sources.list.d").glob("*.sources")]
    for t in texts:
        for stanza in t.split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:(.*)$", stanza, re.M)
            if uris and suites and "bookworm" in suites.group(1).split():
                return uris.group(1)
    lst = Path("/etc/apt/sources.list")
    if lst.exists():
        for line in lst.read_text().splitlines():
            f = line.split()
            if len(f) >= 3 and f[0] == "deb" and "bookworm" in f:
                return next(x for x in f[1:] if "://" in x)
    raise RuntimeError("no Debian bookworm source in this machine's apt configuration")


def _private_apt(lab: Path) -> list[str]:
    """apt options for a sources list and package lists of the lab's own,
    with bookworm-backports beside bookworm: the machine's apt setup stays
    as it is."""
    apt = lab / "apt"
    for d in ("lists/partial", "cache/archives/partial"):
        (apt / d).mkdir(parents=True, exist_ok=True)
    uri = _debian_uri()
    key = "/usr/share/keyrings/debian-archive-keyring.gpg"
    (apt / "sources.list").write_text(
        "".join(
            f"deb [signed-by={key}] {uri} {suite} main\n"
            for suite in ("bookworm", "bookworm-backports")
        )
    )
    return [
        "-o", f"Dir::Etc::sourcelist={apt / 'sources.list'}",
        "-o", "Dir::Etc::sourceparts=-",
        "-o", f"Dir::State::Lists={apt / 'lists'}",
        "-o", f"Dir::Cache={apt / 'cache'}",
    ]  # fmt: skip


def fetch(lab: Path, version: str) -> Path:
    """Unpacks QEMU ``version``, the kernel and busybox into lab/x-VERSION;
    returns that folder."""
    x = lab / f"x-{version}"
    done = x / ".complete"
    if not done.exists():
        debs = lab / f"debs-{version}"
        shutil.rmtree(debs, ignore_errors=True)
        debs.mkdir(parents=True)
        opts = _private_apt(lab)
        log("apt-get update (the lab's own lists: bookworm, bookworm-backports)")
        sh("apt-get", *opts, "update", "-qq", stdout=subprocess.DEVNULL)
        meta = sh("apt-cache", *opts, "depends", "linux-image-amd64", capture_output=True).stdout
        kernel = re.findall(r"Depends: (linux-image-\S+)", meta)[0]
        suite = QEMU_SUITES[version]
        names = [f"{n}/{suite}" if n in FROM_BACKPORTS else n for n in UNPACKED]
        log(f"apt-get download {' '.join(names)} {kernel}")
        sh("apt-get", *opts, "download", *names, kernel, cwd=debs, stdout=subprocess.DEVNULL)
        shutil.rmtree(x, ignore_errors=True)
        for deb in sorted(debs.glob("*.deb")):
            sh("dpkg", "-x", deb, x)
        shutil.rmtree(debs, ignore_errors=True)
        done.touch()
    qemu = x / "usr/bin/qemu-system-x86_64"
    missing = "not found" in sh("ldd", qemu, capture_output=True).stdout
    if missing or not shutil.which("tcpdump") or not shutil.which("ip"):
        log("apt-get install the libraries QEMU needs, tcpdump, iproute2")
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *INSTALLED]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if sh(*install, env=env, check=False, capture_output=True).returncode != 0:
            # A stale package list: refresh it once and try again.
            sh("apt-get", "update", "-qq", stdout=subprocess.DEVNULL)
            sh(*install, env=env, stdout=subprocess.DEVNULL)
    return x


def qemu_version(x: Path) -> str:
    """What the unpacked QEMU says of itself (its first line)."""
    out = sh(x / "usr/bin/qemu-system-x86_64", "--version", capture_output=True).stdout
    return out.splitlines()[0].strip() if out else "unknown"
