//! Errors of the engine, and the classification of DataFusion's errors into kinds and
//! SQLSTATE codes (SQL's own error vocabulary, used by every SQL interface).

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use polder_catalog::CatalogError;
use polder_core::{ErrorKind, HasErrorKind, NameError};
use polder_lake::LakeError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The SQL text cannot be parsed.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// Planning or execution failed inside DataFusion (unknown column, type error, ...).
    #[error("{}", datafusion_message(.0))]
    DataFusion(#[from] DataFusionError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Name(#[from] NameError),
    /// A statement or clause Polder does not support.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// A statement that is well-formed but asks for something invalid.
    #[error("{0}")]
    InvalidInput(String),
    /// A statement names something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The user's role or grants do not allow the statement.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// A concurrent writer got there first; the statement changed nothing.
    #[error("conflict: {0}")]
    Conflict(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl HasErrorKind for EngineError {
    fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Syntax(_) | EngineError::Unsupported(_) | EngineError::InvalidInput(_) => {
                ErrorKind::InvalidInput
            }
            EngineError::NotFound(_) => ErrorKind::NotFound,
            EngineError::PermissionDenied(_) => ErrorKind::PermissionDenied,
            EngineError::Conflict(_) => ErrorKind::Conflict,
            EngineError::DataFusion(err) => classify(err).0,
            EngineError::Catalog(err) => err.kind(),
            EngineError::Lake(err) => err.kind(),
            EngineError::Name(err) => err.kind(),
        }
    }
}

impl EngineError {
    /// The SQLSTATE code for this error (PostgreSQL's codes, which SQL clients understand).
    pub fn sqlstate(&self) -> &'static str {
        match self {
            EngineError::Syntax(_) => "42601",
            EngineError::Unsupported(_) => "0A000",
            EngineError::DataFusion(err) => classify(err).1,
            EngineError::Catalog(CatalogError::SchemaNotFound(_)) => "3F000",
            EngineError::Catalog(CatalogError::TableNotFound(_)) => "42P01",
            EngineError::Catalog(CatalogError::SchemaExists(_)) => "42P06",
            EngineError::Catalog(CatalogError::TableExists { .. }) => "42P07",
            EngineError::Catalog(CatalogError::SchemaNotEmpty { .. }) => "2BP01",
            EngineError::Catalog(CatalogError::WrongKind { .. }) => "42809",
            EngineError::Name(_) => "42602",
            other => sqlstate_for_kind(other.kind()),
        }
    }

    /// Wraps this error for returning from inside DataFusion (a table provider, a plan).
    pub fn into_datafusion(self) -> DataFusionError {
        match self {
            EngineError::DataFusion(err) => err,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

impl From<EngineError> for DataFusionError {
    fn from(err: EngineError) -> Self {
        err.into_datafusion()
    }
}

fn sqlstate_for_kind(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidInput => "22023",
        ErrorKind::NotFound => "42P01",
        ErrorKind::AlreadyExists => "42P07",
        ErrorKind::PermissionDenied => "42501",
        ErrorKind::Unauthenticated => "28P01",
        ErrorKind::Conflict => "40001",
        ErrorKind::Unavailable => "58030",
        ErrorKind::Cancelled => "57014",
        ErrorKind::Internal => "XX000",
    }
}

/// Finds the kind and SQLSTATE of a DataFusion error, looking through wrappers to errors that
/// Polder's own crates raised inside DataFusion.
pub fn classify(err: &DataFusionError) -> (ErrorKind, &'static str) {
    match err {
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            classify(inner)
        }
        DataFusionError::Shared(inner) => classify(inner),
        DataFusionError::Collection(errors) => errors
            .first()
            .map(classify)
            .unwrap_or((ErrorKind::Internal, "XX000")),
        DataFusionError::External(source) => classify_external(source.as_ref()),
        DataFusionError::ArrowError(arrow, _) => classify_arrow(arrow),
        DataFusionError::SQL(..) => (ErrorKind::InvalidInput, "42601"),
        DataFusionError::NotImplemented(_) => (ErrorKind::InvalidInput, "0A000"),
        DataFusionError::SchemaError(..) => {
            let message = err.to_string();
            if message.contains("No field named") || message.contains("not found") {
                (ErrorKind::InvalidInput, "42703")
            } else if message.contains("Ambiguous") || message.contains("ambiguous") {
                (ErrorKind::InvalidInput, "42702")
            } else {
                (ErrorKind::InvalidInput, "42P10")
            }
        }
        DataFusionError::Plan(message) => classify_plan_message(message),
        DataFusionError::Configuration(_) => (ErrorKind::InvalidInput, "22023"),
        DataFusionError::Execution(message) => classify_execution_message(message),
        DataFusionError::ResourcesExhausted(_) => (ErrorKind::Unavailable, "53200"),
        DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => {
            (ErrorKind::Unavailable, "58030")
        }
        DataFusionError::ParquetError(_) => (ErrorKind::Internal, "XX001"),
        _ => (ErrorKind::Internal, "XX000"),
    }
}

fn classify_external(
    source: &(dyn std::error::Error + Send + Sync + 'static),
) -> (ErrorKind, &'static str) {
    if let Some(engine) = source.downcast_ref::<EngineError>() {
        return (engine.kind(), engine.sqlstate());
    }
    if let Some(lake) = source.downcast_ref::<LakeError>() {
        let engine_kind = lake.kind();
        return (engine_kind, sqlstate_for_kind(engine_kind));
    }
    if let Some(catalog) = source.downcast_ref::<CatalogError>() {
        let kind = catalog.kind();
        return (kind, sqlstate_for_kind(kind));
    }
    if let Some(inner) = source.downcast_ref::<DataFusionError>() {
        return classify(inner);
    }
    if let Some(delta) = source.downcast_ref::<polder_lake::deltalake::DeltaTableError>() {
        let message = delta.to_string();
        if message.contains("conflict") || message.contains("already exists") {
            return (ErrorKind::Conflict, "40001");
        }
        return (ErrorKind::Internal, "XX000");
    }
    (ErrorKind::Internal, "XX000")
}

fn classify_arrow(err: &ArrowError) -> (ErrorKind, &'static str) {
    match err {
        ArrowError::DivideByZero => (ErrorKind::InvalidInput, "22012"),
        ArrowError::CastError(_) | ArrowError::ParseError(_) => (ErrorKind::InvalidInput, "22P02"),
        ArrowError::ArithmeticOverflow(_) => (ErrorKind::InvalidInput, "22003"),
        ArrowError::InvalidArgumentError(_) | ArrowError::ComputeError(_) => {
            (ErrorKind::InvalidInput, "22000")
        }
        ArrowError::ExternalError(source) => classify_external(source.as_ref()),
        _ => (ErrorKind::Internal, "XX000"),
    }
}

fn classify_plan_message(message: &str) -> (ErrorKind, &'static str) {
    let lower = message.to_lowercase();
    if lower.contains("table") && lower.contains("not found") {
        (ErrorKind::NotFound, "42P01")
    } else if lower.contains("invalid function")
        || lower.contains("function") && lower.contains("not found")
    {
        (ErrorKind::InvalidInput, "42883")
    } else if lower.contains("cannot") && (lower.contains("coerce") || lower.contains("cast"))
        || lower.contains("type")
    {
        (ErrorKind::InvalidInput, "42804")
    } else if lower.contains("already exists") {
        (ErrorKind::AlreadyExists, "42P07")
    } else {
        (ErrorKind::InvalidInput, "42000")
    }
}

fn classify_execution_message(message: &str) -> (ErrorKind, &'static str) {
    let lower = message.to_lowercase();
    if lower.contains("divide by zero") || lower.contains("division by zero") {
        (ErrorKind::InvalidInput, "22012")
    } else if lower.contains("cast") || lower.contains("parse") {
        (ErrorKind::InvalidInput, "22P02")
    } else if lower.contains("null") && lower.contains("non-nullable") {
        (ErrorKind::InvalidInput, "23502")
    } else {
        (ErrorKind::InvalidInput, "22000")
    }
}

/// A readable message: DataFusion's prefixes ("Error during planning: ") and backtraces removed,
/// `Context` descriptions kept.
pub fn datafusion_message(err: &DataFusionError) -> String {
    match err {
        DataFusionError::Context(description, inner) => {
            format!("{description}: {}", datafusion_message(inner))
        }
        DataFusionError::Diagnostic(_, inner) => datafusion_message(inner),
        DataFusionError::Shared(inner) => datafusion_message(inner),
        DataFusionError::External(source) => {
            if let Some(inner) = source.downcast_ref::<DataFusionError>() {
                datafusion_message(inner)
            } else {
                source.to_string()
            }
        }
        DataFusionError::ArrowError(arrow, _) => match arrow.as_ref() {
            ArrowError::ExternalError(source) => match source.downcast_ref::<DataFusionError>() {
                Some(inner) => datafusion_message(inner),
                None => source.to_string(),
            },
            other => other.to_string(),
        },
        DataFusionError::SQL(parser_error, _) => format!("syntax error: {parser_error}"),
        DataFusionError::NotImplemented(message) => format!("not supported: {message}"),
        DataFusionError::Internal(message) => format!("internal error: {message}"),
        DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::Execution(_)
        | DataFusionError::Configuration(_)
        | DataFusionError::ResourcesExhausted(_) => err
            .message()
            .split(DataFusionError::BACK_TRACE_SEP)
            .next()
            .unwrap_or_default()
            .to_string(),
        other => other.strip_backtrace(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_errors_get_sqlstates() {
        let err = EngineError::DataFusion(DataFusionError::Plan(
            "table 'polder.public.nope' not found".into(),
        ));
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(err.sqlstate(), "42P01");
        assert_eq!(err.to_string(), "table 'polder.public.nope' not found");
    }

    #[test]
    fn wrapped_engine_errors_keep_their_kind() {
        let inner = EngineError::InvalidInput("cannot write to a past version".into());
        let wrapped = EngineError::DataFusion(
            inner
                .into_datafusion()
                .context("DELETE operation on table 't'"),
        );
        assert_eq!(wrapped.kind(), ErrorKind::InvalidInput);
        assert!(
            wrapped
                .to_string()
                .contains("cannot write to a past version")
        );
        assert!(wrapped.to_string().starts_with("DELETE operation"));
    }

    #[test]
    fn division_by_zero_is_22012() {
        let err = EngineError::DataFusion(DataFusionError::ArrowError(
            Box::new(ArrowError::DivideByZero),
            None,
        ));
        assert_eq!(err.sqlstate(), "22012");
    }
}
