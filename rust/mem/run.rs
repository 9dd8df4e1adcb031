//! A whole `mm_dirty` run: validated configuration, the region, prefaulting
//! on every CPU, the dirtying workers and the sampler that turns their
//! counters into one [`DirtySample`] per interval.
//!
//! [`DirtyWorkload::start`] returns at once; the run goes on in its own threads
//! as a [`Background`] run: poll it for samples, stop it for the summary.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::mem::config::{DirtyConfig, Pattern};
use crate::mem::data::{DirtyItem, DirtySample, DirtySummary, Phase};
use crate::mem::kernel::prefault;
use crate::mem::pauses::{Pauses, PAUSE_SETTLE};
use crate::mem::region::{Region, DIRTY_STEP};
use crate::mem::worker::{Job, WorkerStats};
use crate::run::{lock, spawn_scoped, Background, Ctx, Ticker};
use crate::stats::LatencyHistogram;
use crate::units::MB;

/// What the owner reads while the run goes on.
struct Progress {
    phase: AtomicU8,
    prefaulted: AtomicU64,
}

impl Progress {
    fn set_phase(&self, p: Phase, ctx: &Ctx<DirtyItem>) {
        self.phase.store(p as u8, Ordering::Release);
        // A poller blocked on samples must see the new phase.
        ctx.wake();
    }
}

/// A running workload; see the module docs.
pub struct DirtyWorkload {
    cfg: DirtyConfig,
    progress: Arc<Progress>,
    steps: u64,
    region_addr: usize,
    bg: Background<DirtyItem, DirtySummary>,
}

impl DirtyWorkload {
    /// Validates, maps the region and starts prefaulting and then dirtying
    /// in background threads.
    pub fn start(cfg: DirtyConfig) -> Result<Self> {
        cfg.validate()?;
        let region = Region::map(cfg.size_mb * MB, cfg.page_size, cfg.force)?;
        let steps = region.steps();
        let region_addr = region.as_ptr() as usize;
        let progress = Arc::new(Progress {
            phase: AtomicU8::new(Phase::Prefaulting as u8),
            prefaulted: AtomicU64::new(0),
        });
        let times = (cfg.interval()?, cfg.duration()?);
        let bg = {
            let cfg = cfg.clone();
            let progress = progress.clone();
            Background::spawn("mm_dirty", move |ctx| {
                let r = run(&cfg, times, ctx, &progress, &region);
                progress.phase.store(Phase::Done as u8, Ordering::Release);
                r
            })?
        };
        Ok(Self {
            cfg,
            progress,
            steps,
            region_addr,
            bg,
        })
    }

    /// The validated configuration.
    pub fn config(&self) -> &DirtyConfig {
        &self.cfg
    }

    /// The samples, the stop and the summary.
    pub fn background(&self) -> &Background<DirtyItem, DirtySummary> {
        &self.bg
    }

    /// Where the run is now.
    pub fn phase(&self) -> Phase {
        match self.progress.phase.load(Ordering::Acquire) {
            0 => Phase::Prefaulting,
            1 => Phase::Dirtying,
            2 => Phase::Stopping,
            _ => Phase::Done,
        }
    }

    /// Pages prefaulted so far and in total (4 KiB each).
    pub fn prefault_progress(&self) -> (u64, u64) {
        (self.progress.prefaulted.load(Ordering::Relaxed), self.steps)
    }

    /// Virtual address of the region in this process (for tests that play
    /// a migration losing a page through /proc/PID/mem).
    pub fn region_address(&self) -> usize {
        self.region_addr
    }
}

fn split(total: u64, parts: u64, i: u64) -> (u64, u64) {
    let each = total / parts;
    let extra = total % parts;
    let first = i * each + i.min(extra);
    (first, each + u64::from(i < extra))
}

/// The sample interval and the run's length.
type Times = (Duration, Option<Duration>);

fn run(
    cfg: &DirtyConfig,
    (interval, duration): Times,
    ctx: &Ctx<DirtyItem>,
    progress: &Progress,
    region: &Region,
) -> Result<DirtySummary> {
    let steps = region.steps();
    let t_prefault = Instant::now();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let pf_threads = cpus.min(steps).max(1);
    // A prefault thread that cannot be started: this thread does its part.
    std::thread::scope(|s| {
        for i in 0..pf_threads {
            let (first, count) = split(steps, pf_threads, i);
            let f = move || prefault(region, first, count, &progress.prefaulted, &ctx.stop);
            if spawn_scoped(s, "prefault", f).is_err() {
                prefault(region, first, count, &progress.prefaulted, &ctx.stop);
            }
        }
    });
    let prefault_s = t_prefault.elapsed().as_secs_f64();
    if progress.prefaulted.load(Ordering::Relaxed) != steps {
        return Ok(DirtySummary::empty(prefault_s));
    }
    progress.set_phase(Phase::Dirtying, ctx);

    let threads = cfg.threads as u64;
    let stats: Vec<WorkerStats> = (0..threads).map(|_| WorkerStats::default()).collect();
    let rate_steps = cfg
        .rate_mb_s
        .map(|r| (r * MB / DIRTY_STEP) as f64 / threads as f64);
    let seed = cfg.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x5eed, |d| d.as_nanos() as u64)
    });
    let mut samples = Vec::new();
    let mut total_hist = LatencyHistogram::new();
    let ready = crate::run::Gate::default();
    let mut clocks = None;
    let results: Vec<Result<u64>> = std::thread::scope(|s| -> Result<Vec<Result<u64>>> {
        let handles = stats
            .iter()
            .enumerate()
            .map(|(i, st)| {
                let (first_step, count) = split(steps, threads, i as u64);
                let job = Job {
                    region,
                    first_step,
                    steps: count,
                    pattern: cfg.pattern,
                    verify: cfg.verify,
                    latency: cfg.record_latency,
                    rate_steps,
                    phase: i as f64 / threads as f64,
                    pace_s: cfg.pace_ms / 1000.0,
                    pause_threshold: Duration::from_secs_f64(cfg.pause_ms / 1000.0),
                    seed: seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    stop: &ctx.stop,
                    stats: st,
                    ready: Some(&ready),
                };
                spawn_scoped(s, "mm_dirty", move || {
                    let r = job.run();
                    if r.is_err() {
                        job.stop.stop();
                    }
                    r
                })
            })
            .collect::<Result<Vec<_>>>();
        let handles = match handles {
            Ok(h) => h,
            Err(e) => {
                // A worker could not be started: the ones that were are
                // let go without dirtying, and the run ends with the error.
                ready.call_off();
                ctx.stop.stop();
                return Err(e);
            }
        };
        // Every worker set up: the run (its clock, its length) starts now.
        ready.open_when(threads as usize);
        let cpu_start = crate::pace::process_cpu_s();
        let start = Instant::now();
        let mut ticker = Ticker::new(start, interval, duration);
        let mut pauses = Pauses::new(start);
        sample_loop(
            cfg,
            ctx,
            &stats,
            &mut ticker,
            &mut samples,
            &mut total_hist,
            &mut pauses,
        );
        clocks = Some((cpu_start, start, pauses));
        progress.set_phase(Phase::Stopping, ctx);
        Ok(handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Internal("a dirty worker panicked".into())))
            })
            .collect())
    })?;
    let (cpu_start, start, mut pauses) = clocks.expect("the sampler ran");
    let duration_s = start.elapsed().as_secs_f64();
    let cpu_s = crate::pace::process_cpu_s() - cpu_start;
    let mut verified_pages = 0;
    for r in results {
        verified_pages += r?;
    }
    // Whatever the workers recorded after the last full interval.
    for st in &stats {
        if let Some(h) = lock(&st.hist).as_ref() {
            total_hist.add(h);
        }
    }
    pauses.collect(&stats);
    for p in pauses.settle(None) {
        ctx.send(DirtyItem::Pause(p));
    }
    let pause_events = pauses.events;
    let total_steps: u64 = stats.iter().map(|s| s.steps.load(Ordering::Relaxed)).sum();
    let bytes = total_steps * DIRTY_STEP;
    Ok(DirtySummary {
        prefault_s,
        duration_s,
        bytes,
        rate_mb_s: if duration_s > 0.0 {
            bytes as f64 / MB as f64 / duration_s
        } else {
            0.0
        },
        intervals: samples.len() as u64,
        pauses: pause_events.len() as u64,
        paused_ms: pause_events.iter().map(|p| p.length_ms).sum::<f64>() + 0.0,
        pause_max_ms: pause_events.iter().map(|p| p.length_ms).fold(0.0, f64::max),
        pause_events,
        cpu_s,
        cpu_pct: if duration_s > 0.0 {
            100.0 * cpu_s / duration_s
        } else {
            0.0
        },
        completed_prefault: true,
        verified: cfg.verify,
        verified_pages,
        latency: cfg.record_latency.then(|| total_hist.percentiles()),
        buckets_us: cfg.record_latency.then(|| {
            let b = total_hist.original_buckets();
            (0..b.len())
                .map(|i| (LatencyHistogram::original_bucket_label_us(i), b[i]))
                .collect()
        }),
        samples,
    })
}

/// Emits one sample per interval until the stop flag is set or the
/// duration is reached.
fn sample_loop(
    cfg: &DirtyConfig,
    ctx: &Ctx<DirtyItem>,
    stats: &[WorkerStats],
    ticker: &mut Ticker,
    samples: &mut Vec<DirtySample>,
    total_hist: &mut LatencyHistogram,
    pauses: &mut Pauses,
) {
    let start = ticker.start();
    let mut last_steps = 0u64;
    let mut last_sleep = 0u64;
    let mut hist = LatencyHistogram::new();
    while let Some(tick) = ticker.next(&ctx.stop) {
        if cfg.pattern == Pattern::Once {
            continue;
        }
        let steps: u64 = stats.iter().map(|s| s.steps.load(Ordering::Relaxed)).sum();
        // Sleeps that ended, and those going on up to now.
        let now_ns = crate::pace::mono_ns();
        let sleep: u64 = stats
            .iter()
            .map(|s| {
                let since = s.sleeping_since_ns.load(Ordering::Relaxed);
                let going = if since == 0 {
                    0
                } else {
                    now_ns.saturating_sub(since)
                };
                s.sleep_ns.load(Ordering::Relaxed) + going
            })
            .sum();
        let dt = tick.length;
        let bytes = (steps - last_steps) * DIRTY_STEP;
        let busy_budget = dt.as_nanos() as f64 * stats.len() as f64;
        let load_pct = (100.0 * (1.0 - sleep.saturating_sub(last_sleep) as f64 / busy_budget))
            .clamp(0.0, 100.0);
        let latency = cfg.record_latency.then(|| {
            hist.reset();
            for st in stats {
                if let Some(h) = lock(&st.hist).as_mut() {
                    hist.add(h);
                    h.reset();
                }
            }
            total_hist.add(&hist);
            hist.percentiles()
        });
        pauses.collect(stats);
        let settled = pauses.settle(tick.now.checked_sub(PAUSE_SETTLE));
        let sample = DirtySample {
            index: tick.index,
            elapsed_s: (tick.now - start).as_secs_f64(),
            unix_s: crate::pace::unix_now(),
            duration_ms: dt.as_millis() as u64,
            bytes,
            rate_mb_s: bytes as f64 / MB as f64 / dt.as_secs_f64(),
            load_pct,
            latency,
            pauses: settled.len() as u64,
            pause_max_ms: settled.iter().map(|p| p.length_ms).fold(0.0, f64::max),
            paused_ms: settled.iter().map(|p| p.length_ms).sum::<f64>() + 0.0,
        };
        for p in settled {
            ctx.send(DirtyItem::Pause(p));
        }
        samples.push(sample.clone());
        ctx.send(DirtyItem::Sample(sample));
        last_steps = steps;
        last_sleep = last_sleep.max(sleep);
    }
    if ticker.expired() {
        ctx.stop.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::PageSize;

    fn cfg() -> DirtyConfig {
        DirtyConfig {
            size_mb: 16,
            interval_s: 0.1,
            duration_s: Some(0.35),
            ..DirtyConfig::default()
        }
    }

    #[test]
    fn split_covers_everything() {
        for total in [1u64, 7, 100, 1001] {
            for parts in 1..=total.min(9) {
                let mut next = 0;
                for i in 0..parts {
                    let (first, n) = split(total, parts, i);
                    assert_eq!(first, next);
                    next += n;
                }
                assert_eq!(next, total);
            }
        }
    }

    #[test]
    fn validation() {
        assert!(DirtyConfig {
            rate_mb_s: Some(0),
            ..cfg()
        }
        .validate()
        .is_err());
        assert!(DirtyConfig {
            threads: 0,
            ..cfg()
        }
        .validate()
        .is_err());
        assert!(DirtyConfig {
            size_mb: 1,
            threads: 257,
            ..cfg()
        }
        .validate()
        .is_err());
        assert!(DirtyConfig {
            size_mb: 3,
            page_size: PageSize::Huge2M,
            ..cfg()
        }
        .validate()
        .is_err());
        assert!(cfg().validate().is_ok());
    }

    #[test]
    fn paced_run_meets_its_rate() {
        let run = DirtyWorkload::start(DirtyConfig {
            rate_mb_s: Some(200),
            duration_s: Some(1.0),
            interval_s: 0.2,
            ..cfg()
        })
        .unwrap();
        let s = run.background().wait().unwrap();
        assert_eq!(s.samples.len(), 5);
        // Generous: a loaded 2-core machine may oversleep, never overshoot.
        assert!(
            s.rate_mb_s > 150.0 && s.rate_mb_s < 210.0,
            "{}",
            s.rate_mb_s
        );
        assert_eq!(s.verified_pages, 16 * 256);
    }

    #[test]
    fn every_pattern_with_latency_and_threads() {
        for pattern in [Pattern::Sequential, Pattern::Random, Pattern::Once] {
            let run = DirtyWorkload::start(DirtyConfig {
                pattern,
                threads: 2,
                record_latency: true,
                ..cfg()
            })
            .unwrap();
            let s = run.background().wait().unwrap();
            assert!(s.completed_prefault);
            assert_eq!(s.verified_pages, 16 * 256, "{pattern:?}");
            if pattern != Pattern::Once {
                assert!(s.bytes > 0);
                let b = s.buckets_us.unwrap();
                assert_eq!(b.values().sum::<u64>(), s.bytes / DIRTY_STEP, "{pattern:?}");
            }
        }
    }

    #[test]
    fn corruption_is_caught() {
        for pattern in [Pattern::Sequential, Pattern::Random, Pattern::Once] {
            let run = DirtyWorkload::start(DirtyConfig {
                pattern,
                rate_mb_s: Some(64),
                duration_s: None,
                ..cfg()
            })
            .unwrap();
            while run.phase() == Phase::Prefaulting {
                std::thread::sleep(Duration::from_millis(5));
            }
            // Play a migration that lost page 100: it comes back as zeros.
            let p = (run.region_address() + 100 * 4096) as *mut u8;
            // SAFETY: page 100 of a live 16 MB region; a racy write is the point.
            unsafe { p.write_volatile(0) };
            std::thread::sleep(Duration::from_millis(300));
            match run.background().stop() {
                Err(Error::Corruption { page, found, .. }) => {
                    assert_eq!(page, 100);
                    assert_eq!(found, 0);
                }
                other => panic!("{pattern:?}: expected corruption, got {other:?}"),
            }
        }
    }
}
