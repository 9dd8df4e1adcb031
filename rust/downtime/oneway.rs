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
use crate::pace::{mono_ns, unix_at};
use crate::run::{lock, Background, Ctx};
use crate::sock::{bind_udp, canonical, wait_readable};
use crate::units::{self, de};

/// The one-way server's configuration (`server`). Times in ms as the
/// original's, the run's length in seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct OneWayServerConfig {
    /// Address to listen on; None = every address, IPv6 and IPv4.
    pub bind: Option<String>,
    /// UDP port; 0 = any free port.
    #[serde(deserialize_with = "de::int")]
    pub port: u16,
    /// A gap this long is a downtime event; None = twice a client's first
    /// gap, as the original.
    #[serde(deserialize_with = "de::opt_float")]
    pub threshold_ms: Option<f64>,
    /// Stop after this many seconds; None = until stopped.
    #[serde(deserialize_with = "de::opt_float")]
    pub duration_s: Option<f64>,
}

impl OneWayServerConfig {
    /// Rejects values a server cannot honour.
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = self.threshold_ms {
            units::millis("the threshold", t)?;
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

/// More clients than this: the longest idle ones are forgotten.
const MAX_CLIENTS: usize = 4096;

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

/// One client's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
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
    /// Largest gap after the baseline, ms.
    pub max_gap_ms: f64,
    /// Latest gap, ms.
    pub cur_gap_ms: f64,
    /// Spike threshold, ms.
    pub threshold_ms: Option<f64>,
    /// Downtime events.
    pub events: Vec<DowntimeEvent>,
}

/// Every client's figures at the end.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename = "summary")]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct OneWaySummary {
    /// One entry per client, by address.
    pub clients: Vec<ClientSummary>,
}

struct Client {
    packets: u64,
    probes: u64,
    max_seq: Option<u64>,
    reordered: u64,
    gaps: GapDetector,
    events: Vec<DowntimeEvent>,
    last_seen_ns: u64,
}

impl Client {
    fn summary(&self, peer: SocketAddr) -> ClientSummary {
        ClientSummary {
            peer: peer.to_string(),
            packets: self.packets,
            probes: self.probes,
            lost: self
                .max_seq
                .map_or(0, |m| (m + 1).saturating_sub(self.probes)),
            reordered: self.reordered,
            max_gap_ms: ms(self.gaps.max_gap_ns()),
            cur_gap_ms: ms(self.gaps.cur_gap_ns()),
            threshold_ms: self.gaps.threshold_ns().map(ms),
            events: self.events.clone(),
        }
    }
}

type Clients = Mutex<HashMap<SocketAddr, Client>>;

fn summaries(clients: &Clients) -> Vec<ClientSummary> {
    let map = lock(clients);
    let mut v: Vec<_> = map.iter().map(|(p, c)| (*p, c.summary(*p))).collect();
    v.sort_by_key(|c| c.0);
    v.into_iter().map(|c| c.1).collect()
}

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
            .map(|t| units::millis("the threshold", t))
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
            Ok(OneWaySummary {
                clients: summaries(&c),
            })
        })?;
        Ok(Self { local, clients, bg })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Every client's figures so far.
    pub fn clients(&self) -> Vec<ClientSummary> {
        summaries(&self.clients)
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
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let now = mono_ns();
            let peer = canonical(from);
            let probe = Probe::decode(&buf[..n]);
            let mut out = Vec::new();
            {
                let mut map = lock(clients);
                if !map.contains_key(&peer) {
                    if map.len() >= MAX_CLIENTS {
                        evict_idle(&mut map);
                    }
                    out.push(ServerMessage::NewClient(NewClient {
                        peer: peer.to_string(),
                    }));
                }
                let c = map.entry(peer).or_insert_with(|| Client {
                    packets: 0,
                    probes: 0,
                    max_seq: None,
                    reordered: 0,
                    gaps: GapDetector::new(fixed, 0),
                    events: Vec::new(),
                    last_seen_ns: now,
                });
                c.packets += 1;
                c.last_seen_ns = now;
                let hi_before = c.max_seq;
                if let Some(p) = probe {
                    c.probes += 1;
                    match c.max_seq {
                        Some(m) if p.seq < m => c.reordered += 1,
                        _ => c.max_seq = Some(p.seq),
                    }
                }
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
                        // Sequence numbers skipped over the gap, when the
                        // client sends our probes.
                        let missed = match (probe, hi_before) {
                            (Some(p), Some(h)) if p.seq > h => p.seq - h - 1,
                            _ => 0,
                        };
                        let baseline = c.gaps.baseline_ns().unwrap_or(0);
                        let ev = DowntimeEvent::new(
                            c.events.len() as u64,
                            Some(peer.to_string()),
                            since_ns,
                            start_ns,
                            gap_ns,
                            baseline,
                            missed,
                        );
                        c.events.push(ev.clone());
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

fn evict_idle(map: &mut HashMap<SocketAddr, Client>) {
    let mut ages: Vec<_> = map.iter().map(|(p, c)| (c.last_seen_ns, *p)).collect();
    ages.sort_unstable();
    for (_, p) in ages.into_iter().take(MAX_CLIENTS / 4) {
        map.remove(&p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_each_client_on_its_own() {
        let srv = OneWayServer::start(OneWayServerConfig {
            bind: Some("127.0.0.1".into()),
            port: 0,
            ..Default::default()
        })
        .unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        for seq in 0..30u64 {
            if !(10..20).contains(&seq) {
                a.send_to(&Probe { seq, sent_ns: 0 }.encode(), srv.local_addr())
                    .unwrap();
            }
            b.send_to(b"echo", srv.local_addr()).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        let clients = srv.background().stop().unwrap().clients;
        assert_eq!(clients.len(), 2);
        let ca = clients
            .iter()
            .find(|c| c.peer == a.local_addr().unwrap().to_string())
            .unwrap();
        let cb = clients
            .iter()
            .find(|c| c.peer == b.local_addr().unwrap().to_string())
            .unwrap();
        assert_eq!((ca.packets, ca.probes, ca.lost), (20, 20, 10));
        assert_eq!(ca.events.len(), 1);
        assert_eq!(ca.events[0].probes_missed, 10);
        assert_eq!((cb.packets, cb.probes), (30, 0));
    }
}
