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
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::net::frame::FrameReader;
use crate::net::sock::connect_tcp;
use crate::net::vmwire::*;
use crate::pace::{make_bulk_thread, Pacer, StopFlag};
use crate::rng::WyRand;
use crate::sync::{Mailbox, Task};

static ZERO_PAGE: [u8; PAGE_SIZE] = [0; PAGE_SIZE];
/// Messages per vectored write on the main connection (about 1 MiB).
const BATCH: usize = 256;
/// Most multifd connections a source may open.
pub const MAX_CHANNELS: u32 = 64;

/// What a source run does.
#[derive(Clone, Debug)]
pub struct SrcConfig {
    /// The destination.
    pub target: SocketAddr,
    /// Guest size in pages.
    pub vm_pages: u64,
    /// Stream precopy pages.
    pub precopy: bool,
    /// Ask the destination to request pages.
    pub postcopy: bool,
    /// Extra multifd connections for the precopy stream (0 = on main).
    pub channels: u32,
    /// Answer page requests on a separate connection.
    pub preempt: bool,
    /// With `preempt`: keep the requests on the main connection's return
    /// path (QEMU's layout) instead of moving them to the preempt one.
    pub requests_on_main: bool,
    /// Cap of the precopy stream, bytes per second.
    pub max_bandwidth: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Sample interval.
    pub interval: Duration,
}

impl SrcConfig {
    /// Rejects combinations a run cannot honour.
    pub fn validate(&self) -> Result<()> {
        if self.vm_pages == 0 {
            return Err(Error::invalid("VM size must be greater than zero"));
        }
        if !self.precopy && !self.postcopy {
            return Err(Error::invalid(
                "nothing to test: give -t precopy and/or -t postcopy",
            ));
        }
        if self.channels > 0 && !self.precopy {
            return Err(Error::invalid(
                "--channels carries precopy pages: add -t precopy",
            ));
        }
        if self.channels > MAX_CHANNELS {
            return Err(Error::invalid(format!(
                "--channels is at most {MAX_CHANNELS}"
            )));
        }
        if self.preempt && !self.postcopy {
            return Err(Error::invalid(
                "--preempt is for postcopy requests: add -t postcopy",
            ));
        }
        if self.requests_on_main && !self.preempt {
            return Err(Error::invalid("--return-path main is for --preempt"));
        }
        if self.max_bandwidth == Some(0) {
            return Err(Error::invalid("--max-bandwidth must be greater than zero"));
        }
        if self.duration.is_some_and(|d| d.is_zero()) || self.interval.is_zero() {
            return Err(Error::invalid(
                "duration and interval must be greater than zero",
            ));
        }
        Ok(())
    }
}

/// One interval of a source.
#[derive(Clone, Debug, PartialEq)]
pub struct SrcSample {
    /// 0 for the first interval.
    pub index: u64,
    /// Seconds since the start, at the end of the interval.
    pub elapsed_s: f64,
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

/// The whole run.
#[derive(Clone, Debug)]
pub struct SrcSummary {
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
    /// Every interval.
    pub samples: Vec<SrcSample>,
    /// Why it ended ("duration reached", "stopped", or what went wrong).
    pub end_reason: String,
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
    failure: Mutex<Option<String>>,
    samples: Mailbox<SrcSample>,
    done: AtomicBool,
}

impl Shared {
    /// First failure wins; everything stops.
    fn fail(&self, why: String) {
        let mut f = self.failure.lock().unwrap_or_else(|e| e.into_inner());
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
    shared: Arc<Shared>,
    runner: Task<SrcSummary>,
}

fn io_err(what: &str) -> impl Fn(io::Error) -> Error + '_ {
    move |e| Error::io(what.to_string(), e)
}

/// Sends HELLO and waits for HELLO_ACK; an original destination closes.
fn hello(main: &mut TcpStream, h: &Hello) -> Result<()> {
    let unknown = || {
        Error::Protocol(
            "the destination closed the connection at the protocol extension: it does not know \
             --channels/--preempt (an original mig_mon or an older version?)"
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
    pub fn start(cfg: SrcConfig) -> Result<Self> {
        cfg.validate()?;
        let timeout = Duration::from_secs(10);
        let mut main = connect_tcp(cfg.target, timeout)?;
        let mut channels = Vec::new();
        let mut preempt = None;
        if cfg.channels > 0 || cfg.preempt {
            let session =
                WyRand::new(crate::pace::mono_ns() ^ u64::from(std::process::id())).next_u64();
            let flags = if cfg.channels > 0 { FLAG_MULTIFD } else { 0 }
                | if cfg.preempt { FLAG_PREEMPT } else { 0 }
                | if cfg.requests_on_main {
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
                    vm_pages: cfg.vm_pages,
                },
            )?;
            let open = |kind: u64, index: u64| -> Result<TcpStream> {
                let mut s = connect_tcp(cfg.target, timeout)?;
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
            samples: Mailbox::default(),
            done: AtomicBool::new(false),
        });
        let runner = {
            let shared = shared.clone();
            Task::spawn("vm-src", move || {
                let s = run(&cfg, &shared, main, channels, preempt);
                shared.done.store(true, Ordering::Release);
                shared.samples.wake();
                Ok(s)
            })?
        };
        Ok(Self { shared, runner })
    }

    /// The next interval's sample, waiting up to `timeout`.
    pub fn next_sample(&self, timeout: Duration) -> Option<SrcSample> {
        self.shared.samples.pop_wait(timeout, || self.is_done())
    }

    /// True once the run ended (duration, stop, or the destination left).
    pub fn is_done(&self) -> bool {
        self.shared.done.load(Ordering::Acquire)
    }

    /// Asks the run to end; returns at once.
    pub fn request_stop(&self) {
        self.shared.shutdown();
    }

    /// Ends the run and returns its summary (a second call fails).
    pub fn stop(&self) -> Result<SrcSummary> {
        self.request_stop();
        self.runner.join()
    }
}

impl Drop for VmSource {
    fn drop(&mut self) {
        self.request_stop();
        self.runner.join_quietly();
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

fn pacer(cfg: &SrcConfig, share: u32) -> Option<Pacer> {
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
fn batch_for(cfg: &SrcConfig, share: u32) -> usize {
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
            stop.sleep_until(Instant::now() + wait, Duration::from_millis(50));
        }
    }
}

/// Precopy on the main connection: SEND_PAGE messages, page after page.
fn precopy_main(cfg: &SrcConfig, sh: &Shared) -> io::Result<()> {
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
            let mut w = sh.main_writer.lock().unwrap_or_else(|e| e.into_inner());
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
    cfg: &SrcConfig,
    sh: &Shared,
    mut sock: TcpStream,
    k: usize,
    next: &AtomicU64,
) -> io::Result<()> {
    make_bulk_thread();
    let mut p = pacer(cfg, cfg.channels);
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
    cfg: &SrcConfig,
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
                    let mut w = sh.main_writer.lock().unwrap_or_else(|e| e.into_inner());
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

fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe => "the destination closed the connection".into(),
        _ => e.to_string(),
    }
}

fn run(
    cfg: &SrcConfig,
    sh: &Arc<Shared>,
    main: TcpStream,
    channels: Vec<TcpStream>,
    preempt: Option<TcpStream>,
) -> SrcSummary {
    let start = Instant::now();
    let next_page = AtomicU64::new(0);
    let mut samples = Vec::new();
    std::thread::scope(|s| {
        let preempt_reader = preempt.as_ref().and_then(|p| p.try_clone().ok());
        s.spawn(|| {
            if let Err(e) = answer_requests(cfg, sh, main, preempt) {
                sh.fail(describe(&e));
            }
        });
        if let Some(pr) = preempt_reader {
            let pw = pr.try_clone().ok();
            s.spawn(move || {
                if let Err(e) = answer_requests(cfg, sh, pr, pw) {
                    sh.fail(describe(&e));
                }
            });
        }
        if cfg.precopy && channels.is_empty() {
            s.spawn(|| {
                if let Err(e) = precopy_main(cfg, sh) {
                    sh.fail(describe(&e));
                }
            });
        }
        for (k, c) in channels.into_iter().enumerate() {
            let next = &next_page;
            s.spawn(move || {
                if let Err(e) = precopy_multifd(cfg, sh, c, k, next) {
                    sh.fail(format!("multifd channel {k}: {}", describe(&e)));
                }
            });
        }
        sample_loop(cfg, sh, start, &mut samples);
        sh.shutdown();
    });
    let duration_s = start.elapsed().as_secs_f64();
    let bytes = sh.total_bytes();
    let end_reason = sh
        .failure
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_else(|| {
            if cfg.duration.is_some_and(|d| start.elapsed() >= d) {
                "duration reached".into()
            } else {
                "stopped".into()
            }
        });
    SrcSummary {
        duration_s,
        bytes,
        rate_mb_s: bytes as f64 / (1 << 20) as f64 / duration_s.max(1e-9),
        peak_mb_s: samples.iter().map(|s| s.rate_mb_s).fold(0.0, f64::max),
        requests: sh.requests.load(Ordering::Relaxed),
        channels: cfg.channels,
        preempt: cfg.preempt,
        samples,
        end_reason,
    }
}

fn sample_loop(cfg: &SrcConfig, sh: &Shared, start: Instant, samples: &mut Vec<SrcSample>) {
    let end = cfg.duration.map(|d| start + d);
    let mut last_t = start;
    let mut last_bytes = 0u64;
    let mut last_req = 0u64;
    let mut last_ch: Vec<u64> = vec![0; sh.channel_bytes.len()];
    for index in 0u64.. {
        let due = start + cfg.interval * (index as u32 + 1);
        let wake = end.map_or(due, |e| e.min(due));
        if sh.stop.sleep_until(wake, Duration::from_millis(20)) {
            return;
        }
        if end.is_some_and(|e| wake == e && e < due) {
            return;
        }
        let now = Instant::now();
        let dt = (now - last_t).as_secs_f64();
        let bytes = sh.total_bytes();
        let req = sh.requests.load(Ordering::Relaxed);
        let ch: Vec<u64> = sh
            .channel_bytes
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let mb = |b: u64| b as f64 / (1 << 20) as f64 / dt;
        let sample = SrcSample {
            index,
            elapsed_s: (now - start).as_secs_f64(),
            duration_ms: (now - last_t).as_millis() as u64,
            bytes: bytes - last_bytes,
            rate_mb_s: mb(bytes - last_bytes),
            channel_mb_s: ch.iter().zip(&last_ch).map(|(a, b)| mb(a - b)).collect(),
            requests: req - last_req,
        };
        samples.push(sample.clone());
        sh.samples.push(sample);
        (last_t, last_bytes, last_req, last_ch) = (now, bytes, req, ch);
        if end == Some(wake) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::vm_dst::{DstMessage, VmDestination};

    fn cfg(target: SocketAddr) -> SrcConfig {
        SrcConfig {
            target,
            vm_pages: 1 << 18,
            precopy: true,
            postcopy: true,
            channels: 0,
            preempt: false,
            requests_on_main: false,
            max_bandwidth: None,
            duration: Some(Duration::from_millis(1200)),
            interval: Duration::from_millis(300),
        }
    }

    fn dst() -> VmDestination {
        VmDestination::start(Some("127.0.0.1"), 0, 1 << 18, Duration::from_millis(300)).unwrap()
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
            let src = VmSource::start(SrcConfig {
                channels,
                preempt,
                precopy,
                ..cfg(d.local_addr())
            })
            .unwrap();
            while !src.is_done() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let s = src.stop().unwrap();
            assert_eq!(s.end_reason, "duration reached");
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
        let fin = d.stop();
        assert_eq!(fin.len(), 5);
        assert!(fin.iter().all(|f| f.latency.count > 10), "{fin:?}");
        assert_eq!(fin[2].channels, 3);
        assert!(fin[3].preempt && fin[3].channels == 2);
    }

    #[test]
    fn capped_bandwidth_is_met() {
        let d = dst();
        let src = VmSource::start(SrcConfig {
            postcopy: false,
            max_bandwidth: Some(64 << 20),
            ..cfg(d.local_addr())
        })
        .unwrap();
        while !src.is_done() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let s = src.stop().unwrap();
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
            match d.next_message(Duration::from_millis(100)) {
                Some(DstMessage::Rejected { reason, .. })
                | Some(DstMessage::Dropped { reason, .. }) => seen.push(reason),
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
        while !src.is_done() {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(src.stop().unwrap().rate_mb_s > 10.0);
    }

    #[test]
    fn validation() {
        let t: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(SrcConfig {
            precopy: false,
            postcopy: false,
            ..cfg(t)
        }
        .validate()
        .is_err());
        assert!(SrcConfig {
            precopy: false,
            channels: 2,
            ..cfg(t)
        }
        .validate()
        .is_err());
        assert!(SrcConfig {
            postcopy: false,
            preempt: true,
            ..cfg(t)
        }
        .validate()
        .is_err());
        assert!(SrcConfig {
            vm_pages: 0,
            ..cfg(t)
        }
        .validate()
        .is_err());
    }
}
