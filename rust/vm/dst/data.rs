//! What a destination tells: sources connected and refused, postcopy
//! turned on, one sample per interval of each session, each session's end.

use serde::Serialize;

use crate::stats::{Percentiles, LATENCY_BUCKETS};

crate::pydata! {
    /// A source connected (its main connection).
    #[derive(Clone, Debug, PartialEq, Serialize)]
    #[serde(tag = "type", rename = "connected")]
    pub struct VmConnected {
        /// Session number on this destination.
        pub session: u64,
        /// The source, "ip:port".
        pub peer: String,
        /// True when it speaks our extension (multifd, preempt).
        pub extended: bool,
    }
}

crate::pydata! {
    /// The source turned postcopy on.
    #[derive(Clone, Debug, PartialEq, Serialize)]
    #[serde(tag = "type", rename = "postcopy")]
    pub struct VmPostcopy {
        /// Session number.
        pub session: u64,
    }
}

crate::pydata! {
    /// One interval of one session, as the destination saw it.
    #[derive(Clone, Debug, PartialEq, Serialize)]
    #[serde(tag = "type", rename = "sample")]
    pub struct VmDstSample {
        /// Session number.
        pub session: u64,
        /// Seconds since the session started, at the end of the interval.
        pub elapsed_s: f64,
        /// Wall-clock time at the end of the interval, Unix seconds (to the
        /// microsecond): the same timeline as every tool's events and QEMU's.
        pub unix_s: f64,
        /// Length of the interval, ms.
        pub duration_ms: u64,
        /// Bytes received over all the session's connections.
        pub bytes: u64,
        /// Receive rate, MB/s.
        pub rate_mb_s: f64,
        /// Page-request latencies in the interval (count 0 without postcopy).
        pub latency: Percentiles,
        /// The same per bucket of `LATENCY_BUCKETS_S` (the last: longer), not
        /// cumulative (for metrics; not part of the JSON).
        #[serde(skip)]
        pub latency_buckets: [u64; LATENCY_BUCKETS],
        /// Their sum, seconds (for metrics).
        #[serde(skip)]
        pub latency_sum_s: f64,
    }
}

crate::pydata! {
    /// A session's figures at its end; also the message that says it ended.
    #[derive(Clone, Debug, PartialEq, Serialize)]
    #[serde(tag = "type", rename = "session")]
    pub struct VmSessionSummary {
        /// Session number.
        pub session: u64,
        /// The source, "ip:port".
        pub peer: String,
        /// Seconds from connect to end.
        pub duration_s: f64,
        /// Bytes received over all connections.
        pub bytes: u64,
        /// Multifd connections that joined.
        pub channels: u64,
        /// Whether a preempt connection joined.
        pub preempt: bool,
        /// Page-request latencies over the session.
        pub latency: Percentiles,
        /// The same per bucket of `LATENCY_BUCKETS_S` (for metrics; not part
        /// of the JSON).
        #[serde(skip)]
        pub latency_buckets: [u64; LATENCY_BUCKETS],
        /// Their sum, seconds (for metrics).
        #[serde(skip)]
        pub latency_sum_s: f64,
        /// Why it ended ("source closed" is a normal end).
        pub reason: String,
    }
}

crate::pydata! {
    /// A connection was refused before it became part of a session.
    #[derive(Clone, Debug, PartialEq, Serialize)]
    #[serde(tag = "type", rename = "rejected")]
    pub struct VmRejected {
        /// Who, "ip:port".
        pub peer: String,
        /// Why.
        pub reason: String,
    }
}

/// What the destination tells as it happens.
#[derive(Clone, Debug, PartialEq)]
pub enum DstMessage {
    /// A source connected.
    Connected(VmConnected),
    /// A source turned postcopy on.
    Postcopy(VmPostcopy),
    /// One interval of a session.
    Sample(VmDstSample),
    /// A session ended.
    Ended(VmSessionSummary),
    /// A connection was refused.
    Rejected(VmRejected),
}
