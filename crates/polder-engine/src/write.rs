//! Writing a query result into a table as one Delta commit: the path behind
//! `CREATE TABLE ... AS SELECT` and `polder import`.

use std::sync::Arc;

use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use polder_catalog::{CatalogError, TableEntry, TableKind};
use polder_core::TableName;
use polder_lake::deltalake::operations::write::{SchemaMode, WriteBuilder};
use polder_lake::deltalake::protocol::SaveMode;
use polder_lake::{Lake, LakeError};

use crate::engine::Engine;
use crate::error::Result;

/// What to do when the target table exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Fail if it exists.
    Create,
    /// Add the rows (create the table when missing); columns the table lacks are added,
    /// columns the rows lack are NULL.
    Append,
    /// Replace its rows and schema in one commit, keeping its history (create when missing).
    Overwrite,
}

/// The result of [`Engine::write_table`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    pub created: bool,
    /// The table's version after the commit.
    pub version: i64,
    /// Rows the commit added, when the Delta statistics tell.
    pub rows_written: Option<u64>,
}

impl Engine {
    /// Writes the result of `plan` into `name` in one Delta commit, creating and registering
    /// the table when needed. `session` executes the plan (it holds the object stores the plan
    /// reads from).
    pub async fn write_table(
        &self,
        name: &TableName,
        plan: LogicalPlan,
        session: Arc<SessionState>,
        mode: WriteMode,
    ) -> Result<WriteOutcome> {
        self.sync().await?;
        let listing = self.catalog.listing();
        if !listing.schemas.contains_key(&name.schema) {
            return Err(CatalogError::SchemaNotFound(name.schema.clone()).into());
        }
        let Some(entry) = listing.entry(&name.schema, &name.table).cloned() else {
            return self.write_new_table(name, plan, session).await;
        };
        if mode == WriteMode::Create {
            return Err(CatalogError::TableExists {
                kind: entry.kind,
                name: name.to_string(),
            }
            .into());
        }
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
        let rows_before = Lake::stats(&table)?.num_rows;
        let snapshot = table
            .snapshot()
            .map_err(|e| LakeError::from_delta(&location, e))?
            .snapshot()
            .clone();
        let mut builder = WriteBuilder::new(table.log_store(), Some(snapshot))
            .with_input_plan(plan)
            .with_session_state(session);
        builder = match mode {
            WriteMode::Overwrite => builder
                .with_save_mode(SaveMode::Overwrite)
                .with_schema_mode(SchemaMode::Overwrite),
            // Loads evolve the schema: new columns are added, missing ones are NULL.
            _ => builder
                .with_save_mode(SaveMode::Append)
                .with_schema_mode(SchemaMode::Merge),
        };
        let written = builder
            .await
            .map_err(|e| LakeError::from_delta(&location, e))?;
        self.catalog.remember(&written);
        if mode == WriteMode::Overwrite {
            // The schema may have changed; other processes re-plan on the next generation.
            self.catalog.store.touch().await?;
        }
        let stats = Lake::stats(&written)?;
        let rows_written = match (mode, stats.num_rows, rows_before) {
            (WriteMode::Overwrite, after, _) => after,
            (_, Some(after), Some(before)) => Some(after.saturating_sub(before)),
            _ => None,
        };
        Ok(WriteOutcome {
            created: false,
            version: stats.version,
            rows_written,
        })
    }

    /// Creates `name` from `plan` in one commit (version 0 holds schema and data), then
    /// registers it; a failed registration removes the data again.
    pub(crate) async fn write_new_table(
        &self,
        name: &TableName,
        plan: LogicalPlan,
        session: Arc<SessionState>,
    ) -> Result<WriteOutcome> {
        let location = self
            .catalog
            .lake
            .table_location(&name.schema, &name.table)
            .to_string();
        self.clear_orphan(name, &location).await?;
        let table = self.catalog.lake.new_table(&location)?;
        let created = WriteBuilder::new(table.log_store(), None)
            .with_input_plan(plan)
            .with_session_state(session)
            .with_save_mode(SaveMode::ErrorIfExists)
            .with_table_name(name.to_string())
            .await
            .map_err(|e| LakeError::from_delta(&location, e))?;
        let entry = TableEntry::table(&name.schema, &name.table, &location).with_owner(
            crate::access::current()
                .as_ref()
                .map(|a| a.principal.user.as_str()),
        );
        if let Err(err) = self.catalog.store.create_table(&entry, false).await {
            if let Err(cleanup) = self.catalog.lake.delete_table(&location).await {
                tracing::warn!(table = %name, error = %cleanup, "could not remove the data of a table that failed to register");
            }
            return Err(err.into());
        }
        self.catalog.remember(&created);
        self.catalog.reload().await?;
        let stats = Lake::stats(&created)?;
        Ok(WriteOutcome {
            created: true,
            version: stats.version,
            rows_written: stats.num_rows,
        })
    }
}

impl From<WriteOutcome> for crate::engine::CommandOutcome {
    fn from(outcome: WriteOutcome) -> Self {
        crate::engine::CommandOutcome::new("SELECT").with_rows(outcome.rows_written)
    }
}
