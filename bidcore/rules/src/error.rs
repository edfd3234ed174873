//! Misuse of the core. A rejected bid is not an error: it is an [`Outcome`](crate::Outcome).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// A value outside its documented range; the message names it.
    InvalidArgument(String),
    UnknownAuction(u32),
    UnknownUser(u32),
    DuplicateAuction(u128),
    /// The auction's status does not allow the operation.
    InvalidTransition {
        auction: u32,
        status: &'static str,
        operation: &'static str,
    },
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::InvalidArgument(message) => f.write_str(message),
            CoreError::UnknownAuction(handle) => {
                write!(f, "no auction is loaded with handle {handle}")
            }
            CoreError::UnknownUser(handle) => write!(f, "no user is loaded with handle {handle}"),
            CoreError::DuplicateAuction(id) => {
                write!(f, "auction {id:032x} is already loaded")
            }
            CoreError::InvalidTransition {
                auction,
                status,
                operation,
            } => {
                write!(f, "cannot {operation} auction {auction}: it is {status}")
            }
        }
    }
}

impl std::error::Error for CoreError {}

pub(crate) fn invalid(message: impl Into<String>) -> CoreError {
    CoreError::InvalidArgument(message.into())
}
