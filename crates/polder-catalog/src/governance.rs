//! Row access policies, column masks, user attributes, sealed secrets and query history, as
//! the catalog stores them. What they mean is the engine's and the server's business.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::store::{CatalogError, CatalogStore, bump_generation, now_millis};

type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// `CREATE POLICY name ON schema.table [TO ...] USING (predicate)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowPolicyRecord {
    pub schema: String,
    pub table: String,
    pub name: String,
    /// SQL predicate over the table's columns.
    pub predicate: String,
    /// Users and roles it applies to; empty for every non-admin user.
    pub applies_to: Vec<String>,
    pub created_by: String,
    pub created_at: i64,
}

/// `CREATE COLUMN MASK name ON schema.table (column) USING (expression) [EXEMPT ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMaskRecord {
    pub schema: String,
    pub table: String,
    pub name: String,
    pub column: String,
    /// SQL expression whose value replaces the column's.
    pub expression: String,
    /// Users and roles that see the real value (admins always do).
    pub exempt: Vec<String>,
    pub created_by: String,
    pub created_at: i64,
}

/// A stored secret: only its sealed (encrypted) form is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRecord {
    pub name: String,
    pub sealed: String,
    pub description: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One finished (or failed, or cancelled) statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRecord {
    pub id: String,
    pub user_name: String,
    /// `http`, `postgres`, `flight_sql`, `cli`.
    pub interface: String,
    pub client: String,
    pub statement: String,
    /// Milliseconds since the epoch.
    pub started_at: i64,
    pub duration_ms: i64,
    /// Rows sent to the client (or changed, for DML); `None` when unknown.
    pub rows: Option<i64>,
    /// `ok`, `error` or `cancelled`.
    pub status: String,
    pub error: String,
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn policy_from_row(row: &AnyRow) -> Result<RowPolicyRecord> {
    Ok(RowPolicyRecord {
        schema: row.try_get(0)?,
        table: row.try_get(1)?,
        name: row.try_get(2)?,
        predicate: row.try_get(3)?,
        applies_to: split_list(&row.try_get::<String, _>(4)?),
        created_by: row.try_get(5)?,
        created_at: row.try_get(6)?,
    })
}

fn mask_from_row(row: &AnyRow) -> Result<ColumnMaskRecord> {
    Ok(ColumnMaskRecord {
        schema: row.try_get(0)?,
        table: row.try_get(1)?,
        name: row.try_get(2)?,
        column: row.try_get(3)?,
        expression: row.try_get(4)?,
        exempt: split_list(&row.try_get::<String, _>(5)?),
        created_by: row.try_get(6)?,
        created_at: row.try_get(7)?,
    })
}

fn secret_from_row(row: &AnyRow) -> Result<SecretRecord> {
    Ok(SecretRecord {
        name: row.try_get(0)?,
        sealed: row.try_get(1)?,
        description: row.try_get(2)?,
        created_by: row.try_get(3)?,
        created_at: row.try_get(4)?,
        updated_at: row.try_get(5)?,
    })
}

/// Removes the policies and masks of a dropped table (or of every table of a dropped schema).
pub(crate) async fn forget_table_rules(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    schema: &str,
    table: Option<&str>,
) -> Result<()> {
    for rules in ["polder_row_policies", "polder_column_masks"] {
        match table {
            Some(table) => {
                sqlx::query(&format!(
                    "DELETE FROM {rules} WHERE schema_name = $1 AND table_name = $2"
                ))
                .bind(schema)
                .bind(table)
                .execute(&mut **tx)
                .await?;
            }
            None => {
                sqlx::query(&format!("DELETE FROM {rules} WHERE schema_name = $1"))
                    .bind(schema)
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }
    Ok(())
}

impl CatalogStore {
    pub async fn create_row_policy(&self, policy: &RowPolicyRecord) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO polder_row_policies (schema_name, table_name, name, predicate, applies_to, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&policy.schema)
        .bind(&policy.table)
        .bind(&policy.name)
        .bind(&policy.predicate)
        .bind(policy.applies_to.join(","))
        .bind(&policy.created_by)
        .bind(policy.created_at)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(CatalogError::ObjectExists {
                kind: "row policy",
                name: format!("{} on {}.{}", policy.name, policy.schema, policy.table),
            });
        }
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Drops a row policy; `false` when there was none of that name.
    pub async fn drop_row_policy(&self, schema: &str, table: &str, name: &str) -> Result<bool> {
        self.drop_rule("polder_row_policies", schema, table, name)
            .await
    }

    /// Deletes one row of `rules` (policies or masks) by table and name.
    async fn drop_rule(&self, rules: &str, schema: &str, table: &str, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query(&format!(
            "DELETE FROM {rules} WHERE schema_name = $1 AND table_name = $2 AND name = $3"
        ))
        .bind(schema)
        .bind(table)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(deleted.rows_affected() > 0)
    }

    pub async fn list_row_policies(&self) -> Result<Vec<RowPolicyRecord>> {
        let rows = sqlx::query(
            "SELECT schema_name, table_name, name, predicate, applies_to, created_by, created_at FROM polder_row_policies ORDER BY schema_name, table_name, name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(policy_from_row).collect()
    }

    pub async fn create_column_mask(&self, mask: &ColumnMaskRecord) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO polder_column_masks (schema_name, table_name, name, column_name, expression, exempt, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(&mask.schema)
        .bind(&mask.table)
        .bind(&mask.name)
        .bind(&mask.column)
        .bind(&mask.expression)
        .bind(mask.exempt.join(","))
        .bind(&mask.created_by)
        .bind(mask.created_at)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(CatalogError::ObjectExists {
                kind: "column mask",
                name: format!(
                    "{} (or a mask of column {}) on {}.{}",
                    mask.name, mask.column, mask.schema, mask.table
                ),
            });
        }
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Drops a column mask; `false` when there was none of that name.
    pub async fn drop_column_mask(&self, schema: &str, table: &str, name: &str) -> Result<bool> {
        self.drop_rule("polder_column_masks", schema, table, name)
            .await
    }

    pub async fn list_column_masks(&self) -> Result<Vec<ColumnMaskRecord>> {
        let rows = sqlx::query(
            "SELECT schema_name, table_name, name, column_name, expression, exempt, created_by, created_at FROM polder_column_masks ORDER BY schema_name, table_name, name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(mask_from_row).collect()
    }

    /// Sets (`Some`) or removes (`None`) attributes of a user, in one transaction.
    pub async fn set_user_attributes(
        &self,
        user: &str,
        changes: &BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query("SELECT 1 FROM polder_users WHERE name = $1")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(CatalogError::UserNotFound(user.to_string()));
        }
        for (name, value) in changes {
            sqlx::query("DELETE FROM polder_user_attributes WHERE user_name = $1 AND name = $2")
                .bind(user)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            if let Some(value) = value {
                sqlx::query(
                    "INSERT INTO polder_user_attributes (user_name, name, value) VALUES ($1, $2, $3)",
                )
                .bind(user)
                .bind(name)
                .bind(value)
                .execute(&mut *tx)
                .await?;
            }
        }
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every user's attributes: user -> name -> value.
    pub async fn user_attributes(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        let rows = sqlx::query(
            "SELECT user_name, name, value FROM polder_user_attributes ORDER BY user_name, name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut attributes: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for row in &rows {
            attributes
                .entry(row.try_get(0)?)
                .or_default()
                .insert(row.try_get(1)?, row.try_get(2)?);
        }
        Ok(attributes)
    }

    /// Creates or replaces a sealed secret; returns `true` when it replaced one.
    pub async fn put_secret(&self, secret: &SecretRecord) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE polder_secrets SET sealed = $2, description = $3, updated_at = $4 WHERE name = $1",
        )
        .bind(&secret.name)
        .bind(&secret.sealed)
        .bind(&secret.description)
        .bind(secret.updated_at)
        .execute(&mut *tx)
        .await?;
        let replaced = updated.rows_affected() > 0;
        if !replaced {
            sqlx::query(
                "INSERT INTO polder_secrets (name, sealed, description, created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&secret.name)
            .bind(&secret.sealed)
            .bind(&secret.description)
            .bind(&secret.created_by)
            .bind(secret.created_at)
            .bind(secret.updated_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(replaced)
    }

    pub async fn get_secret(&self, name: &str) -> Result<Option<SecretRecord>> {
        let row = sqlx::query(
            "SELECT name, sealed, description, created_by, created_at, updated_at FROM polder_secrets WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(secret_from_row).transpose()
    }

    pub async fn list_secrets(&self) -> Result<Vec<SecretRecord>> {
        let rows = sqlx::query(
            "SELECT name, sealed, description, created_by, created_at, updated_at FROM polder_secrets ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(secret_from_row).collect()
    }

    /// Deletes a secret; `false` when there was none of that name.
    pub async fn delete_secret(&self, name: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM polder_secrets WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// Appends finished statements to the history, in one transaction.
    pub async fn append_queries(&self, queries: &[QueryRecord]) -> Result<()> {
        if queries.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for query in queries {
            sqlx::query(
                "INSERT INTO polder_queries (id, user_name, interface, client, statement, started_at, duration_ms, rows_returned, status, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
            )
            .bind(&query.id)
            .bind(&query.user_name)
            .bind(&query.interface)
            .bind(&query.client)
            .bind(&query.statement)
            .bind(query.started_at)
            .bind(query.duration_ms)
            .bind(query.rows)
            .bind(&query.status)
            .bind(&query.error)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The newest `limit` statements (of `user` only, when given), newest first.
    pub async fn read_queries(&self, user: Option<&str>, limit: i64) -> Result<Vec<QueryRecord>> {
        const COLUMNS: &str = "id, user_name, interface, client, statement, started_at, duration_ms, rows_returned, status, error";
        let rows = match user {
            Some(user) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM polder_queries WHERE user_name = $1 ORDER BY started_at DESC LIMIT $2"
                ))
                .bind(user)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM polder_queries ORDER BY started_at DESC LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter()
            .map(|row| {
                Ok(QueryRecord {
                    id: row.try_get(0)?,
                    user_name: row.try_get(1)?,
                    interface: row.try_get(2)?,
                    client: row.try_get(3)?,
                    statement: row.try_get(4)?,
                    started_at: row.try_get(5)?,
                    duration_ms: row.try_get(6)?,
                    rows: row.try_get(7)?,
                    status: row.try_get(8)?,
                    error: row.try_get(9)?,
                })
            })
            .collect()
    }

    /// Deletes history older than `before` (milliseconds since the epoch); returns how many.
    pub async fn prune_queries(&self, before: i64) -> Result<u64> {
        let deleted = sqlx::query("DELETE FROM polder_queries WHERE started_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected())
    }
}

/// Milliseconds since the epoch, for records made outside this crate.
pub fn now() -> i64 {
    now_millis()
}

/// What may be shown of a stored secret: never its value, sealed or not.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SecretInfo {
    pub name: String,
    pub description: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Named secrets (source credentials, keys) kept in the catalog, encrypted with the secrets
/// key: whoever reads the catalog database sees only ciphertext.
#[derive(Debug, Clone)]
pub struct SecretVault {
    store: CatalogStore,
    key: polder_core::SecretKey,
}

/// Secret names: letters, digits, `_`, `-`, `.`; at most 100 characters.
fn check_secret_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(())
    } else {
        Err(CatalogError::InvalidName(format!(
            "'{name}' is not a secret name: use letters, digits, '_', '-' and '.' (at most 100)"
        )))
    }
}

impl SecretVault {
    pub fn new(store: CatalogStore, key: polder_core::SecretKey) -> Self {
        SecretVault { store, key }
    }

    /// Creates or replaces `name`; returns `true` when it replaced one.
    pub async fn put(
        &self,
        name: &str,
        value: &polder_core::Secret,
        description: &str,
        by: &str,
    ) -> Result<bool> {
        check_secret_name(name)?;
        if value.is_empty() {
            return Err(CatalogError::InvalidName(format!(
                "secret '{name}' has an empty value"
            )));
        }
        let now = now_millis();
        self.store
            .put_secret(&SecretRecord {
                name: name.to_string(),
                sealed: self.key.seal(name, value),
                description: description.to_string(),
                created_by: by.to_string(),
                created_at: now,
                updated_at: now,
            })
            .await
    }

    /// The value of `name`, for the one place that hands it to a source.
    pub async fn reveal(&self, name: &str) -> Result<polder_core::Secret> {
        let record =
            self.store
                .get_secret(name)
                .await?
                .ok_or_else(|| CatalogError::ObjectNotFound {
                    kind: "secret",
                    name: name.to_string(),
                })?;
        self.key
            .open(name, &record.sealed)
            .map_err(|e| CatalogError::Secret(e.to_string()))
    }

    pub async fn list(&self) -> Result<Vec<SecretInfo>> {
        Ok(self
            .store
            .list_secrets()
            .await?
            .into_iter()
            .map(|r| SecretInfo {
                name: r.name,
                description: r.description,
                created_by: r.created_by,
                created_at: r.created_at,
                updated_at: r.updated_at,
            })
            .collect())
    }

    /// Deletes `name`; `false` when there was none.
    pub async fn delete(&self, name: &str) -> Result<bool> {
        self.store.delete_secret(name).await
    }
}
