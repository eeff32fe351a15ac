//! Errors of the transformation crate: one enum, each variant says when it happens.

use std::path::PathBuf;

use polder_core::{ErrorKind, HasErrorKind};

/// Everything that can go wrong while loading, compiling or running a dbt project.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// `dbt_project.yml` is missing or malformed, or a project file cannot be used.
    #[error("project error in {}: {message}", path.display())]
    Project { path: PathBuf, message: String },

    /// A YAML file does not parse; `line` is 1-based when the parser reports one.
    #[error("yaml error in {}{}: {message}", path.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Yaml {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },

    /// A Jinja template failed to parse or render; names the file, the line and its text.
    #[error("jinja error in {}{}: {message}{}", path.display(), line.map(|l| format!(" line {l}")).unwrap_or_default(), if text.is_empty() { String::new() } else { format!("\n  > {text}") })]
    Jinja {
        path: PathBuf,
        line: Option<usize>,
        message: String,
        text: String,
    },

    /// The dependency graph is unusable: a cycle, a ref to a missing or disabled model,
    /// a duplicate model name or an unknown source.
    #[error("graph error: {0}")]
    Graph(String),

    /// A `--select`/`--exclude` expression cannot be understood.
    #[error("selection error: {0}")]
    Selection(String),

    /// The engine rejected the SQL of a node (used by the runner).
    #[error("sql error in {node}: {message}")]
    Sql { node: String, message: String },

    /// Running the project failed for a reason that is not one node's SQL (used by the runner).
    #[error("execution error: {0}")]
    Execution(String),

    /// A seed's CSV file cannot be read or loaded.
    #[error("seed error in {}: {message}", path.display())]
    Seed { path: PathBuf, message: String },

    /// No project of that name has been run on this catalog.
    #[error(
        "no transformation project '{0}' (a project is known here once `polder build` has run it)"
    )]
    UnknownProject(String),

    /// A run of the project is already going on in this process.
    #[error("project '{0}' is already running; wait for that run to finish")]
    Busy(String),

    /// Reading or writing a file failed.
    #[error("io error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, TransformError>;

impl TransformError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TransformError::Io {
            path: path.into(),
            source,
        }
    }

    /// Which status kind this is, for every listener's own convention.
    pub fn error_kind(&self) -> ErrorKind {
        match self {
            TransformError::Project { .. }
            | TransformError::Yaml { .. }
            | TransformError::Jinja { .. }
            | TransformError::Graph(_)
            | TransformError::Selection(_)
            | TransformError::Sql { .. }
            | TransformError::Seed { .. } => ErrorKind::InvalidInput,
            TransformError::Busy(_) => ErrorKind::Conflict,
            TransformError::UnknownProject(_) => ErrorKind::NotFound,
            TransformError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            TransformError::Execution(_) | TransformError::Io { .. } => ErrorKind::Internal,
        }
    }
}

impl HasErrorKind for TransformError {
    fn kind(&self) -> ErrorKind {
        self.error_kind()
    }
}
