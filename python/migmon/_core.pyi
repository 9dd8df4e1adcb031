"""Stubs of the extension module (written by scripts/gen_stubs.py from the
Rust sources: do not edit). Import from :mod:`migmon`, not from here."""

from collections.abc import Iterator
from types import TracebackType
from typing import Any, ClassVar, Generic, Literal, TypeVar, final

from typing_extensions import Self

__version__: str
DEFAULT_PORT: int
#: Upper bounds (s) of the latency buckets metrics use; an unbounded one follows.
LATENCY_BUCKETS_S: list[float]

def parse_size_mb(text: str) -> int:
    """A size such as ``512``, ``16G`` or ``2T`` in MB (MiB)."""

@final
class EchoServerConfig:
    """A UDP server's configuration (`server_rr`; `server` adds a threshold)."""

    @property
    def bind(self) -> str | None:
        """Address to listen on; None = every address, IPv6 and IPv4."""
    @property
    def port(self) -> int:
        """UDP port; 0 = any free port."""
    @property
    def duration_s(self) -> float | None:
        """Stop after this many seconds; None = until stopped."""
    #: How the command line spells each field (its options are built from it).
    FLAGS: ClassVar[list[dict[str, Any]]]
    #: Every field's default.
    DEFAULTS: ClassVar[dict[str, Any]]
    def __init__(self, *, bind: str | None = None, port: int = 12323, duration_s: float | None = None) -> None: ...
    def replace(self, **changes: Any) -> Self:
        """A copy with the given fields changed (validated again)."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class NewClient:
    """A sender the server heard for the first time."""

    @property
    def peer(self) -> str:
        """The sender, "ip:port"."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class EchoStats:
    """Counters of an echo server."""

    @property
    def packets(self) -> int:
        """Datagrams received."""
    @property
    def bytes(self) -> int:
        """Bytes received (and echoed)."""
    @property
    def probes(self) -> int:
        """Of those, our probes."""
    @property
    def send_errors(self) -> int:
        """Replies the kernel refused to send."""
    @property
    def clients(self) -> int:
        """Distinct senders seen (capped at 65536)."""
    @property
    def loops_dropped(self) -> int:
        """Datagrams not answered because they were our own replies coming back (from ourselves, or bounced by another echo server)."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class DowntimeEvent:
    """One downtime: no packet arrived for `gap_ms`."""

    @property
    def index(self) -> int:
        """0 for the first event of a run (per peer on a server)."""
    @property
    def peer(self) -> str | None:
        """The peer ("ip:port") whose packets stopped."""
    @property
    def start_unix_s(self) -> float:
        """Wall-clock time (Unix seconds) of the last arrival before the gap."""
    @property
    def start_offset_s(self) -> float:
        """Seconds from the start of the run to that arrival."""
    @property
    def gap_ms(self) -> float:
        """Time between the arrivals around the gap, ms."""
    @property
    def blackout_ms(self) -> float:
        """Estimated blackout: the gap less one interval, ms (never negative)."""
    @property
    def resolution_ms(self) -> float:
        """How exact the blackout estimate is (one probe interval), ms."""
    @property
    def probes_missed(self) -> int:
        """Probes sent in the gap that got no timely reply (round trip) or never arrived (one way, from sequence numbers)."""
    @property
    def client_stall_ms(self) -> float:
        """How late the client itself sent its probes during the gap, ms: its thread did not run (the host was overloaded, the client stopped). Part of the gap, or all of it, is then the client's, not the network's. 0 on a server, which cannot know."""
    @property
    def open(self) -> bool:
        """Still going on when the run ended: its gap is the time from the last reply to the end (the outage may have lasted longer)."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class Baseline:
    """The first two arrivals set the baseline gap and the spike threshold."""

    @property
    def peer(self) -> str | None:
        """The peer, on a server that measures many."""
    @property
    def gap_ms(self) -> float:
        """Gap between the first two arrivals, ms (what the original prints)."""
    @property
    def median_gap_ms(self) -> float:
        """The baseline: the median of the first gaps, ms."""
    @property
    def threshold_ms(self) -> float:
        """Spike threshold from now on, ms."""
    @property
    def unix_s(self) -> float:
        """Wall-clock time, Unix seconds."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class OneWayServerConfig:
    """The one-way server's configuration (`server`). Times in ms as the original's, the run's length in seconds."""

    @property
    def bind(self) -> str | None:
        """Address to listen on; None = every address, IPv6 and IPv4."""
    @property
    def port(self) -> int:
        """UDP port; 0 = any free port."""
    @property
    def threshold_ms(self) -> float | None:
        """A gap this long is a downtime event; None = twice a client's usual gap (the median of its first four), never below 1 ms."""
    @property
    def duration_s(self) -> float | None:
        """Stop after this many seconds; None = until stopped."""
    #: How the command line spells each field (its options are built from it).
    FLAGS: ClassVar[list[dict[str, Any]]]
    #: Every field's default.
    DEFAULTS: ClassVar[dict[str, Any]]
    def __init__(self, *, bind: str | None = None, port: int = 12323, threshold_ms: float | None = None, duration_s: float | None = None) -> None: ...
    def replace(self, **changes: Any) -> Self:
        """A copy with the given fields changed (validated again)."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class ClientSummary:
    """One client's figures."""

    @property
    def peer(self) -> str:
        """The client, "ip:port"."""
    @property
    def packets(self) -> int:
        """Datagrams received."""
    @property
    def probes(self) -> int:
        """Of those, our probes."""
    @property
    def lost(self) -> int:
        """Probes never received (from sequence numbers; ours only)."""
    @property
    def reordered(self) -> int:
        """Probes that came after a later one."""
    @property
    def restarts(self) -> int:
        """Times the sequence numbers jumped further than the sender's own clock allows (a restarted client, or datagrams that only look like ours): counted apart, the sequence is followed from there, nothing counted lost."""
    @property
    def last_seen_unix_s(self) -> float:
        """Wall-clock time of the client's latest datagram (Unix seconds)."""
    @property
    def max_gap_ms(self) -> float:
        """Largest gap after the baseline, ms."""
    @property
    def cur_gap_ms(self) -> float:
        """Latest gap, ms."""
    @property
    def threshold_ms(self) -> float | None:
        """Spike threshold, ms."""
    @property
    def event_count(self) -> int:
        """Downtime events, in all (also those not listed)."""
    @property
    def events(self) -> list[DowntimeEvent]:
        """The first [`KEPT_EVENTS_PER_CLIENT`] downtime events."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class OneWaySummary:
    """Every client's figures at the end."""

    @property
    def clients(self) -> list[ClientSummary]:
        """One entry per client measured, by address: those still known at the end, then those retired after a minute of silence to make room."""
    @property
    def forgotten_clients(self) -> int:
        """Retired clients beyond what the summary keeps: counted only."""
    @property
    def untracked(self) -> int:
        """Datagrams from clients not measured because the table was full of active clients."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class ProbeConfig:
    """A probe run's configuration (`client`). The interval and the threshold are in ms, as the original's command line has them; the run's length in seconds."""

    @property
    def server(self) -> str:
        """The echo (or one-way) server: an address or a host name."""
    @property
    def port(self) -> int:
        """Its UDP port."""
    @property
    def interval_ms(self) -> float:
        """Time between probes, ms."""
    @property
    def threshold_ms(self) -> float | None:
        """A gap this long is a downtime event, ms; None = twice the median of the first four gaps, never below twice the interval."""
    @property
    def count(self) -> int | None:
        """Stop after sending this many probes."""
    @property
    def duration_s(self) -> float | None:
        """Stop after this many seconds."""
    @property
    def one_way(self) -> bool:
        """Only send, for a one-way server."""
    #: How the command line spells each field (its options are built from it).
    FLAGS: ClassVar[list[dict[str, Any]]]
    #: Every field's default.
    DEFAULTS: ClassVar[dict[str, Any]]
    def __init__(self, *, server: str = "", port: int = 12323, interval_ms: float = 1000.0, threshold_ms: float | None = None, count: int | None = None, duration_s: float | None = None, one_way: bool = False) -> None: ...
    def replace(self, **changes: Any) -> Self:
        """A copy with the given fields changed (validated again)."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class NoReply:
    """No reply at all yet: the server may be one-way, down or filtered."""

    @property
    def after_s(self) -> float:
        """Seconds since the first probe."""
    @property
    def refused(self) -> int:
        """Sends refused so far: the kernel was told nothing listens there."""
    @property
    def foreign(self) -> int:
        """Datagrams that came back but are not our probes (wrong magic, or not one we sent): something else answers on that port."""
    @property
    def send_errors(self) -> int:
        """Sends the kernel refused (no route, link down)."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class ProbeStatus:
    """A live view of the run (the original's status line and more)."""

    @property
    def sent(self) -> int:
        """Probes sent."""
    @property
    def received(self) -> int:
        """Distinct probes answered."""
    @property
    def max_gap_ms(self) -> float:
        """Largest gap between replies after the baseline, ms."""
    @property
    def cur_gap_ms(self) -> float:
        """Latest gap between replies, ms."""
    @property
    def since_last_reply_ms(self) -> float:
        """Time since the last reply, ms (grows during an outage)."""
    @property
    def last_rtt_ms(self) -> float:
        """Latest round trip, ms."""
    @property
    def events(self) -> int:
        """Downtime events so far."""
    @property
    def lost(self) -> int:
        """Probes that got no reply although a later one did (those after the latest reply are still in flight, or in an outage, and not counted)."""
    @property
    def duplicates(self) -> int:
        """Extra copies of answered probes."""
    @property
    def reordered(self) -> int:
        """Replies that came after a reply to a later probe."""
    @property
    def skipped(self) -> int:
        """Send slots skipped because the client itself was stalled."""
    @property
    def threshold_ms(self) -> float | None:
        """Spike threshold, ms (None until the baseline is set)."""
    @property
    def total_downtime_ms(self) -> float:
        """Sum of the events' blackouts, ms."""
    @property
    def rtt_buckets(self) -> list[int]:
        """Round trips per bucket of `LATENCY_BUCKETS_S` (the last: longer), not cumulative (for metrics; not part of the JSON)."""
    @property
    def rtt_sum_s(self) -> float:
        """Sum of every round trip, seconds (for metrics)."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class ProbeSummary:
    """The whole run's figures."""

    @property
    def duration_s(self) -> float:
        """Seconds from the first probe to the end."""
    @property
    def interval_ms(self) -> float:
        """Probe interval, ms."""
    @property
    def one_way(self) -> bool:
        """Only sent."""
    @property
    def sent(self) -> int:
        """Probes sent."""
    @property
    def received(self) -> int:
        """Distinct probes answered."""
    @property
    def lost(self) -> int:
        """Probes never answered."""
    @property
    def duplicates(self) -> int:
        """Extra copies of answered probes."""
    @property
    def reordered(self) -> int:
        """Replies that came after a reply to a later probe."""
    @property
    def refused(self) -> int:
        """"Connection refused" (the server's port was closed)."""
    @property
    def foreign(self) -> int:
        """Replies that were not our probes."""
    @property
    def send_errors(self) -> int:
        """Sends the kernel refused (no route, link down)."""
    @property
    def skipped(self) -> int:
        """Send slots skipped because the client itself was stalled."""
    @property
    def client_stalled_events(self) -> int:
        """Events during which the client itself stalled (see `client_stall_ms` of each event)."""
    @property
    def rtt(self) -> Percentiles | None:
        """Round-trip times (none for one-way)."""
    @property
    def send_jitter(self) -> Percentiles:
        """Actual minus planned send time."""
    @property
    def baseline_gap_ms(self) -> float | None:
        """Gap between the first two replies, ms."""
    @property
    def threshold_ms(self) -> float | None:
        """Spike threshold, ms."""
    @property
    def max_gap_ms(self) -> float:
        """Largest gap between replies after the baseline, ms."""
    @property
    def total_downtime_ms(self) -> float:
        """Sum of the events' blackouts, ms."""
    @property
    def worst_downtime_ms(self) -> float:
        """Largest event blackout, ms."""
    @property
    def open_gap_ms(self) -> float:
        """Time since the last reply when the run ended, ms (an outage still going on shows here, not as an event)."""
    @property
    def event_count(self) -> int:
        """Downtime events, in all (also those not listed)."""
    @property
    def events(self) -> list[DowntimeEvent]:
        """The downtime events: the first [`KEPT_EVENTS`] of the run (each was also told as it happened); the totals count them all."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class DirtyConfig:
    """A dirty workload's configuration: built once (from the command line or from Python keyword arguments), checked by [`DirtyConfig::validate`]. Sizes in MB (MiB), rates in MB/s, times in seconds."""

    @property
    def size_mb(self) -> int:
        """Region size in MB; also the original's size text (`16G`)."""
    @property
    def rate_mb_s(self) -> int | None:
        """Target dirty rate in MB/s, shared by all threads; None = unlimited."""
    @property
    def pattern(self) -> Literal["sequential", "random", "once"]:
        """Page selection: sequential, random or once."""
    @property
    def page_size(self) -> Literal["4k", "2m", "1g", "thp"]:
        """What backs the region: 4k, 2m, 1g or thp."""
    @property
    def threads(self) -> int:
        """Dirtying threads, each on its own contiguous slice (1..=1024)."""
    @property
    def record_latency(self) -> bool:
        """Time every 4 KiB access."""
    @property
    def verify(self) -> bool:
        """Check every page holds what was last written there."""
    @property
    def interval_s(self) -> float:
        """Seconds between samples (at least 0.01)."""
    @property
    def pace_ms(self) -> float:
        """Work per paced step, ms: each dirtying thread wakes once per step (0.05 to 1000; 1000 is the original's once-a-second burst)."""
    @property
    def pause_ms(self) -> float:
        """A step late by this much is a pause of the guest or the process, ms (1 to 10000; detection costs nothing: the clock is read anyway)."""
    @property
    def duration_s(self) -> float | None:
        """Stop by itself after this many seconds of dirtying; None = until stopped."""
    @property
    def force(self) -> bool:
        """Skip the available-memory check."""
    @property
    def seed(self) -> int | None:
        """Seed for the random pattern; None = from the clock."""
    #: How the command line spells each field (its options are built from it).
    FLAGS: ClassVar[list[dict[str, Any]]]
    #: Every field's default.
    DEFAULTS: ClassVar[dict[str, Any]]
    def __init__(self, *, size_mb: int | str = 512, rate_mb_s: int | str | None = None, pattern: Literal["sequential", "random", "once"] = "sequential", page_size: Literal["4k", "2m", "1g", "thp"] = "4k", threads: int = 1, record_latency: bool = False, verify: bool = True, interval_s: float = 1.0, pace_ms: float = 1.0, pause_ms: float = 10.0, duration_s: float | None = None, force: bool = False, seed: int | None = None) -> None: ...
    def replace(self, **changes: Any) -> Self:
        """A copy with the given fields changed (validated again)."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class DirtySample:
    """One interval's figures."""

    @property
    def index(self) -> int:
        """0 for the first interval."""
    @property
    def elapsed_s(self) -> float:
        """Seconds since dirtying started, at the end of this interval."""
    @property
    def unix_s(self) -> float:
        """Wall-clock time at the end of the interval, Unix seconds (to the microsecond): the same timeline as every tool's events and QEMU's."""
    @property
    def duration_ms(self) -> int:
        """Length of this interval in ms (the original's "time (ms)")."""
    @property
    def bytes(self) -> int:
        """Bytes dirtied (4 KiB per page touched)."""
    @property
    def rate_mb_s(self) -> float:
        """Dirty rate over the interval in MB/s."""
    @property
    def load_pct(self) -> float:
        """Share of the interval the workers were not sleeping, in percent."""
    @property
    def latency(self) -> Percentiles | None:
        """Access latencies over the interval, with `record_latency`."""
    @property
    def pauses(self) -> int:
        """Pauses reported in this interval."""
    @property
    def pause_max_ms(self) -> float:
        """The longest of them, ms (0 without one)."""
    @property
    def paused_ms(self) -> float:
        """Their total, ms: time the workload did not run."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class DirtyPause:
    """A time in which no dirtying thread ran although its schedule said it should: the guest (or the process) was paused. Not an access that took long (the latency histogram's business) but time with no access at all."""

    @property
    def index(self) -> int:
        """0 for the first pause of the run."""
    @property
    def start_unix_s(self) -> float:
        """Wall-clock start, Unix seconds."""
    @property
    def start_offset_s(self) -> float:
        """Seconds from the start of dirtying to the pause."""
    @property
    def length_ms(self) -> float:
        """How long no thread ran, ms (the longest any thread saw)."""
    @property
    def threads(self) -> list[int]:
        """The dirtying threads that saw it (0-based)."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class DirtySummary:
    """The whole run's figures."""

    @property
    def prefault_s(self) -> float:
        """Seconds spent prefaulting."""
    @property
    def duration_s(self) -> float:
        """Seconds spent dirtying (or waiting, for `once`)."""
    @property
    def bytes(self) -> int:
        """Bytes dirtied in total."""
    @property
    def rate_mb_s(self) -> float:
        """Average dirty rate in MB/s."""
    @property
    def intervals(self) -> int:
        """Number of full intervals reported."""
    @property
    def pauses(self) -> int:
        """Pauses over the run."""
    @property
    def paused_ms(self) -> float:
        """Their total, ms."""
    @property
    def pause_max_ms(self) -> float:
        """The longest, ms."""
    @property
    def pause_events(self) -> list[DirtyPause]:
        """Every pause (not part of the JSON summary line; each has its own)."""
    @property
    def cpu_s(self) -> float:
        """CPU this whole process used while dirtying, seconds (user + system): what the workload cost beyond its memory writes' own."""
    @property
    def cpu_pct(self) -> float:
        """The same as a share of one core over the run, percent."""
    @property
    def completed_prefault(self) -> bool:
        """False when stopped before prefaulting finished."""
    @property
    def verified(self) -> bool:
        """True when the final integrity check ran (verification on and prefaulting completed)."""
    @property
    def verified_pages(self) -> int:
        """Pages the final integrity check read (0 without verification)."""
    @property
    def latency(self) -> Percentiles | None:
        """Access latencies over the whole run, with `record_latency`."""
    @property
    def buckets_us(self) -> dict[int, int] | None:
        """The original's 21 buckets (upper bound in us -> count), with `record_latency`."""
    @property
    def samples(self) -> list[DirtySample]:
        """Every full interval's sample (not part of the JSON summary line)."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class Percentiles:
    """The figures every summary reports, all in nanoseconds."""

    @property
    def count(self) -> int:
        """Number of values recorded."""
    @property
    def min_ns(self) -> int:
        """Smallest value (ns)."""
    @property
    def mean_ns(self) -> float:
        """Mean (ns)."""
    @property
    def p50_ns(self) -> int:
        """Median (ns)."""
    @property
    def p90_ns(self) -> int:
        """90th percentile (ns)."""
    @property
    def p99_ns(self) -> int:
        """99th percentile (ns)."""
    @property
    def p99_9_ns(self) -> int:
        """99.9th percentile (ns)."""
    @property
    def p99_99_ns(self) -> int:
        """99.99th percentile (ns)."""
    @property
    def max_ns(self) -> int:
        """Largest value (ns)."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class VmDestinationConfig:
    """The emulated destination's configuration. Times in seconds."""

    @property
    def bind(self) -> str | None:
        """Address to listen on; None = every address, IPv6 and IPv4."""
    @property
    def port(self) -> int:
        """TCP port; 0 = any free port."""
    @property
    def vm_size_gb(self) -> int:
        """Guest size in GB, for sources of the original protocol (an extended source says its own)."""
    @property
    def interval_s(self) -> float:
        """Seconds between each session's samples."""
    @property
    def max_connections(self) -> int:
        """Connections served at once (a session is one to 66); more are closed as they come, with a message."""
    @property
    def duration_s(self) -> float | None:
        """Stop after this many seconds; None = until stopped."""
    @property
    def idle_timeout_s(self) -> float:
        """A session that brings less than one page (4 KiB) in this many seconds is stalled, and closed (its slots go to other sources)."""
    #: How the command line spells each field (its options are built from it).
    FLAGS: ClassVar[list[dict[str, Any]]]
    #: Every field's default.
    DEFAULTS: ClassVar[dict[str, Any]]
    def __init__(self, *, bind: str | None = None, port: int = 12323, vm_size_gb: int = 1024, interval_s: float = 1.0, max_connections: int = 256, duration_s: float | None = None, idle_timeout_s: float = 30.0) -> None: ...
    def replace(self, **changes: Any) -> Self:
        """A copy with the given fields changed (validated again)."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class VmConnected:
    """A source connected (its main connection)."""

    @property
    def session(self) -> int:
        """Session number on this destination."""
    @property
    def peer(self) -> str:
        """The source, "ip:port"."""
    @property
    def extended(self) -> bool:
        """True when it speaks our extension (multifd, preempt)."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class VmPostcopy:
    """The source turned postcopy on."""

    @property
    def session(self) -> int:
        """Session number."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class VmDstSample:
    """One interval of one session, as the destination saw it."""

    @property
    def session(self) -> int:
        """Session number."""
    @property
    def elapsed_s(self) -> float:
        """Seconds since the session started, at the end of the interval."""
    @property
    def unix_s(self) -> float:
        """Wall-clock time at the end of the interval, Unix seconds (to the microsecond): the same timeline as every tool's events and QEMU's."""
    @property
    def duration_ms(self) -> int:
        """Length of the interval, ms."""
    @property
    def bytes(self) -> int:
        """Bytes received over all the session's connections."""
    @property
    def rate_mb_s(self) -> float:
        """Receive rate, MB/s."""
    @property
    def latency(self) -> Percentiles:
        """Page-request latencies in the interval (count 0 without postcopy)."""
    @property
    def latency_buckets(self) -> list[int]:
        """The same per bucket of `LATENCY_BUCKETS_S` (the last: longer), not cumulative (for metrics; not part of the JSON)."""
    @property
    def latency_sum_s(self) -> float:
        """Their sum, seconds (for metrics)."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class VmSessionSummary:
    """A session's figures at its end; also the message that says it ended."""

    @property
    def session(self) -> int:
        """Session number."""
    @property
    def peer(self) -> str:
        """The source, "ip:port"."""
    @property
    def duration_s(self) -> float:
        """Seconds from connect to end."""
    @property
    def bytes(self) -> int:
        """Bytes received over all connections."""
    @property
    def channels(self) -> int:
        """Multifd connections that joined."""
    @property
    def preempt(self) -> bool:
        """Whether a preempt connection joined."""
    @property
    def latency(self) -> Percentiles:
        """Page-request latencies over the session."""
    @property
    def latency_buckets(self) -> list[int]:
        """The same per bucket of `LATENCY_BUCKETS_S` (for metrics; not part of the JSON)."""
    @property
    def latency_sum_s(self) -> float:
        """Their sum, seconds (for metrics)."""
    @property
    def reason(self) -> str:
        """Why it ended ("source closed" is a normal end)."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class VmRejected:
    """A connection was refused before it became part of a session."""

    @property
    def peer(self) -> str:
        """Who, "ip:port"."""
    @property
    def reason(self) -> str:
        """Why."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class VmSourceConfig:
    """An emulated source's configuration. Sizes in GB, rates in MB/s, times in seconds."""

    @property
    def host(self) -> str:
        """The destination: an IPv4 or IPv6 address or a host name."""
    @property
    def port(self) -> int:
        """Its TCP port."""
    @property
    def vm_size_gb(self) -> int:
        """Guest size in GB (1 GB = 262144 pages of 4 KiB)."""
    @property
    def precopy(self) -> bool:
        """Stream precopy pages."""
    @property
    def postcopy(self) -> bool:
        """Ask the destination to request pages (postcopy)."""
    @property
    def channels(self) -> int:
        """Multifd connections for the precopy stream (0 = on main; at most 64)."""
    @property
    def preempt(self) -> bool:
        """Answer page requests on a connection of their own."""
    @property
    def return_path(self) -> Literal["preempt", "main"]:
        """With `preempt`: where the requests travel."""
    @property
    def max_bandwidth_mb_s(self) -> int | None:
        """Cap of the precopy stream, MB/s (also size text: `1G`); None = none."""
    @property
    def duration_s(self) -> float | None:
        """Stop after this many seconds; None = until stopped."""
    @property
    def interval_s(self) -> float:
        """Seconds between samples."""
    @property
    def connect_timeout_s(self) -> float:
        """Seconds to wait for each connection to the destination."""
    #: How the command line spells each field (its options are built from it).
    FLAGS: ClassVar[list[dict[str, Any]]]
    #: Every field's default.
    DEFAULTS: ClassVar[dict[str, Any]]
    def __init__(self, *, host: str = "", port: int = 12323, vm_size_gb: int = 1024, precopy: bool = True, postcopy: bool = False, channels: int = 0, preempt: bool = False, return_path: Literal["preempt", "main"] = "preempt", max_bandwidth_mb_s: int | str | None = None, duration_s: float | None = None, interval_s: float = 1.0, connect_timeout_s: float = 10.0) -> None: ...
    def replace(self, **changes: Any) -> Self:
        """A copy with the given fields changed (validated again)."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class VmSrcSample:
    """One interval of a source."""

    @property
    def index(self) -> int:
        """0 for the first interval."""
    @property
    def elapsed_s(self) -> float:
        """Seconds since the start, at the end of the interval."""
    @property
    def unix_s(self) -> float:
        """Wall-clock time at the end of the interval, Unix seconds (to the microsecond): the same timeline as every tool's events and QEMU's."""
    @property
    def duration_ms(self) -> int:
        """Length of the interval, ms."""
    @property
    def bytes(self) -> int:
        """Bytes sent over every connection (headers and pages)."""
    @property
    def rate_mb_s(self) -> float:
        """Send rate, MB/s."""
    @property
    def channel_mb_s(self) -> list[float]:
        """Send rate of each multifd connection, MB/s."""
    @property
    def requests(self) -> int:
        """Page requests answered in the interval."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

@final
class VmSrcSummary:
    """The whole run."""

    @property
    def duration_s(self) -> float:
        """Seconds from the start to the end."""
    @property
    def bytes(self) -> int:
        """Bytes sent."""
    @property
    def rate_mb_s(self) -> float:
        """Average rate, MB/s."""
    @property
    def peak_mb_s(self) -> float:
        """Best interval, MB/s."""
    @property
    def requests(self) -> int:
        """Page requests answered."""
    @property
    def channels(self) -> int:
        """Multifd connections used."""
    @property
    def preempt(self) -> bool:
        """Whether a preempt connection was used."""
    @property
    def end(self) -> Literal["duration", "stopped", "peer_closed", "error"]:
        """How it ended."""
    @property
    def end_reason(self) -> str:
        """The end in words ("duration reached", "stopped", or what went wrong)."""
    @property
    def intervals(self) -> int:
        """Number of intervals reported."""
    @property
    def samples(self) -> list[VmSrcSample]:
        """Every interval (not part of the JSON summary line)."""
    def to_dict(self) -> dict[str, Any]:
        """Every field, under the same keys as the JSON output."""

_C = TypeVar("_C")
_I = TypeVar("_I")
_R = TypeVar("_R")

class _Run(Generic[_C, _I, _R]):
    """What every background run has: built from its configuration (or its
    keyword arguments), items as they come, the result at the end (the
    protocol stated once; not a class at run time)."""

    def __init__(self, config: _C | None = None, **kwargs: Any) -> None: ...
    @property
    def config(self) -> _C: ...
    def next(self, timeout_s: float = 0.1) -> _I | None:
        """The next item, waiting at most ``timeout_s``."""
    def drain(self) -> list[_I]:
        """Every item ready now, without waiting."""
    def __iter__(self) -> Iterator[_I]: ...
    def __next__(self) -> _I: ...
    @property
    def done(self) -> bool: ...
    def request_stop(self) -> None: ...
    def stop(self) -> _R:
        """Ends the run; its result (the same object every time)."""
    def wait(self, timeout_s: float | None = None) -> _R | None:
        """Waits for the run to end by itself; None on timeout."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        et: type[BaseException] | None,
        e: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...

@final
class DirtyWorkload(_Run[DirtyConfig, DirtySample | DirtyPause, DirtySummary]):
    """A background run of a :class:`DirtyConfig` (or of its keyword arguments)."""

    @property
    def phase(self) -> Literal["prefaulting", "dirtying", "stopping", "done"]: ...
    @property
    def prefault_progress(self) -> tuple[int, int]:
        """(pages prefaulted, total pages), 4 KiB pages."""
    @property
    def region_address(self) -> int:
        """Address of the dirtied region in this process."""
    @property
    def page_size_bytes(self) -> int: ...
    def wait_prefaulted(self, timeout_s: float | None = None) -> bool:
        """True once every page is prefaulted; False on timeout or end."""

@final
class VmSource(_Run[VmSourceConfig, VmSrcSample, VmSrcSummary]):
    """A background run of a :class:`VmSourceConfig` (or of its keyword arguments)."""

    ...

@final
class VmDestination(_Run[VmDestinationConfig, VmConnected | VmPostcopy | VmDstSample | VmSessionSummary | VmRejected, list[VmSessionSummary]]):
    """A background run of a :class:`VmDestinationConfig` (or of its keyword arguments)."""

    @property
    def port(self) -> int: ...
    @property
    def address(self) -> str: ...
    @property
    def active(self) -> int:
        """Sessions running now."""
    @property
    def max_connections(self) -> int:
        """Connections served at once: max_connections, or fewer where the descriptor limit allows fewer (5 each)."""

@final
class EchoServer(_Run[EchoServerConfig, NewClient, EchoStats]):
    """A background run of a :class:`EchoServerConfig` (or of its keyword arguments)."""

    @property
    def port(self) -> int: ...
    @property
    def address(self) -> str: ...
    def stats(self) -> EchoStats:
        """The counters so far."""

@final
class OneWayServer(_Run[OneWayServerConfig, NewClient | Baseline | DowntimeEvent, OneWaySummary]):
    """A background run of a :class:`OneWayServerConfig` (or of its keyword arguments)."""

    @property
    def port(self) -> int: ...
    @property
    def address(self) -> str: ...
    def clients(self) -> list[ClientSummary]:
        """Every client's figures so far (retired ones included)."""
    def recent_clients(self, n: int) -> list[ClientSummary]:
        """Up to ``n`` clients being measured, the most recently heard first."""
    @property
    def client_count(self) -> int:
        """How many clients are being measured now."""

@final
class Prober(_Run[ProbeConfig, Baseline | DowntimeEvent | NoReply, ProbeSummary]):
    """A background run of a :class:`ProbeConfig` (or of its keyword arguments)."""

    @property
    def status(self) -> ProbeStatus:
        """Live figures (sent, received, gaps, last RTT)."""
