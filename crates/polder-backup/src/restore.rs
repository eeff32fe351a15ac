//! Restoring a backup into an empty catalog and lake.

use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use polder_catalog::{CatalogExport, CatalogStore};
use polder_lake::Lake;

use crate::Progress;
use crate::create::BackupOptions;
use crate::error::BackupError;
use crate::files::{Digest, StreamError, copy_object, sha256_hex};
use crate::manifest::{FileEntry, Manifest, select_backup};
use crate::repository::{Repository, join, url_path};

type Result<T, E = BackupError> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub backup: String,
    pub created_at: DateTime<Utc>,
    pub tables: usize,
    pub files: u64,
    pub bytes: u64,
    pub catalog_rows: usize,
    /// Stored secrets restored: they open only with the old deployment's secrets key.
    pub secrets: usize,
    pub seconds: f64,
}

/// Restores the backup named `id`, else the newest made at or before `as_of`, else the newest,
/// into `catalog` and `lake`. Both must be empty of what the backup holds; every file is
/// checked against its SHA-256 while it is copied, and the catalog is written last, with the
/// table locations moved to this lake's root.
pub async fn restore_backup(
    catalog: &CatalogStore,
    lake: &Lake,
    repository: &Repository,
    id: Option<&str>,
    as_of: Option<DateTime<Utc>>,
    options: &BackupOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let manifests = repository.manifests().await?;
    let manifest = select_backup(&manifests, id, as_of, repository.url())?;

    let mut export = read_catalog(repository, manifest).await?;
    catalog.check_import(&export).await?;

    let lake_root = lake.root().clone();
    let (lake_store, _) = lake.store_for(&lake_root)?;
    let root_prefix = url_path(&lake_root)?;
    for table in &manifest.tables {
        let prefix = join(&root_prefix, &table.location)?;
        let first = lake_store.list(Some(&prefix)).next().await;
        match first {
            None => {}
            Some(Ok(_)) => {
                return Err(BackupError::NotEmpty(format!(
                    "the lake {lake_root} already holds files of {} at {}; restore into an empty lake (or set another --lake)",
                    table.display_name(),
                    table.location
                )));
            }
            Some(Err(err)) => return Err(BackupError::storage(&lake_root, err)),
        }
    }

    let files: Vec<&FileEntry> = manifest.files().collect();
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    progress.start("restoring", files.len(), bytes);
    let lake_store_ref = &*lake_store;
    let root_prefix_ref = &root_prefix;
    let lake_root_ref = &lake_root;
    let mut copies = futures::stream::iter(files.iter().map(|file| async move {
        restore_file(
            repository,
            manifest,
            file,
            lake_store_ref,
            root_prefix_ref,
            lake_root_ref,
            progress,
        )
        .await
    }))
    .buffer_unordered(options.parallelism.max(1));
    while let Some(result) = copies.next().await {
        result?;
    }
    progress.finish();

    export.rewrite_lake_root(&manifest.lake_root, lake_root.as_str());
    catalog.import(&export).await?;
    Ok(RestoreReport {
        backup: manifest.id.clone(),
        created_at: manifest.created_at,
        tables: manifest.tables.len(),
        files: files.len() as u64,
        bytes,
        catalog_rows: export.row_count(),
        secrets: export
            .table("polder_secrets")
            .map_or(0, |table| table.rows.len()),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Copies one file back into the lake, checking its size and hash before it lands.
async fn restore_file(
    repository: &Repository,
    manifest: &Manifest,
    file: &FileEntry,
    lake_store: &dyn object_store::ObjectStore,
    root_prefix: &object_store::path::Path,
    lake_root: &url::Url,
    progress: &dyn Progress,
) -> Result<()> {
    let source = repository.data_key(file.object())?;
    let target = join(root_prefix, &file.path)?;
    let expected = Digest {
        size: file.size,
        sha256: file.sha256.clone(),
    };
    match copy_object(
        repository.store(),
        &source,
        lake_store,
        &target,
        Some(&expected),
        progress,
    )
    .await
    {
        Ok(_) => restore_modified(lake_root, file).await,
        Err(StreamError::Read(object_store::Error::NotFound { .. })) => {
            Err(BackupError::Checksum {
                path: format!("data/{}", file.object()),
                message: format!(
                    "missing from {} (backup {}); run `polder backup verify`",
                    repository.url(),
                    manifest.id
                ),
            })
        }
        Err(StreamError::Read(err)) => Err(repository.storage_error(err)),
        Err(StreamError::Write(err)) => Err(BackupError::storage(lake_root, err)),
        Err(StreamError::Mismatch { expected, actual }) => Err(BackupError::Checksum {
            path: format!("data/{}", file.object()),
            message: format!(
                "backup {} recorded {} bytes with sha256 {}, the repository holds {} bytes with sha256 {}; nothing of it was written",
                manifest.id, expected.size, expected.sha256, actual.size, actual.sha256
            ),
        }),
    }
}

/// Gives a restored `_delta_log` file on a local lake its original modification time, which
/// Delta reads as the commit's time. Object stores set their own time: see docs/backup.md.
async fn restore_modified(lake_root: &url::Url, file: &FileEntry) -> Result<()> {
    let Some(modified) = file.modified else {
        return Ok(());
    };
    if lake_root.scheme() != "file" {
        return Ok(());
    }
    let Ok(root) = lake_root.to_file_path() else {
        return Ok(());
    };
    let path = root.join(&file.path);
    let time = std::time::SystemTime::from(modified);
    let result = tokio::task::spawn_blocking(move || {
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(time))
            .map_err(|e| {
                format!(
                    "cannot set the modification time of {}: {e}",
                    path.display()
                )
            })
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|inner| inner);
    result.map_err(|message| BackupError::Storage {
        location: lake_root.to_string(),
        message,
    })
}

/// The backup's catalog export, checked against the manifest.
pub(crate) async fn read_catalog(
    repository: &Repository,
    manifest: &Manifest,
) -> Result<CatalogExport> {
    let key = repository.backup_key(&manifest.id, "catalog.json")?;
    let Some(bytes) = repository.get_bytes(&key).await? else {
        return Err(BackupError::Checksum {
            path: format!("backups/{}/catalog.json", manifest.id),
            message: format!("missing from {}", repository.url()),
        });
    };
    let sha256 = sha256_hex(&bytes);
    if bytes.len() as u64 != manifest.catalog.size || sha256 != manifest.catalog.sha256 {
        return Err(BackupError::Checksum {
            path: format!("backups/{}/catalog.json", manifest.id),
            message: format!(
                "the manifest recorded {} bytes with sha256 {}, the repository holds {} bytes with sha256 {sha256}",
                manifest.catalog.size,
                manifest.catalog.sha256,
                bytes.len()
            ),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        BackupError::Corrupt(format!(
            "the catalog of backup {} cannot be read: {e}",
            manifest.id
        ))
    })
}
