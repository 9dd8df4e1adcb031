//! What a source reports: one sample per interval, how it ended, the
//! whole run.

use crate::error::Result;
use serde::Serialize;

crate::pydata! {
    /// One interval of a source.
    #[derive(Clone, Debug, PartialEq, Serialize)]
    #[serde(tag = "type", rename = "sample")]
    pub struct VmSrcSample {
        /// 0 for the first interval.
        pub index: u64,
        /// Seconds since the start, at the end of the interval.
        pub elapsed_s: f64,
        /// Wall-clock time at the end of the interval, Unix seconds (to the
        /// microsecond): the same timeline as every tool's events and QEMU's.
        pub unix_s: f64,
        /// Length of the interval, ms.
        pub duration_ms: u64,
        /// Bytes sent over every connection (headers and pages).
        pub bytes: u64,
        /// Send rate, MB/s.
        pub rate_mb_s: f64,
        /// Send rate of each multifd connection, MB/s.
        pub channel_mb_s: Vec<f64>,
        /// Page requests answered in the interval.
        pub requests: u64,
    }
}

crate::text_enum! {
    /// How a source run ended.
    pub enum VmSrcEnd: "end" {
        /// Its duration was reached.
        Duration = "duration",
        /// It was stopped.
        Stopped = "stopped",
        /// The destination closed a connection.
        PeerClosed = "peer_closed",
        /// A connection failed otherwise.
        Error = "error",
    }
}

impl VmSrcEnd {
    /// True for an end the user asked for (duration or stop).
    pub fn is_normal(self) -> bool {
        matches!(self, Self::Duration | Self::Stopped)
    }
}

crate::pydata! {
    /// The whole run.
    #[derive(Clone, Debug, Serialize)]
    #[serde(tag = "type", rename = "summary")]
    pub struct VmSrcSummary {
        /// Seconds from the start to the end.
        pub duration_s: f64,
        /// Bytes sent.
        pub bytes: u64,
        /// Average rate, MB/s.
        pub rate_mb_s: f64,
        /// Best interval, MB/s.
        pub peak_mb_s: f64,
        /// Page requests answered.
        pub requests: u64,
        /// Multifd connections used.
        pub channels: u32,
        /// Whether a preempt connection was used.
        pub preempt: bool,
        /// How it ended.
        pub end: VmSrcEnd,
        /// The end in words ("duration reached", "stopped", or what went wrong).
        pub end_reason: String,
        /// Number of intervals reported.
        pub intervals: u64,
        /// Every interval (not part of the JSON summary line).
        #[serde(skip)]
        pub samples: Vec<VmSrcSample>,
    }
}
