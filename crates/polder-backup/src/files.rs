//! Which files of a Delta table a backup takes, and streaming copies that hash as they go.

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use ring::digest::{Context, SHA256};

use crate::Progress;

/// Files up to this size are buffered and written with one request; larger ones stream as a
/// multipart upload in parts of this size (S3 wants parts of at least 5 MiB).
const PART_SIZE: usize = 8 * 1024 * 1024;

/// Multipart parts of one file in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

/// Whether the file at `path` (relative to a Delta table's root) belongs in a backup of the
/// table at `version`.
///
/// Under `_delta_log/` only commits, checkpoints (classic, multi-part, v2), checksums and
/// compactions up to `version` are taken, and v2 checkpoint sidecars: later versions belong
/// to a later state, `_last_checkpoint` changes in place (readers find the checkpoint by
/// listing) and temporary files are not part of any version. Every other file (data files,
/// deletion vectors, change data) is taken, including ones only older versions reference, so
/// time travel keeps working after a restore.
pub(crate) fn is_backed_up(path: &str, version: u64) -> bool {
    let Some(log_file) = path.strip_prefix("_delta_log/") else {
        return !is_temporary(path);
    };
    if log_file.starts_with("_sidecars/") {
        return !is_temporary(log_file);
    }
    if log_file.contains('/') || is_temporary(log_file) {
        return false;
    }
    match log_file_version(log_file) {
        Some(file_version) => file_version <= version,
        None => false,
    }
}

fn is_temporary(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.ends_with(".tmp") || name.starts_with("_commit_") || name.starts_with(".tmp")
}

/// The version a log file's name belongs to: `00000000000000000007.json` → 7; a compaction
/// `<from>.<to>.compacted.json` belongs to `<to>`.
fn log_file_version(name: &str) -> Option<u64> {
    let mut parts = name.split('.');
    let first = parts.next()?;
    if first.len() != 20 || !first.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let version: u64 = first.parse().ok()?;
    let rest: Vec<&str> = parts.collect();
    match rest.as_slice() {
        ["json"] | ["crc"] | ["checkpoint", "parquet"] => Some(version),
        // multi-part (`.checkpoint.0000000001.0000000002.parquet`) and v2 (`.checkpoint.<uuid>.json`)
        ["checkpoint", .., "parquet" | "json"] => Some(version),
        [to, "compacted", "json"] if to.len() == 20 => to.parse().ok(),
        _ => None,
    }
}

/// Lower-case hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&SHA256, bytes).as_ref())
}

/// Size and SHA-256 of what was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Digest {
    pub size: u64,
    pub sha256: String,
}

/// Why a streamed file failed: the source, the destination, or its content.
#[derive(Debug)]
pub(crate) enum StreamError {
    Read(object_store::Error),
    Write(object_store::Error),
    /// The content read does not have the expected size or hash; nothing was written.
    Mismatch {
        expected: Digest,
        actual: Digest,
    },
}

/// Reads `path` to the end, hashing it (nothing is kept in memory).
pub(crate) async fn hash_object(
    store: &dyn ObjectStore,
    path: &Path,
    progress: &dyn Progress,
) -> Result<Digest, StreamError> {
    let mut stream = store
        .get(path)
        .await
        .map_err(StreamError::Read)?
        .into_stream();
    let mut context = Context::new(&SHA256);
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(StreamError::Read)?;
        context.update(&chunk);
        size += chunk.len() as u64;
        progress.advance(chunk.len() as u64);
    }
    Ok(Digest {
        size,
        sha256: hex(context.finish().as_ref()),
    })
}

/// Copies `from` to `to`, streaming and hashing. With `expected`, a content of another size
/// or hash is not written at all (a multipart upload is aborted before it completes).
pub(crate) async fn copy_object(
    source: &dyn ObjectStore,
    from: &Path,
    target: &dyn ObjectStore,
    to: &Path,
    expected: Option<&Digest>,
    progress: &dyn Progress,
) -> Result<Digest, StreamError> {
    let mut stream = source
        .get(from)
        .await
        .map_err(StreamError::Read)?
        .into_stream();
    let mut context = Context::new(&SHA256);
    let mut size = 0u64;
    let mut buffered = Vec::new();
    let mut buffered_len = 0usize;
    let mut upload: Option<WriteMultipart> = None;

    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(err) => {
                if let Some(upload) = upload {
                    let _ = upload.abort().await;
                }
                return Err(StreamError::Read(err));
            }
        };
        context.update(&chunk);
        size += chunk.len() as u64;
        progress.advance(chunk.len() as u64);
        if let Some(writer) = upload.as_mut() {
            if let Err(err) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                if let Some(upload) = upload {
                    let _ = upload.abort().await;
                }
                return Err(StreamError::Write(err));
            }
            writer.put(chunk);
            continue;
        }
        buffered_len += chunk.len();
        buffered.push(chunk);
        if buffered_len > PART_SIZE {
            let multipart = target.put_multipart(to).await.map_err(StreamError::Write)?;
            let mut writer = WriteMultipart::new_with_chunk_size(multipart, PART_SIZE);
            for part in buffered.drain(..) {
                writer.put(part);
            }
            upload = Some(writer);
        }
    }

    let actual = Digest {
        size,
        sha256: hex(context.finish().as_ref()),
    };
    if let Some(expected) = expected
        && *expected != actual
    {
        if let Some(upload) = upload {
            let _ = upload.abort().await;
        }
        return Err(StreamError::Mismatch {
            expected: expected.clone(),
            actual,
        });
    }
    match upload {
        Some(writer) => {
            writer.finish().await.map_err(StreamError::Write)?;
        }
        None => {
            let payload: PutPayload = buffered.into_iter().collect();
            target.put(to, payload).await.map_err(StreamError::Write)?;
        }
    }
    Ok(actual)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_log_is_taken_up_to_the_version_and_data_always() {
        let taken = |path: &str| is_backed_up(path, 7);
        // commits, checksums and checkpoints up to version 7
        assert!(taken("_delta_log/00000000000000000000.json"));
        assert!(taken("_delta_log/00000000000000000007.json"));
        assert!(taken("_delta_log/00000000000000000007.crc"));
        assert!(taken("_delta_log/00000000000000000005.checkpoint.parquet"));
        assert!(taken(
            "_delta_log/00000000000000000005.checkpoint.0000000001.0000000002.parquet"
        ));
        assert!(taken(
            "_delta_log/00000000000000000005.checkpoint.80a083e8-7026-4e79-81be-64bd76c43a11.json"
        ));
        assert!(taken(
            "_delta_log/00000000000000000001.00000000000000000004.compacted.json"
        ));
        assert!(taken(
            "_delta_log/_sidecars/3a0d65cd-4056-49b8-937b-95f9e3ee90e5.parquet"
        ));
        // later versions, the mutable pointer and temporary files are not
        assert!(!taken("_delta_log/00000000000000000008.json"));
        assert!(!taken("_delta_log/00000000000000000010.checkpoint.parquet"));
        assert!(!taken(
            "_delta_log/00000000000000000001.00000000000000000009.compacted.json"
        ));
        assert!(!taken("_delta_log/_last_checkpoint"));
        assert!(!taken("_delta_log/_commit_2a6f1b7c.json.tmp"));
        assert!(!taken("_delta_log/00000000000000000003.json.tmp"));
        assert!(!taken("_delta_log/.s3-optimization-0"));
        assert!(!taken("_delta_log/0000000000000000003.json"), "19 digits");
        // data files, partitions, deletion vectors, change data: all of them
        assert!(taken("part-00000-0b7c9f0e-c000.snappy.parquet"));
        assert!(taken("year=2024/part-00001-1e2d-c000.zstd.parquet"));
        assert!(taken(
            "deletion_vector_5f1c2d3e-aaaa-bbbb-cccc-0123456789ab.bin"
        ));
        assert!(taken("_change_data/cdc-00000-0b7c.snappy.parquet"));
        assert!(!taken("part-00002-tmp.parquet.tmp"));
    }

    struct Counter(std::sync::atomic::AtomicU64);

    impl Progress for Counter {
        fn advance(&self, bytes: u64) {
            self.0
                .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn copies_hash_small_and_large_files_and_refuse_a_wrong_expected_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let counter = Counter(Default::default());
        for size in [0usize, 10, PART_SIZE * 2 + 123] {
            let content: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let from = Path::from(format!("src/{size}.bin"));
            let to = Path::from(format!("dst/{size}.bin"));
            store.put(&from, content.clone().into()).await.unwrap();
            let digest = copy_object(&*store, &from, &*store, &to, None, &counter)
                .await
                .unwrap();
            assert_eq!(digest.size, size as u64);
            assert_eq!(digest.sha256, sha256_hex(&content));
            let copied = store.get(&to).await.unwrap().bytes().await.unwrap();
            assert_eq!(copied.as_ref(), content.as_slice());
            assert_eq!(hash_object(&*store, &to, &counter).await.unwrap(), digest);

            // With a wrong expectation nothing is written.
            let wrong = Digest {
                size: digest.size,
                sha256: "00".repeat(32),
            };
            let elsewhere = Path::from(format!("bad/{size}.bin"));
            let result =
                copy_object(&*store, &from, &*store, &elsewhere, Some(&wrong), &counter).await;
            assert!(matches!(result, Err(StreamError::Mismatch { .. })));
            assert!(
                store.head(&elsewhere).await.is_err(),
                "nothing at {elsewhere}"
            );
        }
        assert!(counter.0.load(std::sync::atomic::Ordering::Relaxed) > 0);
    }
}
