"""``mig_mon plot``: a picture of one or more runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from migmon.cli._common import EXIT_FAILURE, say
from migmon.errors import ConfigError
from migmon.parse import ParseError, parse_file


def plot_command(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE...", help="Spike logs, mm_dirty or vm output, or mig_mon --json output."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            metavar="FILE",
            help="Image to write: .png, .svg or .pdf.",
            show_default="the first input's name with .png",
        ),
    ] = None,
    title: Annotated[
        str | None,
        typer.Option("--title", metavar="TEXT", help="Title of the figure.", show_default="none"),
    ] = None,
) -> int:
    """Plot runs: downtime events, dirty rate and latencies, precopy
    bandwidth, page-request latency. Inputs of one kind overlay; inputs of
    different tools (--json output, spike logs, QEMU's QMP or virsh event
    log) share one wall-clock axis, with pauses and STOP -> RESUME shaded."""
    import sys

    if output is None:
        output = Path(inputs[0].name).with_suffix(".png")
    if output.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ConfigError(f"unsupported image type '{output.suffix}' (use .png, .svg or .pdf)")
    try:
        series = [parse_file(p) for p in inputs]
    except ParseError as e:
        raise ConfigError(f"cannot read {e}") from None
    from migmon.plot import MatplotlibMissing, plot_series

    try:
        fig = plot_series(series)
    except MatplotlibMissing as e:
        say(f"mig_mon: {e}", sys.stderr)
        return EXIT_FAILURE
    if title:
        fig.suptitle(title)
    try:
        fig.savefig(output, dpi=120)
    except OSError as e:
        say(f"mig_mon: cannot write {output}: {e.strerror or e}", sys.stderr)
        return EXIT_FAILURE
    points = sum(len(s.x) for s in series)
    kinds = {s.kind for s in series}
    kind = series[0].kind if len(kinds) == 1 else "timeline of " + ", ".join(sorted(kinds))
    say(f"wrote {output} ({kind}, {len(series)} input(s), {points} points)", sys.stdout)
    return 0
