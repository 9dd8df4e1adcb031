"""Each long-running tool's metrics: what it observes from the items its
command receives, and the families it adds to a scrape."""

from __future__ import annotations

import time
from typing import Any

from migmon._core import LATENCY_BUCKETS_S
from migmon.metrics.base import OUTAGE_BUCKETS_S, Families, Histo, ToolMetrics

#: Clients of a one-way server with series of their own (as many as its
#: output names); the others are summed under ``peer="other"``.
MAX_NAMED_PEERS = 64


class _Outages:
    """One peer's outages: the blackout histogram (its count and sum are
    the number and the total), the longest and the latest one. A client
    that stalled itself during a gap has its own stall taken out (as
    ``--max-downtime-ms`` does): a gap that was all its own stall, to a
    probe interval, is a stall of the client and not an outage."""

    def __init__(self) -> None:
        self.blackouts = Histo(OUTAGE_BUCKETS_S)
        self.longest_s = 0.0
        self.last_start = 0.0
        self.last_s = 0.0
        self.stalls = 0
        self.stall_s = 0.0

    def observe(self, e: Any) -> None:
        stall_s = e.client_stall_ms / 1e3
        self.stall_s += stall_s
        blackout_s = max(0.0, e.blackout_ms - e.client_stall_ms) / 1e3
        if stall_s > 0 and blackout_s * 1e3 <= e.resolution_ms:
            self.stalls += 1
            return
        self.blackouts.observe(blackout_s)
        self.longest_s = max(self.longest_s, blackout_s)
        self.last_start, self.last_s = e.start_unix_s, blackout_s

    def add(self, f: Families, open_s: float, **labels: str) -> None:
        f.histogram(
            "migmon_outage_seconds",
            "Outages (gaps past the threshold, less the client's own stall): blackout, s.",
            self.blackouts,
            **labels,
        )
        f.gauge(
            "migmon_outage_longest_seconds", "The longest blackout so far, s.", self.longest_s,
            **labels,
        )  # fmt: skip
        f.gauge(
            "migmon_last_outage_start_timestamp_seconds",
            "Wall-clock start of the latest outage (0: none yet).",
            self.last_start,
            **labels,
        )
        f.gauge(
            "migmon_last_outage_seconds", "Blackout of the latest outage, s.", self.last_s, **labels
        )
        f.gauge(
            "migmon_open_outage_seconds",
            "Silence going on now beyond the threshold, s (0 when none).",
            open_s,
            **labels,
        )


class ProbeMetrics(ToolMetrics):
    """``client``: the probes and their replies, outages and the client's
    own stalls apart."""

    role = "client"

    def __init__(self, run: Any, peer: str) -> None:
        super().__init__(peer)
        self.run = run
        self.outages = _Outages()
        self.lost = 0

    def observe(self, item: Any) -> None:
        if type(item).__name__ == "DowntimeEvent":
            with self.lock:
                self.outages.observe(item)

    def add(self, f: Families) -> None:
        st = self.run.status
        for name, doc, value in (
            ("sent", "Probes sent.", st.sent),
            ("received", "Distinct probes answered (one way: not known).", st.received),
            ("duplicated", "Extra copies of answered probes.", st.duplicates),
            ("reordered", "Replies after a reply to a later probe.", st.reordered),
        ):
            f.counter(f"migmon_probes_{name}", doc, value)
        # A late reply to a probe counted lost takes it back: the counter
        # never goes down.
        self.lost = max(self.lost, st.lost)
        f.counter(
            "migmon_probes_lost", "Probes never answered although a later one was.", self.lost
        )
        f.counter(
            "migmon_probe_slots_skipped",
            "Send slots skipped because the client itself was stalled.",
            st.skipped,
        )
        rtt = Histo(LATENCY_BUCKETS_S)
        rtt.add(st.rtt_buckets, st.rtt_sum_s)
        f.histogram("migmon_probe_rtt_seconds", "Round trips of the probes, s.", rtt)
        threshold = st.threshold_ms
        silent = st.since_last_reply_ms if st.received else 0.0
        open_s = silent / 1e3 if threshold is not None and silent >= threshold else 0.0
        self.outages.add(f, open_s)
        f.counter(
            "migmon_client_stalls",
            "Gaps that were the client's own stall (it did not run), not outages.",
            self.outages.stalls,
        )
        f.counter(
            "migmon_client_stall_seconds",
            "Time the client itself did not run during gaps, s.",
            self.outages.stall_s,
        )


class EchoMetrics(ToolMetrics):
    """``server_rr``: what the echo server answered."""

    role = "server_rr"

    def __init__(self, run: Any) -> None:
        super().__init__()
        self.run = run

    def add(self, f: Families) -> None:
        st = self.run.stats()
        f.counter("migmon_echo_packets", "Datagrams received.", st.packets)
        f.counter("migmon_echo_received_bytes", "Bytes received (and echoed).", st.bytes)
        f.counter("migmon_echo_probes", "Of those, mig_mon probes.", st.probes)
        f.counter("migmon_echo_send_errors", "Replies the kernel refused.", st.send_errors)
        f.counter(
            "migmon_echo_loops_dropped",
            "Datagrams not answered: replies coming back (a reflection loop).",
            st.loops_dropped,
        )
        f.gauge("migmon_echo_clients", "Distinct senders seen (capped at 65536).", st.clients)


class OneWayMetrics(ToolMetrics):
    """``server``: every client's arrivals and outages, the first
    :data:`MAX_NAMED_PEERS` by name."""

    role = "server"

    def __init__(self, run: Any) -> None:
        super().__init__()
        self.run = run
        self.named: dict[str, _Outages] = {}
        self.other = _Outages()

    def observe(self, item: Any) -> None:
        kind = type(item).__name__
        with self.lock:
            if kind == "NewClient":
                if len(self.named) < MAX_NAMED_PEERS and item.peer not in self.named:
                    self.named[item.peer] = _Outages()
            elif kind == "DowntimeEvent":
                self.named.get(item.peer, self.other).observe(item)

    def add(self, f: Families) -> None:
        now = time.time()
        f.gauge("migmon_clients", "Clients being measured now.", self.run.client_count)
        for c in self.run.clients():
            outages = self.named.get(c.peer)
            if outages is None:
                continue
            for name, doc, value in (
                ("received", "Datagrams received.", c.packets),
                ("lost", "Probes never received (from sequence numbers).", c.lost),
                ("reordered", "Probes that came after a later one.", c.reordered),
            ):
                f.counter(f"migmon_probes_{name}", doc, value, peer=c.peer)
            f.counter(
                "migmon_probe_sequence_restarts",
                "Sequence jumps (a restarted client).",
                c.restarts,
                peer=c.peer,
            )
            silent = now - c.last_seen_unix_s
            t = c.threshold_ms
            open_s = silent if t is not None and silent * 1e3 >= t else 0.0
            outages.add(f, open_s, peer=c.peer)
        self.other.add(f, 0.0, peer="other")


class DirtyMetrics(ToolMetrics):
    """``mm_dirty``: the dirty rate, the pauses, the integrity check."""

    role = "mm_dirty"

    def __init__(self, run: Any, target_mb_s: int | None) -> None:
        super().__init__()
        self.run = run
        self.target = target_mb_s
        self.bytes = 0
        self.rate = 0.0
        self.load = 0.0
        self.pauses = Histo(OUTAGE_BUCKETS_S)
        self.longest = 0.0
        self.last_start = 0.0
        self.last_s = 0.0
        self.corrupt = 0

    def observe(self, item: Any) -> None:
        kind = type(item).__name__
        with self.lock:
            if kind == "DirtySample":
                self.bytes += item.bytes
                self.rate = item.rate_mb_s * 2**20
                self.load = item.load_pct / 100
            elif kind == "DirtyPause":
                s = item.length_ms / 1e3
                self.pauses.observe(s)
                self.longest = max(self.longest, s)
                self.last_start, self.last_s = item.start_unix_s, s

    def failed(self, error: BaseException) -> None:
        from migmon.errors import CorruptionError

        if isinstance(error, CorruptionError):
            with self.lock:
                self.corrupt += 1

    def add(self, f: Families) -> None:
        f.gauge(
            "migmon_dirty_prefaulting", "1 while the region is being prefaulted.",
            float(self.run.phase == "prefaulting"),
        )  # fmt: skip
        f.counter("migmon_dirty_bytes", "Bytes dirtied (4 KiB per page touched).", self.bytes)
        f.gauge(
            "migmon_dirty_rate_bytes_per_second", "Dirty rate over the latest interval.", self.rate
        )
        if self.target is not None:
            f.gauge(
                "migmon_dirty_target_rate_bytes_per_second",
                "The rate asked for.",
                self.target * 2**20,
            )
        f.gauge(
            "migmon_dirty_load_ratio",
            "Share of the latest interval the workers were not sleeping.",
            self.load,
        )
        f.histogram(
            "migmon_pause_seconds",
            "Pauses: time no dirtying thread ran although it should have, s.",
            self.pauses,
        )
        f.gauge("migmon_pause_longest_seconds", "The longest pause so far, s.", self.longest)
        f.gauge(
            "migmon_last_pause_start_timestamp_seconds",
            "Wall-clock start of the latest pause (0: none yet).",
            self.last_start,
        )
        f.gauge("migmon_last_pause_seconds", "Length of the latest pause, s.", self.last_s)
        f.counter(
            "migmon_integrity_failures",
            "Pages found not holding what was last written there.",
            self.corrupt,
        )


class VmDstMetrics(ToolMetrics):
    """``vm -d``: sessions, bytes and page-request latencies."""

    role = "vm_dst"

    def __init__(self, run: Any) -> None:
        super().__init__()
        self.run = run
        self.sessions = 0
        self.rejected = 0
        self.ended: dict[str, int] = {"normal": 0, "error": 0}
        self.bytes = 0
        self.latency = Histo(LATENCY_BUCKETS_S)
        self.live: dict[int, tuple[int, Histo]] = {}

    def observe(self, item: Any) -> None:
        kind = type(item).__name__
        with self.lock:
            if kind == "VmConnected":
                self.sessions += 1
            elif kind == "VmRejected":
                # Refusals in a burst come as one, "N more connections".
                first = item.peer.split()[0]
                burst = item.peer.endswith("connections") and first.isdigit()
                self.rejected += int(first) if burst else 1
            elif kind == "VmDstSample":
                n, h = self.live.get(item.session, (0, Histo(LATENCY_BUCKETS_S)))
                h.add(item.latency_buckets, item.latency_sum_s)
                self.live[item.session] = (n + item.bytes, h)
            elif kind == "VmSessionSummary":
                # The whole session's figures replace its samples' (they
                # also hold the part after the last sample).
                self.live.pop(item.session, None)
                self.bytes += item.bytes
                self.latency.add(item.latency_buckets, item.latency_sum_s)
                normal = item.reason == "source closed"
                self.ended["normal" if normal else "error"] += 1

    def add(self, f: Families) -> None:
        f.counter("migmon_vm_sessions", "Sessions (sources) that connected.", self.sessions)
        f.gauge("migmon_vm_sessions_active", "Sessions running now.", self.run.active)
        for how, n in self.ended.items():
            f.counter("migmon_vm_sessions_ended", "Sessions that ended, by how.", n, end=how)
        f.counter(
            "migmon_vm_rejected_connections",
            "Connections refused before joining a session.",
            self.rejected,
        )
        latency = self.latency
        received = self.bytes
        for n, h in self.live.values():
            latency = latency.plus(h)
            received += n
        f.counter("migmon_vm_received_bytes", "Bytes received from sources.", received)
        f.histogram(
            "migmon_vm_page_request_seconds",
            "Postcopy page requests: request to page received, s.",
            latency,
        )
