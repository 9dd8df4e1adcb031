//! Latency percentiles as a frozen Python class.

use pyo3::prelude::*;

use crate::stats::Percentiles;

/// Latency figures in nanoseconds.
#[pyclass(name = "Percentiles", module = "migmon._core", frozen, get_all)]
#[derive(Clone)]
pub struct PyPercentiles {
    count: u64,
    min_ns: u64,
    mean_ns: f64,
    p50_ns: u64,
    p90_ns: u64,
    p99_ns: u64,
    p999_ns: u64,
    p9999_ns: u64,
    max_ns: u64,
}

impl From<Percentiles> for PyPercentiles {
    fn from(p: Percentiles) -> Self {
        Self {
            count: p.count,
            min_ns: p.min_ns,
            mean_ns: p.mean_ns,
            p50_ns: p.p50_ns,
            p90_ns: p.p90_ns,
            p99_ns: p.p99_ns,
            p999_ns: p.p999_ns,
            p9999_ns: p.p9999_ns,
            max_ns: p.max_ns,
        }
    }
}

#[pymethods]
impl PyPercentiles {
    fn __repr__(&self) -> String {
        format!(
            "Percentiles(count={}, p50_ns={}, p99_ns={}, max_ns={})",
            self.count, self.p50_ns, self.p99_ns, self.max_ns
        )
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPercentiles>()
}
