//! The emulated destination (`vm -d`): accepts any number of sources, one
//! thread per connection, and for each session receives the precopy stream
//! and, once the source asks for postcopy, requests random pages and times
//! each until the page arrives (on any of the session's connections).
//!
//! [`handshake`] tells what a new connection is, [`session`] runs one
//! source's session; this module accepts, keeps the registry of sessions
//! and reports. A connection that sends garbage, a bad magic or a page past
//! the guest's size ends its session with one message; the destination
//! keeps serving everyone else.

pub mod handshake;
pub mod session;

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use self::handshake::{read_opening, Opening};
use self::session::{is_normal_end, reason, Session, NORMAL_END};
use crate::error::{Error, Result};
use crate::pace::StopFlag;
use crate::run::{lock, Background, Ctx};
use crate::sock::{canonical, listen_tcp, wait_readable};
use crate::stats::{Percentiles, LATENCY_BUCKETS};
use crate::units::{self, de};
use crate::vm::frame::FrameReader;
use crate::vm::src::vm_pages;
use crate::vm::wire::*;

const READ_BUF: usize = 1024 * 1024;
/// Finished sessions a destination keeps for its final result.
pub const KEPT_SESSIONS: usize = 1024;
/// A connection that has not said what it is (its first header) by then is
/// closed: idle and slow-loris connections cannot pile up.
pub const OPENING_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections accepted per wake-up before the stop is looked at again.
const ACCEPT_BATCH: usize = 64;
/// The longest wait before accepting again after an error other than
/// running out of descriptors.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// The emulated destination's configuration. Times in seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct VmDestinationConfig {
    /// Address to listen on; None = every address, IPv6 and IPv4.
    pub bind: Option<String>,
    /// TCP port; 0 = any free port.
    #[serde(deserialize_with = "de::int")]
    pub port: u16,
    /// Guest size in GB, for sources of the original protocol (an extended
    /// source says its own).
    #[serde(deserialize_with = "de::int")]
    pub vm_size_gb: u64,
    /// Seconds between each session's samples.
    #[serde(deserialize_with = "de::float")]
    pub interval_s: f64,
    /// Connections served at once (a session is one to 66); more are
    /// closed as they come, with a message.
    #[serde(deserialize_with = "de::int")]
    pub max_connections: u32,
    /// Stop after this many seconds; None = until stopped.
    #[serde(deserialize_with = "de::opt_float")]
    pub duration_s: Option<f64>,
    /// A session that brings less than one page (4 KiB) in this many
    /// seconds is stalled, and closed (its slots go to other sources).
    #[serde(deserialize_with = "de::float")]
    pub idle_timeout_s: f64,
}

impl Default for VmDestinationConfig {
    fn default() -> Self {
        Self {
            bind: None,
            port: crate::DEFAULT_PORT,
            vm_size_gb: 1024,
            interval_s: 1.0,
            max_connections: 256,
            duration_s: None,
            idle_timeout_s: 30.0,
        }
    }
}

impl VmDestinationConfig {
    /// Rejects values a destination cannot honour.
    pub fn validate(&self) -> Result<()> {
        vm_pages(self.vm_size_gb)?;
        units::seconds("interval_s", self.interval_s)?;
        units::run_length(self.duration_s)?;
        units::seconds("idle_timeout_s", self.idle_timeout_s)?;
        if !(1..=65536).contains(&self.max_connections) {
            return Err(Error::field(
                "max_connections",
                format!("must be between 1 and 65536, not {}", self.max_connections),
            ));
        }
        Ok(())
    }
}

/// A source connected (its main connection).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename = "connected")]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct VmConnected {
    /// Session number on this destination.
    pub session: u64,
    /// The source, "ip:port".
    pub peer: String,
    /// True when it speaks our extension (multifd, preempt).
    pub extended: bool,
}

/// The source turned postcopy on.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename = "postcopy")]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct VmPostcopy {
    /// Session number.
    pub session: u64,
}

/// One interval of one session, as the destination saw it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename = "sample")]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct VmDstSample {
    /// Session number.
    pub session: u64,
    /// Seconds since the session started, at the end of the interval.
    pub elapsed_s: f64,
    /// Wall-clock time at the end of the interval, Unix seconds (to the
    /// microsecond): the same timeline as every tool's events and QEMU's.
    pub unix_s: f64,
    /// Length of the interval, ms.
    pub duration_ms: u64,
    /// Bytes received over all the session's connections.
    pub bytes: u64,
    /// Receive rate, MB/s.
    pub rate_mb_s: f64,
    /// Page-request latencies in the interval (count 0 without postcopy).
    pub latency: Percentiles,
    /// The same per bucket of `LATENCY_BUCKETS_S` (the last: longer), not
    /// cumulative (for metrics; not part of the JSON).
    #[serde(skip)]
    pub latency_buckets: [u64; LATENCY_BUCKETS],
    /// Their sum, seconds (for metrics).
    #[serde(skip)]
    pub latency_sum_s: f64,
}

/// A session's figures at its end; also the message that says it ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename = "session")]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct VmSessionSummary {
    /// Session number.
    pub session: u64,
    /// The source, "ip:port".
    pub peer: String,
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
    /// The same per bucket of `LATENCY_BUCKETS_S` (for metrics; not part
    /// of the JSON).
    #[serde(skip)]
    pub latency_buckets: [u64; LATENCY_BUCKETS],
    /// Their sum, seconds (for metrics).
    #[serde(skip)]
    pub latency_sum_s: f64,
    /// Why it ended ("source closed" is a normal end).
    pub reason: String,
}

/// A connection was refused before it became part of a session.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename = "rejected")]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct VmRejected {
    /// Who, "ip:port".
    pub peer: String,
    /// Why.
    pub reason: String,
}

/// What the destination tells as it happens.
#[derive(Clone, Debug, PartialEq)]
pub enum DstMessage {
    /// A source connected.
    Connected(VmConnected),
    /// A source turned postcopy on.
    Postcopy(VmPostcopy),
    /// One interval of a session.
    Sample(VmDstSample),
    /// A session ended.
    Ended(VmSessionSummary),
    /// A connection was refused.
    Rejected(VmRejected),
}

/// The sessions of a destination.
#[derive(Default)]
struct Registry {
    next_session: AtomicU64,
    sessions: Mutex<HashMap<u64, Arc<Session>>>,
    /// Extended sessions by the id their source chose.
    by_token: Mutex<HashMap<u64, Arc<Session>>>,
    /// The last [`KEPT_SESSIONS`] finished sessions.
    finished: Mutex<VecDeque<VmSessionSummary>>,
}

/// An open connection, as the accept loop keeps it.
struct Conn {
    /// A clone, to close it on stop or when its opening is overdue.
    stream: TcpStream,
    accepted: Instant,
    /// It has said what it is (or has been judged): no deadline any more.
    opened: bool,
}

struct Shared {
    stop: StopFlag,
    vm_pages: u64,
    max_connections: usize,
    idle_timeout: Duration,
    reg: Registry,
    /// Every open connection; each connection's thread removes its own
    /// when it ends.
    open_conns: Mutex<HashMap<u64, Conn>>,
    next_conn: AtomicU64,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

/// A running destination.
pub struct VmDestination {
    local: SocketAddr,
    shared: Arc<Shared>,
    bg: Background<DstMessage, Vec<VmSessionSummary>>,
}

impl VmDestination {
    /// Listens and starts serving sources.
    pub fn start(cfg: VmDestinationConfig) -> Result<Self> {
        cfg.validate()?;
        let listener = listen_tcp(cfg.bind.as_deref(), cfg.port)?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::network("reading the bound address", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::network("making the listener non-blocking", e))?;
        let shared = Arc::new(Shared {
            stop: StopFlag::new(),
            vm_pages: vm_pages(cfg.vm_size_gb)?,
            max_connections: cfg.max_connections as usize,
            idle_timeout: units::seconds("idle_timeout_s", cfg.idle_timeout_s)?,
            reg: Registry::default(),
            open_conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            workers: Mutex::new(Vec::new()),
        });
        let interval = units::seconds("interval_s", cfg.interval_s)?;
        let end = units::run_length(cfg.duration_s)?.map(|d| Instant::now() + d);
        let sh = shared.clone();
        let bg = Background::spawn("vm-dst", move |ctx| {
            accept_loop(&listener, &sh, ctx, interval, end);
            Ok(close_all(&sh))
        })?;
        let sh = shared.clone();
        let bg = bg.on_stop(move || sh.stop.stop());
        Ok(Self { local, shared, bg })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sessions running now.
    pub fn active(&self) -> usize {
        lock(&self.shared.reg.sessions).len()
    }

    /// The messages, the stop and the final list of sessions.
    pub fn background(&self) -> &Background<DstMessage, Vec<VmSessionSummary>> {
        &self.bg
    }
}

/// Closes every connection, joins every thread; every kept session's
/// summary, the last ones ended by the stop.
fn close_all(shared: &Shared) -> Vec<VmSessionSummary> {
    for (_, c) in lock(&shared.open_conns).drain() {
        let _ = c.stream.shutdown(Shutdown::Both);
    }
    let sessions: Vec<_> = lock(&shared.reg.sessions).values().cloned().collect();
    for s in sessions {
        s.end();
    }
    let workers = std::mem::take(&mut *lock(&shared.workers));
    for w in workers {
        let _ = w.join();
    }
    lock(&shared.reg.finished).iter().cloned().collect()
}

/// Refusals of one kind told once a second at most: a flood of connections
/// must not become a flood of messages.
struct Refusals {
    last_told: Option<Instant>,
    untold: u64,
    reason: String,
}

impl Refusals {
    fn new() -> Self {
        Self {
            last_told: None,
            untold: 0,
            reason: String::new(),
        }
    }

    fn refuse(&mut self, ctx: &Ctx<DstMessage>, peer: String, reason: String) {
        let now = Instant::now();
        if self
            .last_told
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.untold += 1;
            self.reason = reason;
            return;
        }
        self.flush(ctx);
        self.last_told = Some(now);
        ctx.send(DstMessage::Rejected(VmRejected { peer, reason }));
    }

    /// Tells the refusals not told yet, as one message.
    fn flush(&mut self, ctx: &Ctx<DstMessage>) {
        if self.untold > 0 {
            ctx.send(DstMessage::Rejected(VmRejected {
                peer: format!("{} more connections", self.untold),
                reason: std::mem::take(&mut self.reason),
            }));
            self.untold = 0;
        }
    }

    fn tick(&mut self, ctx: &Ctx<DstMessage>) {
        if self
            .last_told
            .is_some_and(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.flush(ctx);
            self.last_told = None;
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    shared: &Arc<Shared>,
    ctx: &Arc<Ctx<DstMessage>>,
    interval: Duration,
    end: Option<Instant>,
) {
    let mut next_tick = Instant::now() + interval;
    // A descriptor held in reserve: when the process runs out, it is freed
    // to accept and close the waiting connection (its source hears at
    // once), rather than leave it pending and the listener always ready.
    let mut reserve = std::fs::File::open("/dev/null").ok();
    let mut refusals = Refusals::new();
    let mut backoff = Duration::ZERO;
    let mut retry_at = Instant::now();
    while !shared.stop.is_set() && !ctx.stop.is_set() {
        if end.is_some_and(|e| Instant::now() >= e) {
            break;
        }
        let wait = next_tick
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        if Instant::now() < retry_at {
            shared.stop.sleep_until(retry_at.min(Instant::now() + wait));
        } else if wait_readable(listener, wait) {
            for _ in 0..ACCEPT_BATCH {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        backoff = Duration::ZERO;
                        let peer = canonical(peer);
                        if lock(&shared.open_conns).len() >= shared.max_connections {
                            let _ = stream.shutdown(Shutdown::Both);
                            let why = format!(
                                "too many connections ({} open, --max-connections)",
                                shared.max_connections
                            );
                            refusals.refuse(ctx, peer.to_string(), why);
                            continue;
                        }
                        spawn_connection(stream, peer, shared, ctx);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                        drop(reserve.take());
                        if let Ok((stream, peer)) = listener.accept() {
                            let _ = stream.shutdown(Shutdown::Both);
                            refusals.refuse(
                                ctx,
                                canonical(peer).to_string(),
                                format!("out of file descriptors ({e}): closed at once"),
                            );
                        }
                        reserve = std::fs::File::open("/dev/null").ok();
                        if reserve.is_none() {
                            // Not even that: wait for descriptors to free up.
                            backoff =
                                (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                            retry_at = Instant::now() + backoff;
                        }
                        break;
                    }
                    Err(e) => {
                        backoff =
                            (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                        retry_at = Instant::now() + backoff;
                        refusals.refuse(ctx, "-".into(), format!("cannot accept: {e}; retrying"));
                        break;
                    }
                }
            }
        }
        close_overdue_openings(shared, &mut refusals, ctx);
        close_idle_sessions(shared, ctx);
        refusals.tick(ctx);
        if Instant::now() >= next_tick {
            next_tick += interval;
            let sessions: Vec<_> = lock(&shared.reg.sessions).values().cloned().collect();
            for s in sessions {
                ctx.send(DstMessage::Sample(s.sample()));
            }
        }
    }
    refusals.flush(ctx);
    shared.stop.stop();
}

/// Ends the sessions that brought less than a page in the idle timeout: a
/// source that stalls, or trickles a byte a second, must not hold its
/// connections (and --max-connections slots) for ever.
fn close_idle_sessions(shared: &Shared, ctx: &Ctx<DstMessage>) {
    let now = Instant::now();
    let sessions: Vec<_> = lock(&shared.reg.sessions).values().cloned().collect();
    for s in sessions {
        if s.idle_for(now) >= shared.idle_timeout {
            let why = format!(
                "idle: less than a page in {} s, closed",
                shared.idle_timeout.as_secs_f64()
            );
            finish(shared, ctx, &s, why);
        }
    }
}

/// Closes the connections that have not said what they are within
/// [`OPENING_TIMEOUT`].
fn close_overdue_openings(shared: &Shared, refusals: &mut Refusals, ctx: &Ctx<DstMessage>) {
    let mut overdue = Vec::new();
    for c in lock(&shared.open_conns).values_mut() {
        if !c.opened && c.accepted.elapsed() >= OPENING_TIMEOUT {
            c.opened = true;
            let _ = c.stream.shutdown(Shutdown::Both);
            overdue.push(c.stream.peer_addr().map(canonical));
        }
    }
    for peer in overdue {
        let peer = peer.map_or_else(|_| "-".into(), |p| p.to_string());
        let why = format!(
            "nothing valid within {} s of connecting: closed",
            OPENING_TIMEOUT.as_secs()
        );
        refusals.refuse(ctx, peer, why);
    }
}

fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    ctx: &Arc<Ctx<DstMessage>>,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    // A connection is served only once the stop and the opening deadline
    // can close it: at the descriptor limit the clone that registers it
    // failed, and its thread blocked in a read that nothing closed (a
    // destination under `ulimit -n 40` did not stop on SIGTERM).
    match stream.try_clone() {
        Ok(c) => {
            lock(&shared.open_conns).insert(
                id,
                Conn {
                    stream: c,
                    accepted: Instant::now(),
                    opened: false,
                },
            );
        }
        Err(e) => {
            let _ = stream.shutdown(Shutdown::Both);
            ctx.send(DstMessage::Rejected(VmRejected {
                peer: peer.to_string(),
                reason: format!("no descriptor to serve it ({e}): closed"),
            }));
            return;
        }
    }
    let (sh, cx) = (shared.clone(), ctx.clone());
    let spawned = std::thread::Builder::new()
        .name("vm-dst-conn".into())
        .spawn(move || {
            serve_connection(stream, peer, id, &sh, &cx);
            lock(&sh.open_conns).remove(&id);
            give_back_memory();
        });
    match spawned {
        Ok(h) => {
            let mut w = lock(&shared.workers);
            w.retain(|h| !h.is_finished());
            w.push(h);
        }
        Err(e) => {
            lock(&shared.open_conns).remove(&id);
            ctx.send(DstMessage::Rejected(VmRejected {
                peer: peer.to_string(),
                reason: format!("cannot start a thread: {e}"),
            }));
        }
    }
}

fn writer(stream: &TcpStream) -> Option<session::RequestWriter> {
    stream
        .try_clone()
        .ok()
        .map(|s| Box::new(s) as session::RequestWriter)
}

fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    shared: &Shared,
    ctx: &Ctx<DstMessage>,
) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let reject = |reason: String| {
        let _ = stream.shutdown(Shutdown::Both);
        ctx.send(DstMessage::Rejected(VmRejected {
            peer: peer.to_string(),
            reason,
        }));
    };
    let mut r = match FrameReader::try_new(read_half, READ_BUF) {
        Ok(r) => r,
        Err(e) => {
            // Under an address-space limit a 1 MiB buffer aborted the
            // whole destination; now the one connection is refused.
            lock(&shared.open_conns).remove(&id);
            reject(format!("{e}: closed"));
            return;
        }
    };
    let opening = read_opening(&mut r);
    {
        let mut conns = lock(&shared.open_conns);
        match conns.get_mut(&id) {
            // Closed by the deadline meanwhile: told there already.
            Some(c) if c.opened => return,
            Some(c) => c.opened = true,
            None => {}
        }
    }
    match opening {
        Opening::Gone => {}
        Opening::Reject(why) => reject(why),
        Opening::Original => {
            let s = new_session(shared, peer, shared.vm_pages, 0, &stream, None);
            connected(ctx, &s, false);
            run_main(&s, &mut r, shared, ctx);
        }
        Opening::Hello(hello) => {
            if lock(&shared.reg.by_token).contains_key(&hello.session) {
                return reject("session id already in use".into());
            }
            let s = new_session(
                shared,
                peer,
                hello.vm_pages,
                hello.flags,
                &stream,
                Some(hello.session),
            );
            if (&stream)
                .write_all(&header(MAGIC_HELLO_ACK, HELLO_ARG))
                .is_err()
            {
                return finish(shared, ctx, &s, "connection lost during HELLO".into());
            }
            connected(ctx, &s, true);
            run_main(&s, &mut r, shared, ctx);
        }
        Opening::Channel { session, kind, .. } => {
            let found = lock(&shared.reg.by_token).get(&session).cloned();
            let Some(s) = found else {
                return reject(format!("channel for unknown session {session:#x}"));
            };
            s.add_conn(&stream);
            if s.is_ended() {
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
            let result = if kind == CHANNEL_MULTIFD {
                s.add_channel();
                s.run_multifd(&mut r)
            } else {
                s.set_preempt(writer(&stream));
                s.run_pages(&mut r, None)
            };
            if let Err(e) = result {
                if !shared.stop.is_set() && !s.is_ended() {
                    // A source ends by closing every connection, a channel
                    // first as often as not: that is the normal end.
                    let why = reason(&e);
                    let why = if is_normal_end(&why) {
                        why
                    } else {
                        format!("channel from {peer}: {why}")
                    };
                    finish(shared, ctx, &s, why);
                }
            }
        }
    }
}

/// Returns freed memory to the system: the read buffers of finished
/// connections (1 MiB each) stay in malloc's arenas otherwise, once glibc
/// has raised its mmap threshold (an idle destination held 200-240 MB after
/// three bursts of 250 connections).
fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of malloc's own; it
    // takes malloc's locks and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn connected(ctx: &Ctx<DstMessage>, s: &Session, extended: bool) {
    ctx.send(DstMessage::Connected(VmConnected {
        session: s.id,
        peer: s.peer.clone(),
        extended,
    }));
}

fn new_session(
    shared: &Shared,
    peer: SocketAddr,
    vm_pages: u64,
    flags: u32,
    stream: &TcpStream,
    token: Option<u64>,
) -> Arc<Session> {
    let id = shared.reg.next_session.fetch_add(1, Ordering::Relaxed);
    let s = Arc::new(Session::new(
        id,
        peer.to_string(),
        vm_pages,
        flags,
        writer(stream),
    ));
    s.add_conn(stream);
    lock(&shared.reg.sessions).insert(id, s.clone());
    if let Some(t) = token {
        lock(&shared.reg.by_token).insert(t, s.clone());
    }
    s
}

/// Ends a session once, whichever of its connections notices first.
fn finish(shared: &Shared, ctx: &Ctx<DstMessage>, s: &Arc<Session>, why: String) {
    if !s.take_finish() {
        return;
    }
    lock(&shared.reg.sessions).remove(&s.id);
    lock(&shared.reg.by_token).retain(|_, v| v.id != s.id);
    let summary = s.summary(why);
    {
        let mut fin = lock(&shared.reg.finished);
        if fin.len() == KEPT_SESSIONS {
            fin.pop_front();
        }
        fin.push_back(summary.clone());
    }
    ctx.send(DstMessage::Ended(summary));
}

/// The main connection: pages, and the handshake that starts postcopy.
fn run_main<R: std::io::Read>(
    s: &Arc<Session>,
    r: &mut FrameReader<R>,
    shared: &Shared,
    ctx: &Ctx<DstMessage>,
) {
    let announce = || ctx.send(DstMessage::Postcopy(VmPostcopy { session: s.id }));
    let why = match s.run_pages(r, Some(&announce)) {
        Err(_) if shared.stop.is_set() => "stopped".into(),
        Err(e) => reason(&e),
        Ok(()) => NORMAL_END.into(),
    };
    finish(shared, ctx, s, why);
}
