//! Making, refreshing and dropping reflections, and keeping them fresh in the background.
//!
//! A refresh builds from the exact source versions its plan reads and records them with the
//! new data version in one catalog update. It is incremental when every commit to the source
//! since the last refresh only appended rows (Delta history tells): a raw reflection then
//! appends the new rows, an aggregate one re-aggregates its groups with the groups of the new
//! rows. Anything else (a delete, a merge, an optimize, a view source) is a full rebuild.

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::LogicalPlan;
use polder_catalog::{ReflectionRecord, ReflectionRefresh, TableKind};
use polder_lake::Lake;
use polder_lake::deltalake::operations::write::{SchemaMode, WriteBuilder};
use polder_lake::deltalake::protocol::SaveMode;

use super::definition::{Definition, Kind, ReflectionStatement, parse_statement, quote};
use super::{RefreshPolicy, scanned_tables, with_acceleration};
use crate::engine::{CommandOutcome, Engine};
use crate::error::{EngineError, Result};
use crate::table::PolderTable;

/// The procedure `CREATE / DROP / REFRESH REFLECTION` statements are rewritten to.
pub(crate) const REFLECTION_PROCEDURE: &str = "polder_reflection";

/// What one refresh did.
#[derive(Debug, Clone)]
pub struct RefreshReport {
    /// `full`, `incremental`, or `none` when the reflection already held the source's versions.
    pub kind: String,
    pub source_rows: u64,
    pub rows: i64,
    pub duration: Duration,
}

/// What a build did: its kind, the source rows it read, and what it wrote (nothing when the
/// reflection already held the source's versions).
struct Built {
    kind: &'static str,
    source_rows: u64,
    written: Option<Written>,
}

struct Written {
    data_version: i64,
    source_versions: BTreeMap<String, i64>,
    stats: polder_lake::TableStats,
}

/// Rows of the Polder tables `plan` scans, from their Delta statistics (no I/O).
fn rows_scanned(plan: &LogicalPlan) -> u64 {
    let mut rows = 0;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
            && let Some(table) = provider.downcast_ref::<PolderTable>()
        {
            rows += table.num_rows().unwrap_or(0);
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    rows
}

/// Appends the reflection's `SORT BY` to a build query: each written file is then sorted.
fn order_by_sort_keys(sql: &mut String, definition: &Definition) {
    if !definition.sort_by.is_empty() {
        let keys: Vec<String> = definition.sort_by.iter().map(|c| quote(c)).collect();
        sql.push_str(&format!(" ORDER BY {}", keys.join(", ")));
    }
}

/// Whether every commit after `from` up to `to` only appended rows.
async fn only_appended(
    lake: &Lake,
    table: &polder_lake::deltalake::DeltaTable,
    from: i64,
    to: i64,
) -> Result<bool> {
    let span = (to - from) as usize;
    if span == 0 || span > 1000 {
        return Ok(false);
    }
    let history = lake.history(table, Some(span)).await?;
    let commits: Vec<_> = history
        .iter()
        .filter(|h| h.version > from && h.version <= to)
        .collect();
    if commits.len() != span {
        return Ok(false);
    }
    Ok(commits.iter().all(|commit| {
        commit.operation.as_deref() == Some("WRITE")
            && commit
                .parameters
                .as_deref()
                .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
                .and_then(|p| {
                    p.get("mode")
                        .and_then(|m| m.as_str())
                        .map(|m| m == "Append")
                })
                .unwrap_or(false)
    }))
}

fn file_paths(
    table: &polder_lake::deltalake::DeltaTable,
) -> Result<std::collections::HashSet<String>> {
    let snapshot = table
        .snapshot()
        .map_err(|e| polder_lake::LakeError::from_delta(table.table_url().as_str(), e))?;
    Ok(snapshot
        .log_data()
        .iter()
        .map(|file| file.path().to_string())
        .collect())
}

impl Engine {
    /// Runs a `CALL polder_reflection('<statement>')` (what the SQL rewrite makes of
    /// `CREATE / DROP / REFRESH REFLECTION`).
    pub(crate) async fn reflection_statement(&self, text: &str) -> Result<CommandOutcome> {
        match parse_statement(text)? {
            ReflectionStatement::Create {
                name,
                if_not_exists,
                source,
                definition,
            } => {
                self.create_reflection(&name, if_not_exists, &source.0, &source.1, definition)
                    .await
            }
            ReflectionStatement::Drop { name, if_exists } => {
                self.drop_reflection(&name, if_exists).await
            }
            ReflectionStatement::Refresh { name, full } => {
                let report = self.refresh_reflection(&name, full).await?;
                Ok(CommandOutcome::new("REFRESH REFLECTION").with_rows(Some(report.source_rows)))
            }
        }
    }

    fn check_may_manage_reflections(what: &str, source_schema: &str) -> Result<()> {
        crate::access::check_catalog_change(source_schema, what, false)
    }

    /// Makes a reflection and builds it before returning.
    pub async fn create_reflection(
        &self,
        name: &str,
        if_not_exists: bool,
        schema: &str,
        relation: &str,
        mut definition: Definition,
    ) -> Result<CommandOutcome> {
        Self::check_may_manage_reflections(&format!("create reflection {name}"), schema)?;
        polder_core::validate_identifier(name)?;
        self.sync().await?;
        let source = format!("{schema}.{relation}");
        let listing = self.catalog.listing();
        let Some(entry) = listing.entry(schema, relation).cloned() else {
            return Err(EngineError::NotFound(format!(
                "{source} does not exist: a reflection needs a table or view"
            )));
        };
        // The source's columns, as the reader of the source sees them (its rights apply).
        let probe = self
            .session
            .sql(&format!(
                "SELECT * FROM {}.{} LIMIT 0",
                quote(schema),
                quote(relation)
            ))
            .await?;
        let arrow_schema = probe.schema().as_arrow().clone();
        definition.check(&source, &arrow_schema)?;
        for (table, _, id) in scanned_tables(probe.logical_plan()).0 {
            definition.source_ids.insert(table, id);
        }
        if entry.kind == TableKind::Table && !definition.source_ids.contains_key(&source) {
            return Err(EngineError::InvalidInput(format!(
                "{source} cannot be reflected for this user (row policies or column masks apply)"
            )));
        }
        let location = self
            .catalog
            .lake
            .root()
            .join(&format!(
                ".reflections/{name}-{}/",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ))
            .map_err(|e| EngineError::InvalidInput(e.to_string()))?
            .to_string();
        let owner = crate::access::current_principal().user;
        let created = self
            .catalog
            .store
            .create_reflection(
                name,
                &source,
                definition.kind_name(),
                &serde_json::to_string(&definition).expect("definitions serialize"),
                &owner,
                &location,
            )
            .await?;
        if !created {
            if if_not_exists {
                return Ok(CommandOutcome::new("CREATE REFLECTION"));
            }
            return Err(EngineError::Conflict(format!(
                "reflection '{name}' already exists"
            )));
        }
        match Box::pin(self.refresh_reflection(name, true)).await {
            Ok(report) => {
                Ok(CommandOutcome::new("CREATE REFLECTION")
                    .with_rows(Some(report.rows.max(0) as u64)))
            }
            Err(err) => {
                // A reflection that cannot be built is not kept half-made.
                let _ = self.catalog.store.delete_reflection(name).await;
                let _ = self.catalog.lake.delete_table(&location).await;
                let _ = self.catalog.reload().await;
                Err(err)
            }
        }
    }

    /// Drops a reflection and deletes its data.
    pub async fn drop_reflection(&self, name: &str, if_exists: bool) -> Result<CommandOutcome> {
        let record = self.catalog.store.get_reflection(name).await?;
        let Some(record) = record else {
            if if_exists {
                return Ok(CommandOutcome::new("DROP REFLECTION"));
            }
            return Err(EngineError::NotFound(format!(
                "reflection '{name}' does not exist"
            )));
        };
        let schema = record
            .source
            .split('.')
            .next()
            .unwrap_or_default()
            .to_string();
        Self::check_may_manage_reflections(&format!("drop reflection {name}"), &schema)?;
        self.catalog.store.delete_reflection(name).await?;
        if let Err(err) = self.catalog.lake.delete_table(&record.location).await {
            tracing::warn!(reflection = %name, error = %err, "could not delete the files of a dropped reflection");
        }
        self.catalog.reload().await?;
        Ok(CommandOutcome::new("DROP REFLECTION"))
    }

    /// Every reflection's catalog record.
    pub async fn reflection_records(&self) -> Result<Vec<ReflectionRecord>> {
        Ok(self.catalog.store.list_reflections().await?)
    }

    /// Marks the reflections of `schema.relation` invalid (the source was dropped or replaced).
    pub(crate) async fn invalidate_reflections(&self, schema: &str, relation: &str, why: &str) {
        let source = format!("{schema}.{relation}");
        let Ok(records) = self.catalog.store.list_reflections().await else {
            return;
        };
        let mut changed = false;
        for record in records.iter().filter(|r| {
            r.source == source
                || serde_json::from_str::<Definition>(&r.definition)
                    .is_ok_and(|d| d.source_ids.contains_key(&source))
        }) {
            let reason = format!("{source} {why}");
            if let Err(err) = self
                .catalog
                .store
                .set_reflection_status(&record.name, "invalid", Some(&reason))
                .await
            {
                tracing::warn!(reflection = %record.name, error = %err, "could not mark a reflection invalid");
            }
            changed = true;
        }
        if changed {
            let _ = self.catalog.reload().await;
        }
    }

    /// Refreshes a reflection now: incremental when the source only appended since the last
    /// refresh (unless `full`), full otherwise; nothing when it already holds the source's
    /// current versions.
    pub async fn refresh_reflection(&self, name: &str, full: bool) -> Result<RefreshReport> {
        let lock = self.catalog.reflections.refresh_lock(name);
        let _guard = lock.lock().await;
        let started = Instant::now();
        let record = self
            .catalog
            .store
            .get_reflection(name)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("reflection '{name}' does not exist")))?;
        let schema = record
            .source
            .split('.')
            .next()
            .unwrap_or_default()
            .to_string();
        Self::check_may_manage_reflections(&format!("refresh reflection {name}"), &schema)?;
        if record.status == "invalid" {
            return Err(EngineError::InvalidInput(format!(
                "reflection '{name}' is invalid ({}); drop it and create it again",
                record
                    .status_reason
                    .as_deref()
                    .unwrap_or("no reason recorded")
            )));
        }
        let definition: Definition = serde_json::from_str(&record.definition).map_err(|e| {
            EngineError::InvalidInput(format!(
                "reflection '{name}' has an unreadable definition: {e}"
            ))
        })?;
        // Built by the system: the reflection holds every row; readers governed by row policies
        // never read it (their scans are not plain table scans).
        let work = async {
            let outcome = Box::pin(self.build_reflection(&record, &definition, full)).await;
            if let Err(err) = &outcome {
                let invalid = matches!(err, EngineError::NotFound(_));
                let status = if invalid { "invalid" } else { "failed" };
                let _ = self
                    .catalog
                    .store
                    .set_reflection_status(name, status, Some(&err.to_string()))
                    .await;
                let _ = self.catalog.reload().await;
            }
            outcome
        };
        let built = crate::access::run_with_full_rights(with_acceleration(false, work)).await?;
        let (kind, source_rows) = (built.kind.to_string(), built.source_rows);
        let Some(Written {
            data_version,
            source_versions,
            stats,
        }) = built.written
        else {
            return Ok(RefreshReport {
                kind,
                source_rows,
                rows: record.row_count.unwrap_or(0),
                duration: started.elapsed(),
            });
        };
        let duration = started.elapsed();
        let refresh = ReflectionRefresh {
            data_version,
            source_versions: serde_json::to_string(&source_versions).expect("versions serialize"),
            refreshed_at: polder_catalog::now(),
            duration_ms: duration.as_millis() as i64,
            kind: kind.clone(),
            row_count: stats.num_rows.unwrap_or(0) as i64,
            size_bytes: stats.size_bytes as i64,
        };
        if !self
            .catalog
            .store
            .record_reflection_refresh(name, &refresh)
            .await?
        {
            return Err(EngineError::Conflict(format!(
                "reflection '{name}' was dropped or made invalid during its refresh"
            )));
        }
        metrics::counter!("polder_reflection_refreshes_total", "kind" => kind.clone()).increment(1);
        self.catalog.reload().await?;
        tracing::info!(reflection = %name, kind = %kind, source_rows, ms = duration.as_millis() as u64, "reflection refreshed");
        Ok(RefreshReport {
            kind,
            source_rows,
            rows: refresh.row_count,
            duration,
        })
    }

    /// Builds the reflection's new data; `None` when it already holds the current versions.
    async fn build_reflection(
        &self,
        record: &ReflectionRecord,
        definition: &Definition,
        full: bool,
    ) -> Result<Built> {
        self.sync().await?;
        let (schema, relation) = record
            .source
            .split_once('.')
            .ok_or_else(|| EngineError::InvalidInput(format!("bad source '{}'", record.source)))?;
        let listing = self.catalog.listing();
        let Some(entry) = listing.entry(schema, relation).cloned() else {
            return Err(EngineError::NotFound(format!(
                "{} was dropped",
                record.source
            )));
        };
        let held: BTreeMap<String, i64> =
            serde_json::from_str(&record.source_versions).unwrap_or_default();
        // The plan of a full build, which also tells which versions it reads.
        let mut sql = definition.build_sql(&format!("{}.{}", quote(schema), quote(relation)));
        order_by_sort_keys(&mut sql, definition);
        let frame = Box::pin(self.session.sql(&sql)).await?;
        let (read, _) = scanned_tables(frame.logical_plan());
        for (table, _, id) in &read {
            if definition
                .source_ids
                .get(table)
                .is_some_and(|known| known != id)
            {
                return Err(EngineError::NotFound(format!(
                    "{table} was dropped and made again since the reflection was made"
                )));
            }
        }
        let versions: BTreeMap<String, i64> =
            read.iter().map(|(t, v, _)| (t.clone(), *v)).collect();
        if !full && record.data_version.is_some() && versions == held {
            return Ok(Built {
                kind: "none",
                source_rows: 0,
                written: None,
            });
        }
        let data = if record.data_version.is_some() {
            Some(self.catalog.lake.load(&record.location).await?)
        } else {
            None
        };
        // Incremental: one source table, only appends since the versions held.
        let appended_from = match (&data, entry.kind, full) {
            (Some(_), TableKind::Table, false) => {
                let location = entry.location.clone().unwrap_or_default();
                match (held.get(&record.source), versions.get(&record.source)) {
                    (Some(&from), Some(&to)) if from < to => {
                        let source = self.catalog.lake.load_version(&location, to).await?;
                        only_appended(&self.catalog.lake, &source, from, to)
                            .await?
                            .then_some((location, from, source))
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        let state = Arc::new(self.session.state());
        let (kind, plan, mode, source_rows) = match appended_from {
            Some((location, from, source)) => {
                let before = self.catalog.lake.load_version(&location, from).await?;
                let old = file_paths(&before)?;
                let new_files: std::collections::HashSet<String> = file_paths(&source)?
                    .into_iter()
                    .filter(|p| !old.contains(p))
                    .collect();
                let stats_rows: u64 = {
                    let snapshot = source
                        .snapshot()
                        .map_err(|e| polder_lake::LakeError::from_delta(&location, e))?;
                    snapshot
                        .log_data()
                        .iter()
                        .filter(|f| new_files.contains(f.path().as_ref()))
                        .map(|f| f.num_records().unwrap_or(0) as u64)
                        .sum()
                };
                let new_rows = source
                    .table_provider()
                    .with_file_paths(new_files)
                    .build()
                    .await?;
                let context = crate::delta_session();
                context.register_table("new_rows", Arc::new(new_rows))?;
                match &definition.kind {
                    Kind::Raw { .. } => {
                        let mut sql = definition.build_sql("new_rows");
                        order_by_sort_keys(&mut sql, definition);
                        let frame = Box::pin(context.sql(&sql)).await?;
                        (
                            "incremental",
                            frame.logical_plan().clone(),
                            SaveMode::Append,
                            stats_rows,
                        )
                    }
                    Kind::Aggregate { .. } => {
                        let current = data
                            .as_ref()
                            .expect("incremental refreshes have data")
                            .table_provider()
                            .build()
                            .await?;
                        context.register_table("held", Arc::new(current))?;
                        let partial = definition.build_sql("new_rows");
                        let columns: Vec<String> = definition
                            .stored_columns()
                            .iter()
                            .map(|(n, _)| quote(n))
                            .collect();
                        let both = format!(
                            "(SELECT {cols} FROM held UNION ALL SELECT {cols} FROM ({partial}) AS partial_rows) AS both_rows",
                            cols = columns.join(", ")
                        );
                        let mut sql = definition.merge_sql(&both);
                        order_by_sort_keys(&mut sql, definition);
                        let frame = Box::pin(context.sql(&sql)).await?;
                        (
                            "incremental",
                            frame.logical_plan().clone(),
                            SaveMode::Overwrite,
                            stats_rows,
                        )
                    }
                }
            }
            None => (
                "full",
                frame.logical_plan().clone(),
                SaveMode::Overwrite,
                rows_scanned(frame.logical_plan()),
            ),
        };
        let location = record.location.clone();
        let table = match data {
            Some(table) => table,
            None => self.catalog.lake.new_table(&location)?,
        };
        let snapshot = table.snapshot().ok().map(|s| s.snapshot().clone());
        let mut builder = WriteBuilder::new(table.log_store(), snapshot)
            .with_input_plan(plan)
            .with_session_state(state)
            .with_save_mode(mode);
        if mode == SaveMode::Overwrite {
            builder = builder.with_schema_mode(SchemaMode::Overwrite);
        }
        if !definition.partition_by.is_empty() {
            builder = builder.with_partition_columns(definition.partition_by.clone());
        }
        let written = Box::pin(builder.into_future())
            .await
            .map_err(|e| polder_lake::LakeError::from_delta(&location, e))?;
        Ok(Built {
            kind,
            source_rows,
            written: Some(Written {
                data_version: written.version().map(|v| v as i64).unwrap_or(0),
                source_versions: versions,
                stats: Lake::stats(&written)?,
            }),
        })
    }

    /// Refreshes what is due: `ON COMMIT` reflections whose source changed, `EVERY` ones whose
    /// interval passed and whose source changed. Also flushes the counted uses.
    pub async fn refresh_due_reflections(&self) {
        let uses = self.catalog.reflections.take_uses();
        if let Err(err) = self.catalog.store.add_reflection_usage(&uses).await {
            tracing::warn!(error = %err, "could not record reflection uses");
        }
        if self.sync().await.is_err() {
            return;
        }
        let now = polder_catalog::now();
        for loaded in self.catalog.reflections.all().values() {
            let record = &loaded.record;
            if record.status == "invalid" || record.status == "building" {
                continue;
            }
            let due = match loaded.definition.refresh {
                RefreshPolicy::Manual => false,
                RefreshPolicy::OnCommit => true,
                RefreshPolicy::Every { seconds } => record
                    .refreshed_at
                    .is_none_or(|at| now - at >= seconds as i64 * 1000),
            };
            if !due || !self.source_changed(loaded).await {
                continue;
            }
            if let Err(err) = self.refresh_reflection(&record.name, false).await {
                tracing::warn!(reflection = %record.name, error = %err, "reflection refresh failed");
            }
        }
    }

    /// Whether a table the reflection holds has a newer version (or is gone).
    async fn source_changed(&self, loaded: &super::Loaded) -> bool {
        let listing = self.catalog.listing();
        for (table, held) in &loaded.source_versions {
            let Some((schema, name)) = table.split_once('.') else {
                return true;
            };
            let Some(location) = listing.entry(schema, name).and_then(|e| e.location.clone())
            else {
                return true;
            };
            match self.catalog.load_latest(&location).await {
                Ok(current) if current.version().map(|v| v as i64) == Some(*held) => {}
                _ => return true,
            }
        }
        // A failed reflection retries only when its sources change again.
        loaded.record.status != "failed" || loaded.source_versions.is_empty()
    }

    /// Keeps reflections fresh until the process ends: after this process's commits at once,
    /// and every two seconds for commits made elsewhere.
    pub fn spawn_reflection_maintenance(
        self: &Arc<Self>,
        leadership: polder_catalog::Leadership,
    ) -> tokio::task::JoinHandle<()> {
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(current) = engine.upgrade() else {
                    return;
                };
                let woken = current.catalog.reflections.clone();
                // One coordinator refreshes (the scheduler lease's holder): the others' commits
                // reach it through the catalog within one round.
                if leadership.is_leader() {
                    current.refresh_due_reflections().await;
                }
                drop(current);
                tokio::select! {
                    _ = woken.committed.notified() => {
                        // Let a burst of commits settle into one refresh.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        })
    }
}
