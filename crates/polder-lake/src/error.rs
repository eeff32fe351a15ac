//! Errors of the lake.

use deltalake::DeltaTableError;
use deltalake::kernel::transaction::TransactionError;
use polder_core::{ErrorKind, HasErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// The lake URL (or a table location) cannot be parsed or is of an unsupported scheme.
    #[error("invalid lake location '{0}': expected file:///path or s3://bucket/prefix")]
    InvalidLocation(String),
    /// No Delta table exists at a location the catalog points to.
    #[error("no Delta table at {0}")]
    TableNotFound(String),
    /// A time-travel target that the table's history does not hold.
    #[error("{0}")]
    VersionNotFound(String),
    /// Object storage did not answer (unreachable endpoint, refused connection, timeout).
    #[error("object storage unavailable at {location}: {message}")]
    Unavailable { location: String, message: String },
    /// A concurrent writer committed first and the change could not be retried.
    #[error("concurrent change to {location}: {message}")]
    Conflict { location: String, message: String },
    /// The written data does not fit the table (schema mismatch, invalid values).
    #[error("{0}")]
    InvalidData(String),
    /// Any other Delta or storage failure.
    #[error("delta table {location}: {message}")]
    Delta { location: String, message: String },
}

impl HasErrorKind for LakeError {
    fn kind(&self) -> ErrorKind {
        match self {
            LakeError::InvalidLocation(_) | LakeError::InvalidData(_) => ErrorKind::InvalidInput,
            LakeError::TableNotFound(_) | LakeError::VersionNotFound(_) => ErrorKind::NotFound,
            LakeError::Unavailable { .. } => ErrorKind::Unavailable,
            LakeError::Conflict { .. } => ErrorKind::Conflict,
            LakeError::Delta { .. } => ErrorKind::Internal,
        }
    }
}

impl LakeError {
    /// Classifies a `deltalake` error raised while working on the table at `location`.
    pub fn from_delta(location: &str, err: DeltaTableError) -> LakeError {
        let location = location.to_string();
        match err {
            DeltaTableError::NotATable(_) | DeltaTableError::InvalidTableLocation(_) => {
                LakeError::TableNotFound(location)
            }
            // A local table whose directory is gone answers "not found" from the store, or
            // delta-kernel's "invalid table location" (its error type is not re-exported by
            // deltalake, hence the text).
            DeltaTableError::ObjectStore {
                source: object_store::Error::NotFound { .. },
            } => LakeError::TableNotFound(location),
            DeltaTableError::KernelError(ref kernel)
                if kernel.to_string().starts_with("Invalid table location") =>
            {
                LakeError::TableNotFound(location)
            }
            DeltaTableError::InvalidVersion(version) => LakeError::VersionNotFound(format!(
                "version {version} of {location} does not exist"
            )),
            DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::VersionMismatch(..)
            | DeltaTableError::Transaction {
                source:
                    TransactionError::VersionAlreadyExists(_)
                    | TransactionError::CommitConflict(_)
                    | TransactionError::MaxCommitAttempts(_),
            } => LakeError::Conflict {
                message: err.to_string(),
                location,
            },
            DeltaTableError::SchemaMismatch { .. }
            | DeltaTableError::InvalidData { .. }
            | DeltaTableError::Arrow { .. } => LakeError::InvalidData(err.to_string()),
            DeltaTableError::ObjectStore { ref source } if is_unavailable(source) => {
                LakeError::Unavailable {
                    message: err.to_string(),
                    location,
                }
            }
            other => LakeError::Delta {
                message: other.to_string(),
                location,
            },
        }
    }

    pub fn from_object_store(location: &str, err: object_store::Error) -> LakeError {
        if is_unavailable(&err) {
            return LakeError::Unavailable {
                location: location.to_string(),
                message: err.to_string(),
            };
        }
        LakeError::Delta {
            location: location.to_string(),
            message: err.to_string(),
        }
    }
}

/// Whether an object-store error means the store could not be reached, as opposed to an
/// answer such as "not found".
fn is_unavailable(err: &object_store::Error) -> bool {
    match err {
        object_store::Error::NotFound { .. }
        | object_store::Error::AlreadyExists { .. }
        | object_store::Error::Precondition { .. }
        | object_store::Error::NotModified { .. } => false,
        object_store::Error::Generic { source, .. } => {
            let text = source.to_string().to_lowercase();
            text.contains("connect")
                || text.contains("timed out")
                || text.contains("timeout")
                || text.contains("dns")
                || text.contains("error sending request")
                || text.contains("retry")
        }
        _ => false,
    }
}
