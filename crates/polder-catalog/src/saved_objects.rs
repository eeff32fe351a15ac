//! Saved queries, charts and dashboards as the catalog stores them: a name, an owner and a
//! JSON body. What a body means (a chart's spec, a dashboard's tiles) is the server's business.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::store::{CatalogError, CatalogStore, now_millis};

type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// What a saved object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SavedObjectKind {
    SavedQuery,
    Chart,
    Dashboard,
}

impl SavedObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SavedObjectKind::SavedQuery => "saved_query",
            SavedObjectKind::Chart => "chart",
            SavedObjectKind::Dashboard => "dashboard",
        }
    }
}

/// One saved object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedObjectRecord {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub description: String,
    pub owner: String,
    /// JSON.
    pub body: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, kind, name, description, owner, body, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<SavedObjectRecord> {
    Ok(SavedObjectRecord {
        id: row.try_get(0)?,
        kind: row.try_get(1)?,
        name: row.try_get(2)?,
        description: row.try_get(3)?,
        owner: row.try_get(4)?,
        body: row.try_get(5)?,
        created_at: row.try_get(6)?,
        updated_at: row.try_get(7)?,
    })
}

impl CatalogStore {
    /// Stores a new object; its id and times are set here and returned.
    pub async fn create_saved_object(
        &self,
        kind: SavedObjectKind,
        name: &str,
        description: &str,
        owner: &str,
        body: &str,
    ) -> Result<SavedObjectRecord> {
        let now = now_millis();
        let record = SavedObjectRecord {
            id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            kind: kind.as_str().to_string(),
            name: name.to_string(),
            description: description.to_string(),
            owner: owner.to_string(),
            body: body.to_string(),
            created_at: now,
            updated_at: now,
        };
        sqlx::query(&format!(
            "INSERT INTO polder_saved_objects ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&record.id)
        .bind(&record.kind)
        .bind(&record.name)
        .bind(&record.description)
        .bind(&record.owner)
        .bind(&record.body)
        .bind(record.created_at)
        .bind(record.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(record)
    }

    pub async fn get_saved_object(
        &self,
        kind: SavedObjectKind,
        id: &str,
    ) -> Result<Option<SavedObjectRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM polder_saved_objects WHERE kind = $1 AND id = $2"
        ))
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every object of a kind, by name.
    pub async fn list_saved_objects(
        &self,
        kind: SavedObjectKind,
    ) -> Result<Vec<SavedObjectRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM polder_saved_objects WHERE kind = $1 ORDER BY name, created_at"
        ))
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Replaces an object's name, description and body; `None` when there is no such object.
    pub async fn update_saved_object(
        &self,
        kind: SavedObjectKind,
        id: &str,
        name: &str,
        description: &str,
        body: &str,
    ) -> Result<Option<SavedObjectRecord>> {
        let updated = sqlx::query(
            "UPDATE polder_saved_objects SET name = $3, description = $4, body = $5, updated_at = $6 WHERE kind = $1 AND id = $2",
        )
        .bind(kind.as_str())
        .bind(id)
        .bind(name)
        .bind(description)
        .bind(body)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        self.get_saved_object(kind, id).await
    }

    /// `false` when there was no such object.
    pub async fn delete_saved_object(&self, kind: SavedObjectKind, id: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM polder_saved_objects WHERE kind = $1 AND id = $2")
            .bind(kind.as_str())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }
}
