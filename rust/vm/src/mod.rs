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

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::pace::StopFlag;
use crate::rng::WyRand;
use crate::run::{lock, spawn_scoped, Background, Ctx, Ticker};
use crate::sock::{connect_any, connect_tcp, resolve_all};
use crate::units::{self, MB};
use crate::vm::wire::*;

mod config;
mod data;
mod handshake;
mod streams;

pub(crate) use config::vm_pages;
pub use config::{ReturnPath, VmSourceConfig, MAX_CHANNELS, MAX_VM_PAGES, PORT_FLAG, SIZE_FLAG};
pub use data::{VmSrcEnd, VmSrcSample, VmSrcSummary};
use handshake::{hello, io_err};
use streams::*;

static ZERO_PAGE: [u8; PAGE_SIZE] = [0; PAGE_SIZE];
/// Messages per vectored write on the main connection (about 1 MiB).
const BATCH: usize = 256;
/// What the run works from: the configuration and what was derived from it.
struct Plan {
    cfg: VmSourceConfig,
    vm_pages: u64,
    duration: Option<Duration>,
    interval: Duration,
    max_bandwidth: Option<u64>,
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

impl VmSource {
    /// Connects (main, then the extra connections), tells the destination
    /// what to run, and starts streaming.
    pub fn start(cfg: VmSourceConfig) -> Result<Self> {
        cfg.validate()?;
        let targets = resolve_all(&cfg.host, cfg.port)?;
        let plan = Plan {
            vm_pages: vm_pages(cfg.vm_size_gb)?,
            duration: units::run_length(cfg.duration_s)?,
            interval: units::seconds("interval_s", cfg.interval_s)?,
            max_bandwidth: cfg.max_bandwidth(),
            cfg,
        };
        let cfg = &plan.cfg;
        let timeout = units::seconds("connect_timeout_s", cfg.connect_timeout_s)?;
        // The channels go where the main connection went.
        let (mut main, target) = connect_any(&targets, timeout)?;
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
