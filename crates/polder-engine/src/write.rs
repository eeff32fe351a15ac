//! Writing a query result into a table as one Delta commit: the path behind
//! `CREATE TABLE ... AS SELECT` and `polder import`.

use std::sync::Arc;

use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use polder_catalog::{CatalogError, TableEntry, TableKind};
use polder_core::TableName;
use polder_lake::deltalake::kernel::Transaction;
use polder_lake::deltalake::kernel::transaction::CommitProperties;
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

/// Marks a write that must happen exactly once (a sync of one stream, say): the commit carries
/// a Delta application transaction `(app_id, version)` and `metadata` (stored in the commit's
/// info under `polder.` keys), atomically with the rows. Whoever retries reads
/// [`Engine::last_tagged_commit`] first: if the version is there, the write happened.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitTag {
    pub app_id: String,
    /// Increases with every write of this application.
    pub version: i64,
    /// Keys without the `polder.` prefix; it is added.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl CommitTag {
    /// Refuses a tag that does not follow the application's last committed version: another
    /// writer got there first (a concurrent or repeated run), and committing would double it.
    async fn check_follows(
        &self,
        table: &polder_lake::deltalake::DeltaTable,
        location: &str,
    ) -> Result<()> {
        let committed = table
            .snapshot()
            .map_err(|e| LakeError::from_delta(location, e))?
            .transaction_version(table.log_store().as_ref(), &self.app_id)
            .await
            .map_err(|e| LakeError::from_delta(location, e))?;
        let expected = self.version - 1;
        let follows = match committed {
            None => true,
            Some(version) => version == expected,
        };
        if follows {
            Ok(())
        } else {
            Err(crate::EngineError::Conflict(format!(
                "{} has already committed version {} of this sync (expected {expected}); another run got there first",
                self.app_id,
                committed.unwrap_or_default()
            )))
        }
    }

    fn properties(&self) -> CommitProperties {
        let mut metadata: Vec<(String, serde_json::Value)> = self
            .metadata
            .iter()
            .map(|(key, value)| (format!("polder.{key}"), value.clone()))
            .collect();
        metadata.push(("polder.app_id".to_string(), self.app_id.clone().into()));
        metadata.push(("polder.app_version".to_string(), self.version.into()));
        CommitProperties::default()
            .with_application_transaction(Transaction::new(&self.app_id, self.version))
            .with_metadata(metadata)
    }
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
        self.write_table_tagged(name, plan, session, mode, None)
            .await
    }

    /// [`Engine::write_table`], with the commit tagged as one exactly-once write.
    pub async fn write_table_tagged(
        &self,
        name: &TableName,
        plan: LogicalPlan,
        session: Arc<SessionState>,
        mode: WriteMode,
        tag: Option<&CommitTag>,
    ) -> Result<WriteOutcome> {
        self.sync().await?;
        let listing = self.catalog.listing();
        if !listing.schemas.contains_key(&name.schema) {
            return Err(CatalogError::SchemaNotFound(name.schema.clone()).into());
        }
        let Some(entry) = listing.entry(&name.schema, &name.table).cloned() else {
            return self.write_new_table(name, plan, session, tag).await;
        };
        if mode == WriteMode::Create {
            return Err(CatalogError::TableExists {
                kind: entry.kind,
                name: name.to_string(),
            }
            .into());
        }
        check_is_table(name, &entry)?;
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
        if let Some(tag) = tag {
            tag.check_follows(&table, &location).await?;
            builder = builder.with_commit_properties(tag.properties());
        }
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
        self.committed();
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
        tag: Option<&CommitTag>,
    ) -> Result<WriteOutcome> {
        let location = self
            .catalog
            .lake
            .table_location(&name.schema, &name.table)
            .to_string();
        self.clear_orphan(name, &location).await?;
        let table = self.catalog.lake.new_table(&location)?;
        let mut builder = WriteBuilder::new(table.log_store(), None)
            .with_input_plan(plan)
            .with_session_state(session)
            .with_save_mode(SaveMode::ErrorIfExists)
            .with_table_name(name.to_string());
        if let Some(tag) = tag {
            builder = builder.with_commit_properties(tag.properties());
        }
        let created = builder
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

impl Engine {
    /// The newest commit of `name` tagged by `app_id` (its application version and the
    /// metadata written with it), looking back at most `depth` commits; `None` when the table
    /// does not exist or has no such commit.
    pub async fn last_tagged_commit(
        &self,
        name: &TableName,
        app_id: &str,
        depth: usize,
    ) -> Result<Option<CommitTag>> {
        let Some((location, table)) = self.load_table_by_name(name).await? else {
            return Ok(None);
        };
        // The transaction version is authoritative (it survives log checkpoints); the commit
        // info holds the metadata that came with it.
        let committed = table
            .snapshot()
            .map_err(|e| LakeError::from_delta(&location, e))?
            .transaction_version(table.log_store().as_ref(), app_id)
            .await
            .map_err(|e| LakeError::from_delta(&location, e))?;
        let Some(version) = committed else {
            return Ok(None);
        };
        // The tagged commit is nearly always the newest: look back 1 commit, then 16, 256, ...
        // rather than reading `depth` commit files on every sync.
        let mut metadata = serde_json::Map::new();
        let mut window = 1;
        'search: loop {
            let limit = window.min(depth);
            for entry in self.catalog.lake.history(&table, Some(limit)).await? {
                let tagged_by = entry
                    .polder_metadata
                    .get("polder.app_id")
                    .and_then(|v| v.as_str());
                let tagged_version = entry
                    .polder_metadata
                    .get("polder.app_version")
                    .and_then(|v| v.as_i64());
                if tagged_by == Some(app_id) && tagged_version == Some(version) {
                    metadata = entry
                        .polder_metadata
                        .into_iter()
                        .filter_map(|(key, value)| {
                            let key = key.strip_prefix("polder.")?.to_string();
                            (key != "app_id" && key != "app_version").then_some((key, value))
                        })
                        .collect();
                    break 'search;
                }
            }
            if limit >= depth || limit as u64 > table.version().unwrap_or(0) {
                break;
            }
            window = window.saturating_mul(16);
        }
        Ok(Some(CommitTag {
            app_id: app_id.to_string(),
            version,
            metadata,
        }))
    }
}

impl From<WriteOutcome> for crate::engine::CommandOutcome {
    fn from(outcome: WriteOutcome) -> Self {
        crate::engine::CommandOutcome::new("SELECT").with_rows(outcome.rows_written)
    }
}

impl Engine {
    /// The latest version of table `name` with its location; `None` when there is no such
    /// table (views have no data).
    async fn load_table_by_name(
        &self,
        name: &TableName,
    ) -> Result<Option<(String, polder_lake::deltalake::DeltaTable)>> {
        self.sync().await?;
        let Some(location) = self
            .catalog
            .listing()
            .entry(&name.schema, &name.table)
            .filter(|entry| entry.kind == TableKind::Table)
            .and_then(|entry| entry.location.clone())
        else {
            return Ok(None);
        };
        let table = self.catalog.load_latest(&location).await?;
        Ok(Some((location, table)))
    }

    /// The Arrow schema of table `name`, or `None` when it does not exist (views have none).
    pub async fn table_schema(
        &self,
        name: &TableName,
    ) -> Result<Option<datafusion::arrow::datatypes::SchemaRef>> {
        let Some((location, table)) = self.load_table_by_name(name).await? else {
            return Ok(None);
        };
        let snapshot = table
            .snapshot()
            .map_err(|e| LakeError::from_delta(&location, e))?;
        Ok(Some(snapshot.snapshot().arrow_schema()))
    }

    /// Upserts `source` into `name` by `keys` in one Delta MERGE commit: a source row replaces
    /// the target row with the same key (when `cursor` is given, only if its cursor is not
    /// older), other source rows are inserted; new source columns are added to the table.
    /// `source` must hold at most one row per key. Creates the table when missing.
    pub async fn merge_table_tagged(
        &self,
        name: &TableName,
        source: datafusion::prelude::DataFrame,
        keys: &[String],
        cursor: Option<&str>,
        session: Arc<SessionState>,
        tag: Option<&CommitTag>,
    ) -> Result<WriteOutcome> {
        use datafusion::prelude::{col, lit};
        self.sync().await?;
        let Some(entry) = self
            .catalog
            .listing()
            .entry(&name.schema, &name.table)
            .cloned()
        else {
            let plan = source.logical_plan().clone();
            return self.write_new_table(name, plan, session, tag).await;
        };
        check_is_table(name, &entry)?;
        if keys.is_empty() {
            return Err(crate::EngineError::InvalidInput(format!(
                "merging into {name} needs a primary key"
            )));
        }
        let location = entry.location.clone().unwrap_or_default();
        let table = self.catalog.load_latest(&location).await?;
        let qualified =
            |side: &str, column: &str| col(datafusion::common::Column::new(Some(side), column));
        let on = keys
            .iter()
            .map(|key| qualified("target", key).eq(qualified("source", key)))
            .reduce(|a, b| a.and(b))
            .unwrap_or(lit(true));
        let columns: Vec<String> = source
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut builder = table
            .clone()
            .merge(source, on)
            .with_source_alias("source")
            .with_target_alias("target")
            .with_merge_schema(true)
            // The source may be a stream read once (a database read straight into the merge):
            // no early pass over it to prune the target.
            .with_streaming(true)
            .with_session_state(session);
        if let Some(tag) = tag {
            tag.check_follows(&table, &location).await?;
            builder = builder.with_commit_properties(tag.properties());
        }
        let update_columns = columns.clone();
        let cursor = cursor.map(str::to_string);
        builder = builder
            .when_matched_update(|mut update| {
                if let Some(cursor) = &cursor {
                    update = update.predicate(
                        qualified("source", cursor)
                            .gt_eq(qualified("target", cursor))
                            .or(qualified("target", cursor).is_null()),
                    );
                }
                for column in &update_columns {
                    update = update.update(delta_column(column), qualified("source", column));
                }
                update
            })
            .map_err(|e| LakeError::from_delta(&location, e))?
            .when_not_matched_insert(|mut insert| {
                for column in &columns {
                    insert = insert.set(delta_column(column), qualified("source", column));
                }
                insert
            })
            .map_err(|e| LakeError::from_delta(&location, e))?;
        let (merged, metrics) = builder
            .await
            .map_err(|e| LakeError::from_delta(&location, e))?;
        self.catalog.remember(&merged);
        self.catalog.store.touch().await?;
        let stats = Lake::stats(&merged)?;
        Ok(WriteOutcome {
            created: false,
            version: stats.version,
            rows_written: Some(
                (metrics.num_target_rows_inserted + metrics.num_target_rows_updated) as u64,
            ),
        })
    }
}

/// Writes go to tables, not views.
fn check_is_table(name: &TableName, entry: &TableEntry) -> Result<()> {
    if entry.kind == TableKind::Table {
        Ok(())
    } else {
        Err(CatalogError::WrongKind {
            name: name.to_string(),
            actual: entry.kind,
            expected: TableKind::Table,
        }
        .into())
    }
}

/// An unqualified column as deltalake's MERGE names it (not re-parsed, so any case survives).
fn delta_column(name: &str) -> polder_lake::deltalake::delta_datafusion::DeltaColumn {
    polder_lake::deltalake::delta_datafusion::DeltaColumn::from(
        datafusion::common::Column::new_unqualified(name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tagged_writes_record_their_version_and_metadata_with_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(
            &format!("sqlite://{}/catalog.db", dir.path().display()),
            &format!("file://{}/lake", dir.path().display()),
            &polder_core::S3Config::default(),
        )
        .await
        .unwrap();
        engine
            .execute_sql("CREATE SCHEMA bronze_test")
            .await
            .unwrap();
        let name = TableName::new("bronze_test", "orders").unwrap();
        let app = "sync:shop.orders";
        assert_eq!(
            engine.last_tagged_commit(&name, app, 100).await.unwrap(),
            None
        );

        for (version, cursor) in [(1i64, "2026-11-01"), (2, "2026-11-02")] {
            let state = engine.session().state();
            let plan = state
                .create_logical_plan(&format!("SELECT {version} AS batch"))
                .await
                .unwrap();
            let mut metadata = serde_json::Map::new();
            metadata.insert("state".to_string(), serde_json::json!({"cursor": cursor}));
            let tag = CommitTag {
                app_id: app.to_string(),
                version,
                metadata,
            };
            engine
                .write_table_tagged(&name, plan, Arc::new(state), WriteMode::Append, Some(&tag))
                .await
                .unwrap();
            let last = engine
                .last_tagged_commit(&name, app, 100)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(last, tag, "the commit carries its version and state");
        }
        // An untagged write in between does not hide the last tagged one.
        engine
            .execute_sql("INSERT INTO bronze_test.orders VALUES (99)")
            .await
            .unwrap();
        let last = engine
            .last_tagged_commit(&name, app, 100)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(last.version, 2);
        assert_eq!(last.metadata["state"]["cursor"], "2026-11-02");
        assert_eq!(
            engine
                .last_tagged_commit(&name, "other", 100)
                .await
                .unwrap(),
            None
        );
    }
}
