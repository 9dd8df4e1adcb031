//! The emulated destination (`vm -d`): accepts any number of sources, one
//! thread per connection, and for each session receives the precopy stream,
//! and, once the source asks for postcopy, requests random pages and times
//! each until the page arrives (on any of the session's connections).
//!
//! The thread that receives a requested page sends the next request itself,
//! so a round trip costs no hop between threads. A connection that sends
//! garbage, a bad magic or a page past the guest's size ends its session
//! with one message; the destination keeps serving everyone else.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::net::frame::FrameReader;
use crate::net::sock::{canonical, listen_tcp, wait_readable};
use crate::net::vmwire::*;
use crate::pace::{make_bulk_thread, mono_ns, StopFlag};
use crate::rng::WyRand;
use crate::stats::{LatencyHistogram, Percentiles};
use crate::sync::{Mailbox, Task};

const NO_REQUEST: u64 = u64::MAX;
const READ_BUF: usize = 1024 * 1024;

/// What the destination tells as it happens.
#[derive(Clone, Debug, PartialEq)]
pub enum DstMessage {
    /// A source connected (its main connection).
    Connected {
        /// Session number on this destination.
        session: u64,
        /// The source.
        peer: SocketAddr,
        /// True when it speaks our extension (multifd, preempt).
        extended: bool,
    },
    /// The source turned postcopy on.
    Postcopy {
        /// Session number.
        session: u64,
    },
    /// One interval of a session.
    Sample(DstSample),
    /// A session ended; `reason` says why (EOF is a normal end).
    Dropped {
        /// Session number.
        session: u64,
        /// The source.
        peer: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A connection was refused before it became part of a session.
    Rejected {
        /// Who.
        peer: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// One interval of one session, as the destination saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct DstSample {
    /// Session number.
    pub session: u64,
    /// Seconds since the session started, at the end of the interval.
    pub elapsed_s: f64,
    /// Length of the interval, ms.
    pub duration_ms: u64,
    /// Bytes received over all the session's connections.
    pub bytes: u64,
    /// Receive rate, MB/s.
    pub rate_mb_s: f64,
    /// Page-request latencies in the interval (count 0 without postcopy).
    pub latency: Percentiles,
}

/// A session's figures at its end.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionSummary {
    /// Session number.
    pub session: u64,
    /// The source.
    pub peer: SocketAddr,
    /// Seconds from connect to end.
    pub duration_s: f64,
    /// Bytes received over all connections.
    pub bytes: u64,
    /// Multifd connections that joined.
    pub channels: u64,
    /// Whether a preempt connection joined.
    pub preempt: bool,
    /// Page-request latencies over the session.
    pub latency: Percentiles,
    /// Why it ended.
    pub reason: String,
}

struct Requester {
    active: AtomicBool,
    current: AtomicU64,
    sent_ns: AtomicU64,
    writer: Mutex<Option<TcpStream>>,
    rng: Mutex<WyRand>,
    interval: Mutex<LatencyHistogram>,
    total: Mutex<LatencyHistogram>,
}

impl Requester {
    /// Asks for the next random page.
    fn issue(&self, vm_pages: u64) -> io::Result<()> {
        let page = self
            .rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .below(vm_pages);
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let Some(w) = w.as_mut() else { return Ok(()) };
        self.current.store(page, Ordering::Release);
        self.sent_ns.store(mono_ns(), Ordering::Release);
        w.write_all(&header(MAGIC_REQ_PAGE, page))
    }

    /// A page arrived; if it is the one asked for, time it and ask again.
    #[inline]
    fn on_page(&self, page: u64, vm_pages: u64) -> io::Result<()> {
        if self.current.load(Ordering::Acquire) != page
            || self
                .current
                .compare_exchange(page, NO_REQUEST, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return Ok(());
        }
        let lat = mono_ns().saturating_sub(self.sent_ns.load(Ordering::Acquire));
        self.interval
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(lat);
        self.issue(vm_pages)
    }
}

struct Session {
    id: u64,
    peer: SocketAddr,
    start: Instant,
    vm_pages: u64,
    /// HELLO flags (0 for the original protocol).
    flags: u32,
    bytes: AtomicU64,
    channels: AtomicU64,
    preempt: AtomicBool,
    ended: AtomicBool,
    finished: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
    req: Requester,
    last_sample: Mutex<(Instant, u64)>,
}

impl Session {
    fn end(&self) {
        if !self.ended.swap(true, Ordering::AcqRel) {
            for c in self.conns.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }

    fn sample(&self) -> DstSample {
        let now = Instant::now();
        let bytes = self.bytes.load(Ordering::Relaxed);
        let mut last = self.last_sample.lock().unwrap_or_else(|e| e.into_inner());
        let dt = now - last.0;
        let delta = bytes - last.1;
        *last = (now, bytes);
        let mut h = self.req.interval.lock().unwrap_or_else(|e| e.into_inner());
        let latency = h.percentiles();
        self.req
            .total
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(&h);
        h.reset();
        DstSample {
            session: self.id,
            elapsed_s: (now - self.start).as_secs_f64(),
            duration_ms: dt.as_millis() as u64,
            bytes: delta,
            rate_mb_s: delta as f64 / (1 << 20) as f64 / dt.as_secs_f64().max(1e-9),
            latency,
        }
    }

    fn summary(&self, reason: String) -> SessionSummary {
        let mut total = self
            .req
            .total
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        total.add(&self.req.interval.lock().unwrap_or_else(|e| e.into_inner()));
        SessionSummary {
            session: self.id,
            peer: self.peer,
            duration_s: self.start.elapsed().as_secs_f64(),
            bytes: self.bytes.load(Ordering::Relaxed),
            channels: self.channels.load(Ordering::Relaxed),
            preempt: self.preempt.load(Ordering::Relaxed),
            latency: total.percentiles(),
            reason,
        }
    }
}

struct Shared {
    stop: StopFlag,
    vm_pages: u64,
    interval: Duration,
    next_session: AtomicU64,
    sessions: Mutex<HashMap<u64, Arc<Session>>>,
    /// Extended sessions by the id their source chose.
    by_token: Mutex<HashMap<u64, Arc<Session>>>,
    finished: Mutex<Vec<SessionSummary>>,
    /// A clone of every open connection, to close them all on stop; each
    /// connection's thread removes its own when it ends.
    open_conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
    messages: Mailbox<DstMessage>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn push(&self, m: DstMessage) {
        self.messages.push(m);
    }
}

/// A running destination.
pub struct VmDestination {
    local: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Task<()>,
}

impl VmDestination {
    /// Listens and starts serving sources. `vm_pages` is the guest size in
    /// pages for sources that do not say theirs (the original's).
    pub fn start(bind: Option<&str>, port: u16, vm_pages: u64, interval: Duration) -> Result<Self> {
        if vm_pages == 0 {
            return Err(Error::invalid("VM size must be greater than zero"));
        }
        let listener = listen_tcp(bind, port)?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("reading the bound address", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("making the listener non-blocking", e))?;
        let shared = Arc::new(Shared {
            stop: StopFlag::new(),
            vm_pages,
            interval,
            next_session: AtomicU64::new(0),
            sessions: Mutex::new(HashMap::new()),
            by_token: Mutex::new(HashMap::new()),
            finished: Mutex::new(Vec::new()),
            open_conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            messages: Mailbox::default(),
            workers: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = shared.clone();
            Task::spawn("vm-dst", move || {
                accept_loop(&listener, &shared);
                Ok(())
            })?
        };
        Ok(Self {
            local,
            shared,
            acceptor,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next message, waiting up to `timeout`.
    pub fn next_message(&self, timeout: Duration) -> Option<DstMessage> {
        self.shared.messages.pop_wait(timeout, || false)
    }

    /// Sessions that ended so far.
    pub fn finished(&self) -> Vec<SessionSummary> {
        self.shared
            .finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sessions still running.
    pub fn active(&self) -> usize {
        self.shared
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Stops: closes every connection, joins every thread, returns every
    /// session's summary.
    pub fn stop(&self) -> Vec<SessionSummary> {
        self.shared.stop.stop();
        // Already joined by an earlier stop: nothing left to wait for.
        let _ = self.acceptor.join();
        for c in self
            .shared
            .open_conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            let _ = c.1.shutdown(Shutdown::Both);
        }
        let sessions: Vec<_> = self
            .shared
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for s in sessions {
            s.end();
        }
        let workers = std::mem::take(
            &mut *self
                .shared
                .workers
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for w in workers {
            let _ = w.join();
        }
        self.finished()
    }
}

impl Drop for VmDestination {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut next_tick = Instant::now() + shared.interval;
    while !shared.stop.is_set() {
        let wait = next_tick
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        if wait_readable(listener, wait) {
            while let Ok((stream, peer)) = listener.accept() {
                let peer = canonical(peer);
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_nodelay(true);
                let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
                if let Ok(c) = stream.try_clone() {
                    let mut open = shared.open_conns.lock().unwrap_or_else(|e| e.into_inner());
                    open.insert(id, c);
                }
                let sh = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name("vm-dst-conn".into())
                    .spawn(move || {
                        serve_connection(stream, peer, &sh);
                        let mut open = sh.open_conns.lock().unwrap_or_else(|e| e.into_inner());
                        open.remove(&id);
                    });
                match spawned {
                    Ok(h) => {
                        let mut w = shared.workers.lock().unwrap_or_else(|e| e.into_inner());
                        w.retain(|h| !h.is_finished());
                        w.push(h);
                    }
                    Err(e) => {
                        shared
                            .open_conns
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&id);
                        shared.push(DstMessage::Rejected {
                            peer,
                            reason: format!("cannot start a thread: {e}"),
                        })
                    }
                }
            }
        }
        if Instant::now() >= next_tick {
            next_tick += shared.interval;
            let sessions: Vec<_> = shared
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned()
                .collect();
            for s in sessions {
                shared.push(DstMessage::Sample(s.sample()));
            }
        }
    }
}

fn proto(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut r = FrameReader::new(read_half, READ_BUF);
    let (magic, arg) = match r.peek(HEADER_LEN) {
        Ok(h) => parse_header(h),
        Err(_) => return, // connected and left: nothing to report
    };
    match magic {
        MAGIC_SEND_PAGE | MAGIC_HANDSHAKE => {
            let s = new_session(shared, peer, shared.vm_pages, 0, &stream, None);
            shared.push(DstMessage::Connected {
                session: s.id,
                peer,
                extended: false,
            });
            run_main(&s, &mut r, shared);
        }
        MAGIC_HELLO if arg == HELLO_ARG => {
            r.consume(HEADER_LEN);
            let hello = match r.peek(HELLO_LEN) {
                Ok(b) => Hello::decode(b.try_into().expect("HELLO_LEN bytes")),
                Err(e) => return reject(shared, peer, &stream, format!("incomplete HELLO: {e}")),
            };
            r.consume(HELLO_LEN);
            if hello.version != EXT_VERSION || hello.vm_pages == 0 {
                return reject(
                    shared,
                    peer,
                    &stream,
                    format!("unsupported HELLO {hello:?}"),
                );
            }
            if shared
                .by_token
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&hello.session)
            {
                return reject(shared, peer, &stream, "session id already in use".into());
            }
            let s = new_session(
                shared,
                peer,
                hello.vm_pages,
                hello.flags,
                &stream,
                Some(hello.session),
            );
            let mut w = &stream;
            if w.write_all(&header(MAGIC_HELLO_ACK, HELLO_ARG)).is_err() {
                finish(shared, &s, "connection lost during HELLO".into());
                return;
            }
            shared.push(DstMessage::Connected {
                session: s.id,
                peer,
                extended: true,
            });
            run_main(&s, &mut r, shared);
        }
        MAGIC_CHANNEL => {
            r.consume(HEADER_LEN);
            let (kind, _index) = match r.peek(16) {
                Ok(b) => parse_header(b),
                Err(e) => return reject(shared, peer, &stream, format!("incomplete CHANNEL: {e}")),
            };
            r.consume(16);
            let found = shared
                .by_token
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&arg)
                .cloned();
            let Some(s) = found else {
                return reject(
                    shared,
                    peer,
                    &stream,
                    format!("channel for unknown session {arg:#x}"),
                );
            };
            if let Ok(c) = stream.try_clone() {
                s.conns.lock().unwrap_or_else(|e| e.into_inner()).push(c);
            }
            if s.ended.load(Ordering::Acquire) {
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
            let result = match kind {
                CHANNEL_MULTIFD => {
                    s.channels.fetch_add(1, Ordering::Relaxed);
                    make_bulk_thread();
                    run_multifd(&s, &mut r)
                }
                CHANNEL_PREEMPT => {
                    s.preempt.store(true, Ordering::Relaxed);
                    // Requests go out on this connection from now on, unless
                    // the source asked for QEMU's return path on main.
                    if s.flags & FLAG_REQUESTS_ON_MAIN == 0 {
                        if let Ok(w) = stream.try_clone() {
                            *s.req.writer.lock().unwrap_or_else(|e| e.into_inner()) = Some(w);
                        }
                    }
                    run_pages(&s, &mut r, None)
                }
                k => Err(proto(format!("unknown channel kind {k}"))),
            };
            if let Err(e) = result {
                if !shared.stop.is_set() && !s.ended.load(Ordering::Acquire) {
                    finish(shared, &s, format!("channel from {peer}: {}", reason(&e)));
                }
            }
        }
        other => reject(shared, peer, &stream, format!("magic error: {other:#x}")),
    }
}

fn reject(shared: &Shared, peer: SocketAddr, stream: &TcpStream, reason: String) {
    let _ = stream.shutdown(Shutdown::Both);
    shared.push(DstMessage::Rejected { peer, reason });
}

fn new_session(
    shared: &Shared,
    peer: SocketAddr,
    vm_pages: u64,
    flags: u32,
    stream: &TcpStream,
    token: Option<u64>,
) -> Arc<Session> {
    let id = shared.next_session.fetch_add(1, Ordering::Relaxed);
    let now = Instant::now();
    let s = Arc::new(Session {
        id,
        peer,
        start: now,
        vm_pages,
        flags,
        bytes: AtomicU64::new(0),
        channels: AtomicU64::new(0),
        preempt: AtomicBool::new(false),
        ended: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        conns: Mutex::new(stream.try_clone().into_iter().collect()),
        req: Requester {
            active: AtomicBool::new(false),
            current: AtomicU64::new(NO_REQUEST),
            sent_ns: AtomicU64::new(0),
            writer: Mutex::new(stream.try_clone().ok()),
            rng: Mutex::new(WyRand::new(
                mono_ns() ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            )),
            interval: Mutex::new(LatencyHistogram::new()),
            total: Mutex::new(LatencyHistogram::new()),
        },
        last_sample: Mutex::new((now, 0)),
    });
    shared
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, s.clone());
    if let Some(t) = token {
        shared
            .by_token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(t, s.clone());
    }
    s
}

/// Ends a session once, whichever of its connections notices first.
fn finish(shared: &Shared, s: &Arc<Session>, why: String) {
    if s.finished.swap(true, Ordering::AcqRel) {
        return;
    }
    s.end();
    shared
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&s.id);
    shared
        .by_token
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|_, v| v.id != s.id);
    *s.req.writer.lock().unwrap_or_else(|e| e.into_inner()) = None;
    shared
        .finished
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(s.summary(why.clone()));
    shared.push(DstMessage::Dropped {
        session: s.id,
        peer: s.peer,
        reason: why,
    });
}

fn reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => "connection closed".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        _ => e.to_string(),
    }
}

/// The main connection: pages, and the handshake that starts postcopy.
fn run_main<R: io::Read>(s: &Arc<Session>, r: &mut FrameReader<R>, shared: &Shared) {
    let announce = || shared.push(DstMessage::Postcopy { session: s.id });
    let why = match run_pages(s, r, Some(&announce)) {
        Err(_) if shared.stop.is_set() => "stopped".into(),
        Err(e) => reason(&e),
        Ok(()) => "connection closed".into(),
    };
    finish(shared, s, why);
}

/// SEND_PAGE messages (and, on the main connection, HANDSHAKE, which calls
/// `on_handshake` once).
fn run_pages<R: io::Read>(
    s: &Session,
    r: &mut FrameReader<R>,
    on_handshake: Option<&dyn Fn()>,
) -> io::Result<()> {
    // Count locally, publish every few dozen pages: one shared atomic add
    // per page costs more than the parsing.
    let mut unpublished = 0u64;
    let result = (|| loop {
        if unpublished >= 32 * (HEADER_LEN + PAGE_SIZE) as u64 {
            s.bytes
                .fetch_add(std::mem::take(&mut unpublished), Ordering::Relaxed);
        }
        let (magic, arg) = parse_header(r.peek(HEADER_LEN)?);
        r.consume(HEADER_LEN);
        match magic {
            MAGIC_SEND_PAGE => {
                if arg >= s.vm_pages {
                    return Err(proto(format!("page index overflow: {arg:#x}")));
                }
                r.skip(PAGE_SIZE)?;
                unpublished += (HEADER_LEN + PAGE_SIZE) as u64;
                s.req.on_page(arg, s.vm_pages)?;
            }
            MAGIC_HANDSHAKE if on_handshake.is_some() => {
                s.bytes.fetch_add(HEADER_LEN as u64, Ordering::Relaxed);
                if !s.req.active.swap(true, Ordering::AcqRel) {
                    if let Some(f) = on_handshake {
                        f();
                    }
                    s.req.issue(s.vm_pages)?;
                }
            }
            other => return Err(proto(format!("magic error: {other:#x}"))),
        }
    })();
    s.bytes.fetch_add(unpublished, Ordering::Relaxed);
    result
}

/// A multifd connection: MULTIFD packets.
fn run_multifd<R: io::Read>(s: &Session, r: &mut FrameReader<R>) -> io::Result<()> {
    let mut pages = [0u64; MULTIFD_PAGES];
    loop {
        let (magic, n) = parse_header(r.peek(HEADER_LEN)?);
        r.consume(HEADER_LEN);
        if magic != MAGIC_MULTIFD {
            return Err(proto(format!(
                "magic error on a multifd channel: {magic:#x}"
            )));
        }
        if n == 0 || n as usize > MULTIFD_PAGES {
            return Err(proto(format!("bad multifd page count {n}")));
        }
        let n = n as usize;
        let idx = r.peek(n * 8)?;
        for (i, p) in pages.iter_mut().take(n).enumerate() {
            *p = u64::from_le_bytes(idx[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        }
        r.consume(n * 8);
        for &p in &pages[..n] {
            if p >= s.vm_pages {
                return Err(proto(format!("page index overflow: {p:#x}")));
            }
        }
        r.skip(n * PAGE_SIZE)?;
        s.bytes
            .fetch_add((HEADER_LEN + n * (8 + PAGE_SIZE)) as u64, Ordering::Relaxed);
        for &p in &pages[..n] {
            s.req.on_page(p, s.vm_pages)?;
        }
    }
}
