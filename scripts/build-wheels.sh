#!/usr/bin/env bash
# Builds what users install, into dist/: one abi3 wheel (every CPython from
# 3.10) tagged manylinux2014 (glibc 2.17), linked with zig so that this
# machine's newer glibc does not leak in, and an sdist. maturin audits the
# wheel's shared-library dependencies and glibc symbol versions while it
# builds and refuses a wheel that breaks its tag. The version is Cargo.toml's.
#
#   scripts/build-wheels.sh            release wheel, debug info stripped
#   scripts/build-wheels.sh --symbols  keep the debug info (for perf/callgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
strip=(--strip)
if [ "${1:-}" = "--symbols" ]; then
    strip=()
fi
if [ ! -x .venv-build/bin/python ]; then
    python3 -m venv .venv-build
fi
.venv-build/bin/python -m pip install -q --upgrade pip
# ziglang is zig itself, packaged on PyPI; maturin --zig uses it as linker.
.venv-build/bin/python -m pip install -q "maturin>=1.9,<2" "ziglang>=0.13"
rm -rf dist
PATH="$PWD/.venv-build/bin:$PATH" .venv-build/bin/maturin build --release "${strip[@]}" --zig --compatibility manylinux2014 \
    --out dist
.venv-build/bin/maturin sdist --out dist
ls -l dist
