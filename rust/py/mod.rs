//! The PyO3 binding: the `migmon._core` extension module. The only place
//! that imports pyo3; it converts, releases the GIL around blocking calls,
//! and maps the core's [`Error`](crate::Error) to Python exceptions.

mod dirty;
mod errors;
mod net;
mod stats;
mod vm;

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
    m.add_function(wrap_pyfunction!(parse_size_mb, m)?)?;
    errors::register(m)?;
    stats::register(m)?;
    dirty::register(m)?;
    net::register(m)?;
    vm::register(m)?;
    Ok(())
}
