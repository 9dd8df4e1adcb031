//! The one conversion from the core's error into Python's: each category
//! to its class in `migmon.errors` (written in Python, where a class can
//! also be a ValueError or an OSError), OS error numbers kept as `errno`.

use pyo3::prelude::*;

use crate::error::Error;

pyo3::import_exception!(migmon.errors, ConfigError);
pyo3::import_exception!(migmon.errors, ResourceError);
pyo3::import_exception!(migmon.errors, NetworkError);
pyo3::import_exception!(migmon.errors, ProtocolError);
pyo3::import_exception!(migmon.errors, CorruptionError);
pyo3::import_exception!(migmon.errors, InternalError);

fn with_attrs(err: PyErr, attrs: &[(&str, Option<u64>)]) -> PyErr {
    Python::attach(|py| {
        let v = err.value(py);
        for (k, val) in attrs {
            // Setting an attribute on a fresh exception cannot fail in practice.
            let _ = v.setattr(*k, *val);
        }
    });
    err
}

fn with_text(err: PyErr, attrs: &[(&str, Option<String>)]) -> PyErr {
    Python::attach(|py| {
        let v = err.value(py);
        for (k, val) in attrs {
            let _ = v.setattr(*k, val.as_deref());
        }
    });
    err
}

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        let msg = e.to_string();
        match e {
            Error::Config { field, msg: reason } => with_text(
                ConfigError::new_err(msg),
                &[("field", field), ("reason", Some(reason))],
            ),
            Error::Resource {
                errno,
                skip,
                msg: reason,
            } => with_text(
                with_attrs(
                    ResourceError::new_err(msg),
                    &[("errno", errno.map(|n| n as u64))],
                ),
                &[("skipped_by", skip), ("reason", Some(reason))],
            ),
            Error::Network { errno, .. } => with_attrs(
                NetworkError::new_err(msg),
                &[("errno", errno.map(|n| n as u64))],
            ),
            Error::Protocol(_) => ProtocolError::new_err(msg),
            Error::Internal(_) => InternalError::new_err(msg),
            Error::Corruption {
                page,
                offset,
                expected,
                found,
            } => with_attrs(
                CorruptionError::new_err(msg),
                &[
                    ("page", Some(page)),
                    ("offset", Some(offset)),
                    ("expected", Some(u64::from(expected))),
                    ("found", Some(u64::from(found))),
                ],
            ),
        }
    }
}
