//! The emulated source (`vm -s`): streams precopy pages to the destination
//! (on the main connection as the original, or over `channels` multifd
//! connections), answers the destination's page requests with priority
//! (on the main connection behind the stream, as QEMU without preempt, or on
//! a separate preempt connection), optionally capped to a bandwidth, and
//! reports its send rate every interval.
//!
//! Pages are all zeros, as in the original; messages go out in large
//! vectored writes that point every page at one zero page, so the kernel's
//! copy is the only copy.

use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pace::{Pacer, StopFlag};
use crate::rng::WyRand;
use crate::run::{lock, spawn_scoped, Background, Ctx, Ticker};
use crate::sock::{connect_tcp, resolve};
use crate::units::{self, de, MB};
use crate::vm::frame::FrameReader;
use crate::vm::wire::*;

static ZERO_PAGE: [u8; PAGE_SIZE] = [0; PAGE_SIZE];
/// Messages per vectored write on the main connection (about 1 MiB).
const BATCH: usize = 256;
/// Most multifd connections a source may open.
pub const MAX_CHANNELS: u32 = 64;

/// Where the destination's page requests travel when there is a preempt
/// connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReturnPath {
    /// With the pages they ask for, on the preempt connection.
    #[default]
    Preempt,
    /// On the main connection's return path, as QEMU does.
    Main,
}

impl ReturnPath {
    /// Parses `preempt` or `main`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "preempt" => Ok(Self::Preempt),
            "main" => Ok(Self::Main),
            _ => Err(Error::config(format!(
                "unknown return path '{s}' (expected preempt or main)"
            ))),
        }
    }

    /// The name as written.
    pub fn name(self) -> &'static str {
        match self {
            Self::Preempt => "preempt",
            Self::Main => "main",
        }
    }
}

crate::text_serde!(ReturnPath);

/// An emulated source's configuration. Sizes in GB, rates in MB/s, times in
/// seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct VmSourceConfig {
    /// The destination: an IPv4 or IPv6 address or a host name.
    pub host: String,
    /// Its TCP port.
    #[serde(deserialize_with = "de::int")]
    pub port: u16,
    /// Guest size in GB (1 GB = 262144 pages of 4 KiB).
    #[serde(deserialize_with = "de::int")]
    pub vm_size_gb: u64,
    /// Stream precopy pages.
    #[serde(deserialize_with = "de::flag")]
    pub precopy: bool,
    /// Ask the destination to request pages (postcopy).
    #[serde(deserialize_with = "de::flag")]
    pub postcopy: bool,
    /// Multifd connections for the precopy stream (0 = on main; at most 64).
    #[serde(deserialize_with = "de::int")]
    pub channels: u32,
    /// Answer page requests on a connection of their own.
    #[serde(deserialize_with = "de::flag")]
    pub preempt: bool,
    /// With `preempt`: where the requests travel.
    pub return_path: ReturnPath,
    /// Cap of the precopy stream, MB/s (also size text: `1G`); None = none.
    #[serde(deserialize_with = "de::opt_size")]
    pub max_bandwidth_mb_s: Option<u64>,
    /// Stop after this many seconds; None = until stopped.
    #[serde(deserialize_with = "de::opt_float")]
    pub duration_s: Option<f64>,
    /// Seconds between samples.
    #[serde(deserialize_with = "de::float")]
    pub interval_s: f64,
    /// Seconds to wait for each connection to the destination.
    #[serde(deserialize_with = "de::float")]
    pub connect_timeout_s: f64,
}

impl Default for VmSourceConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: crate::DEFAULT_PORT,
            vm_size_gb: 1024,
            precopy: true,
            postcopy: false,
            channels: 0,
            preempt: false,
            return_path: ReturnPath::Preempt,
            max_bandwidth_mb_s: None,
            duration_s: None,
            interval_s: 1.0,
            connect_timeout_s: 10.0,
        }
    }
}

/// Pages of 4 KiB in a guest of `gb` GB, checked.
pub(crate) fn vm_pages(gb: u64) -> Result<u64> {
    gb.checked_mul(1 << 18)
        .filter(|p| *p > 0 && *p < 1 << 52)
        .ok_or_else(|| {
            Error::field(
                "vm_size_gb",
                format!("must be between 1 GB and 2^34 GB, not {gb}"),
            )
        })
}

impl VmSourceConfig {
    /// Rejects combinations a run cannot honour.
    pub fn validate(&self) -> Result<()> {
        if self.host.trim().is_empty() {
            return Err(Error::field("host", "the destination host is required"));
        }
        if self.port == 0 {
            return Err(Error::field("port", "must not be 0"));
        }
        vm_pages(self.vm_size_gb)?;
        if !self.precopy && !self.postcopy {
            return Err(Error::field(
                "precopy",
                "nothing to test: turn on precopy, postcopy or both",
            ));
        }
        if self.channels > 0 && !self.precopy {
            return Err(Error::field(
                "channels",
                "multifd channels carry precopy pages: turn on precopy",
            ));
        }
        if self.channels > MAX_CHANNELS {
            return Err(Error::field(
                "channels",
                format!(
                    "at most {MAX_CHANNELS} multifd channels, not {}",
                    self.channels
                ),
            ));
        }
        if self.preempt && !self.postcopy {
            return Err(Error::field(
                "preempt",
                "a preempt connection is for postcopy requests: turn on postcopy",
            ));
        }
        if self.return_path == ReturnPath::Main && !self.preempt {
            return Err(Error::field(
                "return_path",
                "the main return path is a choice of preempt mode: turn on preempt",
            ));
        }
        match self.max_bandwidth_mb_s {
            Some(0) => {
                return Err(Error::field(
                    "max_bandwidth_mb_s",
                    "must be greater than zero",
                ))
            }
            Some(b) if b.checked_mul(MB).is_none() => {
                return Err(Error::field("max_bandwidth_mb_s", "too large"))
            }
            _ => {}
        }
        units::run_length(self.duration_s)?;
        units::seconds("interval_s", self.interval_s)?;
        units::seconds("connect_timeout_s", self.connect_timeout_s)?;
        Ok(())
    }

    fn max_bandwidth(&self) -> Option<u64> {
        self.max_bandwidth_mb_s.map(|m| m * MB)
    }

    fn requests_on_main(&self) -> bool {
        self.return_path == ReturnPath::Main
    }
}

/// What the run works from: the configuration and what was derived from it.
struct Plan {
    cfg: VmSourceConfig,
    vm_pages: u64,
    duration: Option<Duration>,
    interval: Duration,
    max_bandwidth: Option<u64>,
}

/// One interval of a source.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename = "sample")]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct VmSrcSample {
    /// 0 for the first interval.
    pub index: u64,
    /// Seconds since the start, at the end of the interval.
    pub elapsed_s: f64,
    /// Wall-clock time at the end of the interval, Unix seconds (to the
    /// microsecond): the same timeline as every tool's events and QEMU's.
    pub unix_s: f64,
    /// Length of the interval, ms.
    pub duration_ms: u64,
    /// Bytes sent over every connection (headers and pages).
    pub bytes: u64,
    /// Send rate, MB/s.
    pub rate_mb_s: f64,
    /// Send rate of each multifd connection, MB/s.
    pub channel_mb_s: Vec<f64>,
    /// Page requests answered in the interval.
    pub requests: u64,
}

/// How a source run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VmSrcEnd {
    /// Its duration was reached.
    Duration,
    /// It was stopped.
    Stopped,
    /// The destination closed a connection.
    PeerClosed,
    /// A connection failed otherwise.
    Error,
}

impl VmSrcEnd {
    /// The name as in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Duration => "duration",
            Self::Stopped => "stopped",
            Self::PeerClosed => "peer_closed",
            Self::Error => "error",
        }
    }

    /// True for an end the user asked for (duration or stop).
    pub fn is_normal(self) -> bool {
        matches!(self, Self::Duration | Self::Stopped)
    }
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename = "summary")]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct VmSrcSummary {
    /// Seconds from the start to the end.
    pub duration_s: f64,
    /// Bytes sent.
    pub bytes: u64,
    /// Average rate, MB/s.
    pub rate_mb_s: f64,
    /// Best interval, MB/s.
    pub peak_mb_s: f64,
    /// Page requests answered.
    pub requests: u64,
    /// Multifd connections used.
    pub channels: u32,
    /// Whether a preempt connection was used.
    pub preempt: bool,
    /// How it ended.
    pub end: VmSrcEnd,
    /// The end in words ("duration reached", "stopped", or what went wrong).
    pub end_reason: String,
    /// Number of intervals reported.
    pub intervals: u64,
    /// Every interval (not part of the JSON summary line).
    #[serde(skip)]
    pub samples: Vec<VmSrcSample>,
}

struct Shared {
    stop: StopFlag,
    main_bytes: AtomicU64,
    preempt_bytes: AtomicU64,
    channel_bytes: Vec<AtomicU64>,
    requests: AtomicU64,
    /// A page request waits for the main connection.
    pending: AtomicBool,
    main_writer: Mutex<TcpStream>,
    sockets: Vec<TcpStream>,
    failure: Mutex<Option<(VmSrcEnd, String)>>,
}

impl Shared {
    /// First failure wins; everything stops.
    fn fail(&self, why: (VmSrcEnd, String)) {
        let mut f = lock(&self.failure);
        if f.is_none() && !self.stop.is_set() {
            *f = Some(why);
        }
        drop(f);
        self.shutdown();
    }

    fn shutdown(&self) {
        self.stop.stop();
        for s in &self.sockets {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn total_bytes(&self) -> u64 {
        self.main_bytes.load(Ordering::Relaxed)
            + self.preempt_bytes.load(Ordering::Relaxed)
            + self
                .channel_bytes
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum::<u64>()
    }
}

/// A running source.
pub struct VmSource {
    bg: Background<VmSrcSample, VmSrcSummary>,
}

fn io_err(what: &str) -> impl Fn(io::Error) -> Error + '_ {
    move |e| Error::network(what, e)
}

/// Sends HELLO and waits for HELLO_ACK; an original destination closes.
fn hello(main: &mut TcpStream, h: &Hello) -> Result<()> {
    let unknown = || {
        Error::Protocol(
            "the destination closed the connection at the protocol extension: it does not know \
             multifd channels or preempt (an original mig_mon or an older version?)"
                .into(),
        )
    };
    let mut msg = header(MAGIC_HELLO, HELLO_ARG).to_vec();
    msg.extend_from_slice(&h.encode());
    main.write_all(&msg).map_err(|_| unknown())?;
    main.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io_err("setting a read timeout"))?;
    let mut ack = [0u8; HEADER_LEN];
    let r = io::Read::read_exact(main, &mut ack);
    main.set_read_timeout(None)
        .map_err(io_err("clearing the read timeout"))?;
    match r {
        Ok(()) if parse_header(&ack) == (MAGIC_HELLO_ACK, HELLO_ARG) => Ok(()),
        Ok(()) => Err(Error::Protocol(format!(
            "unexpected answer to HELLO: {:#x}",
            parse_header(&ack).0
        ))),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(Error::Protocol(
                "the destination did not answer the protocol extension within 5 s".into(),
            ))
        }
        Err(_) => Err(unknown()),
    }
}

impl VmSource {
    /// Connects (main, then the extra connections), tells the destination
    /// what to run, and starts streaming.
    pub fn start(cfg: VmSourceConfig) -> Result<Self> {
        cfg.validate()?;
        let target = resolve(&cfg.host, cfg.port)?;
        let plan = Plan {
            vm_pages: vm_pages(cfg.vm_size_gb)?,
            duration: units::run_length(cfg.duration_s)?,
            interval: units::seconds("interval_s", cfg.interval_s)?,
            max_bandwidth: cfg.max_bandwidth(),
            cfg,
        };
        let cfg = &plan.cfg;
        let timeout = units::seconds("connect_timeout_s", cfg.connect_timeout_s)?;
        let mut main = connect_tcp(target, timeout)?;
        let mut channels = Vec::new();
        let mut preempt = None;
        if cfg.channels > 0 || cfg.preempt {
            let session =
                WyRand::new(crate::pace::mono_ns() ^ u64::from(std::process::id())).next_u64();
            let flags = if cfg.channels > 0 { FLAG_MULTIFD } else { 0 }
                | if cfg.preempt { FLAG_PREEMPT } else { 0 }
                | if cfg.requests_on_main() {
                    FLAG_REQUESTS_ON_MAIN
                } else {
                    0
                };
            hello(
                &mut main,
                &Hello {
                    version: EXT_VERSION,
                    flags,
                    channels: cfg.channels,
                    session,
                    vm_pages: plan.vm_pages,
                },
            )?;
            let open = |kind: u64, index: u64| -> Result<TcpStream> {
                let mut s = connect_tcp(target, timeout)?;
                let mut msg = header(MAGIC_CHANNEL, session).to_vec();
                msg.extend_from_slice(&header(kind, index));
                s.write_all(&msg).map_err(io_err("opening a channel"))?;
                Ok(s)
            };
            for i in 0..cfg.channels {
                channels.push(open(CHANNEL_MULTIFD, u64::from(i))?);
            }
            if cfg.preempt {
                preempt = Some(open(CHANNEL_PREEMPT, 0)?);
            }
        }
        if cfg.postcopy {
            main.write_all(&header(MAGIC_HANDSHAKE, 0))
                .map_err(io_err("sending the postcopy handshake"))?;
        }
        let clone = |s: &TcpStream| s.try_clone().map_err(io_err("cloning a socket"));
        let mut sockets = vec![clone(&main)?];
        for c in &channels {
            sockets.push(clone(c)?);
        }
        if let Some(p) = &preempt {
            sockets.push(clone(p)?);
        }
        let shared = Arc::new(Shared {
            stop: StopFlag::new(),
            main_bytes: AtomicU64::new(0),
            preempt_bytes: AtomicU64::new(0),
            channel_bytes: (0..cfg.channels).map(|_| AtomicU64::new(0)).collect(),
            requests: AtomicU64::new(0),
            pending: AtomicBool::new(false),
            main_writer: Mutex::new(clone(&main)?),
            sockets,
            failure: Mutex::new(None),
        });
        let sh = shared.clone();
        let bg = Background::spawn("vm-src", move |ctx| {
            Ok(run(&plan, &shared, ctx, main, channels, preempt))
        })?
        .on_stop(move || sh.shutdown());
        Ok(Self { bg })
    }

    /// The samples, the stop and the summary.
    pub fn background(&self) -> &Background<VmSrcSample, VmSrcSummary> {
        &self.bg
    }
}

fn write_all_vectored(w: &mut impl Write, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn pacer(cfg: &Plan, share: u32) -> Option<Pacer> {
    cfg.max_bandwidth.map(|b| {
        Pacer::new(
            b as f64 / f64::from(share.max(1)),
            Instant::now(),
            Duration::from_millis(20),
        )
    })
}

/// Messages per write: about a millisecond's worth when capped, for a
/// smooth stream.
fn batch_for(cfg: &Plan, share: u32) -> usize {
    match cfg.max_bandwidth {
        Some(b) => ((b as f64 / f64::from(share.max(1)) * 0.001) as usize
            / (HEADER_LEN + PAGE_SIZE))
            .clamp(1, BATCH),
        None => BATCH,
    }
}

fn pace(p: &mut Option<Pacer>, bytes: u64, stop: &StopFlag) {
    if let Some(p) = p.as_mut() {
        let wait = p.advance(bytes, Instant::now());
        if !wait.is_zero() {
            stop.sleep_until(Instant::now() + wait);
        }
    }
}

/// Precopy on the main connection: SEND_PAGE messages, page after page.
fn precopy_main(cfg: &Plan, sh: &Shared) -> io::Result<()> {
    let mut index = 0u64;
    let batch = batch_for(cfg, 1);
    let mut headers = vec![[0u8; HEADER_LEN]; batch];
    let mut p = pacer(cfg, 1);
    while !sh.stop.is_set() {
        for h in headers.iter_mut() {
            *h = header(MAGIC_SEND_PAGE, index);
            index += 1;
            if index == cfg.vm_pages {
                index = 0;
            }
        }
        let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(2 * batch);
        for h in &headers {
            iov.push(IoSlice::new(h));
            iov.push(IoSlice::new(&ZERO_PAGE));
        }
        // Let a waiting page request go first (QEMU sends it next).
        while sh.pending.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        {
            let mut w = lock(&sh.main_writer);
            write_all_vectored(&mut *w, &mut iov)?;
        }
        let bytes = (batch * (HEADER_LEN + PAGE_SIZE)) as u64;
        sh.main_bytes.fetch_add(bytes, Ordering::Relaxed);
        pace(&mut p, bytes, &sh.stop);
    }
    Ok(())
}

/// Precopy on one multifd connection: 128-page packets.
fn precopy_multifd(
    cfg: &Plan,
    sh: &Shared,
    mut sock: TcpStream,
    k: usize,
    next: &AtomicU64,
) -> io::Result<()> {
    let mut p = pacer(cfg, cfg.cfg.channels);
    let mut idx = [0u8; MULTIFD_PAGES * 8];
    let hdr = header(MAGIC_MULTIFD, MULTIFD_PAGES as u64);
    let bytes = (HEADER_LEN + MULTIFD_PAGES * (8 + PAGE_SIZE)) as u64;
    while !sh.stop.is_set() {
        let base = next.fetch_add(MULTIFD_PAGES as u64, Ordering::Relaxed);
        for i in 0..MULTIFD_PAGES {
            let page = (base + i as u64) % cfg.vm_pages;
            idx[i * 8..i * 8 + 8].copy_from_slice(&page.to_le_bytes());
        }
        let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(MULTIFD_PAGES + 2);
        iov.push(IoSlice::new(&hdr));
        iov.push(IoSlice::new(&idx));
        iov.extend((0..MULTIFD_PAGES).map(|_| IoSlice::new(&ZERO_PAGE)));
        write_all_vectored(&mut sock, &mut iov)?;
        sh.channel_bytes[k].fetch_add(bytes, Ordering::Relaxed);
        pace(&mut p, bytes, &sh.stop);
    }
    Ok(())
}

/// Reads page requests from the main connection and answers each at once.
fn answer_requests(
    cfg: &Plan,
    sh: &Shared,
    main: TcpStream,
    mut preempt: Option<TcpStream>,
) -> io::Result<()> {
    let mut r = FrameReader::new(main, 64 * 1024);
    loop {
        let (magic, page) = parse_header(r.peek(HEADER_LEN)?);
        r.consume(HEADER_LEN);
        if magic != MAGIC_REQ_PAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("page request magic incorrect: {magic:#x}"),
            ));
        }
        if page >= cfg.vm_pages {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("requested page {page:#x} is past the VM size"),
            ));
        }
        let h = header(MAGIC_SEND_PAGE, page);
        let mut iov = [IoSlice::new(&h), IoSlice::new(&ZERO_PAGE)];
        let bytes = (HEADER_LEN + PAGE_SIZE) as u64;
        match preempt.as_mut() {
            Some(p) => {
                write_all_vectored(p, &mut iov)?;
                sh.preempt_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            None => {
                sh.pending.store(true, Ordering::Release);
                let r = {
                    let mut w = lock(&sh.main_writer);
                    write_all_vectored(&mut *w, &mut iov)
                };
                sh.pending.store(false, Ordering::Release);
                r?;
                sh.main_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
        }
        sh.requests.fetch_add(1, Ordering::Relaxed);
    }
}

fn describe(e: &io::Error) -> (VmSrcEnd, String) {
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe => (
            VmSrcEnd::PeerClosed,
            "the destination closed the connection".into(),
        ),
        _ => (VmSrcEnd::Error, e.to_string()),
    }
}

fn run(
    plan: &Plan,
    sh: &Arc<Shared>,
    ctx: &Ctx<VmSrcSample>,
    main: TcpStream,
    channels: Vec<TcpStream>,
    preempt: Option<TcpStream>,
) -> VmSrcSummary {
    let cfg = &plan.cfg;
    let start = Instant::now();
    let next_page = AtomicU64::new(0);
    let mut samples = Vec::new();
    let mut ticker = Ticker::new(start, plan.interval, plan.duration);
    std::thread::scope(|s| {
        // A thread that cannot be started (an address space or pids limit)
        // ends the run with that reason; the others see the shutdown.
        macro_rules! start {
            ($name:expr, $f:expr) => {
                if let Err(e) = spawn_scoped(s, $name, $f) {
                    sh.fail((VmSrcEnd::Error, e.to_string()));
                }
            };
        }
        let preempt_reader = preempt.as_ref().and_then(|p| p.try_clone().ok());
        start!("vm-src-requests", || {
            if let Err(e) = answer_requests(plan, sh, main, preempt) {
                sh.fail(describe(&e));
            }
        });
        if let Some(pr) = preempt_reader {
            let pw = pr.try_clone().ok();
            start!("vm-src-preempt", move || {
                if let Err(e) = answer_requests(plan, sh, pr, pw) {
                    sh.fail(describe(&e));
                }
            });
        }
        if cfg.precopy && channels.is_empty() {
            start!("vm-src-precopy", || {
                if let Err(e) = precopy_main(plan, sh) {
                    sh.fail(describe(&e));
                }
            });
        }
        for (k, c) in channels.into_iter().enumerate() {
            let next = &next_page;
            start!("vm-src-multifd", move || {
                if let Err(e) = precopy_multifd(plan, sh, c, k, next) {
                    let (end, why) = describe(&e);
                    sh.fail((end, format!("multifd channel {k}: {why}")));
                }
            });
        }
        sample_loop(sh, ctx, &mut ticker, &mut samples);
        sh.shutdown();
    });
    let duration_s = start.elapsed().as_secs_f64();
    let bytes = sh.total_bytes();
    let (end, end_reason) = lock(&sh.failure).clone().unwrap_or_else(|| {
        if ticker.expired() {
            (VmSrcEnd::Duration, "duration reached".into())
        } else {
            (VmSrcEnd::Stopped, "stopped".into())
        }
    });
    VmSrcSummary {
        duration_s,
        bytes,
        rate_mb_s: bytes as f64 / MB as f64 / duration_s.max(1e-9),
        peak_mb_s: samples.iter().map(|s| s.rate_mb_s).fold(0.0, f64::max),
        requests: sh.requests.load(Ordering::Relaxed),
        channels: cfg.channels,
        preempt: cfg.preempt,
        end,
        end_reason,
        intervals: samples.len() as u64,
        samples,
    }
}

fn sample_loop(
    sh: &Shared,
    ctx: &Ctx<VmSrcSample>,
    ticker: &mut Ticker,
    samples: &mut Vec<VmSrcSample>,
) {
    let start = ticker.start();
    let mut last_bytes = 0u64;
    let mut last_req = 0u64;
    let mut last_ch: Vec<u64> = vec![0; sh.channel_bytes.len()];
    while let Some(tick) = ticker.next(&sh.stop) {
        let dt = tick.length.as_secs_f64();
        let bytes = sh.total_bytes();
        let req = sh.requests.load(Ordering::Relaxed);
        let ch: Vec<u64> = sh
            .channel_bytes
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let mb = |b: u64| b as f64 / MB as f64 / dt;
        let sample = VmSrcSample {
            index: tick.index,
            elapsed_s: (tick.now - start).as_secs_f64(),
            unix_s: crate::pace::unix_now(),
            duration_ms: tick.length.as_millis() as u64,
            bytes: bytes - last_bytes,
            rate_mb_s: mb(bytes - last_bytes),
            channel_mb_s: ch.iter().zip(&last_ch).map(|(a, b)| mb(a - b)).collect(),
            requests: req - last_req,
        };
        samples.push(sample.clone());
        ctx.send(sample);
        (last_bytes, last_req, last_ch) = (bytes, req, ch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::dst::{DstMessage, VmDestination, VmDestinationConfig};
    use std::net::SocketAddr;

    fn cfg(target: SocketAddr) -> VmSourceConfig {
        VmSourceConfig {
            host: target.ip().to_string(),
            port: target.port(),
            vm_size_gb: 1,
            precopy: true,
            postcopy: true,
            duration_s: Some(1.2),
            interval_s: 0.3,
            ..VmSourceConfig::default()
        }
    }

    fn dst() -> VmDestination {
        VmDestination::start(VmDestinationConfig {
            bind: Some("127.0.0.1".into()),
            port: 0,
            vm_size_gb: 1,
            interval_s: 0.3,
            ..VmDestinationConfig::default()
        })
        .unwrap()
    }

    fn finish(src: VmSource) -> VmSrcSummary {
        while !src.background().is_done() {
            std::thread::sleep(Duration::from_millis(20));
        }
        src.background().stop().unwrap()
    }

    #[test]
    fn every_mode_end_to_end() {
        let d = dst();
        for (channels, preempt, precopy) in [
            (0, false, true),
            (0, false, false),
            (3, false, true),
            (2, true, true),
            (0, true, true),
        ] {
            let src = VmSource::start(VmSourceConfig {
                channels,
                preempt,
                precopy,
                ..cfg(d.local_addr())
            })
            .unwrap();
            let s = finish(src);
            assert_eq!(s.end_reason, "duration reached");
            assert_eq!(s.end, VmSrcEnd::Duration);
            assert!(s.requests > 10, "{channels} {preempt}: {s:?}");
            if precopy {
                assert!(s.rate_mb_s > 10.0, "{s:?}");
            }
            assert!(s
                .samples
                .iter()
                .all(|x| x.channel_mb_s.len() == channels as usize));
        }
        std::thread::sleep(Duration::from_millis(200));
        let fin = d.background().stop().unwrap();
        assert_eq!(fin.len(), 5);
        assert!(fin.iter().all(|f| f.latency.count > 10), "{fin:?}");
        assert_eq!(fin[2].channels, 3);
        assert!(fin[3].preempt && fin[3].channels == 2);
    }

    #[test]
    fn capped_bandwidth_is_met() {
        let d = dst();
        let src = VmSource::start(VmSourceConfig {
            postcopy: false,
            max_bandwidth_mb_s: Some(64),
            ..cfg(d.local_addr())
        })
        .unwrap();
        let s = finish(src);
        assert!(s.rate_mb_s > 55.0 && s.rate_mb_s < 68.0, "{}", s.rate_mb_s);
    }

    #[test]
    fn bad_peer_ends_only_its_session() {
        let d = dst();
        let mut bad = TcpStream::connect(d.local_addr()).unwrap();
        bad.write_all(&header(0xdead, 0)).unwrap();
        let mut over = TcpStream::connect(d.local_addr()).unwrap();
        over.write_all(&header(MAGIC_SEND_PAGE, 1 << 40)).unwrap();
        over.write_all(&ZERO_PAGE).unwrap();
        let mut seen = Vec::new();
        let until = Instant::now() + Duration::from_secs(5);
        while seen.len() < 2 && Instant::now() < until {
            match d.background().next(Duration::from_millis(100)) {
                Some(DstMessage::Rejected(r)) => seen.push(r.reason),
                Some(DstMessage::Ended(s)) => seen.push(s.reason),
                _ => {}
            }
        }
        assert!(
            seen.iter().any(|r| r.contains("magic error: 0xdead")),
            "{seen:?}"
        );
        assert!(
            seen.iter().any(|r| r.contains("page index overflow")),
            "{seen:?}"
        );
        let src = VmSource::start(cfg(d.local_addr())).unwrap();
        assert!(finish(src).rate_mb_s > 10.0);
    }

    #[test]
    fn the_destination_leaving_is_an_early_end() {
        let d = dst();
        let src = VmSource::start(VmSourceConfig {
            duration_s: None,
            ..cfg(d.local_addr())
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        d.background().stop().unwrap();
        let s = finish(src);
        assert_eq!(s.end, VmSrcEnd::PeerClosed, "{s:?}");
        assert!(!s.end.is_normal());
    }

    #[test]
    fn validation() {
        let t: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(VmSourceConfig {
            precopy: false,
            postcopy: false,
            ..cfg(t)
        }
        .validate()
        .is_err());
        assert!(VmSourceConfig {
            precopy: false,
            channels: 2,
            ..cfg(t)
        }
        .validate()
        .is_err());
        assert!(VmSourceConfig {
            postcopy: false,
            preempt: true,
            ..cfg(t)
        }
        .validate()
        .is_err());
        assert!(VmSourceConfig {
            vm_size_gb: 0,
            ..cfg(t)
        }
        .validate()
        .is_err());
        assert!(VmSourceConfig {
            return_path: ReturnPath::Main,
            ..cfg(t)
        }
        .validate()
        .is_err());
        assert!(VmSourceConfig {
            interval_s: f64::INFINITY,
            ..cfg(t)
        }
        .validate()
        .is_err());
        assert!(cfg(t).validate().is_ok());
    }
}
