"""``mig_mon vm``: emulated live-migration TCP streams between two hosts.

The original's flags and lines (``Speed: N (MB/s)`` on the source,
``Latency: average X (us), max: Y (us)`` on the destination) with our
figures after a comma; ``--channels``, ``--preempt`` and
``--max-bandwidth`` use the protocol extension (PROTOCOL.md).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from migmon import (
    VmConnected,
    VmDestination,
    VmDestinationConfig,
    VmDstSample,
    VmPostcopy,
    VmRejected,
    VmSessionSummary,
    VmSource,
    VmSourceConfig,
    VmSrcSample,
    __version__,
)
from migmon.cli._common import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    DetailsOpt,
    DurationOpt,
    IntervalOpt,
    JsonOpt,
    MetricsLingerOpt,
    MetricsOpt,
    QuietOpt,
    Show,
    TimestampsOpt,
    drive,
    fail_line,
    make_config,
    quiet_broken_pipe,
    say,
    signals_interrupt,
)
from migmon.errors import ConfigError
from migmon.metrics import VmDstMetrics, serving
from migmon.output import emit, emit_config, emit_json, print_summary, show_timestamps
from migmon.output.vm import host_of, latency_line, session_lines, speed_line, src_summary_lines

_TESTS = ("precopy", "postcopy")
_FLAGS = {
    "host": "-H/--host",
    "port": "-p/--port",
    "vm_size_gb": "-S/--size",
    "channels": "--channels",
    "max_bandwidth_mb_s": "--max-bandwidth",
    "duration_s": "--duration",
    "interval_s": "--interval",
    "connect_timeout_s": "--connect-timeout",
    "bind": "--bind",
    "max_connections": "--max-connections",
    "idle_timeout_s": "--idle-timeout",
}


def vm_command(
    src: Annotated[bool, typer.Option("-s", "--src", help="Emulate the source VM.")] = False,
    dst: Annotated[bool, typer.Option("-d", "--dst", help="Emulate the destination VM.")] = False,
    host: Annotated[
        str | None,
        typer.Option(
            "-H", "--host", metavar="HOST", help="Destination address (required with -s)."
        ),
    ] = None,
    port: Annotated[
        int, typer.Option("-p", "--port", metavar="PORT", help="TCP port.", min=1, max=65535)
    ] = 12323,
    size_gb: Annotated[
        int, typer.Option("-S", "--size", metavar="GB", help="Size of the VM in GB.", min=1)
    ] = 1024,
    tests: Annotated[
        list[str] | None,
        typer.Option(
            "-t",
            "--test",
            metavar="TEST",
            help="precopy and/or postcopy (give -t twice for both).",
            show_default="precopy",
        ),
    ] = None,
    duration: DurationOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    details: DetailsOpt = False,
    timestamps: TimestampsOpt = False,
    bind: Annotated[
        str | None,
        typer.Option(
            "--bind",
            metavar="ADDR",
            help="Destination: address to listen on.",
            show_default="all, IPv6 and IPv4",
        ),
    ] = None,
    channels: Annotated[
        int,
        typer.Option(
            "--channels",
            metavar="N",
            help="Source: multifd connections for precopy.",
            min=0,
            max=64,
        ),
    ] = 0,
    preempt: Annotated[
        bool,
        typer.Option("--preempt", help="Source: answer page requests on their own connection."),
    ] = False,
    return_path: Annotated[
        str,
        typer.Option(
            "--return-path",
            metavar="PATH",
            help="With --preempt, where page requests travel: 'preempt' (with the pages) or "
            "'main' (QEMU's return path, behind the stream's socket).",
        ),
    ] = "preempt",
    max_bandwidth: Annotated[
        str | None,
        typer.Option(
            "--max-bandwidth",
            metavar="RATE",
            help="Source: cap the precopy stream (MB/s; M, G, T).",
            show_default="none",
        ),
    ] = None,
    interval: IntervalOpt = 1.0,
    connect_timeout: Annotated[
        float,
        typer.Option(
            "--connect-timeout", metavar="S", help="Source: seconds to wait for each connection."
        ),
    ] = 10.0,
    max_connections: Annotated[
        int,
        typer.Option(
            "--max-connections",
            metavar="N",
            help="Destination: connections served at once (a source uses 1 + channels + "
            "preempt); more are closed at once, with a message.",
            min=1,
            max=65536,
        ),
    ] = 256,
    idle_timeout: Annotated[
        float,
        typer.Option(
            "--idle-timeout",
            metavar="S",
            help="Destination: a session that brings less than a page in this many seconds "
            "is stalled, and closed (its connections go to other sources).",
        ),
    ] = 30.0,
    metrics: MetricsOpt = None,
    metrics_linger: MetricsLingerOpt = 0.0,
) -> int:
    """Emulate live-migration TCP streams: precopy (a stream from src to dst),
    postcopy (page requests from dst, answered by src), or both on one socket.
    Start the destination with '-d', then the source with '-s -H DST_IP'."""
    show_timestamps(timestamps)
    if src == dst:
        raise ConfigError("please specify to emulate either src (-s) or dst (-d)")
    show = Show(json_out, quiet, details)
    if dst:
        if tests:
            raise ConfigError("precopy/postcopy need to be specified on src VM")
        if (
            channels
            or preempt
            or max_bandwidth is not None
            or return_path != "preempt"
            or connect_timeout != 10.0
        ):
            raise ConfigError(
                "--channels, --preempt, --return-path, --max-bandwidth and --connect-timeout "
                "are source options"
            )
        dcfg = make_config(
            VmDestinationConfig,
            _FLAGS,
            bind=bind,
            port=port,
            vm_size_gb=size_gb,
            interval_s=interval,
            max_connections=max_connections,
            duration_s=duration,
            idle_timeout_s=idle_timeout,
        )
        return _run_dst(dcfg, show, metrics, metrics_linger)
    if host is None:
        raise ConfigError("please specify dst VM address using '-H'")
    if bind is not None or max_connections != 256 or idle_timeout != 30.0:
        raise ConfigError("--bind, --max-connections and --idle-timeout are destination options")
    if metrics is not None:
        raise ConfigError("--metrics is a destination option (the source runs to its end)")
    if return_path not in ("preempt", "main"):
        raise ConfigError(f"unknown --return-path '{return_path}' (expected preempt or main)")
    chosen = set(tests or ["precopy"])
    unknown = chosen - set(_TESTS)
    if unknown:
        raise ConfigError(f"unknown test '{sorted(unknown)[0]}' (expected precopy or postcopy)")
    if not chosen & {"precopy"} and channels:
        raise ConfigError("--channels carries precopy pages: add -t precopy")
    if preempt and "postcopy" not in chosen:
        raise ConfigError("--preempt is for postcopy requests: add -t postcopy")
    if return_path == "main" and not preempt:
        raise ConfigError("--return-path main is for --preempt")
    cfg = make_config(
        VmSourceConfig,
        _FLAGS,
        host=host,
        port=port,
        vm_size_gb=size_gb,
        precopy="precopy" in chosen,
        postcopy="postcopy" in chosen,
        channels=channels,
        preempt=preempt,
        return_path=return_path,
        max_bandwidth_mb_s=max_bandwidth,
        duration_s=duration,
        interval_s=interval,
        connect_timeout_s=connect_timeout,
    )
    return _run_src(cfg, show)


def _run_src(cfg: VmSourceConfig, show: Show) -> int:
    out, json_out = show.out, show.json_out
    with quiet_broken_pipe():
        say("Start emulation of src VM.", out)
        try:
            # Ctrl-C, SIGTERM and SIGHUP end the wait for the connections
            # at once, also when started with SIGINT ignored.
            with signals_interrupt():
                run = VmSource(cfg)
        except KeyboardInterrupt:
            fail_line(f"interrupted while connecting to {cfg.host}")
            return EXIT_INTERRUPTED
        say(f"Connected to dst VM {cfg.host}.", out)
        if json_out:
            emit_config("vm", cfg, role="src", version=__version__)
        if cfg.precopy:
            say("Starting PRECOPY streaming test...", out)

        def on_sample(s: VmSrcSample) -> None:
            if cfg.precopy:
                show.live(speed_line(s))
            if json_out:
                emit(s)

        summary = drive(run, on_sample)
        say(f"Dropped connection to dst VM {cfg.host}.", out)
        print_summary(
            "vm source summary", summary.to_dict(), src_summary_lines(summary), out, show.details
        )
        if json_out:
            emit(summary)
    if summary.end not in ("duration", "stopped"):
        fail_line(f"the run ended early: {summary.end_reason}")
        return EXIT_FAILURE
    return EXIT_OK


def _run_dst(cfg: VmDestinationConfig, show: Show, metrics_at: str | None, linger_s: float) -> int:
    out, json_out = show.out, show.json_out
    with quiet_broken_pipe(), serving(metrics_at, linger_s) as exporter:
        say("Start emulation of dst VM.", out)
        d = VmDestination(cfg)
        metrics = exporter.attach(VmDstMetrics(d)) if exporter else None
        if json_out:
            emit_config("vm", cfg, role="dst", version=__version__, address=d.address)
        reported: set[int] = set()
        rejected = [0]

        def ended(s: VmSessionSummary) -> None:
            reported.add(s.session)
            say(f"Dropped connection from src VM {host_of(s.peer)}.", out)
            print_summary(f"session {s.session}", s.to_dict(), session_lines(s), out, show.details)
            if json_out:
                emit(s)

        def on_message(m: Any) -> None:
            if isinstance(m, VmConnected):
                say(f"Connected from src VM {host_of(m.peer)}.", out)
            elif isinstance(m, VmPostcopy):
                say("Starting POSTCOPY request-response test...", out)
            elif isinstance(m, VmDstSample):
                if m.latency.count:
                    show.live(latency_line(m, d.active > 1))
            elif isinstance(m, VmSessionSummary):
                ended(m)
                return
            elif isinstance(m, VmRejected):
                # Refusals in a burst come as one message, "N more connections".
                burst = m.peer.endswith("connections")
                rejected[0] += (
                    int(m.peer.split()[0]) if burst and m.peer.split()[0].isdigit() else 1
                )
                who = m.peer if burst else f"a connection from {m.peer}"
                say(f"Rejected {who}: {m.reason}", out)
            if json_out:
                emit(m)

        sessions = list(drive(d, on_message, metrics=metrics))
        for s in sessions:
            if s.session not in reported:
                if metrics is not None:
                    metrics.observe(s)
                ended(s)
        # The end of the run, also without a session: what it received.
        total = sum(s.bytes for s in sessions)
        say(
            f"Summary: {len(sessions)} session(s), received {total / 1e6:.0f} MB, "
            f"{rejected[0]} connection(s) rejected",
            out,
        )
        if json_out:
            emit_json(
                {
                    "type": "summary",
                    "role": "dst",
                    "sessions": len(sessions),
                    "bytes": total,
                    "rejected": rejected[0],
                }
            )
    return 0
