//! The `vm` emulation for Python: destination and source in background
//! threads, their messages and results as frozen classes.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

use super::stats::PyPercentiles;
use super::{poll_timeout, run_duration};
use crate::error::Error;
use crate::net::sock::resolve;
use crate::net::vm_dst::{DstMessage, SessionSummary, VmDestination};
use crate::net::vm_src::{SrcConfig, SrcSample, SrcSummary, VmSource};

fn pages(vm_size_gb: u64) -> PyResult<u64> {
    vm_size_gb
        .checked_mul(1 << 18)
        .filter(|p| *p > 0)
        .ok_or_else(|| Error::invalid("VM size must be at least 1 GB").into())
}

fn interval(ms: u64) -> PyResult<Duration> {
    if ms == 0 {
        return Err(Error::invalid("interval must be greater than zero").into());
    }
    Ok(Duration::from_millis(ms))
}

/// A source connected.
#[pyclass(name = "VmConnected", module = "migmon._core", frozen, get_all)]
pub struct PyVmConnected {
    session: u64,
    peer: String,
    extended: bool,
}

/// A source turned postcopy on.
#[pyclass(name = "VmPostcopy", module = "migmon._core", frozen, get_all)]
pub struct PyVmPostcopy {
    session: u64,
}

/// One interval of a destination session.
#[pyclass(name = "VmDstSample", module = "migmon._core", frozen, get_all)]
pub struct PyVmDstSample {
    session: u64,
    elapsed_s: f64,
    duration_ms: u64,
    bytes: u64,
    rate_mb_s: f64,
    latency: PyPercentiles,
}

/// A session ended.
#[pyclass(name = "VmDropped", module = "migmon._core", frozen, get_all)]
pub struct PyVmDropped {
    session: u64,
    peer: String,
    reason: String,
}

/// A connection was refused.
#[pyclass(name = "VmRejected", module = "migmon._core", frozen, get_all)]
pub struct PyVmRejected {
    peer: String,
    reason: String,
}

/// A destination session's figures.
#[pyclass(name = "VmSessionSummary", module = "migmon._core", frozen, get_all)]
pub struct PyVmSessionSummary {
    session: u64,
    peer: String,
    duration_s: f64,
    bytes: u64,
    channels: u64,
    preempt: bool,
    latency: PyPercentiles,
    reason: String,
}

impl From<SessionSummary> for PyVmSessionSummary {
    fn from(s: SessionSummary) -> Self {
        Self {
            session: s.session,
            peer: s.peer.to_string(),
            duration_s: s.duration_s,
            bytes: s.bytes,
            channels: s.channels,
            preempt: s.preempt,
            latency: s.latency.into(),
            reason: s.reason,
        }
    }
}

/// One interval of a source.
#[pyclass(name = "VmSrcSample", module = "migmon._core", frozen, get_all)]
pub struct PyVmSrcSample {
    index: u64,
    elapsed_s: f64,
    duration_ms: u64,
    bytes: u64,
    rate_mb_s: f64,
    channel_mb_s: Vec<f64>,
    requests: u64,
}

impl From<SrcSample> for PyVmSrcSample {
    fn from(s: SrcSample) -> Self {
        Self {
            index: s.index,
            elapsed_s: s.elapsed_s,
            duration_ms: s.duration_ms,
            bytes: s.bytes,
            rate_mb_s: s.rate_mb_s,
            channel_mb_s: s.channel_mb_s,
            requests: s.requests,
        }
    }
}

/// A whole source run.
#[pyclass(name = "VmSrcSummary", module = "migmon._core", frozen, get_all)]
pub struct PyVmSrcSummary {
    duration_s: f64,
    bytes: u64,
    rate_mb_s: f64,
    peak_mb_s: f64,
    requests: u64,
    channels: u32,
    preempt: bool,
    samples: Vec<Py<PyVmSrcSample>>,
    end_reason: String,
}

impl PyVmSrcSummary {
    fn new(py: Python<'_>, s: SrcSummary) -> PyResult<Self> {
        Ok(Self {
            duration_s: s.duration_s,
            bytes: s.bytes,
            rate_mb_s: s.rate_mb_s,
            peak_mb_s: s.peak_mb_s,
            requests: s.requests,
            channels: s.channels,
            preempt: s.preempt,
            samples: s
                .samples
                .into_iter()
                .map(|x| Py::new(py, PyVmSrcSample::from(x)))
                .collect::<PyResult<_>>()?,
            end_reason: s.end_reason,
        })
    }
}

/// The emulated destination, serving in the background.
#[pyclass(name = "VmDestination", module = "migmon._core", frozen)]
pub struct PyVmDestination {
    inner: VmDestination,
}

#[pymethods]
impl PyVmDestination {
    #[new]
    #[pyo3(signature = (*, bind=None, port=crate::net::DEFAULT_PORT, vm_size_gb=1024, interval_ms=1000))]
    fn new(bind: Option<&str>, port: u16, vm_size_gb: u64, interval_ms: u64) -> PyResult<Self> {
        Ok(Self {
            inner: VmDestination::start(bind, port, pages(vm_size_gb)?, interval(interval_ms)?)?,
        })
    }

    /// The bound port.
    #[getter]
    fn port(&self) -> u16 {
        self.inner.local_addr().port()
    }

    /// The bound address.
    #[getter]
    fn address(&self) -> String {
        self.inner.local_addr().to_string()
    }

    /// Sessions running now.
    #[getter]
    fn active(&self) -> usize {
        self.inner.active()
    }

    /// The next VmConnected, VmPostcopy, VmDstSample, VmDropped or VmRejected.
    #[pyo3(signature = (timeout_s=0.1))]
    fn next_message(&self, py: Python<'_>, timeout_s: f64) -> PyResult<Option<Py<PyAny>>> {
        let t = poll_timeout(timeout_s);
        let Some(m) = py.detach(|| self.inner.next_message(t)) else {
            return Ok(None);
        };
        let obj = match m {
            DstMessage::Connected {
                session,
                peer,
                extended,
            } => PyVmConnected {
                session,
                peer: peer.to_string(),
                extended,
            }
            .into_py_any(py)?,
            DstMessage::Postcopy { session } => PyVmPostcopy { session }.into_py_any(py)?,
            DstMessage::Sample(s) => PyVmDstSample {
                session: s.session,
                elapsed_s: s.elapsed_s,
                duration_ms: s.duration_ms,
                bytes: s.bytes,
                rate_mb_s: s.rate_mb_s,
                latency: s.latency.into(),
            }
            .into_py_any(py)?,
            DstMessage::Dropped {
                session,
                peer,
                reason,
            } => PyVmDropped {
                session,
                peer: peer.to_string(),
                reason,
            }
            .into_py_any(py)?,
            DstMessage::Rejected { peer, reason } => PyVmRejected {
                peer: peer.to_string(),
                reason,
            }
            .into_py_any(py)?,
        };
        Ok(Some(obj))
    }

    /// Sessions that ended so far.
    fn finished(&self) -> Vec<PyVmSessionSummary> {
        self.inner.finished().into_iter().map(Into::into).collect()
    }

    /// Closes everything; returns every session's summary.
    fn stop(&self, py: Python<'_>) -> Vec<PyVmSessionSummary> {
        py.detach(|| self.inner.stop())
            .into_iter()
            .map(Into::into)
            .collect()
    }
}

/// The emulated source, streaming in the background.
#[pyclass(name = "VmSource", module = "migmon._core", frozen)]
pub struct PyVmSource {
    inner: VmSource,
}

#[pymethods]
impl PyVmSource {
    #[new]
    #[pyo3(signature = (host, *, port=crate::net::DEFAULT_PORT, vm_size_gb=1024, precopy=true,
        postcopy=false, channels=0, preempt=false, requests_on_main=false, max_bandwidth_mb_s=None,
        duration_s=None, interval_ms=1000))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        host: &str,
        port: u16,
        vm_size_gb: u64,
        precopy: bool,
        postcopy: bool,
        channels: u32,
        preempt: bool,
        requests_on_main: bool,
        max_bandwidth_mb_s: Option<u64>,
        duration_s: Option<f64>,
        interval_ms: u64,
    ) -> PyResult<Self> {
        let duration = run_duration(duration_s)?;
        let cfg = SrcConfig {
            target: py.detach(|| resolve(host, port))?,
            vm_pages: pages(vm_size_gb)?,
            precopy,
            postcopy,
            channels,
            preempt,
            requests_on_main,
            max_bandwidth: max_bandwidth_mb_s.map(|m| m.saturating_mul(1 << 20)),
            duration,
            interval: interval(interval_ms)?,
        };
        Ok(Self {
            inner: py.detach(|| VmSource::start(cfg))?,
        })
    }

    /// The next interval's sample, waiting up to `timeout_s`.
    #[pyo3(signature = (timeout_s=0.1))]
    fn next_sample(&self, py: Python<'_>, timeout_s: f64) -> Option<PyVmSrcSample> {
        let t = poll_timeout(timeout_s);
        py.detach(|| self.inner.next_sample(t)).map(Into::into)
    }

    /// True once the run ended (duration, stop, or the destination left).
    #[getter]
    fn done(&self) -> bool {
        self.inner.is_done()
    }

    /// Asks the run to end; returns at once.
    fn request_stop(&self) {
        self.inner.request_stop();
    }

    /// Ends the run and returns its summary.
    fn stop(&self, py: Python<'_>) -> PyResult<PyVmSrcSummary> {
        let s = py.detach(|| self.inner.stop())?;
        PyVmSrcSummary::new(py, s)
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyVmConnected>()?;
    m.add_class::<PyVmPostcopy>()?;
    m.add_class::<PyVmDstSample>()?;
    m.add_class::<PyVmDropped>()?;
    m.add_class::<PyVmRejected>()?;
    m.add_class::<PyVmSessionSummary>()?;
    m.add_class::<PyVmSrcSample>()?;
    m.add_class::<PyVmSrcSummary>()?;
    m.add_class::<PyVmDestination>()?;
    m.add_class::<PyVmSource>()?;
    Ok(())
}
