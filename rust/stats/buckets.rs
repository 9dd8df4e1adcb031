//! Fixed latency buckets for metrics (Prometheus histograms): counts per
//! bucket and the sum, cheap enough to update on every reply or page
//! request and to copy into a live status.

use super::LatencyHistogram;

/// Upper bounds of the latency buckets, ns: 20 us to 1 s, the range of
/// round trips and page requests between hosts (a last, unbounded bucket
/// holds the rest).
pub const LATENCY_BOUNDS_NS: [u64; 15] = [
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
];

/// How many buckets: one per bound and the unbounded last one.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_NS.len() + 1;

/// Latencies counted into [`LATENCY_BOUNDS_NS`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencyBuckets {
    /// Count per bucket, not cumulative; the last one is above every bound.
    pub counts: [u64; LATENCY_BUCKETS],
    /// Sum of every latency counted, ns.
    pub sum_ns: u64,
}

impl LatencyBuckets {
    /// Counts one latency (ns).
    #[inline]
    pub fn record(&mut self, ns: u64) {
        let i = LATENCY_BOUNDS_NS.partition_point(|&b| b < ns);
        self.counts[i] += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    /// The buckets of every value in an HDR histogram (exact to its 0.1%).
    pub fn of(h: &LatencyHistogram) -> Self {
        let mut out = Self::default();
        h.for_each(|ns, count| {
            let i = LATENCY_BOUNDS_NS.partition_point(|&b| b < ns);
            out.counts[i] += count;
            out.sum_ns = out.sum_ns.saturating_add(ns.saturating_mul(count));
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive_and_the_rest_overflows() {
        let mut b = LatencyBuckets::default();
        for ns in [1, 20_000, 20_001, 1_000_000_000, 5_000_000_000] {
            b.record(ns);
        }
        assert_eq!(b.counts[0], 2);
        assert_eq!(b.counts[1], 1);
        assert_eq!(b.counts[14], 1);
        assert_eq!(b.counts[15], 1);
        assert_eq!(b.sum_ns, 6_000_040_002);
    }

    #[test]
    fn of_a_histogram_matches_recording_directly() {
        let mut h = LatencyHistogram::new();
        let mut direct = LatencyBuckets::default();
        for ns in [
            15_000u64,
            70_000,
            70_000,
            3_000_000,
            90_000_000,
            2_000_000_000,
        ] {
            h.record(ns);
            direct.record(ns);
        }
        let from = LatencyBuckets::of(&h);
        assert_eq!(from.counts, direct.counts);
        let err = (from.sum_ns as f64 - direct.sum_ns as f64).abs() / direct.sum_ns as f64;
        assert!(err < 0.001, "{err}");
    }
}
