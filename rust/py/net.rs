//! The downtime probes for Python: echo server, one-way server, probe run,
//! and their messages and results as frozen classes.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

use super::stats::PyPercentiles;
use super::{poll_timeout, run_duration};
use crate::error::Error;
use crate::net::echo::{EchoServer, EchoStats};
use crate::net::gap::DowntimeEvent;
use crate::net::oneway::{ClientSummary, OneWayServer, ServerMessage};
use crate::net::probe::{ProbeConfig, ProbeMessage, ProbeRun, ProbeStatus, ProbeSummary};
use crate::net::sock::resolve;

fn ms(name: &str, v: f64) -> PyResult<Duration> {
    if !(v.is_finite() && v > 0.0) {
        return Err(
            Error::invalid(format!("{name} must be a positive number of ms, not {v}")).into(),
        );
    }
    Ok(Duration::from_secs_f64(v / 1000.0))
}

/// One downtime.
#[pyclass(name = "DowntimeEvent", module = "migmon._core", frozen, get_all)]
#[derive(Clone)]
pub struct PyDowntimeEvent {
    index: u64,
    start_unix_s: f64,
    start_offset_s: f64,
    gap_ns: u64,
    blackout_ns: u64,
    resolution_ns: u64,
    probes_missed: u64,
    peer: Option<String>,
}

impl From<DowntimeEvent> for PyDowntimeEvent {
    fn from(e: DowntimeEvent) -> Self {
        Self {
            index: e.index,
            start_unix_s: e.start_unix_s,
            start_offset_s: e.start_offset_s,
            gap_ns: e.gap_ns,
            blackout_ns: e.blackout_ns,
            resolution_ns: e.resolution_ns,
            probes_missed: e.probes_missed,
            peer: e.peer.map(|p| p.to_string()),
        }
    }
}

#[pymethods]
impl PyDowntimeEvent {
    fn __repr__(&self) -> String {
        format!(
            "DowntimeEvent(index={}, gap_ns={}, blackout_ns={}, probes_missed={})",
            self.index, self.gap_ns, self.blackout_ns, self.probes_missed
        )
    }
}

/// The first two arrivals set the baseline gap and the spike threshold.
#[pyclass(name = "Baseline", module = "migmon._core", frozen, get_all)]
pub struct PyBaseline {
    peer: Option<String>,
    gap_ns: u64,
    threshold_ns: u64,
    unix_s: f64,
}

/// No reply at all yet: the peer may be a one-way server, or down.
#[pyclass(name = "NoReply", module = "migmon._core", frozen, get_all)]
pub struct PyNoReply {
    after_s: f64,
}

/// A one-way server saw a new client.
#[pyclass(name = "NewClient", module = "migmon._core", frozen, get_all)]
pub struct PyNewClient {
    peer: String,
}

/// Live figures of a probe run.
#[pyclass(name = "ProbeStatus", module = "migmon._core", frozen, get_all)]
pub struct PyProbeStatus {
    sent: u64,
    received: u64,
    max_gap_ns: u64,
    cur_gap_ns: u64,
    since_last_reply_ns: u64,
    last_rtt_ns: u64,
    events: u64,
}

impl From<ProbeStatus> for PyProbeStatus {
    fn from(s: ProbeStatus) -> Self {
        Self {
            sent: s.sent,
            received: s.received,
            max_gap_ns: s.max_gap_ns,
            cur_gap_ns: s.cur_gap_ns,
            since_last_reply_ns: s.since_last_reply_ns,
            last_rtt_ns: s.last_rtt_ns,
            events: s.events,
        }
    }
}

/// A whole probe run.
#[pyclass(name = "ProbeSummary", module = "migmon._core", frozen, get_all)]
pub struct PyProbeSummary {
    duration_s: f64,
    interval_ns: u64,
    sent: u64,
    received: u64,
    lost: u64,
    duplicates: u64,
    reordered: u64,
    refused: u64,
    foreign: u64,
    send_errors: u64,
    skipped: u64,
    rtt: Option<PyPercentiles>,
    send_jitter: PyPercentiles,
    baseline_gap_ns: Option<u64>,
    threshold_ns: Option<u64>,
    events: Vec<PyDowntimeEvent>,
    max_gap_ns: u64,
    total_downtime_ns: u64,
    worst_downtime_ns: u64,
    open_gap_ns: u64,
    one_way: bool,
}

impl From<ProbeSummary> for PyProbeSummary {
    fn from(s: ProbeSummary) -> Self {
        Self {
            duration_s: s.duration_s,
            interval_ns: s.interval_ns,
            sent: s.sent,
            received: s.received,
            lost: s.lost,
            duplicates: s.duplicates,
            reordered: s.reordered,
            refused: s.refused,
            foreign: s.foreign,
            send_errors: s.send_errors,
            skipped: s.skipped,
            rtt: s.rtt.map(Into::into),
            send_jitter: s.send_jitter.into(),
            baseline_gap_ns: s.baseline_gap_ns,
            threshold_ns: s.threshold_ns,
            events: s.events.into_iter().map(Into::into).collect(),
            max_gap_ns: s.max_gap_ns,
            total_downtime_ns: s.total_downtime_ns,
            worst_downtime_ns: s.worst_downtime_ns,
            open_gap_ns: s.open_gap_ns,
            one_way: s.one_way,
        }
    }
}

/// Counters of an echo server.
#[pyclass(name = "EchoStats", module = "migmon._core", frozen, get_all)]
pub struct PyEchoStats {
    packets: u64,
    bytes: u64,
    probes: u64,
    send_errors: u64,
    clients: u64,
}

impl From<EchoStats> for PyEchoStats {
    fn from(s: EchoStats) -> Self {
        Self {
            packets: s.packets,
            bytes: s.bytes,
            probes: s.probes,
            send_errors: s.send_errors,
            clients: s.clients,
        }
    }
}

/// One client of a one-way server.
#[pyclass(name = "ClientSummary", module = "migmon._core", frozen, get_all)]
pub struct PyClientSummary {
    peer: String,
    packets: u64,
    probes: u64,
    lost: u64,
    reordered: u64,
    max_gap_ns: u64,
    cur_gap_ns: u64,
    threshold_ns: Option<u64>,
    events: Vec<PyDowntimeEvent>,
}

impl From<ClientSummary> for PyClientSummary {
    fn from(c: ClientSummary) -> Self {
        Self {
            peer: c.peer.to_string(),
            packets: c.packets,
            probes: c.probes,
            lost: c.lost,
            reordered: c.reordered,
            max_gap_ns: c.max_gap_ns,
            cur_gap_ns: c.cur_gap_ns,
            threshold_ns: c.threshold_ns,
            events: c.events.into_iter().map(Into::into).collect(),
        }
    }
}

/// UDP echo server (`server_rr`) in a background thread.
#[pyclass(name = "EchoServer", module = "migmon._core", frozen)]
pub struct PyEchoServer {
    inner: EchoServer,
}

#[pymethods]
impl PyEchoServer {
    #[new]
    #[pyo3(signature = (*, bind=None, port=crate::net::DEFAULT_PORT))]
    fn new(bind: Option<&str>, port: u16) -> PyResult<Self> {
        Ok(Self {
            inner: EchoServer::start(bind, port)?,
        })
    }

    /// The bound port.
    #[getter]
    fn port(&self) -> u16 {
        self.inner.local_addr().port()
    }

    /// The bound address, "ip:port".
    #[getter]
    fn address(&self) -> String {
        self.inner.local_addr().to_string()
    }

    /// Counters so far.
    fn stats(&self) -> PyEchoStats {
        self.inner.stats().into()
    }

    /// Clients seen for the first time since the last call.
    fn take_new_clients(&self) -> Vec<String> {
        self.inner
            .take_new_clients()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Stops serving; returns the final counters.
    fn stop(&self, py: Python<'_>) -> PyEchoStats {
        py.detach(|| self.inner.stop()).into()
    }
}

fn server_message(py: Python<'_>, m: ServerMessage) -> PyResult<Py<PyAny>> {
    match m {
        ServerMessage::NewClient(p) => PyNewClient {
            peer: p.to_string(),
        }
        .into_py_any(py),
        ServerMessage::Baseline {
            peer,
            gap_ns,
            threshold_ns,
            unix_s,
        } => PyBaseline {
            peer: Some(peer.to_string()),
            gap_ns,
            threshold_ns,
            unix_s,
        }
        .into_py_any(py),
        ServerMessage::Event(e) => PyDowntimeEvent::from(e).into_py_any(py),
    }
}

/// One-way server (`server`) in a background thread.
#[pyclass(name = "OneWayServer", module = "migmon._core", frozen)]
pub struct PyOneWayServer {
    inner: OneWayServer,
}

#[pymethods]
impl PyOneWayServer {
    #[new]
    #[pyo3(signature = (*, bind=None, port=crate::net::DEFAULT_PORT, threshold_ms=None))]
    fn new(bind: Option<&str>, port: u16, threshold_ms: Option<f64>) -> PyResult<Self> {
        let threshold = threshold_ms.map(|t| ms("threshold", t)).transpose()?;
        Ok(Self {
            inner: OneWayServer::start(bind, port, threshold)?,
        })
    }

    /// The bound port.
    #[getter]
    fn port(&self) -> u16 {
        self.inner.local_addr().port()
    }

    /// The bound address, "ip:port".
    #[getter]
    fn address(&self) -> String {
        self.inner.local_addr().to_string()
    }

    /// The next NewClient, Baseline or DowntimeEvent, waiting up to `timeout_s`.
    #[pyo3(signature = (timeout_s=0.1))]
    fn next_message(&self, py: Python<'_>, timeout_s: f64) -> PyResult<Option<Py<PyAny>>> {
        match py.detach(|| self.inner.next_message(poll_timeout(timeout_s))) {
            Some(m) => Ok(Some(server_message(py, m)?)),
            None => Ok(None),
        }
    }

    /// Every client's figures so far.
    fn clients(&self) -> Vec<PyClientSummary> {
        self.inner.clients().into_iter().map(Into::into).collect()
    }

    /// Stops; returns every client's figures.
    fn stop(&self, py: Python<'_>) -> Vec<PyClientSummary> {
        py.detach(|| self.inner.stop())
            .into_iter()
            .map(Into::into)
            .collect()
    }
}

/// A probe run (`client`) in a background thread.
#[pyclass(name = "ProbeRun", module = "migmon._core", frozen)]
pub struct PyProbeRun {
    inner: ProbeRun,
}

#[pymethods]
impl PyProbeRun {
    #[new]
    #[pyo3(signature = (host, *, port=crate::net::DEFAULT_PORT, interval_ms=1000.0,
        threshold_ms=None, count=None, duration_s=None, one_way=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        host: &str,
        port: u16,
        interval_ms: f64,
        threshold_ms: Option<f64>,
        count: Option<u64>,
        duration_s: Option<f64>,
        one_way: bool,
    ) -> PyResult<Self> {
        let duration = run_duration(duration_s)?;
        let cfg = ProbeConfig {
            target: py.detach(|| resolve(host, port))?,
            interval: ms("interval", interval_ms)?,
            threshold: threshold_ms.map(|t| ms("threshold", t)).transpose()?,
            count,
            duration,
            one_way,
        };
        Ok(Self {
            inner: ProbeRun::start(cfg)?,
        })
    }

    /// The next Baseline, DowntimeEvent or NoReply, waiting up to `timeout_s`.
    #[pyo3(signature = (timeout_s=0.1))]
    fn next_message(&self, py: Python<'_>, timeout_s: f64) -> PyResult<Option<Py<PyAny>>> {
        let m = py.detach(|| self.inner.next_message(poll_timeout(timeout_s)));
        Ok(match m {
            None => None,
            Some(ProbeMessage::Baseline {
                gap_ns,
                threshold_ns,
                unix_s,
            }) => Some(
                PyBaseline {
                    peer: None,
                    gap_ns,
                    threshold_ns,
                    unix_s,
                }
                .into_py_any(py)?,
            ),
            Some(ProbeMessage::Event(e)) => Some(PyDowntimeEvent::from(e).into_py_any(py)?),
            Some(ProbeMessage::NoReply { after_s }) => Some(PyNoReply { after_s }.into_py_any(py)?),
        })
    }

    /// Live figures.
    #[getter]
    fn status(&self) -> PyProbeStatus {
        self.inner.status().into()
    }

    /// True once the run ended by itself (count, duration) or was stopped.
    #[getter]
    fn done(&self) -> bool {
        self.inner.is_done()
    }

    /// Asks the run to end; returns at once.
    fn request_stop(&self) {
        self.inner.request_stop();
    }

    /// Ends the run and returns its summary.
    fn stop(&self, py: Python<'_>) -> PyResult<PyProbeSummary> {
        Ok(py.detach(|| self.inner.stop())?.into())
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("DEFAULT_PORT", crate::net::DEFAULT_PORT)?;
    m.add_class::<PyDowntimeEvent>()?;
    m.add_class::<PyBaseline>()?;
    m.add_class::<PyNoReply>()?;
    m.add_class::<PyNewClient>()?;
    m.add_class::<PyProbeStatus>()?;
    m.add_class::<PyProbeSummary>()?;
    m.add_class::<PyEchoStats>()?;
    m.add_class::<PyClientSummary>()?;
    m.add_class::<PyEchoServer>()?;
    m.add_class::<PyOneWayServer>()?;
    m.add_class::<PyProbeRun>()?;
    Ok(())
}
