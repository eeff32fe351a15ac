//! Verifying backups: every file is read again and its size and SHA-256 compared.

use std::collections::BTreeMap;

use futures::StreamExt;

use crate::Progress;
use crate::create::BackupOptions;
use crate::error::BackupError;
use crate::files::{StreamError, hash_object, sha256_hex};
use crate::manifest::Manifest;
use crate::repository::Repository;

type Result<T, E = BackupError> = std::result::Result<T, E>;

/// A file that is missing or differs from what its manifest recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Its path in the repository (`data/bronze/t/part-0.parquet`, `backups/<id>/catalog.json`).
    pub path: String,
    /// The backups that need it.
    pub backups: Vec<String>,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub backups: Vec<String>,
    pub files: u64,
    pub bytes: u64,
    pub problems: Vec<Problem>,
}

/// Which backups to verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which<'a> {
    Newest,
    One(&'a str),
    All,
}

/// Reads every file of the chosen backups (shared files once) and compares it with the
/// manifests. Problems are reported, not raised; an unreachable repository is an error.
pub async fn verify_backups(
    repository: &Repository,
    which: Which<'_>,
    options: &BackupOptions,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let manifests = repository.manifests().await?;
    let chosen: Vec<&Manifest> = match which {
        Which::All => manifests.iter().collect(),
        Which::Newest => manifests.last().into_iter().collect(),
        Which::One(id) => manifests.iter().filter(|m| m.id == id).collect(),
    };
    if chosen.is_empty() {
        return Err(BackupError::NotFound(match which {
            Which::One(id) => format!("no backup '{id}' at {}", repository.url()),
            _ => format!("no backups at {}", repository.url()),
        }));
    }

    let mut report = VerifyReport {
        backups: chosen.iter().map(|m| m.id.clone()).collect(),
        ..VerifyReport::default()
    };
    // (object, size, sha256) → backups needing it: a shared file is read once.
    let mut expected: BTreeMap<(String, u64, String), Vec<String>> = BTreeMap::new();
    for manifest in &chosen {
        for file in manifest.files() {
            expected
                .entry((file.object().to_string(), file.size, file.sha256.clone()))
                .or_default()
                .push(manifest.id.clone());
        }
    }

    for manifest in &chosen {
        let key = repository.backup_key(&manifest.id, "catalog.json")?;
        let path = format!("backups/{}/catalog.json", manifest.id);
        report.files += 1;
        match repository.get_bytes(&key).await {
            Ok(Some(bytes)) => {
                report.bytes += bytes.len() as u64;
                let sha256 = sha256_hex(&bytes);
                if bytes.len() as u64 != manifest.catalog.size || sha256 != manifest.catalog.sha256
                {
                    report.problems.push(Problem {
                        path,
                        backups: vec![manifest.id.clone()],
                        message: format!(
                            "differs: {} bytes with sha256 {sha256}, expected {} bytes with sha256 {}",
                            bytes.len(),
                            manifest.catalog.size,
                            manifest.catalog.sha256
                        ),
                    });
                }
            }
            Ok(None) => {
                report.problems.push(Problem {
                    path,
                    backups: vec![manifest.id.clone()],
                    message: "missing".to_string(),
                });
            }
            Err(err) => return Err(err),
        }
    }

    let total: u64 = expected.keys().map(|(_, size, _)| size).sum();
    progress.start("verifying", expected.len(), total);
    let mut checks = futures::stream::iter(expected.iter().map(
        |((object, size, sha256), backups)| async move {
            check_file(repository, object, *size, sha256, backups, progress).await
        },
    ))
    .buffer_unordered(options.parallelism.max(1));
    while let Some(result) = checks.next().await {
        let (bytes, problem) = result?;
        report.files += 1;
        report.bytes += bytes;
        if let Some(problem) = problem {
            report.problems.push(problem);
        }
    }
    progress.finish();
    report.problems.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(report)
}

/// Reads one object and compares it: the bytes read, and a problem when it is not as recorded.
async fn check_file(
    repository: &Repository,
    object: &str,
    size: u64,
    sha256: &str,
    backups: &[String],
    progress: &dyn Progress,
) -> Result<(u64, Option<Problem>)> {
    let key = repository.data_key(object)?;
    let problem = |message: String| Problem {
        path: format!("data/{object}"),
        backups: backups.to_vec(),
        message,
    };
    match hash_object(repository.store(), &key, progress).await {
        Ok(digest) if digest.size == size && digest.sha256 == sha256 => Ok((size, None)),
        Ok(digest) => Ok((
            digest.size,
            Some(problem(format!(
                "differs: {} bytes with sha256 {}, expected {size} bytes with sha256 {sha256}",
                digest.size, digest.sha256
            ))),
        )),
        Err(StreamError::Read(object_store::Error::NotFound { .. })) => {
            Ok((0, Some(problem("missing".to_string()))))
        }
        Err(StreamError::Read(err) | StreamError::Write(err)) => Err(repository.storage_error(err)),
        Err(StreamError::Mismatch { .. }) => Ok((0, Some(problem("differs".to_string())))),
    }
}
