//! mig_mon's core: the workloads and probes behind the `mig_mon` tool for
//! testing and debugging VM live migration.
//!
//! - [`mem`]: a paced memory dirty workload with an integrity check
//!   (`mm_dirty`).
//! - [`downtime`]: UDP probes and servers for guest network downtime
//!   (`server_rr`, `server`, `client`).
//! - [`vm`]: emulated live-migration streams (`vm -s`, `vm -d`).
//! - [`flags`]: how the command line spells each configuration field.
//! - [`run`]: the background-run machinery every tool shares.
//! - [`stats`]: latency histograms and the summaries built from them.
//! - [`units`]: the original tool's size and rate syntax, strict readers.
//! - [`pace`]: monotonic deadlines, sleeping and the shared stop flag.
//! - [`sock`]: sockets, addresses and their errors.
//! - [`error`]: the one error type.
//! - [`rng`]: the small random generator of the random pattern.
//!
//! The crate knows nothing of Python; the PyO3 binding lives in `py` behind
//! the `python` feature and is the only place that imports pyo3.

/// A data or configuration class that Python sees (with the `python`
/// feature): frozen, every field a read-only attribute under its JSON key.
/// The one place that says so; `scripts/gen_stubs.py` reads these blocks.
#[macro_export]
macro_rules! pydata {
    ($(#[$m:meta])* pub struct $name:ident $body:tt) => {
        $(#[$m])*
        #[cfg_attr(
            feature = "python",
            pyo3::pyclass(module = "migmon._core", frozen, get_all, skip_from_py_object)
        )]
        pub struct $name $body
    };
}

pub mod downtime;
pub mod error;
pub mod flags;
pub mod mem;
pub mod pace;
pub mod rng;
pub mod run;
pub mod sock;
pub mod stats;
pub mod units;
pub mod vm;

#[cfg(feature = "python")]
mod py;

pub use error::{Error, Result};

/// The tool's version, as `mig_mon -v` prints it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The original's port for both `vm` and the probes (it meant 12323; a
/// byte-order slip put it on 9008).
pub const DEFAULT_PORT: u16 = 12323;
