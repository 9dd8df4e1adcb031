"""``--metrics``: the exposition of every long-running command, checked by
promtool, and a real Prometheus that scrapes a run with an outage and a
pause of known length induced (SIGSTOP of the echo server, of mm_dirty)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import assert_one_line_error, cli, free_port, json_lines, popen_cli, run_cli, stop_for
from migmon.metrics import MAX_SCRAPES_PER_S, parse_address

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "prometheus"
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (apt-get download)")
#: Runs Debian's prometheus or promtool (CI runs these: it is root).
PROMETHEUS = pytest.mark.prometheus


def scrape(port: int, accept: str = "") -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=5) as r:
        return str(r.read().decode())


def wait_metrics(port: int, limit: float = 10.0) -> str:
    """The first scrape that answers (the command is starting)."""
    end = time.monotonic() + limit
    while True:
        try:
            return scrape(port)
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


def value(text: str, name: str, **labels: str) -> float:
    """One sample's value from the Prometheus text format."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, _, v = line.rpartition(" ")
            if all(f'{k}="{w}"' in head for k, w in labels.items()):
                return float(v)
    raise AssertionError(f"no {name} {labels} in:\n{text}")


@pytest.fixture(scope="module")
def prometheus_bin() -> Path:
    """Debian's prometheus and promtool, unpacked for the tests."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "fetch-prometheus.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


@PROMETHEUS
@ROOT_ONLY
def test_the_example_config_and_rules_pass_promtool(prometheus_bin: Path) -> None:
    for what, f in (("config", "prometheus.yml"), ("rules", "migmon.rules.yml")):
        p = subprocess.run(
            [str(prometheus_bin / "promtool"), "check", what, str(EXAMPLES / f)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert p.returncode == 0, p.stdout + p.stderr


def test_address_forms() -> None:
    assert parse_address("9100") == ("", 9100)
    assert parse_address("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert parse_address("[::1]:0") == ("::1", 0)
    assert parse_address("localhost:9100") == ("localhost", 9100)


@pytest.mark.parametrize(
    ("where", "words"),
    [
        ("x", "expected [HOST:]PORT"),
        ("127.0.0.1:", "expected [HOST:]PORT"),
        ("1:2:3", "brackets"),
        ("70000", "between 0 and 65535"),
        ("256.0.0.1:9100", "--metrics 256.0.0.1:9100"),
    ],
)
def test_bad_address_is_one_line(where: str, words: str) -> None:
    msg = assert_one_line_error(cli("mm_dirty", "-m", "8", "--metrics", where, "--duration", "1"))
    assert words in msg


def test_port_in_use_is_one_line_before_any_measurement() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for args in (
            ["server_rr", "-p", str(free_port(socket.SOCK_DGRAM))],
            ["mm_dirty", "-m", "8"],
            ["client", "127.0.0.1", "10", "--count", "5"],
        ):
            p = run_cli(*args, "--metrics", f"127.0.0.1:{port}", "--duration", "1")
            msg = assert_one_line_error(p)
            assert f"--metrics 127.0.0.1:{port}: Address already in use" in msg
            assert p.stdout == "", p.stdout  # nothing measured, nothing printed


def test_vm_source_has_no_metrics() -> None:
    msg = assert_one_line_error(cli("vm", "-s", "-H", "127.0.0.1", "--metrics", "9100"), 2)
    assert "destination option" in msg


@pytest.fixture
def echo() -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    """server_rr with metrics: (process, UDP port, metrics port)."""
    udp, mport = free_port(socket.SOCK_DGRAM), free_port()
    p = popen_cli("server_rr", "-p", str(udp), "-q", "--metrics", f"127.0.0.1:{mport}")
    wait_metrics(mport)
    yield p, udp, mport
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=10)


@PROMETHEUS
@ROOT_ONLY
def test_every_command_passes_promtool(
    prometheus_bin: Path, echo: tuple[subprocess.Popen[str], int, int], tmp_path: Path
) -> None:
    _, udp, echo_port = echo
    ports = {name: free_port() for name in ("client", "server", "mm_dirty", "vm_dst")}
    one_way, vm = free_port(socket.SOCK_DGRAM), free_port()
    procs = [
        popen_cli("client", "127.0.0.1", "5", "-p", str(udp), "-q", "--duration", "20",
                  "--metrics", f"127.0.0.1:{ports['client']}"),
        popen_cli("server", str(tmp_path / "spike.log"), "-p", str(one_way), "-q",
                  "--duration", "20", "--metrics", f"127.0.0.1:{ports['server']}"),
        popen_cli("mm_dirty", "-m", "32", "-r", "20", "-q", "--duration", "20",
                  "--metrics", f"127.0.0.1:{ports['mm_dirty']}"),
        popen_cli("vm", "-d", "-p", str(vm), "-q", "--duration", "20",
                  "--metrics", f"127.0.0.1:{ports['vm_dst']}"),
    ]  # fmt: skip
    try:
        for port in ports.values():
            wait_metrics(port)
        senders = [
            popen_cli("client", "127.0.0.1", "5", "-p", str(one_way), "--one-way", "-q",
                      "--duration", "1.5"),
            popen_cli("vm", "-s", "-H", "127.0.0.1", "-p", str(vm), "-t", "precopy", "-t",
                      "postcopy", "--duration", "1.5", "-q"),
        ]  # fmt: skip
        for s in senders:
            _, err = s.communicate(timeout=30)
            assert s.returncode == 0, err
        time.sleep(1.2)  # a sample of mm_dirty and of the session
        texts = {name: scrape(port) for name, port in ports.items()}
        texts["server_rr"] = scrape(echo_port)
        for name, text in texts.items():
            check = subprocess.run(
                [str(prometheus_bin / "promtool"), "check", "metrics"],
                input=text,
                capture_output=True,
                text=True,
                check=False,
            )
            assert check.returncode == 0, (name, check.stdout, check.stderr)
            assert value(text, "migmon_info", role=name) == 1
            assert value(text, "migmon_process_cpu_seconds_total") > 0
            # The OpenMetrics form too, as Prometheus asks for it.
            om = scrape(ports.get(name, echo_port), "application/openmetrics-text; version=1.0.0")
            assert om.endswith("# EOF\n"), name
        assert value(texts["client"], "migmon_probes_received_total") > 0
        assert value(texts["server_rr"], "migmon_echo_probes_total") > 0
        assert value(texts["server"], "migmon_probes_received_total") > 200
        assert value(texts["mm_dirty"], "migmon_dirty_bytes_total") > 0
        assert value(texts["vm_dst"], "migmon_vm_sessions_ended_total", end="normal") == 1
        assert value(texts["vm_dst"], "migmon_vm_page_request_seconds_count") > 0
        assert value(texts["vm_dst"], "migmon_vm_received_bytes_total") > 0
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            _, err = p.communicate(timeout=30)
            assert "Traceback" not in err, err


def test_a_flood_of_scrapes_is_one_line_and_the_run_goes_on(
    echo: tuple[subprocess.Popen[str], int, int],
) -> None:
    _, udp, _ = echo
    mport = free_port()
    client = popen_cli("client", "127.0.0.1", "5", "-p", str(udp), "-q", "--json",
                       "--duration", "4", "--metrics", f"127.0.0.1:{mport}")  # fmt: skip
    wait_metrics(mport)
    codes: dict[int, int] = {}
    stop = time.monotonic() + 2.0

    def hammer() -> None:
        while time.monotonic() < stop:
            try:
                scrape(mport)
                code = 200
            except urllib.error.HTTPError as e:
                code = e.code
            except OSError:
                code = 0
            codes[code] = codes.get(code, 0) + 1

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out, err = client.communicate(timeout=30)
    assert client.returncode == 0, err
    refusals = [ln for ln in err.splitlines() if "scrapes a second" in ln]
    assert len(refusals) == 1, err
    assert codes.get(429, 0) > 0, codes
    # At most MAX_SCRAPES_PER_S answered in any second (and the first at once).
    assert codes.get(200, 0) <= 3 * MAX_SCRAPES_PER_S, codes
    summary = json_lines(out)[-1]
    assert summary["type"] == "summary" and summary["received"] == summary["sent"]


def test_a_scrape_while_the_run_ends(echo: tuple[subprocess.Popen[str], int, int]) -> None:
    """Scrapes all through the end (summary, linger, exit): each answered
    or refused cleanly, the final figures served during the linger."""
    _, udp, _ = echo
    mport = free_port()
    client = popen_cli("client", "127.0.0.1", "10", "-p", str(udp), "-q", "--count", "50",
                       "--metrics", f"127.0.0.1:{mport}", "--metrics-linger", "1")  # fmt: skip
    wait_metrics(mport)
    last = ""
    while client.poll() is None:
        with contextlib.suppress(OSError):
            last = scrape(mport)
        time.sleep(0.02)
    _, err = client.communicate()
    assert client.returncode == 0 and "Traceback" not in err, err
    # The linger's scrapes saw every probe.
    assert value(last, "migmon_probes_sent_total") == 50


def _promql(port: int, query: str) -> list[dict[str, object]]:
    q = urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?{q}", timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    result: list[dict[str, object]] = body["data"]["result"]
    return result


def _one(port: int, query: str) -> float:
    r = _promql(port, query)
    assert len(r) == 1, (query, r)
    v = r[0]["value"]
    assert isinstance(v, list)
    return float(v[1])


@PROMETHEUS
@ROOT_ONLY
def test_a_real_prometheus_sees_the_outage_and_the_pause(
    prometheus_bin: Path, echo: tuple[subprocess.Popen[str], int, int], tmp_path: Path
) -> None:
    server, udp, echo_port = echo
    client_port, dirty_port, prom_port = free_port(), free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{EXAMPLES / 'migmon.rules.yml'}']\n"
        "scrape_configs:\n"
        "  - job_name: migmon\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{client_port}', '127.0.0.1:{dirty_port}',"
        f" '127.0.0.1:{echo_port}']\n"
    )
    prom = subprocess.Popen(
        [str(prometheus_bin / "prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    interval_ms = 5.0
    # Stopped before Prometheus is asked, each keeps serving its final
    # figures for three scrapes.
    client = popen_cli("client", "127.0.0.1", str(interval_ms), "-p", str(udp), "-q",
                       "--json", "--metrics", f"127.0.0.1:{client_port}",
                       "--metrics-linger", "3")  # fmt: skip
    dirty = popen_cli("mm_dirty", "-m", "64", "-r", "50", "-q", "--json",
                      "--metrics", f"127.0.0.1:{dirty_port}", "--metrics-linger", "3")  # fmt: skip
    try:
        wait_metrics(client_port)
        wait_metrics(dirty_port)
        # Prometheus is up and has scraped all three.
        end = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                if len(_promql(prom_port, "up == 1")) == 3:
                    break
            assert time.monotonic() < end and prom.poll() is None, "prometheus never scraped"
            time.sleep(0.3)
        time.sleep(1.0)
        # The outage: the echo server stopped for a known time.
        stopped_server_s = stop_for(server.pid, 0.4)
        time.sleep(1.0)
        # The pause: mm_dirty stopped.
        stopped_dirty_s = stop_for(dirty.pid, 0.3)
        time.sleep(1.0)
        for p in (client, dirty):
            p.send_signal(signal.SIGINT)
        cout, cerr = client.communicate(timeout=30)
        dout, derr = dirty.communicate(timeout=60)
        last = "[1m]"
        outage_s = _one(prom_port, f"max_over_time(migmon_outage_longest_seconds{last})")
        latest_s = _one(prom_port, f"last_over_time(migmon_last_outage_seconds{last})")
        outages = _one(prom_port, f"last_over_time(migmon_outage_seconds_count{last})")
        stalls = _one(prom_port, f"last_over_time(migmon_client_stalls_total{last})")
        pause_s = _one(prom_port, f"max_over_time(migmon_pause_longest_seconds{last})")
        pauses = _one(prom_port, f"last_over_time(migmon_pause_seconds_count{last})")
        # The README's queries: the p99 outage, and a budget broken.
        p99 = _one(
            prom_port,
            "histogram_quantile(0.99, sum by (le) (increase(migmon_outage_seconds_bucket[1m])))",
        )
        broke = _promql(prom_port, "max_over_time(migmon_outage_longest_seconds[1m]) > 0.1")
        # The example rules: the 0.4 s outage broke the 0.3 s budget.
        fired = _promql(
            prom_port,
            'max_over_time(ALERTS{alertname="MigrationOutageOverBudget",alertstate="firing"}[1m])',
        )
        recorded = _one(prom_port, "max_over_time(migmon:last_outage_seconds[1m])")
    finally:
        for p in (client, dirty):
            if p.poll() is None:
                p.kill()
                p.communicate()
        prom.send_signal(signal.SIGTERM)
        prom.communicate(timeout=30)
    events = [o for o in json_lines(cout) if o.get("type") == "event"]
    dpauses = [o for o in json_lines(dout) if o.get("type") == "pause"]
    print(
        f"\nprometheus: outage {outage_s * 1e3:.1f} ms (SIGSTOP {stopped_server_s * 1e3:.1f}),"
        f" {outages:.0f} outage(s), {stalls:.0f} client stall(s), p99 {p99 * 1e3:.0f} ms; "
        f"pause {pause_s * 1e3:.1f} ms (SIGSTOP {stopped_dirty_s * 1e3:.1f}), {pauses:.0f} pause(s)"
        f"\nthe client's events (blackout, own stall, ms): "
        f"{[(e['blackout_ms'], e['client_stall_ms']) for e in events]}"
        f"\nmm_dirty's pauses (ms): {[p['length_ms'] for p in dpauses]}"
    )
    # What Prometheus stored is what the tools said: every event is an
    # outage or a stall of the client's own; the longest outage is the
    # induced one, its length within one probe interval (the blackout is
    # the gap less one interval; a loaded machine adds lateness: a margin).
    net = [max(0.0, e["blackout_ms"] - e["client_stall_ms"]) for e in events]
    real = [
        n for n, e in zip(net, events, strict=True)
        if not e["client_stall_ms"] or n > e["resolution_ms"]
    ]  # fmt: skip
    assert outages == len(real) >= 1 and stalls == len(events) - len(real), cerr
    assert abs(outage_s * 1e3 - max(real)) < 0.001
    assert abs(latest_s * 1e3 - real[-1]) < 0.001
    assert abs(outage_s - stopped_server_s) < (interval_ms + 25) / 1e3, events
    assert broke, "the expression found no outage over 100 ms"
    assert fired, "the example alert did not fire"
    assert recorded == outage_s
    assert 0.2 <= p99 <= 0.5  # the 0.4 s outage's bucket
    assert pauses == len(dpauses) >= 1, derr
    assert abs(pause_s * 1e3 - max(p["length_ms"] for p in dpauses)) < 0.001
    assert abs(pause_s - stopped_dirty_s) < (interval_ms + 25) / 1e3, dpauses


def _jitter_run(udp: int, scrape_hz: float) -> dict[str, float]:
    """A 1 ms client for 4 s with a scraper at ``scrape_hz`` (0: none):
    the send jitter's and the round trip's p99, us."""
    mport = free_port()
    client = popen_cli("client", "127.0.0.1", "1", "-p", str(udp), "-q", "--json",
                       "--duration", "4", "--metrics", f"127.0.0.1:{mport}")  # fmt: skip
    wait_metrics(mport)
    scraped = 0
    while scrape_hz and client.poll() is None:
        with contextlib.suppress(OSError):
            scrape(mport)
            scraped += 1
        time.sleep(1 / scrape_hz)
    out, err = client.communicate(timeout=30)
    assert client.returncode == 0, err
    s = json_lines(out)[-1]
    return {
        "jitter_p99_us": s["send_jitter"]["p99_ns"] / 1e3,
        "rtt_p99_us": s["rtt"]["p99_ns"] / 1e3,
        "scrapes": scraped,
    }


def test_scraping_does_not_disturb_the_probes(
    echo: tuple[subprocess.Popen[str], int, int],
) -> None:
    """The probe's send jitter with a scraper at 10 scrapes a second and
    without, alternated (the same machine's noise on both sides); only a
    generous bound is asserted, the figures are printed."""
    _, udp, _ = echo
    runs: dict[float, list[dict[str, float]]] = {0: [], 10: []}
    for _ in range(2):
        for hz in runs:
            runs[hz].append(_jitter_run(udp, hz))
    med = {hz: sorted(r["jitter_p99_us"] for r in rs)[len(rs) // 2] for hz, rs in runs.items()}
    print(f"\nsend jitter p99 (us) without scraping / with 10 scrapes a second: {runs}")
    assert all(r["scrapes"] >= 20 for r in runs[10])
    assert med[10] <= 3 * med[0] + 1000, med
