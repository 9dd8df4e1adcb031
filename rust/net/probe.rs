//! The probing client: sends a probe every interval on absolute deadlines
//! (no drift) to an echo server in the guest, times each reply with the
//! monotonic clock, counts loss, duplicates and reordering from sequence
//! numbers, and turns gaps between replies into downtime events.
//!
//! With `one_way` it only sends, for the one-way server (`mig_mon server`),
//! which does the measuring.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::net::gap::{Arrival, DowntimeEvent, GapDetector};
use crate::net::sock::{connect_udp, wait_readable};
use crate::net::wire::{Probe, PROBE_LEN};
use crate::pace::{mono_ns, tighten_timer_slack, unix_at, StopFlag};
use crate::stats::{LatencyHistogram, Percentiles};
use crate::sync::{Mailbox, Task};

/// After how long without any reply the client warns once.
const NO_REPLY_WARNING: Duration = Duration::from_secs(3);

/// What a probe run does.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// The echo (or one-way) server.
    pub target: SocketAddr,
    /// Time between probes.
    pub interval: Duration,
    /// Fixed spike threshold; None = the original's rule (2x the first gap).
    pub threshold: Option<Duration>,
    /// Stop after sending this many probes.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Only send (for a one-way server).
    pub one_way: bool,
}

impl ProbeConfig {
    /// Rejects values a run cannot honour.
    pub fn validate(&self) -> Result<()> {
        if self.interval.is_zero() {
            return Err(Error::invalid("interval must be greater than zero"));
        }
        if self.count == Some(0) {
            return Err(Error::invalid("count must be at least 1"));
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err(Error::invalid("duration must be greater than zero"));
        }
        if self.threshold.is_some_and(|t| t.is_zero()) {
            return Err(Error::invalid("threshold must be greater than zero"));
        }
        if self.target.port() == 0 {
            return Err(Error::invalid("port must not be 0"));
        }
        Ok(())
    }
}

/// Something worth telling as it happens.
#[derive(Clone, Debug, PartialEq)]
pub enum ProbeMessage {
    /// The first two replies set the baseline (the original prints it).
    Baseline {
        /// Gap between the first two replies, ns.
        gap_ns: u64,
        /// Spike threshold from now on, ns.
        threshold_ns: u64,
        /// Wall-clock time, Unix seconds.
        unix_s: f64,
    },
    /// A downtime.
    Event(DowntimeEvent),
    /// No reply at all yet, after this many seconds.
    NoReply {
        /// Seconds since the first probe.
        after_s: f64,
    },
}

/// A live view of the run (the original's status line and more).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeStatus {
    /// Probes sent.
    pub sent: u64,
    /// Distinct probes answered.
    pub received: u64,
    /// Largest gap between replies after the baseline, ns.
    pub max_gap_ns: u64,
    /// Latest gap between replies, ns.
    pub cur_gap_ns: u64,
    /// Time since the last reply, ns (grows during an outage).
    pub since_last_reply_ns: u64,
    /// Latest round trip, ns.
    pub last_rtt_ns: u64,
    /// Downtime events so far.
    pub events: u64,
}

/// The whole run's figures.
#[derive(Clone, Debug)]
pub struct ProbeSummary {
    /// Seconds from the first probe to the end.
    pub duration_s: f64,
    /// Probe interval, ns.
    pub interval_ns: u64,
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
    /// Round-trip times (none for one-way).
    pub rtt: Option<Percentiles>,
    /// Actual minus planned send time, ns.
    pub send_jitter: Percentiles,
    /// Gap between the first two replies, ns.
    pub baseline_gap_ns: Option<u64>,
    /// Spike threshold, ns.
    pub threshold_ns: Option<u64>,
    /// Every downtime event.
    pub events: Vec<DowntimeEvent>,
    /// Largest gap between replies after the baseline, ns.
    pub max_gap_ns: u64,
    /// Sum of the events' blackouts, ns.
    pub total_downtime_ns: u64,
    /// Largest event blackout, ns.
    pub worst_downtime_ns: u64,
    /// Time since the last reply when the run ended, ns (an outage still
    /// going on shows here, not as an event).
    pub open_gap_ns: u64,
    /// Only sent.
    pub one_way: bool,
}

struct Shared {
    stop: StopFlag,
    messages: Mailbox<ProbeMessage>,
    status: Mutex<ProbeStatus>,
    done: AtomicBool,
}

impl Shared {
    fn push(&self, m: ProbeMessage) {
        self.messages.push(m);
    }
}

/// A probe run in a background thread.
pub struct ProbeRun {
    shared: Arc<Shared>,
    handle: Task<ProbeSummary>,
}

impl ProbeRun {
    /// Validates, opens the socket and starts probing.
    pub fn start(cfg: ProbeConfig) -> Result<Self> {
        cfg.validate()?;
        let sock = connect_udp(cfg.target)?;
        sock.set_nonblocking(true)
            .map_err(|e| Error::io("making the socket non-blocking", e))?;
        let shared = Arc::new(Shared {
            stop: StopFlag::new(),
            messages: Mailbox::default(),
            status: Mutex::new(ProbeStatus::default()),
            done: Default::default(),
        });
        let handle = {
            let shared = shared.clone();
            Task::spawn("probe", move || {
                let r = Prober::new(&cfg, &shared).run(&sock);
                shared.done.store(true, Ordering::Release);
                shared.messages.wake();
                r
            })?
        };
        Ok(Self { shared, handle })
    }

    /// The next message, waiting up to `timeout`.
    pub fn next_message(&self, timeout: Duration) -> Option<ProbeMessage> {
        self.shared.messages.pop_wait(timeout, || self.is_done())
    }

    /// A snapshot of the live figures.
    pub fn status(&self) -> ProbeStatus {
        self.shared
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// True once the run ended (count or duration reached, or stopped).
    pub fn is_done(&self) -> bool {
        self.shared.done.load(Ordering::Acquire)
    }

    /// Asks the run to end; returns at once.
    pub fn request_stop(&self) {
        self.shared.stop.stop();
    }

    /// Ends the run and returns its summary (a second call fails).
    pub fn stop(&self) -> Result<ProbeSummary> {
        self.request_stop();
        self.handle.join()
    }
}

impl Drop for ProbeRun {
    fn drop(&mut self) {
        self.request_stop();
        self.handle.join_quietly();
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

struct Prober<'a> {
    cfg: &'a ProbeConfig,
    shared: &'a Shared,
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
    jitter: LatencyHistogram,
    gaps: GapDetector,
    events: Vec<DowntimeEvent>,
    last_rtt_ns: u64,
}

impl<'a> Prober<'a> {
    fn new(cfg: &'a ProbeConfig, shared: &'a Shared) -> Self {
        Self {
            cfg,
            shared,
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
            jitter: LatencyHistogram::new(),
            gaps: GapDetector::new(cfg.threshold.map(|t| t.as_nanos() as u64)),
            events: Vec::new(),
            last_rtt_ns: 0,
        }
    }

    fn run(mut self, sock: &UdpSocket) -> Result<ProbeSummary> {
        tighten_timer_slack();
        let interval = self.cfg.interval;
        let start = Instant::now();
        self.start_ns = mono_ns();
        let end = self.cfg.duration.map(|d| start + d);
        let mut next_send = start;
        let mut warned = false;
        let mut buf = vec![0u8; 65_536];
        loop {
            let now = Instant::now();
            if self.shared.stop.is_set() || end.is_some_and(|e| now >= e) {
                break;
            }
            let all_sent = self.cfg.count.is_some_and(|c| self.sent >= c);
            if all_sent {
                break;
            }
            if now >= next_send {
                self.jitter.record((now - next_send).as_nanos() as u64);
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
            if wait_readable(sock, wake.saturating_duration_since(Instant::now())) {
                self.drain(sock, &mut buf);
            }
            if !warned
                && !self.cfg.one_way
                && self.received == 0
                && start.elapsed() >= NO_REPLY_WARNING
            {
                warned = true;
                self.shared.push(ProbeMessage::NoReply {
                    after_s: start.elapsed().as_secs_f64(),
                });
            }
        }
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

    fn drain(&mut self, sock: &UdpSocket, buf: &mut [u8]) {
        loop {
            match sock.recv(buf) {
                Ok(n) => {
                    let arrival = mono_ns();
                    self.on_reply(&buf[..n], arrival);
                }
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => self.refused += 1,
                Err(_) => return,
            }
        }
    }

    fn on_reply(&mut self, data: &[u8], arrival: u64) {
        if self.cfg.one_way {
            return;
        }
        let Some(p) = Probe::decode(data).filter(|p| p.seq < self.sent && p.sent_ns <= arrival)
        else {
            self.foreign += 1;
            return;
        };
        debug_assert!(data.len() >= PROBE_LEN);
        if !self.answered.insert(p.seq) {
            self.duplicates += 1;
            return;
        }
        self.received += 1;
        self.last_rtt_ns = arrival - p.sent_ns;
        self.rtt.record(self.last_rtt_ns);
        let hi_before = self.max_seq;
        match self.max_seq {
            Some(m) if p.seq < m => self.reordered += 1,
            _ => self.max_seq = Some(p.seq),
        }
        match self.gaps.arrive(arrival) {
            Arrival::Baseline {
                gap_ns,
                threshold_ns,
            } => self.shared.push(ProbeMessage::Baseline {
                gap_ns,
                threshold_ns,
                unix_s: unix_at(arrival),
            }),
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
        let ev = DowntimeEvent {
            index: self.events.len() as u64,
            start_unix_s: unix_at(since_ns),
            start_offset_s: since_ns.saturating_sub(self.start_ns) as f64 / 1e9,
            gap_ns,
            blackout_ns: gap_ns.saturating_sub(interval_ns),
            resolution_ns: interval_ns,
            probes_missed,
            peer: Some(self.cfg.target),
        };
        self.events.push(ev.clone());
        self.shared.push(ProbeMessage::Event(ev));
    }

    fn publish(&self) {
        let now = mono_ns();
        let st = ProbeStatus {
            sent: self.sent,
            received: self.received,
            max_gap_ns: self.gaps.max_gap_ns(),
            cur_gap_ns: self.gaps.cur_gap_ns(),
            since_last_reply_ns: self.gaps.last_ns().map_or(0, |l| now.saturating_sub(l)),
            last_rtt_ns: self.last_rtt_ns,
            events: self.events.len() as u64,
        };
        *self.shared.status.lock().unwrap_or_else(|e| e.into_inner()) = st;
    }

    fn summary(self, elapsed: Duration) -> ProbeSummary {
        let open_gap_ns = self
            .gaps
            .last_ns()
            .map_or(0, |l| mono_ns().saturating_sub(l));
        ProbeSummary {
            duration_s: elapsed.as_secs_f64(),
            interval_ns: self.cfg.interval.as_nanos() as u64,
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
            rtt: (!self.cfg.one_way).then(|| self.rtt.percentiles()),
            send_jitter: self.jitter.percentiles(),
            baseline_gap_ns: self.gaps.baseline_ns(),
            threshold_ns: self.gaps.threshold_ns(),
            total_downtime_ns: self.events.iter().map(|e| e.blackout_ns).sum(),
            worst_downtime_ns: self.events.iter().map(|e| e.blackout_ns).max().unwrap_or(0),
            max_gap_ns: self.gaps.max_gap_ns(),
            events: self.events,
            open_gap_ns,
            one_way: self.cfg.one_way,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::echo::EchoServer;

    fn cfg(target: SocketAddr) -> ProbeConfig {
        ProbeConfig {
            target,
            interval: Duration::from_millis(5),
            threshold: None,
            count: Some(100),
            duration: None,
            one_way: false,
        }
    }

    #[test]
    fn round_trips_against_our_echo_server() {
        let srv = EchoServer::start(Some("127.0.0.1"), 0).unwrap();
        let run = ProbeRun::start(cfg(srv.local_addr())).unwrap();
        while !run.is_done() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let s = run.stop().unwrap();
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
        assert_eq!(srv.stop().probes, 100);
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
        let s = loop {
            if run.is_done() {
                break run.stop().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
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
        assert!(ProbeConfig {
            interval: Duration::ZERO,
            ..cfg(t)
        }
        .validate()
        .is_err());
        assert!(ProbeConfig {
            count: Some(0),
            ..cfg(t)
        }
        .validate()
        .is_err());
        assert!(cfg(t).validate().is_ok());
    }
}
