//! The UDP echo server (`server_rr`), run in the guest: every datagram goes
//! back to its sender unchanged, whatever it holds (ours, the original's
//! 4 bytes, garbage, empty), so either side's client works with it. A bad
//! datagram or a failed reply costs nothing but a counter.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::downtime::wire::Probe;
use crate::error::{Error, Result};
use crate::flags::{self, Flag, Flags};
use crate::pace::mono_ns;
use crate::run::{Background, Ctx};
use crate::sock::{bind_udp, canonical};
use crate::units::{self, de};

crate::pydata! {
    /// A UDP server's configuration (`server_rr`; `server` adds a threshold).
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
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

impl Flags for EchoServerConfig {
    const FLAGS: &'static [Flag] = &[flags::UDP_PORT, flags::BIND, flags::DURATION];
}

impl EchoServerConfig {
    /// Rejects values a server cannot honour.
    pub fn validate(&self) -> Result<()> {
        units::run_length(self.duration_s).map(|_| ())
    }
}

crate::pydata! {
    /// A sender the server heard for the first time.
    #[derive(Clone, Debug, PartialEq, Serialize)]
    #[serde(tag = "type", rename = "client")]
    pub struct NewClient {
        /// The sender, "ip:port".
        pub peer: String,
    }
}

/// How many distinct clients the server remembers for its count.
const MAX_TRACKED_CLIENTS: usize = 65_536;

crate::pydata! {
    /// Counters of an echo server.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
    #[serde(tag = "type", rename = "summary")]
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
        /// Datagrams not answered because they were our own replies coming
        /// back (from ourselves, or bounced by another echo server).
        pub loops_dropped: u64,
    }
}

#[derive(Default)]
struct Counters {
    packets: AtomicU64,
    bytes: AtomicU64,
    probes: AtomicU64,
    send_errors: AtomicU64,
    clients: AtomicU64,
    loops_dropped: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> EchoStats {
        EchoStats {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            probes: self.probes.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
            clients: self.clients.load(Ordering::Relaxed),
            loops_dropped: self.loops_dropped.load(Ordering::Relaxed),
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

/// A reply loop is our own reply coming back from where we sent it: two
/// echo servers answering each other, or a datagram spoofed from our own
/// address. One of our probes carries a sequence number that our clients
/// never send twice, so the same probe again from the same peer is a
/// reflection, whatever the round trip. Other datagrams (the original's
/// client sends "echo", the same bytes, every interval of at least 1 ms) are
/// a reflection when they come back sooner than that: within 900 us of our
/// reply (a link of up to 0.45 ms each way; the window was 300 us, and two
/// servers a 0.2 ms link apart reflected each other for ever).
const LOOP_WINDOW_NS: u64 = 900_000;
/// Slots of the table of last replies (by peer hash; a collision only
/// forgets a peer's last reply).
const LAST_REPLIES: usize = 4096;
/// How long a receive blocks before the stop flag is looked at again.
const RECV_SLICE: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Default)]
struct LastReply {
    peer: Option<SocketAddr>,
    content: u64,
    at_ns: u64,
}

fn hash_of<T: Hash + ?Sized>(v: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// Echoes until stopped: one blocking receive and one send per datagram
/// (the original's two system calls), the stop flag looked at after every
/// datagram and at least every 100 ms, whatever the traffic.
fn serve(sock: &UdpSocket, ctx: &Ctx<NewClient>, c: &Counters, end: Option<Instant>) {
    let mut buf = vec![0u8; 65_536];
    let mut seen: HashSet<SocketAddr> = HashSet::new();
    let mut last = vec![LastReply::default(); LAST_REPLIES];
    let local = sock.local_addr().ok().map(canonical);
    // Our own address as a sender: a datagram spoofed to loop on itself.
    let is_self = |peer: SocketAddr| {
        local.is_some_and(|l| {
            peer.port() == l.port()
                && if l.ip().is_unspecified() {
                    peer.ip().is_loopback()
                } else {
                    peer.ip() == l.ip()
                }
        })
    };
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_read_timeout(Some(RECV_SLICE));
    let mut errors = 0u32;
    while !ctx.stop.is_set() && end.is_none_or(|e| Instant::now() < e) {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // An ICMP error for an earlier reply belongs to no datagram;
            // anything else that repeats must not become a busy loop.
            Err(_) => {
                errors = errors.saturating_add(1);
                if errors > 100 {
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
        };
        errors = 0;
        c.packets.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(n as u64, Ordering::Relaxed);
        let data = &buf[..n];
        let ours = Probe::decode(data).is_some();
        if ours {
            c.probes.fetch_add(1, Ordering::Relaxed);
        }
        let peer = canonical(from);
        let now = mono_ns();
        let slot = &mut last[(hash_of(&peer) as usize) % LAST_REPLIES];
        let content = hash_of(data);
        let looped = is_self(peer)
            || (slot.peer == Some(peer)
                && slot.content == content
                && (ours || now.saturating_sub(slot.at_ns) < LOOP_WINDOW_NS));
        if looped {
            c.loops_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if sock.send_to(data, from).is_err() {
            c.send_errors.fetch_add(1, Ordering::Relaxed);
        }
        *slot = LastReply {
            peer: Some(peer),
            content,
            at_ns: mono_ns(),
        };
        if seen.len() < MAX_TRACKED_CLIENTS && seen.insert(from) {
            c.clients.fetch_add(1, Ordering::Relaxed);
            ctx.send(NewClient {
                peer: peer.to_string(),
            });
        }
    }
}

/// An echo server on a free loopback port, for the tests.
#[cfg(test)]
fn loopback_server() -> EchoServer {
    EchoServer::start(EchoServerConfig {
        bind: Some("127.0.0.1".into()),
        port: 0,
        duration_s: None,
    })
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_anything_unchanged() {
        let srv = loopback_server();
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
        assert_eq!(s.loops_dropped, 0);
        assert_eq!(srv.background().stop().unwrap(), s);
        assert!(srv.background().next(Duration::ZERO).is_some());
        assert_eq!(s.packets, 4);
        assert_eq!(s.probes, 1);
        assert_eq!(s.clients, 1);
    }
}

#[cfg(test)]
mod loop_tests {
    use super::*;

    /// Another echo server `delay` away (one way, each way): how many times
    /// `first` bounces between it and ours in a second.
    fn bounces_with_a_reflector(first: &[u8], delay: Duration) -> (u32, EchoStats) {
        let a = loopback_server();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_read_timeout(Some(Duration::from_millis(200) + 2 * delay))
            .unwrap();
        b.send_to(first, a.local_addr()).unwrap();
        let mut bounces = 0;
        let mut buf = [0u8; 64];
        let t = Instant::now();
        while let Ok((n, from)) = b.recv_from(&mut buf) {
            bounces += 1;
            std::thread::sleep(2 * delay);
            b.send_to(&buf[..n], from).unwrap();
            if t.elapsed() > Duration::from_secs(1) {
                break;
            }
        }
        (bounces, a.background().stop().unwrap())
    }

    #[test]
    fn a_loop_over_a_link_with_delay_dies_out() {
        // The original's "echo" over a 0.2 ms link (it went on for ever:
        // the window was 300 us).
        let (n, s) = bounces_with_a_reflector(b"echo", Duration::from_micros(200));
        assert!(n <= 5, "{n} bounces: {s:?}");
        assert!(s.loops_dropped >= 1);
        // One of our probes over a 20 ms link: the second time it comes
        // back, whatever the round trip.
        let probe = Probe { seq: 7, sent_ns: 1 }.encode();
        let (n, s) = bounces_with_a_reflector(&probe, Duration::from_millis(10));
        assert_eq!(n, 1, "{s:?}");
        assert_eq!(s.loops_dropped, 1);
    }

    #[test]
    fn a_reply_loop_with_another_echo_server_dies_out() {
        let a = loopback_server();
        // Another echo server, as fast as one can be: it sends back at
        // once whatever arrives.
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        b.send_to(b"echo", a.local_addr()).unwrap();
        let mut bounces = 0;
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = b.recv_from(&mut buf) {
            bounces += 1;
            b.send_to(&buf[..n], from).unwrap();
            assert!(bounces < 100, "the loop goes on");
        }
        let s = a.background().stop().unwrap();
        // It dies out: at once when the bounce comes within the loop
        // window, after a few bounces when a loaded machine delays one.
        assert!(bounces <= 5, "{bounces} bounces: {s:?}");
        assert_eq!(s.loops_dropped, 1);
        // A client whose next probe comes a millisecond later is answered.
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = loopback_server();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        for _ in 0..5 {
            c.send_to(b"echo", a.local_addr()).unwrap();
            assert_eq!(c.recv_from(&mut buf).unwrap().0, 4);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(a.background().stop().unwrap().loops_dropped, 0);
    }
}
