"""``python -m migmon``: the same as the ``mig_mon`` command."""

from migmon.cli import run

run()
