//! One dirtying thread: owns a contiguous slice of the region's 4 KiB steps,
//! writes one byte per step in the chosen pattern, checks the byte still
//! holds what it last wrote there, paces itself, and publishes its counters
//! and latency histogram for the sampler.
//!
//! The hot loops are monomorphised on (verify, latency) so the common case
//! carries neither a branch nor a clock read per page. Memory is touched only
//! through volatile byte accesses on raw pointers: other threads, the kernel
//! and a migrating hypervisor all change it behind the compiler's back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::mem::config::Pattern;
use crate::mem::region::{Region, DIRTY_STEP};
use crate::pace::{mono_ns, tighten_timer_slack, Pacer, StopFlag};
use crate::rng::WyRand;
use crate::run::lock;
use crate::stats::{LatencyHistogram, TickRecorder};

/// The value prefaulting leaves in every page: non-zero, so migration's
/// zero-page detection never skips a page.
pub(crate) const PREFAULT_VALUE: u8 = 1;

/// Steps per chunk at the unlimited rate: long enough to amortise the clock
/// read and counters, short enough to notice a stop within microseconds.
const MAX_CHUNK: u64 = 1024;

/// How many pages ahead the sequential check prefetches.
const PREFETCH_AHEAD: usize = 16;

/// How many random draws ahead the random pattern prefetches.
const RANDOM_AHEAD: usize = 8;

/// A cache hint; never faults, whatever the address.
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint that does not fault on any address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// How often a worker hands its latency histogram to the sampler.
const FLUSH_EVERY: Duration = Duration::from_millis(10);

/// The value written on sequential pass `pass`: cycles through 1..=255, so
/// it is never zero and always differs from the previous pass's value.
#[inline]
pub(crate) fn pass_value(pass: u64) -> u8 {
    ((pass + 1) % 255 + 1) as u8
}

/// What a page holds before pass `pass` writes it.
#[inline]
fn before_pass(pass: u64) -> u8 {
    if pass == 0 {
        PREFAULT_VALUE
    } else {
        pass_value(pass - 1)
    }
}

/// The next value for a page that holds `v` (random pattern): never zero.
#[inline]
fn next_value(v: u8) -> u8 {
    if v == 255 {
        1
    } else {
        v + 1
    }
}

/// Counters a worker publishes; the sampler reads and resets them.
#[derive(Debug, Default)]
pub(crate) struct WorkerStats {
    /// 4 KiB steps dirtied so far.
    pub steps: AtomicU64,
    /// Nanoseconds spent sleeping for pacing so far (sleeps that ended).
    pub sleep_ns: AtomicU64,
    /// When the sleep going on began ([`mono_ns`]); 0 when awake. The
    /// sampler counts a sleep as it goes, so that an interval in which the
    /// process was stopped mid-sleep is not taken for one of work.
    pub sleeping_since_ns: AtomicU64,
    /// Access latencies since the sampler last took them; only with
    /// latency recording (a histogram is over half a megabyte: a thousand
    /// threads would hold hundreds of MB for nothing).
    pub hist: Mutex<Option<LatencyHistogram>>,
    /// Pauses seen since the sampler last took them: when each ended and
    /// how long it was.
    pub pauses: Mutex<Vec<(Instant, Duration)>>,
}

/// Waits longer than this sleep on the stop flag, so that a stop need not
/// wait for them.
const LONG_WAIT: Duration = Duration::from_millis(20);

/// What a worker is told to do.
pub(crate) struct Job<'a> {
    pub region: &'a Region,
    pub first_step: u64,
    pub steps: u64,
    pub pattern: Pattern,
    pub verify: bool,
    pub latency: bool,
    /// Steps per second for this worker; None = as fast as possible.
    pub rate_steps: Option<f64>,
    /// Where in a pace step this worker starts, as a fraction (worker i of
    /// n: i/n): the workers' steps spread over the step rather than all at
    /// its start (1,024 threads at 1 MB/s each do a page every 4 s, and
    /// all at once they dirtied 4 MB in the first second).
    pub phase: f64,
    /// Work per paced step (one wake-up each), seconds.
    pub pace_s: f64,
    /// A step that took this much longer than its schedule allows is a
    /// pause (the thread, the process or the whole guest did not run).
    pub pause_threshold: Duration,
    pub seed: u64,
    pub stop: &'a StopFlag,
    pub stats: &'a WorkerStats,
    /// Waited on once set up, so that every clock starts when all the
    /// workers are ready (spawning a thousand takes a while).
    pub ready: Option<&'a crate::run::Gate>,
}

/// A worker's position, enough to know what every page should hold.
pub(crate) struct State {
    cursor: u64,
    pass: u64,
    rng: WyRand,
    /// Per-step expected value (random pattern with verification).
    shadow: Vec<u8>,
    /// Rolling value for random writes without verification.
    value: u8,
    /// The next random pages, drawn ahead so they can be prefetched.
    ahead: [u64; RANDOM_AHEAD],
    ahead_pos: usize,
}

fn corrupt(step: u64, expected: u8, found: u8) -> Error {
    Error::Corruption {
        page: step,
        offset: step * DIRTY_STEP,
        expected,
        found,
    }
}

impl Job<'_> {
    #[inline(always)]
    fn ptr(&self, local: u64) -> *mut u8 {
        // SAFETY: callers pass local < self.steps, so the byte lies in this
        // worker's slice of the region.
        unsafe {
            self.region
                .as_ptr()
                .add(((self.first_step + local) * DIRTY_STEP) as usize)
        }
    }

    pub(crate) fn initial_state(&self) -> State {
        let mut st = State {
            cursor: 0,
            pass: 0,
            rng: WyRand::new(self.seed),
            shadow: if self.verify && self.pattern == Pattern::Random {
                vec![PREFAULT_VALUE; self.steps as usize]
            } else {
                Vec::new()
            },
            value: PREFAULT_VALUE,
            ahead: [0; RANDOM_AHEAD],
            ahead_pos: 0,
        };
        for slot in &mut st.ahead {
            *slot = st.rng.below(self.steps);
        }
        st
    }

    /// Runs until the stop flag is set, then checks the whole slice (with
    /// verification on). Returns how many steps the final check covered.
    pub(crate) fn run(&self) -> Result<u64> {
        tighten_timer_slack();
        let mut st = self.initial_state();
        if let Some(gate) = self.ready {
            if !gate.arrive() {
                // Another worker could not be started: the run is off.
                return Ok(0);
            }
        }
        if self.pattern == Pattern::Once {
            while !self
                .stop
                .sleep_until(Instant::now() + Duration::from_secs(3600))
            {}
        } else {
            match (self.verify, self.latency) {
                (true, true) => self.dirty_loop::<true, true>(&mut st)?,
                (true, false) => self.dirty_loop::<true, false>(&mut st)?,
                (false, true) => self.dirty_loop::<false, true>(&mut st)?,
                (false, false) => self.dirty_loop::<false, false>(&mut st)?,
            }
        }
        if self.verify {
            self.final_check(&st)?;
            Ok(self.steps)
        } else {
            Ok(0)
        }
    }

    fn dirty_loop<const VERIFY: bool, const LAT: bool>(&self, st: &mut State) -> Result<()> {
        let mut rec = if LAT {
            TickRecorder::new()
        } else {
            TickRecorder::unused()
        };
        let step = match self.rate_steps {
            // One pace step's worth of pages, then one sleep: the wake-ups
            // per second are 1 / pace_s, whatever the rate. (Beyond 2^40
            // pages a step is as fast as the machine goes anyway.)
            Some(r) => ((r * self.pace_s) as u64).clamp(1, 1 << 40),
            None => MAX_CHUNK,
        };
        let mut start = Instant::now();
        if let Some(r) = self.rate_steps {
            start += Duration::from_secs_f64(self.phase * step as f64 / r);
            if self.stop.sleep_until(start) {
                return Ok(());
            }
        }
        let mut pacer = self
            .rate_steps
            .map(|r| Pacer::new(r, start, Duration::from_millis(50)));
        let mut last_flush = start;
        let mut result = Ok(());
        // The end of the previous piece of work: a piece is its work (and,
        // at a step's end, its planned sleep); time beyond that is a pause.
        let mut prev_end = start;
        'steps: while !self.stop.is_set() {
            // A step is worked in chunks of at most MAX_CHUNK pages with no
            // sleep between them: the stop, the live counters and pauses are
            // seen every chunk, however long the step (--pace-ms 1000 at a
            // high rate is one burst a second, as the original's).
            let mut left = step;
            let mut now;
            loop {
                let n = left.min(MAX_CHUNK);
                result = self.chunk::<VERIFY, LAT>(st, n, &mut rec);
                if result.is_err() {
                    break 'steps;
                }
                self.stats.steps.fetch_add(n, Ordering::Relaxed);
                left -= n;
                now = Instant::now();
                if LAT && now - last_flush >= FLUSH_EVERY {
                    self.flush(&mut rec);
                    last_flush = now;
                }
                if left == 0 || self.stop.is_set() {
                    break;
                }
                self.note_pause(now, now - prev_end);
                prev_end = now;
            }
            let mut end = now;
            let mut planned = Duration::ZERO;
            if let Some(p) = pacer.as_mut() {
                let wait = p.advance(step - left, now);
                if !wait.is_zero() {
                    let since = mono_ns().max(1);
                    self.stats.sleeping_since_ns.store(since, Ordering::Relaxed);
                    // A long wait (a low rate per thread) is cut short by
                    // the stop; a short one is a plain sleep (no lock).
                    if wait > LONG_WAIT {
                        self.stop.sleep_until(now + wait);
                    } else {
                        std::thread::sleep(wait);
                    }
                    let slept = now.elapsed();
                    let counted = mono_ns().saturating_sub(since);
                    self.stats.sleep_ns.fetch_add(counted, Ordering::Relaxed);
                    self.stats.sleeping_since_ns.store(0, Ordering::Relaxed);
                    end = now + slept;
                    planned = wait;
                }
            }
            self.note_pause(end, (end - prev_end).saturating_sub(planned));
            prev_end = end;
        }
        if LAT {
            self.flush(&mut rec);
        }
        result
    }

    /// Time this thread lost beyond its work and planned sleep, up to
    /// `end`; a pause if it reaches the threshold.
    #[inline]
    fn note_pause(&self, end: Instant, lost: Duration) {
        if lost >= self.pause_threshold {
            lock(&self.stats.pauses).push((end, lost));
        }
    }

    fn flush(&self, rec: &mut TickRecorder) {
        let mut shared = lock(&self.stats.hist);
        rec.flush_into(shared.get_or_insert_with(LatencyHistogram::new));
    }

    #[inline(always)]
    pub(crate) fn chunk<const VERIFY: bool, const LAT: bool>(
        &self,
        st: &mut State,
        n: u64,
        rec: &mut TickRecorder,
    ) -> Result<()> {
        match self.pattern {
            Pattern::Sequential => self.seq_chunk::<VERIFY, LAT>(st, n, rec),
            _ => self.rand_chunk::<VERIFY, LAT>(st, n, rec),
        }
    }

    #[inline(always)]
    fn seq_chunk<const VERIFY: bool, const LAT: bool>(
        &self,
        st: &mut State,
        n: u64,
        rec: &mut TickRecorder,
    ) -> Result<()> {
        let mut expected = before_pass(st.pass);
        let mut value = pass_value(st.pass);
        let mut t_prev = if LAT { rec.now() } else { 0 };
        let mut left = n;
        while left > 0 {
            // A contiguous run up to the end of the pass: no wrap test inside.
            let run = left.min(self.steps - st.cursor);
            let base = self.ptr(st.cursor);
            for j in 0..run as usize {
                let p = base.wrapping_add(j * DIRTY_STEP as usize);
                if VERIFY {
                    // The check's load waits for the line (and a page walk:
                    // every access is on a new page); ask for both early.
                    prefetch(p.wrapping_add(PREFETCH_AHEAD * DIRTY_STEP as usize));
                }
                // SAFETY: cursor + j < steps, so p is inside this worker's
                // slice, which no other thread writes.
                unsafe {
                    if VERIFY {
                        let found = p.read_volatile();
                        if found != expected {
                            let step = self.first_step + st.cursor + j as u64;
                            return Err(corrupt(step, expected, found));
                        }
                    }
                    p.write_volatile(value);
                }
                if LAT {
                    // Chained stamps: one clock read per access; each sample is
                    // the access plus the loop's own few nanoseconds.
                    let t = rec.now();
                    rec.record(t_prev, t);
                    t_prev = t;
                }
            }
            st.cursor += run;
            left -= run;
            if st.cursor == self.steps {
                st.cursor = 0;
                st.pass += 1;
                expected = value;
                value = pass_value(st.pass);
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn rand_chunk<const VERIFY: bool, const LAT: bool>(
        &self,
        st: &mut State,
        n: u64,
        rec: &mut TickRecorder,
    ) -> Result<()> {
        let mut t_prev = if LAT { rec.now() } else { 0 };
        for _ in 0..n {
            // Take the page drawn RANDOM_AHEAD draws ago and prefetch the
            // one drawn now: the same uniform sequence, its misses overlapped.
            let i = st.ahead[st.ahead_pos];
            let next = st.rng.below(self.steps);
            st.ahead[st.ahead_pos] = next;
            st.ahead_pos = (st.ahead_pos + 1) % RANDOM_AHEAD;
            prefetch(self.ptr(next));
            if VERIFY {
                prefetch(st.shadow.as_ptr().wrapping_add(next as usize));
            }
            let p = self.ptr(i);
            // SAFETY: i < steps, so p is inside this worker's slice; the
            // shadow has one entry per step.
            unsafe {
                if VERIFY {
                    let slot = st.shadow.get_unchecked_mut(i as usize);
                    let found = p.read_volatile();
                    if found != *slot {
                        return Err(corrupt(self.first_step + i, *slot, found));
                    }
                    *slot = next_value(found);
                    p.write_volatile(*slot);
                } else {
                    st.value = next_value(st.value);
                    p.write_volatile(st.value);
                }
            }
            if LAT {
                let t = rec.now();
                rec.record(t_prev, t);
                t_prev = t;
            }
        }
        Ok(())
    }

    /// Checks every page of the slice against what this worker last wrote.
    fn final_check(&self, st: &State) -> Result<()> {
        for local in 0..self.steps {
            let expected = match self.pattern {
                Pattern::Once => PREFAULT_VALUE,
                Pattern::Random => st.shadow[local as usize],
                Pattern::Sequential if local < st.cursor => pass_value(st.pass),
                Pattern::Sequential => before_pass(st.pass),
            };
            // SAFETY: local < steps: inside this worker's slice.
            let found = unsafe { self.ptr(local).read_volatile() };
            if found != expected {
                return Err(corrupt(self.first_step + local, expected, found));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_values_never_repeat_or_hit_zero() {
        let mut prev = PREFAULT_VALUE;
        for pass in 0..2000 {
            let v = pass_value(pass);
            assert_ne!(v, 0);
            assert_ne!(v, prev, "pass {pass}");
            assert_eq!(before_pass(pass), prev);
            prev = v;
        }
    }

    #[test]
    fn next_value_skips_zero() {
        assert_eq!(next_value(255), 1);
        assert_eq!(next_value(1), 2);
    }
}
