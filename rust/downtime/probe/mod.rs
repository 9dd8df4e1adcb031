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

use crate::downtime::gap::{ms, Arrival, Baseline, DowntimeEvent, GapDetector};
use crate::downtime::wire::{Probe, PROBE_LEN};
use crate::error::{Error, Result};
use crate::pace::{mono_ns, tighten_timer_slack, unix_at, wall_to_mono};
use crate::run::{lock, Background, Ctx};
use crate::sock::{
    connect_udp, enable_rx_timestamps, recv_stamped, resolve, wait_readable, StampedBatch,
};
use crate::stats::{LatencyBuckets, LatencyHistogram};

mod config;
mod data;
mod seqset;

use config::Plan;
pub use config::{ProbeConfig, MIN_INTERVAL_MS};
pub use data::{NoReply, ProbeMessage, ProbeStatus, ProbeSummary, KEPT_EVENTS};
use seqset::SeqSet;

/// Our own send times are kept for this many probes: a reply is timed by
/// our record of when its probe left, never by what the datagram says.
const SENT_RING: u64 = 1 << 16;

/// After how long without any reply the client warns once.
/// When a client that has heard nothing says so (seconds since the first
/// probe); after the last, once a minute. It keeps probing all along.
const NO_REPLY_WARNINGS: [u64; 4] = [3, 10, 30, 60];

/// Running totals of a run's events, whether listed or not.
#[derive(Default)]
struct EventTotals {
    count: u64,
    stalled: u64,
    total_blackout_ms: f64,
    worst_blackout_ms: f64,
}

/// A probe run in a background thread.
pub struct Prober {
    status: Arc<Mutex<ProbeStatus>>,
    bg: Background<ProbeMessage, ProbeSummary>,
}

impl Prober {
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
        let bg = Background::spawn("probe", move |ctx| {
            ProbeLoop::new(&plan, ctx, &st).run(&sock)
        })?;
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

/// A send that left later than planned: when, and how late, ns.
#[derive(Clone, Copy)]
struct LateSend {
    at_ns: u64,
    late_ns: u64,
}

/// How many late sends are remembered for the events that follow.
const LATE_SENDS: usize = 64;

struct ProbeLoop<'a> {
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

impl<'a> ProbeLoop<'a> {
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
mod tests;
