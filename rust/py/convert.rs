//! Python values for the core's named enums: each is its name as text
//! (`"sequential"`, `"4k"`, `"main"`, `"duration"`), as in the JSON.

use std::convert::Infallible;

use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::mem::{PageSize, Pattern};
use crate::vm::{ReturnPath, VmSrcEnd};

macro_rules! as_name {
    ($($t:ty),*) => {$(
        impl<'py> IntoPyObject<'py> for &$t {
            type Target = PyString;
            type Output = Bound<'py, PyString>;
            type Error = Infallible;
            fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Infallible> {
                Ok(PyString::new(py, self.name()))
            }
        }
        impl<'py> IntoPyObject<'py> for $t {
            type Target = PyString;
            type Output = Bound<'py, PyString>;
            type Error = Infallible;
            fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Infallible> {
                Ok(PyString::new(py, self.name()))
            }
        }
    )*};
}

as_name!(Pattern, PageSize, ReturnPath, VmSrcEnd);
