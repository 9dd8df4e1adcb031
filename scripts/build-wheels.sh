#!/usr/bin/env bash
# Builds what users install, into dist/: one abi3 wheel (every CPython from
# 3.10) per architecture (x86_64, and aarch64 where its Rust standard library
# can be had), tagged manylinux2014 (glibc 2.17), linked with zig so that this
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
build() {
    PATH="$PWD/.venv-build/bin:$PATH" .venv-build/bin/maturin build --release "${strip[@]}" \
        --zig --compatibility manylinux2014 --out dist "$@"
}
build
# aarch64, cross-linked by zig, when the Rust standard library for it can
# be had (rustup fetches it); without it, say so and go on.
if rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1; then
    build --target aarch64-unknown-linux-gnu
else
    echo "build-wheels: no Rust standard library for aarch64 here: x86_64 only" >&2
fi
.venv-build/bin/maturin sdist --out dist
ls -l dist
