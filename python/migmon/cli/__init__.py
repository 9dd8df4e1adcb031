"""The ``mig_mon`` command line: the original tool's sub-commands and flags,
with long forms and new flags on top.

:func:`main` runs the typer app in click's non-standalone mode so that every
error a user can cause ends as one line on stderr (``mig_mon: ...``) and an
exit code: 2 for bad usage or values, 1 for failures at run time, 130 for an
interrupt before anything ran. Never a traceback.
"""

from __future__ import annotations

import sys

import typer

from migmon import __version__
from migmon.cli._common import fail_line
from migmon.cli.downtime import client_command, server_command, server_rr_command
from migmon.cli.mm_dirty import mm_dirty_command
from migmon.cli.plot import plot_command
from migmon.cli.vm import vm_command
from migmon.errors import ConfigError, MigmonError

__all__ = ["app", "main"]

app = typer.Typer(
    name="mig_mon",
    help="mig_mon: a toolset for VM live-migration testing and debugging.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mig_mon {__version__}")
        raise typer.Exit(0)


@app.callback()
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


app.command(
    "mm_dirty",
    help="Generate a constant memory dirty workload (with integrity check and latencies).",
    no_args_is_help=False,
)(mm_dirty_command)
app.command("vm", help="Emulate live-migration TCP streams (precopy, postcopy, multifd, preempt).")(
    vm_command
)
app.command("plot", help="Plot runs: downtime, dirty rate and latency, bandwidth.")(plot_command)
app.command("server", help="One-way UDP receiver (in the guest): logs gaps between packets.")(
    server_command
)
app.command("server_rr", help="UDP echo server (in the guest) for 'client'.")(server_rr_command)
app.command(
    "client", help="Probe an echo server and report network downtime (round trip; --one-way)."
)(client_command)
app.command("client_rr", help="The same as 'client' (the original's name for it).")(client_command)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mig_mon`` script; returns the exit code."""
    cmd = typer.main.get_command(app)
    try:
        rv = cmd.main(args=argv, prog_name="mig_mon", standalone_mode=False)
    except KeyboardInterrupt:
        return 130
    except typer.Abort:
        return 130
    except typer.Exit as e:
        return int(e.exit_code)
    except ConfigError as e:
        fail_line(f"error: {e}")
        return 2
    except MigmonError as e:
        fail_line(str(e))
        return 1
    except OSError as e:
        fail_line(str(e))
        return 1
    except Exception as e:
        # The parser's own usage errors (typer vendors click, so match by
        # shape rather than by class).
        if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
            raise
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help())
            return 2
        fail_line(f"error: {e.format_message()}")
        return int(e.exit_code) if e.exit_code else 2
    if isinstance(rv, int):
        return rv
    return 0


def run() -> None:
    """``python -m migmon`` and the console script."""
    sys.exit(main())
