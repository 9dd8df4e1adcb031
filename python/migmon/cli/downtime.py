"""``server``, ``server_rr``, ``client`` and ``client_rr``: guest network
downtime measured with UDP probes.

The text keeps the original's lines (``listening on UDP port ...``, the
baseline lines, the live ``[now_ms] max_delay: X (ms), cur: Y (ms)``) and
its spike log (``epoch_seconds,delay_ms`` after a marker line). On a
terminal the live line updates in place; otherwise one line per second and
one per event. With ``--json``, stdout carries JSON Lines (config, baseline,
events as they happen, summary) and the text goes to stderr.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from migmon import (
    Baseline,
    DowntimeEvent,
    EchoServer,
    EchoServerConfig,
    NewClient,
    NoReply,
    OneWayServer,
    OneWayServerConfig,
    ProbeConfig,
    Prober,
    ProbeSummary,
    __version__,
)
from migmon.cli._common import (
    EXIT_FAILURE,
    EXIT_LIMIT,
    EXIT_NO_REPLY,
    EXIT_OK,
    Show,
    drive,
    fail_line,
    quiet_broken_pipe,
    say,
    verdict,
)
from migmon.cli._flags import Given, config_flags, make_config
from migmon.errors import ConfigError
from migmon.metrics import EchoMetrics, OneWayMetrics, ProbeMetrics, serving
from migmon.output import emit, emit_config, emit_json, print_summary, stamp

if TYPE_CHECKING:
    from migmon.switchover import QmpRecorder
from migmon.output.downtime import (
    SpikeLog,
    client_summary_lines,
    echo_summary_line,
    event_line,
    probe_summary_lines,
    status_line,
    wall_time,
)


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Live:
    """The in-place status line on a terminal, a line per second otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._last = 0.0
        self._dirty = False
        #: Wall-clock time of the first probe, while a client has warned
        #: that it hears nothing.
        self.silent_since: float | None = None

    def due(self) -> bool:
        period = 0.1 if self.tty else 1.0
        return time.monotonic() - self._last >= period

    def show(self, line: str) -> None:
        self._last = time.monotonic()
        if self.tty:
            self.out.write("\r\x1b[K" + stamp() + line)
            self.out.flush()
            self._dirty = True
        else:
            say(line, self.out)

    def line(self, text: str) -> None:
        """A line of its own (an event), not overwritten."""
        if self._dirty:
            self.out.write("\r\x1b[K")
            self._dirty = False
        say(text, self.out)

    def end(self) -> None:
        if self._dirty:
            self.out.write("\n")
            self.out.flush()
            self._dirty = False


@config_flags(ProbeConfig)
def client_command(
    given: Given,
    show: Show,
    spike_log: Annotated[
        str | None,
        typer.Argument(
            metavar="SPIKE_LOG",
            help="File for the spike log (epoch_seconds,delay_ms).",
            show_default="none",
        ),
    ] = None,
    qmp: Annotated[
        list[str] | None,
        typer.Option(
            "--qmp",
            metavar="MONITOR",
            help="Record QEMU's side too: the source's QMP monitor, then the destination's "
            "(unix:PATH or HOST:PORT); at the end, each migration's outage split into "
            "QEMU's phases (as 'mig_mon switchover').",
            show_default="none",
        ),
    ] = None,
    qmp_out: Annotated[
        Path,
        typer.Option("--qmp-out", metavar="FILE", help="Where --qmp's record goes (appended)."),
    ] = Path("qmp.jsonl"),
    max_downtime_ms: Annotated[
        float | None,
        typer.Option(
            "--max-downtime-ms",
            metavar="MS",
            min=0.0,
            help="A verdict for automation: exit 5 when an outage's blackout (less the "
            "client's own stall) is longer; the line after the summary names it.",
            show_default="none",
        ),
    ] = None,
) -> int:
    """Probe a UDP echo server ('server_rr', in the guest) every INTERVAL_MS
    and report the gaps in its replies: downtime events, loss, round trips.

    The original's 'client_rr'; with --one-way, its one-way 'client'.
    """
    cfg = make_config(ProbeConfig, given)
    server_ip, port, one_way = cfg.server, cfg.port, cfg.one_way
    out = show.out
    recorder = _qmp_recorder(qmp, qmp_out)
    events: list[DowntimeEvent] = []
    with quiet_broken_pipe(), serving(show.metrics, show.metrics_linger) as exporter:
        log = SpikeLog(spike_log)
        run = Prober(cfg)
        watch = exporter.attach(ProbeMetrics(run, f"{server_ip}:{port}")) if exporter else None
        if recorder is not None:
            recorder.start()
        mode = "one way" if one_way else "round trip"
        if show.json_out:
            emit_config("client", cfg, version=__version__, spike_log=spike_log)
        say(f"probing {server_ip} port {port} every {cfg.interval_ms:g} (ms), {mode}", out)
        live = _Live(out)
        target = f"{server_ip} port {port}"

        def on_message(m: Baseline | DowntimeEvent | NoReply) -> None:
            if recorder is not None and isinstance(m, DowntimeEvent):
                events.append(m)
            _client_message(m, live, log, show.json_out, target)

        def on_idle() -> None:
            if live.silent_since is not None and run.status.received:
                after = time.time() - live.silent_since
                live.line(f"replies from {target} started, {after:.1f} s after the first probe")
                live.silent_since = None
            if show.quiet or not live.due():
                return
            st = run.status
            if one_way:
                live.show(f"[{_now_ms()}] sent {st.sent} packets to server")
            else:
                # During an outage the current gap grows with the silence.
                cur = max(st.cur_gap_ms, st.since_last_reply_ms)
                live.show(status_line(_now_ms(), st.max_gap_ms, cur))

        try:
            summary = drive(run, on_message, on_idle, metrics=watch)
        finally:
            if recorder is not None:
                recorder.stop()
        live.end()
        log.close()
        print_summary(
            "client summary", summary.to_dict(), probe_summary_lines(summary), out, show.details
        )
        if show.json_out:
            emit(summary)
        if recorder is not None:
            _switchover_after(events, qmp_out, show.json_out, out)
        broken = _verdict(summary, max_downtime_ms, show.json_out, out)
    if log.error:
        fail_line(log.error)
        return EXIT_FAILURE
    if not one_way and summary.sent and not summary.received:
        fail_line(
            f"no reply at all from {target}: "
            + _silence(summary.refused, summary.foreign, summary.send_errors)
        )
        return EXIT_NO_REPLY
    return EXIT_LIMIT if broken else EXIT_OK


def _verdict(summary: ProbeSummary, limit: float | None, json_out: bool, out: TextIO) -> bool:
    """--max-downtime-ms: one line (and a JSON object) saying whether an
    outage broke the limit, and which; True when one did."""
    if limit is None:
        return False
    from migmon import outage_over

    return verdict(
        ("downtime", "max_downtime_ms", limit),
        "outage",
        outage_over(summary, limit),
        lambda e: (
            f"event {e.index} at {wall_time(e.start_unix_s)}, blackout "
            f"{e.blackout_ms:.1f} (ms)"
            + (
                f", of it the client's own stall {e.client_stall_ms:.1f}"
                if e.client_stall_ms
                else ""
            )
        ),
        {"event_index": "index", "blackout_ms": "blackout_ms"},
        (json_out, out),
    )


def _qmp_recorder(qmp: list[str] | None, out: Path) -> QmpRecorder | None:
    """The client's QMP recorder (--qmp), checked before any probe."""
    if not qmp:
        return None
    if len(qmp) > 2:
        raise ConfigError("--qmp: at most two monitors, the source's and the destination's")
    from migmon.switchover import QmpRecorder

    return QmpRecorder(out, dict(zip(("src", "dst"), qmp, strict=False)))


def _switchover_after(
    events: list[DowntimeEvent], record: Path, json_out: bool, out: TextIO
) -> None:
    """After the summary, each migration the record saw, split into its
    phases with this run's events (the same code as 'mig_mon switchover')."""
    from migmon.switchover import explain
    from migmon.switchover.report import text_lines
    from migmon.switchover.sources import Outage, SourceError, read_one

    try:
        inputs = read_one(record)
    except SourceError as e:
        fail_line(f"--qmp: {e}")
        return
    inputs.outages += [
        Outage(
            e.start_unix_s,
            e.start_unix_s + e.gap_ms / 1e3,
            e.resolution_ms,
            "client",
            e.client_stall_ms,
            e.open,
            e.peer,
        )
        for e in events
    ]
    inputs.kinds["client"] = "mig_mon client"
    sws = [s for s in explain(inputs) if s.stop_unix_s is not None]
    for line in text_lines(sws, inputs.kinds)[1:]:
        say(line, out)
    if json_out:
        for s in sws:
            emit_json({"type": "switchover", **s.to_dict()})


def _silence(refused: int, foreign: int, send_errors: int) -> str:
    """What a server's silence means, as far as the kernel and the wire told
    us: something else answering, a closed port, no route, or nothing."""
    if foreign:
        return (
            f"wrong magic: {foreign} replies that are not mig_mon probes "
            "(another service on that port, or not a mig_mon server_rr)"
        )
    if refused:
        return f"nothing is listening there (connection refused, {refused} times)"
    if send_errors:
        return f"the probes cannot be sent ({send_errors} send errors: no route, link down?)"
    return (
        "timeout: nothing came back (is it down, filtered, or a one-way 'mig_mon server'? "
        "use --one-way for that)"
    )


def _client_message(
    m: Baseline | DowntimeEvent | NoReply, live: _Live, log: SpikeLog, json_out: bool, host: str
) -> None:
    if isinstance(m, Baseline):
        live.line(f"1st and 2nd packet latency: {int(m.gap_ms)} (ms)")
        live.line(f"Setting spike throttle to: {int(m.threshold_ms)} (ms)")
        if log.path:
            live.line("Updating spike log initial timestamp")
        log.marker()
    elif isinstance(m, DowntimeEvent):
        log.spike(m.gap_ms)
        live.line(event_line(m))
    else:
        if live.silent_since is None:
            live.silent_since = time.time() - m.after_s
        why = _silence(m.refused, m.foreign, m.send_errors)
        live.line(f"warning: no reply from {host} after {m.after_s:.0f} s, still trying: {why}")
    if json_out:
        emit(m)


@config_flags(EchoServerConfig)
def server_rr_command(
    given: Given,
    show: Show,
) -> int:
    """UDP echo server, to run in the guest: every datagram goes back
    unchanged. Serves any number of clients; Ctrl-C or SIGTERM to stop."""
    cfg = make_config(EchoServerConfig, given)
    out = show.out
    with quiet_broken_pipe(), serving(show.metrics, show.metrics_linger) as exporter:
        srv = EchoServer(cfg)
        if exporter:
            exporter.attach(EchoMetrics(srv))
        say(f"listening on UDP port {srv.port}...", out)
        say("allowing multiple clients.", out)
        if show.json_out:
            emit_config("server_rr", cfg, version=__version__, address=srv.address)
        live = _Live(out)
        last = [0]

        def on_client(c: NewClient) -> None:
            live.line(f"new client '{c.peer}'")
            if show.json_out:
                emit(c)

        def on_idle() -> None:
            if not show.quiet and live.due():
                st = srv.stats()
                if st.packets != last[0]:
                    live.show(
                        f"[{_now_ms()}] responding to clients: {st.packets - last[0]} "
                        f"packets (total {st.packets}, clients {st.clients})"
                    )
                    last[0] = st.packets

        st = drive(srv, on_client, on_idle)
        live.end()
        print_summary("server_rr summary", st.to_dict(), [echo_summary_line(st)], out, show.details)
        if show.json_out:
            emit(st)
    return 0


#: Clients named on the output of a one-way server; the rest are counted.
MAX_NAMED_CLIENTS = 64
#: Clients shown in the live view, the most recently heard first.
MAX_LIVE_CLIENTS = 8


@config_flags(OneWayServerConfig)
def server_command(
    given: Given,
    show: Show,
    spike_log: Annotated[
        str,
        typer.Argument(
            metavar="SPIKE_LOG", help="File for the spike log (epoch_seconds,delay_ms)."
        ),
    ] = "/tmp/spike.log",
) -> int:
    """One-way UDP receiver, to run in the guest: measures the gaps between
    each client's packets itself and logs the spikes."""
    cfg = make_config(OneWayServerConfig, given)
    out = show.out
    with quiet_broken_pipe(), serving(show.metrics, show.metrics_linger) as exporter:
        log = SpikeLog(spike_log)
        srv = OneWayServer(cfg)
        watch = exporter.attach(OneWayMetrics(srv)) if exporter else None
        say(f"listening on UDP port {srv.port}...", out)
        say("allowing multiple clients.", out)
        if show.json_out:
            emit_config("server", cfg, version=__version__, address=srv.address)
        live = _Live(out)
        marked = [False]
        announced = [0]

        def on_message(m: Any) -> None:
            if isinstance(m, NewClient):
                # Thousands of clients (a scan, a flood) must not flood the
                # output: the first ones are named, the rest counted.
                announced[0] += 1
                if announced[0] <= MAX_NAMED_CLIENTS:
                    live.line(f"setting monitor target to client '{m.peer}'")
                elif announced[0] == MAX_NAMED_CLIENTS + 1:
                    live.line(f"more than {MAX_NAMED_CLIENTS} clients: the rest are not named")
            elif isinstance(m, Baseline):
                live.line(f"{m.peer}: 1st and 2nd packet latency: {int(m.gap_ms)} (ms)")
                live.line(f"{m.peer}: Setting spike throttle to: {int(m.threshold_ms)} (ms)")
                if not marked[0]:
                    log.marker()
                    marked[0] = True
            elif isinstance(m, DowntimeEvent):
                log.spike(m.gap_ms)
                live.line(event_line(m))
            if show.json_out:
                emit(m)

        def on_idle() -> None:
            if not show.quiet and live.due():
                # The most recently heard clients; the rest as a count.
                for c in srv.recent_clients(MAX_LIVE_CLIENTS):
                    live.show(f"{status_line(_now_ms(), c.max_gap_ms, c.cur_gap_ms)} [{c.peer}]")
                if srv.client_count > MAX_LIVE_CLIENTS:
                    live.show(f"[{_now_ms()}] {srv.client_count} clients in all")

        summary = drive(srv, on_message, on_idle, metrics=watch)
        live.end()
        log.close()
        if not summary.clients:
            # A run that heard no one still ends with a summary.
            say(f"Summary: no client heard ({summary.untracked} datagrams not measured)", out)
        for c in summary.clients[:MAX_NAMED_CLIENTS]:
            print_summary(
                f"client {c.peer}", c.to_dict(), client_summary_lines(c), out, show.details
            )
        rest = summary.clients[MAX_NAMED_CLIENTS:]
        if rest or summary.forgotten_clients or summary.untracked:
            say(
                f"{len(rest)} more clients ({sum(c.probes for c in rest)} probes, "
                f"{sum(c.event_count for c in rest)} events; all in --json), "
                f"{summary.forgotten_clients} forgotten, {summary.untracked} datagrams from "
                "clients not measured (more than 4096 active at once)",
                out,
            )
        if show.json_out:
            emit(summary)
    if log.error:
        fail_line(log.error)
        return EXIT_FAILURE
    return 0
