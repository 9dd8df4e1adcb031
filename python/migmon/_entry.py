"""The ``mig_mon`` script and ``python -m migmon``: ``--version`` answers
without loading the command line (typer and the commands); everything else
goes to :func:`migmon.cli.main`."""

from __future__ import annotations

import sys


def run() -> None:
    """Entry point of the console script."""
    argv = sys.argv[1:]
    if argv in (["-v"], ["--version"]):
        from migmon._core import __version__

        print(f"mig_mon {__version__}")
        sys.exit(0)
    from migmon.cli import main

    sys.exit(main(argv))
