//! The PyO3 binding: the `migmon._core` extension module. The only place
//! that imports pyo3; it converts, releases the GIL around blocking calls,
//! and maps the core's [`Error`](crate::Error) to Python exceptions.

mod dirty;
mod errors;
mod net;
mod stats;
mod vm;

use std::time::Duration;

use pyo3::prelude::*;

use crate::error::Error;
use crate::units;

/// A poll timeout from Python seconds, clamped to 0..=1 h (a negative or
/// huge value is not an error: it only bounds a wait).
fn poll_timeout(timeout_s: f64) -> Duration {
    Duration::from_secs_f64(timeout_s.clamp(0.0, 3600.0))
}

/// An optional run length from Python seconds; it must be positive.
fn run_duration(duration_s: Option<f64>) -> PyResult<Option<Duration>> {
    match duration_s {
        Some(d) if !(d.is_finite() && d > 0.0) => {
            Err(Error::invalid(format!("duration must be positive, not {d}")).into())
        }
        d => Ok(d.map(Duration::from_secs_f64)),
    }
}

/// Parses a size such as `512`, `16G` or `2T` into MB (MiB).
#[pyfunction]
fn parse_size_mb(text: &str) -> PyResult<u64> {
    Ok(units::parse_size_mb(text)?)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", crate::VERSION)?;
    m.add_function(wrap_pyfunction!(parse_size_mb, m)?)?;
    errors::register(m)?;
    stats::register(m)?;
    dirty::register(m)?;
    net::register(m)?;
    vm::register(m)?;
    Ok(())
}
