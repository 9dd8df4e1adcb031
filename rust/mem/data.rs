//! What a dirty run reports: its phase, one sample per interval, the
//! pauses it saw, and the whole run's summary.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::stats::Percentiles;

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

crate::pydata! {
    /// One interval's figures.
    #[derive(Clone, Debug, PartialEq, Serialize)]
    #[serde(tag = "type", rename = "sample")]
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
}

crate::pydata! {
    /// A time in which no dirtying thread ran although its schedule said it
    /// should: the guest (or the process) was paused. Not an access that took
    /// long (the latency histogram's business) but time with no access at all.
    #[derive(Clone, Debug, PartialEq, Serialize)]
    #[serde(tag = "type", rename = "pause")]
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
}

/// What a dirty run reports as it goes.
#[derive(Clone, Debug, PartialEq)]
pub enum DirtyItem {
    /// One interval.
    Sample(DirtySample),
    /// A pause, once it is over.
    Pause(DirtyPause),
}

crate::pydata! {
    /// The whole run's figures.
    #[derive(Clone, Debug, Serialize)]
    #[serde(tag = "type", rename = "summary")]
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
}

impl DirtySummary {
    pub(crate) fn empty(prefault_s: f64) -> Self {
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
