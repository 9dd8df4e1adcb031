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

mod config;
mod conn;
mod data;
pub mod handshake;
pub mod session;

use std::collections::{HashMap, VecDeque};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use self::session::Session;
use crate::error::{Error, Result};
use crate::pace::StopFlag;
use crate::run::{lock, Background, Ctx};
use crate::sock::{canonical, listen_tcp, wait_readable};
use crate::units::{self};
use crate::vm::src::vm_pages;
pub use config::VmDestinationConfig;
use conn::*;
pub use data::{DstMessage, VmConnected, VmDstSample, VmPostcopy, VmRejected, VmSessionSummary};

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
        let max_connections = fd_capacity(cfg.max_connections as usize);
        let shared = Arc::new(Shared {
            stop: StopFlag::new(),
            vm_pages: vm_pages(cfg.vm_size_gb)?,
            max_connections,
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

    /// Connections served at once: the configured maximum, or fewer where
    /// the descriptor limit allows fewer (see [`fd_capacity`]).
    pub fn max_connections(&self) -> usize {
        self.shared.max_connections
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

/// Descriptors one connection may hold: its socket, the session's copy to
/// close it by, the page-request writer's, and the opening deadline's.
pub const FDS_PER_CONNECTION: usize = 5;
/// Descriptors kept beside those open at start (the reserve, a metrics
/// scrape, a log file).
const FDS_SPARE: usize = 8;

/// How many connections the descriptor limit allows, up to `wanted`:
/// the soft limit is raised to the hard one first (as servers do).
/// Fewer than `wanted` means the limit would have refused connections
/// mid-session ("out of file descriptors") before `max_connections`.
pub fn fd_capacity(wanted: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct given only.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return wanted;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    let limit = usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX);
    // Those open now: the interpreter's, stdio, the listener.
    let open = std::fs::read_dir("/proc/self/fd").map_or(32, |d| d.count());
    wanted
        .min(limit.saturating_sub(open + FDS_SPARE) / FDS_PER_CONNECTION)
        .max(1)
}

/// How long a session's other connections may go on bringing nothing after
/// one of them ended normally.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Ends the sessions that brought less than a page in the idle timeout: a
/// source that stalls, or trickles a byte a second, must not hold its
/// connections (and --max-connections slots) for ever.
fn close_idle_sessions(shared: &Shared, ctx: &Ctx<DstMessage>) {
    let now = Instant::now();
    let sessions: Vec<_> = lock(&shared.reg.sessions).values().cloned().collect();
    for s in sessions {
        // One connection ended normally and the others have brought
        // nothing since: the source is done with them too.
        if let Some(why) = s.pending_end() {
            if s.idle_for(now) >= DRAIN_TIMEOUT {
                finish(shared, ctx, &s, why);
                continue;
            }
        }
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
