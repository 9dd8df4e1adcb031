//! `DirtyRun` and its results for Python. Every blocking call releases the
//! GIL and is bounded by a timeout, so the Python side polls in short slices
//! and a KeyboardInterrupt lands between them.

use pyo3::prelude::*;

use super::poll_timeout;
use super::stats::PyPercentiles;
use crate::mem::{DirtyConfig, DirtyRun, DirtySample, DirtySummary, PageSize, Pattern, Phase};

/// One interval of a dirty run.
#[pyclass(name = "DirtySample", module = "migmon._core", frozen, get_all)]
#[derive(Clone)]
pub struct PyDirtySample {
    index: u64,
    elapsed_s: f64,
    duration_ms: u64,
    bytes: u64,
    rate_mb_s: f64,
    load_pct: f64,
    latency: Option<PyPercentiles>,
}

impl From<DirtySample> for PyDirtySample {
    fn from(s: DirtySample) -> Self {
        Self {
            index: s.index,
            elapsed_s: s.elapsed_s,
            duration_ms: s.duration_ms,
            bytes: s.bytes,
            rate_mb_s: s.rate_mb_s,
            load_pct: s.load_pct,
            latency: s.latency.map(Into::into),
        }
    }
}

#[pymethods]
impl PyDirtySample {
    fn __repr__(&self) -> String {
        format!(
            "DirtySample(index={}, rate_mb_s={:.1}, load_pct={:.2})",
            self.index, self.rate_mb_s, self.load_pct
        )
    }
}

/// The whole run's figures.
#[pyclass(name = "DirtySummary", module = "migmon._core", frozen, get_all)]
pub struct PyDirtySummary {
    prefault_s: f64,
    duration_s: f64,
    bytes: u64,
    rate_mb_s: f64,
    samples: Vec<PyDirtySample>,
    latency: Option<PyPercentiles>,
    buckets: Option<Vec<u64>>,
    verified_pages: u64,
    completed_prefault: bool,
}

impl From<DirtySummary> for PyDirtySummary {
    fn from(s: DirtySummary) -> Self {
        Self {
            prefault_s: s.prefault_s,
            duration_s: s.duration_s,
            bytes: s.bytes,
            rate_mb_s: s.rate_mb_s,
            samples: s.samples.into_iter().map(Into::into).collect(),
            latency: s.latency.map(Into::into),
            buckets: s.buckets.map(|b| b.to_vec()),
            verified_pages: s.verified_pages,
            completed_prefault: s.completed_prefault,
        }
    }
}

#[pymethods]
impl PyDirtySummary {
    fn __repr__(&self) -> String {
        format!(
            "DirtySummary(duration_s={:.3}, bytes={}, rate_mb_s={:.1}, samples={})",
            self.duration_s,
            self.bytes,
            self.rate_mb_s,
            self.samples.len()
        )
    }
}

/// A memory dirty workload running in background threads.
#[pyclass(name = "DirtyRun", module = "migmon._core", frozen)]
pub struct PyDirtyRun {
    inner: DirtyRun,
}

#[pymethods]
impl PyDirtyRun {
    #[new]
    #[pyo3(signature = (*, size_mb, rate_mb_s=None, pattern="sequential", page_size="4k",
        threads=1, record_latency=false, verify=true, interval_ms=1000, duration_ms=None,
        force=false, seed=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        size_mb: u64,
        rate_mb_s: Option<u64>,
        pattern: &str,
        page_size: &str,
        threads: usize,
        record_latency: bool,
        verify: bool,
        interval_ms: u64,
        duration_ms: Option<u64>,
        force: bool,
        seed: Option<u64>,
    ) -> PyResult<Self> {
        let cfg = DirtyConfig {
            size_mb,
            rate_mb_s,
            pattern: Pattern::parse(pattern)?,
            page_size: PageSize::parse(page_size)?,
            threads,
            record_latency,
            verify,
            interval_ms,
            duration_ms,
            force,
            seed,
        };
        // Mapping a large region can take a moment; let other threads run.
        let inner = py.detach(|| DirtyRun::start(cfg))?;
        Ok(Self { inner })
    }

    /// "prefaulting", "dirtying", "stopping" or "done".
    #[getter]
    fn phase(&self) -> &'static str {
        match self.inner.phase() {
            Phase::Prefaulting => "prefaulting",
            Phase::Dirtying => "dirtying",
            Phase::Stopping => "stopping",
            Phase::Done => "done",
        }
    }

    /// (pages prefaulted, total pages), 4 KiB pages.
    #[getter]
    fn prefault_progress(&self) -> (u64, u64) {
        self.inner.prefault_progress()
    }

    /// Virtual address of the region in this process.
    #[getter]
    fn region_address(&self) -> usize {
        self.inner.region_address()
    }

    /// The pattern's canonical name ("sequential", "random" or "once").
    #[getter]
    fn pattern(&self) -> &'static str {
        self.inner.config().pattern.name()
    }

    /// Backing page size in bytes.
    #[getter]
    fn page_size_bytes(&self) -> u64 {
        self.inner.config().page_size.bytes()
    }

    /// The next sample, waiting at most `timeout_s` seconds.
    #[pyo3(signature = (timeout_s=0.1))]
    fn next_sample(&self, py: Python<'_>, timeout_s: f64) -> Option<PyDirtySample> {
        let t = poll_timeout(timeout_s);
        py.detach(|| self.inner.next_sample(t)).map(Into::into)
    }

    /// True once the run has ended by itself or been stopped.
    #[getter]
    fn done(&self) -> bool {
        self.inner.is_done()
    }

    /// Asks the run to end and returns at once.
    fn request_stop(&self) {
        self.inner.request_stop();
    }

    /// Ends the run and returns its summary; raises CorruptionError if a
    /// page lost its content.
    fn stop(&self, py: Python<'_>) -> PyResult<PyDirtySummary> {
        Ok(py.detach(|| self.inner.stop())?.into())
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDirtySample>()?;
    m.add_class::<PyDirtySummary>()?;
    m.add_class::<PyDirtyRun>()?;
    Ok(())
}
