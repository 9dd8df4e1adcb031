//! The UDP echo server (`server_rr`), run in the guest: every datagram goes
//! back to its sender unchanged, whatever it holds (ours, the original's
//! 4 bytes, garbage, empty), so either side's client works with it. A bad
//! datagram or a failed reply costs nothing but a counter.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::downtime::wire::Probe;
use crate::error::{Error, Result};
use crate::run::{Background, Ctx};
use crate::sock::{bind_udp, canonical, wait_readable};
use crate::units::{self, de};

/// A UDP server's configuration (`server_rr`; `server` adds a threshold).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct EchoServerConfig {
    /// Address to listen on; None = every address, IPv6 and IPv4.
    pub bind: Option<String>,
    /// UDP port; 0 = any free port.
    #[serde(deserialize_with = "de::int")]
    pub port: u16,
    /// Stop after this many seconds; None = until stopped.
    #[serde(deserialize_with = "de::opt_float")]
    pub duration_s: Option<f64>,
}

impl Default for EchoServerConfig {
    fn default() -> Self {
        Self {
            bind: None,
            port: crate::DEFAULT_PORT,
            duration_s: None,
        }
    }
}

impl EchoServerConfig {
    /// Rejects values a server cannot honour.
    pub fn validate(&self) -> Result<()> {
        units::run_length(self.duration_s).map(|_| ())
    }
}

/// A sender the server heard for the first time.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename = "client")]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct NewClient {
    /// The sender, "ip:port".
    pub peer: String,
}

/// How many distinct clients the server remembers for its count.
const MAX_TRACKED_CLIENTS: usize = 65_536;

/// Counters of an echo server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename = "summary")]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct EchoStats {
    /// Datagrams received.
    pub packets: u64,
    /// Bytes received (and echoed).
    pub bytes: u64,
    /// Of those, our probes.
    pub probes: u64,
    /// Replies the kernel refused to send.
    pub send_errors: u64,
    /// Distinct senders seen (capped at 65536).
    pub clients: u64,
}

#[derive(Default)]
struct Counters {
    packets: AtomicU64,
    bytes: AtomicU64,
    probes: AtomicU64,
    send_errors: AtomicU64,
    clients: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> EchoStats {
        EchoStats {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            probes: self.probes.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
            clients: self.clients.load(Ordering::Relaxed),
        }
    }
}

/// A running echo server.
pub struct EchoServer {
    local: SocketAddr,
    counters: Arc<Counters>,
    bg: Background<NewClient, EchoStats>,
}

impl EchoServer {
    /// Binds and starts serving.
    pub fn start(cfg: EchoServerConfig) -> Result<Self> {
        let end = units::run_length(cfg.duration_s)?.map(|d| Instant::now() + d);
        let sock = bind_udp(cfg.bind.as_deref(), cfg.port)?;
        let local = sock
            .local_addr()
            .map_err(|e| Error::network("reading the bound address", e))?;
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let bg = Background::spawn("echo", move |ctx| {
            serve(&sock, ctx, &c, end);
            Ok(c.snapshot())
        })?;
        Ok(Self {
            local,
            counters,
            bg,
        })
    }

    /// The address the server is bound to (its port, when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The counters so far.
    pub fn stats(&self) -> EchoStats {
        self.counters.snapshot()
    }

    /// New clients as they come, the stop and the final counters.
    pub fn background(&self) -> &Background<NewClient, EchoStats> {
        &self.bg
    }
}

fn serve(sock: &UdpSocket, ctx: &Ctx<NewClient>, c: &Counters, end: Option<Instant>) {
    let mut buf = vec![0u8; 65_536];
    let mut seen: HashSet<SocketAddr> = HashSet::new();
    let _ = sock.set_nonblocking(true);
    while !ctx.stop.is_set() && end.is_none_or(|e| Instant::now() < e) {
        if !wait_readable(sock, Duration::from_millis(100)) {
            continue;
        }
        // Drain everything queued (a resumed guest has a burst waiting).
        // WouldBlock ends the drain; other errors (an ICMP error for an
        // earlier reply) belong to no one datagram: keep serving.
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            c.packets.fetch_add(1, Ordering::Relaxed);
            c.bytes.fetch_add(n as u64, Ordering::Relaxed);
            if Probe::decode(&buf[..n]).is_some() {
                c.probes.fetch_add(1, Ordering::Relaxed);
            }
            if sock.send_to(&buf[..n], from).is_err() {
                c.send_errors.fetch_add(1, Ordering::Relaxed);
            }
            if seen.len() < MAX_TRACKED_CLIENTS && seen.insert(from) {
                c.clients.fetch_add(1, Ordering::Relaxed);
                ctx.send(NewClient {
                    peer: canonical(from).to_string(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_anything_unchanged() {
        let srv = EchoServer::start(EchoServerConfig {
            bind: Some("127.0.0.1".into()),
            port: 0,
            duration_s: None,
        })
        .unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.connect(srv.local_addr()).unwrap();
        let mut buf = [0u8; 70_000];
        for msg in [
            &b"echo"[..],
            b"",
            &[0xff; 1500][..],
            &Probe { seq: 1, sent_ns: 2 }.encode()[..],
        ] {
            c.send(msg).unwrap();
            let n = c.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], msg);
        }
        let s = srv.background().stop().unwrap();
        assert_eq!(srv.background().stop().unwrap(), s);
        assert!(srv.background().next(Duration::ZERO).is_some());
        assert_eq!(s.packets, 4);
        assert_eq!(s.probes, 1);
        assert_eq!(s.clients, 1);
    }
}
