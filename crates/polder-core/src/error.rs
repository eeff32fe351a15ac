//! The one classification of errors that every listener turns into its own convention.
//!
//! Each crate keeps its own `thiserror` enum; each enum says which [`ErrorKind`] a variant is,
//! and the listeners map kinds to SQLSTATE codes, HTTP statuses and gRPC codes in one place each.

use std::fmt;

/// What kind of failure an error is, independent of the interface that reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request itself is wrong: bad SQL, a type error, an invalid name or option.
    InvalidInput,
    /// Something the request names does not exist (table, schema, view, file).
    NotFound,
    /// Something the request wants to create exists already.
    AlreadyExists,
    /// The caller may not do this.
    PermissionDenied,
    /// No valid credentials were given (wrong password, expired or revoked token).
    Unauthenticated,
    /// A concurrent change got in the way; retrying may succeed.
    Conflict,
    /// A dependency (catalog store, object storage) cannot be reached right now.
    Unavailable,
    /// The request was cancelled or the client went away.
    Cancelled,
    /// A bug or an unexpected state inside Polder.
    Internal,
}

impl ErrorKind {
    /// A stable, lowercase code for JSON bodies and logs.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Implemented by every crate's error enum.
pub trait HasErrorKind {
    fn kind(&self) -> ErrorKind;
}
