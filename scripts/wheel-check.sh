#!/usr/bin/env bash
# Proof that the wheel in dist/ installs where mig_mon runs: a fresh venv on
# a PATH with no cargo or rustc, then the README's tour from that install
# (version, mm_dirty, a server_rr/client pair, a vm pair, plots with the
# plot extra). Prints the wheel's size and the install time.
set -euo pipefail
cd "$(dirname "$0")/.."
wheel=$(ls dist/mig_mon-*-abi3-*manylinux*_x86_64.whl)
python=$(python3 -c 'import sys; print(sys.executable)')
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
clean_path="$dir/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin"
run() { env -i HOME="$dir" PATH="$clean_path" "$@"; }
run "$python" -m venv "$dir/venv"
if run sh -c 'command -v cargo || command -v rustc'; then
    echo "wheel-check: cargo or rustc is on the clean PATH" >&2
    exit 1
fi
start=$(date +%s%N)
run "$dir/venv/bin/pip" install -q --disable-pip-version-check "$wheel[plot]"
end=$(date +%s%N)
echo "wheel: $(basename "$wheel"), $(du -k "$wheel" | cut -f1) KiB;" \
    "install with the plot extra: $(( (end - start) / 1000000 )) ms"
# The README's tour, as written, from this install.
tour=$(python3 - <<'PY'
import re
text = open("README.md").read()
block = re.search(r"## A tour on one machine.*?```console\n(.*?)```", text, re.S).group(1)
for line in block.splitlines():
    if line.startswith("$ "):
        print(line[2:])
        if line.rstrip().endswith("&"):
            print("sleep 1.5")
print("wait")
PY
)
cd "$dir"
printf '%s\n' "$tour" > tour.sh
run bash -euo pipefail tour.sh > tour.out 2>&1 || { tail -40 tour.out; exit 1; }
grep -q "Summary: sent 200, received 200" tour.out
test -s /tmp/mm_dirty.png && test -s /tmp/vm_src.svg
echo "wheel-check: the README's tour ran from the wheel without a Rust toolchain"
