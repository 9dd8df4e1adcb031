"""``mig_mon vm``: emulated live-migration TCP streams between two hosts.

The original's flags and lines (``Speed: N (MB/s)`` on the source,
``Latency: average X (us), max: Y (us)`` on the destination) with our
figures after a comma; ``--channels``, ``--preempt`` and
``--max-bandwidth`` use the protocol extension (PROTOCOL.md).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated, TextIO

import typer

from migmon import __version__
from migmon._core import parse_size_mb
from migmon.cli._common import (
    fail_line,
    ignore_signals,
    quiet_broken_pipe,
    say,
    stop_on_signals,
)
from migmon.errors import ConfigError, MigmonError
from migmon.report import (
    emit_json,
    print_summary,
    vm_dst_sample_json,
    vm_latency_line,
    vm_session_json,
    vm_session_lines,
    vm_speed_line,
    vm_src_sample_json,
    vm_src_summary_json,
    vm_src_summary_lines,
)
from migmon.vm import (
    VmConnected,
    VmDestination,
    VmDropped,
    VmDstSample,
    VmPostcopy,
    VmRejected,
    VmSource,
)

_TESTS = ("precopy", "postcopy")


def _host_of(peer: str) -> str:
    """``1.2.3.4:5`` or ``[::1]:5`` -> the address, as the original prints it."""
    host = peer.rsplit(":", 1)[0]
    return host.strip("[]")


def vm_command(
    src: Annotated[bool, typer.Option("-s", "--src", help="Emulate the source VM.")] = False,
    dst: Annotated[bool, typer.Option("-d", "--dst", help="Emulate the destination VM.")] = False,
    host: Annotated[
        str | None, typer.Option("-H", "--host", help="Destination address (required with -s).")
    ] = None,
    port: Annotated[int, typer.Option("-p", "--port", help="TCP port.", min=1, max=65535)] = 12323,
    size_gb: Annotated[
        int, typer.Option("-S", "--size", help="Size of the VM in GB.", min=1)
    ] = 1024,
    tests: Annotated[
        list[str] | None,
        typer.Option("-t", "--test", help="precopy and/or postcopy (give -t twice for both)."),
    ] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", help="Stop after this many seconds.", min=0.001)
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="JSON Lines on stdout; the human text goes to stderr.")
    ] = False,
    bind: Annotated[
        str | None, typer.Option("--bind", help="Destination: address to listen on.")
    ] = None,
    channels: Annotated[
        int,
        typer.Option("--channels", help="Source: multifd connections for precopy.", min=0, max=64),
    ] = 0,
    preempt: Annotated[
        bool,
        typer.Option("--preempt", help="Source: answer page requests on their own connection."),
    ] = False,
    return_path: Annotated[
        str,
        typer.Option(
            "--return-path",
            help="With --preempt, where page requests travel: 'preempt' (with the pages) or "
            "'main' (QEMU's return path, behind the stream's socket).",
        ),
    ] = "preempt",
    max_bandwidth: Annotated[
        str | None,
        typer.Option("--max-bandwidth", help="Source: cap the precopy stream (MB/s; M, G, T)."),
    ] = None,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between reports.")] = 1.0,
) -> int:
    """Emulate live-migration TCP streams: precopy (a stream from src to dst),
    postcopy (page requests from dst, answered by src), or both on one socket.
    Start the destination with '-d', then the source with '-s -H DST_IP'."""
    if src == dst:
        raise ConfigError("please specify to emulate either src (-s) or dst (-d)")
    if not interval > 0:
        raise ConfigError("--interval must be greater than zero")
    out = sys.stderr if json_out else sys.stdout
    if dst:
        if tests:
            raise ConfigError("precopy/postcopy need to be specified on src VM")
        if channels or preempt or max_bandwidth is not None or return_path != "preempt":
            raise ConfigError("--channels, --preempt and --max-bandwidth are source options")
        return _run_dst(bind, port, size_gb, duration, interval, json_out, out)
    if host is None:
        raise ConfigError("please specify dst VM address using '-H'")
    if bind is not None:
        raise ConfigError("--bind is a destination option")
    if return_path not in ("preempt", "main"):
        raise ConfigError(f"unknown --return-path '{return_path}' (expected preempt or main)")
    chosen = set(tests or ["precopy"])
    unknown = chosen - set(_TESTS)
    if unknown:
        raise ConfigError(f"unknown test '{sorted(unknown)[0]}' (expected precopy or postcopy)")
    cap = None
    if max_bandwidth is not None:
        try:
            cap = parse_size_mb(max_bandwidth)
        except MigmonError as e:
            raise ConfigError(f"--max-bandwidth: {e}") from None
    return _run_src(
        host,
        port,
        size_gb,
        "precopy" in chosen,
        "postcopy" in chosen,
        channels,
        preempt,
        return_path == "main",
        cap,
        duration,
        interval,
        json_out,
        out,
    )


def _run_src(
    host: str,
    port: int,
    size_gb: int,
    precopy: bool,
    postcopy: bool,
    channels: int,
    preempt: bool,
    requests_on_main: bool,
    cap: int | None,
    duration: float | None,
    interval: float,
    json_out: bool,
    out: TextIO,
) -> int:
    with quiet_broken_pipe(), stop_on_signals():
        say("Start emulation of src VM.", out)
        run = VmSource(
            host,
            port=port,
            vm_size_gb=size_gb,
            precopy=precopy,
            postcopy=postcopy,
            channels=channels,
            preempt=preempt,
            requests_on_main=requests_on_main,
            max_bandwidth_mb_s=cap,
            duration_s=duration,
            interval_s=interval,
        )
        say(f"Connected to dst VM {host}.", out)
        if json_out:
            emit_json(
                {
                    "type": "config",
                    "tool": "vm",
                    "role": "src",
                    "version": __version__,
                    "host": host,
                    "port": port,
                    "vm_size_gb": size_gb,
                    "precopy": precopy,
                    "postcopy": postcopy,
                    "channels": channels,
                    "preempt": preempt,
                    "return_path": "main" if requests_on_main else "preempt",
                    "max_bandwidth_mb_s": cap,
                    "duration_s": duration,
                }
            )
        if precopy:
            say("Starting PRECOPY streaming test...", out)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                s = run.next_sample(0.1)
                if s is not None:
                    if precopy:
                        say(vm_speed_line(s), out)
                    if json_out:
                        emit_json(vm_src_sample_json(s))
                elif run.done:
                    break
        ignore_signals()
        summary = run.stop()
        for s in run.samples():
            say(vm_speed_line(s), out)
            if json_out:
                emit_json(vm_src_sample_json(s))
        say(f"Dropped connection to dst VM {host}.", out)
        print_summary(
            "vm source summary", vm_src_summary_json(summary), vm_src_summary_lines(summary), out
        )
        if json_out:
            emit_json(vm_src_summary_json(summary))
    if summary.end_reason not in ("duration reached", "stopped"):
        fail_line(f"the run ended early: {summary.end_reason}")
        return 1
    return 0


def _run_dst(
    bind: str | None,
    port: int,
    size_gb: int,
    duration: float | None,
    interval: float,
    json_out: bool,
    out: TextIO,
) -> int:
    import time

    with quiet_broken_pipe(), stop_on_signals():
        say("Start emulation of dst VM.", out)
        d = VmDestination(bind=bind, port=port, vm_size_gb=size_gb, interval_s=interval)
        if json_out:
            emit_json(
                {
                    "type": "config",
                    "tool": "vm",
                    "role": "dst",
                    "version": __version__,
                    "address": d.address,
                    "vm_size_gb": size_gb,
                }
            )
        end = None if duration is None else time.monotonic() + duration
        with contextlib.suppress(KeyboardInterrupt):
            while end is None or time.monotonic() < end:
                m = d.next_message(0.1)
                if m is not None:
                    _dst_message(d, m, json_out, out)
        ignore_signals()
        already = {s.session for s in d.finished()}
        for s in d.stop():
            if s.session not in already:
                say(f"Dropped connection from src VM {_host_of(s.peer)}.", out)
                print_summary(f"session {s.session}", vm_session_json(s), vm_session_lines(s), out)
                if json_out:
                    emit_json(vm_session_json(s))
    return 0


def _dst_message(
    d: VmDestination,
    m: VmConnected | VmPostcopy | VmDstSample | VmDropped | VmRejected,
    json_out: bool,
    out: TextIO,
) -> None:
    if isinstance(m, VmConnected):
        say(f"Connected from src VM {_host_of(m.peer)}.", out)
        if json_out:
            emit_json(
                {"type": "connected", "session": m.session, "peer": m.peer, "extended": m.extended}
            )
    elif isinstance(m, VmPostcopy):
        say("Starting POSTCOPY request-response test...", out)
        if json_out:
            emit_json({"type": "postcopy", "session": m.session})
    elif isinstance(m, VmDstSample):
        if m.latency.count:
            say(vm_latency_line(m, d.active > 1), out)
        if json_out:
            emit_json(vm_dst_sample_json(m))
    elif isinstance(m, VmDropped):
        say(f"Dropped connection from src VM {_host_of(m.peer)}.", out)
        for s in d.finished():
            if s.session == m.session:
                print_summary(f"session {s.session}", vm_session_json(s), vm_session_lines(s), out)
                if json_out:
                    emit_json(vm_session_json(s))
    else:
        say(f"Rejected a connection from {m.peer}: {m.reason}", out)
        if json_out:
            emit_json({"type": "rejected", "peer": m.peer, "reason": m.reason})
