//! The probing client: sends a probe every interval on absolute deadlines
//! (no drift) to an echo server in the guest, times each reply with the
//! monotonic clock, counts loss, duplicates and reordering from sequence
//! numbers, and turns gaps between replies into downtime events.
//!
//! With `one_way` it only sends, for the one-way server (`mig_mon server`),
//! which does the measuring.

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::downtime::gap::{ms, Arrival, Baseline, DowntimeEvent, GapDetector};
use crate::downtime::wire::{Probe, PROBE_LEN};
use crate::error::{Error, Result};
use crate::pace::{mono_ns, tighten_timer_slack, unix_at, wall_to_mono};
use crate::run::{lock, Background, Ctx};
use crate::sock::{
    connect_udp, enable_rx_timestamps, recv_stamped, resolve, wait_readable, StampedBatch,
};
use crate::stats::{LatencyBuckets, LatencyHistogram, Percentiles, LATENCY_BUCKETS};
use crate::units::{self, de};

/// Our own send times are kept for this many probes: a reply is timed by
/// our record of when its probe left, never by what the datagram says.
const SENT_RING: u64 = 1 << 16;

/// After how long without any reply the client warns once.
/// When a client that has heard nothing says so (seconds since the first
/// probe); after the last, once a minute. It keeps probing all along.
const NO_REPLY_WARNINGS: [u64; 4] = [3, 10, 30, 60];

/// A probe run's configuration (`client`). The interval and the threshold
/// are in ms, as the original's command line has them; the run's length in
/// seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct ProbeConfig {
    /// The echo (or one-way) server: an address or a host name.
    pub server: String,
    /// Its UDP port.
    #[serde(deserialize_with = "de::int")]
    pub port: u16,
    /// Time between probes, ms.
    #[serde(deserialize_with = "de::float")]
    pub interval_ms: f64,
    /// A gap this long is a downtime event, ms; None = twice the median of
    /// the first four gaps, never below twice the interval.
    #[serde(deserialize_with = "de::opt_float")]
    pub threshold_ms: Option<f64>,
    /// Stop after sending this many probes.
    #[serde(deserialize_with = "de::opt_int")]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[serde(deserialize_with = "de::opt_float")]
    pub duration_s: Option<f64>,
    /// Only send, for a one-way server.
    #[serde(deserialize_with = "de::flag")]
    pub one_way: bool,
}

/// The shortest probe interval, ms.
pub const MIN_INTERVAL_MS: f64 = 0.01;

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            server: String::new(),
            port: crate::DEFAULT_PORT,
            interval_ms: 1000.0,
            threshold_ms: None,
            count: None,
            duration_s: None,
            one_way: false,
        }
    }
}

/// What the run works from.
struct Plan {
    one_way: bool,
    count: Option<u64>,
    peer: String,
    interval: Duration,
    threshold: Option<Duration>,
    duration: Option<Duration>,
}

impl ProbeConfig {
    /// Rejects values a run cannot honour.
    pub fn validate(&self) -> Result<()> {
        self.plan_times().map(|_| ())
    }

    fn plan_times(&self) -> Result<(Duration, Option<Duration>, Option<Duration>)> {
        if self.server.trim().is_empty() {
            return Err(Error::field("server", "the server address is required"));
        }
        if self.port == 0 {
            return Err(Error::field("port", "must not be 0"));
        }
        let interval = units::millis("interval_ms", self.interval_ms)?;
        if self.interval_ms < MIN_INTERVAL_MS {
            return Err(Error::field(
                "interval_ms",
                format!(
                    "must be at least {MIN_INTERVAL_MS} ms, not {}",
                    units::num(self.interval_ms)
                ),
            ));
        }
        if self.count == Some(0) {
            return Err(Error::field("count", "must be at least 1"));
        }
        let threshold = self
            .threshold_ms
            .map(|t| units::millis("threshold_ms", t))
            .transpose()?;
        let duration = units::run_length(self.duration_s)?;
        Ok((interval, threshold, duration))
    }
}

/// Something worth telling as it happens.
#[derive(Clone, Debug, PartialEq)]
pub enum ProbeMessage {
    /// The first two replies set the baseline (the original prints it).
    Baseline(Baseline),
    /// A downtime.
    Event(DowntimeEvent),
    /// No reply at all yet.
    NoReply(NoReply),
}

/// No reply at all yet: the server may be one-way, down or filtered.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename = "no_reply")]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct NoReply {
    /// Seconds since the first probe.
    pub after_s: f64,
    /// Sends refused so far: the kernel was told nothing listens there.
    pub refused: u64,
    /// Datagrams that came back but are not our probes (wrong magic, or
    /// not one we sent): something else answers on that port.
    pub foreign: u64,
    /// Sends the kernel refused (no route, link down).
    pub send_errors: u64,
}

/// A live view of the run (the original's status line and more).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct ProbeStatus {
    /// Probes sent.
    pub sent: u64,
    /// Distinct probes answered.
    pub received: u64,
    /// Largest gap between replies after the baseline, ms.
    pub max_gap_ms: f64,
    /// Latest gap between replies, ms.
    pub cur_gap_ms: f64,
    /// Time since the last reply, ms (grows during an outage).
    pub since_last_reply_ms: f64,
    /// Latest round trip, ms.
    pub last_rtt_ms: f64,
    /// Downtime events so far.
    pub events: u64,
    /// Probes that got no reply although a later one did (those after the
    /// latest reply are still in flight, or in an outage, and not counted).
    pub lost: u64,
    /// Extra copies of answered probes.
    pub duplicates: u64,
    /// Replies that came after a reply to a later probe.
    pub reordered: u64,
    /// Send slots skipped because the client itself was stalled.
    pub skipped: u64,
    /// Spike threshold, ms (None until the baseline is set).
    pub threshold_ms: Option<f64>,
    /// Sum of the events' blackouts, ms.
    pub total_downtime_ms: f64,
    /// Round trips per bucket of `LATENCY_BUCKETS_S` (the last: longer),
    /// not cumulative (for metrics; not part of the JSON).
    #[serde(skip)]
    pub rtt_buckets: [u64; LATENCY_BUCKETS],
    /// Sum of every round trip, seconds (for metrics).
    #[serde(skip)]
    pub rtt_sum_s: f64,
}

/// The whole run's figures.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename = "summary")]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct ProbeSummary {
    /// Seconds from the first probe to the end.
    pub duration_s: f64,
    /// Probe interval, ms.
    pub interval_ms: f64,
    /// Only sent.
    pub one_way: bool,
    /// Probes sent.
    pub sent: u64,
    /// Distinct probes answered.
    pub received: u64,
    /// Probes never answered.
    pub lost: u64,
    /// Extra copies of answered probes.
    pub duplicates: u64,
    /// Replies that came after a reply to a later probe.
    pub reordered: u64,
    /// "Connection refused" (the server's port was closed).
    pub refused: u64,
    /// Replies that were not our probes.
    pub foreign: u64,
    /// Sends the kernel refused (no route, link down).
    pub send_errors: u64,
    /// Send slots skipped because the client itself was stalled.
    pub skipped: u64,
    /// Events during which the client itself stalled (see
    /// `client_stall_ms` of each event).
    pub client_stalled_events: u64,
    /// Round-trip times (none for one-way).
    pub rtt: Option<Percentiles>,
    /// Actual minus planned send time.
    pub send_jitter: Percentiles,
    /// Gap between the first two replies, ms.
    pub baseline_gap_ms: Option<f64>,
    /// Spike threshold, ms.
    pub threshold_ms: Option<f64>,
    /// Largest gap between replies after the baseline, ms.
    pub max_gap_ms: f64,
    /// Sum of the events' blackouts, ms.
    pub total_downtime_ms: f64,
    /// Largest event blackout, ms.
    pub worst_downtime_ms: f64,
    /// Time since the last reply when the run ended, ms (an outage still
    /// going on shows here, not as an event).
    pub open_gap_ms: f64,
    /// Downtime events, in all (also those not listed).
    pub event_count: u64,
    /// The downtime events: the first [`KEPT_EVENTS`] of the run (each
    /// was also told as it happened); the totals count them all.
    pub events: Vec<DowntimeEvent>,
}

/// Events a client lists in its summary: a day of 1 ms probes on a loaded
/// machine must not grow without bound (about 15 MB at most).
pub const KEPT_EVENTS: usize = 100_000;

/// Running totals of a run's events, whether listed or not.
#[derive(Default)]
struct EventTotals {
    count: u64,
    stalled: u64,
    total_blackout_ms: f64,
    worst_blackout_ms: f64,
}

/// A probe run in a background thread.
pub struct ProbeRun {
    status: Arc<Mutex<ProbeStatus>>,
    bg: Background<ProbeMessage, ProbeSummary>,
}

impl ProbeRun {
    /// Validates, opens the socket and starts probing.
    pub fn start(cfg: ProbeConfig) -> Result<Self> {
        let (interval, threshold, duration) = cfg.plan_times()?;
        let target = resolve(&cfg.server, cfg.port)?;
        let sock = connect_udp(target)?;
        sock.set_nonblocking(true)
            .map_err(|e| Error::network("making the socket non-blocking", e))?;
        let plan = Plan {
            one_way: cfg.one_way,
            count: cfg.count,
            peer: target.to_string(),
            interval,
            threshold,
            duration,
        };
        let status: Arc<Mutex<ProbeStatus>> = Arc::default();
        let st = status.clone();
        let bg = Background::spawn("probe", move |ctx| Prober::new(&plan, ctx, &st).run(&sock))?;
        Ok(Self { status, bg })
    }

    /// A snapshot of the live figures.
    pub fn status(&self) -> ProbeStatus {
        lock(&self.status).clone()
    }

    /// The messages, the stop and the summary.
    pub fn background(&self) -> &Background<ProbeMessage, ProbeSummary> {
        &self.bg
    }
}

/// Which sequence numbers have been answered.
#[derive(Default)]
struct SeqSet(Vec<u64>);

impl SeqSet {
    /// Marks `seq`; false if it was already marked.
    fn insert(&mut self, seq: u64) -> bool {
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        let had = self.0[w] & (1 << b) != 0;
        self.0[w] |= 1 << b;
        !had
    }
}

/// A send that left later than planned: when, and how late, ns.
#[derive(Clone, Copy)]
struct LateSend {
    at_ns: u64,
    late_ns: u64,
}

/// How many late sends are remembered for the events that follow.
const LATE_SENDS: usize = 64;

struct Prober<'a> {
    sending_ended_ns: u64,
    sent_at: Vec<u64>,
    late: std::collections::VecDeque<LateSend>,
    cfg: &'a Plan,
    ctx: &'a Ctx<ProbeMessage>,
    status: &'a Mutex<ProbeStatus>,
    start_ns: u64,
    sent: u64,
    received: u64,
    duplicates: u64,
    reordered: u64,
    refused: u64,
    foreign: u64,
    send_errors: u64,
    skipped: u64,
    max_seq: Option<u64>,
    answered: SeqSet,
    rtt: LatencyHistogram,
    rtt_buckets: LatencyBuckets,
    jitter: LatencyHistogram,
    gaps: GapDetector,
    events: Vec<DowntimeEvent>,
    totals: EventTotals,
    last_rtt_ns: u64,
}

impl<'a> Prober<'a> {
    fn new(cfg: &'a Plan, ctx: &'a Ctx<ProbeMessage>, status: &'a Mutex<ProbeStatus>) -> Self {
        Self {
            sending_ended_ns: 0,
            sent_at: vec![0; SENT_RING as usize],
            late: std::collections::VecDeque::with_capacity(LATE_SENDS),
            cfg,
            ctx,
            status,
            start_ns: mono_ns(),
            sent: 0,
            received: 0,
            duplicates: 0,
            reordered: 0,
            refused: 0,
            foreign: 0,
            send_errors: 0,
            skipped: 0,
            max_seq: None,
            answered: SeqSet::default(),
            rtt: LatencyHistogram::new(),
            rtt_buckets: LatencyBuckets::default(),
            jitter: LatencyHistogram::new(),
            gaps: GapDetector::new(
                cfg.threshold.map(|t| t.as_nanos() as u64),
                // A probe missed is a gap of two intervals: the floor.
                cfg.interval.as_nanos() as u64 * 2,
            ),
            events: Vec::new(),
            totals: EventTotals::default(),
            last_rtt_ns: 0,
        }
    }

    fn run(mut self, sock: &UdpSocket) -> Result<ProbeSummary> {
        tighten_timer_slack();
        // Replies are timed when the kernel received them, so a client
        // thread that ran late does not lengthen a gap. (The kernel turns
        // stamping on a moment after the first socket asks; a reply before
        // that is stamped when read, as without stamps.)
        enable_rx_timestamps(sock);
        let interval = self.cfg.interval;
        let start = Instant::now();
        self.start_ns = mono_ns();
        let end = self.cfg.duration.map(|d| start + d);
        let mut next_send = start;
        let mut warnings = 0usize;
        let mut buf = vec![0u8; 65_536];
        let mut batch = StampedBatch::default();
        loop {
            let now = Instant::now();
            if self.ctx.stop.is_set() || end.is_some_and(|e| now >= e) {
                break;
            }
            let all_sent = self.cfg.count.is_some_and(|c| self.sent >= c);
            if all_sent {
                break;
            }
            if now >= next_send {
                let late = now - next_send;
                self.jitter.record(late.as_nanos() as u64);
                if late > interval / 2 {
                    // The thread itself did not run in time.
                    if self.late.len() == LATE_SENDS {
                        self.late.pop_front();
                    }
                    self.late.push_back(LateSend {
                        at_ns: mono_ns(),
                        late_ns: late.as_nanos() as u64,
                    });
                }
                self.send(sock);
                next_send += interval;
                // A client that was itself stalled (suspended, starved)
                // does not fire a burst of catch-up probes.
                while next_send + interval < now {
                    next_send += interval;
                    self.skipped += 1;
                }
                self.publish();
            }
            let mut wake = next_send.min(now + Duration::from_millis(100));
            if let Some(e) = end {
                wake = wake.min(e);
            }
            // One wake-up per probe: replies are not waited for, since the
            // kernel stamps each on arrival; they are taken, all at once,
            // when the thread wakes to send the next probe.
            self.ctx.stop.sleep_until(wake);
            self.drain_all(sock, &mut batch);
            let due = NO_REPLY_WARNINGS
                .get(warnings)
                .copied()
                .unwrap_or_else(|| 60 * (warnings as u64).saturating_sub(2));
            if !self.cfg.one_way && self.received == 0 && start.elapsed().as_secs() >= due {
                warnings += 1;
                self.ctx.send(ProbeMessage::NoReply(NoReply {
                    after_s: start.elapsed().as_secs_f64(),
                    refused: self.refused,
                    foreign: self.foreign,
                    send_errors: self.send_errors,
                }));
            }
        }
        // Whether an outage is still open is judged when sending ended, not
        // after the grace below (lost probes' replies never come).
        self.sending_ended_ns = mono_ns();
        if !self.cfg.one_way {
            // Give the last probes' replies a moment to come back.
            let grace = (interval * 2).clamp(Duration::from_millis(50), Duration::from_secs(1));
            let until = Instant::now() + grace;
            while self.received < self.sent && Instant::now() < until {
                if wait_readable(sock, until.saturating_duration_since(Instant::now())) {
                    self.drain(sock, &mut buf);
                }
            }
        }
        self.publish();
        Ok(self.summary(start.elapsed()))
    }

    fn send(&mut self, sock: &UdpSocket) {
        let probe = Probe {
            seq: self.sent,
            sent_ns: mono_ns(),
        };
        self.sent_at[(probe.seq % SENT_RING) as usize] = probe.sent_ns;
        let bytes = probe.encode();
        for _attempt in 0..2 {
            match sock.send(&bytes) {
                Ok(_) => {
                    self.sent += 1;
                    return;
                }
                // An ICMP "port unreachable" from an earlier probe is
                // reported here; the server is down, send again.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => self.refused += 1,
                Err(_) => {
                    self.send_errors += 1;
                    break;
                }
            }
        }
        // Not sent, but its slot is used: count it as sent and lost, so a
        // dead link shows as loss.
        self.sent += 1;
    }

    /// One datagram the socket said is there. One receive per wake-up:
    /// with more queued (a burst after an outage), the next poll returns at
    /// once, so nothing waits, and the usual reply costs no extra receive
    /// that only says "nothing more".
    /// Every reply waiting, in as few system calls as it takes.
    fn drain_all(&mut self, sock: &UdpSocket, batch: &mut StampedBatch) {
        loop {
            match batch.recv(sock) {
                Ok(0) => return,
                Ok(n) => {
                    for i in 0..n {
                        let (data, stamp) = batch.get(i);
                        let arrival = stamp.map_or_else(mono_ns, wall_to_mono);
                        self.on_reply(data, arrival);
                    }
                    if n < crate::sock::BATCH {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => self.refused += 1,
                Err(_) => return,
            }
        }
    }

    fn drain(&mut self, sock: &UdpSocket, buf: &mut [u8]) {
        match recv_stamped(sock, buf) {
            Ok((n, stamp)) => {
                let arrival = stamp.map_or_else(mono_ns, wall_to_mono);
                self.on_reply(&buf[..n], arrival);
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => self.refused += 1,
            Err(_) => {}
        }
    }

    fn on_reply(&mut self, data: &[u8], arrival: u64) {
        if self.cfg.one_way {
            return;
        }
        // Ours, sent, and recent enough that we still know when it left.
        let Some(p) =
            Probe::decode(data).filter(|p| p.seq < self.sent && self.sent - p.seq <= SENT_RING)
        else {
            self.foreign += 1;
            return;
        };
        let sent_ns = self.sent_at[(p.seq % SENT_RING) as usize];
        debug_assert!(data.len() >= PROBE_LEN);
        if !self.answered.insert(p.seq) {
            self.duplicates += 1;
            return;
        }
        self.received += 1;
        self.last_rtt_ns = arrival.saturating_sub(sent_ns);
        self.rtt.record(self.last_rtt_ns);
        self.rtt_buckets.record(self.last_rtt_ns);
        let hi_before = self.max_seq;
        match self.max_seq {
            Some(m) if p.seq < m => self.reordered += 1,
            _ => self.max_seq = Some(p.seq),
        }
        match self.gaps.arrive(arrival) {
            Arrival::Baseline {
                gap_ns,
                median_ns,
                threshold_ns,
            } => self.ctx.send(ProbeMessage::Baseline(Baseline {
                peer: None,
                gap_ms: ms(gap_ns),
                median_gap_ms: ms(median_ns),
                threshold_ms: ms(threshold_ns),
                unix_s: unix_at(arrival),
            })),
            Arrival::Spike { gap_ns, since_ns } => {
                // Probes sent after the last one answered before the gap,
                // except this one when it is the newest (sent after the
                // outage, answered in time).
                let newest = self.sent - 1;
                let after = hi_before.map_or(self.sent, |h| newest.saturating_sub(h));
                let missed = if p.seq == newest {
                    after.saturating_sub(1)
                } else {
                    after
                };
                self.event(gap_ns, since_ns, missed);
            }
            _ => {}
        }
        self.publish();
    }

    fn event(&mut self, gap_ns: u64, since_ns: u64, probes_missed: u64) {
        let interval_ns = self.cfg.interval.as_nanos() as u64;
        let mut ev = DowntimeEvent::new(
            self.totals.count,
            Some(self.cfg.peer.clone()),
            since_ns,
            self.start_ns,
            gap_ns,
            interval_ns,
            probes_missed,
        );
        // Our own late sends inside the gap: the client's share of it.
        let until = since_ns.saturating_add(gap_ns);
        let stall: u64 = self
            .late
            .iter()
            .filter(|l| l.at_ns >= since_ns && l.at_ns <= until)
            .map(|l| l.late_ns)
            .sum();
        ev.client_stall_ms = ms(stall.min(gap_ns));
        self.record(ev);
    }

    /// Counts an event, lists it while the list has room, tells it.
    fn record(&mut self, ev: DowntimeEvent) {
        let t = &mut self.totals;
        t.count += 1;
        t.stalled += u64::from(ev.client_stall_ms > 0.0);
        t.total_blackout_ms += ev.blackout_ms;
        t.worst_blackout_ms = t.worst_blackout_ms.max(ev.blackout_ms);
        // The open outage at the end is always listed: it is the one the
        // summary speaks of.
        if self.events.len() < KEPT_EVENTS || ev.open {
            self.events.push(ev.clone());
        }
        self.ctx.send(ProbeMessage::Event(ev));
    }

    fn publish(&self) {
        let now = mono_ns();
        let st = ProbeStatus {
            sent: self.sent,
            received: self.received,
            max_gap_ms: ms(self.gaps.max_gap_ns()),
            cur_gap_ms: ms(self.gaps.cur_gap_ns()),
            since_last_reply_ms: ms(self.gaps.last_ns().map_or(0, |l| now.saturating_sub(l))),
            last_rtt_ms: ms(self.last_rtt_ns),
            events: self.totals.count,
            lost: self
                .max_seq
                .map_or(0, |m| (m + 1).saturating_sub(self.received)),
            duplicates: self.duplicates,
            reordered: self.reordered,
            skipped: self.skipped,
            threshold_ms: self.gaps.threshold_ns().map(ms),
            total_downtime_ms: self.totals.total_blackout_ms,
            rtt_buckets: self.rtt_buckets.counts,
            rtt_sum_s: self.rtt_buckets.sum_ns as f64 / 1e9,
        };
        *lock(self.status) = st;
    }

    fn summary(mut self, elapsed: Duration) -> ProbeSummary {
        let end_ns = self.sending_ended_ns;
        let last = self.gaps.last_ns();
        let open_gap_ns = last.map_or(0, |l| end_ns.saturating_sub(l));
        // An outage still going on at the end is downtime too: an event
        // marked open, counted in the totals.
        if let (Some(l), Some(t)) = (last, self.gaps.threshold_ns()) {
            if !self.cfg.one_way && open_gap_ns >= t {
                let missed = self.sent.saturating_sub(self.max_seq.map_or(0, |m| m + 1));
                let mut ev = DowntimeEvent::new(
                    self.totals.count,
                    Some(self.cfg.peer.clone()),
                    l,
                    self.start_ns,
                    open_gap_ns,
                    self.cfg.interval.as_nanos() as u64,
                    missed,
                );
                ev.open = true;
                self.record(ev);
            }
        }
        ProbeSummary {
            duration_s: elapsed.as_secs_f64(),
            interval_ms: ms(self.cfg.interval.as_nanos() as u64),
            one_way: self.cfg.one_way,
            sent: self.sent,
            received: self.received,
            lost: if self.cfg.one_way {
                0
            } else {
                self.sent - self.received
            },
            duplicates: self.duplicates,
            reordered: self.reordered,
            refused: self.refused,
            foreign: self.foreign,
            send_errors: self.send_errors,
            skipped: self.skipped,
            client_stalled_events: self.totals.stalled,
            rtt: (!self.cfg.one_way).then(|| self.rtt.percentiles()),
            send_jitter: self.jitter.percentiles(),
            baseline_gap_ms: self.gaps.baseline_ns().map(ms),
            threshold_ms: self.gaps.threshold_ns().map(ms),
            max_gap_ms: ms(self.gaps.max_gap_ns()),
            total_downtime_ms: self.totals.total_blackout_ms,
            worst_downtime_ms: self.totals.worst_blackout_ms,
            open_gap_ms: ms(open_gap_ns),
            event_count: self.totals.count,
            events: self.events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::downtime::echo::{EchoServer, EchoServerConfig};
    use std::net::SocketAddr;

    fn cfg(target: SocketAddr) -> ProbeConfig {
        ProbeConfig {
            server: target.ip().to_string(),
            port: target.port(),
            interval_ms: 5.0,
            count: Some(100),
            ..ProbeConfig::default()
        }
    }

    fn wait(run: &ProbeRun) -> ProbeSummary {
        while !run.background().is_done() {
            std::thread::sleep(Duration::from_millis(20));
        }
        run.background().stop().unwrap()
    }

    #[test]
    fn round_trips_against_our_echo_server() {
        let srv = EchoServer::start(EchoServerConfig {
            bind: Some("127.0.0.1".into()),
            port: 0,
            duration_s: None,
        })
        .unwrap();
        let run = ProbeRun::start(cfg(srv.local_addr())).unwrap();
        let s = wait(&run);
        assert_eq!(s.sent, 100);
        assert_eq!(s.received, 100);
        assert_eq!(s.lost + s.duplicates + s.foreign, 0);
        let rtt = s.rtt.unwrap();
        assert!(rtt.count == 100 && rtt.p50_ns > 0);
        // 100 probes at 5 ms: ~495 ms of sending, no drift.
        assert!(
            s.duration_s > 0.49 && s.duration_s < 1.6,
            "{}",
            s.duration_s
        );
        assert_eq!(srv.background().stop().unwrap().probes, 100);
    }

    #[test]
    fn dead_server_is_all_loss_and_says_so() {
        // Bind then drop: nothing listens there.
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let run = ProbeRun::start(ProbeConfig {
            count: Some(20),
            ..cfg(format!("127.0.0.1:{port}").parse().unwrap())
        })
        .unwrap();
        let s = wait(&run);
        assert_eq!((s.sent, s.received, s.lost), (20, 0, 20));
        assert!(s.refused > 0);
    }

    #[test]
    fn seqset_marks_once() {
        let mut s = SeqSet::default();
        assert!(s.insert(0));
        assert!(s.insert(1000));
        assert!(!s.insert(1000));
    }

    #[test]
    fn validation() {
        let t: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for bad in [0.0, -1.0, f64::INFINITY, f64::NAN, 1e300, 0.001] {
            assert!(
                ProbeConfig {
                    interval_ms: bad,
                    ..cfg(t)
                }
                .validate()
                .is_err(),
                "{bad}"
            );
        }
        assert!(ProbeConfig {
            count: Some(0),
            ..cfg(t)
        }
        .validate()
        .is_err());
        assert!(ProbeConfig {
            server: String::new(),
            ..cfg(t)
        }
        .validate()
        .is_err());
        assert!(cfg(t).validate().is_ok());
    }
}
