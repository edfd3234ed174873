//! Reading Python arguments that may be out of range without being misuse.

use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::types::PyInt;

/// A handle that names nothing: out-of-range ints (negative, huge) become
/// this, so they are "unknown" rather than an exception.
pub const NO_HANDLE: u32 = u32::MAX;

/// An int handle; ints that cannot be a handle name nothing. Non-ints are a
/// `TypeError`.
pub fn handle(value: &Bound<'_, PyAny>) -> PyResult<u32> {
    match value.extract::<u32>() {
        Ok(handle) => Ok(handle),
        Err(_) if value.is_instance_of::<PyInt>() => Ok(NO_HANDLE),
        Err(error) => Err(error),
    }
}

/// An int amount; ints beyond 64 bits become an amount the rules refuse
/// (`invalid_amount`). Non-ints are a `TypeError`.
pub fn amount(value: &Bound<'_, PyAny>) -> PyResult<i64> {
    match value.extract::<i64>() {
        Ok(amount) => Ok(amount),
        Err(error) if error.is_instance_of::<PyOverflowError>(value.py()) => Ok(i64::MAX),
        Err(error) => Err(error),
    }
}

/// An integer argument whose out-of-range values are `InvalidArgument` (a
/// value outside its documented range), not Python's `OverflowError`.
pub struct Ranged<T>(pub T);

impl<'a, 'py, T> FromPyObject<'a, 'py> for Ranged<T>
where
    T: for<'b> FromPyObject<'b, 'py>,
{
    type Error = PyErr;

    fn extract(obj: pyo3::Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match obj.extract::<T>() {
            Ok(value) => Ok(Ranged(value)),
            Err(error) => {
                let error: PyErr = error.into();
                if error.is_instance_of::<PyOverflowError>(obj.py()) {
                    Err(crate::errors::InvalidArgument::new_err(format!(
                        "{} is outside the range this value may take",
                        obj.repr()
                            .map_or_else(|_| "the value".to_string(), |r| r.to_string())
                    )))
                } else {
                    Err(error)
                }
            }
        }
    }
}

/// 32 bytes (a chain head), or `InvalidArgument`.
pub fn log_hash(name: &str, value: Option<&[u8]>) -> PyResult<Option<[u8; 32]>> {
    value
        .map(|bytes| {
            <[u8; 32]>::try_from(bytes).map_err(|_| {
                crate::errors::InvalidArgument::new_err(format!(
                    "{name} must be 32 bytes (got {})",
                    bytes.len()
                ))
            })
        })
        .transpose()
}
