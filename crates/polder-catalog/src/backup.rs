//! Export and import of the whole catalog, for backups: every `polder_*` table read in one
//! consistent transaction as rows of JSON values, and written back into a fresh catalog.
//!
//! The export is generic over columns (migrations use only TEXT, BIGINT and INTEGER), so a
//! column added by a later migration is carried without code here; a new table must be added
//! to [`BACKED_UP_TABLES`] or [`NOT_BACKED_UP_TABLES`], which a test enforces.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::store::{Backend, CatalogError, CatalogStore, bump_generation};

type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// The catalog tables a backup holds, in the order they are restored (parents first).
pub const BACKED_UP_TABLES: &[&str] = &[
    "polder_catalog_state",
    "polder_schemas",
    "polder_tables",
    "polder_users",
    "polder_user_attributes",
    "polder_tokens",
    "polder_grants",
    "polder_row_policies",
    "polder_column_masks",
    "polder_secrets",
    "polder_connections",
    "polder_jobs",
    "polder_transform_projects",
    "polder_transform_nodes",
    "polder_transform_runs",
    "polder_saved_objects",
    "polder_reflections",
    "polder_audit",
    "polder_queries",
];

/// Catalog tables that are runtime state of the processes serving it, not data: a restored
/// catalog starts without them.
pub const NOT_BACKED_UP_TABLES: &[&str] = &["polder_leases"];

/// Version of the export's JSON layout (not of the catalog schema).
const EXPORT_FORMAT: u32 = 1;

/// How a column's values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Integer,
    Text,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
}

/// One catalog table: its columns and every row, values in column order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedTable {
    pub name: String,
    pub columns: Vec<ExportedColumn>,
    pub rows: Vec<Vec<Value>>,
}

/// The whole catalog as of one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogExport {
    pub format: u32,
    /// The highest migration applied to the exported catalog.
    pub migration_version: i64,
    /// `sqlite` or `postgres`: where it came from (it restores into either).
    pub backend: String,
    pub tables: Vec<ExportedTable>,
}

/// Whether a lake location belongs to a table or to a reflection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocationKind {
    Table,
    Reflection,
}

/// A Delta table the catalog points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeLocation {
    pub kind: LocationKind,
    /// The schema of a table; empty for a reflection (reflection names are global).
    pub schema: String,
    pub name: String,
    pub location: String,
}

impl ExportedTable {
    fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    fn text(row: &[Value], index: Option<usize>) -> Option<&str> {
        index.and_then(|i| row.get(i)).and_then(Value::as_str)
    }
}

impl CatalogExport {
    pub fn table(&self, name: &str) -> Option<&ExportedTable> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Every Delta table the catalog points at: tables (not views) and reflections.
    pub fn lake_locations(&self) -> Vec<LakeLocation> {
        let mut locations = Vec::new();
        if let Some(tables) = self.table("polder_tables") {
            let schema = tables.column_index("schema_name");
            let name = tables.column_index("name");
            let kind = tables.column_index("kind");
            let location = tables.column_index("location");
            for row in &tables.rows {
                if ExportedTable::text(row, kind) != Some("table") {
                    continue;
                }
                if let Some(url) = ExportedTable::text(row, location) {
                    locations.push(LakeLocation {
                        kind: LocationKind::Table,
                        schema: ExportedTable::text(row, schema)
                            .unwrap_or_default()
                            .to_string(),
                        name: ExportedTable::text(row, name)
                            .unwrap_or_default()
                            .to_string(),
                        location: url.to_string(),
                    });
                }
            }
        }
        if let Some(reflections) = self.table("polder_reflections") {
            let name = reflections.column_index("name");
            let location = reflections.column_index("location");
            for row in &reflections.rows {
                if let Some(url) = ExportedTable::text(row, location) {
                    locations.push(LakeLocation {
                        kind: LocationKind::Reflection,
                        schema: String::new(),
                        name: ExportedTable::text(row, name)
                            .unwrap_or_default()
                            .to_string(),
                        location: url.to_string(),
                    });
                }
            }
        }
        locations
    }

    /// Points every table and reflection location under `old_root` at the same place under
    /// `new_root` (a restore into another lake). Returns how many locations changed.
    pub fn rewrite_lake_root(&mut self, old_root: &str, new_root: &str) -> usize {
        let mut changed = 0;
        for table in &mut self.tables {
            if table.name != "polder_tables" && table.name != "polder_reflections" {
                continue;
            }
            let Some(index) = table.column_index("location") else {
                continue;
            };
            for row in &mut table.rows {
                let Some(Value::String(location)) = row.get_mut(index) else {
                    continue;
                };
                if let Some(rest) = location.strip_prefix(old_root) {
                    let rewritten = format!("{new_root}{rest}");
                    if rewritten != *location {
                        *location = rewritten;
                        changed += 1;
                    }
                }
            }
        }
        changed
    }

    /// Number of rows over all tables.
    pub fn row_count(&self) -> usize {
        self.tables.iter().map(|t| t.rows.len()).sum()
    }
}

/// Double-quotes an identifier for SQLite and PostgreSQL alike.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn column_type(declared: &str) -> Option<ColumnType> {
    let upper = declared.to_ascii_uppercase();
    if upper.contains("INT") {
        Some(ColumnType::Integer)
    } else if upper.contains("TEXT") || upper.contains("CHAR") {
        Some(ColumnType::Text)
    } else {
        None
    }
}

impl CatalogStore {
    /// Names of the `polder_*` tables in this catalog's schema.
    pub(crate) async fn polder_table_names<'e, E>(&self, executor: E) -> Result<Vec<String>>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let sql = match self.backend() {
            Backend::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, 7) = 'polder_' ORDER BY name"
            }
            Backend::Postgres => {
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND substr(table_name, 1, 7) = 'polder_' ORDER BY table_name"
            }
        };
        let rows = sqlx::query(sql).fetch_all(executor).await?;
        let mut names = Vec::with_capacity(rows.len());
        for row in &rows {
            names.push(row.try_get::<String, _>(0)?);
        }
        Ok(names)
    }

    async fn columns_of<'e, E>(&self, executor: E, table: &str) -> Result<Vec<ExportedColumn>>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let rows = match self.backend() {
            Backend::Sqlite => {
                sqlx::query("SELECT name, type FROM pragma_table_info($1) ORDER BY cid")
                    .bind(table)
                    .fetch_all(executor)
                    .await?
            }
            Backend::Postgres => {
                sqlx::query(
                    "SELECT column_name::text, data_type::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                )
                .bind(table)
                .fetch_all(executor)
                .await?
            }
        };
        let mut columns = Vec::with_capacity(rows.len());
        for row in &rows {
            let name: String = row.try_get(0)?;
            let declared: String = row.try_get(1)?;
            let Some(column_type) = column_type(&declared) else {
                return Err(CatalogError::Database(format!(
                    "catalog column {table}.{name} has type {declared}, which backups do not support yet"
                )));
            };
            columns.push(ExportedColumn { name, column_type });
        }
        Ok(columns)
    }

    /// The highest migration applied to this catalog.
    async fn applied_migration<'e, E>(&self, executor: E) -> Result<i64>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let row = sqlx::query("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(executor)
            .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.unwrap_or(0))
    }

    /// The tables an export holds: the known ones in restore order, then any other `polder_*`
    /// table a newer migration made (so it is not silently left out), minus runtime state.
    fn tables_to_export(present: &[String]) -> Vec<String> {
        let mut tables: Vec<String> = BACKED_UP_TABLES
            .iter()
            .filter(|name| present.iter().any(|p| p == *name))
            .map(|name| name.to_string())
            .collect();
        for name in present {
            if !BACKED_UP_TABLES.contains(&name.as_str())
                && !NOT_BACKED_UP_TABLES.contains(&name.as_str())
            {
                tracing::warn!(table = %name, "catalog table unknown to this polder: backed up at the end");
                tables.push(name.clone());
            }
        }
        tables
    }

    /// Reads every catalog table in one read transaction (REPEATABLE READ on PostgreSQL), so
    /// the export is one consistent state even while servers write.
    pub async fn export(&self) -> Result<CatalogExport> {
        let mut tx = self.pool.begin().await?;
        if self.backend() == Backend::Postgres {
            // Must be the transaction's first statement; every later read sees one snapshot.
            sqlx::raw_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let migration_version = self.applied_migration(&mut *tx).await?;
        let present = self.polder_table_names(&mut *tx).await?;
        let mut tables = Vec::new();
        for name in Self::tables_to_export(&present) {
            let columns = self.columns_of(&mut *tx, &name).await?;
            let column_list = columns
                .iter()
                .map(|c| quote(&c.name))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("SELECT {column_list} FROM {}", quote(&name));
            let rows = sqlx::query(&sql).fetch_all(&mut *tx).await?;
            let mut values = Vec::with_capacity(rows.len());
            for row in &rows {
                values.push(row_values(row, &columns)?);
            }
            tables.push(ExportedTable {
                name,
                columns,
                rows: values,
            });
        }
        tx.commit().await?;
        Ok(CatalogExport {
            format: EXPORT_FORMAT,
            migration_version,
            backend: match self.backend() {
                Backend::Sqlite => "sqlite",
                Backend::Postgres => "postgres",
            }
            .to_string(),
            tables,
        })
    }

    /// What in this catalog a restore would overwrite: `(what, count)` for every kind of user
    /// object present. Empty for a freshly opened catalog (default schemas do not count).
    pub async fn user_objects(&self) -> Result<Vec<(&'static str, i64)>> {
        let checks: [(&'static str, &str); 5] = [
            ("tables or views", "SELECT COUNT(*) FROM polder_tables"),
            ("connections", "SELECT COUNT(*) FROM polder_connections"),
            (
                "transformation projects",
                "SELECT COUNT(*) FROM polder_transform_projects",
            ),
            ("reflections", "SELECT COUNT(*) FROM polder_reflections"),
            (
                "saved queries, charts or dashboards",
                "SELECT COUNT(*) FROM polder_saved_objects",
            ),
        ];
        let mut found = Vec::new();
        for (what, sql) in checks {
            let count: i64 = sqlx::query(sql).fetch_one(&self.pool).await?.try_get(0)?;
            if count > 0 {
                found.push((what, count));
            }
        }
        Ok(found)
    }

    /// Checks that `export` can be imported here: a layout and catalog version this polder
    /// knows, and no user objects in this catalog. [`CatalogStore::import`] checks it again.
    pub async fn check_import(&self, export: &CatalogExport) -> Result<()> {
        if export.format != EXPORT_FORMAT {
            return Err(CatalogError::Migrate {
                url: self.url().to_string(),
                message: format!(
                    "the catalog export has format {}; this polder reads format {EXPORT_FORMAT}",
                    export.format
                ),
            });
        }
        let known = self.applied_migration(&self.pool).await?;
        if export.migration_version > known {
            return Err(CatalogError::Migrate {
                url: self.url().to_string(),
                message: format!(
                    "the backup holds a catalog of version {}, newer than this polder knows ({known}); restore it with a newer polder",
                    export.migration_version
                ),
            });
        }
        let objects = self.user_objects().await?;
        if !objects.is_empty() {
            let listing = objects
                .iter()
                .map(|(what, count)| format!("{count} {what}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(CatalogError::InUse(format!(
                "the catalog {} is not empty ({listing}); restore needs a new, empty catalog",
                self.url()
            )));
        }
        Ok(())
    }

    /// Writes `export` into this catalog, which must hold no user objects (a freshly opened
    /// one: its seeded default schemas and state rows are replaced), in one transaction.
    pub async fn import(&self, export: &CatalogExport) -> Result<()> {
        self.check_import(export).await?;
        let mut tx = self.pool.begin().await?;
        let present = self.polder_table_names(&mut *tx).await?;
        let mut target_columns: BTreeMap<String, Vec<ExportedColumn>> = BTreeMap::new();
        for table in &export.tables {
            if !present.contains(&table.name) {
                return Err(CatalogError::Migrate {
                    url: self.url().to_string(),
                    message: format!(
                        "the backup holds catalog table {} that this catalog does not have",
                        table.name
                    ),
                });
            }
            let columns = self.columns_of(&mut *tx, &table.name).await?;
            target_columns.insert(table.name.clone(), columns);
        }
        // Children before parents on delete, parents first on insert.
        for table in export.tables.iter().rev() {
            sqlx::query(&format!("DELETE FROM {}", quote(&table.name)))
                .execute(&mut *tx)
                .await?;
        }
        for table in &export.tables {
            let target = &target_columns[&table.name];
            insert_rows(&mut tx, table, target).await?;
        }
        // Anyone caching a listing of the fresh catalog must re-read it.
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }
}

fn row_values(row: &AnyRow, columns: &[ExportedColumn]) -> Result<Vec<Value>> {
    let mut values = Vec::with_capacity(columns.len());
    for (index, column) in columns.iter().enumerate() {
        let value = match column.column_type {
            ColumnType::Integer => row
                .try_get::<Option<i64>, _>(index)?
                .map_or(Value::Null, Value::from),
            ColumnType::Text => row
                .try_get::<Option<String>, _>(index)?
                .map_or(Value::Null, Value::String),
        };
        values.push(value);
    }
    Ok(values)
}

/// Inserts `table`'s rows, several per statement (a catalog's query history can be long).
async fn insert_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    table: &ExportedTable,
    target: &[ExportedColumn],
) -> Result<()> {
    if table.rows.is_empty() || table.columns.is_empty() {
        return Ok(());
    }
    let mut types = Vec::with_capacity(table.columns.len());
    for column in &table.columns {
        let Some(found) = target.iter().find(|c| c.name == column.name) else {
            return Err(CatalogError::Database(format!(
                "the backup holds column {}.{} that this catalog does not have",
                table.name, column.name
            )));
        };
        types.push(found.column_type);
    }
    let column_list = table
        .columns
        .iter()
        .map(|c| quote(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    // Below SQLite's oldest parameter limit (999) and far below PostgreSQL's.
    let rows_per_statement = (900 / table.columns.len()).max(1);
    for chunk in table.rows.chunks(rows_per_statement) {
        let mut sql = format!("INSERT INTO {} ({column_list}) VALUES ", quote(&table.name));
        let mut parameter = 0;
        for (row_index, row) in chunk.iter().enumerate() {
            if row.len() != types.len() {
                return Err(CatalogError::Database(format!(
                    "a row of {} in the backup has {} values for {} columns",
                    table.name,
                    row.len(),
                    types.len()
                )));
            }
            if row_index > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for column_index in 0..types.len() {
                if column_index > 0 {
                    sql.push_str(", ");
                }
                parameter += 1;
                sql.push_str(&format!("${parameter}"));
            }
            sql.push(')');
        }
        let mut query = sqlx::query(&sql);
        for row in chunk {
            for (value, column_type) in row.iter().zip(&types) {
                query = match (column_type, value) {
                    (ColumnType::Integer, Value::Null) => query.bind(None::<i64>),
                    (ColumnType::Text, Value::Null) => query.bind(None::<String>),
                    (ColumnType::Integer, Value::Number(number)) => {
                        let Some(integer) = number.as_i64() else {
                            return Err(bad_value(&table.name, value));
                        };
                        query.bind(integer)
                    }
                    (ColumnType::Text, Value::String(text)) => query.bind(text.as_str()),
                    _ => return Err(bad_value(&table.name, value)),
                };
            }
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

fn bad_value(table: &str, value: &Value) -> CatalogError {
    let kind = match value {
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
        Value::Null => "null",
    };
    CatalogError::Database(format!(
        "the backup holds {kind} where catalog table {table} expects another type"
    ))
}

#[cfg(test)]
mod tests;
