#!/usr/bin/env bash
# Proof that the wheel in dist/ installs where mig_mon runs: a fresh venv on
# a PATH with no cargo or rustc, then the README's tour from that install
# (version, a short mm_dirty, a server_rr/client pair, a vm pair, a plot
# with the plot extra). Prints the wheel's size and the install time.
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
run "$dir/venv/bin/pip" install -q "$wheel[plot]"
end=$(date +%s%N)
echo "wheel: $(basename "$wheel"), $(du -k "$wheel" | cut -f1) KiB;" \
    "install with the plot extra: $(( (end - start) / 1000000 )) ms"
cd "$dir"
run mig_mon --version
run mig_mon mm_dirty -m 64 -r 200 --duration 1.5 --json > dirty.json
run mig_mon plot dirty.json -o dirty.png
test -s dirty.png
port=$((20000 + RANDOM % 20000))
run mig_mon server_rr -p "$port" --duration 4 > rr.txt &
sleep 0.5
run mig_mon client 127.0.0.1 10 -p "$port" --count 100 > client.txt
grep -q "received 100, lost 0" client.txt
run mig_mon vm -d -p "$port" --bind 127.0.0.1 --duration 4 > dst.txt &
sleep 0.5
run mig_mon vm -s -H 127.0.0.1 -p "$port" -t precopy -t postcopy --duration 1.5 > src.txt
wait
grep -q "end: duration reached" src.txt
grep -q "Page requests:" dst.txt
echo "wheel-check: the tour ran from the wheel without a Rust toolchain"
