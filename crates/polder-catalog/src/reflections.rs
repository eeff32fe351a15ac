//! Reflections as the catalog stores them: a definition (opaque JSON, the engine's business),
//! where the reflection's Delta table lives, and the outcome of its last refresh. Every change
//! bumps the catalog generation, so that every process re-reads reflections before its next
//! statement; usage counts do not (they are statistics, flushed in batches).

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::store::{CatalogError, CatalogStore, bump_generation, now_millis};

type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// One reflection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReflectionRecord {
    pub name: String,
    /// `schema.table_or_view`.
    pub source: String,
    /// `raw` or `aggregate`.
    pub kind: String,
    /// JSON.
    pub definition: String,
    pub owner: String,
    pub location: String,
    /// `building`, `ready`, `failed` or `invalid`.
    pub status: String,
    pub status_reason: Option<String>,
    pub data_version: Option<i64>,
    /// JSON object `{"schema.table": version}`.
    pub source_versions: String,
    pub refreshed_at: Option<i64>,
    pub last_refresh_ms: Option<i64>,
    pub last_refresh_kind: Option<String>,
    pub row_count: Option<i64>,
    pub size_bytes: Option<i64>,
    pub usage_count: i64,
    pub last_used_at: Option<i64>,
    pub created_at: i64,
}

/// What one successful refresh produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReflectionRefresh {
    pub data_version: i64,
    pub source_versions: String,
    pub refreshed_at: i64,
    pub duration_ms: i64,
    /// `full` or `incremental`.
    pub kind: String,
    pub row_count: i64,
    pub size_bytes: i64,
}

const COLUMNS: &str = "name, source, kind, definition, owner, location, status, status_reason, \
    data_version, source_versions, refreshed_at, last_refresh_ms, last_refresh_kind, row_count, \
    size_bytes, usage_count, last_used_at, created_at";

fn from_row(row: &AnyRow) -> Result<ReflectionRecord> {
    Ok(ReflectionRecord {
        name: row.try_get(0)?,
        source: row.try_get(1)?,
        kind: row.try_get(2)?,
        definition: row.try_get(3)?,
        owner: row.try_get(4)?,
        location: row.try_get(5)?,
        status: row.try_get(6)?,
        status_reason: row.try_get(7)?,
        data_version: row.try_get(8)?,
        source_versions: row.try_get(9)?,
        refreshed_at: row.try_get(10)?,
        last_refresh_ms: row.try_get(11)?,
        last_refresh_kind: row.try_get(12)?,
        row_count: row.try_get(13)?,
        size_bytes: row.try_get(14)?,
        usage_count: row.try_get(15)?,
        last_used_at: row.try_get(16)?,
        created_at: row.try_get(17)?,
    })
}

/// Commits a change of `changed` rows, bumping the generation when there was one, so that every
/// process re-reads reflections; `true` when something changed.
async fn commit_changed(mut tx: sqlx::Transaction<'_, sqlx::Any>, changed: u64) -> Result<bool> {
    if changed > 0 {
        bump_generation(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(changed > 0)
}

impl CatalogStore {
    /// Stores a new reflection (status `building`); `Ok(false)` when the name is taken.
    pub async fn create_reflection(
        &self,
        name: &str,
        source: &str,
        kind: &str,
        definition: &str,
        owner: &str,
        location: &str,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO polder_reflections ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, 'building', NULL, NULL, '{{}}', NULL, NULL, NULL, NULL, NULL, 0, NULL, $7) \
             ON CONFLICT (name) DO NOTHING"
        ))
        .bind(name)
        .bind(source)
        .bind(kind)
        .bind(definition)
        .bind(owner)
        .bind(location)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        commit_changed(tx, inserted).await
    }

    pub async fn get_reflection(&self, name: &str) -> Result<Option<ReflectionRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM polder_reflections WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every reflection, by name.
    pub async fn list_reflections(&self) -> Result<Vec<ReflectionRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM polder_reflections ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Removes a reflection's record; `false` when there was none.
    pub async fn delete_reflection(&self, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM polder_reflections WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        commit_changed(tx, deleted).await
    }

    /// Records a finished refresh: the new data version and the source versions it holds change
    /// together, and the reflection is `ready`. Refused (`false`) when the reflection was dropped
    /// or made invalid meanwhile.
    pub async fn record_reflection_refresh(
        &self,
        name: &str,
        refresh: &ReflectionRefresh,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE polder_reflections SET status = 'ready', status_reason = NULL, \
             data_version = $2, source_versions = $3, refreshed_at = $4, last_refresh_ms = $5, \
             last_refresh_kind = $6, row_count = $7, size_bytes = $8 \
             WHERE name = $1 AND status <> 'invalid'",
        )
        .bind(name)
        .bind(refresh.data_version)
        .bind(&refresh.source_versions)
        .bind(refresh.refreshed_at)
        .bind(refresh.duration_ms)
        .bind(&refresh.kind)
        .bind(refresh.row_count)
        .bind(refresh.size_bytes)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        commit_changed(tx, updated).await
    }

    /// Sets a reflection's status (`failed`, `invalid`, `building`) and why.
    pub async fn set_reflection_status(
        &self,
        name: &str,
        status: &str,
        reason: Option<&str>,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE polder_reflections SET status = $2, status_reason = $3 WHERE name = $1",
        )
        .bind(name)
        .bind(status)
        .bind(reason)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        commit_changed(tx, updated).await
    }

    /// Adds uses counted in memory: `(name, uses, last use in ms)`. Does not bump the generation.
    pub async fn add_reflection_usage(&self, uses: &[(String, i64, i64)]) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (name, count, at) in uses {
            sqlx::query(
                "UPDATE polder_reflections SET usage_count = usage_count + $2, \
                 last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $3 THEN $3 ELSE last_used_at END \
                 WHERE name = $1",
            )
            .bind(name)
            .bind(*count)
            .bind(*at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
