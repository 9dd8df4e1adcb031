"""Where the output goes: a pipe whose reader leaves, a closed stdout or
stderr, a spike log that cannot hold one or fills up mid-run. Each gets one
line (or a shell's quiet exit), never a traceback, and the run's summary."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import MIG_MON, assert_one_line_error, cli, free_port, popen_cli, run_cli


def pipe_to_head(args: list[str], lines: int = 1) -> tuple[int, str, str]:
    """``mig_mon ARGS | head -LINES``: mig_mon's exit code, head's output
    and mig_mon's stderr."""
    p = subprocess.Popen([*MIG_MON, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    head = [p.stdout.readline() for _ in range(lines)]
    p.stdout.close()  # the reader goes away
    err = p.stderr.read()
    rc = p.wait(timeout=30)
    return rc, b"".join(head).decode(), err.decode()


@pytest.fixture
def echo_port() -> Iterator[int]:
    port = free_port(socket.SOCK_DGRAM)
    srv = popen_cli("server_rr", "-p", str(port))
    time.sleep(0.8)
    yield port
    srv.terminate()
    srv.communicate(timeout=10)


@pytest.mark.parametrize(
    "args",
    [
        ["mm_dirty", "-m", "32", "-r", "100", "--duration", "20"],
        ["mm_dirty", "-m", "32", "--duration", "20", "--json"],
    ],
)
def test_a_reader_that_leaves_ends_the_run_quietly(args: list[str]) -> None:
    t0 = time.monotonic()
    rc, head, err = pipe_to_head(args, lines=2)
    assert head
    assert "Traceback" not in err and "Error" not in err, err
    assert rc == 141, (rc, err)
    # It ended when the pipe broke (at the next line, within a second),
    # not at the end of its --duration.
    assert time.monotonic() - t0 < 10


def test_vm_source_into_head() -> None:
    port = free_port()
    dst = popen_cli("vm", "-d", "-p", str(port))
    time.sleep(0.8)
    try:
        rc, head, err = pipe_to_head(
            ["vm", "-s", "-H", "127.0.0.1", "-p", str(port), "--duration", "20"]
        )
    finally:
        dst.terminate()
        dst.communicate(timeout=10)
    assert head.startswith("Start emulation of src VM.")
    assert rc == 141 and "Traceback" not in err, err


def test_client_json_into_head(echo_port: int) -> None:
    rc, head, err = pipe_to_head(
        ["client", "127.0.0.1", "1", "-p", str(echo_port), "--json", "--duration", "20"]
    )
    assert head.startswith('{"type":"config"')
    assert rc == 141 and "Traceback" not in err, err


@pytest.mark.parametrize(
    "args",
    [
        ["mm_dirty", "-m", "32", "--duration", "1"],
        ["client", "127.0.0.1", "5", "--duration", "1"],
        ["server_rr", "--duration", "1"],
        ["plot", "/nonexistent.json"],
    ],
)
def test_a_closed_stdout_is_one_line(args: list[str]) -> None:
    p = subprocess.run(
        [*MIG_MON, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        close_fds=True,
        timeout=30,
        pass_fds=(),
        preexec_fn=lambda: os.close(1),
    )
    assert p.returncode == 1
    assert (
        p.stderr.strip() == "mig_mon: standard output is closed (>&-): give it a file, or /dev/null"
    )


def test_closed_stdout_and_stderr_still_exit_non_zero() -> None:
    def close_both() -> None:
        os.close(1)
        os.close(2)

    p = subprocess.run(
        [*MIG_MON, "mm_dirty", "-m", "32", "--duration", "1"],
        preexec_fn=close_both,
        timeout=30,
        check=False,
    )
    assert p.returncode == 1


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("/dev/full", "a device, not a regular file or a FIFO"),
        ("/proc/version", "a kernel interface file"),
        ("/sys/kernel/mm/transparent_hugepage/enabled", "a kernel interface file"),
        ("/nonexistent/dir/spike.log", "No such file or directory"),
        ("/tmp", "a directory, not a regular file or a FIFO"),
    ],
)
def test_spike_log_targets_are_checked_up_front(target: str, why: str) -> None:
    port = str(free_port(socket.SOCK_DGRAM))
    for args in (["client", "127.0.0.1", "5"], ["server", "-p", port]):
        if args[0] == "server":
            cmd = [args[0], target, *args[1:], "--duration", "5"]
        else:
            cmd = [*args, target, "--duration", "5"]
        p = run_cli(*cmd)
        err = assert_one_line_error(p, code=1)
        assert f"spike log {target}: {why}" in err, err
        assert not p.stdout.strip() or "Summary" not in p.stdout


def test_spike_log_fifo_without_reader_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "spikes"
    os.mkfifo(fifo)
    p = run_cli("client", "127.0.0.1", "5", str(fifo), "--duration", "5", timeout=20)
    assert "a FIFO that nobody reads" in assert_one_line_error(p, code=1)


def test_spike_log_fifo_with_a_reader_works(tmp_path: Path, echo_port: int) -> None:
    fifo = tmp_path / "spikes"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    p = run_cli("client", "127.0.0.1", "5", str(fifo), "-p", str(echo_port), "--duration", "1")
    assert p.returncode == 0, p.stderr
    out, _ = reader.communicate(timeout=10)
    assert out.splitlines()[0].endswith(",18446744073709551615")


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tiny tmpfs")
def test_a_full_disk_mid_run_names_the_log_and_keeps_the_summary(echo_port: int) -> None:
    """The log's disk fills up mid-run: the run goes on, its summary is
    printed, and the last line names the log and what is missing."""
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", d], check=True)
        try:
            # Fill it, leaving the log an empty file: the marker line fails.
            fd = os.open(Path(d) / "filler", os.O_WRONLY | os.O_CREAT)
            try:
                with pytest.raises(OSError):
                    while True:
                        os.write(fd, b"x" * 1024)
            finally:
                os.close(fd)
            log = Path(d) / "spike.log"
            p = run_cli(
                "client", "127.0.0.1", "5", str(log), "-p", str(echo_port), "--duration", "1.5"
            )
        finally:
            subprocess.run(["umount", d], check=True)
    assert p.returncode == 1
    assert "Summary: sent" in p.stdout and "Total downtime" in p.stdout
    err = assert_one_line_error(p)
    assert f"spike log {log}: No space left on device" in err, err


class PanicException(BaseException):
    """Stands for pyo3's: a panic in the core reaches Python as this, a
    BaseException."""


@pytest.mark.parametrize("exc", [RuntimeError("boom"), PanicException("boom")])
def test_a_bug_is_one_line_with_its_own_exit_code(
    exc: BaseException, monkeypatch: pytest.MonkeyPatch
) -> None:
    import migmon.cli.mm_dirty as cmd

    def broken(*a: object, **k: object) -> None:
        raise exc

    monkeypatch.setattr(cmd, "make_config", broken)
    monkeypatch.delenv("MIGMON_TRACEBACK", raising=False)
    r = cli("mm_dirty", "-m", "32", "--duration", "1")
    assert r.returncode == 70
    assert r.stderr.startswith(f"mig_mon: internal error: {type(exc).__name__}: boom")
    assert len(r.stderr.splitlines()) == 1
    monkeypatch.setenv("MIGMON_TRACEBACK", "1")
    with pytest.raises(type(exc)):
        cli("mm_dirty", "-m", "32", "--duration", "1")
