#!/usr/bin/env bash
# The side-by-side performance report (benches/report.py): the cargo benches
# of the core and the comparisons against iperf3, sockperf, the original
# (--original BIN) and a C sleeper, in alternating rounds, with ratios and
# the change against benches/baseline.json. Writes bench-report/report.json
# and bench-report/report.md.
#
#   scripts/bench.sh                     # 3 rounds of 3 s
#   scripts/bench.sh --original /path/to/mig_mon --rounds 5
#   scripts/bench.sh --write-baseline    # run twice, keep medians and spread
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import migmon._core' 2>/dev/null; then
    .venv/bin/python -m pip install -q -e .
fi
exec .venv/bin/python benches/report.py "$@"
