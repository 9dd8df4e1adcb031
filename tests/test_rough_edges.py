"""The third hostile pass (issue 22), its rough edges: low rates spread over
many threads or channels, and a reader that stops reading. Each failed
before its fix."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from conftest import MIG_MON


def test_many_threads_at_a_low_rate_keep_the_rate_and_stop_at_once() -> None:
    """1,024 threads at 1 MB/s: each dirties a page every 4 s. Their steps
    are spread over that time (all at once they dirtied 4 MB in the first
    second), and a stop does not wait for a thread's next step (a 2 s run
    of 512 such threads took 4 s)."""
    import json
    import time

    from conftest import popen_cli, run_cli, time_to_end

    t = time.monotonic()
    p = run_cli("mm_dirty", "-m", "64", "-T", "1024", "-r", "1", "--duration", "2", "--json")
    took = time.monotonic() - t
    assert p.returncode == 0, p.stderr
    objs = [json.loads(line) for line in p.stdout.splitlines()]
    summary = objs[-1]
    # 2 MB in 2 s, give or take one page a thread (4 MB): was 4+ MB.
    assert summary["bytes"] <= 3 * 2**20, summary["bytes"]
    assert took < 3.5, took
    q = popen_cli("mm_dirty", "-m", "64", "-T", "512", "-r", "1")
    time.sleep(1.5)
    stop_s, _, err = time_to_end(q, timeout=10)
    assert q.returncode == 0, err
    assert stop_s < 0.5, stop_s


def test_many_channels_under_a_low_cap_keep_to_it() -> None:
    """`--max-bandwidth 1 --channels 64`: 1 MB/s over all channels (each
    channel's first 512 KiB packet went at once: 16 MB/s)."""
    import socket

    from conftest import cli_server, free_port, json_lines, run_cli, wait_tcp

    port = free_port(socket.SOCK_STREAM)
    args = ("vm", "-d", "-p", str(port), "--bind", "127.0.0.1")
    with cli_server(*args, ready=lambda: wait_tcp(port)):
        p = run_cli(
            *("vm", "-s", "-H", "127.0.0.1", "-p", str(port), "--channels", "64"),
            *("--max-bandwidth", "1", "--duration", "3", "--json", "-q"),
        )
    assert p.returncode == 0, p.stderr
    summary = json_lines(p.stdout)[-1]
    assert summary["rate_mb_s"] <= 1.5, summary


def test_a_stalled_stdout_reader_does_not_keep_the_run_alive(tmp_path: Path) -> None:
    """Nobody reads stdout (a stalled pipe): once the pipe is full, SIGTERM
    still ends the run, 10 s after the pipe last took anything (the write
    blocked for ever, with signals ignored)."""
    import time

    argv = ["mm_dirty", "-m", "16", "-r", "10", "-L", "--json", "-q", "--interval", "0.02"]
    with open(tmp_path / "err", "w") as err_file:
        p = subprocess.Popen([*MIG_MON, *argv], stdout=subprocess.PIPE, stderr=err_file)
        try:
            time.sleep(6.0)  # 50 JSON lines (18 KB) a second: the 64 KiB pipe fills
            t = time.monotonic()
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=60)  # stdout never read
            took = time.monotonic() - t
        finally:
            p.kill()
            assert p.stdout is not None
            p.stdout.close()
    err = (tmp_path / "err").read_text()
    assert took < 20, took
    assert p.returncode == 1, err
    assert "mig_mon: the output was not read for 10 s (a stalled reader): exiting" in err
