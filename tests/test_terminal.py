"""What a person sees: commands run under a pseudo-terminal (the progress
bar, the line updated in place, the compact summary), the live lines kept
with --json and dropped with --quiet, and the same clean end for SIGINT,
SIGTERM and SIGHUP, also when a script started mig_mon with SIGINT ignored."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import socket
import subprocess
import time

import pytest

from conftest import MIG_MON, free_port, popen_cli, run_cli


def run_pty(*args: str, timeout: float = 60) -> tuple[int, str]:
    """Runs ``mig_mon ARGS`` with a terminal as stdin, stdout and stderr;
    its exit code and everything the terminal received."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([*MIG_MON, *args], stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
    code = proc.wait(timeout=10)
    return code, b"".join(chunks).decode(errors="replace")


def test_mm_dirty_on_a_terminal() -> None:
    code, screen = run_pty("mm_dirty", "-m", "512", "-r", "200", "--duration", "1.5")
    assert code == 0, screen
    assert "prefault" in screen and "100%" in screen  # the progress bar
    # The live lines (their rate's accuracy is tested elsewhere).
    assert re.search(r"dirty-rate: \d+ \(MB/s\), time \(ms\): \d+", screen)
    assert "Summary: dirtied " in screen
    assert "Integrity: OK" in screen
    assert "figure" not in screen  # the table only with --details


def test_details_add_a_table_in_human_units() -> None:
    code, screen = run_pty(
        "mm_dirty", "-m", "64", "-r", "100", "-L", "--duration", "1.2", "--details"
    )
    assert code == 0, screen
    assert "Summary: dirtied" in screen
    assert "figure" in screen and "MB/s" in screen and " us" in screen
    assert "p99_ns" not in screen  # units in the values, not raw keys


def test_client_updates_its_line_in_place() -> None:
    with subprocess.Popen([*MIG_MON, "server_rr", "-p", str(port := free_port(socket.SOCK_DGRAM))],
                          stdout=subprocess.DEVNULL) as srv:  # fmt: skip
        try:
            time.sleep(0.5)
            code, screen = run_pty("client", "127.0.0.1", "10", "-p", str(port), "--count", "150")
        finally:
            srv.terminate()
    assert code == 0, screen
    assert "\r\x1b[K[" in screen  # the status line rewritten in place
    assert "max_delay:" in screen
    assert "RTT (us): min=" in screen and "Total downtime:" in screen


def test_json_keeps_live_lines_and_quiet_drops_them() -> None:
    p = run_cli(
        "mm_dirty", "-m", "32", "-r", "100", "--interval", "0.2", "--duration", "1", "--json"
    )
    assert p.returncode == 0, p.stderr
    assert len(re.findall(r"^dirty-rate: \d+ \(MB/s\)", p.stderr, re.M)) >= 4
    assert all(line.startswith("{") for line in p.stdout.splitlines())
    q = run_cli("mm_dirty", "-m", "32", "-r", "100", "--interval", "0.2", "--duration", "1", "-q")
    assert q.returncode == 0, q.stderr
    assert "dirty-rate:" not in q.stdout
    assert "Summary: dirtied " in q.stdout


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=str)
@pytest.mark.parametrize("command", ["mm_dirty", "client", "server_rr"])
def test_every_signal_ends_the_same_way_even_with_sigint_ignored(
    command: str, sig: signal.Signals
) -> None:
    port = free_port(socket.SOCK_DGRAM)
    args = {
        "mm_dirty": ["mm_dirty", "-m", "64", "-r", "100"],
        "client": ["client", "127.0.0.1", "10", "-p", str(port)],
        "server_rr": ["server_rr", "-p", str(port)],
    }[command]
    srv = None
    if command == "client":
        srv = subprocess.Popen([*MIG_MON, "server_rr", "-p", str(port)], stdout=subprocess.DEVNULL)
        time.sleep(0.4)
    try:
        # As a non-interactive shell starts a background job: SIGINT ignored.
        proc = popen_cli(*args, preexec_fn=_ignore_sigint)
        time.sleep(1.5)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        if srv is not None:
            with contextlib.suppress(ProcessLookupError):
                srv.terminate()
            srv.wait()
    assert proc.returncode == 0, (proc.returncode, err)
    assert "Traceback" not in err
    assert "Summary:" in out, out
