#!/usr/bin/env python3
"""vm bench on loopback, side by side in one run:

* precopy bandwidth against iperf3 single stream (same duration);
* postcopy-only page-request latency against sockperf TCP ping-pong, full
  round trip, at the same request rate and back to back;
* postcopy p99 with and without --preempt under a full precopy stream,
  against the postcopy-only p99.

    .venv/bin/python benches/vm_bench.py [--seconds 5] [--rounds 3]

Needs iperf3 and sockperf (Debian packages).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

from _util import free_port, stop

import migmon


def server(cmd: list[str]) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    return p


def peer_run(server_argv: list[str], client_argv: list[str]) -> str:
    """A peer tool's server, then its client; the client's output."""
    srv = server(server_argv)
    try:
        return subprocess.run(client_argv, capture_output=True, text=True, check=True).stdout
    finally:
        stop(srv, signal.SIGTERM)


def iperf3(seconds: float) -> float:
    """iperf3 single TCP stream, MB/s (MiB/s, as ours)."""
    port = str(free_port())
    out = peer_run(
        ["iperf3", "-s", "-p", port, "-1"],
        ["iperf3", "-c", "127.0.0.1", "-p", port, "-t", str(int(seconds)), "-J"],
    )
    bps = json.loads(out)["end"]["sum_received"]["bits_per_second"]
    return float(bps) / 8 / (1 << 20)


def sockperf_tcp(seconds: float, mps: str) -> float:
    """sockperf TCP ping-pong, full round trip p50... mean (us)."""
    port = str(free_port())
    out = peer_run(
        ["sockperf", "server", "--tcp", "-i", "127.0.0.1", "-p", port],
        ["sockperf", "ping-pong", "--tcp", "-i", "127.0.0.1", "-p", port, "-t",
         str(int(seconds)), "--mps", mps, "--full-rtt", "-m", "16"],
    )  # fmt: skip
    m = re.search(r"avg-rtt=([\d.]+)", out)
    assert m, out
    return float(m.group(1))


def ours(seconds: float, **kw: object) -> tuple[migmon.VmSrcSummary, dict[str, float]]:
    """One source run (in this process) against a `mig_mon vm -d` process,
    like iperf3's client and server; returns the source's summary and the
    destination's page-request latency figures (ns)."""
    port = free_port()
    argv = [sys.executable, "-m", "migmon", "vm", "-d", "-p", str(port), "--bind", "127.0.0.1",
            "--json"]  # fmt: skip
    dst = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(1.0)
    try:
        s = migmon.vm_source("127.0.0.1", port=port, duration_s=seconds, **kw)  # type: ignore[arg-type]
        time.sleep(0.3)
    finally:
        dst.send_signal(signal.SIGTERM)
        out, _ = dst.communicate(timeout=10)
    sessions = [o for o in map(json.loads, out.splitlines()) if o["type"] == "session"]
    lat = sessions[0]["latency"] or {}
    return s, {k: float(v) for k, v in lat.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    for tool in ("iperf3", "sockperf"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (apt-get install {tool})", file=sys.stderr)
            return 1
    t = a.seconds
    pre, peer_bw, post, peer_rtt, peer_rtt_rate = [], [], [], [], []
    mixed, mixed_pre, mixed_pre_main = [], [], []
    for i in range(a.rounds):
        s, _ = ours(t, precopy=True)
        pre.append(s.rate_mb_s)
        peer_bw.append(iperf3(t))
        s, lat = ours(t, precopy=False, postcopy=True)
        post.append(lat)
        rate = max(1, round(lat["count"] / t))
        peer_rtt.append(sockperf_tcp(t, "max"))
        peer_rtt_rate.append(sockperf_tcp(t, str(rate)))
        _, lat_mixed = ours(t, precopy=True, postcopy=True)
        _, lat_pre = ours(t, precopy=True, postcopy=True, preempt=True)
        _, lat_pre_main = ours(t, precopy=True, postcopy=True, preempt=True, return_path="main")
        mixed.append(lat_mixed)
        mixed_pre.append(lat_pre)
        mixed_pre_main.append(lat_pre_main)
        print(
            f"round {i}: precopy {pre[-1]:.0f} MB/s vs iperf3 {peer_bw[-1]:.0f} MB/s | "
            f"postcopy avg {lat['mean_ns'] / 1000:.1f} us "
            f"p99 {lat['p99_ns'] / 1000:.1f} us vs sockperf "
            f"tcp rtt {peer_rtt[-1]:.1f} us (back to back), {peer_rtt_rate[-1]:.1f} us "
            f"(at {rate}/s) | under precopy p99: {lat_mixed['p99_ns'] / 1000:.0f} us, "
            f"preempt {lat_pre['p99_ns'] / 1000:.1f} us, preempt with requests on main "
            f"{lat_pre_main['p99_ns'] / 1000:.0f} us"
        )
    med = statistics.median
    post_avg = med(p["mean_ns"] / 1000 for p in post)
    post_p99 = med(p["p99_ns"] / 1000 for p in post)
    print(f"\nmedians over {a.rounds} rounds of {t:g} s:")
    print(
        f"  precopy: ours {med(pre):.0f} MB/s, iperf3 {med(peer_bw):.0f} MB/s, "
        f"ratio {med(pre) / med(peer_bw):.2f}x (target >= 1.0x)"
    )
    print(
        f"  postcopy-only avg: ours {post_avg:.1f} us; sockperf TCP full rtt back to back "
        f"{med(peer_rtt):.1f} us (ratio {post_avg / med(peer_rtt):.2f}x, target <= 1.3x), "
        f"at the same rate {med(peer_rtt_rate):.1f} us (ratio {post_avg / med(peer_rtt_rate):.2f}x)"
    )
    mp = med(p["p99_ns"] / 1000 for p in mixed)
    pp = med(p["p99_ns"] / 1000 for p in mixed_pre)
    print(
        f"  under a full precopy stream, p99: without preempt {mp:.0f} us, with preempt "
        f"{pp:.1f} us; postcopy-only p99 {post_p99:.1f} us; preempt / postcopy-only = "
        f"{pp / post_p99:.2f}x (target <= 3x); preempt with requests on main (QEMU's "
        f"return path) {med(p['p99_ns'] / 1000 for p in mixed_pre_main):.0f} us"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
