//! Backups of a whole Polder deployment: a consistent snapshot of the catalog and of every
//! Delta table at its current version, copied to a backup repository on a local directory or
//! S3; restore (to a point in time), verification of every file's checksum, and retention.
//!
//! A repository at `<url>` holds `backups/<id>/manifest.json` (written last: a backup without
//! one does not exist), `backups/<id>/catalog.json` (the catalog export) and `data/<path>`,
//! the lake's files by their path under the lake root, shared by all backups so that a file
//! is copied once (incremental backups).

mod create;
mod error;
mod files;
mod manifest;
mod repository;
mod restore;
mod retention;
mod verify;

pub use create::{BackupOptions, create_backup};
pub use error::BackupError;
pub use manifest::{
    CatalogFile, FileEntry, Manifest, TableManifest, Totals, parse_as_of, select_backup,
};
pub use polder_catalog::LocationKind;
/// Re-exported so that the CLI opens the lake without depending on polder-lake itself.
pub use polder_lake::Lake;
pub use repository::Repository;
pub use restore::{RestoreReport, restore_backup};
pub use retention::{Retention, RetentionReport, apply_retention, expired_backups};
pub use verify::{Problem, VerifyReport, Which, verify_backups};

/// Reports how many bytes a long action has moved (the CLI draws a bar from it).
pub trait Progress: Send + Sync {
    /// An action starts that moves `files` files of `bytes` bytes in total.
    fn start(&self, _action: &str, _files: usize, _bytes: u64) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
