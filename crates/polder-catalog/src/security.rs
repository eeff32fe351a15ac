//! Users, tokens, grants and the audit log, as the catalog stores them. Hashing and checking
//! credentials is the server's job; this module only keeps rows.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::store::{CatalogError, CatalogStore, bump_generation, now_millis};

type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// A user as stored: the role is kept as text (`polder-core` knows the roles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    pub role: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// SCRAM-SHA-256 salt and SaltedPassword, base64.
    pub scram_salt: String,
    pub scram_salted: String,
    pub disabled: bool,
    pub created_at: i64,
}

/// A session or personal access token: only the hash of its secret is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub user_name: String,
    /// `session` or `personal`.
    pub kind: String,
    pub label: String,
    pub secret_hash: String,
    pub scram_salt: String,
    pub scram_salted: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked: bool,
}

/// `GRANT privilege ON SCHEMA s | TABLE s.t TO user|role`; `table` is empty for a schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GrantRecord {
    /// `user` or `role`.
    pub grantee_kind: String,
    pub grantee: String,
    /// `SELECT`, `INSERT` or `ALL`.
    pub privilege: String,
    pub schema: String,
    pub table: String,
    pub granted_by: String,
    pub created_at: i64,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub at: i64,
    pub user_name: String,
    pub client: String,
    pub action: String,
    pub statement: String,
    pub ok: bool,
    pub message: String,
}

impl AuditRecord {
    pub fn new(user: &str, client: &str, action: &str, statement: &str) -> Self {
        AuditRecord {
            at: now_millis(),
            user_name: user.to_string(),
            client: client.to_string(),
            action: action.to_string(),
            statement: statement.to_string(),
            ok: true,
            message: String::new(),
        }
    }

    pub fn failed(mut self, message: &str) -> Self {
        self.ok = false;
        self.message = message.to_string();
        self
    }
}

const USER_COLUMNS: &str =
    "name, role, password_hash, scram_salt, scram_salted, disabled, created_at";
const TOKEN_COLUMNS: &str = "id, user_name, kind, label, secret_hash, scram_salt, scram_salted, created_at, expires_at, revoked";

fn user_from_row(row: &AnyRow) -> Result<UserRecord> {
    Ok(UserRecord {
        name: row.try_get(0)?,
        role: row.try_get(1)?,
        password_hash: row.try_get(2)?,
        scram_salt: row.try_get(3)?,
        scram_salted: row.try_get(4)?,
        disabled: row.try_get::<i64, _>(5)? != 0,
        created_at: row.try_get(6)?,
    })
}

fn token_from_row(row: &AnyRow) -> Result<TokenRecord> {
    Ok(TokenRecord {
        id: row.try_get(0)?,
        user_name: row.try_get(1)?,
        kind: row.try_get(2)?,
        label: row.try_get(3)?,
        secret_hash: row.try_get(4)?,
        scram_salt: row.try_get(5)?,
        scram_salted: row.try_get(6)?,
        created_at: row.try_get(7)?,
        expires_at: row.try_get(8)?,
        revoked: row.try_get::<i64, _>(9)? != 0,
    })
}

fn grant_from_row(row: &AnyRow) -> Result<GrantRecord> {
    Ok(GrantRecord {
        grantee_kind: row.try_get(0)?,
        grantee: row.try_get(1)?,
        privilege: row.try_get(2)?,
        schema: row.try_get(3)?,
        table: row.try_get(4)?,
        granted_by: row.try_get(5)?,
        created_at: row.try_get(6)?,
    })
}

impl CatalogStore {
    pub async fn user_count(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM polder_users")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Adds a user; fails with `UserExists` when the name is taken.
    pub async fn create_user(&self, user: &UserRecord) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO polder_users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING"
        ))
        .bind(&user.name)
        .bind(&user.role)
        .bind(&user.password_hash)
        .bind(&user.scram_salt)
        .bind(&user.scram_salted)
        .bind(user.disabled as i64)
        .bind(user.created_at)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(CatalogError::UserExists(user.name.clone()));
        }
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_user(&self, name: &str) -> Result<Option<UserRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM polder_users WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn list_users(&self) -> Result<Vec<UserRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM polder_users ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Replaces a user's role, credentials and state.
    pub async fn update_user(&self, user: &UserRecord) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE polder_users SET role = $2, password_hash = $3, scram_salt = $4, scram_salted = $5, disabled = $6 WHERE name = $1",
        )
        .bind(&user.name)
        .bind(&user.role)
        .bind(&user.password_hash)
        .bind(&user.scram_salt)
        .bind(&user.scram_salted)
        .bind(user.disabled as i64)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(CatalogError::UserNotFound(user.name.clone()));
        }
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a user with its tokens, grants and attributes. A user named in a row policy or
    /// a column mask is refused: a later user of the same name would inherit its place there.
    pub async fn delete_user(&self, name: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (rules, list, kind) in [
            ("polder_row_policies", "applies_to", "row policy"),
            ("polder_column_masks", "exempt", "column mask"),
        ] {
            let rows = sqlx::query(&format!(
                "SELECT schema_name, table_name, name, {list} FROM {rules}"
            ))
            .fetch_all(&mut *tx)
            .await?;
            for row in &rows {
                let named: String = row.try_get(3)?;
                if named.split(',').any(|entry| entry.trim() == name) {
                    let (schema, table, rule): (String, String, String) =
                        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
                    return Err(CatalogError::InUse(format!(
                        "user '{name}' is named in {kind} '{rule}' on {schema}.{table}; drop or recreate it without the user first"
                    )));
                }
            }
        }
        let deleted = sqlx::query("DELETE FROM polder_users WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(CatalogError::UserNotFound(name.to_string()));
        }
        sqlx::query("DELETE FROM polder_tokens WHERE user_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM polder_grants WHERE grantee_kind = 'user' AND grantee = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM polder_user_attributes WHERE user_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn create_token(&self, token: &TokenRecord) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO polder_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&token.id)
        .bind(&token.user_name)
        .bind(&token.kind)
        .bind(&token.label)
        .bind(&token.secret_hash)
        .bind(&token.scram_salt)
        .bind(&token.scram_salted)
        .bind(token.created_at)
        .bind(token.expires_at)
        .bind(token.revoked as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_token(&self, id: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM polder_tokens WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// Tokens of `user` (all users with `None`), newest first.
    pub async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<TokenRecord>> {
        let rows = match user {
            Some(user) => {
                sqlx::query(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM polder_tokens WHERE user_name = $1 ORDER BY created_at DESC"
                ))
                .bind(user)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM polder_tokens ORDER BY created_at DESC"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes a token; `false` when there is no such token.
    pub async fn revoke_token(&self, id: &str) -> Result<bool> {
        let updated = sqlx::query("UPDATE polder_tokens SET revoked = 1 WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(updated.rows_affected() > 0)
    }

    /// Deletes tokens that expired before `now` (and revoked session tokens); returns how many.
    pub async fn delete_expired_tokens(&self, now: i64) -> Result<u64> {
        let deleted = sqlx::query(
            "DELETE FROM polder_tokens WHERE (expires_at IS NOT NULL AND expires_at < $1) OR (kind = 'session' AND revoked = 1)",
        )
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(deleted.rows_affected())
    }

    /// Adds grants (those that exist already stay as they are), all in one transaction.
    pub async fn add_grants(&self, grants: &[GrantRecord]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for grant in grants {
            sqlx::query(
                "INSERT INTO polder_grants (grantee_kind, grantee, privilege, schema_name, table_name, granted_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(&grant.grantee_kind)
            .bind(&grant.grantee)
            .bind(&grant.privilege)
            .bind(&grant.schema)
            .bind(&grant.table)
            .bind(&grant.granted_by)
            .bind(grant.created_at)
            .execute(&mut *tx)
            .await?;
        }
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes grants (those that do not exist are ignored), all in one transaction.
    pub async fn remove_grants(&self, grants: &[GrantRecord]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for grant in grants {
            sqlx::query(
                "DELETE FROM polder_grants WHERE grantee_kind = $1 AND grantee = $2 AND privilege = $3 AND schema_name = $4 AND table_name = $5",
            )
            .bind(&grant.grantee_kind)
            .bind(&grant.grantee)
            .bind(&grant.privilege)
            .bind(&grant.schema)
            .bind(&grant.table)
            .execute(&mut *tx)
            .await?;
        }
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_grants(&self) -> Result<Vec<GrantRecord>> {
        let rows = sqlx::query(
            "SELECT grantee_kind, grantee, privilege, schema_name, table_name, granted_by, created_at FROM polder_grants ORDER BY schema_name, table_name, grantee",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    pub async fn append_audit(&self, record: &AuditRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO polder_audit (at, user_name, client, action, statement, ok, message) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(record.at)
        .bind(&record.user_name)
        .bind(&record.client)
        .bind(&record.action)
        .bind(&record.statement)
        .bind(record.ok as i64)
        .bind(&record.message)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest `limit` audit entries, newest first.
    pub async fn read_audit(&self, limit: i64) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT at, user_name, client, action, statement, ok, message FROM polder_audit ORDER BY at DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditRecord {
                    at: row.try_get(0)?,
                    user_name: row.try_get(1)?,
                    client: row.try_get(2)?,
                    action: row.try_get(3)?,
                    statement: row.try_get(4)?,
                    ok: row.try_get::<i64, _>(5)? != 0,
                    message: row.try_get(6)?,
                })
            })
            .collect()
    }
}
