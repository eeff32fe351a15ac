//! Ingestion: sources that load data into Delta tables.
//!
//! - `polder import`: files (CSV, JSON lines, Parquet) from a local path, a glob, an `s3://`
//!   prefix or an HTTP(S) URL, loaded into a table in one Delta commit ([`import_files`]);
//! - connections ([`Ingestion`]): a source (PostgreSQL, MySQL/MariaDB, files, an HTTP JSON
//!   API, any Airbyte source connector), its streams and their sync modes, synced into
//!   `bronze.<connection>_<stream>` exactly once ([`sync`]) as jobs, on cron schedules.

pub mod airbyte;
pub mod connection;
mod counting;
mod error;
mod files;
pub mod http_api;
pub mod mysql;
pub mod postgres;
pub mod records;
pub mod service;
pub mod sources;
pub mod sync;

pub use connection::{
    ConnectionSpec, ConnectionView, SourceType, StreamSpec, SyncMode, SyncOptions,
};
pub use error::IngestError;
pub use files::{FileFormat, ImportMode, ImportReport, ImportRequest, ImportSource, import_files};
pub use service::{ConnectionPatch, Ingestion, JobView};
pub use sources::{Counters, DiscoveredStream};
pub use sync::StreamOutcome;

/// Receives progress of a long-running load (the CLI draws a bar with it; the API reports it).
pub trait Progress: Send + Sync {
    /// Called once the sources are known: how many files and, when known, how many bytes.
    fn start(&self, files: usize, total_bytes: Option<u64>);
    /// Called as source bytes are read.
    fn advance(&self, bytes: u64);
    /// Called when the commit is done or has failed.
    fn finish(&self);
}

/// A [`Progress`] that reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _files: usize, _total_bytes: Option<u64>) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
}
