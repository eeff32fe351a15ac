//! Statements that change the catalog: schemas, tables, views, columns.
//!
//! Each one follows the same order so that a failure never leaves a table half-made: write the
//! lake first (a Delta commit is atomic), then register in the catalog (a transaction), and
//! undo the lake part if the registration fails.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, SchemaRef};
use datafusion::common::TableReference;
use datafusion::logical_expr::LogicalPlan;
use polder_catalog::{CatalogError, TableEntry, TableKind};
use polder_core::{CATALOG_NAME, DEFAULT_SCHEMA, TableName, validate_identifier};
use polder_lake::LakeError;
use polder_lake::deltalake::kernel::StructType;
use polder_lake::deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use polder_lake::deltalake::protocol::SaveMode;

use crate::engine::{CommandOutcome, Engine};
use crate::error::{EngineError, Result};
use crate::write::WriteMode;

/// How long a Delta table without a catalog entry may be "being created" by another process.
const ORPHAN_GRACE_MILLIS: i64 = 30_000;

impl Engine {
    /// Turns a SQL table reference into a validated `schema.table`.
    pub(crate) fn table_name(reference: &TableReference) -> Result<TableName> {
        if let Some(catalog) = reference.catalog()
            && catalog != CATALOG_NAME
        {
            return Err(EngineError::NotFound(format!(
                "catalog '{catalog}' does not exist; the catalog is '{CATALOG_NAME}'"
            )));
        }
        let schema = reference.schema().unwrap_or(DEFAULT_SCHEMA);
        Ok(TableName::new(schema, reference.table())?)
    }

    pub(crate) async fn create_schema(
        &self,
        name: &str,
        if_not_exists: bool,
    ) -> Result<CommandOutcome> {
        validate_identifier(name)?;
        self.catalog
            .store
            .create_schema(name, if_not_exists)
            .await?;
        self.catalog.reload().await?;
        Ok(CommandOutcome::new("CREATE SCHEMA"))
    }

    pub(crate) async fn drop_schema(
        &self,
        name: &str,
        if_exists: bool,
        cascade: bool,
    ) -> Result<CommandOutcome> {
        let dropped = match self.catalog.store.drop_schema(name, cascade).await {
            Ok(dropped) => dropped,
            Err(CatalogError::SchemaNotFound(_)) if if_exists => {
                return Ok(CommandOutcome::new("DROP SCHEMA"));
            }
            Err(err) => return Err(err.into()),
        };
        for entry in &dropped {
            self.delete_table_data(entry).await;
            self.invalidate_reflections(&entry.schema, &entry.name, "was dropped")
                .await;
        }
        self.catalog.reload().await?;
        Ok(CommandOutcome::new("DROP SCHEMA"))
    }

    /// `CREATE TABLE name (columns)` (when `input` produces no rows by construction) or
    /// `CREATE TABLE name AS SELECT ...`.
    pub(crate) async fn create_table(
        &self,
        reference: &TableReference,
        input: &LogicalPlan,
        if_not_exists: bool,
        or_replace: bool,
    ) -> Result<CommandOutcome> {
        let name = Self::table_name(reference)?;
        let listing = self.catalog.listing();
        if !listing.schemas.contains_key(&name.schema) {
            return Err(CatalogError::SchemaNotFound(name.schema.clone()).into());
        }
        let schema: SchemaRef = Arc::new(input.schema().as_arrow().clone());
        check_column_names(&schema)?;
        let has_rows =
            !matches!(input, LogicalPlan::EmptyRelation(empty) if !empty.produce_one_row);

        if let Some(existing) = listing.entry(&name.schema, &name.table) {
            if if_not_exists {
                return Ok(CommandOutcome::new("CREATE TABLE"));
            }
            if !or_replace {
                return Err(CatalogError::TableExists {
                    kind: existing.kind,
                    name: name.to_string(),
                }
                .into());
            }
            // CREATE OR REPLACE keeps the table's history: one overwrite commit with the new
            // schema (`write_table` refuses to overwrite a view).
            let plan = if has_rows {
                input.clone()
            } else {
                empty_plan(&schema)?
            };
            self.write_table(
                &name,
                plan,
                Arc::new(self.session().state()),
                WriteMode::Overwrite,
            )
            .await?;
            return Ok(CommandOutcome::new("CREATE TABLE"));
        }

        if has_rows {
            let outcome = self
                .write_new_table(&name, input.clone(), Arc::new(self.session().state()), None)
                .await?;
            return Ok(CommandOutcome::new("SELECT").with_rows(outcome.rows_written));
        }
        let location = self
            .catalog
            .lake
            .table_location(&name.schema, &name.table)
            .to_string();
        self.clear_orphan(&name, &location).await?;
        let kernel_schema: StructType = schema
            .as_ref()
            .try_into_kernel()
            .map_err(|e| EngineError::InvalidInput(format!("unsupported column type: {e}")))?;
        let created = self
            .catalog
            .lake
            .new_table(&location)?
            .create()
            .with_columns(kernel_schema.fields().cloned())
            .with_table_name(name.to_string())
            .with_save_mode(SaveMode::ErrorIfExists)
            .await
            .map_err(|e| LakeError::from_delta(&location, e))?;
        let entry = TableEntry::table(&name.schema, &name.table, &location).with_owner(
            crate::access::current()
                .as_ref()
                .map(|a| a.principal.user.as_str()),
        );
        if let Err(err) = self.catalog.store.create_table(&entry, false).await {
            // The name was taken meanwhile (another process): the table we made is nobody's.
            let _ = self.catalog.lake.delete_table(&location).await;
            return Err(err.into());
        }
        self.catalog.remember(&created);
        self.catalog.reload().await?;
        Ok(CommandOutcome::new("CREATE TABLE"))
    }

    /// A Delta table at `location` that the catalog does not know is the leftover of a
    /// dropped table or of a create that crashed before registering; it is removed, unless it is
    /// so young that another process may be registering it right now.
    pub(crate) async fn clear_orphan(&self, name: &TableName, location: &str) -> Result<()> {
        if !self.catalog.lake.exists(location).await? {
            return Ok(());
        }
        if self
            .catalog
            .store
            .get_table(&name.schema, &name.table)
            .await?
            .is_some()
        {
            return Err(CatalogError::TableExists {
                kind: TableKind::Table,
                name: name.to_string(),
            }
            .into());
        }
        let table = self.catalog.lake.load(location).await?;
        let history = self.catalog.lake.history(&table, Some(1)).await?;
        let newest = history.first().and_then(|h| h.timestamp).unwrap_or(0);
        let age = chrono::Utc::now().timestamp_millis() - newest;
        if age < ORPHAN_GRACE_MILLIS {
            return Err(EngineError::Lake(LakeError::Conflict {
                location: location.to_string(),
                message: format!("another process is creating {name}; try again"),
            }));
        }
        tracing::warn!(table = %name, location, "removing unregistered table data left by a failed create or a drop");
        self.catalog.lake.delete_table(location).await?;
        self.catalog.forget(location);
        Ok(())
    }

    pub(crate) async fn create_view(
        &self,
        reference: &TableReference,
        query_sql: &str,
        or_replace: bool,
        if_not_exists: bool,
    ) -> Result<CommandOutcome> {
        let name = Self::table_name(reference)?;
        if !self.catalog.listing().schemas.contains_key(&name.schema) {
            return Err(CatalogError::SchemaNotFound(name.schema.clone()).into());
        }
        // Planning now checks that everything the view reads exists and type-checks.
        let plan = self
            .session()
            .state()
            .create_logical_plan(query_sql)
            .await?;
        check_column_names(&Arc::new(plan.schema().as_arrow().clone()))?;
        let entry = TableEntry::view(&name.schema, &name.table, query_sql).with_owner(
            crate::access::current()
                .as_ref()
                .map(|a| a.principal.user.as_str()),
        );
        match self.catalog.store.create_table(&entry, or_replace).await {
            Ok(_) => {}
            Err(CatalogError::TableExists { .. }) if if_not_exists => {}
            Err(err) => return Err(err.into()),
        }
        if or_replace {
            self.invalidate_reflections(&name.schema, &name.table, "was replaced")
                .await;
        }
        self.catalog.reload().await?;
        Ok(CommandOutcome::new("CREATE VIEW"))
    }

    pub(crate) async fn drop_relation(
        &self,
        reference: &TableReference,
        kind: TableKind,
        if_exists: bool,
    ) -> Result<CommandOutcome> {
        let tag = match kind {
            TableKind::Table => "DROP TABLE",
            TableKind::View => "DROP VIEW",
        };
        let name = Self::table_name(reference)?;
        let entry = match self
            .catalog
            .store
            .drop_table(&name.schema, &name.table, Some(kind))
            .await
        {
            Ok(entry) => entry,
            Err(CatalogError::TableNotFound(_)) if if_exists => {
                return Ok(CommandOutcome::new(tag));
            }
            Err(err) => return Err(err.into()),
        };
        self.delete_table_data(&entry).await;
        self.invalidate_reflections(&name.schema, &name.table, "was dropped")
            .await;
        self.catalog.reload().await?;
        Ok(CommandOutcome::new(tag))
    }

    /// Deletes a dropped table's files. The catalog no longer points to them, so a failure here
    /// only leaves garbage, which the next CREATE of the name clears.
    async fn delete_table_data(&self, entry: &TableEntry) {
        let Some(location) = &entry.location else {
            return;
        };
        self.catalog.forget(location);
        if let Err(err) = self.catalog.lake.delete_table(location).await {
            tracing::warn!(table = %entry.qualified_name(), error = %err, "could not delete the files of a dropped table");
        }
    }

    /// `ALTER TABLE t ADD COLUMN c type`: one Delta commit adding nullable columns.
    pub(crate) async fn add_columns(
        &self,
        reference: &TableReference,
        columns: Vec<Field>,
    ) -> Result<CommandOutcome> {
        let name = Self::table_name(reference)?;
        let listing = self.catalog.listing();
        let entry = listing
            .entry(&name.schema, &name.table)
            .ok_or_else(|| CatalogError::TableNotFound(name.to_string()))?;
        if entry.kind != TableKind::Table {
            return Err(CatalogError::WrongKind {
                name: name.to_string(),
                actual: entry.kind,
                expected: TableKind::Table,
            }
            .into());
        }
        let location = entry.location.clone().unwrap_or_default();
        let table = self.catalog.load_latest(&location).await?;
        let current_schema = table
            .snapshot()
            .map_err(|e| LakeError::from_delta(&location, e))?
            .schema();
        let mut fields = Vec::with_capacity(columns.len());
        for column in columns {
            validate_identifier(column.name())?;
            if current_schema.field(column.name()).is_some() {
                return Err(EngineError::InvalidInput(format!(
                    "column '{}' of '{name}' already exists",
                    column.name()
                )));
            }
            let schema =
                datafusion::arrow::datatypes::Schema::new(vec![column.with_nullable(true)]);
            let kernel: StructType = (&schema)
                .try_into_kernel()
                .map_err(|e| EngineError::InvalidInput(format!("unsupported column type: {e}")))?;
            fields.extend(kernel.fields().cloned());
        }
        let altered = table
            .add_columns()
            .with_fields(fields)
            .await
            .map_err(|e| LakeError::from_delta(&location, e))?;
        self.catalog.remember(&altered);
        self.catalog.store.touch().await?;
        self.catalog.reload().await?;
        Ok(CommandOutcome::new("ALTER TABLE"))
    }
}

fn check_column_names(schema: &SchemaRef) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for field in schema.fields() {
        if !seen.insert(field.name().to_lowercase()) {
            return Err(EngineError::InvalidInput(format!(
                "column name '{}' appears twice; give the columns distinct names (use AS)",
                field.name()
            )));
        }
    }
    Ok(())
}

fn empty_plan(schema: &SchemaRef) -> Result<LogicalPlan> {
    use datafusion::common::DFSchema;
    use datafusion::logical_expr::EmptyRelation;
    Ok(LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(DFSchema::try_from(schema.as_ref().clone())?),
    }))
}
