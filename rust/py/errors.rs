//! The exception hierarchy (all under `MigmonError`) and the one conversion
//! from the core's error into it.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use crate::error::Error;

create_exception!(
    migmon,
    MigmonError,
    PyException,
    "Base class of every mig_mon error."
);
create_exception!(
    migmon,
    ConfigError,
    MigmonError,
    "A value given to mig_mon is out of range or malformed."
);
create_exception!(
    migmon,
    ResourceError,
    MigmonError,
    "The machine cannot give what was asked (memory, huge pages, a port)."
);
create_exception!(
    migmon,
    CorruptionError,
    MigmonError,
    "A page did not hold the value last written to it."
);
create_exception!(
    migmon,
    ProtocolError,
    MigmonError,
    "A peer broke the protocol or went away."
);
create_exception!(
    migmon,
    NetworkError,
    MigmonError,
    "An operating-system call failed (socket, file, mapping)."
);

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        let msg = e.to_string();
        match e {
            Error::InvalidArgument(_) => ConfigError::new_err(msg),
            Error::Resource(_) => ResourceError::new_err(msg),
            Error::Protocol(_) => ProtocolError::new_err(msg),
            Error::Io { .. } => NetworkError::new_err(msg),
            Error::Corruption {
                page,
                offset,
                expected,
                found,
            } => Python::attach(|py| {
                let err = CorruptionError::new_err(msg);
                let v = err.value(py);
                // Attributes for automation; setting them on a fresh
                // exception instance cannot fail in practice.
                let _ = v.setattr("page", page);
                let _ = v.setattr("offset", offset);
                let _ = v.setattr("expected", expected);
                let _ = v.setattr("found", found);
                err
            }),
        }
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("MigmonError", py.get_type::<MigmonError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("ResourceError", py.get_type::<ResourceError>())?;
    m.add("CorruptionError", py.get_type::<CorruptionError>())?;
    m.add("ProtocolError", py.get_type::<ProtocolError>())?;
    m.add("NetworkError", py.get_type::<NetworkError>())?;
    Ok(())
}
