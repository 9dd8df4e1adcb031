//! A dirty workload's configuration: the page pattern, the fields with
//! their defaults and flags, and the checks that keep a run honest.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::flags::{self, Flag, Flags, Takes};
use crate::mem::region::{PageSize, DIRTY_STEP};
use crate::units::{self, de, MB};

crate::text_enum! {
    /// How pages are chosen: the original's names and aliases.
    pub enum Pattern: "pattern" {
        /// Walk the region page after page, pass after pass.
        Sequential = "sequential" | "seq",
        /// A uniformly random page each time.
        Random = "random" | "ran",
        /// Prefault, then only wait (and verify at the end).
        Once = "once",
    }
}

crate::pydata! {
    /// A dirty workload's configuration: built once (from the command line or
    /// from Python keyword arguments), checked by [`DirtyConfig::validate`].
    /// Sizes in MB (MiB), rates in MB/s, times in seconds.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
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

impl Flags for DirtyConfig {
    const FLAGS: &'static [Flag] = &[
        Flag::new(
            "size_mb",
            "-m/--memory",
            "SIZE",
            Takes::Text,
            "Memory size (MB; suffix M, G or T).",
        ),
        Flag::new(
            "rate_mb_s",
            "-r/--rate",
            "RATE",
            Takes::Text,
            "Dirty rate in MB/s (suffix M, G, T).",
        )
        .shown("unlimited"),
        Flag::new(
            "pattern",
            "-p/--pattern",
            "PATTERN",
            Takes::Text,
            "sequential (seq), random (ran) or once.",
        )
        .choices(Pattern::NAMES),
        Flag::switch(
            "record_latency",
            "-L/--latency",
            Takes::Switch,
            "Record and report memory access latencies.",
        ),
        Flag::new(
            "page_size",
            "-P/--page-size",
            "PAGES",
            Takes::Text,
            "Backing pages: 4k, 2m, 1g (hugetlb) or thp.",
        )
        .choices(PageSize::NAMES),
        Flag::new(
            "threads",
            "-T/--threads",
            "N",
            Takes::Int,
            "Dirtying threads (the rate is shared).",
        ),
        flags::DURATION,
        Flag::switch(
            "verify",
            "--no-verify",
            Takes::Negated,
            "Skip the integrity check (peak rate).",
        ),
        Flag::switch(
            "force",
            "--force",
            Takes::Switch,
            "Skip the available-memory check.",
        ),
        flags::INTERVAL,
        Flag::new(
            "pause_ms",
            "--pause-ms",
            "MS",
            Takes::Float,
            "A step this late is a pause of the guest (or of mig_mon): reported with its \
             wall-clock start and length.",
        ),
        Flag::new(
            "pace_ms",
            "--pace-ms",
            "MS",
            Takes::Float,
            "Work per paced step: each thread wakes once per step (1000: the original's \
             once-a-second burst; smaller: smoother, more wake-ups).",
        ),
        Flag::new(
            "seed",
            "--seed",
            "N",
            Takes::Int,
            "Seed for the random pattern.",
        )
        .shown("clock"),
    ];
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
