#!/usr/bin/env bash
# Unpacks Debian's prometheus (the server and promtool) into .lab/prometheus
# for the metrics test; prints the folder that holds the two programs.
# apt gets package lists and a cache of its own there: the machine's apt
# setup is read (its sources), never changed, and no service is started.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.lab/prometheus
bin="$dir/x/usr/bin"
if [ ! -x "$bin/prometheus" ] || [ ! -x "$bin/promtool" ]; then
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/debs"
    opts=(-o "Dir::State::Lists=$PWD/$dir/lists" -o "Dir::Cache=$PWD/$dir/cache" -o APT::Sandbox::User=root)
    apt-get "${opts[@]}" update -qq >/dev/null
    rm -f "$dir"/debs/*.deb
    (cd "$dir/debs" && apt-get "${opts[@]}" download -qq prometheus >/dev/null)
    rm -rf "$dir/x"
    dpkg -x "$dir"/debs/prometheus_*.deb "$dir/x"
    rm -rf "$dir/debs" "$dir/cache"
fi
echo "$PWD/$bin"
