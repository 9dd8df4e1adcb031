#!/usr/bin/env python3
"""Downtime accuracy against a known outage: stop a real `mig_mon server_rr`
with SIGSTOP for a set time while probing, and print what was reported.

    .venv/bin/python benches/downtime_accuracy.py [--outage-ms 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

import migmon


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--outage-ms", type=float, default=300.0)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = subprocess.Popen(
        [sys.executable, "-m", "migmon", "server_rr", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    try:
        for interval_ms, threshold in ((1.0, 50.0), (10.0, None), (100.0, None)):
            for _ in range(a.repeat):
                with migmon.Prober(
                    server="127.0.0.1", interval_ms=interval_ms, port=port, threshold_ms=threshold
                ) as p:
                    time.sleep(max(0.5, 5 * interval_ms / 1000))
                    os.kill(srv.pid, signal.SIGSTOP)
                    time.sleep(a.outage_ms / 1000)
                    os.kill(srv.pid, signal.SIGCONT)
                    time.sleep(max(0.5, 5 * interval_ms / 1000))
                    r = p.stop()
                ev = ", ".join(
                    f"blackout {e.blackout_ms:.1f} ms (gap {e.gap_ms:.1f}, "
                    f"missed {e.probes_missed})"
                    for e in r.events
                )
                print(
                    f"interval {interval_ms:5g} ms: {len(r.events)} event(s): {ev}; "
                    f"error {r.events[0].blackout_ms - a.outage_ms:+.1f} ms"
                    if r.events
                    else f"interval {interval_ms:5g} ms: no event"
                )
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
