"""Booting, the dirty-rate checks and the migrations themselves."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lab.common import BRIDGE, GUEST_IP, MIGRATE_PORT, POSTCOPY_TRACE, TAPS, log
from lab.hostclock import steady_files, steady_migration
from lab.judge import judge, match_wire, overlap, page_waits
from lab.net import capture, reply_times
from lab.qemu import Lab, Qemu, agent, clock_offset, json_objs, wait_agent
from migmon.switchover.record import QmpRecorder


async def guest_output(name: str) -> str:
    r = await agent({"op": "run", "argv": ["cat", f"/run/lab/{name}.out"]})
    return str(r["stdout"])


async def wait_first_sample(name: str, limit: float = 120) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if any(o.get("type") == "sample" for o in json_objs(await guest_output(name))):
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"{name}: no rate line within {limit:.0f} s")


async def start_guest_dirty(name: str, size_mb: int, rate: int, *extra: str) -> None:
    """mm_dirty in the guest (JSON output, known to the agent as ``name``),
    once it has printed its first interval."""
    argv = ["mig_mon", "mm_dirty", "-m", str(size_mb), "-r", str(rate), *extra, "--json"]
    await agent({"op": "spawn", "name": name, "argv": argv})
    await wait_first_sample(name)


async def dirty_rate_check(vm: Qemu, pattern: str, rate: int, size_mb: int) -> dict[str, Any]:
    """mm_dirty's set rate against QEMU's calc-dirty-rate (page sampling).

    Sequential: every page of the window is written once if R*T < size, so
    QEMU must see R. Random: QEMU counts distinct pages, so the expectation is
    size*(1-exp(-R*T/size))/T."""
    name = f"dirty-{pattern}-{rate}"
    await start_guest_dirty(name, size_mb, rate, "-p", pattern)
    calc = max(1, min(8, int(0.8 * size_mb / rate)))
    await vm.run(
        "calc-dirty-rate", **{"calc-time": calc, "sample-pages": 4096, "mode": "page-sampling"}
    )
    await asyncio.sleep(calc)
    for _ in range(100):
        q = await vm.run("query-dirty-rate")
        if q["status"] == "measured":
            break
        await asyncio.sleep(0.2)
    await agent({"op": "signal", "name": name, "sig": int(signal.SIGINT)})
    done = await agent({"op": "wait", "name": name})
    objs = json_objs(done["stdout"])
    summary = next(o for o in objs if o.get("type") == "summary")
    rates = [o["rate_mb_s"] for o in objs if o.get("type") == "sample"]
    if pattern == "sequential":
        expect = float(rate)
    else:
        expect = size_mb * (1 - math.exp(-rate * calc / size_mb)) / calc
    qemu_rate = float(q["dirty-rate"])
    return {
        "pattern": pattern,
        "set_mb_s": rate,
        "mig_mon_mb_s": round(float(summary["rate_mb_s"]), 2),
        "mig_mon_samples_mb_s": [round(r, 1) for r in rates],
        "calc_time_s": calc,
        "qemu_dirty_rate_mb_s": qemu_rate,
        "expected_qemu_mb_s": round(expect, 1),
        "error_pct": round(100 * (qemu_rate - expect) / expect, 1),
        "exit": done["rc"],
    }


async def boot(lab: Lab, report: dict[str, Any]) -> Qemu:
    vm = await lab.start(TAPS[0], incoming=False)
    try:
        # A stock kernel boots in seconds under KVM; when KVM cannot boot it,
        # fall back to TCG and say so.
        secs = await wait_agent(vm, 90 if lab.accel == "kvm" else 600)
    except (TimeoutError, RuntimeError) as e:
        await lab.stop(vm)
        if lab.accel != "kvm":
            raise
        log(f"KVM did not boot the guest ({e}); falling back to TCG")
        report["accel_reason"] = f"KVM tried, the guest did not boot ({e})"
        lab.accel = "tcg"
        vm = await lab.start(TAPS[0], incoming=False)
        secs = await wait_agent(vm, 600)
    # Start the guest on the host's time (its RTC has whole seconds), so its
    # JSON lines up with the host's on one timeline; it then falls behind by
    # each migration's stop.
    t0 = time.time()
    await agent({"op": "time"})
    rtt = time.time() - t0
    await agent({"op": "settime", "unix_s": time.time() + rtt / 2})
    v = await agent({"op": "run", "argv": ["mig_mon", "--version"]})
    clock = await agent({"op": "clock"})
    report["guest"] = {
        "clocksource": clock["clocksource"],
        "clocksources": clock["available"],
        "clock_messages_at_boot": clock["messages"],
        "accel": lab.accel,
        "boot_to_agent_s": round(secs, 1),
        "mig_mon_version": v["stdout"].strip(),
        "memory_mb": lab.mem_mb,
    }
    log(
        f"guest up in {secs:.1f} s ({lab.accel}); {v['stdout'].strip()}; clocksource "
        f"{clock['clocksource']} of {' '.join(clock['available'])}"
    )
    return vm


async def migrate(
    lab: Lab,
    src: Qemu,
    tap: str,
    args: argparse.Namespace,
    postcopy: bool = False,
    multifd: int = 0,
    preempt: bool = False,
) -> tuple[Qemu, dict[str, Any]]:
    """One migration of the guest from src to a new QEMU on tap: precopy
    (over ``multifd`` channels when given), or postcopy (switched to after
    the first pass, with the destination measuring how long the vCPU was
    blocked on pages; page requests answered on a channel of their own with
    ``preempt``)."""
    dst = await lab.start(tap, incoming=True, extra_trace=POSTCOPY_TRACE if postcopy else ())
    # QEMU's side, recorded by mig_mon itself (events, query-migrate) on
    # each QEMU's second monitor, as a user would with `mig_mon qmp_record`.
    rec = QmpRecorder(
        lab.lab / "qmp.jsonl", {"src": str(src.rec_sock), "dst": str(dst.rec_sock)}, poll_s=0.1
    )
    await asyncio.to_thread(rec.start)
    uri = f"tcp:127.0.0.1:{MIGRATE_PORT}"
    # Said every time, on both sides (and first: QEMU refuses postcopy
    # while multifd is on): a QEMU that was a multifd destination
    # keeps the capability as a source (its next precopy migration opened
    # channels a plain destination refused: "Not a migration stream").
    for q in (src, dst):
        caps = [{"capability": "multifd", "state": bool(multifd)}]
        await q.run("migrate-set-capabilities", capabilities=caps)
        if multifd:
            await q.run("migrate-set-parameters", **{"multifd-channels": multifd})
    if postcopy:
        # Both said every time: a QEMU keeps what it was set to as a
        # destination when it becomes the next source.
        caps = [
            {"capability": "postcopy-ram", "state": True},
            {"capability": "postcopy-preempt", "state": preempt},
        ]
        await src.run("migrate-set-capabilities", capabilities=caps)
        await dst.run(
            "migrate-set-capabilities",
            capabilities=[*caps, {"capability": "postcopy-blocktime", "state": True}],
        )
    await dst.run("migrate-incoming", uri=uri)
    await src.run(
        "migrate-set-parameters",
        **{
            "downtime-limit": args.downtime_limit_ms,
            "max-bandwidth": args.max_bandwidth_mb * 2**20,
        },
    )
    off_before = await clock_offset()
    off_before_at = t0 = time.time()
    await src.run("migrate", uri=uri)
    rates: list[float] = []
    mbps: list[float] = []
    syncs_seen = -1
    switched_at = None
    while True:
        q = await src.run("query-migrate")
        ram = q.get("ram", {})
        if postcopy and switched_at is None and ram.get("dirty-sync-count", 0) >= 2:
            await src.run("migrate-start-postcopy")
            switched_at = time.time()
        if q.get("status") == "active" and ram.get("mbps"):
            mbps.append(float(ram["mbps"]))
        if ram.get("dirty-sync-count", 0) != syncs_seen and ram.get("dirty-pages-rate"):
            syncs_seen = ram["dirty-sync-count"]
            rates.append(ram["dirty-pages-rate"] * ram.get("page-size", 4096) / 2**20)
        if q.get("status") in ("completed", "failed", "cancelled", "postcopy-paused"):
            break
        if time.time() - t0 > args.migration_timeout:
            raise TimeoutError(f"migration did not complete in {args.migration_timeout} s: {q}")
        await asyncio.sleep(0.1)
    if q["status"] != "completed":
        raise RuntimeError(f"migration {q['status']}: {q.get('error-desc', '')}")
    for _ in range(100):
        if dst.event_time("RESUME") is not None:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)  # the recorder's last query-migrate
    await asyncio.to_thread(rec.stop)
    stop_t = src.event_time("STOP", after=t0)
    resume_t = dst.event_time("RESUME")
    blocktime = None
    if postcopy:
        qd = await dst.run("query-migrate")
        cpus = await dst.run("query-cpus-fast")
        blocktime = {
            "dst_vcpu_threads": [c["thread-id"] for c in cpus],
            "dst_trace_log": str(dst.trace_log) if dst.trace_log else None,
            "postcopy_blocktime_ms": qd.get("postcopy-blocktime"),
            "postcopy_vcpu_blocktime_ms": qd.get("postcopy-vcpu-blocktime"),
            "postcopy_requests": q["ram"].get("postcopy-requests"),
            "switched_to_postcopy_unix_s": switched_at,
        }
    await lab.stop(src)
    await asyncio.sleep(0.5)
    off_after = await clock_offset()
    off_after_at = time.time()
    clock = await agent({"op": "clock"})
    ram = q["ram"]
    info = {
        "kind": ("postcopy-preempt" if preempt else "postcopy")
        if postcopy
        else f"multifd {multifd}"
        if multifd
        else "precopy",
        "dst_tap": tap,
        **(blocktime or {}),
        "start_unix_s": t0,
        "total_time_ms": q.get("total-time"),
        "downtime_ms": q.get("downtime"),
        "setup_time_ms": q.get("setup-time"),
        "transferred_mb": round(ram["transferred"] / 1e6, 1),
        "qemu_mbps": ram.get("mbps"),
        "qemu_mbps_active_median": round(sorted(mbps)[len(mbps) // 2], 1) if mbps else None,
        "multifd_bytes": ram.get("multifd-bytes"),
        "dirty_syncs": ram.get("dirty-sync-count"),
        "dirty_pages_rate_mb_s": [round(r, 1) for r in rates],
        "stop_unix_s": stop_t,
        "resume_unix_s": resume_t,
        "stop_to_resume_ms": round((resume_t - stop_t) * 1e3, 2) if stop_t and resume_t else None,
        "offset_before_s": off_before[0],
        "offset_after_s": off_after[0],
        "offset_before_at_unix_s": off_before_at,
        "offset_after_at_unix_s": off_after_at,
        "guest_clock_lag_ms": round((off_before[0] - off_after[0]) * 1e3, 2),
        "guest_clock_lag_error_ms": round((off_before[1] + off_after[1]) * 1e3, 2),
        "guest_clocksource": clock["clocksource"],
        "guest_clock_messages": clock["messages"],
    }
    for line in clock["messages"]:
        log(f"guest kernel: {line}")
    return dst, info


def summary_of(objs: list[dict[str, Any]], *keys: str) -> dict[str, Any]:
    """``keys`` of a tool's JSON summary (None for each when there is none)."""
    summary = next((o for o in objs if o.get("type") == "summary"), {})
    return {k: summary.get(k) for k in keys}


async def migrations(lab: Lab, vm: Qemu, args: argparse.Namespace, report: dict[str, Any]) -> Qemu:
    """Migrations with mm_dirty and server_rr running in the guest, the
    client and a capture outside."""
    work = Path(args.lab_dir)
    mig_mon = str(Path(sys.executable).parent / "mig_mon")
    await agent({"op": "spawn", "name": "echo", "argv": ["mig_mon", "server_rr"]})
    await start_guest_dirty("dirty", 512, args.migration_dirty_rate)
    pcap = work / "replies.pcap"
    # The replies and QEMU's announcements on the bridge, and on each tap
    # the probes the bridge delivered to that QEMU (which one a probe
    # reached after a migration is the bridge's doing, not the guest's).
    dumps = [
        capture(BRIDGE, pcap, f"(udp and src host {GUEST_IP} and src port 12323) or rarp"),
        *(
            capture(tap, work / f"{tap}.pcap", f"udp and dst host {GUEST_IP} and dst port 12323")
            for tap in TAPS
        ),
    ]
    client_out = open(work / "client.json", "wb")  # noqa: SIM115
    client = subprocess.Popen(
        [mig_mon, "client", GUEST_IP, str(args.probe_ms), "--json"],
        stdout=client_out,
        stderr=open(work / "client.txt", "wb"),  # noqa: SIM115
    )
    migs: list[dict[str, Any]] = []
    try:
        await asyncio.sleep(3)
        plan = [0] * args.migrations + list(args.multifd)
        for i, channels in enumerate(plan):
            tap = TAPS[(i + 1) % 2]
            vm, info = await migrate(lab, vm, tap, args, multifd=channels)
            log(
                f"migration {i + 1} ({info['kind']}): {info['total_time_ms']} ms, downtime "
                f"{info['downtime_ms']} ms, STOP->RESUME {info['stop_to_resume_ms']} ms, "
                f"{info['dirty_syncs']} dirty syncs, "
                f"guest clock lag {info['guest_clock_lag_ms']} ms"
            )
            migs.append(info)
            await asyncio.sleep(3)
    finally:
        client.send_signal(signal.SIGINT)
        client.wait(10)
        client_out.close()
        await asyncio.sleep(0.5)
        for dump in dumps:
            dump.send_signal(signal.SIGINT)
            dump.wait(10)
    await agent({"op": "signal", "name": "dirty", "sig": int(signal.SIGINT)})
    done = await agent({"op": "wait", "name": "dirty"})
    dirty, dirty_rc = json_objs(done["stdout"]), done["rc"]
    (work / "dirty.json").write_text(done["stdout"])
    with open(work / "qemu-events.jsonl", "w") as f:
        for q in lab.started:
            for e in q.events:
                f.write(json.dumps(e) + "\n")
    await agent({"op": "signal", "name": "echo", "sig": int(signal.SIGINT)})
    await agent({"op": "wait", "name": "echo"})
    if lab.wall.stepped:
        # Someone stepped the host's wall clock: the captures and the lab's
        # times back onto the clock as it ran before (see lab.hostclock).
        steady_files(
            lab.wall,
            [pcap, *(work / f"{tap}.pcap" for tap in TAPS), work / "client.json",
             work / "qemu-events.jsonl"],
        )  # fmt: skip
        for m in migs:
            steady_migration(lab.wall, m)
    client_objs = json_objs((work / "client.json").read_text())
    replies = reply_times(pcap)
    report["migrations"] = judge(migs, client_objs, dirty, replies)
    report["mm_dirty"] = summary_of(
        dirty, "rate_mb_s", "duration_s", "verified", "verified_pages", "pauses", "paused_ms",
        "pause_max_ms", "cpu_pct",
    ) | {"exit": dirty_rc}  # fmt: skip
    csum = next((o for o in client_objs if o.get("type") == "summary"), {})
    events = [o for o in client_objs if o.get("type") == "event"]
    report["client"] = summary_of(
        client_objs, "sent", "received", "lost", "threshold_ms", "total_downtime_ms",
        "worst_downtime_ms", "client_stalled_events",
    ) | {"events": len(events)}  # fmt: skip
    report["client_vs_wire"] = match_wire(events, replies, csum.get("threshold_ms") or 0.0)
    # The series behind the plot, in host time.
    offsets = [(m["stop_unix_s"], m["offset_before_s"]) for m in report["migrations"]]
    last = report["migrations"][-1]["offset_after_s"] if report["migrations"] else 0.0

    def host_t(guest_t: float) -> float:
        for stop, off in offsets:
            if guest_t - off < stop:
                return float(guest_t - off)
        return float(guest_t - last)

    series = {
        "replies_unix_s": replies,
        "events": [[e["start_unix_s"], e["gap_ms"]] for e in events],
        "dirty_samples": [
            [host_t(o["unix_s"]), o["rate_mb_s"]] for o in dirty if o.get("type") == "sample"
        ],
        "pauses": [
            [host_t(o["start_unix_s"]), o["length_ms"]] for o in dirty if o.get("type") == "pause"
        ],
    }
    (work / "series.json").write_text(json.dumps(series))
    return vm


async def postcopy_run(
    lab: Lab, vm: Qemu, args: argparse.Namespace, n: int, preempt: bool
) -> tuple[Qemu, dict[str, Any]]:
    """Postcopy migration ``n`` with mm_dirty in the guest (and, with
    --postcopy-probes, server_rr in the guest probed from outside). After
    the switch the vCPU runs on the destination and stalls on every page it
    lacks: the guest's clock runs meanwhile, so mm_dirty sees those stalls
    as pauses when they hold up its work. QEMU's postcopy-vcpu-blocktime on
    the destination counts the vCPU thread's waits for pages."""
    await start_guest_dirty(
        "pdirty", 512, args.postcopy_dirty_rate, "-p", "random", "--pause-ms", "1"
    )
    probe = None
    client_json = Path(args.lab_dir) / f"postcopy{n}-client.json"
    if args.postcopy_probes:
        # The real use: the guest serves the network while it faults its
        # pages in (server_rr in the guest, the client outside).
        await agent({"op": "spawn", "name": "pecho", "argv": ["mig_mon", "server_rr"]})
        mig_mon = str(Path(sys.executable).parent / "mig_mon")
        probe_out = open(client_json, "wb")  # noqa: SIM115
        probe = subprocess.Popen(
            [mig_mon, "client", GUEST_IP, str(args.probe_ms), "--json"], stdout=probe_out,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        # Until the guest answers (its server starts slowly under TCG).
        for _ in range(240):
            if any(o.get("type") == "baseline" for o in json_objs(client_json.read_text())):
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)
    tap = TAPS[0] if vm.tap == TAPS[1] else TAPS[1]
    try:
        vm, info = await migrate(lab, vm, tap, args, postcopy=True, preempt=preempt)
        await asyncio.sleep(2)
    finally:
        if probe is not None:
            probe.send_signal(signal.SIGINT)
            probe.wait(10)
            probe_out.close()
    if probe is not None:
        await agent({"op": "signal", "name": "pecho", "sig": int(signal.SIGINT)})
        echo = await agent({"op": "wait", "name": "pecho"})
        cobjs = json_objs(client_json.read_text())
        probes = summary_of(cobjs, "sent", "received", "lost", "worst_downtime_ms")
        events = [o for o in cobjs if o.get("type") == "event"]
        probes["outages_ms"] = [round(e["blackout_ms"], 1) for e in events]
        probes["echo_exit"] = echo["rc"]
        info["probes"] = probes
        log(f"postcopy with probes: {probes}")
    await agent({"op": "signal", "name": "pdirty", "sig": int(signal.SIGINT)})
    done = await agent({"op": "wait", "name": "pdirty"})
    objs = json_objs(done["stdout"])
    summary = next((o for o in objs if o.get("type") == "summary"), {})
    # The postcopy phase, in guest time: from the switch (host time, on the
    # guest's clock before the stop) to the end of the migration.
    lo = (info["switched_to_postcopy_unix_s"] or info["start_unix_s"]) + info["offset_before_s"]
    hi = info["start_unix_s"] + info["total_time_ms"] / 1e3 + info["offset_after_s"]
    pauses = [o for o in objs if o.get("type") == "pause" and lo <= o["start_unix_s"] <= hi]
    info["mm_dirty_pauses_in_postcopy"] = len(pauses)
    info["mm_dirty_paused_ms_in_postcopy"] = round(sum(p["length_ms"] for p in pauses), 2)
    info["mm_dirty_rates_mb_s"] = [
        round(o["rate_mb_s"], 1) for o in objs if o.get("type") == "sample"
    ]
    info["mm_dirty_integrity_ok"] = summary.get("verified") is True and done["rc"] == 0
    (lab.lab / f"postcopy{n}-dirty.json").write_text(done["stdout"])
    blocked = float(sum(info["postcopy_vcpu_blocktime_ms"] or [0]))
    paused = info["mm_dirty_paused_ms_in_postcopy"]
    info["paused_vs_vcpu_blocktime_pct"] = (
        round(100 * (paused - blocked) / blocked, 1) if blocked else None
    )
    # QEMU's blocktime counts the time the vCPU thread waited for a page;
    # mm_dirty's pauses count the time its thread made no progress, which
    # also holds the vCPU's short runs between two faults. The referee that
    # tells them apart: QEMU's trace of every page request (with the thread
    # that faulted) and of every page placed, and the guest's pauses put on
    # the host's clock (after the stop, the guest's clock lags by the
    # offset measured after the migration).
    vcpus = set(info["dst_vcpu_threads"])
    waits = page_waits(Path(info["dst_trace_log"]), vcpus)
    spans = [(p["start_unix_s"] - info["offset_after_s"], p["length_ms"] / 1e3) for p in pauses]
    pause_iv = [(a, a + d) for a, d in spans]
    vcpu_iv = waits.vcpu_intervals(vcpus)
    info["trace"] = {
        "page_requests": len(waits.waits),
        "by_vcpu_threads": len(vcpu_iv),
        "vcpu_waited_ms": round(1e3 * waits.vcpu_waited_s(vcpus), 2),
        # What QEMU 10.0's figure leaves out (see PageWaits).
        "faults_replaced": waits.replaced,
        "replaced_waits_ms": round(1e3 * waits.replaced_s, 2),
        "request_to_begin_ms": round(1e3 * waits.request_to_begin_s, 2),
        "vcpu_waited_in_pauses_ms": round(1e3 * overlap(vcpu_iv, pause_iv), 2),
        "pauses_outside_waits_ms": round(
            1e3 * (sum(b - a for a, b in pause_iv) - overlap(pause_iv, vcpu_iv)), 2
        ),
    }
    t = info["trace"]
    info["checks"] = {
        "completed": True,
        "integrity_ok": info["mm_dirty_integrity_ok"],
        # QEMU's blocktime is the vCPU thread's waits for pages, less those
        # its one-fault-per-vCPU book replaced and the moments before it
        # marks each begin (QEMU 10.0; its clock counts whole ms).
        "blocktime_is_the_traced_waits": abs(
            t["vcpu_waited_ms"] - t["replaced_waits_ms"] - t["request_to_begin_ms"] - blocked
        )
        <= max(0.05 * blocked, 5.0),
    }
    # Not a check: how much of that time falls inside mm_dirty's pauses.
    # A pause is time mm_dirty was due to dirty and did not: a wait while it
    # slept between two pace steps, or shorter than --pause-ms (1 ms here),
    # does not hold it up; a pause also holds the vCPU running other guest
    # work (the kernel, the echo server) while mm_dirty was due. Measured
    # on QEMU 10.0 (TCG), 13 runs: 28-100% of the waits fell in pauses;
    # a preempt run with 268 waits of 1.3 ms on average: none.
    log(
        f"postcopy {n}{' (preempt)' if preempt else ''}: {info['total_time_ms']} ms, "
        f"{info['postcopy_requests']} page requests, "
        f"vCPU blocked {info['postcopy_vcpu_blocktime_ms']} ms (QEMU), "
        f"{t['vcpu_waited_ms']} ms in the trace ({t['by_vcpu_threads']} of "
        f"{t['page_requests']} requests by the vCPU); mm_dirty paused {paused} ms in "
        f"{len(pauses)} pauses >= 1 ms, {t['vcpu_waited_in_pauses_ms']} ms of them waiting "
        f"for pages and {t['pauses_outside_waits_ms']} ms running between faults"
    )
    return vm, info
