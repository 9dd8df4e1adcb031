//! What a probe run tells: as it happens (baseline, events, silence), its
//! live status, and the whole run's summary.

use crate::downtime::gap::{Baseline, DowntimeEvent};
use crate::stats::{Percentiles, LATENCY_BUCKETS};
use serde::Serialize;

/// Something worth telling as it happens.
#[derive(Clone, Debug, PartialEq)]
pub enum ProbeMessage {
    /// The first two replies set the baseline (the original prints it).
    Baseline(Baseline),
    /// A downtime.
    Event(DowntimeEvent),
    /// No reply at all yet.
    NoReply(NoReply),
}

crate::pydata! {
    /// No reply at all yet: the server may be one-way, down or filtered.
    #[derive(Clone, Debug, PartialEq, Serialize)]
    #[serde(tag = "type", rename = "no_reply")]
    pub struct NoReply {
        /// Seconds since the first probe.
        pub after_s: f64,
        /// Sends refused so far: the kernel was told nothing listens there.
        pub refused: u64,
        /// Datagrams that came back but are not our probes (wrong magic, or
        /// not one we sent): something else answers on that port.
        pub foreign: u64,
        /// Sends the kernel refused (no route, link down).
        pub send_errors: u64,
    }
}

crate::pydata! {
    /// A live view of the run (the original's status line and more).
    #[derive(Clone, Debug, Default, PartialEq, Serialize)]
    pub struct ProbeStatus {
        /// Probes sent.
        pub sent: u64,
        /// Distinct probes answered.
        pub received: u64,
        /// Largest gap between replies after the baseline, ms.
        pub max_gap_ms: f64,
        /// Latest gap between replies, ms.
        pub cur_gap_ms: f64,
        /// Time since the last reply, ms (grows during an outage).
        pub since_last_reply_ms: f64,
        /// Latest round trip, ms.
        pub last_rtt_ms: f64,
        /// Downtime events so far.
        pub events: u64,
        /// Probes that got no reply although a later one did (those after the
        /// latest reply are still in flight, or in an outage, and not counted).
        pub lost: u64,
        /// Extra copies of answered probes.
        pub duplicates: u64,
        /// Replies that came after a reply to a later probe.
        pub reordered: u64,
        /// Send slots skipped because the client itself was stalled.
        pub skipped: u64,
        /// Spike threshold, ms (None until the baseline is set).
        pub threshold_ms: Option<f64>,
        /// Sum of the events' blackouts, ms.
        pub total_downtime_ms: f64,
        /// Round trips per bucket of `LATENCY_BUCKETS_S` (the last: longer),
        /// not cumulative (for metrics; not part of the JSON).
        #[serde(skip)]
        pub rtt_buckets: [u64; LATENCY_BUCKETS],
        /// Sum of every round trip, seconds (for metrics).
        #[serde(skip)]
        pub rtt_sum_s: f64,
    }
}

crate::pydata! {
    /// The whole run's figures.
    #[derive(Clone, Debug, Serialize)]
    #[serde(tag = "type", rename = "summary")]
    pub struct ProbeSummary {
        /// Seconds from the first probe to the end.
        pub duration_s: f64,
        /// Probe interval, ms.
        pub interval_ms: f64,
        /// Only sent.
        pub one_way: bool,
        /// Probes sent.
        pub sent: u64,
        /// Distinct probes answered.
        pub received: u64,
        /// Probes never answered.
        pub lost: u64,
        /// Extra copies of answered probes.
        pub duplicates: u64,
        /// Replies that came after a reply to a later probe.
        pub reordered: u64,
        /// "Connection refused" (the server's port was closed).
        pub refused: u64,
        /// Replies that were not our probes.
        pub foreign: u64,
        /// Sends the kernel refused (no route, link down).
        pub send_errors: u64,
        /// Send slots skipped because the client itself was stalled.
        pub skipped: u64,
        /// Events during which the client itself stalled (see
        /// `client_stall_ms` of each event).
        pub client_stalled_events: u64,
        /// Round-trip times (none for one-way).
        pub rtt: Option<Percentiles>,
        /// Actual minus planned send time.
        pub send_jitter: Percentiles,
        /// Gap between the first two replies, ms.
        pub baseline_gap_ms: Option<f64>,
        /// Spike threshold, ms.
        pub threshold_ms: Option<f64>,
        /// Largest gap between replies after the baseline, ms.
        pub max_gap_ms: f64,
        /// Sum of the events' blackouts, ms.
        pub total_downtime_ms: f64,
        /// Largest event blackout, ms.
        pub worst_downtime_ms: f64,
        /// Time since the last reply when the run ended, ms (an outage still
        /// going on shows here, not as an event).
        pub open_gap_ms: f64,
        /// Downtime events, in all (also those not listed).
        pub event_count: u64,
        /// The downtime events: the first [`KEPT_EVENTS`] of the run (each
        /// was also told as it happened); the totals count them all.
        pub events: Vec<DowntimeEvent>,
    }
}

/// Events a client lists in its summary: a day of 1 ms probes on a loaded
/// machine must not grow without bound (about 15 MB at most).
pub const KEPT_EVENTS: usize = 100_000;
