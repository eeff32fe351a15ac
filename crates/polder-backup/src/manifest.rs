//! What a backup holds (its manifest), backup ids, and choosing a backup by point in time.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use polder_catalog::LocationKind;
use serde::{Deserialize, Serialize};

use crate::error::BackupError;

/// Version of the manifest's JSON layout.
pub(crate) const MANIFEST_FORMAT: u32 = 1;

/// One file of a table, by its path under the lake root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    /// Where the content is under `data/` when not at `path` (a Delta log file of a table that
    /// was dropped and created again has the path of an older, different file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// When a `_delta_log` file was written. Without in-commit timestamps, Delta takes a
    /// commit's time (`DESCRIBE HISTORY`, `TIMESTAMP AS OF`) from its file's modification
    /// time, which a restore into a local lake gives back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<DateTime<Utc>>,
}

impl FileEntry {
    /// The object's path under the repository's `data/`.
    pub fn object(&self) -> &str {
        self.object.as_deref().unwrap_or(&self.path)
    }
}

/// One Delta table (a table or a reflection) at the version the backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableManifest {
    pub kind: LocationKind,
    /// Empty for a reflection.
    pub schema: String,
    pub name: String,
    /// The table root under the lake root (`bronze/orders/`).
    pub location: String,
    pub version: i64,
    pub files: Vec<FileEntry>,
}

impl TableManifest {
    pub fn display_name(&self) -> String {
        match self.kind {
            LocationKind::Table => format!("{}.{}", self.schema, self.name),
            LocationKind::Reflection => format!("reflection {}", self.name),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogFile {
    pub migration_version: i64,
    pub rows: u64,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub tables: u64,
    pub files: u64,
    pub bytes: u64,
    pub files_copied: u64,
    pub bytes_copied: u64,
    pub files_reused: u64,
    pub bytes_reused: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    /// When the catalog was read: the point in time the backup restores to.
    pub created_at: DateTime<Utc>,
    pub polder_version: String,
    /// The lake root the tables were read from (`file:///srv/lake/`, `s3://bucket/prefix/`).
    pub lake_root: String,
    pub catalog: CatalogFile,
    pub tables: Vec<TableManifest>,
    pub totals: Totals,
}

impl Manifest {
    pub fn files(&self) -> impl Iterator<Item = &FileEntry> {
        self.tables.iter().flat_map(|t| t.files.iter())
    }
}

/// `20261127T013512Z`, with `-2`, `-3`... when a backup of the same second exists.
pub(crate) fn new_id(created_at: DateTime<Utc>, taken: &[String]) -> String {
    let base = created_at.format("%Y%m%dT%H%M%SZ").to_string();
    if !taken.contains(&base) {
        return base;
    }
    let mut suffix = 2;
    loop {
        let candidate = format!("{base}-{suffix}");
        if !taken.contains(&candidate) {
            return candidate;
        }
        suffix += 1;
    }
}

/// Parses a point in time: RFC 3339, or `YYYY-MM-DD[ HH:MM[:SS]]` (also with `T`) in UTC.
pub fn parse_as_of(text: &str) -> Result<DateTime<Utc>, BackupError> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let normalized = text.replacen('T', " ", 1);
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(time) = NaiveDateTime::parse_from_str(&normalized, format) {
            return Ok(time.and_utc());
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && let Some(time) = date.and_hms_opt(0, 0, 0)
    {
        return Ok(time.and_utc());
    }
    Err(BackupError::InvalidInput(format!(
        "cannot read '{text}' as a point in time: use RFC 3339 (2026-11-27T01:35:12Z) or YYYY-MM-DD[ HH:MM[:SS]] (UTC)"
    )))
}

/// The backup to restore from `manifests` (in any order): the one named `id`, else the newest
/// created at or before `as_of`, else the newest.
pub fn select_backup<'a>(
    manifests: &'a [Manifest],
    id: Option<&str>,
    as_of: Option<DateTime<Utc>>,
    repository: &str,
) -> Result<&'a Manifest, BackupError> {
    if manifests.is_empty() {
        return Err(BackupError::NotFound(format!("no backups at {repository}")));
    }
    if let Some(id) = id {
        return manifests
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| BackupError::NotFound(format!("no backup '{id}' at {repository}")));
    }
    let newest_fitting = manifests
        .iter()
        .filter(|m| as_of.is_none_or(|limit| m.created_at <= limit))
        .max_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    match (newest_fitting, as_of) {
        (Some(manifest), _) => Ok(manifest),
        (None, Some(limit)) => {
            let oldest = manifests
                .iter()
                .min_by_key(|m| m.created_at)
                .map(|m| format!("{} ({})", m.id, m.created_at.to_rfc3339()))
                .unwrap_or_default();
            Err(BackupError::NotFound(format!(
                "no backup at {repository} was made at or before {}; the oldest is {oldest}",
                limit.to_rfc3339()
            )))
        }
        (None, None) => Err(BackupError::NotFound(format!("no backups at {repository}"))),
    }
}

/// An empty manifest made at `created_at`, for tests of what is chosen among backups.
#[cfg(test)]
pub(crate) fn test_manifest(id: &str, created_at: DateTime<Utc>) -> Manifest {
    Manifest {
        format: MANIFEST_FORMAT,
        id: id.to_string(),
        created_at,
        polder_version: "test".to_string(),
        lake_root: "file:///lake/".to_string(),
        catalog: CatalogFile {
            migration_version: 8,
            rows: 0,
            size: 0,
            sha256: String::new(),
        },
        tables: Vec::new(),
        totals: Totals::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    use super::test_manifest as manifest;

    fn at(hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, hour, minute, 0).unwrap()
    }

    #[test]
    fn as_of_picks_the_newest_backup_at_or_before_the_time() {
        let manifests = vec![
            manifest("b", at(2, 0)),
            manifest("a", at(1, 0)),
            manifest("c", at(3, 0)),
        ];
        let pick = |as_of| {
            select_backup(&manifests, None, as_of, "file:///r/")
                .map(|m| m.id.clone())
                .map_err(|e| e.to_string())
        };
        assert_eq!(pick(None).unwrap(), "c");
        assert_eq!(pick(Some(at(2, 30))).unwrap(), "b");
        assert_eq!(pick(Some(at(2, 0))).unwrap(), "b", "at counts");
        assert_eq!(pick(Some(at(9, 0))).unwrap(), "c");
        let err = pick(Some(at(0, 30))).unwrap_err();
        assert!(
            err.contains("at or before") && err.contains("oldest is a"),
            "{err}"
        );
        assert_eq!(
            select_backup(&manifests, Some("a"), None, "r").unwrap().id,
            "a"
        );
        assert!(select_backup(&manifests, Some("zz"), None, "r").is_err());
        let err = select_backup(&[], None, None, "file:///empty/").unwrap_err();
        assert_eq!(err.to_string(), "no backups at file:///empty/");
    }

    #[test]
    fn points_in_time_in_several_spellings() {
        let expected = Utc.with_ymd_and_hms(2026, 11, 27, 1, 35, 12).unwrap();
        for text in [
            "2026-11-27T01:35:12Z",
            "2026-11-27T02:35:12+01:00",
            "2026-11-27 01:35:12",
            "2026-11-27T01:35:12",
        ] {
            assert_eq!(parse_as_of(text).unwrap(), expected, "{text}");
        }
        assert_eq!(
            parse_as_of("2026-11-27 01:35").unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 27, 1, 35, 0).unwrap()
        );
        assert_eq!(
            parse_as_of("2026-11-27").unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap()
        );
        assert!(parse_as_of("yesterday").is_err());
        assert!(parse_as_of("2026-13-01").is_err());
    }

    #[test]
    fn ids_are_utc_seconds_made_unique() {
        let time = Utc.with_ymd_and_hms(2026, 11, 27, 1, 35, 12).unwrap();
        assert_eq!(new_id(time, &[]), "20261127T013512Z");
        let taken = vec![
            "20261127T013512Z".to_string(),
            "20261127T013512Z-2".to_string(),
        ];
        assert_eq!(new_id(time, &taken), "20261127T013512Z-3");
    }

    #[test]
    fn manifests_round_trip_through_json() {
        let mut original = manifest("a", at(1, 0));
        original.tables.push(TableManifest {
            kind: LocationKind::Table,
            schema: "s".to_string(),
            name: "t".to_string(),
            location: "s/t/".to_string(),
            version: 3,
            files: vec![FileEntry {
                path: "s/t/_delta_log/00000000000000000000.json".to_string(),
                size: 10,
                sha256: "ab".to_string(),
                object: None,
                modified: Some(at(1, 0)),
            }],
        });
        let text = serde_json::to_string(&original).unwrap();
        assert!(!text.contains("\"object\""), "{text}");
        assert!(text.contains("\"kind\":\"table\""), "{text}");
        let back: Manifest = serde_json::from_str(&text).unwrap();
        assert_eq!(back, original);
    }
}
