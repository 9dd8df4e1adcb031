//! Every background run in Python, one shape (written once, in the macro):
//! built from its configuration (or keyword arguments for one), started at
//! once; `next(timeout_s)` for the next item, `drain()` for what is ready,
//! iteration until the run ends, `done`, `request_stop()`, `stop()` (the
//! same result every time), `wait()` for a run that ends by itself, and a
//! context manager that stops it. Blocking calls release the GIL and are
//! cut in slices of 100 ms, so Ctrl-C lands between them.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::IntoPyObjectExt;

use super::data::replaced;
use crate::downtime::*;
use crate::mem::{DirtyConfig, DirtyItem, DirtyWorkload, Phase};
use crate::run::{lock, Background};
use crate::vm::*;

const SLICE: Duration = Duration::from_millis(100);

/// A poll timeout from Python seconds, clamped to 0..=1 h (it only bounds
/// a wait, so no value is an error; NaN waits not at all).
fn poll_timeout(timeout_s: f64) -> Duration {
    if timeout_s.is_nan() {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(timeout_s.clamp(0.0, 3600.0))
}

/// The configuration from `config`, `kwargs`, or both (kwargs on top).
fn config_of<T: Clone + serde::Serialize + serde::de::DeserializeOwned>(
    py: Python<'_>,
    config: Option<&T>,
    kwargs: Option<&Bound<'_, PyDict>>,
    default: impl FnOnce() -> T,
) -> PyResult<T> {
    match (config, kwargs) {
        (Some(c), None) => Ok(c.clone()),
        (c, kw) => {
            let base = c.cloned().unwrap_or_else(default);
            replaced(py, &base, kw)
        }
    }
}

fn any<'py, T: IntoPyObjectExt<'py>>(py: Python<'py>, v: T) -> PyResult<Py<PyAny>> {
    v.into_py_any(py)
}

fn dirty_item(py: Python<'_>, m: DirtyItem) -> PyResult<Py<PyAny>> {
    match m {
        DirtyItem::Sample(x) => any(py, x),
        DirtyItem::Pause(x) => any(py, x),
    }
}

fn dst_item(py: Python<'_>, m: DstMessage) -> PyResult<Py<PyAny>> {
    match m {
        DstMessage::Connected(x) => any(py, x),
        DstMessage::Postcopy(x) => any(py, x),
        DstMessage::Sample(x) => any(py, x),
        DstMessage::Ended(x) => any(py, x),
        DstMessage::Rejected(x) => any(py, x),
    }
}

fn probe_item(py: Python<'_>, m: ProbeMessage) -> PyResult<Py<PyAny>> {
    match m {
        ProbeMessage::Baseline(x) => any(py, x),
        ProbeMessage::Event(x) => any(py, x),
        ProbeMessage::NoReply(x) => any(py, x),
    }
}

fn server_item(py: Python<'_>, m: ServerMessage) -> PyResult<Py<PyAny>> {
    match m {
        ServerMessage::NewClient(x) => any(py, x),
        ServerMessage::Baseline(x) => any(py, x),
        ServerMessage::Event(x) => any(py, x),
    }
}

macro_rules! run_class {
    // A run that listens also has `port` and `address`.
    (
        listening $py_ty:ident, $name:literal, $inner:ty, $cfg:ty, $item:ty, $conv:expr, $res:ty,
        { $($extra:tt)* }
    ) => {
        run_class!($py_ty, $name, $inner, $cfg, $item, $conv, $res, {
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

            $($extra)*
        });
    };
    (
        $py_ty:ident, $name:literal, $inner:ty, $cfg:ty, $item:ty, $conv:expr, $res:ty,
        { $($extra:tt)* }
    ) => {
        #[doc = concat!("`", $name, "`: a background run; see the module docs.")]
        #[pyclass(name = $name, module = "migmon._core", frozen)]
        pub struct $py_ty {
            inner: $inner,
            cfg: $cfg,
            result: std::sync::OnceLock<Py<PyAny>>,
        }

        impl $py_ty {
            fn bg(&self) -> &Background<$item, $res> {
                self.inner.background()
            }

            /// The result as one Python object, the same one every time.
            fn result_of(
                &self,
                py: Python<'_>,
                f: impl FnOnce(&Background<$item, $res>) -> crate::Result<$res> + Send,
            ) -> PyResult<Py<PyAny>> {
                if let Some(r) = self.result.get() {
                    return Ok(r.clone_ref(py));
                }
                let r = py.detach(|| f(self.bg()))?;
                let obj = any(py, r)?;
                Ok(self.result.get_or_init(|| obj).clone_ref(py))
            }
        }

        #[pymethods]
        impl $py_ty {
            #[new]
            #[pyo3(signature = (config=None, **kwargs))]
            fn py_new(
                py: Python<'_>,
                config: Option<Bound<'_, $cfg>>,
                kwargs: Option<&Bound<'_, PyDict>>,
            ) -> PyResult<Self> {
                let cfg = config_of(py, config.as_ref().map(|c| c.get()), kwargs, <$cfg>::default)?;
                let c = cfg.clone();
                // Started on a thread of its own and waited for in slices,
                // so Ctrl-C is seen while it connects (a destination that
                // drops SYNs held it for the whole connect timeout). On an
                // interrupt the start is left to finish, and dropped.
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::Builder::new()
                    .name("mig_mon-start".into())
                    .spawn(move || {
                        let _ = tx.send(<$inner>::start(c));
                    })
                    .map_err(|e| {
                        pyo3::PyErr::from(crate::Error::resource_io("starting a thread", e))
                    })?;
                let rx = std::sync::Mutex::new(rx);
                let inner = loop {
                    match py.detach(|| lock(&rx).recv_timeout(SLICE)) {
                        Ok(r) => break r?,
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => py.check_signals()?,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                            return Err(pyo3::PyErr::from(crate::Error::Internal(
                                "the start thread ended without a result".into(),
                            )))
                        }
                    }
                };
                Ok(Self { inner, cfg, result: std::sync::OnceLock::new() })
            }

            /// The configuration the run started with.
            #[getter]
            fn config(&self) -> $cfg {
                self.cfg.clone()
            }

            /// The next item, waiting at most `timeout_s`; None if none came
            /// (or the run has ended and every item was taken).
            #[pyo3(signature = (timeout_s=0.1))]
            fn next(&self, py: Python<'_>, timeout_s: f64) -> PyResult<Option<Py<PyAny>>> {
                // Waited in slices, so Ctrl-C is seen within one (as in
                // iteration and wait()), not at the end of a long timeout.
                let deadline = std::time::Instant::now() + poll_timeout(timeout_s);
                loop {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if let Some(m) = py.detach(|| self.bg().next(left.min(SLICE))) {
                        return Ok(Some($conv(py, m)?));
                    }
                    if left <= SLICE || self.bg().is_done() {
                        return Ok(None);
                    }
                    py.check_signals()?;
                }
            }

            /// Every item ready now, without waiting.
            fn drain(&self, py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
                let mut out = Vec::new();
                while let Some(m) = self.bg().next(Duration::ZERO) {
                    out.push($conv(py, m)?);
                }
                Ok(out)
            }

            fn __iter__(slf: Py<Self>) -> Py<Self> {
                slf
            }

            /// Items as they come, until the run ends.
            fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
                loop {
                    if let Some(m) = py.detach(|| self.bg().next(SLICE)) {
                        return Ok(Some($conv(py, m)?));
                    }
                    if self.bg().is_done() {
                        return Ok(None);
                    }
                    py.check_signals()?;
                }
            }

            /// True once the run has ended (by itself or stopped).
            #[getter]
            fn done(&self) -> bool {
                self.bg().is_done()
            }

            /// Asks the run to end; returns at once.
            fn request_stop(&self) {
                self.bg().request_stop();
            }

            /// Ends the run and returns its result (the same every time).
            fn stop(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                self.result_of(py, |bg| bg.stop())
            }

            /// Waits up to `timeout_s` (None: for ever) for the run to end by
            /// itself; its result, or None if it is still running.
            #[pyo3(signature = (timeout_s=None))]
            fn wait(&self, py: Python<'_>, timeout_s: Option<f64>) -> PyResult<Option<Py<PyAny>>> {
                let until = timeout_s.map(|t| std::time::Instant::now() + poll_timeout(t));
                while !self.bg().is_done() {
                    if until.is_some_and(|u| std::time::Instant::now() >= u) {
                        return Ok(None);
                    }
                    py.detach(|| std::thread::sleep(Duration::from_millis(10)));
                    py.check_signals()?;
                }
                Ok(Some(self.result_of(py, |bg| bg.wait())?))
            }

            fn __enter__(slf: Py<Self>) -> Py<Self> {
                slf
            }

            /// Stops the run; with an exception in flight, errors of the
            /// stop do not hide it.
            #[pyo3(signature = (*exc))]
            fn __exit__(&self, py: Python<'_>, exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
                let r = py.detach(|| self.bg().stop());
                let in_flight = exc.get_item(0).is_ok_and(|e| !e.is_none());
                if !in_flight {
                    r?;
                }
                Ok(false)
            }

            $($extra)*
        }
    };
}

run_class!(
    PyDirtyWorkload,
    "DirtyWorkload",
    DirtyWorkload,
    DirtyConfig,
    DirtyItem,
    dirty_item,
    crate::mem::DirtySummary,
    {
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

        /// Backing page size in bytes.
        #[getter]
        fn page_size_bytes(&self) -> u64 {
            self.cfg.page_size.bytes()
        }

        /// Waits until every page is prefaulted (True) or the run ended or
        /// `timeout_s` passed (False).
        #[pyo3(signature = (timeout_s=None))]
        fn wait_prefaulted(&self, py: Python<'_>, timeout_s: Option<f64>) -> PyResult<bool> {
            let until = timeout_s.map(|t| std::time::Instant::now() + poll_timeout(t));
            while self.inner.phase() == Phase::Prefaulting {
                if until.is_some_and(|u| std::time::Instant::now() >= u) {
                    return Ok(false);
                }
                py.detach(|| std::thread::sleep(Duration::from_millis(10)));
                py.check_signals()?;
            }
            Ok(self.inner.phase() == Phase::Dirtying)
        }
    }
);

run_class!(
    PyVmSource,
    "VmSource",
    VmSource,
    VmSourceConfig,
    VmSrcSample,
    any,
    VmSrcSummary,
    {}
);

run_class!(
    listening PyVmDestination,
    "VmDestination",
    VmDestination,
    VmDestinationConfig,
    DstMessage,
    dst_item,
    Vec<VmSessionSummary>,
    {

        /// Sessions running now.
        #[getter]
        fn active(&self) -> usize {
            self.inner.active()
        }

        /// Connections served at once: the configuration's
        /// max_connections, or fewer where the descriptor limit (raised to
        /// its hard limit) allows fewer, at 5 per connection.
        #[getter]
        fn max_connections(&self) -> usize {
            self.inner.max_connections()
        }
    }
);

run_class!(
    listening PyEchoServer,
    "EchoServer",
    EchoServer,
    EchoServerConfig,
    NewClient,
    any,
    EchoStats,
    {

        /// The counters so far.
        fn stats(&self) -> EchoStats {
            self.inner.stats()
        }
    }
);

run_class!(
    listening PyOneWayServer,
    "OneWayServer",
    OneWayServer,
    OneWayServerConfig,
    ServerMessage,
    server_item,
    OneWaySummary,
    {

        /// Every client's figures so far (retired ones included).
        fn clients(&self) -> Vec<ClientSummary> {
            self.inner.clients()
        }

        /// Up to `n` clients being measured, the most recently heard first.
        fn recent_clients(&self, n: usize) -> Vec<ClientSummary> {
            self.inner.recent_clients(n)
        }

        /// How many clients are being measured now.
        #[getter]
        fn client_count(&self) -> usize {
            self.inner.client_count()
        }
    }
);

run_class!(
    PyProber,
    "Prober",
    Prober,
    ProbeConfig,
    ProbeMessage,
    probe_item,
    ProbeSummary,
    {
        /// Live figures (sent, received, gaps, last RTT).
        #[getter]
        fn status(&self) -> ProbeStatus {
            self.inner.status()
        }
    }
);

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDirtyWorkload>()?;
    m.add_class::<PyVmSource>()?;
    m.add_class::<PyVmDestination>()?;
    m.add_class::<PyEchoServer>()?;
    m.add_class::<PyOneWayServer>()?;
    m.add_class::<PyProber>()?;
    Ok(())
}
