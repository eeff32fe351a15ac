//! Opening the lake and its Delta tables.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use deltalake::logstore::ObjectStoreRef;
use deltalake::table::builder::DeltaTableBuilder;
use deltalake::{DeltaTable, DeltaTableError};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use polder_core::S3Config;
use url::Url;

use crate::error::LakeError;
use crate::history::{HistoryEntry, read_history};
use crate::metered::register_local_files;
use crate::s3::{build_s3_store, register_s3};

type Result<T, E = LakeError> = std::result::Result<T, E>;

/// Size figures of a table version, from the Delta log alone (no data file is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableStats {
    pub version: i64,
    pub num_files: usize,
    /// `None` when some file was written without row-count statistics.
    pub num_rows: Option<u64>,
    pub size_bytes: u64,
}

/// The lake root and how to reach it.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Url,
    s3: S3Config,
}

impl Lake {
    /// Opens the lake at `url` (`file:///path`, a relative `file://./path`, `s3://bucket/prefix`
    /// or `memory://`). A local lake directory is created when missing.
    pub fn open(url: &str, s3: &S3Config) -> Result<Lake> {
        let root = if let Some(path) = url.strip_prefix("file://") {
            let path = PathBuf::from(path);
            let absolute = if path.is_absolute() {
                path
            } else {
                std::env::current_dir()
                    .map_err(|_| LakeError::InvalidLocation(url.to_string()))?
                    .join(path)
            };
            std::fs::create_dir_all(&absolute).map_err(|e| LakeError::Unavailable {
                location: absolute.display().to_string(),
                message: format!("cannot create lake directory: {e}"),
            })?;
            let absolute = absolute
                .canonicalize()
                .map_err(|_| LakeError::InvalidLocation(url.to_string()))?;
            let root = Url::from_directory_path(&absolute)
                .map_err(|_| LakeError::InvalidLocation(url.to_string()))?;
            register_local_files();
            root
        } else if url.starts_with("s3://") || url.starts_with("memory://") {
            let with_slash = if url.ends_with('/') {
                url.to_string()
            } else {
                format!("{url}/")
            };
            let parsed =
                Url::parse(&with_slash).map_err(|_| LakeError::InvalidLocation(url.to_string()))?;
            if parsed.scheme() == "s3" {
                if parsed.host_str().unwrap_or_default().is_empty() {
                    return Err(LakeError::InvalidLocation(url.to_string()));
                }
                register_s3(s3);
            }
            parsed
        } else {
            return Err(LakeError::InvalidLocation(url.to_string()));
        };
        Ok(Lake {
            root,
            s3: s3.clone(),
        })
    }

    pub fn root(&self) -> &Url {
        &self.root
    }

    /// Where the table `schema.table` lives: `<lake>/<schema>/<table>/`.
    ///
    /// Callers pass validated identifiers (letters, digits, `_`), so the join cannot escape.
    pub fn table_location(&self, schema: &str, table: &str) -> Url {
        self.root
            .join(&format!("{schema}/{table}/"))
            .expect("identifiers are valid url path segments")
    }

    fn parse_location(location: &str) -> Result<Url> {
        Url::parse(location).map_err(|_| LakeError::InvalidLocation(location.to_string()))
    }

    /// A builder for the table at `location`, configured for this lake's storage.
    pub fn table_builder(&self, location: &str) -> Result<DeltaTableBuilder> {
        let url = Self::parse_location(location)?;
        let builder = DeltaTableBuilder::from_url(url)
            .map_err(|e| LakeError::from_delta(location, e))?
            .with_allow_http(self.s3.allow_http);
        Ok(builder)
    }

    /// An unloaded handle on `location`, for creating a table there.
    pub fn new_table(&self, location: &str) -> Result<DeltaTable> {
        self.table_builder(location)?
            .build()
            .map_err(|e| LakeError::from_delta(location, e))
    }

    /// The latest version of the table at `location`.
    pub async fn load(&self, location: &str) -> Result<DeltaTable> {
        self.table_builder(location)?
            .load()
            .await
            .map_err(|e| LakeError::from_delta(location, e))
    }

    /// Brings an already loaded table to its latest version (reads only the new log entries).
    pub async fn refresh(&self, table: &mut DeltaTable) -> Result<()> {
        table
            .update_incremental(None)
            .await
            .map_err(|e| LakeError::from_delta(table.table_url().as_str(), e))
    }

    /// The table at `location` as of `version`.
    pub async fn load_version(&self, location: &str, version: i64) -> Result<DeltaTable> {
        if version < 0 {
            return Err(LakeError::VersionNotFound(format!(
                "version {version} of {location} does not exist: versions start at 0"
            )));
        }
        let mut table = self.new_table(location)?;
        match table.load_version(version as u64).await {
            Ok(()) => Ok(table),
            Err(err) => {
                let latest = self
                    .load(location)
                    .await?
                    .version()
                    .map(|v| v as i64)
                    .unwrap_or(-1);
                if version > latest {
                    return Err(LakeError::VersionNotFound(format!(
                        "version {version} of {location} does not exist: the latest version is {latest}"
                    )));
                }
                Err(LakeError::from_delta(location, err))
            }
        }
    }

    /// The table at `location` as it was at `timestamp` (the last commit at or before it).
    pub async fn load_at(&self, location: &str, timestamp: DateTime<Utc>) -> Result<DeltaTable> {
        let mut table = self.new_table(location)?;
        match table.load_with_datetime(timestamp).await {
            Ok(()) => {
                // deltalake falls back to the oldest version for a time before the table existed.
                let version = table.version().unwrap_or(0);
                let commit =
                    object_store::path::Path::from(format!("_delta_log/{version:020}.json"));
                let committed_at = table
                    .log_store()
                    .object_store(None)
                    .head(&commit)
                    .await
                    .map_err(|e| LakeError::from_object_store(location, e))?
                    .last_modified;
                // Compared in milliseconds, the resolution deltalake searches commits with.
                if committed_at.timestamp_millis() > timestamp.timestamp_millis() {
                    return Err(LakeError::VersionNotFound(format!(
                        "{location} has no version at or before {}: its first version is from {}",
                        timestamp.to_rfc3339(),
                        committed_at.to_rfc3339()
                    )));
                }
                Ok(table)
            }
            Err(DeltaTableError::InvalidVersion(_)) | Err(DeltaTableError::NotATable(_))
                if self.load(location).await.is_ok() =>
            {
                Err(LakeError::VersionNotFound(format!(
                    "{location} has no version at or before {}: the table is younger",
                    timestamp.to_rfc3339()
                )))
            }
            Err(err) => Err(LakeError::from_delta(location, err)),
        }
    }

    /// Whether a Delta table exists at `location`.
    pub async fn exists(&self, location: &str) -> Result<bool> {
        let table = self.new_table(location)?;
        table
            .verify_deltatable_existence()
            .await
            .map_err(|e| LakeError::from_delta(location, e))
    }

    /// Commit history of `table`, newest first.
    pub async fn history(
        &self,
        table: &DeltaTable,
        limit: Option<usize>,
    ) -> Result<Vec<HistoryEntry>> {
        read_history(table, limit).await
    }

    /// File count, row count and size of the loaded version of `table`.
    pub fn stats(table: &DeltaTable) -> Result<TableStats> {
        let location = table.table_url().to_string();
        let state = table
            .snapshot()
            .map_err(|e| LakeError::from_delta(&location, e))?;
        let mut num_files = 0usize;
        let mut num_rows = Some(0u64);
        let mut size_bytes = 0u64;
        for file in state.log_data().iter() {
            num_files += 1;
            size_bytes += file.size().max(0) as u64;
            num_rows = match (num_rows, file.num_records()) {
                (Some(total), Some(rows)) => Some(total + rows as u64),
                _ => None,
            };
        }
        Ok(TableStats {
            version: state.version() as i64,
            num_files,
            num_rows,
            size_bytes,
        })
    }

    /// Deletes every object under the table's location (after `DROP TABLE`).
    pub async fn delete_table(&self, location: &str) -> Result<()> {
        let url = Self::parse_location(location)?;
        if url.scheme() == "file" {
            let path = url
                .to_file_path()
                .map_err(|_| LakeError::InvalidLocation(location.to_string()))?;
            return match tokio::fs::remove_dir_all(&path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(LakeError::Delta {
                    location: location.to_string(),
                    message: format!("cannot delete table files: {e}"),
                }),
            };
        }
        let (store, prefix) = self.store_for(&url)?;
        let objects: Vec<_> = store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| LakeError::from_object_store(location, e))?;
        for object in objects {
            match store.delete(&object.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(LakeError::from_object_store(location, e)),
            }
        }
        Ok(())
    }

    /// Checks that the lake's storage answers (for `/ready`).
    pub async fn check(&self) -> Result<()> {
        let root = self.root.clone();
        if root.scheme() == "file" {
            let path = root
                .to_file_path()
                .map_err(|_| LakeError::InvalidLocation(root.to_string()))?;
            return tokio::fs::metadata(&path).await.map(|_| ()).map_err(|e| {
                LakeError::Unavailable {
                    location: root.to_string(),
                    message: e.to_string(),
                }
            });
        }
        let (store, prefix) = self.store_for(&root)?;
        store
            .list_with_delimiter(Some(&prefix))
            .await
            .map(|_| ())
            .map_err(|e| LakeError::from_object_store(root.as_str(), e))
    }

    /// An object store for `url` (the lake's S3 settings for `s3://`), and the path in it.
    pub fn store_for(&self, url: &Url) -> Result<(ObjectStoreRef, Path)> {
        let prefix = Path::from(url.path());
        match url.scheme() {
            "s3" => {
                let store = build_s3_store(&self.s3, url)
                    .map_err(|e| LakeError::from_delta(url.as_str(), e))?;
                Ok((store, prefix))
            }
            _ => {
                let (store, path) = object_store::parse_url(url)
                    .map_err(|e| LakeError::from_object_store(url.as_str(), e))?;
                Ok((std::sync::Arc::from(store), path))
            }
        }
    }
}

#[cfg(test)]
mod tests;
