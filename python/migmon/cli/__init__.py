"""The ``mig_mon`` command line: the original tool's sub-commands and flags,
with long forms and new flags on top.

:func:`main` runs the typer app in click's non-standalone mode so that every
error a user can cause ends as one line on stderr (``mig_mon: ...``) and an
exit code: 2 for bad usage or values, 1 for failures at run time, 130 for an
interrupt before anything ran. Never a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import typer

from migmon import __version__
from migmon.cli._common import (
    EXIT_BROKEN_PIPE,
    EXIT_CORRUPTION,
    EXIT_FAILURE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    fail_line,
    output_done,
)
from migmon.errors import ConfigError, CorruptionError, MigmonError

__all__ = ["build_app", "main"]


def _new_app() -> typer.Typer:
    return typer.Typer(
        name="mig_mon",
        help="mig_mon: a toolset for VM live-migration testing and debugging.",
        context_settings={"help_option_names": ["-h", "--help"]},
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )


def _examples(*lines: str) -> str:
    # "\b" keeps click from re-wrapping the example lines.
    return "\b\nExamples:\n" + "\n".join(f"  {x}" for x in lines)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mig_mon {__version__}")
        raise typer.Exit(0)


def _root(
    version: bool = typer.Option(
        False,
        "-v",
        "--version",
        is_eager=True,
        callback=_version,
        help="Print the version and exit.",
    ),
) -> None:
    """mig_mon: a toolset for VM live-migration testing and debugging."""


#: (name, "module:function", short help, epilog): a command's module is
#: imported only when that command runs, so start-up stays short.
_COMMANDS: list[tuple[str, str, str, str]] = [
    (
        "mm_dirty",
        "migmon.cli.mm_dirty:mm_dirty_command",
        "Generate a constant memory dirty workload (with integrity check and latencies).",
        _examples(
            "mig_mon mm_dirty -m 1G -r 500            # 500 MB/s over 1 GB, until Ctrl-C",
            "mig_mon mm_dirty -m 4G -p random -L --json > dirty.json",
            "mig_mon mm_dirty -m 2G -P 2m -T 2 --duration 60",
        ),
    ),
    (
        "vm",
        "migmon.cli.vm:vm_command",
        "Emulate live-migration TCP streams (precopy, postcopy, multifd, preempt).",
        _examples(
            "mig_mon vm -d                             # on the destination host",
            "mig_mon vm -s -H DST -t precopy -t postcopy --duration 30",
            "mig_mon vm -s -H DST --channels 4 --max-bandwidth 1G",
        ),
    ),
    (
        "plot",
        "migmon.cli.plot:plot_command",
        "Plot runs: downtime, dirty rate and latency, bandwidth.",
        _examples(
            "mig_mon plot dirty.json                   # writes dirty.png",
            "mig_mon plot a.json b.json -o both.svg   # overlay two runs",
        ),
    ),
    (
        "switchover",
        "migmon.cli.switchover:switchover_command",
        "Explain each migration's outage: QEMU's switchover phases inside the probes' gap.",
        _examples(
            "mig_mon switchover client.json qmp.jsonl src-qemu.log dst-qemu.log",
            "mig_mon switchover client.json qmp.jsonl --json --plot phases.png",
        ),
    ),
    (
        "qmp_record",
        "migmon.cli.switchover:qmp_record_command",
        "Record QEMU's side of migrations (QMP events, query-migrate) for 'switchover'.",
        _examples(
            "mig_mon qmp_record unix:/run/src.qmp unix:/run/dst.qmp -o qmp.jsonl --trace",
            "mig_mon qmp_record SRC_HOST:4444 --until-complete",
        ),
    ),
    (
        "server",
        "migmon.cli.downtime:server_command",
        "One-way UDP receiver (in the guest): logs gaps between packets.",
        _examples("mig_mon server /tmp/spike.log           # then: client GUEST 10 --one-way"),
    ),
    (
        "server_rr",
        "migmon.cli.downtime:server_rr_command",
        "UDP echo server (in the guest) for 'client'.",
        _examples("mig_mon server_rr                          # then: client GUEST 10"),
    ),
    (
        "client",
        "migmon.cli.downtime:client_command",
        "Probe an echo server and report network downtime (round trip; --one-way).",
        _examples(
            "mig_mon client GUEST 10 /tmp/spike.log     # a probe every 10 ms",
            "mig_mon client GUEST 5 --json > downtime.json",
        ),
    ),
    (
        "client_rr",
        "migmon.cli.downtime:client_command",
        "The same as 'client' (the original's name for it).",
        _examples("mig_mon client_rr GUEST 10"),
    ),
]


def build_app(only: str | None = None) -> typer.Typer:
    """The typer app with every command, or only with ``only`` (the one
    about to run: the others' modules are not imported)."""
    import importlib

    app = _new_app()
    app.callback()(_root)
    for name, target, short, epilog in _COMMANDS:
        if only is not None and name != only:
            continue
        module, func = target.split(":")
        fn: Callable[..., int] = getattr(importlib.import_module(module), func)
        app.command(name, short_help=short, epilog=epilog, no_args_is_help=False)(fn)
    return app


def _plain_arguments(cmd: Any) -> None:
    """Help shows positional arguments as the original's usage does
    (``SERVER_IP [INTERVAL_MS]``), not typer's ``{SERVER_IP}`` and Python
    type names (``<str>``)."""
    for sub in getattr(cmd, "commands", {}).values():
        for p in sub.params:
            if p.param_type_name != "argument":
                continue
            name = p.metavar or p.name.upper()
            usage = name if p.required else f"[{name}]"
            p.get_usage_pieces = lambda ctx, usage=usage: [usage]
            if hasattr(p, "display_type_rich"):
                p.display_type_rich = lambda ctx: None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mig_mon`` script; returns the exit code."""
    try:
        return _main(argv)
    finally:
        output_done()


def _main(argv: list[str] | None) -> int:
    args = sys.argv[1:] if argv is None else argv
    names = {c[0] for c in _COMMANDS}
    only = args[0] if args and args[0] in names else None
    if sys.stdout is None:
        fail_line("standard output is closed (>&-): give it a file, or /dev/null")
        return EXIT_FAILURE
    cmd = typer.main.get_command(build_app(only))
    _plain_arguments(cmd)
    try:
        rv = cmd.main(args=argv, prog_name="mig_mon", standalone_mode=False)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except typer.Abort:
        return EXIT_INTERRUPTED
    except typer.Exit as e:
        return int(e.exit_code)
    except ConfigError as e:
        fail_line(f"error: {e}")
        return EXIT_USAGE
    except CorruptionError as e:
        fail_line(str(e))
        return EXIT_CORRUPTION
    except MigmonError as e:
        fail_line(str(e))
        return EXIT_FAILURE
    except BrokenPipeError:
        # Help or an error message into a closed pipe (before OSError,
        # which it is one of).
        return EXIT_BROKEN_PIPE
    except OSError as e:
        fail_line(str(e))
        return EXIT_FAILURE
    except RuntimeError as e:
        # Python's own threads (the metrics server, the QMP recorder) under
        # a thread or address-space limit: the machine's, not a bug.
        if "can't start new thread" not in str(e):
            return _internal(e)
        fail_line(f"cannot start a thread ({e}): a limit on threads or memory?")
        return EXIT_FAILURE
    except Exception as e:
        # The parser's own usage errors (typer vendors click, so match by
        # shape rather than by class).
        if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
            return _internal(e)
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help())
            return EXIT_USAGE
        fail_line(f"error: {e.format_message()}")
        return int(e.exit_code) if e.exit_code else 2
    except BaseException as e:
        # A panic in the Rust core reaches Python as pyo3's PanicException,
        # a BaseException: one line too.
        if type(e).__name__ == "PanicException":
            return _internal(e)
        raise
    if isinstance(rv, int):
        return rv
    return 0


def _internal(e: BaseException) -> int:
    """A bug: one line saying so, the traceback only when asked for."""
    if os.environ.get("MIGMON_TRACEBACK"):
        raise e
    fail_line(
        f"internal error: {type(e).__name__}: {e} (a bug in mig_mon; "
        "MIGMON_TRACEBACK=1 shows where)"
    )
    return EXIT_INTERNAL


def run() -> None:
    """``python -m migmon`` and the console script."""
    sys.exit(main())
