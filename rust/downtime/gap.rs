//! Turning packet arrival times into downtime: the original's spike rule
//! and the events we report.
//!
//! The original takes the gap between the first two arrivals as the
//! baseline and calls every later gap of at least twice that a spike; a
//! user may instead give a fixed threshold. One gap is a fragile baseline:
//! two replies that arrive together make it 0 and every later probe a
//! spike. Ours is the median of the first [`WARMUP_GAPS`] gaps, and the
//! threshold never falls below a floor (twice the probe interval, where the
//! interval is known); during the warm-up a gap past the floor is already
//! a spike. A spike is a downtime event:
//! the gap between the last arrival before it and the one that ended it.
//! The guest's blackout is estimated as the gap less one probe interval,
//! good to one interval (the probe resolution).

use serde::Serialize;

const NS_PER_MS: f64 = 1e6;

crate::pydata! {
    /// One downtime: no packet arrived for `gap_ms`.
    #[derive(Clone, Debug, PartialEq, Serialize)]
    #[serde(tag = "type", rename = "event")]
    pub struct DowntimeEvent {
        /// 0 for the first event of a run (per peer on a server).
        pub index: u64,
        /// The peer ("ip:port") whose packets stopped.
        pub peer: Option<String>,
        /// Wall-clock time (Unix seconds) of the last arrival before the gap.
        pub start_unix_s: f64,
        /// Seconds from the start of the run to that arrival.
        pub start_offset_s: f64,
        /// Time between the arrivals around the gap, ms.
        pub gap_ms: f64,
        /// Estimated blackout: the gap less one interval, ms (never negative).
        pub blackout_ms: f64,
        /// How exact the blackout estimate is (one probe interval), ms.
        pub resolution_ms: f64,
        /// Probes sent in the gap that got no timely reply (round trip) or
        /// never arrived (one way, from sequence numbers).
        pub probes_missed: u64,
        /// How late the client itself sent its probes during the gap, ms: its
        /// thread did not run (the host was overloaded, the client stopped).
        /// Part of the gap, or all of it, is then the client's, not the
        /// network's. 0 on a server, which cannot know.
        pub client_stall_ms: f64,
        /// Still going on when the run ended: its gap is the time from the
        /// last reply to the end (the outage may have lasted longer).
        pub open: bool,
    }
}

impl DowntimeEvent {
    /// The event for a gap of `gap_ns` that began at `since_ns` (monotonic),
    /// measured with probes every `resolution_ns`.
    pub fn new(
        index: u64,
        peer: Option<String>,
        since_ns: u64,
        run_start_ns: u64,
        gap_ns: u64,
        resolution_ns: u64,
        probes_missed: u64,
    ) -> Self {
        Self {
            index,
            peer,
            start_unix_s: crate::pace::unix_at(since_ns),
            start_offset_s: since_ns.saturating_sub(run_start_ns) as f64 / 1e9,
            gap_ms: ms(gap_ns),
            blackout_ms: ms(gap_ns.saturating_sub(resolution_ns)),
            resolution_ms: ms(resolution_ns),
            probes_missed,
            client_stall_ms: 0.0,
            open: false,
        }
    }
}

/// Nanoseconds as milliseconds.
pub fn ms(ns: u64) -> f64 {
    ns as f64 / NS_PER_MS
}

crate::pydata! {
    /// The first two arrivals set the baseline gap and the spike threshold.
    #[derive(Clone, Debug, PartialEq, Serialize)]
    #[serde(tag = "type", rename = "baseline")]
    pub struct Baseline {
        /// The peer, on a server that measures many.
        pub peer: Option<String>,
        /// Gap between the first two arrivals, ms (what the original prints).
        pub gap_ms: f64,
        /// The baseline: the median of the first gaps, ms.
        pub median_gap_ms: f64,
        /// Spike threshold from now on, ms.
        pub threshold_ms: f64,
        /// Wall-clock time, Unix seconds.
        pub unix_s: f64,
    }
}

/// What one arrival meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The very first arrival: nothing to compare with yet.
    First,
    /// The baseline is set (or the fixed threshold used).
    Baseline {
        /// Gap between the first two arrivals, ns.
        gap_ns: u64,
        /// The median of the warm-up gaps, ns.
        median_ns: u64,
        /// Threshold from now on, ns.
        threshold_ns: u64,
    },
    /// A gap below the threshold.
    Normal {
        /// The gap, ns.
        gap_ns: u64,
    },
    /// A gap at or above the threshold: a downtime.
    Spike {
        /// The gap, ns.
        gap_ns: u64,
        /// When the previous arrival was (monotonic ns).
        since_ns: u64,
    },
}

/// Gaps that make the baseline (their median).
pub const WARMUP_GAPS: usize = 4;

/// Gap tracking for one stream of arrivals.
#[derive(Clone, Debug, Default)]
pub struct GapDetector {
    fixed_ns: Option<u64>,
    floor_ns: u64,
    /// Whether the floor alone judges gaps before the baseline is known (a
    /// client, which knows its interval; not a server, which does not).
    floor_before_baseline: bool,
    warmup: Vec<u64>,
    last_ns: Option<u64>,
    threshold_ns: Option<u64>,
    baseline_ns: Option<u64>,
    max_gap_ns: u64,
    cur_gap_ns: u64,
}

impl GapDetector {
    /// A detector with a fixed threshold (ns), or the baseline rule with
    /// its threshold never below `floor_ns` (0: no floor).
    pub fn new(fixed_threshold_ns: Option<u64>, floor_ns: u64) -> Self {
        Self {
            fixed_ns: fixed_threshold_ns,
            floor_ns,
            floor_before_baseline: true,
            ..Self::default()
        }
    }

    /// A detector for a sender whose interval is unknown (a server's view
    /// of its clients): the baseline rule's threshold is never below
    /// `min_threshold_ns`, and no gap is judged before the baseline.
    pub fn for_unknown_interval(fixed_threshold_ns: Option<u64>, min_threshold_ns: u64) -> Self {
        Self {
            fixed_ns: fixed_threshold_ns,
            floor_ns: min_threshold_ns,
            floor_before_baseline: false,
            ..Self::default()
        }
    }

    /// Accounts one arrival at monotonic time `now_ns`.
    pub fn arrive(&mut self, now_ns: u64) -> Arrival {
        let Some(last) = self.last_ns.replace(now_ns) else {
            return Arrival::First;
        };
        let gap_ns = now_ns.saturating_sub(last);
        self.cur_gap_ns = gap_ns;
        let Some(threshold_ns) = self.threshold_ns else {
            self.warmup.push(gap_ns);
            let first = self.warmup[0];
            if let Some(t) = self.fixed_ns {
                self.threshold_ns = Some(t);
                self.baseline_ns = Some(gap_ns);
                return Arrival::Baseline {
                    gap_ns,
                    median_ns: gap_ns,
                    threshold_ns: t,
                };
            }
            if self.warmup.len() < WARMUP_GAPS {
                // Not enough gaps for a baseline: only the floor applies.
                if self.floor_before_baseline && self.floor_ns > 0 && gap_ns >= self.floor_ns {
                    self.max_gap_ns = self.max_gap_ns.max(gap_ns);
                    return Arrival::Spike {
                        gap_ns,
                        since_ns: last,
                    };
                }
                return Arrival::Normal { gap_ns };
            }
            let mut sorted = std::mem::take(&mut self.warmup);
            sorted.sort_unstable();
            let median_ns = sorted[sorted.len() / 2];
            let threshold_ns = median_ns.saturating_mul(2).max(self.floor_ns).max(1);
            self.threshold_ns = Some(threshold_ns);
            self.baseline_ns = Some(median_ns);
            return Arrival::Baseline {
                gap_ns: first,
                median_ns,
                threshold_ns,
            };
        };
        self.max_gap_ns = self.max_gap_ns.max(gap_ns);
        if gap_ns >= threshold_ns {
            Arrival::Spike {
                gap_ns,
                since_ns: last,
            }
        } else {
            Arrival::Normal { gap_ns }
        }
    }

    /// The spike threshold, once known (ns).
    pub fn threshold_ns(&self) -> Option<u64> {
        self.threshold_ns
    }

    /// The baseline gap, once known (ns).
    pub fn baseline_ns(&self) -> Option<u64> {
        self.baseline_ns
    }

    /// Largest gap after the baseline (the original's `max_delay`), ns.
    pub fn max_gap_ns(&self) -> u64 {
        self.max_gap_ns
    }

    /// The latest gap (the original's `cur`), ns.
    pub fn cur_gap_ns(&self) -> u64 {
        self.cur_gap_ns
    }

    /// When the last arrival was (monotonic ns).
    pub fn last_ns(&self) -> Option<u64> {
        self.last_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn baseline_is_the_median_of_the_first_gaps() {
        let mut d = GapDetector::new(None, 0);
        assert_eq!(d.arrive(0), Arrival::First);
        for t in [10, 20, 30] {
            assert!(matches!(d.arrive(t * MS), Arrival::Normal { .. }));
        }
        assert_eq!(
            d.arrive(41 * MS),
            Arrival::Baseline {
                gap_ns: 10 * MS,
                median_ns: 10 * MS,
                threshold_ns: 20 * MS
            }
        );
        assert_eq!(d.arrive(60 * MS), Arrival::Normal { gap_ns: 19 * MS });
        assert_eq!(
            d.arrive(82 * MS),
            Arrival::Spike {
                gap_ns: 22 * MS,
                since_ns: 60 * MS
            }
        );
        assert_eq!(d.max_gap_ns(), 22 * MS);
        assert_eq!(d.cur_gap_ns(), 22 * MS);
    }

    #[test]
    fn a_first_gap_of_zero_does_not_make_every_probe_a_spike() {
        // Two replies arrive together, then one every 5 ms.
        let mut d = GapDetector::new(None, 10 * MS);
        d.arrive(0);
        let mut spikes = 0;
        let mut baseline = None;
        for t in [0, 5, 10, 15, 20, 25, 30, 35].iter() {
            match d.arrive(*t * MS) {
                Arrival::Spike { .. } => spikes += 1,
                Arrival::Baseline { threshold_ns, .. } => baseline = Some(threshold_ns),
                _ => {}
            }
        }
        assert_eq!(spikes, 0);
        assert_eq!(baseline, Some(10 * MS));
        // Without the floor the median still holds: 5 ms gaps, 10 ms threshold.
        let mut d = GapDetector::new(None, 0);
        d.arrive(0);
        for t in [0, 5, 10, 15] {
            d.arrive(t * MS);
        }
        assert_eq!(d.threshold_ns(), Some(10 * MS));
    }

    #[test]
    fn an_outage_in_the_warm_up_is_caught_by_the_floor() {
        let mut d = GapDetector::new(None, 10 * MS);
        d.arrive(0);
        assert!(matches!(d.arrive(5 * MS), Arrival::Normal { .. }));
        assert!(matches!(d.arrive(305 * MS), Arrival::Spike { gap_ns, .. } if gap_ns == 300 * MS));
    }

    #[test]
    fn fixed_threshold() {
        let mut d = GapDetector::new(Some(100 * MS), 0);
        d.arrive(0);
        assert_eq!(
            d.arrive(MS),
            Arrival::Baseline {
                gap_ns: MS,
                median_ns: MS,
                threshold_ns: 100 * MS
            }
        );
        assert!(matches!(d.arrive(50 * MS), Arrival::Normal { .. }));
        assert!(matches!(d.arrive(400 * MS), Arrival::Spike { .. }));
    }
}
