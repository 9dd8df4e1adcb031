"""The lab's report: text and a figure."""

from __future__ import annotations

import json
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

from lab.common import log


def plot(r: dict[str, Any], lab: Path, out: Path) -> None:
    """One timeline: the wire's reply gaps and mig_mon's events outside, the
    guest's dirty rate and pauses inside, QEMU's STOP -> RESUME over both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = json.loads((lab / "series.json").read_text())
    rep = s["replies_unix_s"]
    t0 = rep[0] if rep else 0.0
    fig, (a1, a2) = plt.subplots(2, 1, sharex=True, figsize=(11, 6.5))
    a1.plot(
        [b - t0 for b in rep[1:]],
        [(b - a) * 1e3 for a, b in pairwise(rep)],
        lw=0.6,
        color="0.4",
        label="gap between echo replies on the wire (tcpdump)",
    )
    if s["events"]:
        a1.scatter(
            [e[0] - t0 for e in s["events"]],
            [e[1] for e in s["events"]],
            marker="x",
            color="red",
            zorder=3,
            label="mig_mon client events (gap)",
        )
    a1.set_yscale("log")
    a1.set_ylim(bottom=1)
    a1.set_ylabel("ms")
    a2.plot(
        [p[0] - t0 for p in s["dirty_samples"]],
        [p[1] for p in s["dirty_samples"]],
        drawstyle="steps-pre",
        label="mm_dirty rate in the guest (MB/s)",
    )
    for i, p in enumerate(s["pauses"]):
        a2.axvline(
            p[0] - t0,
            color="purple",
            lw=0.8,
            alpha=0.7,
            label="mm_dirty pause (guest's view)" if i == 0 else None,
        )
    a2.set_ylabel("MB/s")
    a2.set_ylim(0, 1.25 * max((p[1] for p in s["dirty_samples"]), default=1))
    a2.set_xlabel(f"seconds (host clock) from {time.strftime('%H:%M:%S', time.gmtime(t0))} UTC")
    for i, m in enumerate(r["migrations"]):
        for ax in (a1, a2):
            ax.axvspan(
                m["stop_unix_s"] - t0,
                m["resume_unix_s"] - t0,
                color="orange",
                alpha=0.35,
                label="QEMU STOP -> RESUME" if i == 0 else None,
            )
            ax.axvline(
                m["start_unix_s"] - t0,
                color="green",
                lw=0.6,
                ls="--",
                label="migrate" if i == 0 else None,
            )
    a1.legend(loc="upper left", fontsize=8)
    a2.legend(loc="lower left", fontsize=8)
    a1.set_title(
        f"mig_mon in a {r['guest']['accel'].upper()} guest across "
        f"{len(r['migrations'])} live migrations"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    log(f"plot: {out}")


def _pct(v: float | None) -> str:
    return "    -" if v is None else f"{v:>+5.1f}%"


def _host_clock_lines(h: dict[str, Any] | None) -> list[str]:
    if not h or not h["steps"]:
        return []
    return [
        f"host: its wall clock was stepped {h['steps']} times against its monotonic clock "
        f"during the run ({h['stepped_ms']:+.1f} ms in all, the largest "
        f"{h['largest_step_ms']:.1f} ms; not QEMU's or mig_mon's doing): the captures, QEMU's "
        "timestamps and the lab's times were put back on the unstepped clock before judging"
    ]


def text_report(r: dict[str, Any]) -> str:
    """The report for a person: QEMU's figures next to mig_mon's."""
    g = r["guest"]
    out = [
        f"QEMU: {r['qemu']}",
        f"guest: {g['accel']} ({r['accel_reason']}), booted to agent in "
        f"{g['boot_to_agent_s']} s, {g['mig_mon_version']}, clocksource "
        f"{g.get('clocksource', '-')}",
        *_host_clock_lines(r.get("host_clock")),
        "",
        "dirty rate (MB/s)   set  mig_mon  QEMU calc-dirty-rate  expected  error",
    ]
    for d in r["dirty_rate"]:
        out.append(
            f"  {d['pattern']:<12} {d['set_mb_s']:>8} {d['mig_mon_mb_s']:>8.1f} "
            f"{d['qemu_dirty_rate_mb_s']:>21.1f} {d['expected_qemu_mb_s']:>9.1f} "
            f"{d['error_pct']:>+6.1f}%"
        )
    out += [
        "",
        "(all times in ms)",
        "migration (kind)  total  downtime  STOP->RESUME  guest-clock-lag  wire-outage  "
        "mig_mon-gap  blackout  switchover-pause  syncs  dirty-pages-rate (MB/s, cv)",
    ]
    for i, m in enumerate(r["migrations"], start=1):
        ev = m["mig_mon_outages"]
        gap = f"{ev[0]['gap_ms']:.1f}" if len(ev) == 1 else f"{len(ev)} events"
        bo = f"{ev[0]['blackout_ms']:.1f}" if len(ev) == 1 else "-"
        wire = f"{m['wire_outage_ms']:.1f}" if m["wire_outage_ms"] else "-"
        sp = m["switchover_pause"]
        pause = f"{sp['length_ms']:.1f} ({sp['from_stop_ms']:+.1f})" if sp else "none"
        rates = m["dirty_pages_rate_mb_s"]
        mean = sum(rates) / len(rates) if rates else float("nan")
        out.append(
            f"  {i:>2} {m['kind']:<13} {m['total_time_ms']:>6} {m['downtime_ms']:>9} "
            f"{m['stop_to_resume_ms']:>13.1f} "
            f"{m['guest_clock_lag_ms']:>10.1f}+-{m['guest_clock_lag_error_ms']:<4.1f} {wire:>12} "
            f"{gap:>12} {bo:>9} {pause:>17} {m['dirty_syncs']:>6} "
            f"{mean:.1f}, {m.get('dirty_pages_rate_cv_pct', 0):.1f}%"
        )
    c, d, cw = r["client"], r["mm_dirty"], r["client_vs_wire"]
    at_switchover = sum(len(m["mig_mon_outages"]) for m in r["migrations"])
    out += [
        "  guest-clock-lag A+-E: the guest's wall clock fell behind the host's by A, measured "
        "to +-E (half the agent's round trips);",
        "  switchover-pause L (+S): mm_dirty's pause at the switchover, L long, starting S after "
        "QEMU's STOP (on the host's clock); syncs: QEMU's dirty-bitmap syncs; cv: coefficient "
        "of variation of QEMU's dirty-pages-rate.",
        "",
        f"client: {c['sent']} sent, {c['lost']} lost; {c['events']} gaps above its threshold "
        f"{c['threshold_ms']:.1f} ms: {at_switchover} are the migrations' outages, the other "
        f"{c['events'] - at_switchover} short gaps of a loaded TCG guest; {cw['matched']} of "
        f"them found on the wire (max error {cw['max_gap_error_ms']} ms), {cw['wire_gaps']} "
        f"such gaps on the wire; {cw.get('clients_own', 0)} flagged by the client as mostly its "
        "own stall",
        f"mm_dirty: {d['rate_mb_s']:.1f} MB/s through every migration, integrity "
        f"{'OK' if d['verified'] else 'FAILED'} ({d['verified_pages']} pages), {d['pauses']} "
        f"pauses (longest {d['pause_max_ms']:.1f} ms), {d['cpu_pct']:.1f}% CPU",
        "",
    ]
    for n, p in enumerate(r.get("postcopy", []), start=1):
        if "error" in p:
            out += [f"{p['kind']} {n} FAILED: {p['error']}; guest oops in {p['guest_oops_in']}"]
            continue
        t = p["trace"]
        pr = p.get("probes")
        seen = (
            f"probes on: {pr['received']} of {pr['sent']} answered, longest outage "
            f"{pr['worst_downtime_ms']:.1f} ms"
            if pr
            else "no probes"
        )
        out += [
            f"{p['kind']} {n} ({seen}): {p['total_time_ms']} ms, QEMU downtime "
            f"{p['downtime_ms']} ms, STOP->RESUME {p['stop_to_resume_ms']} ms, "
            f"{p['postcopy_requests']} page requests, integrity "
            f"{'OK' if p['mm_dirty_integrity_ok'] else 'FAILED'}",
            f"  vCPU blocked on pages: {p['postcopy_vcpu_blocktime_ms']} ms (QEMU's "
            f"postcopy-vcpu-blocktime), {t['vcpu_waited_ms']} ms (QEMU's trace: request -> page "
            f"placed, {t['by_vcpu_threads']} of {t['page_requests']} requests by the vCPU thread; "
            f"{t['faults_replaced']} faults replaced in QEMU 10.0's one-per-vCPU book, "
            f"{t['replaced_waits_ms']} ms it could not count; {t['request_to_begin_ms']} ms "
            "from the requests to its begin marks)",
            f"  mm_dirty paused {p['mm_dirty_paused_ms_in_postcopy']} ms "
            f"({p['mm_dirty_pauses_in_postcopy']} pauses >= 1 ms): {t['vcpu_waited_in_pauses_ms']}"
            f" ms of it the vCPU waiting for pages, {t['pauses_outside_waits_ms']} ms the vCPU "
            "running between faults without a dirtying step completing",
        ]
    if r.get("postcopy"):
        done = sum(1 for p in r["postcopy"] if p["checks"].get("completed"))
        ok = sum(1 for p in r["postcopy"] if p["checks"].get("integrity_ok"))
        out += [f"postcopy: {done} of {len(r['postcopy'])} completed, {ok} with integrity OK", ""]
    if r.get("links"):
        out += [
            "mig_mon vm against QEMU on the same tbf-shaped link (Mbit/s; QEMU: the median of "
            "its ram.mbps while active, max-bandwidth lifted):",
            "  link  mig_mon-vm  QEMU-precopy  diff   mig_mon-vm-4ch  QEMU-multifd-4  diff",
        ]
        for k in r["links"]:
            out.append(
                f"  {k['link_mbit']:>4}  {k['emulator_mbit']:>10.0f}  "
                f"{k['qemu_mbit'] or 0:>12.0f}  "
                f"{_pct(k['emulator_vs_qemu_1ch_pct'])}  {k['emulator_4ch_mbit']:>14.0f}  "
                f"{k['qemu_multifd4_mbit'] or 0:>14.0f}  {_pct(k['emulator_vs_qemu_4ch_pct'])}"
            )
        out.append("")
    if r.get("switchover_text"):
        out += ["where each outage went (mig_mon switchover):", *r["switchover_text"], ""]
        out.append(
            "after RESUME, from the captures on the taps (the bridge's part, then the guest's):"
        )
        for i, m in enumerate(r["migrations"], start=1):
            a = m.get("after_resume")
            if not a or a["first_probe_at_destination_ms"] is None:
                continue
            out.append(
                f"  migration {i}: the next probe reached the destination's tap "
                f"{a['first_probe_at_destination_ms']:.1f} ms after RESUME "
                f"({a['probes_to_old_tap_after_resume']} went to the old tap); the guest "
                f"answered {a['reply_after_first_probe_ms']:.1f} ms after it, with "
                f"{a['probes_to_destination_before_reply']} probes delivered and unanswered"
            )
        out.append("")
    bad = [k for k, v in r["checks"].items() if not v]
    out.append("checks: all passed" if not bad else f"checks FAILED: {', '.join(bad)}")
    return "\n".join(out)
