"""Resources that run out, for every long-running command: address space
(``prlimit --as``), descriptors (``prlimit --nofile``), threads (a pids
cgroup's ``pids.max``), memory (a memory cgroup's limit) and huge pages.

Each cell runs the command for about a second under one limit, at levels
from where the interpreter itself just starts to where the command's own
threads, sockets and mappings fail. Whatever the level, the command either
measures and ends normally, or ends with one clear line on stderr and a
non-zero exit: never a traceback, a panic, a death by signal or a hang.
(Below the lowest levels the interpreter cannot start at all, before any
code of ours runs.)"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import MIG_MON, cli_server, free_port, in_cgroup, own_cgroup, wait_tcp, wait_udp_echo

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not shutil.which("prlimit"), reason="needs prlimit (util-linux)"),
]

#: The commands, each for about a second; {tcp} and {udp} are the peers'.
COMMANDS = {
    "mm_dirty": ["mm_dirty", "-m", "64", "-T", "8", "-r", "200", "-L", "--duration", "1"],
    "vm -s": ["vm", "-s", "-H", "127.0.0.1", "-p", "{tcp}", "-t", "precopy", "-t", "postcopy",
              "--channels", "8", "--preempt", "--duration", "1"],
    "vm -d": ["vm", "-d", "-p", "0", "--bind", "127.0.0.1", "--duration", "1"],
    "server_rr": ["server_rr", "-p", "0", "--duration", "1"],
    "server": ["server", "-p", "0", "--duration", "1"],
    "client": ["client", "127.0.0.1", "5", "-p", "{udp}", "--duration", "1"],
}  # fmt: skip


@pytest.fixture(scope="module")
def peers() -> Iterator[dict[str, str]]:
    """A destination for `vm -s` and an echo server for `client`, outside
    the limits."""
    tcp, udp = free_port(), free_port(socket.SOCK_DGRAM)
    with (
        cli_server("vm", "-d", "-p", str(tcp), "-q", ready=lambda: wait_tcp(tcp)),
        cli_server("server_rr", "-p", str(udp), "-q", ready=lambda: wait_udp_echo(udp)),
    ):
        yield {"tcp": str(tcp), "udp": str(udp)}


def _argv(command: str, peers: dict[str, str]) -> list[str]:
    return [a.format(**peers) for a in COMMANDS[command]]


def _judge(p: subprocess.CompletedProcess[str], what: str) -> None:
    """Measured and ended, or one clear line and an exit."""
    err = p.stderr
    assert "Traceback" not in err and "panicked" not in err, f"{what}:\n{err}"
    assert "internal error" not in err, f"{what}: a resource is not a bug\n{err}"
    assert p.returncode >= 0, f"{what}: killed by signal {-p.returncode}\n{err}"
    if p.returncode != 0:
        said = [line for line in err.splitlines() if line.startswith("mig_mon: ")]
        last = err.strip().splitlines()[-1] if err.strip() else ""
        assert len(said) == 1 and last.startswith("mig_mon: "), f"{what}: rc {p.returncode}\n{err}"


def _run(prefix: list[str], argv: list[str], what: str) -> subprocess.CompletedProcess[str]:
    try:
        p = subprocess.run(
            [*prefix, *MIG_MON, *argv], capture_output=True, text=True, timeout=60, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{what}: still running after 60 s (a hang)") from e
    _judge(p, what)
    said = [line for line in p.stderr.splitlines() if line.startswith("mig_mon: ")]
    print(f"{what}: exit {p.returncode}" + (f", {said[-1]}" if said else ""))
    return p


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("mb", [48, 96, 192, 384])
def test_address_space(command: str, mb: int, peers: dict[str, str]) -> None:
    _run(["prlimit", f"--as={mb << 20}"], _argv(command, peers), f"{command} --as {mb}M")


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("fds", [6, 9, 14, 24])
def test_descriptors(command: str, fds: int, peers: dict[str, str]) -> None:
    _run(["prlimit", f"--nofile={fds}:{fds}"], _argv(command, peers), f"{command} nofile {fds}")


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("tasks", [2, 4, 8])
def test_threads(command: str, tasks: int, peers: dict[str, str]) -> None:
    with own_cgroup("pids", "pids") as cg:
        if not (cg / "pids.max").exists():
            pytest.skip("no pids controller")
        (cg / "pids.max").write_text(str(tasks))
        _run(in_cgroup(cg), _argv(command, peers), f"{command} pids.max {tasks}")


@pytest.mark.parametrize("command", COMMANDS)
def test_memory(command: str, peers: dict[str, str]) -> None:
    """A memory cgroup of 160 MB: mm_dirty asked for 256 MB says so before
    it maps anything (the OOM killer gave no message and no summary); the
    others run within it."""
    with own_cgroup("memory", "mem") as cg:
        limit = cg / "memory.limit_in_bytes"
        if not limit.exists():
            limit = cg / "memory.max"
        if not limit.exists():
            pytest.skip("no memory controller")
        limit.write_text(str(160 << 20))
        argv = _argv(command, peers)
        if command == "mm_dirty":
            argv[argv.index("-m") + 1] = "256"
        p = _run(in_cgroup(cg), argv, f"{command} in 160 MB")
    if command == "mm_dirty":
        assert p.returncode == 1, p.stderr
        assert "leaves room for" in p.stderr and "(--force to try anyway)" in p.stderr, p.stderr
    else:
        assert p.returncode == 0, p.stderr


def test_huge_pages() -> None:
    """No free huge page of the size asked for: one line saying how to
    reserve them, also with --force (a SIGBUS before)."""
    pool = Path("/sys/kernel/mm/hugepages/hugepages-2048kB")
    if not pool.exists():
        pytest.skip("no 2 MiB huge pages here")
    old = (pool / "nr_hugepages").read_text().strip()
    (pool / "nr_hugepages").write_text("0")
    try:
        for force in ([], ["--force"]):
            argv = ["mm_dirty", "-m", "64", "-P", "2m", "--duration", "1", *force]
            p = _run([], argv, f"mm_dirty -P 2m {force}")
            assert p.returncode == 1 and "nr_hugepages" in p.stderr, p.stderr
    finally:
        (pool / "nr_hugepages").write_text(old)
