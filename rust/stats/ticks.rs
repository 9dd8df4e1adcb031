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
    small: Box<[u64; SMALL_TICKS]>,
    big: LatencyHistogram,
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
            small: Box::new([0; SMALL_TICKS]),
            big: LatencyHistogram::new(),
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
        if (d as usize) < SMALL_TICKS {
            self.small[d as usize] += 1;
        } else {
            self.big.record(self.clock.delta_as_nanos(0, d));
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
        dst.add(&self.big);
        self.big.reset();
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
