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
