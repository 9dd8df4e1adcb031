"""Guest network downtime: the four commands on loopback, both directions of
compatibility with scripted peers that stand in for the original, outage
accuracy against known blackouts, hostile datagrams and bad input."""

from __future__ import annotations

import os
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
    free_port,
    ip,
    json_lines,
    popen_cli,
    run_cli,
    stop_for,
    veth_pair,
    wait_udp_echo,
)
from migmon import EchoServer, OneWayServer, Prober

# ---- the four commands on loopback ------------------------------------------


@pytest.mark.parametrize("name", ["client", "client_rr"])
def test_round_trip_client_and_spike_log(
    echo_proc: tuple[subprocess.Popen[str], int], name: str, tmp_path: Path
) -> None:
    _, port = echo_proc
    log = tmp_path / "spike.log"
    p = run_cli(name, "127.0.0.1", "10", str(log), "-p", str(port), "--count", "100")
    assert p.returncode == 0, p.stderr
    assert "1st and 2nd packet latency: " in p.stdout
    assert "Setting spike throttle to: " in p.stdout
    assert "Summary: sent 100, received 100, lost 0 (0.00%)" in p.stdout
    # Absolute deadlines: 100 probes at 10 ms take 1 s (plus the last
    # reply's grace), not 100 x (10 ms + overhead).
    took = float(p.stdout.split("Summary: sent 100")[1].split(" in ")[1].split(" s")[0])
    assert 0.98 <= took <= 1.3, took
    assert "max_delay: " in p.stdout
    first = log.read_text().splitlines()[0].split(",")
    assert abs(int(first[0]) - time.time()) < 60
    assert first[1] == "18446744073709551615"


def test_server_rr_summary_on_sigterm() -> None:
    port = free_port(socket.SOCK_DGRAM)
    proc = popen_cli("server_rr", "-p", str(port), "--json")
    wait_udp_echo(port)
    r = migmon.probe("127.0.0.1", 5, port=port, count=40)
    assert (r.sent, r.received) == (40, 40)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    summary = json_lines(out)[-1]
    assert summary["type"] == "summary"
    assert summary["probes"] == 40 and summary["packets"] >= 41 and summary["clients"] >= 1
    assert "listening on UDP port" in err


def test_one_way_server_and_client(tmp_path: Path) -> None:
    port = free_port(socket.SOCK_DGRAM)
    log = tmp_path / "oneway.log"
    srv = popen_cli("server", str(log), "-p", str(port), "--json", "--duration", "6")
    time.sleep(1.0)
    c = run_cli("client", "127.0.0.1", "20", "-p", str(port), "--one-way", "--count", "50")
    assert c.returncode == 0, c.stderr
    assert "Summary: sent 50" in c.stdout and "(one way)" in c.stdout
    out, err = srv.communicate(timeout=30)
    assert srv.returncode == 0, err
    objs = json_lines(out)
    summary = objs[-1]
    (client,) = summary["clients"]
    assert client["packets"] == 50 and client["probes"] == 50 and client["lost"] == 0
    assert any(o["type"] == "baseline" for o in objs)
    assert log.read_text().splitlines()[0].endswith(",18446744073709551615")


def test_round_trip_client_warns_when_peer_never_replies() -> None:
    with OneWayServer(bind="127.0.0.1", port=0) as srv:
        p = run_cli("client", "127.0.0.1", "50", "-p", str(srv.port), "--duration", "4")
    # A run that heard nothing has an exit code of its own (the README's table).
    assert p.returncode == 3, p.stderr
    assert "warning: no reply from 127.0.0.1" in p.stdout
    assert "still trying: timeout: nothing came back" in p.stdout
    assert "--one-way" in p.stdout
    assert p.stdout.splitlines()[-1].startswith("Total downtime")  # the summary came first
    err = p.stderr.strip()
    assert err.startswith("mig_mon: no reply at all from 127.0.0.1 port"), err
    assert len(err.splitlines()) == 1


def test_client_says_when_nothing_listens() -> None:
    port = free_port(socket.SOCK_DGRAM)
    p = run_cli("client", "127.0.0.1", "20", "-p", str(port), "--duration", "3.5")
    assert p.returncode == 3, p.stderr
    assert "still trying: nothing is listening there (connection refused" in p.stdout
    assert "nothing is listening there (connection refused" in p.stderr


def test_client_says_when_something_else_answers() -> None:
    """A peer that answers with datagrams that are not our probes (wrong
    magic) is told apart from silence and from a closed port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def answer_garbage() -> None:
        while not stop.is_set():
            try:
                _, peer = sock.recvfrom(2048)
            except TimeoutError:
                continue
            sock.sendto(b"not a mig_mon probe", peer)

    t = threading.Thread(target=answer_garbage, daemon=True)
    t.start()
    try:
        p = run_cli(
            "client", "127.0.0.1", "50", "-p", str(sock.getsockname()[1]), "--duration", "3.5"
        )
    finally:
        stop.set()
        t.join()
        sock.close()
    assert p.returncode == 3, p.stderr
    assert "still trying: wrong magic:" in p.stdout
    assert "wrong magic:" in p.stderr and "not mig_mon probes" in p.stderr


def test_client_keeps_trying_and_says_when_replies_start() -> None:
    """A client started before its server keeps probing; when the server
    comes up, it says so and measures as usual."""
    port = free_port(socket.SOCK_DGRAM)
    client = popen_cli("client", "127.0.0.1", "50", "-p", str(port), "--duration", "6")
    time.sleep(3.8)
    with EchoServer(bind="127.0.0.1", port=port):
        out, err = client.communicate(timeout=30)
    assert client.returncode == 0, err
    assert "warning: no reply from 127.0.0.1" in out
    started = [x for x in out.splitlines() if "replies from 127.0.0.1" in x]
    assert len(started) == 1 and "started" in started[0], out
    assert "Setting spike throttle to" in out


# ---- scripted peers: both directions of compatibility -----------------------


def test_original_4_byte_client_against_our_echo_server() -> None:
    with (
        EchoServer(bind="127.0.0.1", port=0) as srv,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s,
    ):
        s.settimeout(2)
        s.connect(("127.0.0.1", srv.port))
        for payload in [b"echo", b"", b"\xff" * 1400, os.urandom(65507), b"MGMP\x01"]:
            s.send(payload)
            assert s.recv(70000) == payload
        st = srv.stop()
    assert st.packets == 5 and st.probes == 0 and st.clients == 1


class ScriptedEcho:
    """A plain-socket echo server standing in for the original's
    ``server_rr``; it keeps every datagram it got."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.got: list[bytes] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping:
            try:
                data, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            self.got.append(data)
            self.sock.sendto(data, addr)

    def close(self) -> None:
        self.stopping = True
        self.thread.join()
        self.sock.close()


def test_our_client_wire_format_against_a_scripted_echo_server() -> None:
    peer = ScriptedEcho()
    try:
        r = migmon.probe("127.0.0.1", 5, port=peer.port, count=50)
    finally:
        peer.close()
    assert (r.sent, r.received, r.lost) == (50, 50, 0)
    assert len(peer.got) == 50
    for seq, d in enumerate(peer.got):
        assert len(d) == 24
        magic, version, flags, s, sent_ns = struct.unpack("<4sHHQQ", d)
        assert (magic, version, flags, s) == (b"MGMP", 1, 0, seq)
        assert sent_ns > 0
    assert r.rtt is not None and r.rtt.count == 50


def test_original_one_way_client_against_our_server() -> None:
    with (
        OneWayServer(bind="127.0.0.1", port=0) as srv,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s,
    ):
        for i in range(40):
            if i == 20:
                time.sleep(0.3)  # a 300 ms outage seen by the guest
            s.sendto(b"echo", ("127.0.0.1", srv.port))
            time.sleep(0.01)
        # Hostile datagrams do not take it down.
        for junk in [b"", os.urandom(65507), b"MGMP" + os.urandom(40)]:
            s.sendto(junk, ("127.0.0.1", srv.port))
        time.sleep(0.1)
        (c,) = srv.stop().clients
    assert c.packets == 43
    assert len(c.events) == 1
    assert 280 <= c.events[0].gap_ms <= 400


def test_servers_survive_garbage_then_serve_a_fresh_client() -> None:
    with (
        EchoServer(bind="127.0.0.1", port=0) as srv,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s,
    ):
        for _ in range(200):
            s.sendto(
                os.urandom(int.from_bytes(os.urandom(2), "little") % 2000), ("127.0.0.1", srv.port)
            )
        r = migmon.probe("127.0.0.1", 2, port=srv.port, count=50)
        assert (r.sent, r.received) == (50, 50)


# ---- accuracy against known outages -----------------------------------------


@pytest.mark.parametrize(
    ("interval_ms", "threshold_ms"), [(10, None), (1, 50.0), (100, None)], ids=str
)
def test_sigstop_outage_is_one_accurate_event(
    echo_proc: tuple[subprocess.Popen[str], int], interval_ms: int, threshold_ms: float | None
) -> None:
    proc, port = echo_proc
    blackout_s = 0.3
    with Prober(
        server="127.0.0.1", interval_ms=interval_ms, port=port, threshold_ms=threshold_ms
    ) as p:
        time.sleep(max(1.0, 5 * interval_ms / 1000))
        stop_for(proc.pid, blackout_s)
        time.sleep(max(1.0, 5 * interval_ms / 1000))
        r = p.stop()
    events = r.events
    outages = [i for i, e in enumerate(events) if e.gap_ms > 150]
    assert len(outages) == 1, [(e.gap_ms, e.client_stall_ms) for e in events]
    # Any other gap must be one the client says is its own (its thread did
    # not run on a loaded machine): an unflagged one is a false outage.
    others = [e for i, e in enumerate(events) if i != outages[0]]
    assert all(e.client_stall_ms > 0 for e in others), [
        (e.gap_ms, e.client_stall_ms) for e in others
    ]
    e = events[outages[0]]
    # The estimate is good to one interval (its stated resolution) plus the
    # timing noise of a loaded machine: within 15 ms at fine intervals.
    tolerance_ms = 15.0 if interval_ms <= 15 else interval_ms + 15.0
    assert abs(e.blackout_ms - 300) <= tolerance_ms, e
    assert e.resolution_ms == pytest.approx(interval_ms)
    expected_missed = 300 / interval_ms
    assert abs(e.probes_missed - expected_missed) <= max(3, 0.15 * expected_missed), e
    assert r.lost == 0  # SIGSTOP queues the probes: late, not lost


NS_A, NS_B = "mmtestA", "mmtestB"
ADDR_A, ADDR_B = "10.203.77.1", "10.203.77.2"


@pytest.fixture
def netns_pair() -> Iterator[None]:
    """Two network namespaces joined by a veth pair; removed afterwards."""
    with veth_pair((NS_A, "mmvethA", ADDR_A), (NS_B, "mmvethB", ADDR_B)):
        yield


def test_link_down_between_namespaces(netns_pair: None) -> None:
    port = 23999
    srv = subprocess.Popen(
        ["ip", "netns", "exec", NS_B, *MIG_MON, "server_rr", "-p", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        argv = ["ip", "netns", "exec", NS_A, *MIG_MON, "client", ADDR_B, "10", "-p", str(port),
                "--duration", "4", "--json"]  # fmt: skip
        client = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        t0 = time.monotonic()
        ip("-n", NS_B, "link", "set", "mmvethB", "down")
        t1 = time.monotonic()
        time.sleep(0.3 - (t1 - t0))
        ip("-n", NS_B, "link", "set", "mmvethB", "up")
        down_ms = (time.monotonic() - t0) * 1000
        out, err = client.communicate(timeout=30)
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.communicate(timeout=10)
    assert client.returncode == 0, err
    summary = json_lines(out)[-1]
    events = summary["events"]
    assert len(events) == 1, events
    # The link flips take a few ms each; allow that plus the resolution.
    assert abs(events[0]["blackout_ms"] - down_ms) <= 25, (events[0], down_ms)
    assert abs(events[0]["probes_missed"] - down_ms / 10) <= 5, events[0]
    assert summary["lost"] >= 20  # dropped while down, not queued


# ---- the API -----------------------------------------------------------------


def test_api_background_prober_reports_events_while_running() -> None:
    with EchoServer(bind="127.0.0.1", port=0) as srv:
        with Prober(server="127.0.0.1", interval_ms=5, port=srv.port) as p:
            time.sleep(0.5)
            msgs = p.drain()
            assert any(isinstance(m, migmon.Baseline) for m in msgs)
            assert p.status.received > 50
            r = p.stop()
        assert r.sent >= r.received > 50
        assert r.send_jitter.count == r.sent


def test_probe_needs_an_end() -> None:
    with pytest.raises(ValueError):
        migmon.probe("127.0.0.1", 10)


# ---- bad input ---------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["client", "999.1.1.1"],
        ["client", "no.such.host.invalid"],
        ["client", "127.0.0.1", "0"],
        ["client", "127.0.0.1", "-5"],
        ["client", "127.0.0.1", "abc"],
        ["client", "127.0.0.1", "10", "-p", "0"],
        ["client", "127.0.0.1", "10", "-p", "70000"],
        ["client", "127.0.0.1", "10", "--count", "0"],
        ["client", "127.0.0.1", "10", "--threshold-ms", "0"],
        ["client"],
        ["server_rr", "--bind", "not-an-address.invalid"],
        ["server", "/tmp/x.log", "--duration", "-1"],
    ],
    ids=lambda a: " ".join(a),
)
def test_bad_input(args: list[str]) -> None:
    p = cli(*args)
    err = assert_one_line_error(p)
    assert p.returncode in (1, 2), err


def test_unwritable_spike_log() -> None:
    assert_one_line_error(run_cli("client", "127.0.0.1", "10", "/proc/nope/spike.log"), code=1)
    assert_one_line_error(run_cli("server", "/nonexistent-dir/spike.log"), code=1)


def test_port_in_use() -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", 0))
        port = s.getsockname()[1]
        err = assert_one_line_error(run_cli("server_rr", "-p", str(port)), code=1)
        assert "in use" in err
        err = assert_one_line_error(run_cli("server", "/tmp/x.log", "-p", str(port)), code=1)
        assert "in use" in err


def test_ipv6_and_dual_stack() -> None:
    with EchoServer(bind="::1", port=0) as srv:
        r = migmon.probe("::1", 5, port=srv.port, count=20)
        assert (r.sent, r.received) == (20, 20)
    # Default bind: IPv6 and IPv4 on one socket.
    with EchoServer(port=0) as srv:
        for host in ("127.0.0.1", "::1", "localhost"):
            r = migmon.probe(host, 5, port=srv.port, count=10)
            assert r.received == 10, host


def test_a_one_way_server_that_heard_no_one_still_sums_up(tmp_path: Path) -> None:
    port = free_port(socket.SOCK_DGRAM)
    p = run_cli("server", str(tmp_path / "s.log"), "-p", str(port), "--duration", "0.3")
    assert p.returncode == 0, p.stderr
    assert "Summary: no client heard" in p.stdout
