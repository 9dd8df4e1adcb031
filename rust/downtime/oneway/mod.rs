//! The one-way server (`mig_mon server`), run in the guest: it receives a
//! client's probes and measures the gaps between their arrivals itself, so
//! the guest's own view of its network outage is what is reported. Each
//! client (address and port) has its own state; our probes also give loss
//! and reordering from their sequence numbers. Anything else that arrives
//! (the original client's 4 bytes) still counts as an arrival.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::downtime::echo::NewClient;
use crate::downtime::gap::{ms, Arrival, Baseline, DowntimeEvent, GapDetector};
use crate::downtime::wire::Probe;
use crate::error::{Error, Result};
use crate::flags::{self, Flag, Flags, Takes};
use crate::pace::{mono_ns, unix_at};
use crate::run::{lock, Background, Ctx};
use crate::sock::{bind_udp, canonical, wait_readable};
use crate::units::{self, de};

crate::pydata! {
    /// The one-way server's configuration (`server`). Times in ms as the
    /// original's, the run's length in seconds.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct OneWayServerConfig {
        /// Address to listen on; None = every address, IPv6 and IPv4.
        pub bind: Option<String>,
        /// UDP port; 0 = any free port.
        #[serde(deserialize_with = "de::int")]
        pub port: u16,
        /// A gap this long is a downtime event; None = twice a client's usual
        /// gap (the median of its first four), never below 1 ms.
        #[serde(deserialize_with = "de::opt_float")]
        pub threshold_ms: Option<f64>,
        /// Stop after this many seconds; None = until stopped.
        #[serde(deserialize_with = "de::opt_float")]
        pub duration_s: Option<f64>,
    }
}

impl OneWayServerConfig {
    /// Rejects values a server cannot honour.
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = self.threshold_ms {
            units::millis("threshold_ms", t)?;
        }
        units::run_length(self.duration_s).map(|_| ())
    }
}

impl Default for OneWayServerConfig {
    fn default() -> Self {
        Self {
            bind: None,
            port: crate::DEFAULT_PORT,
            threshold_ms: None,
            duration_s: None,
        }
    }
}

impl Flags for OneWayServerConfig {
    const FLAGS: &'static [Flag] = &[
        flags::UDP_PORT,
        flags::BIND,
        Flag::new(
            "threshold_ms",
            "--threshold-ms",
            "MS",
            Takes::Float,
            "A gap this long is a downtime event.",
        )
        .shown("twice a client's usual gap (the median of its first four), at least 1 ms"),
        flags::DURATION,
    ];
}

/// Clients measured at once. A new client beyond this takes the place of
/// one idle for [`IDLE_EVICT`]; when none is, its datagrams are counted
/// (`untracked`) but not measured, rather than churning the table.
const MAX_CLIENTS: usize = 4096;
/// A client silent this long may give its place to a new one; its figures
/// go to the summary's retired clients.
const IDLE_EVICT: Duration = Duration::from_secs(60);
/// Retired clients kept for the summary; older ones are only counted.
const MAX_RETIRED: usize = 4096;
/// Datagrams handled per wake-up before the stop and the end are looked at
/// again: a flood cannot keep the server from stopping.
const BATCH: usize = 256;
/// The fastest a client may probe (mig_mon's minimum interval): a sequence
/// number further ahead than the sender's own clock allows since its last
/// probe, or far behind, is a restarted or foreign sequence, not loss.
const MIN_PROBE_NS: u64 = 10_000;
/// Probes a jump may skip beyond what the sender's clock allows (its
/// pacing's jitter).
const AHEAD_SLACK: u64 = 2;
/// How far back a late probe may be.
const SEQ_SLACK: u64 = 4096;
/// The baseline rule's threshold is never below this: a server does not
/// know the client's interval, and gaps under a millisecond are the
/// scheduler's, not downtime (a flood would otherwise be all events).
const THRESHOLD_FLOOR_NS: u64 = 1_000_000;

/// What a one-way server tells as it happens.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerMessage {
    /// A client sent its first datagram.
    NewClient(NewClient),
    /// A client's first two datagrams set its baseline.
    Baseline(Baseline),
    /// A downtime seen on one client's stream.
    Event(DowntimeEvent),
}

crate::pydata! {
    /// One client's figures.
    #[derive(Clone, Debug, PartialEq, Serialize)]
    pub struct ClientSummary {
        /// The client, "ip:port".
        pub peer: String,
        /// Datagrams received.
        pub packets: u64,
        /// Of those, our probes.
        pub probes: u64,
        /// Probes never received (from sequence numbers; ours only).
        pub lost: u64,
        /// Probes that came after a later one.
        pub reordered: u64,
        /// Times the sequence numbers jumped further than the sender's own
        /// clock allows (a restarted client, or datagrams that only look
        /// like ours): counted
        /// apart, the sequence is followed from there, nothing counted lost.
        pub restarts: u64,
        /// Wall-clock time of the client's latest datagram (Unix seconds).
        pub last_seen_unix_s: f64,
        /// Largest gap after the baseline, ms.
        pub max_gap_ms: f64,
        /// Latest gap, ms.
        pub cur_gap_ms: f64,
        /// Spike threshold, ms.
        pub threshold_ms: Option<f64>,
        /// Downtime events, in all (also those not listed).
        pub event_count: u64,
        /// The first [`KEPT_EVENTS_PER_CLIENT`] downtime events.
        pub events: Vec<DowntimeEvent>,
    }
}

/// Events listed per client (each is also told as it happens): thousands of
/// clients must not hold memory without bound.
pub const KEPT_EVENTS_PER_CLIENT: usize = 1000;

crate::pydata! {
    /// Every client's figures at the end.
    #[derive(Clone, Debug, PartialEq, Serialize)]
    #[serde(tag = "type", rename = "summary")]
    pub struct OneWaySummary {
        /// One entry per client measured, by address: those still known at the
        /// end, then those retired after a minute of silence to make room.
        pub clients: Vec<ClientSummary>,
        /// Retired clients beyond what the summary keeps: counted only.
        pub forgotten_clients: u64,
        /// Datagrams from clients not measured because the table was full of
        /// active clients.
        pub untracked: u64,
    }
}

/// One run of a client's sequence numbers (a new one after a restart).
#[derive(Default)]
struct Epoch {
    first: u64,
    max: u64,
    probes: u64,
    /// The sender's clock on the probe `max`.
    max_sent_ns: u64,
}

impl Epoch {
    /// Probes of this run never received (late ones arrive as probes).
    fn lost(&self) -> u64 {
        (self.max - self.first)
            .saturating_add(1)
            .saturating_sub(self.probes)
    }
}

struct Client {
    packets: u64,
    probes: u64,
    seq: Option<Epoch>,
    lost_before: u64,
    /// The client's interval, learned from its own clock over nearly
    /// consecutive probes.
    interval_ns: Option<u64>,
    restarts: u64,
    reordered: u64,
    gaps: GapDetector,
    events: Vec<DowntimeEvent>,
    event_count: u64,
    last_seen_ns: u64,
}

impl Client {
    fn new(fixed: Option<u64>, now: u64) -> Self {
        Client {
            packets: 0,
            probes: 0,
            seq: None,
            lost_before: 0,
            interval_ns: None,
            restarts: 0,
            reordered: 0,
            gaps: GapDetector::for_unknown_interval(fixed, THRESHOLD_FLOOR_NS),
            events: Vec::new(),
            event_count: 0,
            last_seen_ns: now,
        }
    }

    /// Follows the sequence; returns how many probes the new one skips
    /// over (0 for a late, restarted or foreign one). A jump ahead is loss
    /// only as far as the sender's own clock (`sent_ns`) allows: its
    /// interval (learned, never below mig_mon's fastest) times the probes
    /// skipped must fit in the time between the two probes' sending.
    fn sequence(&mut self, seq: u64, sent_ns: u64) -> u64 {
        self.probes += 1;
        let fresh = Epoch {
            first: seq,
            max: seq,
            probes: 1,
            max_sent_ns: sent_ns,
        };
        let Some(e) = self.seq.as_mut() else {
            self.seq = Some(fresh);
            return 0;
        };
        let per = self
            .interval_ns
            .map_or(MIN_PROBE_NS, |i| (i / 2).max(MIN_PROBE_NS));
        let sent = sent_ns.checked_sub(e.max_sent_ns);
        if seq > e.max && sent.is_some_and(|d| seq - e.max <= d / per + AHEAD_SLACK) {
            let step = seq - e.max;
            let d = sent.unwrap_or(0);
            if step <= 4 && d / step >= MIN_PROBE_NS {
                let i = d / step;
                self.interval_ns = Some(self.interval_ns.map_or(i, |o| o.min(i)));
            }
            e.max = seq;
            e.max_sent_ns = sent_ns;
            e.probes += 1;
            step - 1
        } else if seq <= e.max && e.max - seq <= SEQ_SLACK {
            // Late: within the run, or just before its first probe.
            self.reordered += 1;
            e.first = e.first.min(seq);
            e.probes += 1;
            0
        } else {
            self.restarts += 1;
            self.lost_before += e.lost();
            *e = fresh;
            0
        }
    }

    fn summary(&self, peer: SocketAddr) -> ClientSummary {
        ClientSummary {
            peer: peer.to_string(),
            packets: self.packets,
            probes: self.probes,
            lost: self.lost_before + self.seq.as_ref().map_or(0, Epoch::lost),
            reordered: self.reordered,
            restarts: self.restarts,
            last_seen_unix_s: unix_at(self.last_seen_ns),
            max_gap_ms: ms(self.gaps.max_gap_ns()),
            cur_gap_ms: ms(self.gaps.cur_gap_ns()),
            threshold_ms: self.gaps.threshold_ns().map(ms),
            event_count: self.event_count,
            events: self.events.clone(),
        }
    }
}

#[derive(Default)]
struct Table {
    live: HashMap<SocketAddr, Client>,
    retired: std::collections::VecDeque<ClientSummary>,
    forgotten: u64,
    untracked: u64,
}

impl Table {
    /// Makes room for one more client: the longest idle one retires if it
    /// has been silent for [`IDLE_EVICT`]. False when every one is active.
    fn make_room(&mut self, now: u64) -> bool {
        let Some((peer, last)) = self
            .live
            .iter()
            .map(|(p, c)| (*p, c.last_seen_ns))
            .min_by_key(|c| c.1)
        else {
            return true;
        };
        if now.saturating_sub(last) < IDLE_EVICT.as_nanos() as u64 {
            return false;
        }
        if let Some(c) = self.live.remove(&peer) {
            self.retired.push_back(c.summary(peer));
            if self.retired.len() > MAX_RETIRED {
                self.retired.pop_front();
                self.forgotten += 1;
            }
        }
        true
    }

    fn summary(&self) -> OneWaySummary {
        let mut v: Vec<_> = self.live.iter().map(|(p, c)| (*p, c.summary(*p))).collect();
        v.sort_by_key(|c| c.0);
        let mut clients: Vec<_> = v.into_iter().map(|c| c.1).collect();
        clients.extend(self.retired.iter().cloned());
        OneWaySummary {
            clients,
            forgotten_clients: self.forgotten,
            untracked: self.untracked,
        }
    }

    /// Up to `n` clients, the most recently heard first.
    fn recent(&self, n: usize) -> Vec<ClientSummary> {
        let mut v: Vec<_> = self.live.iter().collect();
        v.sort_by_key(|(_, c)| std::cmp::Reverse(c.last_seen_ns));
        v.into_iter().take(n).map(|(p, c)| c.summary(*p)).collect()
    }
}

type Clients = Mutex<Table>;

/// A running one-way server.
pub struct OneWayServer {
    local: SocketAddr,
    clients: Arc<Clients>,
    bg: Background<ServerMessage, OneWaySummary>,
}

impl OneWayServer {
    /// Binds and starts measuring.
    pub fn start(cfg: OneWayServerConfig) -> Result<Self> {
        let fixed = cfg
            .threshold_ms
            .map(|t| units::millis("threshold_ms", t))
            .transpose()?
            .map(|t| t.as_nanos() as u64);
        let end = units::run_length(cfg.duration_s)?.map(|d| Instant::now() + d);
        let sock = bind_udp(cfg.bind.as_deref(), cfg.port)?;
        let local = sock
            .local_addr()
            .map_err(|e| Error::network("reading the bound address", e))?;
        let clients: Arc<Clients> = Arc::default();
        let c = clients.clone();
        let bg = Background::spawn("oneway", move |ctx| {
            serve(&sock, ctx, &c, fixed, end);
            Ok(lock(&c).summary())
        })?;
        Ok(Self { local, clients, bg })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Every client's figures so far (retired ones included).
    pub fn clients(&self) -> Vec<ClientSummary> {
        lock(&self.clients).summary().clients
    }

    /// Up to `n` clients being measured, the most recently heard first: for
    /// a live view that stays short with thousands of clients.
    pub fn recent_clients(&self, n: usize) -> Vec<ClientSummary> {
        lock(&self.clients).recent(n)
    }

    /// How many clients are being measured now.
    pub fn client_count(&self) -> usize {
        lock(&self.clients).live.len()
    }

    /// The messages, the stop and the final figures.
    pub fn background(&self) -> &Background<ServerMessage, OneWaySummary> {
        &self.bg
    }
}

fn serve(
    sock: &UdpSocket,
    ctx: &Ctx<ServerMessage>,
    clients: &Clients,
    fixed: Option<u64>,
    end: Option<Instant>,
) {
    let start_ns = mono_ns();
    let mut buf = vec![0u8; 65_536];
    let _ = sock.set_nonblocking(true);
    while !ctx.stop.is_set() && end.is_none_or(|e| Instant::now() < e) {
        if !wait_readable(sock, Duration::from_millis(100)) {
            continue;
        }
        // A bounded batch, then the stop and the end again.
        for _ in 0..BATCH {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                break;
            };
            let now = mono_ns();
            let peer = canonical(from);
            let probe = Probe::decode(&buf[..n]);
            let mut out = Vec::new();
            {
                let mut table = lock(clients);
                if !table.live.contains_key(&peer) {
                    if table.live.len() >= MAX_CLIENTS && !table.make_room(now) {
                        table.untracked += 1;
                        continue;
                    }
                    out.push(ServerMessage::NewClient(NewClient {
                        peer: peer.to_string(),
                    }));
                }
                let c = table
                    .live
                    .entry(peer)
                    .or_insert_with(|| Client::new(fixed, now));
                c.packets += 1;
                // Probes skipped over, for the event this arrival may end.
                let missed = probe.map_or(0, |p| c.sequence(p.seq, p.sent_ns));
                c.last_seen_ns = now;
                match c.gaps.arrive(now) {
                    Arrival::Baseline {
                        gap_ns,
                        median_ns,
                        threshold_ns,
                    } => out.push(ServerMessage::Baseline(Baseline {
                        peer: Some(peer.to_string()),
                        gap_ms: ms(gap_ns),
                        median_gap_ms: ms(median_ns),
                        threshold_ms: ms(threshold_ns),
                        unix_s: unix_at(now),
                    })),
                    Arrival::Spike { gap_ns, since_ns } => {
                        let baseline = c.gaps.baseline_ns().unwrap_or(0);
                        let ev = DowntimeEvent::new(
                            c.event_count,
                            Some(peer.to_string()),
                            since_ns,
                            start_ns,
                            gap_ns,
                            baseline,
                            missed,
                        );
                        c.event_count += 1;
                        if c.events.len() < KEPT_EVENTS_PER_CLIENT {
                            c.events.push(ev.clone());
                        }
                        out.push(ServerMessage::Event(ev));
                    }
                    _ => {}
                }
            }
            for m in out {
                ctx.send(m);
            }
        }
    }
}
#[cfg(test)]
mod tests;
