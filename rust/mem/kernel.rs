//! The dirty loop alone, for the benches ([`Kernel`]), and prefaulting a
//! slice of the region on the calling thread ([`prefault`]).

use crate::error::Result;
use crate::mem::config::Pattern;
use crate::mem::region::{Region, DIRTY_STEP};
use crate::mem::worker::{Job, State, WorkerStats, PREFAULT_VALUE};
use crate::pace::StopFlag;
use crate::stats::{LatencyHistogram, TickRecorder};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The dirty loop alone, on the calling thread, without pacing, sampling or
/// the stop flag: what the benches measure. Same code as a worker runs.
pub struct Kernel<'a> {
    job: Job<'a>,
    st: State,
    rec: TickRecorder,
}

/// What a [`Kernel`] borrows: a stop flag and counters nobody reads.
#[derive(Default)]
pub struct KernelEnv {
    stop: StopFlag,
    stats: WorkerStats,
}

impl<'a> Kernel<'a> {
    /// A kernel over the whole (prefaulted) region.
    pub fn new(
        env: &'a KernelEnv,
        region: &'a Region,
        pattern: Pattern,
        verify: bool,
        latency: bool,
    ) -> Self {
        let job = Job {
            region,
            first_step: 0,
            steps: region.steps(),
            pattern,
            verify,
            latency,
            rate_steps: None,
            phase: 0.0,
            pace_s: 0.001,
            pause_threshold: Duration::from_millis(10),
            seed: 0x1234_5678,
            stop: &env.stop,
            stats: &env.stats,
            ready: None,
        };
        let st = job.initial_state();
        Self {
            job,
            st,
            rec: TickRecorder::new(),
        }
    }

    /// Dirties `steps` 4 KiB pages (a multiple of the chunk size is best).
    pub fn run(&mut self, steps: u64) -> Result<()> {
        match (self.job.verify, self.job.latency) {
            (true, true) => self
                .job
                .chunk::<true, true>(&mut self.st, steps, &mut self.rec),
            (true, false) => self
                .job
                .chunk::<true, false>(&mut self.st, steps, &mut self.rec),
            (false, true) => self
                .job
                .chunk::<false, true>(&mut self.st, steps, &mut self.rec),
            (false, false) => self
                .job
                .chunk::<false, false>(&mut self.st, steps, &mut self.rec),
        }?;
        if self.job.latency {
            let mut h = LatencyHistogram::new();
            self.rec.flush_into(&mut h);
        }
        Ok(())
    }
}

/// Writes [`PREFAULT_VALUE`] to every step in `first..first + count`,
/// counting progress; stops early when asked.
pub fn prefault(region: &Region, first: u64, count: u64, progress: &AtomicU64, stop: &StopFlag) {
    const BATCH: u64 = 16 * 1024;
    let mut done = 0;
    while done < count && !stop.is_set() {
        let n = BATCH.min(count - done);
        for s in first + done..first + done + n {
            // SAFETY: s < region.steps(): callers split 0..steps among threads.
            unsafe {
                region
                    .as_ptr()
                    .add((s * DIRTY_STEP) as usize)
                    .write_volatile(PREFAULT_VALUE)
            };
        }
        done += n;
        progress.fetch_add(n, Ordering::Relaxed);
    }
}
