#!/usr/bin/env bash
# Installs the package with its test dependencies into .venv and runs every
# test: the Rust core's (cargo test) and the Python ones (pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev,plot,lab,metrics]'
cargo test --locked
.venv/bin/python -m pytest "$@"
