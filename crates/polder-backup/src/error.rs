//! The one error type of backups.

use polder_catalog::CatalogError;
use polder_core::{ErrorKind, HasErrorKind};
use polder_lake::LakeError;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A repository URL that is neither `file://` nor `s3://bucket/prefix`.
    #[error("invalid backup location '{0}': expected file:///path or s3://bucket/prefix")]
    InvalidUrl(String),
    /// Bad input other than a URL: a retention rule, a point in time, a backup id.
    #[error("{0}")]
    InvalidInput(String),
    /// The repository (or the lake) could not be read or written.
    #[error("storage error at {location}: {message}")]
    Storage { location: String, message: String },
    /// The repository holds no (matching) backup.
    #[error("{0}")]
    NotFound(String),
    /// A manifest or catalog export that cannot be parsed.
    #[error("{0}")]
    Corrupt(String),
    /// A file whose size or SHA-256 differs from what its manifest recorded.
    #[error("checksum mismatch for {path}: {message}")]
    Checksum { path: String, message: String },
    /// A table the catalog lists whose Delta table is gone (dropped while the backup ran).
    #[error("{0}")]
    TableMissing(String),
    /// A restore target (catalog or lake) that already holds data.
    #[error("{0}")]
    NotEmpty(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Lake(#[from] LakeError),
}

impl BackupError {
    pub(crate) fn storage(location: impl std::fmt::Display, err: object_store::Error) -> Self {
        BackupError::Storage {
            location: location.to_string(),
            message: describe_store_error(&err),
        }
    }
}

/// A one-line cause. object_store's messages carry paths and HTTP statuses, never
/// credentials; its nested sources are flattened so the CLI's line says what happened, and an
/// S3 XML error body becomes its code and message.
fn describe_store_error(err: &object_store::Error) -> String {
    let message = full_store_error(err);
    let (head, xml) = match message.find("<?xml") {
        Some(start) => (&message[..start], Some(&message[start..])),
        None => (message.as_str(), None),
    };
    let mut line = head.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(xml) = xml {
        let code = xml_element(xml, "Code");
        let text = xml_element(xml, "Message");
        line = format!(
            "{} {}",
            line.trim_end_matches(':'),
            [code, text]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ")
        );
    }
    line
}

fn xml_element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(xml[start..end].trim())
}

fn full_store_error(err: &object_store::Error) -> String {
    match err {
        object_store::Error::NotFound { path, .. } => format!("not found: {path}"),
        other => {
            let mut message = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                let text = cause.to_string();
                if !message.contains(&text) {
                    message.push_str(": ");
                    message.push_str(&text);
                }
                source = cause.source();
            }
            message
        }
    }
}

impl HasErrorKind for BackupError {
    fn kind(&self) -> ErrorKind {
        match self {
            BackupError::InvalidUrl(_) | BackupError::InvalidInput(_) => ErrorKind::InvalidInput,
            BackupError::Storage { .. } => ErrorKind::Unavailable,
            BackupError::NotFound(_) | BackupError::TableMissing(_) => ErrorKind::NotFound,
            BackupError::Corrupt(_) | BackupError::Checksum { .. } => ErrorKind::Internal,
            BackupError::NotEmpty(_) => ErrorKind::Conflict,
            BackupError::Catalog(err) => err.kind(),
            BackupError::Lake(err) => err.kind(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_are_one_line() {
        let source: Box<dyn std::error::Error + Send + Sync> = "Error performing GET http://127.0.0.1:1/b?list-type=2 - Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?>\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><HostId>x</HostId></Error>".into();
        let err = object_store::Error::Generic {
            store: "S3",
            source,
        };
        let line = describe_store_error(&err);
        assert!(!line.contains('\n'), "{line}");
        assert!(!line.contains("HostId"), "{line}");
        assert!(
            line.ends_with("404 Not Found NoSuchBucket: The specified bucket does not exist"),
            "{line}"
        );
    }
}
