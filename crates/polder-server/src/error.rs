//! Errors of the listeners, and how an error's kind becomes each interface's convention.

use polder_core::{ErrorKind, HasErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener cannot bind its address (in use, not permitted).
    #[error("cannot listen on {address} for {listener}: {message}")]
    Bind {
        listener: &'static str,
        address: String,
        message: String,
    },
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {message}")]
    Tls { message: String },
    /// A listener stopped with an error while serving.
    #[error("{listener} listener failed: {message}")]
    Serve {
        listener: &'static str,
        message: String,
    },
}

impl HasErrorKind for ServerError {
    fn kind(&self) -> ErrorKind {
        match self {
            ServerError::Tls { .. } => ErrorKind::InvalidInput,
            _ => ErrorKind::Unavailable,
        }
    }
}

/// The HTTP status for an error kind.
pub fn http_status(kind: ErrorKind) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyExists | ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Cancelled => StatusCode::REQUEST_TIMEOUT,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The gRPC status for an error kind (Flight SQL).
pub fn grpc_status(kind: ErrorKind, message: String) -> tonic::Status {
    match kind {
        ErrorKind::InvalidInput => tonic::Status::invalid_argument(message),
        ErrorKind::NotFound => tonic::Status::not_found(message),
        ErrorKind::AlreadyExists => tonic::Status::already_exists(message),
        ErrorKind::Conflict => tonic::Status::aborted(message),
        ErrorKind::PermissionDenied => tonic::Status::permission_denied(message),
        ErrorKind::Unauthenticated => tonic::Status::unauthenticated(message),
        ErrorKind::Unavailable => tonic::Status::unavailable(message),
        ErrorKind::Cancelled => tonic::Status::cancelled(message),
        ErrorKind::Internal => tonic::Status::internal(message),
    }
}
