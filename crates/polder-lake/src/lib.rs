//! The lake: object storage (local filesystem or S3-compatible) holding one Delta table per
//! Polder table at `<lake>/<schema>/<table>/`.
//!
//! This crate knows storage and the Delta protocol, not SQL names or the catalog: it opens,
//! creates and deletes Delta tables by location, time-travels them and reads their history.

mod error;
mod history;
mod lake;
mod metered;
mod s3;

pub use error::LakeError;
pub use history::HistoryEntry;
pub use lake::{Lake, TableStats};

/// Re-exported so that upper crates name one `deltalake` (DESIGN.md: one version each).
pub use deltalake;
