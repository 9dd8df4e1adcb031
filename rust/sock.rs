//! Sockets: resolving user-given hosts, binding servers (IPv4, IPv6, dual
//! stack), connecting clients, and waiting for a socket with ns precision.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{Error, Result};

/// Resolves `host` (an address or a name; `[v6]` brackets allowed) and
/// `port` to the first address found.
/// A port someone else holds: the machine's resource, not a network fault.
fn in_use(proto: &str, addr: &SocketAddr, e: &std::io::Error) -> Error {
    Error::Resource {
        msg: format!(
            "{proto} port {} is already in use on {}",
            addr.port(),
            addr.ip()
        ),
        errno: e.raw_os_error(),
        skip: None,
    }
}

pub fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    Ok(resolve_all(host, port)?[0])
}

/// Every address `host` resolves to, in the resolver's order (never empty).
pub fn resolve_all(host: &str, port: u16) -> Result<Vec<SocketAddr>> {
    let h = host.trim();
    if h.is_empty() {
        return Err(Error::config("empty host address"));
    }
    let bare = h
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(h);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let all: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|e| Error::config(format!("cannot resolve host '{host}': {e}")))?
        .collect();
    if all.is_empty() {
        return Err(Error::config(format!("host '{host}' has no address")));
    }
    Ok(all)
}

/// Binds a UDP socket for a server. `bind` None means every address: IPv6
/// and IPv4 on one dual-stack socket where the machine has IPv6, else IPv4.
pub fn bind_udp(bind: Option<&str>, port: u16) -> Result<UdpSocket> {
    let addr = match bind {
        Some(b) => resolve(b, port)?,
        None => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
    };
    match bind_one(addr, bind.is_none()) {
        Ok(s) => Ok(s),
        // No IPv6 here: fall back to IPv4 any.
        Err(_) if bind.is_none() => bind_one(SocketAddr::from(([0, 0, 0, 0], port)), false),
        Err(e) => Err(e),
    }
}

fn bind_one(addr: SocketAddr, dual: bool) -> Result<UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| Error::network("creating a UDP socket", e))?;
    if addr.is_ipv6() && dual {
        sock.set_only_v6(false)
            .map_err(|e| Error::network("enabling IPv4 on an IPv6 socket", e))?;
    }
    // Room for the bursts a resumed guest answers with.
    let _ = sock.set_recv_buffer_size(4 << 20);
    sock.bind(&addr.into()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            in_use("UDP", &addr, &e)
        } else {
            Error::network(format!("binding UDP {addr}"), e)
        }
    })?;
    Ok(sock.into())
}

/// A UDP socket connected to `target`, from an ephemeral port.
pub fn connect_udp(target: SocketAddr) -> Result<UdpSocket> {
    let local: SocketAddr = if target.is_ipv6() {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        ([0, 0, 0, 0], 0).into()
    };
    let sock = Socket::new(
        Domain::for_address(target),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .map_err(|e| Error::network("creating a UDP socket", e))?;
    let _ = sock.set_recv_buffer_size(4 << 20);
    sock.bind(&local.into())
        .map_err(|e| Error::network("binding a UDP socket", e))?;
    sock.connect(&target.into())
        .map_err(|e| Error::network(format!("connecting to {target}"), e))?;
    Ok(sock.into())
}

/// A listening TCP socket (SO_REUSEADDR; `bind` None = every address, IPv6
/// and IPv4 on one dual-stack socket where the machine has IPv6).
pub fn listen_tcp(bind: Option<&str>, port: u16) -> Result<std::net::TcpListener> {
    let one = |addr: SocketAddr, dual: bool| -> Result<std::net::TcpListener> {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(|e| Error::network("creating a TCP socket", e))?;
        if addr.is_ipv6() && dual {
            sock.set_only_v6(false)
                .map_err(|e| Error::network("enabling IPv4 on an IPv6 socket", e))?;
        }
        sock.set_reuse_address(true)
            .map_err(|e| Error::network("setting SO_REUSEADDR", e))?;
        sock.bind(&addr.into()).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                in_use("TCP", &addr, &e)
            } else {
                Error::network(format!("binding TCP {addr}"), e)
            }
        })?;
        sock.listen(128).map_err(|e| Error::network("listen", e))?;
        Ok(sock.into())
    };
    match bind {
        Some(b) => one(resolve(b, port)?, false),
        None => one(
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
            true,
        )
        .or_else(|_| one(SocketAddr::from(([0, 0, 0, 0], port)), false)),
    }
}

/// A TCP connection to `target` with Nagle off, giving up after `timeout`.
/// Connects to the first of `targets` that answers (a name such as
/// `localhost` may stand for `::1` and `127.0.0.1`, with the peer on one);
/// the error is the last address's.
pub fn connect_any(
    targets: &[SocketAddr],
    timeout: std::time::Duration,
) -> Result<(std::net::TcpStream, SocketAddr)> {
    let mut last = Error::config("no address to connect to");
    for &t in targets {
        match connect_tcp(t, timeout) {
            Ok(s) => return Ok((s, t)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Connects to `target` within `timeout`, with TCP_NODELAY.
pub fn connect_tcp(
    target: SocketAddr,
    timeout: std::time::Duration,
) -> Result<std::net::TcpStream> {
    let s = std::net::TcpStream::connect_timeout(&target, timeout)
        .map_err(|e| Error::network(format!("cannot connect to {target}"), e))?;
    s.set_nodelay(true)
        .map_err(|e| Error::network("setting TCP_NODELAY", e))?;
    Ok(s)
}

/// `peer` with an IPv4-mapped IPv6 address (from a dual-stack socket)
/// shown as the IPv4 address it is.
pub fn canonical(peer: SocketAddr) -> SocketAddr {
    SocketAddr::new(peer.ip().to_canonical(), peer.port())
}

/// Waits until `sock` is readable or `timeout` passes (ns precision, via
/// ppoll). Returns true when readable; EINTR counts as a timeout.
pub fn wait_readable(sock: &impl std::os::fd::AsRawFd, timeout: std::time::Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: one valid pollfd and a valid timespec, both on our stack.
    let rc = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
    rc > 0
}

/// Asks the kernel to stamp every datagram `sock` receives with its
/// arrival time (SO_TIMESTAMPNS), read back by [`recv_stamped`].
pub fn enable_rx_timestamps(sock: &impl std::os::fd::AsRawFd) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// Receives one datagram on a connected socket without blocking, with the
/// kernel's arrival stamp when there is one: wall-clock ns (CLOCK_REALTIME).
/// Time spent before this call (the thread was not running) is then not
/// counted as network time.
pub fn recv_stamped(
    sock: &impl std::os::fd::AsRawFd,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<u64>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one SCM_TIMESTAMPNS control message.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg points at our iovec and control buffer, both alive for
    // the call; the kernel writes at most their stated lengths.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: walking the control messages the kernel wrote into `control`
    // with the CMSG macros, which stay inside msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                stamp = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, stamp))
}

/// Datagrams one [`StampedBatch::recv`] call can take.
pub const BATCH: usize = 16;
/// Bytes kept of each datagram in a batch (a probe is 24; longer ones are
/// cut, which is enough to tell they are not ours).
const BATCH_BYTES: usize = 2048;

/// Buffers for receiving up to [`BATCH`] datagrams in one system call
/// (`recvmmsg`), each with the kernel's arrival stamp.
pub struct StampedBatch {
    data: Vec<[u8; BATCH_BYTES]>,
    control: Vec<[u64; 8]>,
    lens: [usize; BATCH],
    stamps: [Option<u64>; BATCH],
}

impl Default for StampedBatch {
    fn default() -> Self {
        Self {
            data: vec![[0; BATCH_BYTES]; BATCH],
            control: vec![[0; 8]; BATCH],
            lens: [0; BATCH],
            stamps: [None; BATCH],
        }
    }
}

impl StampedBatch {
    /// Takes what is waiting, without blocking: how many datagrams (0 when
    /// none), or the socket's pending error (a refusal, say).
    pub fn recv(&mut self, sock: &impl std::os::fd::AsRawFd) -> std::io::Result<usize> {
        // SAFETY: iovec, msghdr and mmsghdr are plain data; all-zero is valid.
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..BATCH {
            iovs[i].iov_base = self.data[i].as_mut_ptr().cast();
            iovs[i].iov_len = BATCH_BYTES;
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_control = self.control[i].as_mut_ptr().cast();
            msgs[i].msg_hdr.msg_controllen = std::mem::size_of::<[u64; 8]>() as _;
        }
        // SAFETY: every header points at buffers of ours that outlive the
        // call, with their true lengths.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as _,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let n = n as usize;
        for (i, m) in msgs.iter().enumerate().take(n) {
            self.lens[i] = (m.msg_len as usize).min(BATCH_BYTES);
            self.stamps[i] = None;
            // SAFETY: walking the control messages the kernel wrote for
            // this datagram with the CMSG macros, inside msg_controllen.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&m.msg_hdr);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_SOCKET
                        && (*c).cmsg_type == libc::SCM_TIMESTAMPNS
                    {
                        let ts: libc::timespec =
                            std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                        self.stamps[i] = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
                    }
                    c = libc::CMSG_NXTHDR(&m.msg_hdr, c);
                }
            }
        }
        Ok(n)
    }

    /// The `i`th datagram of the last call and its arrival stamp (wall-clock
    /// ns), as [`recv_stamped`] gives them.
    pub fn get(&self, i: usize) -> (&[u8], Option<u64>) {
        (&self.data[i][..self.lens[i]], self.stamps[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_any_goes_on_to_the_address_that_answers() {
        // A port nothing listens on, then a listener on IPv6 loopback (as
        // `localhost` may resolve to 127.0.0.1 first, the peer on ::1).
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = closed.local_addr().unwrap();
        drop(closed);
        let Ok(live) = std::net::TcpListener::bind("[::1]:0") else {
            return; // no IPv6 loopback here
        };
        let addr = live.local_addr().unwrap();
        let t = std::time::Duration::from_secs(2);
        let (_s, to) = connect_any(&[dead, addr], t).unwrap();
        assert_eq!(to, addr);
        let e = connect_any(&[dead], t).unwrap_err().to_string();
        assert!(e.contains(&dead.to_string()), "{e}");
    }

    #[test]
    fn a_batch_takes_every_waiting_datagram_with_its_stamp() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        assert!(enable_rx_timestamps(&a));
        let mut batch = StampedBatch::default();
        assert_eq!(batch.recv(&a).unwrap(), 0);
        b.send_to(b"warm", a.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        batch.recv(&a).unwrap();
        for i in 0..20u8 {
            b.send_to(&[i; 3], a.local_addr().unwrap()).unwrap();
        }
        b.send_to(&[7u8; 5000], a.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut got = Vec::new();
        loop {
            let n = batch.recv(&a).unwrap();
            if n == 0 {
                break;
            }
            for i in 0..n {
                let (d, stamp) = batch.get(i);
                assert!(stamp.is_some());
                got.push(d.to_vec());
            }
        }
        assert_eq!(got.len(), 21);
        assert_eq!(got[5], vec![5u8; 3]);
        assert_eq!(got[20].len(), BATCH_BYTES);
    }

    #[test]
    fn received_datagrams_carry_the_kernels_arrival_time() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        assert!(enable_rx_timestamps(&a));
        // The kernel turns stamping on a moment after the first socket asks
        // (a deferred static key): until then a datagram is stamped when
        // read. Let that moment pass.
        let mut buf = [0u8; 16];
        b.send_to(b"warm", a.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        recv_stamped(&a, &mut buf).unwrap();
        b.send_to(b"hi", a.local_addr().unwrap()).unwrap();
        let sent = std::time::SystemTime::now();
        // Read it late: the stamp is when it arrived, not when we read.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (n, stamp) = recv_stamped(&a, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hi");
        let sent_ns = sent
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let stamp = stamp.expect("a stamp");
        assert!(stamp.abs_diff(sent_ns) < 20_000_000, "{stamp} vs {sent_ns}");
        assert!(recv_stamped(&a, &mut buf).is_err()); // nothing more: EAGAIN
    }

    #[test]
    fn resolves_literals_and_localhost() {
        assert_eq!(
            resolve("127.0.0.1", 5).unwrap(),
            "127.0.0.1:5".parse().unwrap()
        );
        assert_eq!(resolve("[::1]", 5).unwrap(), "[::1]:5".parse().unwrap());
        assert_eq!(resolve("::1", 5).unwrap(), "[::1]:5".parse().unwrap());
        assert!(resolve("localhost", 5).is_ok());
        assert!(resolve("", 5).is_err());
        assert!(resolve("no.such.host.invalid", 5).is_err());
    }

    #[test]
    fn port_in_use_is_a_resource_error() {
        let a = bind_udp(Some("127.0.0.1"), 0).unwrap();
        let port = a.local_addr().unwrap().port();
        match bind_udp(Some("127.0.0.1"), port) {
            Err(Error::Resource { msg, errno, .. }) => {
                assert!(msg.contains("in use"), "{msg}");
                assert_eq!(errno, Some(libc::EADDRINUSE));
            }
            other => panic!("{other:?}"),
        }
    }
}
