//! A whole `mm_dirty` run: validated configuration, the region, prefaulting
//! on every CPU, the dirtying workers and the sampler that turns their
//! counters into one [`DirtySample`] per interval.
//!
//! [`DirtyRun::start`] returns at once; the run goes on in its own threads.
//! Callers poll [`DirtyRun::next_sample`] with a timeout (so a Python caller
//! can check for signals between polls) and end it with [`DirtyRun::stop`],
//! which joins every thread and returns the [`DirtySummary`].

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::mem::region::{PageSize, Region, DIRTY_STEP};
use crate::mem::worker::{prefault, Job, WorkerStats};
use crate::pace::StopFlag;
use crate::stats::{LatencyHistogram, Percentiles, ORIGINAL_BUCKETS};
use crate::sync::{Mailbox, Task};
use crate::units::MB;

/// How pages are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Walk the region page after page, pass after pass.
    Sequential,
    /// A uniformly random page each time.
    Random,
    /// Prefault, then only wait (and verify at the end).
    Once,
}

impl Pattern {
    /// Parses the original's names and aliases: `sequential`/`seq`,
    /// `random`/`ran`, `once`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "sequential" | "seq" => Ok(Pattern::Sequential),
            "random" | "ran" => Ok(Pattern::Random),
            "once" => Ok(Pattern::Once),
            _ => Err(Error::invalid(format!(
                "unknown pattern '{s}' (expected sequential, random or once)"
            ))),
        }
    }

    /// The name the original prints.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Sequential => "sequential",
            Pattern::Random => "random",
            Pattern::Once => "once",
        }
    }
}

/// Everything a run needs, validated by [`DirtyConfig::validate`].
#[derive(Clone, Debug)]
pub struct DirtyConfig {
    /// Region size in MB (MiB).
    pub size_mb: u64,
    /// Target dirty rate in MB/s, shared by all threads; None = unlimited.
    pub rate_mb_s: Option<u64>,
    /// Page selection.
    pub pattern: Pattern,
    /// What backs the region.
    pub page_size: PageSize,
    /// Dirtying threads, each on its own contiguous slice.
    pub threads: usize,
    /// Time every 4 KiB access.
    pub record_latency: bool,
    /// Check every page holds what was last written there.
    pub verify: bool,
    /// Sample interval in ms.
    pub interval_ms: u64,
    /// Stop by itself after this many ms of dirtying; None = until stopped.
    pub duration_ms: Option<u64>,
    /// Skip the available-memory check.
    pub force: bool,
    /// Seed for the random pattern; None = from the clock.
    pub seed: Option<u64>,
}

impl Default for DirtyConfig {
    fn default() -> Self {
        Self {
            size_mb: 512,
            rate_mb_s: None,
            pattern: Pattern::Sequential,
            page_size: PageSize::Small,
            threads: 1,
            record_latency: false,
            verify: true,
            interval_ms: 1000,
            duration_ms: None,
            force: false,
            seed: None,
        }
    }
}

impl DirtyConfig {
    /// Rejects values a run cannot honour, with one line saying which.
    pub fn validate(&self) -> Result<()> {
        if self.size_mb == 0 {
            return Err(Error::invalid("memory size must be greater than zero"));
        }
        if self.size_mb.checked_mul(MB).is_none() {
            return Err(Error::invalid("memory size too large"));
        }
        if self.rate_mb_s == Some(0) {
            return Err(Error::invalid("dirty rate must be greater than zero"));
        }
        if self.threads == 0 {
            return Err(Error::invalid("threads must be at least 1"));
        }
        let steps = self.size_mb * MB / DIRTY_STEP;
        if self.threads as u64 > steps {
            return Err(Error::invalid(format!(
                "{} threads but only {steps} pages of 4 KiB to share",
                self.threads
            )));
        }
        if self.interval_ms == 0 {
            return Err(Error::invalid("interval must be greater than zero"));
        }
        if self.duration_ms == Some(0) {
            return Err(Error::invalid("duration must be greater than zero"));
        }
        if !(self.size_mb * MB).is_multiple_of(self.page_size.bytes()) {
            return Err(Error::invalid(format!(
                "memory size {} MB is not a multiple of the {} page size",
                self.size_mb,
                self.page_size.name()
            )));
        }
        Ok(())
    }
}

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Writing the first value to every page.
    Prefaulting = 0,
    /// The workers are dirtying (or, for `once`, waiting).
    Dirtying = 1,
    /// Stopped; the final check and summary are being made.
    Stopping = 2,
    /// All threads ended; the summary is ready.
    Done = 3,
}

/// One interval's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct DirtySample {
    /// 0 for the first interval.
    pub index: u64,
    /// Seconds since dirtying started, at the end of this interval.
    pub elapsed_s: f64,
    /// Length of this interval in ms (the original's "time (ms)").
    pub duration_ms: u64,
    /// Bytes dirtied (4 KiB per page touched).
    pub bytes: u64,
    /// Dirty rate over the interval in MB/s.
    pub rate_mb_s: f64,
    /// Share of the interval the workers were not sleeping, in percent.
    pub load_pct: f64,
    /// Access latencies over the interval, with `record_latency`.
    pub latency: Option<Percentiles>,
}

/// The whole run's figures.
#[derive(Clone, Debug)]
pub struct DirtySummary {
    /// Seconds spent prefaulting.
    pub prefault_s: f64,
    /// Seconds spent dirtying (or waiting, for `once`).
    pub duration_s: f64,
    /// Bytes dirtied in total.
    pub bytes: u64,
    /// Average dirty rate in MB/s.
    pub rate_mb_s: f64,
    /// Every full interval's sample.
    pub samples: Vec<DirtySample>,
    /// Access latencies over the whole run, with `record_latency`.
    pub latency: Option<Percentiles>,
    /// The original's 21 buckets, with `record_latency`.
    pub buckets: Option<[u64; ORIGINAL_BUCKETS]>,
    /// Pages the final integrity check read (0 without verification).
    pub verified_pages: u64,
    /// False when stopped before prefaulting finished.
    pub completed_prefault: bool,
}

struct Shared {
    stop: StopFlag,
    phase: AtomicU8,
    prefaulted: AtomicU64,
    samples: Mailbox<DirtySample>,
}

impl Shared {
    fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::Release);
        // Wake anyone waiting on samples so they see the new phase.
        self.samples.wake();
    }
}

/// A running workload; see the module docs.
pub struct DirtyRun {
    cfg: DirtyConfig,
    shared: Arc<Shared>,
    steps: u64,
    region_addr: usize,
    runner: Task<DirtySummary>,
}

impl DirtyRun {
    /// Validates, maps the region and starts prefaulting and then dirtying
    /// in background threads.
    pub fn start(cfg: DirtyConfig) -> Result<Self> {
        cfg.validate()?;
        let region = Region::map(cfg.size_mb * MB, cfg.page_size, cfg.force)?;
        let steps = region.steps();
        let region_addr = region.as_ptr() as usize;
        let shared = Arc::new(Shared {
            stop: StopFlag::new(),
            phase: AtomicU8::new(Phase::Prefaulting as u8),
            prefaulted: AtomicU64::new(0),
            samples: Mailbox::default(),
        });
        let runner = {
            let cfg = cfg.clone();
            let shared = shared.clone();
            Task::spawn("mm_dirty", move || {
                let r = run(&cfg, &shared, &region);
                shared.set_phase(Phase::Done);
                r
            })?
        };
        Ok(Self {
            cfg,
            shared,
            steps,
            region_addr,
            runner,
        })
    }

    /// The validated configuration.
    pub fn config(&self) -> &DirtyConfig {
        &self.cfg
    }

    /// Where the run is now.
    pub fn phase(&self) -> Phase {
        match self.shared.phase.load(Ordering::Acquire) {
            0 => Phase::Prefaulting,
            1 => Phase::Dirtying,
            2 => Phase::Stopping,
            _ => Phase::Done,
        }
    }

    /// Pages prefaulted so far and in total (4 KiB each).
    pub fn prefault_progress(&self) -> (u64, u64) {
        (self.shared.prefaulted.load(Ordering::Relaxed), self.steps)
    }

    /// Virtual address of the region in this process (for tests that play
    /// a migration losing a page through /proc/PID/mem).
    pub fn region_address(&self) -> usize {
        self.region_addr
    }

    /// The next interval's sample, waiting up to `timeout`; None if none
    /// came in time or the run has ended and every sample was taken.
    pub fn next_sample(&self, timeout: Duration) -> Option<DirtySample> {
        self.shared.samples.pop_wait(timeout, || self.is_done())
    }

    /// True once every thread has ended (stopped, duration reached, or a
    /// corrupted page found).
    pub fn is_done(&self) -> bool {
        self.phase() == Phase::Done
    }

    /// Asks the run to end; returns at once.
    pub fn request_stop(&self) {
        self.shared.stop.stop();
    }

    /// Ends the run, waits for every thread and returns the summary, or the
    /// corruption found. A second call fails.
    pub fn stop(&self) -> Result<DirtySummary> {
        self.request_stop();
        self.join()
    }

    /// Waits for the run to end by itself (duration or corruption).
    pub fn join(&self) -> Result<DirtySummary> {
        self.runner.join()
    }
}

impl Drop for DirtyRun {
    fn drop(&mut self) {
        self.request_stop();
        self.runner.join_quietly();
    }
}

fn split(total: u64, parts: u64, i: u64) -> (u64, u64) {
    let each = total / parts;
    let extra = total % parts;
    let first = i * each + i.min(extra);
    (first, each + u64::from(i < extra))
}

fn run(cfg: &DirtyConfig, shared: &Shared, region: &Region) -> Result<DirtySummary> {
    let steps = region.steps();
    let t_prefault = Instant::now();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let pf_threads = cpus.min(steps).max(1);
    std::thread::scope(|s| {
        for i in 0..pf_threads {
            let (first, count) = split(steps, pf_threads, i);
            s.spawn(move || prefault(region, first, count, &shared.prefaulted, &shared.stop));
        }
    });
    let prefault_s = t_prefault.elapsed().as_secs_f64();
    let completed_prefault = shared.prefaulted.load(Ordering::Relaxed) == steps;
    if !completed_prefault {
        return Ok(DirtySummary {
            prefault_s,
            duration_s: 0.0,
            bytes: 0,
            rate_mb_s: 0.0,
            samples: Vec::new(),
            latency: None,
            buckets: None,
            verified_pages: 0,
            completed_prefault,
        });
    }
    shared.set_phase(Phase::Dirtying);

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
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut total_hist = LatencyHistogram::new();
    let results: Vec<Result<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = stats
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
                    seed: seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    stop: &shared.stop,
                    stats: st,
                };
                s.spawn(move || {
                    let r = job.run();
                    if r.is_err() {
                        job.stop.stop();
                    }
                    r
                })
            })
            .collect();
        sample_loop(cfg, shared, &stats, start, &mut samples, &mut total_hist);
        shared.set_phase(Phase::Stopping);
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::invalid("a dirty worker panicked")))
            })
            .collect()
    });
    let duration_s = start.elapsed().as_secs_f64();
    let mut verified_pages = 0;
    for r in results {
        verified_pages += r?;
    }
    // Whatever the workers recorded after the last full interval.
    for st in &stats {
        total_hist.add(&st.hist.lock().unwrap_or_else(|e| e.into_inner()));
    }
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
        samples,
        latency: cfg.record_latency.then(|| total_hist.percentiles()),
        buckets: cfg.record_latency.then(|| total_hist.original_buckets()),
        verified_pages,
        completed_prefault,
    })
}

/// Emits one sample per interval until the stop flag is set or the
/// duration is reached.
fn sample_loop(
    cfg: &DirtyConfig,
    shared: &Shared,
    stats: &[WorkerStats],
    start: Instant,
    samples: &mut Vec<DirtySample>,
    total_hist: &mut LatencyHistogram,
) {
    let interval = Duration::from_millis(cfg.interval_ms);
    let end = cfg.duration_ms.map(|d| start + Duration::from_millis(d));
    let mut last_t = start;
    let mut last_steps = 0u64;
    let mut last_sleep = 0u64;
    let mut hist = LatencyHistogram::new();
    for index in 0u64.. {
        let due = start + interval * (index as u32 + 1);
        let wake = end.map_or(due, |e| e.min(due));
        if shared.stop.sleep_until(wake, Duration::from_millis(20)) {
            return;
        }
        if end.is_some_and(|e| wake == e && e < due) {
            shared.stop.stop();
            return;
        }
        if cfg.pattern == Pattern::Once {
            if end == Some(wake) {
                shared.stop.stop();
                return;
            }
            continue;
        }
        let now = Instant::now();
        let steps: u64 = stats.iter().map(|s| s.steps.load(Ordering::Relaxed)).sum();
        let sleep: u64 = stats
            .iter()
            .map(|s| s.sleep_ns.load(Ordering::Relaxed))
            .sum();
        let dt = now - last_t;
        let bytes = (steps - last_steps) * DIRTY_STEP;
        let busy_budget = dt.as_nanos() as f64 * stats.len() as f64;
        let load_pct =
            (100.0 * (1.0 - (sleep - last_sleep) as f64 / busy_budget)).clamp(0.0, 100.0);
        let latency = cfg.record_latency.then(|| {
            hist.reset();
            for st in stats {
                let mut h = st.hist.lock().unwrap_or_else(|e| e.into_inner());
                hist.add(&h);
                h.reset();
            }
            total_hist.add(&hist);
            hist.percentiles()
        });
        let sample = DirtySample {
            index,
            elapsed_s: (now - start).as_secs_f64(),
            duration_ms: dt.as_millis() as u64,
            bytes,
            rate_mb_s: bytes as f64 / MB as f64 / dt.as_secs_f64(),
            load_pct,
            latency,
        };
        samples.push(sample.clone());
        shared.samples.push(sample);
        last_t = now;
        last_steps = steps;
        last_sleep = sleep;
        if end == Some(wake) {
            shared.stop.stop();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DirtyConfig {
        DirtyConfig {
            size_mb: 16,
            interval_ms: 100,
            duration_ms: Some(350),
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
        let run = DirtyRun::start(DirtyConfig {
            rate_mb_s: Some(200),
            duration_ms: Some(1000),
            interval_ms: 200,
            ..cfg()
        })
        .unwrap();
        let s = run.join().unwrap();
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
            let run = DirtyRun::start(DirtyConfig {
                pattern,
                threads: 2,
                record_latency: true,
                ..cfg()
            })
            .unwrap();
            let s = run.join().unwrap();
            assert!(s.completed_prefault);
            assert_eq!(s.verified_pages, 16 * 256, "{pattern:?}");
            if pattern != Pattern::Once {
                assert!(s.bytes > 0);
                let b = s.buckets.unwrap();
                assert_eq!(b.iter().sum::<u64>(), s.bytes / DIRTY_STEP, "{pattern:?}");
            }
        }
    }

    #[test]
    fn corruption_is_caught() {
        for pattern in [Pattern::Sequential, Pattern::Random, Pattern::Once] {
            let run = DirtyRun::start(DirtyConfig {
                pattern,
                rate_mb_s: Some(64),
                duration_ms: None,
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
            match run.stop() {
                Err(Error::Corruption { page, found, .. }) => {
                    assert_eq!(page, 100);
                    assert_eq!(found, 0);
                }
                other => panic!("{pattern:?}: expected corruption, got {other:?}"),
            }
        }
    }
}
