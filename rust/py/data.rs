//! What every data class has in Python: `to_dict()` whose keys are the
//! JSON's (serde is the one description of the fields), a `__repr__` built
//! from it, and for configurations a constructor from keyword arguments
//! (read strictly: a bool is not a number, an unknown name is an error)
//! that validates, and `replace(**changes)`.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::downtime::*;
use crate::mem::{DirtyConfig, DirtyPause, DirtySample, DirtySummary};
use crate::stats::Percentiles;
use crate::vm::*;

fn to_dict<'py>(py: Python<'py>, v: &impl Serialize) -> PyResult<Bound<'py, PyAny>> {
    pythonize::pythonize(py, v).map_err(PyErr::from)
}

fn repr(py: Python<'_>, name: &str, v: &impl Serialize) -> PyResult<String> {
    let d = to_dict(py, v)?;
    let d = d.cast::<PyDict>()?;
    let mut parts = Vec::new();
    for (k, val) in d.iter() {
        let k = k.cast::<PyString>()?.to_str()?.to_owned();
        if k != "type" {
            parts.push(format!("{k}={}", val.repr()?));
        }
    }
    Ok(format!("{name}({})", parts.join(", ")))
}

/// A configuration from keyword arguments; errors name the argument.
fn from_kwargs<T: DeserializeOwned>(py: Python<'_>, kw: Option<&Bound<'_, PyDict>>) -> PyResult<T> {
    let empty = PyDict::new(py);
    let d = kw.unwrap_or(&empty);
    let mut de = pythonize::Depythonizer::from_object(d.as_any());
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        PyErr::from(if path == "." || path.is_empty() {
            crate::Error::config(inner)
        } else {
            crate::Error::field(path, inner)
        })
    })
}

/// `base`'s fields with `changes` on top, read as a new configuration.
pub(super) fn replaced<T: Serialize + DeserializeOwned>(
    py: Python<'_>,
    base: &T,
    changes: Option<&Bound<'_, PyDict>>,
) -> PyResult<T> {
    let d = to_dict(py, base)?;
    let d = d.cast::<PyDict>()?;
    if let Some(c) = changes {
        d.update(c.as_mapping())?;
    }
    from_kwargs(py, Some(d))
}

/// Gives each data class `to_dict` and `__repr__`, each configuration its
/// constructor and `replace` too, and registers them all: one list.
macro_rules! classes {
    (configs: [$($c:ident),* $(,)?], data: [$($d:ident),* $(,)?]) => {
        $(
            #[pymethods]
            impl $c {
                #[new]
                #[pyo3(signature = (**kwargs))]
                fn py_new(py: Python<'_>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
                    let c: Self = from_kwargs(py, kwargs)?;
                    c.validate()?;
                    Ok(c)
                }

                /// A copy with the given fields changed (validated again).
                #[pyo3(signature = (**changes))]
                fn replace(
                    &self,
                    py: Python<'_>,
                    changes: Option<&Bound<'_, PyDict>>,
                ) -> PyResult<Self> {
                    let c: Self = replaced(py, self, changes)?;
                    c.validate()?;
                    Ok(c)
                }

                /// Every field, under the same keys as the JSON config line.
                fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                    to_dict(py, self)
                }

                fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
                    repr(py, stringify!($c), self)
                }

                /// How the command line spells each field (the CLI's options
                /// are built from it): field, names, metavar, takes, help,
                /// shown_default, choices.
                /// Equal when every field is.
                fn __eq__(&self, other: &Self) -> bool {
                    self == other
                }

                /// Hashed as its fields (frozen: it never changes).
                fn __hash__(&self, py: Python<'_>) -> PyResult<u64> {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    repr(py, stringify!($c), self)?.hash(&mut h);
                    Ok(h.finish())
                }

                /// Copied and pickled as its fields (a new configuration
                /// built from them, checked again).
                fn __reduce__<'py>(
                    &self,
                    py: Python<'py>,
                ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
                    let partial = py.import("functools")?.getattr("partial")?;
                    let fields = to_dict(py, self)?;
                    let rebuild = partial.call((py.get_type::<$c>(),), Some(fields.cast::<PyDict>()?))?;
                    Ok((rebuild, PyTuple::empty(py)))
                }

                #[classattr]
                #[pyo3(name = "DEFAULTS")]
                fn defaults(py: Python<'_>) -> PyResult<Py<PyAny>> {
                    Ok(to_dict(py, &<$c>::default())?.unbind())
                }

                #[classattr]
                #[pyo3(name = "FLAGS")]
                fn flags(py: Python<'_>) -> PyResult<Py<PyAny>> {
                    Ok(to_dict(py, &<$c as crate::flags::Flags>::FLAGS)?.unbind())
                }
            }
        )*
        $(
            #[pymethods]
            impl $d {
                /// Every field, under the same keys as the JSON output.
                #[allow(clippy::wrong_self_convention)]
                fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                    to_dict(py, self)
                }

                fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
                    repr(py, stringify!($d), self)
                }
            }
        )*

        pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
            $( m.add_class::<$c>()?; )*
            $( m.add_class::<$d>()?; )*
            Ok(())
        }
    };
}

classes!(
    configs: [
        DirtyConfig,
        VmSourceConfig,
        VmDestinationConfig,
        EchoServerConfig,
        OneWayServerConfig,
        ProbeConfig,
    ],
    data: [
        Percentiles,
        DirtySample,
        DirtySummary,
        DirtyPause,
        VmSrcSample,
        VmSrcSummary,
        VmConnected,
        VmPostcopy,
        VmDstSample,
        VmSessionSummary,
        VmRejected,
        NewClient,
        EchoStats,
        Baseline,
        DowntimeEvent,
        NoReply,
        ProbeStatus,
        ProbeSummary,
        ClientSummary,
        OneWaySummary,
    ]
);
