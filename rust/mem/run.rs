//! A whole `mm_dirty` run: validated configuration, the region, prefaulting
//! on every CPU, the dirtying workers and the sampler that turns their
//! counters into one [`DirtySample`] per interval.
//!
//! [`DirtyRun::start`] returns at once; the run goes on in its own threads
//! as a [`Background`] run: poll it for samples, stop it for the summary.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mem::region::{PageSize, Region, DIRTY_STEP};
use crate::mem::worker::{prefault, Job, WorkerStats};
use crate::run::{lock, spawn_scoped, Background, Ctx, Ticker};
use crate::stats::{LatencyHistogram, Percentiles};
use crate::units::{self, de, MB};

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
            _ => Err(Error::config(format!(
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

crate::text_serde!(Pattern);

/// A dirty workload's configuration: built once (from the command line or
/// from Python keyword arguments), checked by [`DirtyConfig::validate`].
/// Sizes in MB (MiB), rates in MB/s, times in seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct DirtyConfig {
    /// Region size in MB; also the original's size text (`16G`).
    #[serde(deserialize_with = "de::size")]
    pub size_mb: u64,
    /// Target dirty rate in MB/s, shared by all threads; None = unlimited.
    #[serde(deserialize_with = "de::opt_size")]
    pub rate_mb_s: Option<u64>,
    /// Page selection: sequential, random or once.
    pub pattern: Pattern,
    /// What backs the region: 4k, 2m, 1g or thp.
    pub page_size: PageSize,
    /// Dirtying threads, each on its own contiguous slice (1..=1024).
    #[serde(deserialize_with = "de::int")]
    pub threads: usize,
    /// Time every 4 KiB access.
    #[serde(deserialize_with = "de::flag")]
    pub record_latency: bool,
    /// Check every page holds what was last written there.
    #[serde(deserialize_with = "de::flag")]
    pub verify: bool,
    /// Seconds between samples (at least 0.01).
    #[serde(deserialize_with = "de::float")]
    pub interval_s: f64,
    /// Work per paced step, ms: each dirtying thread wakes once per step
    /// (0.05 to 1000; 1000 is the original's once-a-second burst).
    #[serde(deserialize_with = "de::float")]
    pub pace_ms: f64,
    /// A step late by this much is a pause of the guest or the process, ms
    /// (1 to 10000; detection costs nothing: the clock is read anyway).
    #[serde(deserialize_with = "de::float")]
    pub pause_ms: f64,
    /// Stop by itself after this many seconds of dirtying; None = until stopped.
    #[serde(deserialize_with = "de::opt_float")]
    pub duration_s: Option<f64>,
    /// Skip the available-memory check.
    #[serde(deserialize_with = "de::flag")]
    pub force: bool,
    /// Seed for the random pattern; None = from the clock.
    #[serde(deserialize_with = "de::opt_int")]
    pub seed: Option<u64>,
}

/// Most dirtying threads a run may start.
pub const MAX_THREADS: usize = 1024;
/// Shortest sample interval, seconds.
pub const MIN_INTERVAL_S: f64 = 0.01;
/// The pace step's range, ms.
pub const MIN_PACE_MS: f64 = 0.05;
/// The pace step's range, ms.
pub const MAX_PACE_MS: f64 = 1000.0;

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
            interval_s: 1.0,
            pace_ms: 1.0,
            pause_ms: 10.0,
            duration_s: None,
            force: false,
            seed: None,
        }
    }
}

impl DirtyConfig {
    /// Rejects values a run cannot honour, with one line saying which.
    pub fn validate(&self) -> Result<()> {
        if self.size_mb == 0 {
            return Err(Error::field("size_mb", "must be greater than zero"));
        }
        if self.size_mb.checked_mul(MB).is_none() {
            return Err(Error::field("size_mb", "too large"));
        }
        if self.rate_mb_s == Some(0) {
            return Err(Error::field("rate_mb_s", "must be greater than zero"));
        }
        if self.rate_mb_s.is_some_and(|r| r.checked_mul(MB).is_none()) {
            return Err(Error::field("rate_mb_s", "too large"));
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            return Err(Error::field(
                "threads",
                format!("must be between 1 and {MAX_THREADS}, not {}", self.threads),
            ));
        }
        let steps = self.size_mb * MB / DIRTY_STEP;
        if self.threads as u64 > steps {
            return Err(Error::field(
                "threads",
                format!(
                    "{} threads but only {steps} pages of 4 KiB to share",
                    self.threads
                ),
            ));
        }
        self.interval()?;
        self.duration()?;
        if !(1.0..=10_000.0).contains(&self.pause_ms) {
            return Err(Error::field(
                "pause_ms",
                format!(
                    "must be between 1 and 10000 ms, not {}",
                    units::num(self.pause_ms)
                ),
            ));
        }
        if !(MIN_PACE_MS..=MAX_PACE_MS).contains(&self.pace_ms) {
            return Err(Error::field(
                "pace_ms",
                format!(
                    "must be between {MIN_PACE_MS} and {MAX_PACE_MS} ms, not {}",
                    units::num(self.pace_ms)
                ),
            ));
        }
        if !(self.size_mb * MB).is_multiple_of(self.page_size.bytes()) {
            return Err(Error::field(
                "size_mb",
                format!(
                    "{} MB is not a multiple of the {} page size",
                    self.size_mb,
                    self.page_size.name()
                ),
            ));
        }
        Ok(())
    }

    /// The sample interval.
    pub fn interval(&self) -> Result<Duration> {
        let d = units::seconds("interval_s", self.interval_s)?;
        if self.interval_s < MIN_INTERVAL_S {
            return Err(Error::field(
                "interval_s",
                format!(
                    "must be at least {MIN_INTERVAL_S} s, not {}",
                    units::num(self.interval_s)
                ),
            ));
        }
        Ok(d)
    }

    /// The run's length, if it has one.
    pub fn duration(&self) -> Result<Option<Duration>> {
        units::run_length(self.duration_s)
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
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename = "sample")]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct DirtySample {
    /// 0 for the first interval.
    pub index: u64,
    /// Seconds since dirtying started, at the end of this interval.
    pub elapsed_s: f64,
    /// Wall-clock time at the end of the interval, Unix seconds (to the
    /// microsecond): the same timeline as every tool's events and QEMU's.
    pub unix_s: f64,
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
    /// Pauses reported in this interval.
    pub pauses: u64,
    /// The longest of them, ms (0 without one).
    pub pause_max_ms: f64,
    /// Their total, ms: time the workload did not run.
    pub paused_ms: f64,
}

/// A time in which no dirtying thread ran although its schedule said it
/// should: the guest (or the process) was paused. Not an access that took
/// long (the latency histogram's business) but time with no access at all.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename = "pause")]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct DirtyPause {
    /// 0 for the first pause of the run.
    pub index: u64,
    /// Wall-clock start, Unix seconds.
    pub start_unix_s: f64,
    /// Seconds from the start of dirtying to the pause.
    pub start_offset_s: f64,
    /// How long no thread ran, ms (the longest any thread saw).
    pub length_ms: f64,
    /// The dirtying threads that saw it (0-based).
    pub threads: Vec<u64>,
}

/// What a dirty run reports as it goes.
#[derive(Clone, Debug, PartialEq)]
pub enum DirtyItem {
    /// One interval.
    Sample(DirtySample),
    /// A pause, once it is over.
    Pause(DirtyPause),
}

/// The whole run's figures.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename = "summary")]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
)]
pub struct DirtySummary {
    /// Seconds spent prefaulting.
    pub prefault_s: f64,
    /// Seconds spent dirtying (or waiting, for `once`).
    pub duration_s: f64,
    /// Bytes dirtied in total.
    pub bytes: u64,
    /// Average dirty rate in MB/s.
    pub rate_mb_s: f64,
    /// Number of full intervals reported.
    pub intervals: u64,
    /// Pauses over the run.
    pub pauses: u64,
    /// Their total, ms.
    pub paused_ms: f64,
    /// The longest, ms.
    pub pause_max_ms: f64,
    /// Every pause (not part of the JSON summary line; each has its own).
    #[serde(skip)]
    pub pause_events: Vec<DirtyPause>,
    /// CPU this whole process used while dirtying, seconds (user + system):
    /// what the workload cost beyond its memory writes' own.
    pub cpu_s: f64,
    /// The same as a share of one core over the run, percent.
    pub cpu_pct: f64,
    /// False when stopped before prefaulting finished.
    pub completed_prefault: bool,
    /// True when the final integrity check ran (verification on and
    /// prefaulting completed).
    pub verified: bool,
    /// Pages the final integrity check read (0 without verification).
    pub verified_pages: u64,
    /// Access latencies over the whole run, with `record_latency`.
    pub latency: Option<Percentiles>,
    /// The original's 21 buckets (upper bound in us -> count), with
    /// `record_latency`.
    pub buckets_us: Option<BTreeMap<u64, u64>>,
    /// Every full interval's sample (not part of the JSON summary line).
    #[serde(skip)]
    pub samples: Vec<DirtySample>,
}

impl DirtySummary {
    fn empty(prefault_s: f64) -> Self {
        Self {
            prefault_s,
            duration_s: 0.0,
            bytes: 0,
            rate_mb_s: 0.0,
            intervals: 0,
            pauses: 0,
            paused_ms: 0.0,
            pause_max_ms: 0.0,
            pause_events: Vec::new(),
            cpu_s: 0.0,
            cpu_pct: 0.0,
            completed_prefault: false,
            verified: false,
            verified_pages: 0,
            latency: None,
            buckets_us: None,
            samples: Vec::new(),
        }
    }
}

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
pub struct DirtyRun {
    cfg: DirtyConfig,
    progress: Arc<Progress>,
    steps: u64,
    region_addr: usize,
    bg: Background<DirtyItem, DirtySummary>,
}

impl DirtyRun {
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

/// A pause is reported once no thread can still add to it: this long after
/// it ended.
const PAUSE_SETTLE: Duration = Duration::from_millis(50);

/// Turns the threads' pause reports into events: reports of different
/// threads about the same stop (overlapping in time) are one event.
struct Pauses {
    start: Instant,
    /// (began, ended, longest report, threads), not reported yet.
    pending: Vec<(Instant, Instant, Duration, Vec<u64>)>,
    events: Vec<DirtyPause>,
}

impl Pauses {
    fn new(start: Instant) -> Self {
        Self {
            start,
            pending: Vec::new(),
            events: Vec::new(),
        }
    }

    fn collect(&mut self, stats: &[WorkerStats]) {
        for (i, st) in stats.iter().enumerate() {
            for (end, len) in std::mem::take(&mut *lock(&st.pauses)) {
                let begin = end - len;
                let thread = i as u64;
                match self.pending.iter_mut().find(|p| begin <= p.1 && end >= p.0) {
                    Some(p) => {
                        p.0 = p.0.min(begin);
                        p.1 = p.1.max(end);
                        p.2 = p.2.max(len);
                        if !p.3.contains(&thread) {
                            p.3.push(thread);
                        }
                    }
                    None => self.pending.push((begin, end, len, vec![thread])),
                }
            }
        }
    }

    /// The pauses that ended before `settled` (all with None), as events.
    fn settle(&mut self, settled: Option<Instant>) -> Vec<DirtyPause> {
        self.pending.sort_by_key(|p| p.0);
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| settled.is_none_or(|s| p.1 < s));
        self.pending = keep;
        let now = Instant::now();
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut out = Vec::new();
        for (begin, _, len, mut threads) in done {
            threads.sort_unstable();
            let ev = DirtyPause {
                index: self.events.len() as u64,
                start_unix_s: now_unix - (now - begin).as_secs_f64(),
                start_offset_s: (begin - self.start).as_secs_f64(),
                length_ms: len.as_secs_f64() * 1000.0,
                threads,
            };
            self.events.push(ev.clone());
            out.push(ev);
        }
        out
    }
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
        let sleep: u64 = stats
            .iter()
            .map(|s| s.sleep_ns.load(Ordering::Relaxed))
            .sum();
        let dt = tick.length;
        let bytes = (steps - last_steps) * DIRTY_STEP;
        let busy_budget = dt.as_nanos() as f64 * stats.len() as f64;
        let load_pct =
            (100.0 * (1.0 - (sleep - last_sleep) as f64 / busy_budget)).clamp(0.0, 100.0);
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
        last_sleep = sleep;
    }
    if ticker.expired() {
        ctx.stop.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let run = DirtyRun::start(DirtyConfig {
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
            let run = DirtyRun::start(DirtyConfig {
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
            let run = DirtyRun::start(DirtyConfig {
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
