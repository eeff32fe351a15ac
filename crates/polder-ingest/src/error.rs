//! The one error type of ingestion: what went wrong with a source, its data, a connection's
//! configuration or the load, in words a data engineer can act on (never with a secret in them).

use polder_core::{ErrorKind, HasErrorKind};
use polder_engine::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The path, glob or prefix matched no file.
    #[error("no files match '{0}'")]
    NoFiles(String),
    /// The format cannot be told from the file name and was not given.
    #[error("cannot tell the format of '{0}' from its name; pass --format csv|json|parquet")]
    UnknownFormat(String),
    /// The files of one import have different formats.
    #[error("'{first}' and '{other}' have different formats; import them separately")]
    MixedFormats { first: String, other: String },
    /// A source cannot be reached or read (missing file, unreachable server, wrong password,
    /// HTTP error, a connector that failed).
    #[error("cannot read {source_name}: {message}")]
    Source {
        source_name: String,
        message: String,
    },
    /// The data does not parse in the given format or does not fit the table.
    #[error("{0}")]
    Data(String),
    /// A connection's configuration is wrong (missing or invalid field).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A connection, stream or job that does not exist.
    #[error("{kind} '{name}' does not exist")]
    NotFound { kind: &'static str, name: String },
    /// The source's columns changed in a way the table cannot take; nothing was committed.
    #[error("stream '{stream}': {message}; nothing was committed for this stream")]
    SchemaChange { stream: String, message: String },
    /// More malformed records than the connection allows; nothing was committed.
    #[error(
        "stream '{stream}': {rejects} records were rejected (more than the allowed {allowed}); they are in {table}, nothing else was committed for this stream"
    )]
    TooManyRejects {
        stream: String,
        rejects: u64,
        allowed: u64,
        table: String,
    },
    /// The job was stopped before it finished.
    #[error("{0}")]
    Cancelled(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<polder_catalog::CatalogError> for IngestError {
    fn from(err: polder_catalog::CatalogError) -> Self {
        IngestError::Engine(err.into())
    }
}

impl HasErrorKind for IngestError {
    fn kind(&self) -> ErrorKind {
        match self {
            IngestError::NoFiles(_) | IngestError::NotFound { .. } => ErrorKind::NotFound,
            IngestError::UnknownFormat(_)
            | IngestError::MixedFormats { .. }
            | IngestError::Data(_)
            | IngestError::Config(_)
            | IngestError::SchemaChange { .. }
            | IngestError::TooManyRejects { .. }
            | IngestError::Source { .. } => ErrorKind::InvalidInput,
            IngestError::Cancelled(_) => ErrorKind::Cancelled,
            IngestError::Engine(err) => err.kind(),
        }
    }
}

impl IngestError {
    /// Worth another attempt later: the source may be back (not a configuration or data fault).
    pub fn is_transient(&self) -> bool {
        match self {
            IngestError::Source { .. } => true,
            IngestError::Engine(err) => {
                matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Conflict)
            }
            _ => false,
        }
    }
}

pub(crate) type Result<T, E = IngestError> = std::result::Result<T, E>;
