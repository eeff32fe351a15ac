//! Ingestion: sources that load data into Delta tables.
//!
//! - files (CSV, JSON lines, Parquet) from a local path, a glob, an `s3://` prefix or an
//!   HTTP(S) URL, loaded into a table in one Delta commit ([`import_files`]);
//! - PostgreSQL tables read into Arrow through binary `COPY` ([`postgres`]), the reader the
//!   PostgreSQL source of connections is built on.

mod counting;
mod files;
pub mod postgres;

pub use files::{
    FileFormat, ImportError, ImportMode, ImportReport, ImportRequest, ImportSource, import_files,
};

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
