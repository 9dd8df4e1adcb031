"""``python -m migmon``: the same as the ``mig_mon`` command."""

from migmon._entry import run

run()
