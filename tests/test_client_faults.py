"""The client knows its own faults: a stall of its own is not network
downtime, a first reply gap of zero is no baseline, an outage still open
at the end counts, and the verdict flag says which outage broke a limit."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

import migmon
from conftest import (
    json_lines,
    popen_cli,
    stop_for,
)
from migmon import Prober

# ---- the client knows its own faults -------------------------------------------


def test_a_first_reply_gap_of_zero_does_not_make_every_probe_a_spike() -> None:
    # An echo server that holds the first reply and sends it with the
    # second: the first two replies arrive together (a gap of 0 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        held = None
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(256)
            except TimeoutError:
                continue
            if held is None and struct.unpack("<Q", data[8:16])[0] == 0:
                held = data
                continue
            if held is not None:
                sock.sendto(held, peer)
                held = b""
            sock.sendto(data, peer)

    th = threading.Thread(target=serve)
    th.start()
    try:
        r = migmon.probe("127.0.0.1", 5, port=sock.getsockname()[1], count=120)
    finally:
        stop.set()
        th.join()
        sock.close()
    assert r.received == 120
    assert r.threshold_ms is not None and r.threshold_ms >= 10.0, r.threshold_ms
    # The bug made every one of the 120 probes a spike; a busy machine may
    # still delay a reply or two (this echo server is a Python thread).
    assert len(r.events) <= 3, [e.gap_ms for e in r.events]


def _client(port: int, interval_ms: str, duration_s: str, *more: str) -> subprocess.Popen[str]:
    """``mig_mon client`` against the local echo server, with --json."""
    args = ("-p", str(port), "--duration", duration_s, "--json", *more)
    return popen_cli("client", "127.0.0.1", interval_ms, *args)


def test_a_stalled_client_says_the_gap_is_its_own(
    echo_proc: tuple[subprocess.Popen[str], int],
) -> None:
    _, port = echo_proc
    p = _client(port, "5", "3")
    time.sleep(1.2)
    stopped_at = time.time()
    stop_for(p.pid, 0.08)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    objs = json_lines(out)
    summary = objs[-1]
    events = [o for o in objs if o["type"] == "event"]
    # The gap around the stop (a busy machine may add others of its own).
    around = [
        e
        for e in events
        if e["start_unix_s"] - 0.005 <= stopped_at <= e["start_unix_s"] + e["gap_ms"] / 1e3
    ]
    assert len(around) == 1, events
    # The server answered every probe it got; the gap is the client's.
    assert around[0]["client_stall_ms"] >= 0.5 * around[0]["gap_ms"], around[0]
    assert around[0]["gap_ms"] >= 60, around[0]
    assert summary["client_stalled_events"] >= 1
    assert "the client itself stalled" in err


def test_an_outage_still_open_at_the_end_counts(
    echo_proc: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = echo_proc
    p = _client(port, "10", "2")
    time.sleep(1.3)
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        out, err = p.communicate(timeout=20)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert p.returncode == 0, err
    summary = json_lines(out)[-1]
    (ev,) = summary["events"]
    assert ev["open"] is True
    # Stopped ~0.7 s before the end: the open gap runs to the end.
    assert 450 <= ev["gap_ms"] <= 1500, ev
    assert summary["total_downtime_ms"] == pytest.approx(ev["blackout_ms"])
    assert "still going on at the end" in err
    assert "counted in the total" in err


@pytest.mark.parametrize(("limit", "code"), [("100", 5), ("2000", 0)])
def test_max_downtime_ms_gives_a_verdict(
    echo_proc: tuple[subprocess.Popen[str], int], limit: str, code: int
) -> None:
    """--max-downtime-ms: exit 5 and a line naming the outage that broke it
    (the echo server stopped for 300 ms), exit 0 when every outage kept to it."""
    proc, port = echo_proc
    p = _client(port, "10", "3", "--max-downtime-ms", limit)
    time.sleep(1.2)
    stop_for(proc.pid, 0.3)
    out, err = p.communicate(timeout=20)
    assert p.returncode == code, err
    verdict = json_lines(out)[-1]
    assert verdict["type"] == "verdict" and verdict["broken"] is (code == 5)
    if code == 5:
        assert 250 <= verdict["blackout_ms"] <= 400, verdict
        assert f"downtime limit {limit} (ms): BROKEN by event" in err
    else:
        assert f"downtime limit {limit} (ms): kept by every outage" in err


def test_outage_over_in_the_api(echo_proc: tuple[subprocess.Popen[str], int]) -> None:
    import migmon

    proc, port = echo_proc
    with Prober(server="127.0.0.1", interval_ms=10, port=port) as p:
        time.sleep(1.0)
        stop_for(proc.pid, 0.25)
        time.sleep(0.5)
        r = p.stop()
    e = migmon.outage_over(r, 100)
    assert e is not None and e.blackout_ms > 200
    assert migmon.outage_over(r, 5000) is None
