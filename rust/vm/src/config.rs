//! An emulated source's configuration: the return path, the fields with
//! their defaults and flags, and the checks between them.

use crate::error::{Error, Result};
use crate::flags::{self, Flag, Flags, Takes};
use crate::units::{self, de, MB};
use serde::{Deserialize, Serialize};

/// Most multifd connections a source may open.
pub const MAX_CHANNELS: u32 = 64;

crate::text_enum! {
    /// Where the destination's page requests travel when there is a
    /// preempt connection.
    #[derive(Default)]
    pub enum ReturnPath: "return path" {
        /// With the pages they ask for, on the preempt connection.
        #[default]
        Preempt = "preempt",
        /// On the main connection's return path, as QEMU does.
        Main = "main",
    }
}

crate::pydata! {
    /// An emulated source's configuration. Sizes in GB, rates in MB/s, times in
    /// seconds.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct VmSourceConfig {
        /// The destination: an IPv4 or IPv6 address or a host name.
        pub host: String,
        /// Its TCP port.
        #[serde(deserialize_with = "de::int")]
        pub port: u16,
        /// Guest size in GB (1 GB = 262144 pages of 4 KiB).
        #[serde(deserialize_with = "de::int")]
        pub vm_size_gb: u64,
        /// Stream precopy pages.
        #[serde(deserialize_with = "de::flag")]
        pub precopy: bool,
        /// Ask the destination to request pages (postcopy).
        #[serde(deserialize_with = "de::flag")]
        pub postcopy: bool,
        /// Multifd connections for the precopy stream (0 = on main; at most 64).
        #[serde(deserialize_with = "de::int")]
        pub channels: u32,
        /// Answer page requests on a connection of their own.
        #[serde(deserialize_with = "de::flag")]
        pub preempt: bool,
        /// With `preempt`: where the requests travel.
        pub return_path: ReturnPath,
        /// Cap of the precopy stream, MB/s (also size text: `1G`); None = none.
        #[serde(deserialize_with = "de::opt_size")]
        pub max_bandwidth_mb_s: Option<u64>,
        /// Stop after this many seconds; None = until stopped.
        #[serde(deserialize_with = "de::opt_float")]
        pub duration_s: Option<f64>,
        /// Seconds between samples.
        #[serde(deserialize_with = "de::float")]
        pub interval_s: f64,
        /// Seconds to wait for each connection to the destination.
        #[serde(deserialize_with = "de::float")]
        pub connect_timeout_s: f64,
    }
}

impl Default for VmSourceConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: crate::DEFAULT_PORT,
            vm_size_gb: 1024,
            precopy: true,
            postcopy: false,
            channels: 0,
            preempt: false,
            return_path: ReturnPath::Preempt,
            max_bandwidth_mb_s: None,
            duration_s: None,
            interval_s: 1.0,
            connect_timeout_s: 10.0,
        }
    }
}

/// `-S/--size` of both sides.
pub const SIZE_FLAG: Flag = Flag::new(
    "vm_size_gb",
    "-S/--size",
    "GB",
    Takes::Int,
    "Size of the VM in GB.",
);
/// `-p/--port` of both sides.
pub const PORT_FLAG: Flag = Flag::new("port", "-p/--port", "PORT", Takes::Int, "TCP port.");

impl Flags for VmSourceConfig {
    const FLAGS: &'static [Flag] = &[
        Flag::new(
            "host",
            "-H/--host",
            "HOST",
            Takes::Text,
            "Destination address (required with -s).",
        ),
        PORT_FLAG,
        SIZE_FLAG,
        flags::DURATION,
        Flag::new(
            "channels",
            "--channels",
            "N",
            Takes::Int,
            "Source: multifd connections for precopy.",
        ),
        Flag::switch(
            "preempt",
            "--preempt",
            Takes::Switch,
            "Source: answer page requests on their own connection.",
        ),
        Flag::new(
            "return_path",
            "--return-path",
            "PATH",
            Takes::Text,
            "With --preempt, where page requests travel: 'preempt' (with the pages) or 'main' \
             (QEMU's return path, behind the stream's socket).",
        )
        .choices(ReturnPath::NAMES),
        Flag::new(
            "max_bandwidth_mb_s",
            "--max-bandwidth",
            "RATE",
            Takes::Text,
            "Source: cap the precopy stream (MB/s; M, G, T).",
        )
        .shown("none"),
        flags::INTERVAL,
        Flag::new(
            "connect_timeout_s",
            "--connect-timeout",
            "S",
            Takes::Float,
            "Source: seconds to wait for each connection.",
        ),
    ];
}

/// Pages of 4 KiB in a guest of `gb` GB, checked.
/// Pages in the largest guest a run emulates (2^34 GB), exclusive.
pub const MAX_VM_PAGES: u64 = 1 << 52;

pub(crate) fn vm_pages(gb: u64) -> Result<u64> {
    gb.checked_mul(1 << 18)
        .filter(|p| *p > 0 && *p < MAX_VM_PAGES)
        .ok_or_else(|| {
            Error::field(
                "vm_size_gb",
                format!("must be between 1 GB and 2^34 GB, not {gb}"),
            )
        })
}

impl VmSourceConfig {
    /// Rejects combinations a run cannot honour.
    pub fn validate(&self) -> Result<()> {
        if self.host.trim().is_empty() {
            return Err(Error::field("host", "the destination host is required"));
        }
        if self.port == 0 {
            return Err(Error::field("port", "must not be 0"));
        }
        vm_pages(self.vm_size_gb)?;
        if !self.precopy && !self.postcopy {
            return Err(Error::field(
                "precopy",
                "nothing to test: turn on precopy, postcopy or both",
            ));
        }
        if self.channels > 0 && !self.precopy {
            return Err(Error::field(
                "channels",
                "multifd channels carry precopy pages: turn on precopy",
            ));
        }
        if self.channels > MAX_CHANNELS {
            return Err(Error::field(
                "channels",
                format!(
                    "at most {MAX_CHANNELS} multifd channels, not {}",
                    self.channels
                ),
            ));
        }
        if self.preempt && !self.postcopy {
            return Err(Error::field(
                "preempt",
                "a preempt connection is for postcopy requests: turn on postcopy",
            ));
        }
        if self.return_path == ReturnPath::Main && !self.preempt {
            return Err(Error::field(
                "return_path",
                "the main return path is a choice of preempt mode: turn on preempt",
            ));
        }
        match self.max_bandwidth_mb_s {
            Some(0) => {
                return Err(Error::field(
                    "max_bandwidth_mb_s",
                    "must be greater than zero",
                ))
            }
            Some(b) if b.checked_mul(MB).is_none() => {
                return Err(Error::field("max_bandwidth_mb_s", "too large"))
            }
            _ => {}
        }
        units::run_length(self.duration_s)?;
        units::seconds("interval_s", self.interval_s)?;
        units::seconds("connect_timeout_s", self.connect_timeout_s)?;
        Ok(())
    }

    pub(super) fn max_bandwidth(&self) -> Option<u64> {
        self.max_bandwidth_mb_s.map(|m| m * MB)
    }

    pub(super) fn requests_on_main(&self) -> bool {
        self.return_path == ReturnPath::Main
    }
}
