//! A destination's configuration: the fields with their defaults and flags,
//! and the checks.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::flags::{self, Flag, Flags, Takes};
use crate::units::{self, de};
use crate::vm::src::{vm_pages, PORT_FLAG, SIZE_FLAG};

crate::pydata! {
    /// The emulated destination's configuration. Times in seconds.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct VmDestinationConfig {
        /// Address to listen on; None = every address, IPv6 and IPv4.
        pub bind: Option<String>,
        /// TCP port; 0 = any free port.
        #[serde(deserialize_with = "de::int")]
        pub port: u16,
        /// Guest size in GB, for sources of the original protocol (an extended
        /// source says its own).
        #[serde(deserialize_with = "de::int")]
        pub vm_size_gb: u64,
        /// Seconds between each session's samples.
        #[serde(deserialize_with = "de::float")]
        pub interval_s: f64,
        /// Connections served at once (a session is one to 66); more are
        /// closed as they come, with a message.
        #[serde(deserialize_with = "de::int")]
        pub max_connections: u32,
        /// Stop after this many seconds; None = until stopped.
        #[serde(deserialize_with = "de::opt_float")]
        pub duration_s: Option<f64>,
        /// A session that brings less than one page (4 KiB) in this many
        /// seconds is stalled, and closed (its slots go to other sources).
        #[serde(deserialize_with = "de::float")]
        pub idle_timeout_s: f64,
    }
}

impl Default for VmDestinationConfig {
    fn default() -> Self {
        Self {
            bind: None,
            port: crate::DEFAULT_PORT,
            vm_size_gb: 1024,
            interval_s: 1.0,
            max_connections: 256,
            duration_s: None,
            idle_timeout_s: 30.0,
        }
    }
}

impl Flags for VmDestinationConfig {
    const FLAGS: &'static [Flag] = &[
        PORT_FLAG,
        SIZE_FLAG,
        flags::DURATION,
        Flag::new(
            "bind",
            "--bind",
            "ADDR",
            Takes::Text,
            "Destination: address to listen on.",
        )
        .shown("all, IPv6 and IPv4"),
        flags::INTERVAL,
        Flag::new(
            "max_connections",
            "--max-connections",
            "N",
            Takes::Int,
            "Destination: connections served at once (a source uses 1 + channels + preempt); \
             more are closed at once, with a message.",
        ),
        Flag::new(
            "idle_timeout_s",
            "--idle-timeout",
            "S",
            Takes::Float,
            "Destination: a session that brings less than a page in this many seconds is \
             stalled, and closed (its connections go to other sources).",
        ),
    ];
}

impl VmDestinationConfig {
    /// Rejects values a destination cannot honour.
    pub fn validate(&self) -> Result<()> {
        vm_pages(self.vm_size_gb)?;
        units::seconds("interval_s", self.interval_s)?;
        units::run_length(self.duration_s)?;
        units::seconds("idle_timeout_s", self.idle_timeout_s)?;
        if !(1..=65536).contains(&self.max_connections) {
            return Err(Error::field(
                "max_connections",
                format!("must be between 1 and 65536, not {}", self.max_connections),
            ));
        }
        Ok(())
    }
}
