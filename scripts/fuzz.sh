#!/usr/bin/env bash
# Fuzzes every decoder that reads what a peer or a user sends (see
# fuzz/Cargo.toml) with cargo fuzz (libFuzzer), each target for SECONDS
# (default 30), starting from the corpus kept in fuzz/corpus/. A crash stops
# the script with the failing input in fuzz/artifacts/.
#
#   scripts/fuzz.sh [SECONDS] [--update-corpus]
#
# --update-corpus merges what the run found into fuzz/corpus/ (minimised);
# otherwise the run works on a copy and leaves the repository as it is.
# Runs on stable Rust: no sanitizer (-s none) and RUSTC_BOOTSTRAP for the
# coverage flags cargo fuzz passes.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=30
update=0
for a in "$@"; do
    case "$a" in
        --update-corpus) update=1 ;;
        *) secs="$a" ;;
    esac
done
if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked --version '^0.13' >/dev/null
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none --fuzz-dir fuzz
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in vm_stream probe units gaps; do
    mkdir -p "$work/$t"
    cp fuzz/corpus/$t/* "$work/$t/"
    echo "fuzz $t for ${secs}s"
    cargo fuzz run -s none --fuzz-dir fuzz "$t" "$work/$t" -- \
        -max_total_time="$secs" -max_len=20000 -print_final_stats=1 2>&1 |
        grep -E "^(Done|stat::number_of_executed_units)|ERROR|panicked" || true
    if [ -n "$(ls fuzz/artifacts/$t 2>/dev/null)" ]; then
        echo "fuzz: $t found a failing input: fuzz/artifacts/$t" >&2
        exit 1
    fi
    if [ "$update" = 1 ]; then
        cp "$work/$t"/* fuzz/corpus/$t/ 2>/dev/null || true
        cargo fuzz cmin -s none --fuzz-dir fuzz "$t" fuzz/corpus/$t >/dev/null 2>&1
    fi
done
