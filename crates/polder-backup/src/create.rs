//! Making a backup: the catalog export, then every table's files at its current version.

use std::collections::HashMap;
use std::time::Instant;

use chrono::Utc;
use futures::StreamExt;
use object_store::path::Path;
use polder_catalog::{CatalogStore, LocationKind};
use polder_lake::{Lake, LakeError};
use url::Url;

use crate::error::BackupError;
use crate::files::{StreamError, copy_object, hash_object, is_backed_up, sha256_hex};
use crate::manifest::{
    CatalogFile, FileEntry, MANIFEST_FORMAT, Manifest, TableManifest, Totals, new_id,
};
use crate::repository::{Repository, relative, url_path};
use crate::{NoProgress, Progress};

type Result<T, E = BackupError> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Files copied at once.
    pub parallelism: usize,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions { parallelism: 4 }
    }
}

/// A file of a table to take.
struct Candidate {
    table: usize,
    /// Under the lake root.
    path: String,
    source: Path,
    size: u64,
    modified: chrono::DateTime<Utc>,
    /// A `_delta_log` file: its path alone does not identify its content (a table dropped
    /// and created again starts its log at version 0 anew).
    log: bool,
}

enum Taken {
    Copied(FileEntry),
    Reused(FileEntry),
    /// Deleted between listing and copying (a VACUUM): no version up to the backed-up one
    /// can have needed it and still be readable in the lake either.
    Vanished,
}

/// Backs up the catalog and every table and reflection it points at into `repository`.
///
/// The catalog is read first, in one transaction; each table is then read at its current
/// version, which is at least the version the catalog knew, so the restored catalog never
/// points at a version the restored lake lacks. The manifest is written last.
pub async fn create_backup(
    catalog: &CatalogStore,
    lake: &Lake,
    repository: &Repository,
    options: &BackupOptions,
    progress: &dyn Progress,
) -> Result<Manifest> {
    let started = Instant::now();
    let existing = repository.manifests().await?;
    let taken_ids = repository.backup_dirs().await?;
    // The newest manifest's entry for each path (all name the same content unless a log file
    // path was reused, which the hash check below catches).
    let mut known: HashMap<&str, &FileEntry> = HashMap::new();
    for manifest in &existing {
        for file in manifest.files() {
            known.insert(file.path.as_str(), file);
        }
    }

    let created_at = Utc::now();
    let export = catalog.export().await?;
    let id = new_id(created_at, &taken_ids);
    let lake_root = lake.root().clone();
    let (lake_store, _) = lake.store_for(&lake_root)?;
    let root_prefix = url_path(&lake_root)?;

    let mut tables = Vec::new();
    let mut candidates = Vec::new();
    for location in export.lake_locations() {
        let display = match location.kind {
            LocationKind::Table => format!("table {}.{}", location.schema, location.name),
            LocationKind::Reflection => format!("reflection {}", location.name),
        };
        let Some(relative_location) = location.location.strip_prefix(lake_root.as_str()) else {
            return Err(BackupError::InvalidInput(format!(
                "{display} is at {}, outside the lake root {lake_root}: back up with the lake setting the server uses (--lake, POLDER_LAKE)",
                location.location
            )));
        };
        let version = match lake.load(&location.location).await {
            Ok(table) => table.version(),
            Err(LakeError::TableNotFound(_)) => None,
            Err(err) => return Err(err.into()),
        };
        let Some(version) = version else {
            if location.kind == LocationKind::Reflection {
                // A reflection whose first build failed has no table yet; the restored
                // catalog keeps it as it was, and its next refresh builds it.
                tracing::warn!(reflection = %location.name, "reflection has no data yet: nothing to back up");
                continue;
            }
            return Err(BackupError::TableMissing(format!(
                "{display} has no Delta table at {} (dropped while the backup ran?); nothing was written, run the backup again",
                location.location
            )));
        };
        let table_url = Url::parse(&location.location).map_err(|_| {
            BackupError::InvalidInput(format!("{display}: invalid location {}", location.location))
        })?;
        let table_prefix = url_path(&table_url)?;
        let objects = list_lake(&*lake_store, &table_prefix, lake_root.as_str()).await?;
        let index = tables.len();
        for object in objects {
            let Some(in_table) = relative(&table_prefix, &object.location) else {
                continue;
            };
            if !is_backed_up(in_table, version) {
                continue;
            }
            let Some(path) = relative(&root_prefix, &object.location) else {
                continue;
            };
            candidates.push(Candidate {
                table: index,
                path: path.to_string(),
                log: in_table.starts_with("_delta_log/"),
                source: object.location.clone(),
                size: object.size,
                modified: object.last_modified,
            });
        }
        tables.push(TableManifest {
            kind: location.kind,
            schema: location.schema.clone(),
            name: location.name.clone(),
            location: relative_location.to_string(),
            version: i64::try_from(version).unwrap_or(i64::MAX),
            files: Vec::new(),
        });
    }

    // Reading every log file (to compare hashes) and copying the new data files both count.
    let to_move: u64 = candidates
        .iter()
        .filter(|c| c.log || known.get(c.path.as_str()).is_none_or(|k| k.size != c.size))
        .map(|c| c.size)
        .sum();
    progress.start("backing up", candidates.len(), to_move);

    let id_ref = id.as_str();
    let known_ref = &known;
    let lake_store_ref = &*lake_store;
    let mut totals = Totals::default();
    let mut results = futures::stream::iter(candidates.iter().map(|candidate| async move {
        let previous = known_ref.get(candidate.path.as_str()).copied();
        let result = take_file(
            lake_store_ref,
            repository,
            candidate,
            previous,
            id_ref,
            progress,
        )
        .await;
        (candidate.table, result)
    }))
    .buffer_unordered(options.parallelism.max(1));
    while let Some((table, result)) = results.next().await {
        let (entry, copied) = match result? {
            Taken::Copied(entry) => (entry, true),
            Taken::Reused(entry) => (entry, false),
            Taken::Vanished => continue,
        };
        totals.files += 1;
        totals.bytes += entry.size;
        if copied {
            totals.files_copied += 1;
            totals.bytes_copied += entry.size;
        } else {
            totals.files_reused += 1;
            totals.bytes_reused += entry.size;
        }
        tables[table].files.push(entry);
    }
    progress.finish();
    for table in &mut tables {
        table.files.sort_by(|a, b| a.path.cmp(&b.path));
    }
    totals.tables = tables.len() as u64;

    let catalog_bytes = serde_json::to_vec(&export)
        .map_err(|e| BackupError::Corrupt(format!("cannot encode the catalog export: {e}")))?;
    let catalog_file = CatalogFile {
        migration_version: export.migration_version,
        rows: export.row_count() as u64,
        size: catalog_bytes.len() as u64,
        sha256: sha256_hex(&catalog_bytes),
    };
    repository
        .put_bytes(&repository.backup_key(&id, "catalog.json")?, catalog_bytes)
        .await?;

    totals.seconds = started.elapsed().as_secs_f64();
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        id: id.clone(),
        created_at,
        polder_version: env!("CARGO_PKG_VERSION").to_string(),
        lake_root: lake_root.to_string(),
        catalog: catalog_file,
        tables,
        totals,
    };
    let manifest_bytes = serde_json::to_vec(&manifest)
        .map_err(|e| BackupError::Corrupt(format!("cannot encode the manifest: {e}")))?;
    repository
        .put_bytes(
            &repository.backup_key(&id, "manifest.json")?,
            manifest_bytes,
        )
        .await?;
    tracing::info!(
        backup = %id,
        files = manifest.totals.files,
        copied = manifest.totals.files_copied,
        bytes_copied = manifest.totals.bytes_copied,
        "backup written"
    );
    Ok(manifest)
}

async fn list_lake(
    store: &dyn object_store::ObjectStore,
    prefix: &Path,
    root: &str,
) -> Result<Vec<object_store::ObjectMeta>> {
    use futures::TryStreamExt;
    store
        .list(Some(prefix))
        .try_collect()
        .await
        .map_err(|e| BackupError::storage(root, e))
}

async fn take_file(
    lake_store: &dyn object_store::ObjectStore,
    repository: &Repository,
    candidate: &Candidate,
    previous: Option<&FileEntry>,
    id: &str,
    progress: &dyn Progress,
) -> Result<Taken> {
    let read_error = |err: object_store::Error| {
        BackupError::storage(format!("lake file {}", candidate.path), err)
    };
    let mut copy_progress = progress;
    if let Some(previous) = previous
        && previous.size == candidate.size
    {
        if !candidate.log {
            // Data files have unique names and never change: same path and size, same file.
            return Ok(Taken::Reused(previous.clone()));
        }
        match hash_object(lake_store, &candidate.source, progress).await {
            Ok(digest) if digest.sha256 == previous.sha256 => {
                return Ok(Taken::Reused(previous.clone()));
            }
            Ok(_) => copy_progress = &NoProgress,
            Err(StreamError::Read(object_store::Error::NotFound { .. })) => {
                return Ok(Taken::Vanished);
            }
            Err(err) => return Err(stream_error(err, &candidate.path, read_error, repository)),
        }
    }
    // A path some backup holds with other content gets a name of its own, so that backup
    // stays intact.
    let object = previous.map(|_| format!("{}~{id}", candidate.path));
    let target = repository.data_key(object.as_deref().unwrap_or(&candidate.path))?;
    match copy_object(
        lake_store,
        &candidate.source,
        repository.store(),
        &target,
        None,
        copy_progress,
    )
    .await
    {
        Ok(digest) => Ok(Taken::Copied(FileEntry {
            path: candidate.path.clone(),
            size: digest.size,
            sha256: digest.sha256,
            object,
            modified: candidate.log.then_some(candidate.modified),
        })),
        Err(StreamError::Read(object_store::Error::NotFound { .. })) => {
            tracing::warn!(path = %candidate.path, "file vanished while the backup ran");
            Ok(Taken::Vanished)
        }
        Err(err) => Err(stream_error(err, &candidate.path, read_error, repository)),
    }
}

fn stream_error(
    err: StreamError,
    path: &str,
    read_error: impl Fn(object_store::Error) -> BackupError,
    repository: &Repository,
) -> BackupError {
    match err {
        StreamError::Read(err) => read_error(err),
        StreamError::Write(err) => repository.storage_error(err),
        StreamError::Mismatch { expected, actual } => BackupError::Checksum {
            path: path.to_string(),
            message: format!(
                "expected {} bytes with sha256 {}, read {} bytes with sha256 {}",
                expected.size, expected.sha256, actual.size, actual.sha256
            ),
        },
    }
}
