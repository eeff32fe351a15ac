//! The catalog store: which schemas, tables and views exist and where their data lives.
//!
//! One set of migrations and one set of queries run unchanged on SQLite (the embedded default)
//! and on PostgreSQL (production, shared by several `polder serve` processes), through sqlx's
//! `Any` driver. The catalog never touches table data; the engine joins names to lake tables.

mod backup;
mod governance;
mod ingest;
mod leases;
mod reflections;
mod saved_objects;
mod security;
mod store;
mod transform;

pub use backup::{
    BACKED_UP_TABLES, CatalogExport, ColumnType, ExportedColumn, ExportedTable, LakeLocation,
    LocationKind, NOT_BACKED_UP_TABLES,
};
pub use governance::{
    ColumnMaskRecord, QueryRecord, RowPolicyRecord, SecretInfo, SecretRecord, SecretVault, now,
};
pub use ingest::{ConnectionRecord, JobRecord};
pub use leases::{Leadership, LeaseRecord, SCHEDULER_LEASE};
pub use reflections::{ReflectionRecord, ReflectionRefresh};
pub use saved_objects::{SavedObjectKind, SavedObjectRecord};
pub use security::{AuditRecord, GrantRecord, TokenRecord, UserRecord};
pub use transform::{TransformNodeRecord, TransformProjectRecord, TransformRunRecord};

pub use store::{
    Backend, CatalogError, CatalogSnapshot, CatalogStore, SchemaEntry, TableEntry, TableKind,
};
