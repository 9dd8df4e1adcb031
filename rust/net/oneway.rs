//! The one-way server (`mig_mon server`), run in the guest: it receives a
//! client's probes and measures the gaps between their arrivals itself, so
//! the guest's own view of its network outage is what is reported. Each
//! client (address and port) has its own state; our probes also give loss
//! and reordering from their sequence numbers. Anything else that arrives
//! (the original client's 4 bytes) still counts as an arrival.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::net::gap::{Arrival, DowntimeEvent, GapDetector};
use crate::net::sock::{bind_udp, canonical, wait_readable};
use crate::net::wire::Probe;
use crate::pace::{mono_ns, unix_at, StopFlag};
use crate::sync::{Mailbox, Task};

/// More clients than this: the longest idle ones are forgotten.
const MAX_CLIENTS: usize = 4096;

/// What a one-way server tells as it happens.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerMessage {
    /// A client sent its first datagram.
    NewClient(SocketAddr),
    /// A client's first two datagrams set its baseline.
    Baseline {
        /// The client.
        peer: SocketAddr,
        /// Gap between its first two datagrams, ns.
        gap_ns: u64,
        /// Spike threshold for it, ns.
        threshold_ns: u64,
        /// Wall-clock time, Unix seconds.
        unix_s: f64,
    },
    /// A downtime seen on one client's stream.
    Event(DowntimeEvent),
}

/// One client's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientSummary {
    /// The client.
    pub peer: SocketAddr,
    /// Datagrams received.
    pub packets: u64,
    /// Of those, our probes.
    pub probes: u64,
    /// Probes never received (from sequence numbers; ours only).
    pub lost: u64,
    /// Probes that came after a later one.
    pub reordered: u64,
    /// Largest gap after the baseline, ns.
    pub max_gap_ns: u64,
    /// Latest gap, ns.
    pub cur_gap_ns: u64,
    /// Spike threshold, ns.
    pub threshold_ns: Option<u64>,
    /// Downtime events.
    pub events: Vec<DowntimeEvent>,
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
            peer,
            packets: self.packets,
            probes: self.probes,
            lost: self
                .max_seq
                .map_or(0, |m| (m + 1).saturating_sub(self.probes)),
            reordered: self.reordered,
            max_gap_ns: self.gaps.max_gap_ns(),
            cur_gap_ns: self.gaps.cur_gap_ns(),
            threshold_ns: self.gaps.threshold_ns(),
            events: self.events.clone(),
        }
    }
}

struct Shared {
    stop: StopFlag,
    messages: Mailbox<ServerMessage>,
    clients: Mutex<HashMap<SocketAddr, Client>>,
}

/// A running one-way server.
pub struct OneWayServer {
    local: SocketAddr,
    shared: Arc<Shared>,
    handle: Task<()>,
}

impl OneWayServer {
    /// Binds and starts measuring. `threshold` None = the original's rule.
    pub fn start(bind: Option<&str>, port: u16, threshold: Option<Duration>) -> Result<Self> {
        if threshold.is_some_and(|t| t.is_zero()) {
            return Err(Error::invalid("threshold must be greater than zero"));
        }
        let sock = bind_udp(bind, port)?;
        let local = sock
            .local_addr()
            .map_err(|e| Error::io("reading the bound address", e))?;
        let shared = Arc::new(Shared {
            stop: StopFlag::new(),
            messages: Mailbox::default(),
            clients: Mutex::new(HashMap::new()),
        });
        let handle = {
            let shared = shared.clone();
            let fixed = threshold.map(|t| t.as_nanos() as u64);
            Task::spawn("oneway", move || {
                serve(&sock, &shared, fixed);
                Ok(())
            })?
        };
        Ok(Self {
            local,
            shared,
            handle,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next message, waiting up to `timeout`.
    pub fn next_message(&self, timeout: Duration) -> Option<ServerMessage> {
        self.shared.messages.pop_wait(timeout, || false)
    }

    /// Every client's figures so far.
    pub fn clients(&self) -> Vec<ClientSummary> {
        let map = self
            .shared
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.iter().map(|(p, c)| c.summary(*p)).collect();
        v.sort_by_key(|c| c.peer);
        v
    }

    /// Stops and returns every client's figures.
    pub fn stop(&self) -> Vec<ClientSummary> {
        self.shared.stop.stop();
        // Already joined by an earlier stop: nothing left to wait for.
        let _ = self.handle.join();
        self.clients()
    }
}

impl Drop for OneWayServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(sock: &UdpSocket, shared: &Shared, fixed: Option<u64>) {
    let start_ns = mono_ns();
    let mut buf = vec![0u8; 65_536];
    let _ = sock.set_nonblocking(true);
    while !shared.stop.is_set() {
        if !wait_readable(sock, Duration::from_millis(100)) {
            continue;
        }
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let now = mono_ns();
            let peer = canonical(from);
            let probe = Probe::decode(&buf[..n]);
            let mut out = Vec::new();
            {
                let mut map = shared.clients.lock().unwrap_or_else(|e| e.into_inner());
                if !map.contains_key(&peer) {
                    if map.len() >= MAX_CLIENTS {
                        evict_idle(&mut map);
                    }
                    out.push(ServerMessage::NewClient(peer));
                }
                let c = map.entry(peer).or_insert_with(|| Client {
                    packets: 0,
                    probes: 0,
                    max_seq: None,
                    reordered: 0,
                    gaps: GapDetector::new(fixed),
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
                        threshold_ns,
                    } => out.push(ServerMessage::Baseline {
                        peer,
                        gap_ns,
                        threshold_ns,
                        unix_s: unix_at(now),
                    }),
                    Arrival::Spike { gap_ns, since_ns } => {
                        // Sequence numbers skipped over the gap, when the
                        // client sends our probes.
                        let missed = match (probe, hi_before) {
                            (Some(p), Some(h)) if p.seq > h => p.seq - h - 1,
                            _ => 0,
                        };
                        let baseline = c.gaps.baseline_ns().unwrap_or(0);
                        let ev = DowntimeEvent {
                            index: c.events.len() as u64,
                            start_unix_s: unix_at(since_ns),
                            start_offset_s: since_ns.saturating_sub(start_ns) as f64 / 1e9,
                            gap_ns,
                            blackout_ns: gap_ns.saturating_sub(baseline),
                            resolution_ns: baseline,
                            probes_missed: missed,
                            peer: Some(peer),
                        };
                        c.events.push(ev.clone());
                        out.push(ServerMessage::Event(ev));
                    }
                    _ => {}
                }
            }
            if !out.is_empty() {
                shared.messages.extend(out);
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
        let srv = OneWayServer::start(Some("127.0.0.1"), 0, None).unwrap();
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
        let clients = srv.stop();
        assert_eq!(clients.len(), 2);
        let ca = clients
            .iter()
            .find(|c| c.peer == a.local_addr().unwrap())
            .unwrap();
        let cb = clients
            .iter()
            .find(|c| c.peer == b.local_addr().unwrap())
            .unwrap();
        assert_eq!((ca.packets, ca.probes, ca.lost), (20, 20, 10));
        assert_eq!(ca.events.len(), 1);
        assert_eq!(ca.events[0].probes_missed, 10);
        assert_eq!((cb.packets, cb.probes), (30, 0));
    }
}
