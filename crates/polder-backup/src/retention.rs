//! Retention: which backups to delete after a new one, and the shared files no backup left
//! needs.

use std::collections::HashSet;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;

use crate::error::BackupError;
use crate::manifest::Manifest;
use crate::repository::Repository;

/// Deletes at once.
const DELETES_IN_FLIGHT: usize = 16;

/// Files under `data/` that no backup references and no deleted backup referenced either are
/// left over by an interrupted backup, or belong to one still running; they are deleted once
/// they are this old.
const LEFTOVER_GRACE_HOURS: i64 = 24;

/// How many backups to keep: those younger than an age, or the newest N. The newest backup is
/// always kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Count(usize),
    Age(Duration),
}

impl FromStr for Retention {
    type Err = BackupError;

    /// `30d` (days), `12h` (hours) or `7` (a count of backups).
    fn from_str(text: &str) -> Result<Self, BackupError> {
        let invalid = || {
            BackupError::InvalidInput(format!(
                "invalid retention '{text}': use <N>d (days), <N>h (hours) or <N> (a number of backups), N at least 1"
            ))
        };
        let text = text.trim();
        let (number, unit) = match text.char_indices().last() {
            Some((index, unit @ ('d' | 'h'))) => (&text[..index], Some(unit)),
            _ => (text, None),
        };
        let count: u32 = number.parse().map_err(|_| invalid())?;
        if count == 0 {
            return Err(invalid());
        }
        Ok(match unit {
            Some('d') => Retention::Age(Duration::days(i64::from(count))),
            Some(_) => Retention::Age(Duration::hours(i64::from(count))),
            None => Retention::Count(count as usize),
        })
    }
}

impl std::fmt::Display for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Retention::Count(count) => write!(f, "the newest {count}"),
            Retention::Age(age) if age.num_hours() % 24 == 0 => {
                write!(f, "{} days", age.num_days())
            }
            Retention::Age(age) => write!(f, "{} hours", age.num_hours()),
        }
    }
}

/// Ids of the backups `keep` lets go, as of `now`; never the newest.
pub fn expired_backups(manifests: &[Manifest], keep: Retention, now: DateTime<Utc>) -> Vec<String> {
    let mut newest_first: Vec<&Manifest> = manifests.iter().collect();
    newest_first.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    let mut expired = Vec::new();
    for (index, manifest) in newest_first.iter().enumerate() {
        if index == 0 {
            continue;
        }
        let goes = match keep {
            Retention::Count(count) => index >= count,
            Retention::Age(age) => manifest.created_at < now - age,
        };
        if goes {
            expired.push(manifest.id.clone());
        }
    }
    expired
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Ids of the deleted backups.
    pub removed: Vec<String>,
    pub kept: usize,
    pub files_deleted: u64,
    pub bytes_deleted: u64,
}

/// Deletes the backups `keep` lets go (manifest first, so each stops existing at once), then
/// the files under `data/` that no remaining backup references.
pub async fn apply_retention(
    repository: &Repository,
    keep: Retention,
    now: DateTime<Utc>,
) -> Result<RetentionReport, BackupError> {
    let manifests = repository.manifests().await?;
    let expired = expired_backups(&manifests, keep, now);
    let mut report = RetentionReport {
        kept: manifests.len() - expired.len(),
        ..RetentionReport::default()
    };

    let mut referenced = HashSet::new();
    let mut released = HashSet::new();
    for manifest in &manifests {
        let set = if expired.contains(&manifest.id) {
            &mut released
        } else {
            &mut referenced
        };
        for file in manifest.files() {
            set.insert(repository.data_key(file.object())?);
        }
    }

    for id in &expired {
        repository
            .delete(&repository.backup_key(id, "manifest.json")?)
            .await?;
        let dir = repository.backup_dir(id)?;
        for object in repository.list(&dir).await? {
            repository.delete(&object.location).await?;
        }
        tracing::info!(backup = %id, "backup deleted by retention");
        report.removed.push(id.clone());
    }

    let grace_limit = now - Duration::hours(LEFTOVER_GRACE_HOURS);
    // Directories of backups that never got a manifest (interrupted between the catalog export
    // and the manifest), once old enough not to belong to one still running.
    for dir_name in repository.backup_dirs().await? {
        if manifests.iter().any(|m| m.id == dir_name) || report.removed.contains(&dir_name) {
            continue;
        }
        let objects = repository.list(&repository.backup_dir(&dir_name)?).await?;
        if objects.iter().all(|o| o.last_modified < grace_limit) {
            for object in objects {
                repository.delete(&object.location).await?;
            }
            tracing::info!(backup = %dir_name, "unfinished backup deleted by retention");
        }
    }

    let mut doomed = Vec::new();
    for object in repository.list(&repository.data_dir()?).await? {
        if referenced.contains(&object.location) {
            continue;
        }
        if released.contains(&object.location) || object.last_modified < grace_limit {
            doomed.push(object);
        }
    }
    let deletes = doomed.into_iter().map(|object| async move {
        repository
            .delete(&object.location)
            .await
            .map(|()| object.size)
    });
    let mut results = futures::stream::iter(deletes).buffer_unordered(DELETES_IN_FLIGHT);
    while let Some(result) = results.next().await {
        report.bytes_deleted += result?;
        report.files_deleted += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn manifest(id: &str, days_ago: i64, now: DateTime<Utc>) -> Manifest {
        crate::manifest::test_manifest(id, now - Duration::days(days_ago))
    }

    #[test]
    fn retention_rules_parse() {
        assert_eq!(
            "30d".parse::<Retention>().unwrap(),
            Retention::Age(Duration::days(30))
        );
        assert_eq!(
            "12h".parse::<Retention>().unwrap(),
            Retention::Age(Duration::hours(12))
        );
        assert_eq!("7".parse::<Retention>().unwrap(), Retention::Count(7));
        for bad in ["0", "0d", "-1", "d", "30m", "", "1.5d", "ten"] {
            let err = bad.parse::<Retention>().unwrap_err().to_string();
            assert!(err.contains("invalid retention"), "{bad}: {err}");
        }
        assert_eq!(Retention::Age(Duration::days(30)).to_string(), "30 days");
        assert_eq!(Retention::Count(2).to_string(), "the newest 2");
    }

    #[test]
    fn retention_keeps_the_newest_and_what_the_rule_allows() {
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
        let manifests = vec![
            manifest("d40", 40, now),
            manifest("d1", 1, now),
            manifest("d10", 10, now),
            manifest("d31", 31, now),
        ];
        let mut by_age = expired_backups(&manifests, Retention::Age(Duration::days(30)), now);
        by_age.sort();
        assert_eq!(by_age, vec!["d31", "d40"]);
        let mut by_count = expired_backups(&manifests, Retention::Count(2), now);
        by_count.sort();
        assert_eq!(by_count, vec!["d31", "d40"]);
        assert_eq!(
            expired_backups(&manifests, Retention::Count(1), now).len(),
            3
        );
        // Even when every backup is older than the age, the newest stays.
        let old = vec![manifest("a", 90, now), manifest("b", 60, now)];
        assert_eq!(
            expired_backups(&old, Retention::Age(Duration::days(30)), now),
            vec!["a"]
        );
        assert!(expired_backups(&[], Retention::Count(1), now).is_empty());
    }
}
