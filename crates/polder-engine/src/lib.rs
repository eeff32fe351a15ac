//! Polder's SQL engine: a DataFusion session whose catalog is Polder's catalog store and whose
//! tables are Delta tables in the lake.
//!
//! - [`Engine::execute_sql`] runs statements: queries (lazily, as DataFrames), DDL (catalog +
//!   lake), DML (one Delta commit each: INSERT, UPDATE, DELETE, MERGE, TRUNCATE);
//! - time travel (`VERSION AS OF`, `TIMESTAMP AS OF`) and `DESCRIBE HISTORY` /
//!   `table_history('s.t')` are rewritten into catalog lookups ([`rewrite`](crate::rewrite));
//! - errors carry a kind and a SQLSTATE ([`EngineError`]).

pub mod access;
mod audit;
mod catalog;
mod ddl;
mod describe;
mod dialect;
mod engine;
mod error;
mod exec;
mod governance;
mod grants;
mod history;
mod query_log;
pub mod reflection;
mod results_cache;
mod rewrite;
mod system;
mod table;
mod write;

pub use describe::{CatalogDescription, ColumnDescription, SchemaDescription, TableDescription};
pub use dialect::PolderDialect;
pub use engine::{CommandOutcome, Engine, PreparedSql, StatementOutput};
pub use error::{EngineError, Result, classify, datafusion_message};
pub use query_log::{QueryLog, QueryTracker};
pub use reflection::manage::RefreshReport;
pub use reflection::{acceleration_enabled, with_acceleration};
pub use results_cache::ResultsCache;
pub use write::{CommitTag, WriteMode, WriteOutcome};

/// A plain DataFusion session that can run Delta writes (for loads that bring their own
/// object stores).
pub fn delta_session() -> datafusion::prelude::SessionContext {
    polder_lake::deltalake::delta_datafusion::create_session().into_inner()
}

/// Re-exported so that upper crates name one `datafusion` (DESIGN.md: one version each).
pub use datafusion;
