//! The UDP echo server (`server_rr`), run in the guest: every datagram goes
//! back to its sender unchanged, whatever it holds (ours, the original's
//! 4 bytes, garbage, empty), so either side's client works with it. A bad
//! datagram or a failed reply costs nothing but a counter.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::net::sock::{bind_udp, canonical, wait_readable};
use crate::net::wire::Probe;
use crate::pace::StopFlag;
use crate::sync::Task;

/// How many distinct clients the server remembers for its count.
const MAX_TRACKED_CLIENTS: usize = 65_536;

/// Counters of an echo server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    new_clients: Mutex<Vec<SocketAddr>>,
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
    stop: StopFlag,
    counters: Arc<Counters>,
    handle: Task<()>,
}

impl EchoServer {
    /// Binds (`bind` None = every address, IPv6 and IPv4) and starts serving.
    pub fn start(bind: Option<&str>, port: u16) -> Result<Self> {
        let sock = bind_udp(bind, port)?;
        let local = sock
            .local_addr()
            .map_err(|e| Error::io("reading the bound address", e))?;
        let stop = StopFlag::new();
        let counters = Arc::new(Counters::default());
        let handle = {
            let (stop, counters) = (stop.clone(), counters.clone());
            Task::spawn("echo", move || {
                serve(&sock, &stop, &counters);
                Ok(())
            })?
        };
        Ok(Self {
            local,
            stop,
            counters,
            handle,
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

    /// Clients seen for the first time since the last call.
    pub fn take_new_clients(&self) -> Vec<SocketAddr> {
        std::mem::take(
            &mut *self
                .counters
                .new_clients
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Stops serving and returns the final counters.
    pub fn stop(&self) -> EchoStats {
        self.stop.stop();
        // Already joined by an earlier stop: nothing left to wait for.
        let _ = self.handle.join();
        self.stats()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(sock: &UdpSocket, stop: &StopFlag, c: &Counters) {
    let mut buf = vec![0u8; 65_536];
    let mut seen: HashSet<SocketAddr> = HashSet::new();
    let _ = sock.set_nonblocking(true);
    while !stop.is_set() {
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
                c.new_clients
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(canonical(from));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_anything_unchanged() {
        let srv = EchoServer::start(Some("127.0.0.1"), 0).unwrap();
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
        let s = srv.stop();
        assert_eq!(s.packets, 4);
        assert_eq!(s.probes, 1);
        assert_eq!(s.clients, 1);
    }
}
