//! One source's session at the destination: the connections that belong to
//! it, the bytes they brought, and the page requests of postcopy. The
//! thread that receives a requested page sends the next request itself, so
//! a round trip costs no hop between threads. The readers here work on any
//! `Read` and the requests go to any `Write`, so the protocol is tested on
//! bytes in memory.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{VmDstSample, VmSessionSummary};
use crate::pace::mono_ns;
use crate::rng::WyRand;
use crate::run::lock;
use crate::stats::{LatencyBuckets, LatencyHistogram};
use crate::units::MB;
use crate::vm::frame::FrameReader;
use crate::vm::wire::*;

const NO_REQUEST: u64 = u64::MAX;

/// Where page requests go.
pub type RequestWriter = Box<dyn Write + Send>;

/// The postcopy page requests of one session.
struct Requester {
    active: AtomicBool,
    current: AtomicU64,
    sent_ns: AtomicU64,
    writer: Mutex<Option<RequestWriter>>,
    rng: Mutex<WyRand>,
    interval: Mutex<LatencyHistogram>,
    total: Mutex<LatencyHistogram>,
}

impl Requester {
    /// Asks for the next random page.
    fn issue(&self, vm_pages: u64) -> io::Result<()> {
        let page = lock(&self.rng).below(vm_pages);
        let mut w = lock(&self.writer);
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
        lock(&self.interval).record(lat);
        self.issue(vm_pages)
    }
}

/// One source's session.
pub struct Session {
    /// Number on this destination.
    pub id: u64,
    /// The source, "ip:port".
    pub peer: String,
    /// Guest size in pages.
    pub vm_pages: u64,
    /// HELLO flags (0 for the original protocol).
    pub flags: u32,
    start: Instant,
    bytes: AtomicU64,
    channels: AtomicU64,
    preempt: AtomicBool,
    /// Multifd channels HELLO announced, and which of them joined.
    joined: Mutex<Vec<bool>>,
    /// Connections still serving the session.
    live: AtomicU64,
    /// A connection's normal end, kept until the last one ends.
    normal_end: Mutex<Option<String>>,
    ended: AtomicBool,
    finished: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
    req: Requester,
    last_sample: Mutex<(Instant, u64)>,
    /// When the bytes last grew by a page, and to what.
    progress: Mutex<(Instant, u64)>,
}

fn proto(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// What a normal end is called: the source closed its connections (a
/// source that closes with page requests unread sends a reset rather than
/// a FIN; both are its normal end).
pub const NORMAL_END: &str = "source closed";

/// A connection's end in words.
pub fn reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => NORMAL_END.into(),
        _ => e.to_string(),
    }
}

/// Whether `why` is a session's normal end.
pub fn is_normal_end(why: &str) -> bool {
    why == NORMAL_END
}

impl Session {
    /// A new session whose page requests go to `writer`.
    pub fn new(
        id: u64,
        peer: String,
        vm_pages: u64,
        flags: u32,
        announced: u32,
        writer: Option<RequestWriter>,
    ) -> Self {
        let now = Instant::now();
        Self {
            id,
            peer,
            vm_pages,
            flags,
            start: now,
            bytes: AtomicU64::new(0),
            channels: AtomicU64::new(0),
            preempt: AtomicBool::new(false),
            joined: Mutex::new(vec![false; announced as usize]),
            live: AtomicU64::new(0),
            normal_end: Mutex::new(None),
            ended: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            req: Requester {
                active: AtomicBool::new(false),
                current: AtomicU64::new(NO_REQUEST),
                sent_ns: AtomicU64::new(0),
                writer: Mutex::new(writer),
                rng: Mutex::new(WyRand::new(
                    mono_ns() ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                )),
                interval: Mutex::new(LatencyHistogram::new()),
                total: Mutex::new(LatencyHistogram::new()),
            },
            last_sample: Mutex::new((now, 0)),
            progress: Mutex::new((now, 0)),
        }
    }

    /// How long since the session last brought a page's worth of bytes
    /// (4 KiB): a stalled or trickling source.
    pub fn idle_for(&self, now: Instant) -> Duration {
        let bytes = self.bytes.load(Ordering::Relaxed);
        let mut p = lock(&self.progress);
        if bytes >= p.1 + PAGE_SIZE as u64 {
            *p = (now, bytes);
        }
        now.saturating_duration_since(p.0)
    }

    /// Adds a connection to close when the session ends.
    pub fn add_conn(&self, c: &TcpStream) {
        if let Ok(c) = c.try_clone() {
            lock(&self.conns).push(c);
        }
    }

    /// True once the session was ended (by a connection or a stop).
    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Closes every connection of the session (once).
    pub fn end(&self) {
        if !self.ended.swap(true, Ordering::AcqRel) {
            for c in lock(&self.conns).iter() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }

    /// True for the first caller only: that one reports the session's end.
    pub fn take_finish(&self) -> bool {
        if self.finished.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.end();
        *lock(&self.req.writer) = None;
        true
    }

    /// A multifd connection joined.
    pub fn add_channel(&self) {
        self.channels.fetch_add(1, Ordering::Relaxed);
    }

    /// Checks an extra connection against what HELLO announced: a multifd
    /// channel's index among those announced and not joined yet; a preempt
    /// channel only with the preempt flag, and once.
    pub fn admit(&self, kind: u64, index: u64) -> Result<(), String> {
        if kind == CHANNEL_PREEMPT {
            if self.flags & FLAG_PREEMPT == 0 {
                return Err("a preempt channel, but HELLO announced no preempt".into());
            }
            if self.preempt.swap(true, Ordering::AcqRel) {
                return Err("a second preempt channel".into());
            }
            return Ok(());
        }
        let mut joined = lock(&self.joined);
        let n = joined.len();
        match usize::try_from(index).ok().and_then(|i| joined.get_mut(i)) {
            None => Err(format!(
                "multifd channel {index}, but HELLO announced {n} channels"
            )),
            Some(true) => Err(format!("multifd channel {index} joined twice")),
            Some(slot) => {
                *slot = true;
                Ok(())
            }
        }
    }

    /// A connection starts serving the session.
    pub fn enter(&self) {
        self.live.fetch_add(1, Ordering::AcqRel);
    }

    /// A connection ended normally (`why`): the session ends when the last
    /// one has, so the others' bytes in flight are still counted. Returns
    /// the end to report once this was the last.
    pub fn leave(&self, why: String) -> Option<String> {
        let mut end = lock(&self.normal_end);
        end.get_or_insert(why);
        if self.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            end.clone()
        } else {
            None
        }
    }

    /// The normal end a connection reported while others still ran.
    pub fn pending_end(&self) -> Option<String> {
        lock(&self.normal_end).clone()
    }

    /// The preempt connection joined; unless the source keeps requests on
    /// the main connection, they go out on `writer` from now on.
    pub fn set_preempt(&self, writer: Option<RequestWriter>) {
        self.preempt.store(true, Ordering::Relaxed);
        if self.flags & FLAG_REQUESTS_ON_MAIN == 0 {
            if let Some(w) = writer {
                *lock(&self.req.writer) = Some(w);
            }
        }
    }

    /// The interval since the last sample.
    pub fn sample(&self) -> VmDstSample {
        let now = Instant::now();
        let bytes = self.bytes.load(Ordering::Relaxed);
        let mut last = lock(&self.last_sample);
        let dt = now - last.0;
        let delta = bytes - last.1;
        *last = (now, bytes);
        let mut h = lock(&self.req.interval);
        let latency = h.percentiles();
        let buckets = LatencyBuckets::of(&h);
        lock(&self.req.total).add(&h);
        h.reset();
        VmDstSample {
            session: self.id,
            elapsed_s: (now - self.start).as_secs_f64(),
            unix_s: crate::pace::unix_now(),
            duration_ms: dt.as_millis() as u64,
            bytes: delta,
            rate_mb_s: delta as f64 / MB as f64 / dt.as_secs_f64().max(1e-9),
            latency,
            latency_buckets: buckets.counts,
            latency_sum_s: buckets.sum_ns as f64 / 1e9,
        }
    }

    /// The whole session's figures.
    pub fn summary(&self, reason: String) -> VmSessionSummary {
        let mut total = lock(&self.req.total).clone();
        total.add(&lock(&self.req.interval));
        let buckets = LatencyBuckets::of(&total);
        VmSessionSummary {
            session: self.id,
            peer: self.peer.clone(),
            duration_s: self.start.elapsed().as_secs_f64(),
            bytes: self.bytes.load(Ordering::Relaxed),
            channels: self.channels.load(Ordering::Relaxed),
            preempt: self.preempt.load(Ordering::Relaxed),
            latency: total.percentiles(),
            latency_buckets: buckets.counts,
            latency_sum_s: buckets.sum_ns as f64 / 1e9,
            reason,
        }
    }

    /// SEND_PAGE messages (and, on the main connection, HANDSHAKE, which
    /// calls `on_handshake` once) until the stream ends or breaks.
    pub fn run_pages<R: Read>(
        &self,
        r: &mut FrameReader<R>,
        on_handshake: Option<&dyn Fn()>,
    ) -> io::Result<()> {
        // Count locally, publish every few dozen pages: one shared atomic
        // add per page costs more than the parsing.
        let mut unpublished = 0u64;
        let result = (|| loop {
            if unpublished >= 32 * (HEADER_LEN + PAGE_SIZE) as u64 {
                self.bytes
                    .fetch_add(std::mem::take(&mut unpublished), Ordering::Relaxed);
            }
            let (magic, arg) = parse_header(r.peek(HEADER_LEN)?);
            r.consume(HEADER_LEN);
            match magic {
                MAGIC_SEND_PAGE => {
                    if arg >= self.vm_pages {
                        return Err(proto(format!("page index overflow: {arg:#x}")));
                    }
                    r.skip(PAGE_SIZE)?;
                    unpublished += (HEADER_LEN + PAGE_SIZE) as u64;
                    self.req.on_page(arg, self.vm_pages)?;
                }
                MAGIC_HANDSHAKE if on_handshake.is_some() => {
                    self.bytes.fetch_add(HEADER_LEN as u64, Ordering::Relaxed);
                    if !self.req.active.swap(true, Ordering::AcqRel) {
                        if let Some(f) = on_handshake {
                            f();
                        }
                        self.req.issue(self.vm_pages)?;
                    }
                }
                other => return Err(proto(format!("magic error: {other:#x}"))),
            }
        })();
        self.bytes.fetch_add(unpublished, Ordering::Relaxed);
        result
    }

    /// MULTIFD packets until the stream ends or breaks.
    pub fn run_multifd<R: Read>(&self, r: &mut FrameReader<R>) -> io::Result<()> {
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
            if let Some(p) = pages[..n].iter().find(|p| **p >= self.vm_pages) {
                return Err(proto(format!("page index overflow: {p:#x}")));
            }
            r.skip(n * PAGE_SIZE)?;
            self.bytes
                .fetch_add((HEADER_LEN + n * (8 + PAGE_SIZE)) as u64, Ordering::Relaxed);
            for &p in &pages[..n] {
                self.req.on_page(p, self.vm_pages)?;
            }
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
