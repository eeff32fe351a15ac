//! Reflections: accelerated copies of a table or view — raw (chosen columns, sorted or
//! partitioned) or aggregate (dimensions with time grains x measures) — kept as Delta tables in
//! the lake's reserved area and read by the planner instead of the source whenever that gives
//! the same answer ([`substitute`]). They are made and kept fresh by [`manage`].
//!
//! Exactness comes first: a reflection serves a query only while it holds exactly the source
//! versions the query reads (or, when the reflection allows some staleness, for that long), and
//! the data version and the source versions it was built from change together in one catalog
//! update, so a reader never sees a half-refreshed reflection.

pub mod definition;
pub(crate) mod manage;
pub(crate) mod substitute;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Statistics;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use polder_catalog::{CatalogStore, ReflectionRecord};
use polder_lake::Lake;

use definition::Stored;
pub use definition::{Definition, Grain, Kind, MeasureFn, RefreshPolicy};

/// The schema name reflection tables carry in plans (`EXPLAIN` shows
/// `TableScan: polder_reflections.<name>`); it is not a schema of the catalog.
pub const REFLECTION_SCHEMA: &str = "polder_reflections";

tokio::task_local! {
    static ACCELERATION: bool;
    static EXPLAIN_NOTES: RefCell<Vec<String>>;
}

/// Runs `work` with reflections and the results cache on (`true`, the default) or off.
pub async fn with_acceleration<F: std::future::Future>(enabled: bool, work: F) -> F::Output {
    ACCELERATION.scope(enabled, work).await
}

/// Whether the running statement may use reflections and the results cache.
pub fn acceleration_enabled() -> bool {
    ACCELERATION.try_with(|on| *on).unwrap_or(true)
}

/// Runs `work` collecting what the planner decided about reflections (for `EXPLAIN`).
pub(crate) async fn collect_notes<F: std::future::Future>(work: F) -> (F::Output, Vec<String>) {
    EXPLAIN_NOTES
        .scope(RefCell::new(Vec::new()), async {
            let output = work.await;
            let notes = EXPLAIN_NOTES.with(|n| n.take());
            (output, notes)
        })
        .await
}

/// Records a planner decision when an `EXPLAIN` is collecting them.
pub(crate) fn note(line: String) {
    let _ = EXPLAIN_NOTES.try_with(|notes| {
        let mut notes = notes.borrow_mut();
        if !notes.contains(&line) {
            notes.push(line);
        }
    });
}

/// Whether the running planning is an `EXPLAIN` (uses are then not counted).
pub(crate) fn explaining() -> bool {
    EXPLAIN_NOTES.try_with(|_| ()).is_ok()
}

/// A Polder table a plan scans: `schema.table`, the Delta version read and the table's id.
pub(crate) type ScannedTable = (String, i64, String);

/// The Polder table a scan reads, `None` when it is anything else (a governed table, a system
/// table, a reflection).
pub(crate) fn scanned_table(scan: &datafusion::logical_expr::TableScan) -> Option<ScannedTable> {
    let provider = datafusion::datasource::source_as_provider(&scan.source).ok()?;
    let table = provider.downcast_ref::<crate::table::PolderTable>()?;
    Some((table.name().to_string(), table.version(), table.table_id()))
}

/// The Polder tables `plan` scans, and whether every scan in it is one.
pub(crate) fn scanned_tables(
    plan: &datafusion::logical_expr::LogicalPlan,
) -> (Vec<ScannedTable>, bool) {
    let mut found = Vec::new();
    let mut plain = true;
    let _ = plan.apply_with_subqueries(|node| {
        if let datafusion::logical_expr::LogicalPlan::TableScan(scan) = node {
            match scanned_table(scan) {
                Some(table) => found.push(table),
                None => plain = false,
            }
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    (found, plain)
}

/// What `system.reflections` and the REST API show of a definition: the statement that makes
/// it, its refresh policy and its staleness (the stored JSON when it cannot be read).
pub fn describe(record: &ReflectionRecord) -> (String, String, i64) {
    match serde_json::from_str::<Definition>(&record.definition) {
        Ok(definition) => (
            definition.to_sql(&record.name, &record.source),
            definition.refresh.describe(),
            definition.staleness_seconds as i64,
        ),
        Err(_) => (record.definition.clone(), "unknown".to_string(), 0),
    }
}

/// A reflection as the planner needs it: its definition, the source versions it holds, and its
/// table at the data version the catalog names.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub record: ReflectionRecord,
    pub definition: Definition,
    /// `schema.table` of the source.
    pub source: String,
    pub source_versions: BTreeMap<String, i64>,
    pub stored: Vec<(String, Stored)>,
    /// `None` until the first refresh finished (or when the reflection is invalid or failed).
    pub table: Option<Arc<ReflectionTable>>,
}

impl Loaded {
    pub fn usable(&self) -> Result<&Arc<ReflectionTable>, String> {
        match (&self.table, self.record.status.as_str()) {
            (Some(table), "ready") => Ok(table),
            (_, "invalid") => Err(format!(
                "it is invalid ({})",
                self.record
                    .status_reason
                    .as_deref()
                    .unwrap_or("no reason recorded")
            )),
            (_, "failed") => Err(format!(
                "its last refresh failed ({})",
                self.record
                    .status_reason
                    .as_deref()
                    .unwrap_or("no reason recorded")
            )),
            _ => Err("it is not built yet".to_string()),
        }
    }

    /// Whether the reflection may answer for sources at `versions` (`(name, version, table id)`),
    /// or why not.
    pub fn fresh_for(&self, versions: &[(String, i64, String)]) -> Result<(), String> {
        if let Some(missing) = self
            .source_versions
            .keys()
            .find(|held| !versions.iter().any(|(name, _, _)| name == *held))
        {
            return Err(format!(
                "the query does not read {missing}, which it was built from"
            ));
        }
        for (name, version, id) in versions {
            if let Some(expected) = self.definition.source_ids.get(name)
                && expected != id
            {
                return Err(format!(
                    "{name} was dropped and made again since the reflection was made"
                ));
            }
            match self.source_versions.get(name) {
                Some(held) if held == version => {}
                held => {
                    let age = self
                        .record
                        .refreshed_at
                        .map(|at| (polder_catalog::now() - at).max(0) / 1000)
                        .unwrap_or(i64::MAX);
                    let allowed = self.definition.staleness_seconds as i64;
                    if allowed > 0 && age <= allowed && held.is_some_and(|h| h < version) {
                        continue;
                    }
                    return Err(match held {
                        Some(held) => format!(
                            "it holds {name} version {held}, the query reads version {version} (a refresh is due)"
                        ),
                        None => format!("it does not hold {name}"),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The reflections of the catalog, loaded; uses counted in memory until flushed.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    loaded: RwLock<Arc<HashMap<String, Arc<Loaded>>>>,
    uses: Mutex<HashMap<String, (i64, i64)>>,
    /// Woken after this process commits to a table (refresh on commit).
    pub committed: tokio::sync::Notify,
    /// One refresh at a time per reflection.
    refreshing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Registry {
    pub fn all(&self) -> Arc<HashMap<String, Arc<Loaded>>> {
        self.loaded.read().expect("reflections lock").clone()
    }

    /// The reflections of `source` (`schema.table`), smallest first.
    pub fn of_source(&self, source: &str) -> Vec<Arc<Loaded>> {
        let mut found: Vec<Arc<Loaded>> = self
            .all()
            .values()
            .filter(|r| r.source == source)
            .cloned()
            .collect();
        found.sort_by_key(|r| {
            (
                r.record.row_count.unwrap_or(i64::MAX),
                r.record.name.clone(),
            )
        });
        found
    }

    /// Reads the reflections from the catalog, loading the tables of those whose data version
    /// changed.
    pub async fn reload(&self, store: &CatalogStore, lake: &Lake) -> crate::Result<()> {
        let records = store.list_reflections().await?;
        let before = self.all();
        let mut next = HashMap::new();
        for record in records {
            let definition: Definition = match serde_json::from_str(&record.definition) {
                Ok(definition) => definition,
                Err(err) => {
                    tracing::warn!(reflection = %record.name, error = %err, "unreadable reflection definition; ignored");
                    continue;
                }
            };
            let source_versions: BTreeMap<String, i64> =
                serde_json::from_str(&record.source_versions).unwrap_or_default();
            let reusable = before.get(&record.name).and_then(|known| {
                (known.record.data_version == record.data_version
                    && known.record.location == record.location)
                    .then(|| known.table.clone())
                    .flatten()
            });
            let table = match (reusable, record.data_version, record.status.as_str()) {
                (_, _, "invalid") => None,
                (Some(table), _, _) => Some(table),
                (None, Some(version), _) => {
                    match ReflectionTable::load(&record.name, &record.location, version, lake).await
                    {
                        Ok(table) => Some(Arc::new(table)),
                        Err(err) => {
                            tracing::warn!(reflection = %record.name, error = %err, "cannot load the reflection's table; it is not used");
                            None
                        }
                    }
                }
                (None, None, _) => None,
            };
            let stored = definition.stored_columns();
            next.insert(
                record.name.clone(),
                Arc::new(Loaded {
                    source: record.source.clone(),
                    source_versions,
                    stored,
                    definition,
                    record,
                    table,
                }),
            );
        }
        *self.loaded.write().expect("reflections lock") = Arc::new(next);
        Ok(())
    }

    /// Counts one use of `name` by a query.
    pub fn used(&self, name: &str) {
        metrics::counter!("polder_reflection_substitutions_total").increment(1);
        let mut uses = self.uses.lock().expect("uses lock");
        let entry = uses.entry(name.to_string()).or_insert((0, 0));
        entry.0 += 1;
        entry.1 = polder_catalog::now();
    }

    /// Takes the uses counted since the last flush.
    pub fn take_uses(&self) -> Vec<(String, i64, i64)> {
        let mut uses = self.uses.lock().expect("uses lock");
        uses.drain().map(|(name, (n, at))| (name, n, at)).collect()
    }

    pub fn refresh_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.refreshing
            .lock()
            .expect("refresh locks")
            .entry(name.to_string())
            .or_default()
            .clone()
    }
}

/// Reflections up to this size in the lake are also held in memory (once per data version).
const IN_MEMORY_BYTES: u64 = 16 * 1024 * 1024;

/// A reflection's Delta table at the version the catalog names.
#[derive(Debug)]
pub(crate) struct ReflectionTable {
    pub name: String,
    pub version: i64,
    pub location: String,
    inner: Arc<dyn TableProvider>,
}

impl ReflectionTable {
    pub async fn load(
        name: &str,
        location: &str,
        version: i64,
        lake: &Lake,
    ) -> crate::Result<Self> {
        let table = lake.load_version(location, version).await?;
        let provider: Arc<dyn TableProvider> = Arc::new(table.table_provider().build().await?);
        // A small reflection (the usual aggregate one) is kept in memory: a dashboard's queries
        // then skip the Parquet decoding, the larger part of their time once planned.
        let size = Lake::stats(&table)
            .map(|s| s.size_bytes)
            .unwrap_or(u64::MAX);
        let inner = if size <= IN_MEMORY_BYTES {
            let context = datafusion::prelude::SessionContext::new();
            let batches = context.read_table(provider.clone())?.collect().await?;
            let schema = provider.schema();
            Arc::new(datafusion::datasource::MemTable::try_new(
                schema,
                vec![batches],
            )?) as Arc<dyn TableProvider>
        } else {
            provider
        };
        Ok(ReflectionTable {
            name: name.to_string(),
            version,
            location: location.to_string(),
            inner,
        })
    }

    pub fn reference(&self) -> datafusion::common::TableReference {
        datafusion::common::TableReference::partial(REFLECTION_SCHEMA, self.name.as_str())
    }
}

#[async_trait]
impl TableProvider for ReflectionTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn statistics(&self) -> Option<Statistics> {
        self.inner.statistics()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }
}
