"""``mig_mon vm``: every mode on loopback, the wire format checked by
scripted peers in both roles, the extension against a peer that does not
know it, faults that must cost only their own connection, a shaped link
between network namespaces, and bad input."""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import migmon
from conftest import (
    MIG_MON,
    assert_one_line_error,
    cli,
    cli_server,
    free_port,
    json_lines,
    popen_cli,
    run_cli,
    veth_pair,
    wait_tcp,
)
from migmon import VmDestination

HDR = struct.Struct("<QQ")
PAGE = 4096


@pytest.fixture
def dst_proc() -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A real ``mig_mon vm -d`` with JSON output."""
    port = free_port()
    args = ("vm", "-d", "-p", str(port), "-S", "4", "--json", "--interval", "0.5")
    with cli_server(*args, ready=lambda: wait_tcp(port)) as proc:
        yield proc, port


def read_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


# ---- every mode, end to end --------------------------------------------------

MODES = [
    ["-t", "precopy"],
    ["-t", "postcopy"],
    ["-t", "precopy", "-t", "postcopy"],
    ["-t", "precopy", "--channels", "3"],
    ["-t", "precopy", "-t", "postcopy", "--preempt"],
    ["-t", "precopy", "-t", "postcopy", "--preempt", "--return-path", "main"],
    ["-t", "precopy", "-t", "postcopy", "--channels", "2", "--preempt"],
]


@pytest.mark.parametrize("mode", MODES, ids=" ".join)
def test_modes_on_loopback(dst_proc: tuple[subprocess.Popen[str], int], mode: list[str]) -> None:
    proc, port = dst_proc
    p = run_cli("vm", "-s", "-H", "127.0.0.1", "-p", str(port), "-S", "4", *mode, "--duration", "2")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "Start emulation of src VM."
    assert lines[1] == "Connected to dst VM 127.0.0.1."
    speed = [x for x in lines if x.startswith("Speed: ")]
    if "precopy" in mode:
        assert "Starting PRECOPY streaming test..." in lines
        assert len(speed) == 2
        for x in speed:
            assert re.match(r"Speed: \d+ \(MB/s\)(, |$)", x), x
            assert int(x.split()[1]) > 5
        if "--channels" in mode:
            n = int(mode[mode.index("--channels") + 1])
            assert all(
                len(x.split("channels: ")[1].split(" (MB/s)")[0].split()) == n for x in speed
            )
    else:
        assert not speed
    assert "Dropped connection to dst VM 127.0.0.1." in lines
    assert "end: duration reached" in lines[-1]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    text = err  # with --json the text goes to stderr
    assert "Start emulation of dst VM." in text
    assert "Connected from src VM 127.0.0.1." in text
    objs = json_lines(out)
    (session,) = [o for o in objs if o["type"] == "session"]
    assert session["bytes"] > 0
    if "postcopy" in mode:
        assert "Starting POSTCOPY request-response test..." in text
        lat = [x for x in text.splitlines() if x.startswith("Latency: ")]
        assert lat, text
        for x in lat:
            assert re.match(r"Latency: average \d+ \(us\), max: \d+ \(us\)(, |$)", x), x
        assert session["latency"]["count"] > 10
        assert session["preempt"] == ("--preempt" in mode)
    if "--channels" in mode:
        assert session["channels"] == int(mode[mode.index("--channels") + 1])


def test_max_bandwidth_is_smooth_and_met(dst_proc: tuple[subprocess.Popen[str], int]) -> None:
    _, port = dst_proc
    p = run_cli(
        "vm", "-s", "-H", "localhost", "-p", str(port), "-S", "4", "--max-bandwidth", "128",
        "--duration", "3", "--interval", "0.5", "--json",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    rates = [o["rate_mb_s"] for o in json_lines(p.stdout) if o["type"] == "sample"]
    assert len(rates) == 6
    assert all(110 < r < 140 for r in rates), rates


def test_ipv6_and_api_background_samples() -> None:
    with VmDestination(bind="::1", port=0, vm_size_gb=2, interval_s=0.25) as d:
        with migmon.VmSource(
            host="::1", port=d.port, vm_size_gb=2, postcopy=True, interval_s=0.25, duration_s=1.5
        ) as src:
            time.sleep(0.8)
            early = src.drain()
            assert len(early) >= 2 and all(s.rate_mb_s > 0 for s in early)
            while not src.done:
                time.sleep(0.05)
            summary = src.stop()
        assert summary.requests > 0 and summary.peak_mb_s >= summary.rate_mb_s * 0.5
        time.sleep(0.3)
        msgs = d.drain()
        kinds = {type(m).__name__ for m in msgs}
        assert {"VmConnected", "VmPostcopy", "VmDstSample", "VmSessionSummary"} <= kinds, kinds
        (sess,) = [m for m in msgs if isinstance(m, migmon.VmSessionSummary)]
        assert sess.latency.count > 0 and sess.latency.p99_ns >= sess.latency.p50_ns


# ---- scripted peers check the bytes on the wire --------------------------------


def test_our_source_against_a_scripted_destination() -> None:
    """Plays the original destination: reads our source's bytes and checks
    them against the documented format, then requests a page."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]
    result: dict[str, object] = {}

    def peer() -> None:
        conn, _ = lsock.accept()
        with conn:
            magic, arg = HDR.unpack(read_exact(conn, 16))
            result["first"] = (magic, arg)
            pages = []
            for _ in range(50):
                magic, idx = HDR.unpack(read_exact(conn, 16))
                assert magic == 0x123
                assert read_exact(conn, PAGE) == bytes(PAGE)
                pages.append(idx)
            result["pages"] = pages
            conn.sendall(HDR.pack(0x124, 777))
            # The stream goes on page after page (wrapping at the VM size);
            # the answer is the one page out of that sequence.
            expected = 50
            for _ in range(1_000_000):
                magic, idx = HDR.unpack(read_exact(conn, 16))
                assert magic == 0x123
                read_exact(conn, PAGE)
                if idx == expected % (1 << 18):
                    expected += 1
                    continue
                result["answered"] = idx
                break

    t = threading.Thread(target=peer)
    t.start()
    s = migmon.vm_source("127.0.0.1", port=port, vm_size_gb=1, postcopy=True, duration_s=1.0)
    t.join(10)
    lsock.close()
    assert result["first"] == (0x125, 0)  # the postcopy handshake comes first
    assert result["pages"] == list(range(50))
    assert result.get("answered") == 777
    assert s.requests == 1


def test_our_destination_against_a_scripted_source(
    dst_proc: tuple[subprocess.Popen[str], int],
) -> None:
    """Plays the original source: handshake, a few pages, then answers the
    destination's page requests; checks every request's bytes."""
    proc, port = dst_proc
    vm_pages = 4 << 18
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(HDR.pack(0x125, 0))
        for i in range(10):
            c.sendall(HDR.pack(0x123, i) + bytes(PAGE))
        for _ in range(200):
            magic, idx = HDR.unpack(read_exact(c, 16))
            assert magic == 0x124 and 0 <= idx < vm_pages
            c.sendall(HDR.pack(0x123, idx) + bytes(PAGE))
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=15)
    (session,) = [o for o in json_lines(out) if o["type"] == "session"]
    assert session["latency"]["count"] >= 199
    assert session["bytes"] == 16 + 210 * (16 + PAGE) or session["bytes"] >= 16 + 209 * (16 + PAGE)


def test_extension_against_a_destination_that_does_not_know_it() -> None:
    """An original destination closes the connection on an unknown magic;
    our source must say so clearly instead of hanging."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]

    def original_dst() -> None:
        conn, _ = lsock.accept()
        with conn:
            magic, _ = HDR.unpack(read_exact(conn, 16))
            assert magic not in (0x123, 0x125)  # "magic error", then close

    t = threading.Thread(target=original_dst)
    t.start()
    p = run_cli("vm", "-s", "-H", "127.0.0.1", "-p", str(port), "--channels", "2", timeout=30)
    t.join(10)
    lsock.close()
    err = assert_one_line_error(p, code=1)
    assert "does not know multifd channels or preempt" in err


# ---- faults cost only their own connection -------------------------------------


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_faults_do_not_take_the_destination_down(
    dst_proc: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = dst_proc
    # Warm up: one normal session, then count the destination's open files.
    assert migmon.vm_source("127.0.0.1", port=port, vm_size_gb=4, duration_s=0.5).bytes > 0
    time.sleep(0.5)
    fds_before = open_fds(proc.pid)

    # A source killed mid-stream.
    victim = popen_cli("vm", "-s", "-H", "127.0.0.1", "-p", str(port), "-S", "4",
                       "-t", "precopy", "-t", "postcopy")  # fmt: skip
    time.sleep(1.0)
    victim.kill()
    victim.communicate(timeout=10)
    # Garbage, a bad magic, an index past the VM size, a truncated page.
    faults = [
        os.urandom(5000),
        HDR.pack(0xBAD, 0),
        HDR.pack(0x123, 1 << 40) + bytes(PAGE),
        HDR.pack(0x123, 1) + bytes(100),
        HDR.pack(0x128, 12345) + HDR.pack(1, 0),  # channel of an unknown session
        b"",
    ]
    for data in faults:
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(data)
    # 100 connect/disconnect cycles.
    for _ in range(100):
        socket.create_connection(("127.0.0.1", port)).close()
    time.sleep(1.0)

    # A fresh source is still served, and nothing leaked.
    s = migmon.vm_source("127.0.0.1", port=port, vm_size_gb=4, postcopy=True, duration_s=1.0)
    assert s.bytes > 0 and s.requests > 0
    time.sleep(0.5)
    assert open_fds(proc.pid) <= fds_before
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    reasons = " | ".join(
        o.get("reason", "") for o in json_lines(out) if o["type"] in ("session", "rejected")
    )
    assert "magic error: 0xbad" in reasons
    assert "page index overflow" in reasons
    assert "unknown session" in reasons


# ---- a shaped link between two network namespaces ---------------------------------

NS_A, NS_B = "mmvmA", "mmvmB"
ADDR_A, ADDR_B = "10.203.78.1", "10.203.78.2"


@pytest.fixture
def shaped_link() -> Iterator[float]:
    """Namespaces A (source) and B (destination) joined by a veth pair with
    jumbo frames; A's egress shaped by tbf. Yields the rate in MiB/s."""
    rate_mbit = 400
    with veth_pair((NS_A, "mmvmA", ADDR_A), (NS_B, "mmvmB", ADDR_B), mtu=9000):
        subprocess.run(
            ["ip", "netns", "exec", NS_A, "tc", "qdisc", "add", "dev", "mmvmA", "root", "tbf",
             "rate", f"{rate_mbit}mbit", "burst", "256kb", "latency", "100ms"],
            check=True, capture_output=True,
        )  # fmt: skip
        yield rate_mbit * 1e6 / 8 / (1 << 20)


def test_precopy_bandwidth_on_a_shaped_link(shaped_link: float) -> None:
    port = 24777
    dst = subprocess.Popen(
        ["ip", "netns", "exec", NS_B, *MIG_MON, "vm", "-d", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.5)
        p = subprocess.run(
            ["ip", "netns", "exec", NS_A, *MIG_MON, "vm", "-s", "-H", ADDR_B, "-p", str(port),
             "--duration", "6", "--json"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        dst.send_signal(signal.SIGTERM)
        dst.communicate(timeout=15)
    assert p.returncode == 0, p.stderr
    rates = [o["rate_mb_s"] for o in json_lines(p.stdout) if o["type"] == "sample"]
    steady = rates[1:]  # the first second holds the bucket's burst and slow start
    avg = sum(steady) / len(steady)
    # Goodput of a 9000-byte MTU is 99.3% of the wire rate.
    assert abs(avg - shaped_link * 0.993) <= 0.05 * shaped_link, (avg, shaped_link, rates)


# ---- bad input ------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["vm"],
        ["vm", "-s"],
        ["vm", "-s", "-d"],
        ["vm", "-d", "-t", "precopy"],
        ["vm", "-s", "-H", "127.0.0.1", "-t", "bogus"],
        ["vm", "-s", "-H", "127.0.0.1", "-S", "0"],
        ["vm", "-d", "--channels", "2"],
        ["vm", "-s", "-H", "127.0.0.1", "--bind", "::"],
        ["vm", "-s", "-H", "127.0.0.1", "-t", "postcopy", "--channels", "2"],
        ["vm", "-s", "-H", "127.0.0.1", "--preempt"],
        ["vm", "-s", "-H", "127.0.0.1", "--max-bandwidth", "0"],
        ["vm", "-s", "-H", "127.0.0.1", "--return-path", "side"],
        ["vm", "-s", "-H", "127.0.0.1", "-p", "0"],
        ["vm", "-s", "-H", "127.0.0.1", "--connect-timeout", "0"],
        ["vm", "-d", "--connect-timeout", "3"],
    ],
    ids=" ".join,
)
def test_bad_usage(args: list[str]) -> None:
    assert_one_line_error(cli(*args), code=2)


def test_unreachable_destination() -> None:
    port = free_port()
    err = assert_one_line_error(run_cli("vm", "-s", "-H", "127.0.0.1", "-p", str(port)), code=1)
    assert "cannot connect" in err
    assert_one_line_error(run_cli("vm", "-s", "-H", "no.such.host.invalid"))


def test_destination_port_in_use(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET6) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", 0))
        s.listen(1)
        err = assert_one_line_error(run_cli("vm", "-d", "-p", str(s.getsockname()[1])), code=1)
    assert "in use" in err


def test_sources_at_once_each_get_their_session() -> None:
    with VmDestination(bind="127.0.0.1", port=0, vm_size_gb=2) as d:
        a = migmon.VmSource(
            host="127.0.0.1", port=d.port, vm_size_gb=2, postcopy=True, duration_s=1.5
        )
        b = migmon.VmSource(
            host="127.0.0.1",
            port=d.port,
            vm_size_gb=2,
            precopy=False,
            postcopy=True,
            duration_s=1.5,
        )
        while not (a.done and b.done):
            time.sleep(0.05)
        sa, sb = a.stop(), b.stop()
        time.sleep(0.3)
        sessions = d.stop()
    assert sa.requests > 0 and sb.requests > 0
    assert len(sessions) == 2
    assert all(s.latency.count > 0 for s in sessions)


def test_source_whose_destination_vanishes_fails_clearly() -> None:
    port = free_port()
    dst = popen_cli("vm", "-d", "-p", str(port))
    wait_tcp(port)
    src = popen_cli(
        "vm", "-s", "-H", "127.0.0.1", "-p", str(port), "-t", "precopy", "-t", "postcopy"
    )
    time.sleep(1.5)
    dst.kill()
    dst.communicate(timeout=10)
    out, err = src.communicate(timeout=30)
    assert src.returncode == 1, (out, err)
    assert "Summary: sent" in out  # the summary is still printed
    assert err.strip().splitlines()[-1].startswith("mig_mon: the run ended early: ")
    assert "Traceback" not in err
