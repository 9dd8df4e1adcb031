//! Recording latencies at the cost of a few instructions each.
//!
//! Hot loops time every operation with the CPU's time-stamp counter (via
//! `quanta`, which falls back to the monotonic clock where the TSC is not
//! invariant) and record raw tick deltas. Short deltas, the overwhelming
//! majority, go into a small direct-mapped table that stays in L1; only long
//! ones are scaled to nanoseconds and put into the HDR histogram at once.
//! [`TickRecorder::flush_into`] moves the table into a histogram every few
//! milliseconds, scaling each distinct tick value once.

use crate::stats::LatencyHistogram;

/// Deltas below this many ticks go to the direct table (about 1-2 us).
const SMALL_TICKS: usize = 4096;

/// Per-thread latency recorder for hot loops; see the module docs.
pub struct TickRecorder {
    clock: quanta::Clock,
    /// Counts by tick delta; empty in a recorder that records nothing.
    small: Box<[u64]>,
    /// Long deltas, in ns; made at the first one (over half a megabyte).
    big: Option<LatencyHistogram>,
    pending: bool,
}

impl Default for TickRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl TickRecorder {
    /// A recorder on the process's calibrated clock.
    pub fn new() -> Self {
        Self {
            clock: quanta::Clock::new(),
            small: vec![0; SMALL_TICKS].into_boxed_slice(),
            big: None,
            pending: false,
        }
    }

    /// A recorder for a loop that records nothing (latency recording off):
    /// it holds no memory.
    pub fn unused() -> Self {
        Self {
            clock: quanta::Clock::new(),
            small: Box::new([]),
            big: None,
            pending: false,
        }
    }

    /// A raw clock reading (ticks); only differences mean anything.
    #[inline(always)]
    pub fn now(&self) -> u64 {
        self.clock.raw()
    }

    /// Records the time between two raw readings.
    #[inline(always)]
    pub fn record(&mut self, start: u64, end: u64) {
        let d = end.saturating_sub(start);
        if let Some(count) = self.small.get_mut(d as usize) {
            *count += 1;
        } else {
            let ns = self.clock.delta_as_nanos(0, d);
            self.big
                .get_or_insert_with(LatencyHistogram::new)
                .record(ns);
        }
        self.pending = true;
    }

    /// Adds everything recorded so far to `dst` (in ns) and starts afresh.
    pub fn flush_into(&mut self, dst: &mut LatencyHistogram) {
        if !self.pending {
            return;
        }
        for (ticks, count) in self.small.iter_mut().enumerate() {
            if *count != 0 {
                dst.record_n(self.clock.delta_as_nanos(0, ticks as u64), *count);
                *count = 0;
            }
        }
        if let Some(big) = self.big.as_mut() {
            dst.add(big);
            big.reset();
        }
        self.pending = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_deltas_land_in_ns() {
        let mut r = TickRecorder::new();
        let t0 = r.now();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let t1 = r.now();
        r.record(t0, t1);
        for _ in 0..100 {
            let a = r.now();
            let b = r.now();
            r.record(a, b);
        }
        let mut h = LatencyHistogram::new();
        r.flush_into(&mut h);
        assert_eq!(h.len(), 101);
        let p = h.percentiles();
        assert!(p.max_ns >= 5_000_000 && p.max_ns < 500_000_000, "{p:?}");
        assert!(p.p50_ns < 100_000, "{p:?}");
        // Flushed: nothing left to add.
        let mut h2 = LatencyHistogram::new();
        r.flush_into(&mut h2);
        assert!(h2.is_empty());
    }
}
