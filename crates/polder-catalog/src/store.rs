//! sqlx-backed repository of schemas, tables and views.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use polder_core::{DEFAULT_SCHEMAS, ErrorKind, HasErrorKind, mask_url_password};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Row};

/// Failures of the catalog store.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The store cannot be opened: unreachable server, missing database, corrupt file.
    #[error("cannot open catalog {url}: {message}")]
    Open { url: String, message: String },
    /// The store opened but its migrations failed (for example a catalog from a newer Polder).
    #[error("cannot migrate catalog {url}: {message}")]
    Migrate { url: String, message: String },
    /// A statement names a schema that does not exist.
    #[error("schema '{0}' does not exist")]
    SchemaNotFound(String),
    /// `CREATE SCHEMA` of a schema that exists.
    #[error("schema '{0}' already exists")]
    SchemaExists(String),
    /// `DROP SCHEMA` without `CASCADE` of a schema that still holds tables or views.
    #[error(
        "schema '{name}' is not empty ({count} tables or views); use DROP SCHEMA {name} CASCADE"
    )]
    SchemaNotEmpty { name: String, count: usize },
    /// A statement names a table or view that does not exist.
    #[error("table or view '{0}' does not exist")]
    TableNotFound(String),
    /// Creating a table or view whose name is taken.
    #[error("{kind} '{name}' already exists")]
    TableExists { kind: TableKind, name: String },
    /// `DROP VIEW` on a table or `DROP TABLE` on a view.
    #[error("'{name}' is a {actual}, not a {expected}")]
    WrongKind {
        name: String,
        actual: TableKind,
        expected: TableKind,
    },
    /// A user name that is taken.
    #[error("user '{0}' already exists")]
    UserExists(String),
    /// A statement names a user that does not exist.
    #[error("user '{0}' does not exist")]
    UserNotFound(String),
    /// A row policy, column mask or secret that does not exist.
    #[error("{kind} '{name}' does not exist")]
    ObjectNotFound { kind: &'static str, name: String },
    /// A row policy, column mask or secret whose name (or column) is taken.
    #[error("{kind} '{name}' already exists")]
    ObjectExists { kind: &'static str, name: String },
    /// Something still refers to what a statement would remove.
    #[error("{0}")]
    InUse(String),
    /// A name that cannot be used (for a secret, say).
    #[error("{0}")]
    InvalidName(String),
    /// A stored secret that cannot be opened (wrong key).
    #[error("{0}")]
    Secret(String),
    /// The store answered with an error while serving.
    #[error("catalog store error: {0}")]
    Database(String),
}

impl HasErrorKind for CatalogError {
    fn kind(&self) -> ErrorKind {
        match self {
            CatalogError::Open { .. } | CatalogError::Database(_) => ErrorKind::Unavailable,
            CatalogError::Migrate { .. } => ErrorKind::Internal,
            CatalogError::SchemaNotFound(_)
            | CatalogError::TableNotFound(_)
            | CatalogError::UserNotFound(_)
            | CatalogError::ObjectNotFound { .. } => ErrorKind::NotFound,
            CatalogError::SchemaExists(_)
            | CatalogError::TableExists { .. }
            | CatalogError::UserExists(_)
            | CatalogError::ObjectExists { .. } => ErrorKind::AlreadyExists,
            CatalogError::InUse(_) => ErrorKind::Conflict,
            CatalogError::SchemaNotEmpty { .. }
            | CatalogError::WrongKind { .. }
            | CatalogError::InvalidName(_)
            | CatalogError::Secret(_) => ErrorKind::InvalidInput,
        }
    }
}

impl From<sqlx::Error> for CatalogError {
    fn from(err: sqlx::Error) -> Self {
        CatalogError::Database(err.to_string())
    }
}

type Result<T, E = CatalogError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    Table,
    View,
}

impl TableKind {
    fn as_str(self) -> &'static str {
        match self {
            TableKind::Table => "table",
            TableKind::View => "view",
        }
    }
}

impl std::fmt::Display for TableKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TableKind {
    type Err = CatalogError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "table" => Ok(TableKind::Table),
            "view" => Ok(TableKind::View),
            other => Err(CatalogError::Database(format!(
                "unknown table kind '{other}' in catalog"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaEntry {
    pub name: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// A table (a Delta table at `location`) or a view (SQL in `definition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    pub schema: String,
    pub name: String,
    pub kind: TableKind,
    pub location: Option<String>,
    pub definition: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// The user who created it (`None` for entries made before users existed, or by the system).
    pub owner: Option<String>,
}

impl TableEntry {
    pub fn table(schema: &str, name: &str, location: &str) -> Self {
        TableEntry {
            schema: schema.to_string(),
            name: name.to_string(),
            kind: TableKind::Table,
            location: Some(location.to_string()),
            definition: None,
            created_at: now_millis(),
            owner: None,
        }
    }

    pub fn view(schema: &str, name: &str, definition: &str) -> Self {
        TableEntry {
            schema: schema.to_string(),
            name: name.to_string(),
            kind: TableKind::View,
            location: None,
            definition: Some(definition.to_string()),
            created_at: now_millis(),
            owner: None,
        }
    }

    pub fn with_owner(mut self, owner: Option<&str>) -> Self {
        self.owner = owner.map(str::to_string);
        self
    }

    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// Everything the catalog holds, read in one go, tagged with the generation it was read at.
#[derive(Debug, Clone, Default)]
pub struct CatalogSnapshot {
    pub generation: i64,
    pub schemas: Vec<SchemaEntry>,
    pub tables: Vec<TableEntry>,
}

/// `SELECT <every column of polder_tables> FROM polder_tables <rest>`, in the order
/// [`table_from_row`] reads them.
macro_rules! select_tables {
    ($rest:literal) => {
        concat!(
            "SELECT schema_name, name, kind, location, definition, created_at, owner FROM polder_tables",
            $rest
        )
    };
}

pub(crate) fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn migrator() -> Migrator {
    let migration = |version: i64, name: &'static str, sql: &'static str| {
        Migration::new(
            version,
            Cow::Borrowed(name),
            MigrationType::Simple,
            Cow::Borrowed(sql),
            false,
        )
    };
    let migrations = vec![
        migration(1, "catalog", include_str!("../migrations/0001_catalog.sql")),
        migration(
            2,
            "security",
            include_str!("../migrations/0002_security.sql"),
        ),
        migration(
            3,
            "governance",
            include_str!("../migrations/0003_governance.sql"),
        ),
        migration(4, "ingest", include_str!("../migrations/0004_ingest.sql")),
        migration(
            5,
            "transform",
            include_str!("../migrations/0005_transform.sql"),
        ),
        migration(
            6,
            "saved_objects",
            include_str!("../migrations/0006_saved_objects.sql"),
        ),
        migration(
            7,
            "reflections",
            include_str!("../migrations/0007_reflections.sql"),
        ),
        migration(8, "leases", include_str!("../migrations/0008_leases.sql")),
    ];
    Migrator {
        migrations: Cow::Owned(migrations),
        // Forward-only, additive migrations: a coordinator of version N keeps serving a catalog
        // that a coordinator of N+1 has already migrated (a rolling upgrade), ignoring the
        // migrations it does not know. Known ones are still checked by checksum.
        ignore_missing: true,
        locking: true,
        no_tx: false,
    }
}

/// The catalog store: a connection pool to SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct CatalogStore {
    pub(crate) pool: AnyPool,
    backend: Backend,
    url_masked: String,
}

impl CatalogStore {
    /// Opens (creating if needed) the catalog at `url`, runs migrations and makes sure the
    /// default schemas exist.
    pub async fn open(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let url_masked = mask_url_password(url);
        let open_error = |message: String| CatalogError::Open {
            url: url_masked.clone(),
            message,
        };

        let (backend, connect_url, max_connections) =
            if let Some(path) = url.strip_prefix("sqlite://") {
                let file_path = path.split('?').next().unwrap_or(path);
                if let Some(parent) = Path::new(file_path).parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        open_error(format!("cannot create directory {}: {e}", parent.display()))
                    })?;
                }
                let connect_url = if path.contains("mode=") {
                    url.to_string()
                } else if path.contains('?') {
                    format!("{url}&mode=rwc")
                } else {
                    format!("{url}?mode=rwc")
                };
                // One connection: SQLite has one writer at a time, and a deferred transaction
                // that read before another connection committed cannot write at all
                // ("database is locked", not retried by the busy timeout). Query history and
                // audit rows are written in the background, so that race was common with
                // several connections; in-process, serializing costs little.
                (Backend::Sqlite, connect_url, 1)
            } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                (Backend::Postgres, url.to_string(), 8)
            } else {
                return Err(open_error(
                    "expected sqlite://path or postgres://user:password@host/database".to_string(),
                ));
            };

        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&connect_url)
            .await
            .map_err(|e| open_error(describe_sqlx_error(&e)))?;

        if backend == Backend::Sqlite {
            // WAL lets `polder sql` and `polder import` use the catalog while a server runs.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await
                .map_err(|e| open_error(describe_sqlx_error(&e)))?;
        }

        migrator()
            .run(&pool)
            .await
            .map_err(|e| CatalogError::Migrate {
                url: url_masked.clone(),
                message: e.to_string(),
            })?;

        let store = CatalogStore {
            pool,
            backend,
            url_masked,
        };
        store.ensure_default_schemas().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL with its password masked.
    pub fn url(&self) -> &str {
        &self.url_masked
    }

    /// Checks that the store answers (for `/ready`).
    pub async fn ping(&self) -> Result<()> {
        crate::store::timed("ping", async {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
        .await
    }

    async fn ensure_default_schemas(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let mut created = 0u64;
        for name in DEFAULT_SCHEMAS {
            let result = sqlx::query(
                "INSERT INTO polder_schemas (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
            created += result.rows_affected();
        }
        if created > 0 {
            bump_generation(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The current generation: it changes whenever anything in the catalog changes.
    pub async fn generation(&self) -> Result<i64> {
        crate::store::timed("generation", async {
            let row = sqlx::query("SELECT generation FROM polder_catalog_state WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
            Ok(row.try_get::<i64, _>(0)?)
        })
        .await
    }

    /// Reads every schema and table in one transaction.
    pub async fn snapshot(&self) -> Result<CatalogSnapshot> {
        crate::store::timed("snapshot", async {
            let mut tx = self.pool.begin().await?;
            let generation: i64 =
                sqlx::query("SELECT generation FROM polder_catalog_state WHERE id = 1")
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get(0)?;
            let schema_rows =
                sqlx::query("SELECT name, created_at FROM polder_schemas ORDER BY name")
                    .fetch_all(&mut *tx)
                    .await?;
            let table_rows = sqlx::query(select_tables!(" ORDER BY schema_name, name"))
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;

            let mut schemas = Vec::with_capacity(schema_rows.len());
            for row in &schema_rows {
                schemas.push(SchemaEntry {
                    name: row.try_get(0)?,
                    created_at: row.try_get(1)?,
                });
            }
            let mut tables = Vec::with_capacity(table_rows.len());
            for row in &table_rows {
                tables.push(table_from_row(row)?);
            }
            Ok(CatalogSnapshot {
                generation,
                schemas,
                tables,
            })
        })
        .await
    }

    /// Creates a schema. Returns `false` when it existed and `if_not_exists` was given.
    pub async fn create_schema(&self, name: &str, if_not_exists: bool) -> Result<bool> {
        crate::store::timed("create_schema", async {
            let mut tx = self.pool.begin().await?;
            let result = sqlx::query(
                "INSERT INTO polder_schemas (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
            if result.rows_affected() == 0 {
                if if_not_exists {
                    return Ok(false);
                }
                return Err(CatalogError::SchemaExists(name.to_string()));
            }
            bump_generation(&mut tx).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// Drops a schema. Without `cascade` it must be empty; with it, its tables and views are
    /// removed from the catalog too and returned so that the caller can delete their data.
    pub async fn drop_schema(&self, name: &str, cascade: bool) -> Result<Vec<TableEntry>> {
        crate::store::timed("drop_schema", async {
            let mut tx = self.pool.begin().await?;
            let exists = sqlx::query("SELECT name FROM polder_schemas WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if !exists {
                return Err(CatalogError::SchemaNotFound(name.to_string()));
            }
            let rows = sqlx::query(select_tables!(" WHERE schema_name = $1"))
                .bind(name)
                .fetch_all(&mut *tx)
                .await?;
            let mut dropped = Vec::with_capacity(rows.len());
            for row in &rows {
                dropped.push(table_from_row(row)?);
            }
            if !dropped.is_empty() && !cascade {
                return Err(CatalogError::SchemaNotEmpty {
                    name: name.to_string(),
                    count: dropped.len(),
                });
            }
            sqlx::query("DELETE FROM polder_tables WHERE schema_name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            crate::governance::forget_table_rules(&mut tx, name, None).await?;
            sqlx::query("DELETE FROM polder_schemas WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            bump_generation(&mut tx).await?;
            tx.commit().await?;
            Ok(dropped)
        })
        .await
    }

    pub async fn get_table(&self, schema: &str, name: &str) -> Result<Option<TableEntry>> {
        crate::store::timed("get_table", async {
            let row = sqlx::query(select_tables!(" WHERE schema_name = $1 AND name = $2"))
                .bind(schema)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
            row.as_ref().map(table_from_row).transpose()
        })
        .await
    }

    /// Registers a table or view. With `replace`, an existing entry of the same kind is
    /// replaced and returned (`CREATE OR REPLACE`).
    pub async fn create_table(
        &self,
        entry: &TableEntry,
        replace: bool,
    ) -> Result<Option<TableEntry>> {
        crate::store::timed("create_table", async {
            let mut tx = self.pool.begin().await?;
            let schema_exists = sqlx::query("SELECT name FROM polder_schemas WHERE name = $1")
                .bind(&entry.schema)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if !schema_exists {
                return Err(CatalogError::SchemaNotFound(entry.schema.clone()));
            }
            let existing = sqlx::query(select_tables!(" WHERE schema_name = $1 AND name = $2"))
                .bind(&entry.schema)
                .bind(&entry.name)
                .fetch_optional(&mut *tx)
                .await?;
            let existing = existing.as_ref().map(table_from_row).transpose()?;
            if let Some(existing) = &existing {
                if !replace {
                    return Err(CatalogError::TableExists {
                        kind: existing.kind,
                        name: entry.qualified_name(),
                    });
                }
                if existing.kind != entry.kind {
                    return Err(CatalogError::WrongKind {
                        name: entry.qualified_name(),
                        actual: existing.kind,
                        expected: entry.kind,
                    });
                }
                sqlx::query("DELETE FROM polder_tables WHERE schema_name = $1 AND name = $2")
                    .bind(&entry.schema)
                    .bind(&entry.name)
                    .execute(&mut *tx)
                    .await?;
            }
            let inserted = sqlx::query(
                "INSERT INTO polder_tables (schema_name, name, kind, location, definition, created_at, owner) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (schema_name, name) DO NOTHING",
            )
            .bind(&entry.schema)
            .bind(&entry.name)
            .bind(entry.kind.as_str())
            .bind(entry.location.clone())
            .bind(entry.definition.clone())
            .bind(entry.created_at)
            .bind(entry.owner.clone())
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                // Another process registered the same name between our read and our insert.
                return Err(CatalogError::TableExists {
                    kind: entry.kind,
                    name: entry.qualified_name(),
                });
            }
            bump_generation(&mut tx).await?;
            tx.commit().await?;
            Ok(existing)
        })
        .await
    }

    /// Removes a table or view from the catalog and returns its entry.
    ///
    /// `expected` guards `DROP TABLE` against dropping a view and the reverse.
    pub async fn drop_table(
        &self,
        schema: &str,
        name: &str,
        expected: Option<TableKind>,
    ) -> Result<TableEntry> {
        crate::store::timed("drop_table", async {
            let mut tx = self.pool.begin().await?;
            let row = sqlx::query(select_tables!(" WHERE schema_name = $1 AND name = $2"))
                .bind(schema)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(entry) = row.as_ref().map(table_from_row).transpose()? else {
                return Err(CatalogError::TableNotFound(format!("{schema}.{name}")));
            };
            if let Some(expected) = expected
                && expected != entry.kind
            {
                return Err(CatalogError::WrongKind {
                    name: entry.qualified_name(),
                    actual: entry.kind,
                    expected,
                });
            }
            sqlx::query("DELETE FROM polder_tables WHERE schema_name = $1 AND name = $2")
                .bind(schema)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            crate::governance::forget_table_rules(&mut tx, schema, Some(name)).await?;
            bump_generation(&mut tx).await?;
            tx.commit().await?;
            Ok(entry)
        })
        .await
    }

    /// Marks the catalog as changed without changing an entry (a table's schema evolved).
    pub async fn touch(&self) -> Result<()> {
        crate::store::timed("touch", async {
            let mut tx = self.pool.begin().await?;
            bump_generation(&mut tx).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}

/// Runs one catalog operation timed for `/metrics`
/// (`polder_catalog_operation_duration_seconds{operation}`); failures of the store itself
/// (not answers such as "does not exist") count in `polder_catalog_errors_total{operation}`.
/// Applied to the operations on the query path (generation check, snapshot, table lookup),
/// to schema and table changes, and to job updates.
pub(crate) async fn timed<T>(
    operation: &'static str,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let started = std::time::Instant::now();
    let result = work.await;
    metrics::histogram!("polder_catalog_operation_duration_seconds", "operation" => operation)
        .record(started.elapsed().as_secs_f64());
    if let Err(CatalogError::Database(_)) = &result {
        metrics::counter!("polder_catalog_errors_total", "operation" => operation).increment(1);
    }
    result
}

pub(crate) async fn bump_generation(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<()> {
    sqlx::query("UPDATE polder_catalog_state SET generation = generation + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn table_from_row(row: &AnyRow) -> Result<TableEntry> {
    let kind: String = row.try_get(2)?;
    Ok(TableEntry {
        schema: row.try_get(0)?,
        name: row.try_get(1)?,
        kind: kind.parse()?,
        location: row.try_get(3)?,
        definition: row.try_get(4)?,
        created_at: row.try_get(5)?,
        owner: row.try_get(6)?,
    })
}

/// A readable one-line cause, without the URL (which the caller adds masked).
fn describe_sqlx_error(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(db) => db.message().to_string(),
        sqlx::Error::Io(io) => format!("connection failed: {io}"),
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests;
