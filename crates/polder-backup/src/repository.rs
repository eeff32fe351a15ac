//! A backup repository: a directory or S3 prefix holding `backups/<id>/` and `data/`.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use polder_lake::Lake;
use url::Url;

use crate::error::BackupError;
use crate::manifest::Manifest;

type Result<T, E = BackupError> = std::result::Result<T, E>;

/// Manifests read at once when listing.
const MANIFEST_READS: usize = 8;

#[derive(Debug, Clone)]
pub struct Repository {
    url: Url,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

/// `file:///abs`, `file://./relative` (to the working directory), a bare local path, or
/// `s3://bucket[/prefix]`; always with a trailing slash.
pub(crate) fn normalize_url(text: &str) -> Result<Url> {
    // A URL with credentials in it must not echo them back.
    let invalid = || BackupError::InvalidUrl(polder_core::mask_url_password(text));
    let local = if let Some(path) = text.strip_prefix("file://") {
        Some(path)
    } else if text.starts_with('/') || text.starts_with("./") || text.starts_with("../") {
        Some(text)
    } else {
        None
    };
    if let Some(path) = local {
        if path.is_empty() {
            return Err(invalid());
        }
        let absolute = std::path::absolute(path).map_err(|_| invalid())?;
        return Url::from_directory_path(&absolute).map_err(|_| invalid());
    }
    if text.starts_with("s3://") {
        let with_slash = if text.ends_with('/') {
            text.to_string()
        } else {
            format!("{text}/")
        };
        let url = Url::parse(&with_slash).map_err(|_| invalid())?;
        if url.host_str().unwrap_or_default().is_empty()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(invalid());
        }
        return Ok(url);
    }
    Err(invalid())
}

/// The object path of a URL's path (percent-decoded, as object_store names objects).
pub(crate) fn url_path(url: &Url) -> Result<Path> {
    Path::from_url_path(url.path()).map_err(|_| BackupError::InvalidUrl(url.to_string()))
}

/// `prefix/rest`, where `rest` is an object path relative to `prefix` (already encoded).
pub(crate) fn join(prefix: &Path, rest: &str) -> Result<Path> {
    let rest = rest.trim_start_matches('/');
    let joined = if prefix.as_ref().is_empty() {
        rest.to_string()
    } else {
        format!("{}/{rest}", prefix.as_ref())
    };
    Path::parse(&joined)
        .map_err(|e| BackupError::Corrupt(format!("invalid object path {joined}: {e}")))
}

/// `path` relative to `prefix`, when it is under it.
pub(crate) fn relative<'a>(prefix: &Path, path: &'a Path) -> Option<&'a str> {
    let full = path.as_ref();
    if prefix.as_ref().is_empty() {
        return Some(full);
    }
    full.strip_prefix(prefix.as_ref())?.strip_prefix('/')
}

impl Repository {
    /// Opens the repository at `url`; S3 settings (endpoint, credentials) are the lake's.
    pub fn open(url: &str, lake: &Lake) -> Result<Repository> {
        let url = normalize_url(url)?;
        let (store, _) = lake.store_for(&url)?;
        let prefix = url_path(&url)?;
        Ok(Repository { url, store, prefix })
    }

    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    pub(crate) fn store(&self) -> &dyn ObjectStore {
        &*self.store
    }

    fn backups_dir(&self) -> Result<Path> {
        join(&self.prefix, "backups")
    }

    pub(crate) fn data_dir(&self) -> Result<Path> {
        join(&self.prefix, "data")
    }

    /// Where a file's content is kept: `data/<object>`.
    pub(crate) fn data_key(&self, object: &str) -> Result<Path> {
        join(&self.prefix, &format!("data/{object}"))
    }

    pub(crate) fn backup_dir(&self, id: &str) -> Result<Path> {
        join(&self.prefix, &format!("backups/{id}"))
    }

    pub(crate) fn backup_key(&self, id: &str, file: &str) -> Result<Path> {
        join(&self.prefix, &format!("backups/{id}/{file}"))
    }

    pub(crate) fn storage_error(&self, err: object_store::Error) -> BackupError {
        BackupError::storage(&self.url, err)
    }

    /// Names of the directories under `backups/`, complete or not.
    pub(crate) async fn backup_dirs(&self) -> Result<Vec<String>> {
        let dir = self.backups_dir()?;
        let listing = self
            .store
            .list_with_delimiter(Some(&dir))
            .await
            .map_err(|e| self.storage_error(e))?;
        let mut names = Vec::new();
        for prefix in listing.common_prefixes {
            if let Some(name) = prefix.filename() {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }

    /// Every complete backup (one with a manifest), oldest first.
    pub async fn manifests(&self) -> Result<Vec<Manifest>> {
        let dirs = self.backup_dirs().await?;
        let reads = dirs.iter().map(|id| self.read_manifest(id));
        let found: Vec<Option<Manifest>> = futures::stream::iter(reads)
            .buffered(MANIFEST_READS)
            .try_collect()
            .await?;
        let mut manifests: Vec<Manifest> = found.into_iter().flatten().collect();
        manifests.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(manifests)
    }

    /// The manifest of backup `id`; `None` when it has none (an unfinished backup).
    async fn read_manifest(&self, id: &str) -> Result<Option<Manifest>> {
        let key = self.backup_key(id, "manifest.json")?;
        let bytes = match self.store.get(&key).await {
            Ok(result) => result.bytes().await.map_err(|e| self.storage_error(e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(self.storage_error(err)),
        };
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            BackupError::Corrupt(format!(
                "the manifest of backup {id} at {} cannot be read: {e}",
                self.url
            ))
        })?;
        Ok(Some(manifest))
    }

    /// The content of `key`; `None` when there is no such object.
    pub(crate) async fn get_bytes(&self, key: &Path) -> Result<Option<Vec<u8>>> {
        let result = match self.store.get(key).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(self.storage_error(err)),
        };
        let bytes = result.bytes().await.map_err(|e| self.storage_error(e))?;
        Ok(Some(bytes.to_vec()))
    }

    pub(crate) async fn put_bytes(&self, key: &Path, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(key, PutPayload::from(bytes))
            .await
            .map_err(|e| self.storage_error(e))?;
        Ok(())
    }

    /// Deletes an object; one that is already gone is fine.
    pub(crate) async fn delete(&self, key: &Path) -> Result<()> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(self.storage_error(err)),
        }
    }

    /// Every object under `dir`.
    pub(crate) async fn list(&self, dir: &Path) -> Result<Vec<ObjectMeta>> {
        self.store
            .list(Some(dir))
            .try_collect()
            .await
            .map_err(|e| self.storage_error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_local_directories_or_s3_prefixes() {
        assert_eq!(
            normalize_url("file:///srv/backups").unwrap().as_str(),
            "file:///srv/backups/"
        );
        assert_eq!(
            normalize_url("/srv/backups/").unwrap().as_str(),
            "file:///srv/backups/"
        );
        let relative = normalize_url("file://./backups").unwrap();
        assert!(relative.as_str().ends_with("/backups/"), "{relative}");
        assert!(relative.as_str().starts_with("file:///"), "{relative}");
        assert_eq!(
            normalize_url("s3://bucket/prefix").unwrap().as_str(),
            "s3://bucket/prefix/"
        );
        assert_eq!(
            normalize_url("s3://bucket").unwrap().as_str(),
            "s3://bucket/"
        );
        for bad in [
            "ftp://host/x",
            "backups",
            "s3://",
            "file://",
            "s3://key:secret@bucket/x",
        ] {
            let err = normalize_url(bad).unwrap_err().to_string();
            assert!(err.contains("invalid backup location"), "{bad}: {err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn object_paths_join_and_split() {
        let prefix = Path::from("srv/backups");
        let key = join(&prefix, "data/bronze/t/part-0.parquet").unwrap();
        assert_eq!(key.as_ref(), "srv/backups/data/bronze/t/part-0.parquet");
        assert_eq!(
            relative(&prefix, &key),
            Some("data/bronze/t/part-0.parquet")
        );
        assert_eq!(relative(&Path::from("srv/other"), &key), None);
        let root = Path::from("");
        assert_eq!(join(&root, "data/x").unwrap().as_ref(), "data/x");
        assert_eq!(relative(&root, &key), Some(key.as_ref()));
    }
}
