"""Shared helpers: run the real CLI in a subprocess, read JSON lines."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from migmon.cli import main

MIG_MON = [sys.executable, "-m", "migmon"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Runs ``mig_mon ARGS`` in this process (no interpreter start-up): for
    parsing and bad input, which end before any run starts. Same result
    shape as :func:`run_cli`."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["mig_mon", *args], code, out.getvalue(), err.getvalue())


def run_cli(*args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Runs ``mig_mon ARGS`` to completion, capturing text output."""
    return subprocess.run(
        [*MIG_MON, *args], capture_output=True, text=True, timeout=timeout, check=False, **kw
    )


def popen_cli(*args: str, **kw: Any) -> subprocess.Popen[str]:
    """Starts ``mig_mon ARGS`` with pipes for stdout and stderr."""
    return subprocess.Popen(
        [*MIG_MON, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` parsed as JSON (all must parse)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int | None = None) -> str:
    """Bad input: one line on stderr starting ``mig_mon:``, no traceback,
    a non-zero exit (the given one, if any)."""
    assert proc.returncode != 0, proc
    if code is not None:
        assert proc.returncode == code, (proc.returncode, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(err.splitlines()) == 1, proc.stderr
    assert err.startswith("mig_mon:"), err
    return err


def write_proc_mem(pid: int, address: int, data: bytes) -> None:
    """Writes into another process's memory (as root): plays a migration
    that lost a page."""
    fd = os.open(f"/proc/{pid}/mem", os.O_RDWR)
    try:
        os.pwrite(fd, data, address)
    finally:
        os.close(fd)


@pytest.fixture
def hugepages_2m() -> Iterator[int]:
    """Reserves 2M huge pages for a test (root only) and restores the pool;
    yields how many are free."""
    path = Path("/proc/sys/vm/nr_hugepages")
    old = int(path.read_text())
    try:
        path.write_text(str(old + 64))
        free = int(Path("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages").read_text())
        yield free
    finally:
        path.write_text(str(old))


def ip(*args: str) -> None:
    """Runs ``ip ARGS`` (iproute2), failing the test if it fails."""
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def veth_pair(
    a: tuple[str, str, str], b: tuple[str, str, str], mtu: int | None = None
) -> Iterator[None]:
    """Two network namespaces joined by a veth pair, each side given as
    (namespace, device, address/24); both namespaces are removed afterwards,
    whatever happens. Traffic stays between these two test hosts."""
    for ns, _, _ in (a, b):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    try:
        ip("netns", "add", a[0])
        ip("netns", "add", b[0])
        ip("link", "add", a[1], "netns", a[0], "type", "veth", "peer", b[1], "netns", b[0])
        for ns, dev, addr in (a, b):
            if mtu is not None:
                ip("-n", ns, "link", "set", dev, "mtu", str(mtu))
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield
    finally:
        for ns, _, _ in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing on 127.0.0.1 uses now (TCP by default, or UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_udp_echo(port: int, host: str = "127.0.0.1", timeout: float = 20.0) -> None:
    """Waits until an echo server answers on ``port``."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.1)
        while time.monotonic() < deadline:
            s.sendto(b"ping", (host, port))
            try:
                if s.recv(100) == b"ping":
                    return
            except OSError:
                pass
    raise AssertionError(f"no echo server on {host}:{port}")


def wait_tcp(port: int, host: str = "127.0.0.1", timeout: float = 20) -> None:
    """Until something accepts TCP connections on the port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {host}:{port}")


@pytest.fixture
def echo_proc() -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A real ``mig_mon server_rr`` in its own process (so it can be stopped)."""
    port = free_port(socket.SOCK_DGRAM)
    with cli_server("server_rr", "-p", str(port), ready=lambda: wait_udp_echo(port)) as proc:
        yield proc, port


@contextlib.contextmanager
def cli_server(
    *args: str, ready: Callable[[], None], timeout: float = 15
) -> Iterator[subprocess.Popen[str]]:
    """``mig_mon ARGS`` in its own process, once ``ready()`` returns; ended
    with SIGTERM (then killed) however the test ends."""
    proc = popen_cli(*args)
    try:
        ready()
        yield proc
    finally:
        finish(proc, signal.SIGTERM, timeout)


def finish(
    proc: subprocess.Popen[str], sig: int = signal.SIGINT, timeout: float = 30
) -> tuple[str, str]:
    """Signals the process and reads what it wrote; killed if it does not
    end in time (the test then fails on the timeout)."""
    proc.send_signal(sig)
    try:
        return proc.communicate(timeout=timeout)
    finally:
        proc.kill()


def time_to_end(
    proc: subprocess.Popen[str], sig: int = signal.SIGINT, timeout: float = 30
) -> tuple[float, str, str]:
    """How long the process takes to end after ``sig`` (seconds), and what
    it wrote."""
    t = time.monotonic()
    out, err = finish(proc, sig, timeout)
    return time.monotonic() - t, out, err


def stop_for(pid: int, seconds: float) -> float:
    """Stops the process (SIGSTOP) for about ``seconds``: a fault of known
    length. Returns how long it was stopped, measured."""
    t0 = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)
    return time.monotonic() - t0


@contextlib.contextmanager
def own_cgroup(controller: str, name: str) -> Iterator[Path]:
    """A cgroup of this test's own under ``controller`` (v1 or v2)."""
    for base in (Path(f"/sys/fs/cgroup/{controller}"), Path("/sys/fs/cgroup")):
        d = base / f"migmon-{name}-{os.getpid()}"
        with contextlib.suppress(OSError):
            d.mkdir()
            break
    else:
        pytest.skip(f"no {controller} cgroup to make here")
    try:
        yield d
    finally:
        for _ in range(50):
            try:
                d.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def in_cgroup(cg: Path) -> list[str]:
    """A command prefix that runs what follows inside ``cg``."""
    return ["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$@"', "sh"]
