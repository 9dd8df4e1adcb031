"""The ``mig_mon`` script and ``python -m migmon``: ``--version`` answers
without loading the command line (typer and the commands); everything else
goes to :func:`migmon.cli.main`."""

from __future__ import annotations

import os
import sys


def _stderr_to_devnull() -> None:
    """A closed stderr (``2>&-``) is no reason to stop measuring: it becomes
    /dev/null, and so does descriptor 2, which a file opened later would
    otherwise take (and the core's messages would land in it)."""
    if sys.stderr is not None:
        return
    fd = os.open(os.devnull, os.O_WRONLY)
    if fd != 2:
        os.dup2(fd, 2)
        os.close(fd)
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115


def run() -> None:
    """Entry point of the console script."""
    _stderr_to_devnull()
    argv = sys.argv[1:]
    if argv in (["-v"], ["--version"]):
        from migmon._core import __version__

        print(f"mig_mon {__version__}")
        sys.exit(0)
    from migmon.cli import main

    sys.exit(main(argv))
