#!/usr/bin/env bash
# Try mig_mon on a real live migration on this machine: boots a Debian guest
# under QEMU (fetched from Debian's packages into .lab/), runs mig_mon inside
# it and outside, migrates it back and forth and checks mig_mon's figures
# against QEMU's and a packet capture. Needs root. See scripts/qemu_lab.py.
#
#   scripts/qemu-lab.sh                            # as root: 3 migrations, text report
#   scripts/qemu-lab.sh --migrations 5 --json lab.json --plot lab.png
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "qemu-lab: needs root (a network namespace, taps)" >&2
    exit 2
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import migmon._core, qemu.qmp, matplotlib' 2>/dev/null; then
    .venv/bin/python -m pip install -q -e '.[lab,plot]'
fi
exec .venv/bin/python scripts/qemu_lab.py "$@"
