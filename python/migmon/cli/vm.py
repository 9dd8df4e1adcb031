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
    Show,
    drive,
    fail_line,
    quiet_broken_pipe,
    say,
    signals_interrupt,
)
from migmon.cli._flags import Given, config_flags, make_config
from migmon.errors import ConfigError
from migmon.metrics import VmDstMetrics, serving
from migmon.output import emit, emit_config, emit_json, print_summary
from migmon.output.vm import host_of, latency_line, session_lines, speed_line, src_summary_lines

_TESTS = ("precopy", "postcopy")


@config_flags(VmSourceConfig, VmDestinationConfig, lead=("src", "dst", "tests"))
def vm_command(
    given: Given,
    show: Show,
    src: Annotated[bool, typer.Option("-s", "--src", help="Emulate the source VM.")] = False,
    dst: Annotated[bool, typer.Option("-d", "--dst", help="Emulate the destination VM.")] = False,
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
) -> int:
    """Emulate live-migration TCP streams: precopy (a stream from src to dst),
    postcopy (page requests from dst, answered by src), or both on one socket.
    Start the destination with '-d', then the source with '-s -H DST_IP'."""
    if src == dst:
        raise ConfigError("please specify to emulate either src (-s) or dst (-d)")
    mine, other = (VmDestinationConfig, "source") if dst else (VmSourceConfig, "destination")
    foreign = given.foreign(mine)
    if dst and tests:
        foreign.insert(0, "-t/--test")
    if src and show.metrics is not None:
        foreign.append("--metrics")
    if foreign:
        are = "is a" if len(foreign) == 1 else "are"
        raise ConfigError(
            f"{_either(foreign, 'and')} {are} {other} option{'s' * (len(foreign) > 1)}"
        )
    if dst:
        return _run_dst(make_config(VmDestinationConfig, given), show)
    if "host" not in given.fields(VmSourceConfig):
        raise ConfigError("please specify dst VM address using '-H'")
    chosen = set(tests or ["precopy"])
    unknown = chosen - set(_TESTS)
    if unknown:
        raise ConfigError(f"unknown test '{sorted(unknown)[0]}' (expected precopy or postcopy)")
    cfg = make_config(
        VmSourceConfig, given, precopy="precopy" in chosen, postcopy="postcopy" in chosen
    )
    return _run_src(cfg, show)


def _either(names: list[str], word: str) -> str:
    """'a, b and c'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {word} {names[-1]}"


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


def _run_dst(cfg: VmDestinationConfig, show: Show) -> int:
    out, json_out = show.out, show.json_out
    with quiet_broken_pipe(), serving(show.metrics, show.metrics_linger) as exporter:
        say("Start emulation of dst VM.", out)
        d = VmDestination(cfg)
        if d.max_connections < cfg.max_connections:
            import resource

            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            fail_line(
                f"--max-connections {cfg.max_connections}: the descriptor limit ({limit}, "
                f"ulimit -n) allows {d.max_connections} connections at 5 descriptors each; "
                "serving that many"
            )
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
