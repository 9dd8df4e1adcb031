//! Latency statistics: an HDR histogram in nanoseconds, the summaries built
//! from it, and the original tool's 21 power-of-two microsecond buckets.

mod buckets;
mod histogram;
mod ticks;

pub use buckets::{LatencyBuckets, LATENCY_BOUNDS_NS, LATENCY_BUCKETS};
pub use histogram::{LatencyHistogram, Percentiles, ORIGINAL_BUCKETS};
pub use ticks::TickRecorder;
