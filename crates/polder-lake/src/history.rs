//! A table's commit history (`DESCRIBE HISTORY`), read from the Delta log.
//!
//! deltalake's own history stream does not say which version each entry belongs to, so the
//! log is listed here and each commit's version is taken from its file name.

use deltalake::DeltaTable;
use deltalake::kernel::Action;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use crate::error::LakeError;

/// One commit of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub version: i64,
    /// Commit time, milliseconds since the Unix epoch: when the commit's log file was written
    /// (the time `TIMESTAMP AS OF` compares with), or the in-commit timestamp when recorded.
    pub timestamp: Option<i64>,
    pub operation: Option<String>,
    /// Operation parameters as a JSON object text.
    pub parameters: Option<String>,
    /// Operation metrics (rows and files added or removed) as a JSON object text.
    pub metrics: Option<String>,
    pub user_name: Option<String>,
    pub read_version: Option<i64>,
    pub is_blind_append: Option<bool>,
    pub engine_info: Option<String>,
    /// What Polder recorded with the commit (keys starting with `polder.`): for example the
    /// sync that wrote it and the source state it reached.
    pub polder_metadata: serde_json::Map<String, serde_json::Value>,
}

fn commit_version(file_name: &str) -> Option<i64> {
    let stem = file_name.strip_suffix(".json")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

pub(crate) async fn read_history(
    table: &DeltaTable,
    limit: Option<usize>,
) -> Result<Vec<HistoryEntry>, LakeError> {
    let location = table.table_url().to_string();
    let log_store = table.log_store();
    let store = log_store.object_store(None);
    let log_path = object_store::path::Path::from("_delta_log");
    let objects: Vec<_> = store
        .list(Some(&log_path))
        .try_collect()
        .await
        .map_err(|e| LakeError::from_object_store(&location, e))?;

    // (version, path, time the commit file was written)
    let mut commits: Vec<(i64, object_store::path::Path, i64)> = objects
        .into_iter()
        .filter_map(|meta| {
            let version = commit_version(meta.location.filename()?)?;
            Some((
                version,
                meta.location,
                meta.last_modified.timestamp_millis(),
            ))
        })
        .collect();
    commits.sort_by_key(|c| std::cmp::Reverse(c.0));
    if let Some(limit) = limit {
        commits.truncate(limit);
    }

    let mut entries = Vec::with_capacity(commits.len());
    for (version, path, written_at) in commits {
        let bytes = store
            .get(&path)
            .await
            .map_err(|e| LakeError::from_object_store(&location, e))?
            .bytes()
            .await
            .map_err(|e| LakeError::from_object_store(&location, e))?;
        let mut entry = HistoryEntry {
            version,
            timestamp: Some(written_at),
            operation: None,
            parameters: None,
            metrics: None,
            user_name: None,
            read_version: None,
            is_blind_append: None,
            engine_info: None,
            polder_metadata: serde_json::Map::new(),
        };
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(Action::CommitInfo(info)) = serde_json::from_slice::<Action>(line) else {
                continue;
            };
            // The commit's time is when its log file was written (what `TIMESTAMP AS OF`
            // searches by), unless the table records in-commit timestamps.
            if let Some(in_commit) = info.in_commit_timestamp {
                entry.timestamp = Some(in_commit);
            }
            entry.operation = info.operation;
            entry.parameters = info
                .operation_parameters
                .map(|p| serde_json::to_string(&p).unwrap_or_default());
            entry.metrics = info.info.get("operationMetrics").map(|m| m.to_string());
            entry.user_name = info.user_name;
            entry.read_version = info.read_version.map(|v| v as i64);
            entry.is_blind_append = info.is_blind_append;
            entry.engine_info = info.engine_info;
            entry.polder_metadata = info
                .info
                .iter()
                .filter(|(key, _)| key.starts_with("polder."))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            break;
        }
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::commit_version;

    #[test]
    fn only_commit_files_have_versions() {
        assert_eq!(commit_version("00000000000000000007.json"), Some(7));
        assert_eq!(
            commit_version("00000000000000000010.checkpoint.parquet"),
            None
        );
        assert_eq!(commit_version("_last_checkpoint"), None);
        assert_eq!(commit_version("00000000000000000001.crc"), None);
    }
}
