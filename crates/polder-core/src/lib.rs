//! Shared pieces every Polder crate uses: configuration, error kinds and object names.

pub mod config;
pub mod error;
pub mod names;
pub mod runner;
pub mod schedule;
pub mod secret;
pub mod security;

pub use config::{
    AuthConfig, Config, ConfigError, ConfigLayer, LogFormat, S3Config, SecretKeySource,
    SettingSource, TlsConfig,
};
pub use error::{ErrorKind, HasErrorKind};
pub use names::{NameError, TableName, validate_identifier};
pub use secret::{Secret, SecretError, SecretKey, mask_url_password};
pub use security::{Principal, Privilege, Role};

/// The SQL catalog name under which every schema lives.
pub const CATALOG_NAME: &str = "polder";

/// Schemas that exist from the first start (DESIGN.md "Names").
pub const DEFAULT_SCHEMAS: [&str; 4] = ["public", "bronze", "silver", "gold"];

/// The schema unqualified table names resolve to, as in PostgreSQL.
pub const DEFAULT_SCHEMA: &str = "public";
