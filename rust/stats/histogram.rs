//! A latency histogram in nanoseconds on top of `hdrhistogram`, with three
//! significant digits (0.1% error) from 1 ns to one hour; values above that
//! are clamped. The original tool's 21 buckets are derived from it.

use hdrhistogram::Histogram;

/// How many power-of-two buckets the original prints: 1, 2, 4 ... 1048576 us.
pub const ORIGINAL_BUCKETS: usize = 21;

const HIGHEST_NS: u64 = 3_600_000_000_000;

/// A histogram of latencies in nanoseconds.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    h: Histogram<u64>,
}

crate::pydata! {
    /// The figures every summary reports, all in nanoseconds.
    #[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
    pub struct Percentiles {
        /// Number of values recorded.
        pub count: u64,
        /// Smallest value (ns).
        pub min_ns: u64,
        /// Mean (ns).
        pub mean_ns: f64,
        /// Median (ns).
        pub p50_ns: u64,
        /// 90th percentile (ns).
        pub p90_ns: u64,
        /// 99th percentile (ns).
        pub p99_ns: u64,
        /// 99.9th percentile (ns).
        pub p99_9_ns: u64,
        /// 99.99th percentile (ns).
        pub p99_99_ns: u64,
        /// Largest value (ns).
        pub max_ns: u64,
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram, 1 ns to 1 h, 3 significant digits.
    pub fn new() -> Self {
        let h = Histogram::new_with_bounds(1, HIGHEST_NS, 3)
            .expect("static histogram bounds are valid");
        Self { h }
    }

    /// Records one latency (ns); zero counts as 1 ns, more than an hour as an hour.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.h.saturating_record(ns.max(1));
    }

    /// Records `count` occurrences of one latency (ns).
    pub fn record_n(&mut self, ns: u64, count: u64) {
        // Cannot fail: the value is clamped into the histogram's range first.
        let _ = self.h.record_n(ns.clamp(1, HIGHEST_NS), count);
    }

    /// Adds every value of `other` into this one.
    pub fn add(&mut self, other: &LatencyHistogram) {
        // Same bounds on both sides, so this cannot fail.
        let _ = self.h.add(&other.h);
    }

    /// Forgets every value.
    pub fn reset(&mut self) {
        self.h.reset();
    }

    /// Number of values recorded.
    pub fn len(&self) -> u64 {
        self.h.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.h.is_empty()
    }

    /// The value (ns) at quantile `q` in 0..=1 (0 when empty).
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.h.is_empty() {
            0
        } else {
            self.h.value_at_quantile(q)
        }
    }

    /// Min, mean, percentiles and max; all zero when empty.
    pub fn percentiles(&self) -> Percentiles {
        if self.h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: self.h.len(),
            min_ns: self.h.min(),
            mean_ns: self.h.mean(),
            p50_ns: self.h.value_at_quantile(0.50),
            p90_ns: self.h.value_at_quantile(0.90),
            p99_ns: self.h.value_at_quantile(0.99),
            p99_9_ns: self.h.value_at_quantile(0.999),
            p99_99_ns: self.h.value_at_quantile(0.9999),
            max_ns: self.h.max(),
        }
    }

    /// The original tool's buckets: entry `i` counts latencies above
    /// `2^(i-1)` us and up to `2^i` us (entry 0: up to 1 us); the last entry
    /// also holds everything longer. Exact to the histogram's 0.1%.
    pub fn original_buckets(&self) -> [u64; ORIGINAL_BUCKETS] {
        let mut out = [0u64; ORIGINAL_BUCKETS];
        for v in self.h.iter_recorded() {
            let ns = self.h.median_equivalent(v.value_iterated_to());
            out[original_bucket_index(ns)] += v.count_at_value();
        }
        out
    }

    /// Calls `f(value_ns, count)` for every recorded value (the value
    /// standing for its HDR bucket).
    pub fn for_each(&self, mut f: impl FnMut(u64, u64)) {
        for v in self.h.iter_recorded() {
            f(
                self.h.median_equivalent(v.value_iterated_to()),
                v.count_at_value(),
            );
        }
    }

    /// The label (us) the original prints for bucket `i`.
    pub fn original_bucket_label_us(i: usize) -> u64 {
        1u64 << i
    }
}

/// Which of the original's buckets a latency (ns) falls in.
pub fn original_bucket_index(ns: u64) -> usize {
    // Smallest i with ns <= 2^i * 1000.
    let us_ceil = ns.div_ceil(1000).max(1);
    let i = (u64::BITS - (us_ceil - 1).leading_zeros()) as usize;
    i.min(ORIGINAL_BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bucket_edges_match_the_originals_labels() {
        assert_eq!(original_bucket_index(0), 0);
        assert_eq!(original_bucket_index(1000), 0); // 1 us -> "1 (us)"
        assert_eq!(original_bucket_index(1001), 1); // just over 1 us -> "2 (us)"
        assert_eq!(original_bucket_index(2000), 1);
        assert_eq!(original_bucket_index(2001), 2);
        assert_eq!(original_bucket_index(8000), 3); // "8 (us)"
        assert_eq!(original_bucket_index(1_048_576_000), 20);
        assert_eq!(original_bucket_index(5_000_000_000), 20); // > 1 s: last bucket
        for i in 0..ORIGINAL_BUCKETS {
            assert_eq!(LatencyHistogram::original_bucket_label_us(i), 1 << i);
        }
    }

    #[test]
    fn percentiles_of_known_values() {
        let mut h = LatencyHistogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p = h.percentiles();
        assert_eq!(p.count, 1000);
        assert!((p.p50_ns as f64 - 500_000.0).abs() / 500_000.0 < 0.002);
        assert!((p.p99_ns as f64 - 990_000.0).abs() / 990_000.0 < 0.002);
        assert!((p.max_ns as f64 - 1_000_000.0).abs() / 1_000_000.0 < 0.002);
    }

    proptest! {
        /// The buckets add up to the count, and every value lands in the
        /// bucket whose label bounds it, away from the 0.1% edges.
        #[test]
        fn buckets_partition(values in proptest::collection::vec(1u64..5_000_000_000, 1..200)) {
            let mut h = LatencyHistogram::new();
            for v in &values { h.record(*v); }
            let b = h.original_buckets();
            prop_assert_eq!(b.iter().sum::<u64>(), values.len() as u64);
            let mut want = [0u64; ORIGINAL_BUCKETS];
            let mut near_edge = false;
            for v in &values {
                want[original_bucket_index(*v)] += 1;
                let i = original_bucket_index(*v);
                let hi = (1u64 << i) * 1000;
                let lo = if i == 0 { 0 } else { (1u64 << (i - 1)) * 1000 };
                if (*v as f64 - hi as f64).abs() < hi as f64 * 0.002 || (*v as f64 - lo as f64).abs() < lo as f64 * 0.002 {
                    near_edge = true;
                }
            }
            if !near_edge { prop_assert_eq!(b, want); }
        }
    }
}
