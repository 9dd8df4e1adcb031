//! The PyO3 binding: the `migmon._core` extension module, and the only
//! place that imports pyo3. The core's data types are the Python classes
//! (`#[pyclass]` on them when this feature is on); this module adds what
//! every one of them has in Python ([`data`]: `to_dict`, `__repr__`, and
//! configurations built from keyword arguments), wraps every background run
//! the same way ([`runs`]), and maps the core's errors ([`errors`]).

mod convert;
mod data;
mod errors;
mod runs;

use pyo3::prelude::*;

use crate::units;

/// Parses a size such as `512`, `16G` or `2T` into MB (MiB).
#[pyfunction]
fn parse_size_mb(text: &str) -> PyResult<u64> {
    Ok(units::parse_size_mb(text)?)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", crate::VERSION)?;
    m.add("DEFAULT_PORT", crate::DEFAULT_PORT)?;
    let bounds: Vec<f64> = crate::stats::LATENCY_BOUNDS_NS
        .iter()
        .map(|&ns| ns as f64 / 1e9)
        .collect();
    m.add("LATENCY_BUCKETS_S", bounds)?;
    m.add_function(wrap_pyfunction!(parse_size_mb, m)?)?;
    data::register(m)?;
    runs::register(m)?;
    Ok(())
}
