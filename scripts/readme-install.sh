#!/usr/bin/env bash
# The README's "Install and run" section, run as written: every command of
# its sh blocks in order (install and the main job, the wheel built and
# installed in ~/mig_mon, the offline install into /opt/mig_mon), but the
# test command, which .ci/run runs next. HOME is a scratch folder, so
# ~/mig_mon is too; /opt/mig_mon and wheels/ are removed after (and must
# not be there before). Needs the network (PyPI) and root (/opt).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -e /opt/mig_mon ] || [ -e wheels ]; then
    echo "readme-install: /opt/mig_mon or wheels/ exists already; remove it first" >&2
    exit 1
fi
# Rust's and cargo's own homes stay where they are (they default to HOME's).
export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
home=$(mktemp -d)
trap 'rm -rf "$home" /opt/mig_mon wheels' EXIT
script=$(python3 - <<'PY'
import re, sys
text = open("README.md").read()
start = text.index("## Install and run")
section = text[start : text.index("\n## ", start + 1)]
lines = []
for block in re.findall(r"```sh\n(.*?)```", section, re.S):
    for line in block.splitlines():
        if line.strip() == "./scripts/test.sh":
            continue  # .ci/run's own next step
        lines.append(line)
if not any("build-wheels.sh" in l for l in lines) or not any("/opt/mig_mon" in l for l in lines):
    sys.exit("readme-install: the README's install blocks are not where they were")
print("\n".join(lines))
PY
)
printf '%s\n' "$script" | sed 's/^/readme-install: $ /' >&2
t0=$(date +%s)
HOME="$home" bash -euo pipefail -c "$script"
echo "readme-install: the README's install section ran as written in $(( $(date +%s) - t0 )) s" >&2
