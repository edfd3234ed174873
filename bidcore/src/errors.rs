//! The exception hierarchy, and how each core error maps onto it.

use bidcore_rules::CoreError as RuleError;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    bidcore,
    CoreError,
    PyException,
    "Misuse of the core, never a rejected bid."
);
create_exception!(
    bidcore,
    InvalidArgument,
    CoreError,
    "A value out of its documented range."
);
create_exception!(
    bidcore,
    UnknownAuction,
    CoreError,
    "No auction with that handle is loaded."
);
create_exception!(
    bidcore,
    UnknownUser,
    CoreError,
    "No user with that handle is loaded."
);
create_exception!(
    bidcore,
    DuplicateAuction,
    CoreError,
    "An auction with that id is already loaded."
);
create_exception!(
    bidcore,
    InvalidTransition,
    CoreError,
    "The auction's status does not allow that."
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CoreError", py.get_type::<CoreError>())?;
    m.add("InvalidArgument", py.get_type::<InvalidArgument>())?;
    m.add("UnknownAuction", py.get_type::<UnknownAuction>())?;
    m.add("UnknownUser", py.get_type::<UnknownUser>())?;
    m.add("DuplicateAuction", py.get_type::<DuplicateAuction>())?;
    m.add("InvalidTransition", py.get_type::<InvalidTransition>())?;
    Ok(())
}

/// Carries a core error out of a method (the orphan rule keeps us from
/// converting the other crate's type straight into `PyErr`).
pub struct PyCoreError(RuleError);

impl From<RuleError> for PyCoreError {
    fn from(error: RuleError) -> Self {
        PyCoreError(error)
    }
}

impl From<PyCoreError> for PyErr {
    fn from(PyCoreError(error): PyCoreError) -> PyErr {
        let message = error.to_string();
        match error {
            RuleError::InvalidArgument(_) => InvalidArgument::new_err(message),
            RuleError::UnknownAuction(_) => UnknownAuction::new_err(message),
            RuleError::UnknownUser(_) => UnknownUser::new_err(message),
            RuleError::DuplicateAuction(_) => DuplicateAuction::new_err(message),
            RuleError::InvalidTransition { .. } => InvalidTransition::new_err(message),
        }
    }
}
