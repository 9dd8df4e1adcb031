//! A probe run's configuration: the fields with their defaults and flags,
//! and the times a run works from.

use crate::error::{Error, Result};
use crate::flags::{self, Flag, Flags, Takes};
use crate::units::{self, de};
use serde::{Deserialize, Serialize};
use std::time::Duration;

crate::pydata! {
    /// A probe run's configuration (`client`). The interval and the threshold
    /// are in ms, as the original's command line has them; the run's length in
    /// seconds.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct ProbeConfig {
        /// The echo (or one-way) server: an address or a host name.
        pub server: String,
        /// Its UDP port.
        #[serde(deserialize_with = "de::int")]
        pub port: u16,
        /// Time between probes, ms.
        #[serde(deserialize_with = "de::float")]
        pub interval_ms: f64,
        /// A gap this long is a downtime event, ms; None = twice the median of
        /// the first four gaps, never below twice the interval.
        #[serde(deserialize_with = "de::opt_float")]
        pub threshold_ms: Option<f64>,
        /// Stop after sending this many probes.
        #[serde(deserialize_with = "de::opt_int")]
        pub count: Option<u64>,
        /// Stop after this many seconds.
        #[serde(deserialize_with = "de::opt_float")]
        pub duration_s: Option<f64>,
        /// Only send, for a one-way server.
        #[serde(deserialize_with = "de::flag")]
        pub one_way: bool,
    }
}

/// The shortest probe interval, ms.
pub const MIN_INTERVAL_MS: f64 = 0.01;

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            server: String::new(),
            port: crate::DEFAULT_PORT,
            interval_ms: 1000.0,
            threshold_ms: None,
            count: None,
            duration_s: None,
            one_way: false,
        }
    }
}

impl Flags for ProbeConfig {
    const FLAGS: &'static [Flag] = &[
        Flag::new(
            "server",
            "SERVER_IP",
            "SERVER_IP",
            Takes::Text,
            "The echo server (IPv4, IPv6 or host name).",
        ),
        Flag::new(
            "interval_ms",
            "INTERVAL_MS",
            "INTERVAL_MS",
            Takes::Float,
            "Milliseconds between probes.",
        ),
        flags::UDP_PORT,
        Flag::switch(
            "one_way",
            "--one-way",
            Takes::Switch,
            "Only send, for a one-way 'mig_mon server'.",
        ),
        Flag::new(
            "threshold_ms",
            "--threshold-ms",
            "MS",
            Takes::Float,
            "A gap this long is a downtime event.",
        )
        .shown("twice the median of the first four gaps, at least twice the interval"),
        Flag::new(
            "count",
            "--count",
            "N",
            Takes::Int,
            "Stop after this many probes.",
        ),
        flags::DURATION,
    ];
}

/// What the run works from.
pub(super) struct Plan {
    pub(super) one_way: bool,
    pub(super) count: Option<u64>,
    pub(super) peer: String,
    pub(super) interval: Duration,
    pub(super) threshold: Option<Duration>,
    pub(super) duration: Option<Duration>,
}

impl ProbeConfig {
    /// Rejects values a run cannot honour.
    pub fn validate(&self) -> Result<()> {
        self.plan_times().map(|_| ())
    }

    pub(super) fn plan_times(&self) -> Result<(Duration, Option<Duration>, Option<Duration>)> {
        if self.server.trim().is_empty() {
            return Err(Error::field("server", "the server address is required"));
        }
        if self.port == 0 {
            return Err(Error::field("port", "must not be 0"));
        }
        let interval = units::millis("interval_ms", self.interval_ms)?;
        if self.interval_ms < MIN_INTERVAL_MS {
            return Err(Error::field(
                "interval_ms",
                format!(
                    "must be at least {MIN_INTERVAL_MS} ms, not {}",
                    units::num(self.interval_ms)
                ),
            ));
        }
        if self.count == Some(0) {
            return Err(Error::field("count", "must be at least 1"));
        }
        let threshold = self
            .threshold_ms
            .map(|t| units::millis("threshold_ms", t))
            .transpose()?;
        let duration = units::run_length(self.duration_s)?;
        Ok((interval, threshold, duration))
    }
}
